"""Tests of gpfl_tff.data.stackoverflow on a small file in TFF's schema.

The real `stackoverflow.sqlite` is several gigabytes; these tests write a tiny
one with the same tables and tf.train.Example features. The rows of different
clients and splits are interleaved in the file (see `test_row_order`), as the
reader must not rely on the file's order. Tests at scale use the synthetic file
of `data/synthetic_stackoverflow.py` (tests/prepare).
"""

import contextlib
import os
import sqlite3

import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.data import stackoverflow
from gpfl_tff.data.errors import DataError
from tests.data import fake_sources


def _post(tokens, tags, post_type='question'):
  """A serialized Stack Overflow tf.train.Example, as in TFF's file."""

  def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[value.encode('utf-8')]))

  features = {
      'creation_date': _bytes('2017-01-01 00:00:00.000 UTC'),
      'score': tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
      'tags': _bytes(tags),
      'title': _bytes('a title'),
      'tokens': _bytes(tokens),
      'type': _bytes(post_type),
  }
  return tf.train.Example(features=tf.train.Features(
      feature=features)).SerializeToString()


def _words(name, i):
  return f'{name} post {i} has five'  # 5 words.


def _rows():
  """(split, client, example) rows; see the comments for each client."""
  rows = []

  def add(split, client_id, count, tags, name=None):
    for i in range(count):
      rows.append((split, client_id,
                   _post(_words(name or f'{client_id}{split}', i), tags)))

  # 10: python; 10 train posts, no heldout: the last train post validates.
  add('train', '10', 6, 'python|numpy')
  add('train', '10', 4, 'java|python')
  add('test', '10', 2, 'python')
  # 11: java; has heldout posts, which become its validation split.
  add('train', '11', 3, 'java')
  add('heldout', '11', 2, 'java')
  add('test', '11', 1, 'java')
  # 12: tags tie between a and b -> a.
  add('train', '12', 1, 'b|a')
  add('train', '12', 1, 'a|b')
  add('test', '12', 1, 'b')
  # 13: train only: not a client at all.
  add('train', '13', 5, 'python')
  # 14: too few words (3) -> dropped.
  rows.append(('train', '14', _post('one', 'python')))
  rows.append(('train', '14', _post('two', 'python')))
  rows.append(('test', '14', _post('three', 'python')))
  # 15: one train post, which validation takes -> empty train, dropped.
  add('train', '15', 1, 'python')
  add('test', '15', 1, 'python')
  # 16: no tags -> dropped.
  add('train', '16', 3, '')
  add('test', '16', 1, '')
  # 17: heldout only: not a client.
  add('heldout', '17', 3, 'python')
  # 18: python, with an empty post that is skipped.
  add('train', '18', 4, 'python')
  rows.append(('train', '18', _post('   ', 'python')))
  add('test', '18', 2, 'python')
  return rows


class StackOverflowTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.cache_dir = self.create_tempdir().full_path
    fake_sources.write_tff_sqlite(
        os.path.join(self.cache_dir, stackoverflow.FILENAME), _rows())

  def test_splits(self):
    raw = stackoverflow.load(self.cache_dir, top_tags=10,
                             min_words_per_client=10)
    self.assertEqual(sorted(raw.clients), ['10', '11', '12', '18'])
    self.assertEqual(raw.dropped_clients, 3)  # 14, 15, 16.
    c10 = raw.clients['10']
    self.assertEqual(c10.train, [_words('10train', i) for i in range(6)] +
                     [_words('10train', i) for i in range(3)])
    self.assertEqual(c10.validation, [_words('10train', 3)])
    self.assertEqual(c10.test, [_words('10test', i) for i in range(2)])
    c11 = raw.clients['11']
    self.assertEqual(c11.train, [_words('11train', i) for i in range(3)])
    self.assertEqual(c11.validation,
                     [_words('11heldout', i) for i in range(2)])
    self.assertEqual(c11.test, [_words('11test', 0)])
    c18 = raw.clients['18']
    self.assertEqual(len(c18.train), 3)
    self.assertEqual(c18.validation, [_words('18train', 3)])

  def test_groups_by_most_frequent_tag(self):
    raw = stackoverflow.load(self.cache_dir, top_tags=10,
                             min_words_per_client=10)
    self.assertEqual(raw.client_to_group,
                     {'10': 'python', '11': 'java', '12': 'a', '18': 'python'})
    self.assertEqual(raw.source_groups, ('a', 'java', 'python'))

  def test_top_tags_map_the_rest_to_other(self):
    # Clients per tag: python 2, then a and java 1 each (a wins the tie).
    raw = stackoverflow.load(self.cache_dir, top_tags=1,
                             min_words_per_client=10)
    self.assertEqual(raw.client_to_group, {
        '10': 'python', '11': 'other', '12': 'other', '18': 'python'})
    raw = stackoverflow.load(self.cache_dir, top_tags=2,
                             min_words_per_client=10)
    self.assertEqual(raw.client_to_group, {
        '10': 'python', '11': 'other', '12': 'a', '18': 'python'})

  def test_min_words(self):
    raw = stackoverflow.load(self.cache_dir, top_tags=10,
                             min_words_per_client=3)
    self.assertIn('14', raw.clients)
    raw = stackoverflow.load(self.cache_dir, top_tags=10,
                             min_words_per_client=30)
    # 10: 60 words, 11: 30, 12: 15, 18: 30.
    self.assertEqual(sorted(raw.clients), ['10', '11', '18'])
    self.assertEqual(raw.dropped_clients, 4)

  def test_max_clients(self):
    raw = stackoverflow.load(self.cache_dir, top_tags=10,
                             min_words_per_client=10, max_clients=2)
    self.assertEqual(sorted(raw.clients), ['10', '11'])
    self.assertEqual(raw.dropped_clients, 0)

  def test_no_eligible_client(self):
    with self.assertRaisesRegex(DataError, 'no client has train, validation'):
      stackoverflow.load(self.cache_dir, top_tags=10,
                         min_words_per_client=1000)

  def test_bad_top_tags(self):
    with self.assertRaisesRegex(DataError, '--top_tags must be at least 1'):
      stackoverflow.load(self.cache_dir, top_tags=0, min_words_per_client=1)

  def test_missing_file_says_where_to_put_it(self):
    empty = self.create_tempdir().full_path
    path = os.path.join(empty, 'stackoverflow.sqlite')
    with self.assertRaises(DataError) as raised:
      stackoverflow.load(empty, top_tags=10, min_words_per_client=1)
    message = str(raised.exception)
    self.assertStartsWith(message, f'{path}: not found')
    self.assertIn('stackoverflow.sqlite.lzma', message)
    self.assertIn('unxz', message)
    self.assertIn('put stackoverflow.sqlite in that folder', message)
    self.assertEqual(os.listdir(empty), [])

  def test_row_order(self):
    # Rows in reverse: each client's posts come back in the file's order.
    path = os.path.join(self.create_tempdir().full_path,
                        stackoverflow.FILENAME)
    fake_sources.write_tff_sqlite(path, _rows()[::-1])
    raw = stackoverflow.load(os.path.dirname(path), top_tags=10,
                             min_words_per_client=10)
    self.assertEqual(raw.clients['11'].train,
                     [_words('11train', i) for i in (2, 1, 0)])
    self.assertEqual(raw.clients['11'].validation,
                     [_words('11heldout', i) for i in (1, 0)])

  def test_same_posts_as_tff(self):
    # The one-pass reader returns the posts TFF's ClientData returns per client.
    path = os.path.join(self.create_tempdir().full_path,
                        stackoverflow.FILENAME)
    fake_sources.write_tff_sqlite(path, _rows()[::-1])
    raw = stackoverflow.load(os.path.dirname(path), top_tags=10,
                             min_words_per_client=0)
    train, heldout, test = tff.simulation.datasets.stackoverflow.load_data(
        cache_dir=os.path.dirname(path))

    def texts(data, client_id):
      return [t for t in (e['tokens'].numpy().decode('utf-8') for e in
                          data.create_tf_dataset_for_client(client_id))
              if t.strip()]

    self.assertNotEmpty(raw.clients)
    for client_id, splits in raw.clients.items():
      self.assertEqual(splits.test, texts(test, client_id))
      if client_id in heldout.client_ids:
        self.assertEqual(splits.train, texts(train, client_id))
        self.assertEqual(splits.validation, texts(heldout, client_id))
      else:
        self.assertEqual(splits.train + splits.validation,
                         texts(train, client_id))

  def test_corrupt_example(self):
    for proto, problem in [(b'\xff\xfe garbage', 'DecodeError'),
                           (_post('ok', 'python')[:-4], 'DecodeError'),
                           (tf.train.Example().SerializeToString(),
                            "no single string feature 'tokens'")]:
      directory = self.create_tempdir().full_path
      rows = _rows() + [('test', '12', proto)]
      fake_sources.write_tff_sqlite(
          os.path.join(directory, stackoverflow.FILENAME), rows)
      with self.assertRaisesRegex(
          DataError, "client '12', split 'test': not a Stack Overflow "
          f'tf.train.Example .*{problem}'):
        stackoverflow.load(directory, top_tags=10, min_words_per_client=1)

  def test_missing_table(self):
    directory = self.create_tempdir().full_path
    with contextlib.closing(sqlite3.connect(
        os.path.join(directory, stackoverflow.FILENAME))) as connection:
      connection.execute('CREATE TABLE examples (client_id TEXT)')
    with self.assertRaisesRegex(
        DataError, 'not a readable TFF Stack Overflow database.*'
        'no such table: client_metadata'):
      stackoverflow.load(directory, top_tags=10, min_words_per_client=1)

  def test_corrupt_file(self):
    bad = self.create_tempdir()
    bad.create_file('stackoverflow.sqlite', os.urandom(4096), mode='wb')
    with self.assertRaisesRegex(
        DataError, 'not a readable TFF Stack Overflow database'):
      stackoverflow.load(bad.full_path, top_tags=10, min_words_per_client=1)


if __name__ == '__main__':
  tf.test.main()
