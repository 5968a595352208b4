"""Tests of gpfl_tff.data.datasets: configuration, prepare and the cache."""

import dataclasses
import json
import os
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

from gpfl_tff.data import client_data
from gpfl_tff.data import datasets
from gpfl_tff.data.errors import DataError

_FILES = ['train.sqlite', 'validation.sqlite', 'test.sqlite', 'groups.json',
          'vocab.txt', 'stats.json']


def _write_corpus(directory, name='corpus.jsonl'):
  """Six articles in two groups; `tiny` (2 lines) falls below 3 examples."""
  records = []
  for group, clients in (('sport', ['s1', 's2', 's3']),
                         ('tech', ['t1', 't2', 'tiny'])):
    for client in clients:
      lines = 2 if client == 'tiny' else 5
      records += [{'client_id': client, 'group_id': group,
                   'text': f'{group} news from {client}, part {i}.'}
                  for i in range(lines)]
  path = os.path.join(directory, name)
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)
  return path


class DatasetConfigTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(
      ('unknown_dataset', dict(dataset='imdb'), "unknown dataset 'imdb'"),
      ('unknown_group_by', dict(dataset='bbc', group_by='genre'),
       r"bbc: unknown --group_by='genre' \(choose from topic\)"),
      ('genre_with_tff_sqlite',
       dict(dataset='shakespeare', group_by='genre', input='/some/folder'),
       r"unknown --group_by='genre' \(choose from play\)"),
      ('text_corpus_without_input', dict(dataset='text_corpus'),
       'text_corpus: --input is required'),
      ('stackoverflow_without_input', dict(dataset='stackoverflow'),
       'stackoverflow: --input is required'),
      ('bad_vocab_size', dict(dataset='bbc', vocab_size=0),
       '--vocab_size must be positive'),
      ('negative_min_words', dict(dataset='bbc', min_words_per_client=-1),
       '--min_words_per_client must not be negative'),
      ('keep_uncategorized_not_wikipedia',
       dict(dataset='bbc', keep_uncategorized=True),
       'bbc: --keep_uncategorized is for --dataset=wikipedia only'),
  )
  def test_errors(self, fields, message):
    with self.assertRaisesRegex(DataError, message):
      datasets.DatasetConfig(**fields).resolved()

  @parameterized.parameters(
      ('shakespeare', '', '', 'genre'),
      ('shakespeare', 'play', '', 'play'),
      ('shakespeare', '', '/tff/cache', 'play'),
      ('bbc', '', '', 'topic'),
      ('text_corpus', '', 'x.jsonl', 'group_id'),
      ('stackoverflow', '', '/cache', 'tag'),
      ('wikipedia', '', '', 'topic'),
  )
  def test_default_group_by(self, dataset, group_by, input_path, expected):
    config = datasets.DatasetConfig(dataset=dataset, group_by=group_by,
                                    input=input_path).resolved()
    self.assertEqual(config.group_by, expected)

  def test_cache_key_changes_with_fields_and_input_file(self):
    directory = self.create_tempdir().full_path
    path = _write_corpus(directory)
    config = datasets.DatasetConfig(dataset='text_corpus',
                                    input=path).resolved()
    key = config.cache_key()
    self.assertEqual(key, config.cache_key())
    self.assertStartsWith(key, 'text_corpus-group_id-')
    self.assertNotEqual(
        key, dataclasses.replace(config, vocab_size=5).cache_key())
    with open(path, 'a', encoding='utf-8') as f:
      f.write('\n')
    self.assertNotEqual(key, config.cache_key())


class PrepareTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.config = datasets.DatasetConfig(
        dataset='text_corpus', input=_write_corpus(self.root), vocab_size=8,
        min_words_per_client=10)

  def test_prepare_writes_every_file(self):
    output_dir = os.path.join(self.root, 'out', 'prepared')
    stats = datasets.prepare(self.config, output_dir, self.root)
    self.assertCountEqual(os.listdir(output_dir), _FILES)
    self.assertCountEqual(os.listdir(os.path.dirname(output_dir)),
                          ['prepared'])  # No staging folder left.
    with open(os.path.join(output_dir, 'stats.json'), encoding='utf-8') as f:
      self.assertEqual(json.load(f), stats)
    self.assertEqual(stats['num_clients'], 5)
    self.assertEqual(stats['dropped_clients'], 1)
    self.assertEqual(stats['clients_per_group'], {'sport': 3, 'tech': 2})
    self.assertEqual(stats['examples_per_split'],
                     {'train': 15, 'validation': 5, 'test': 5})
    self.assertEqual(stats['vocab_size'], 8)
    self.assertEqual(stats['config']['group_by'], 'group_id')
    data = client_data.load(output_dir)
    self.assertEqual(data.client_ids, ['s1', 's2', 's3', 't1', 't2'])
    self.assertEqual(len(data.vocabulary), 8)
    texts = [e['text'].numpy().decode() for e in
             data.test.create_tf_dataset_for_client('t2')]
    self.assertEqual(texts, ['tech news from t2, part 4.'])

  def test_load_or_prepare_reuses_the_cache(self):
    cache_dir = os.path.join(self.root, 'cache')
    first = datasets.load_or_prepare(self.config, cache_dir)
    directory = datasets.prepared_dir(self.config, cache_dir)
    self.assertEqual(os.path.dirname(directory),
                     os.path.join(cache_dir, 'prepared'))
    self.assertCountEqual(os.listdir(directory), _FILES)
    with mock.patch.object(datasets, 'prepare',
                           side_effect=AssertionError('prepared again')):
      second = datasets.load_or_prepare(self.config, cache_dir)
    self.assertEqual(second.client_to_group, first.client_to_group)
    self.assertEqual(second.vocabulary, first.vocabulary)
    self.assertEqual(second.stats, first.stats)

  def test_failure_while_saving_leaves_nothing(self):
    parent = os.path.join(self.root, 'out')
    output_dir = os.path.join(parent, 'prepared')
    real_save = client_data.save

    def save_then_fail(*args, **kwargs):
      real_save(*args, **kwargs)
      raise RuntimeError('disk full')

    with mock.patch.object(client_data, 'save', side_effect=save_then_fail):
      with self.assertRaisesRegex(RuntimeError, 'disk full'):
        datasets.prepare(self.config, output_dir, self.root)
    self.assertFalse(os.path.exists(output_dir))
    self.assertEqual(os.listdir(parent), [])

  def test_bad_input_leaves_nothing(self):
    bad = os.path.join(self.root, 'bad.jsonl')
    with open(bad, 'w', encoding='utf-8') as f:
      f.write('{"client_id": "a"}\n')
    output_dir = os.path.join(self.root, 'out', 'prepared')
    with self.assertRaisesRegex(DataError, 'bad.jsonl:1: missing key'):
      datasets.prepare(dataclasses.replace(self.config, input=bad),
                       output_dir, self.root)
    self.assertFalse(os.path.exists(output_dir))
    self.assertCountEqual(os.listdir(self.root), ['corpus.jsonl', 'bad.jsonl'])

  def test_refuses_to_overwrite_a_folder_with_other_files(self):
    output_dir = os.path.join(self.root, 'mine')
    os.makedirs(output_dir)
    with open(os.path.join(output_dir, 'notes.txt'), 'w') as f:
      f.write('keep me')
    with self.assertRaisesRegex(DataError, 'refusing to overwrite'):
      datasets.prepare(self.config, output_dir, self.root)
    self.assertEqual(os.listdir(output_dir), ['notes.txt'])
    a_file = os.path.join(self.root, 'corpus.jsonl')
    with self.assertRaisesRegex(DataError, 'exists and is not a folder'):
      datasets.prepare(self.config, a_file, self.root)

  def test_empty_folder_and_earlier_dataset_are_replaced(self):
    output_dir = os.path.join(self.root, 'prepared')
    os.makedirs(output_dir)
    datasets.prepare(self.config, output_dir, self.root)
    stats = datasets.prepare(dataclasses.replace(self.config, vocab_size=3),
                             output_dir, self.root)
    self.assertEqual(stats['vocab_size'], 3)
    self.assertLen(client_data.load(output_dir).vocabulary, 3)
    self.assertCountEqual(os.listdir(self.root), ['corpus.jsonl', 'prepared'])


if __name__ == '__main__':
  tf.test.main()
