"""Tests of gpfl_tff.data.client_data: split rule, statistics, save and load."""

import contextlib
import os
import sqlite3

from absl.testing import parameterized
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.data import client_data
from gpfl_tff.data.errors import DataError


def _examples(n):
  return [f'example {i}' for i in range(n)]


def _tiny_raw():
  """Three kept clients in two groups, one client dropped."""
  examples = {
      'alice': ['a b c', 'd e', 'f', 'g h'],  # 8 words, 4 examples.
      'bob': ['x y', 'z', 'w'],  # 4 words, 3 examples.
      'carol': ['one two three', 'four', 'five six'],  # 6 words.
      'dan': ['too few'],  # 1 example: dropped.
  }
  groups = {'alice': 'g1', 'bob': 'g2', 'carol': 'g1', 'dan': 'g2'}
  return client_data.build_raw(examples, groups, min_words_per_client=1)


def _table(path, table):
  """The columns and the rows (rowid order) of one table of a SQLite file."""
  with contextlib.closing(sqlite3.connect(path)) as connection:
    columns = connection.execute(f'PRAGMA table_info({table})').fetchall()
    rows = connection.execute(
        f'SELECT rowid, * FROM {table} ORDER BY rowid').fetchall()
  return columns, rows


class SplitRuleTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(
      # n, expected (train, validation, test) sizes; round() is Python's.
      (3, (1, 1, 1)),
      (4, (2, 1, 1)),
      (10, (8, 1, 1)),
      (14, (12, 1, 1)),  # round(1.4) = 1.
      (15, (11, 2, 2)),  # round(1.5) = 2.
      (20, (16, 2, 2)),
      (25, (21, 2, 2)),  # round(2.5) = 2 (half to even).
      (35, (27, 4, 4)),  # round(3.5) = 4.
      (100, (80, 10, 10)),
  )
  def test_sizes(self, n, expected):
    held_out = max(1, round(0.1 * n))
    self.assertEqual(expected, (n - 2 * held_out, held_out, held_out))
    splits = client_data.split_examples(_examples(n))
    self.assertEqual(
        (len(splits.train), len(splits.validation), len(splits.test)),
        expected)

  @parameterized.parameters(10, 14, 37)
  def test_order_is_preserved(self, n):
    examples = _examples(n)
    splits = client_data.split_examples(examples)
    self.assertEqual(splits.train + splits.validation + splits.test, examples)
    self.assertEqual(splits.test, examples[-len(splits.test):])

  @parameterized.parameters(0, 1, 2)
  def test_too_few_examples(self, n):
    self.assertIsNone(client_data.split_examples(_examples(n)))

  def test_min_examples_per_split(self):
    self.assertIsNone(client_data.split_examples(_examples(5), 2))
    splits = client_data.split_examples(_examples(6), 2)
    self.assertEqual([len(splits.train), len(splits.validation),
                      len(splits.test)], [2, 2, 2])
    splits = client_data.split_examples(_examples(40), 3)
    self.assertEqual([len(splits.train), len(splits.validation),
                      len(splits.test)], [32, 4, 4])

  def test_count_words(self):
    self.assertEqual(client_data.count_words(['a b  c', ' d\te ', '']), 5)


class BuildRawTest(tf.test.TestCase):

  def test_drops_and_counts(self):
    examples = {
        'c1': ['w ' * 10] * 3,  # 30 words, 3 examples: kept.
        'c2': ['w ' * 50] * 2,  # 100 words, too few examples: dropped.
        'c3': ['w'] * 5,  # 5 words, too few words: dropped.
        'c4': ['w w'] * 10,  # 20 words, exactly the minimum: kept.
    }
    groups = {'c1': 'g', 'c2': 'g', 'c3': 'h', 'c4': 'h'}
    raw = client_data.build_raw(examples, groups, min_words_per_client=20)
    self.assertEqual(sorted(raw.clients), ['c1', 'c4'])
    self.assertEqual(raw.dropped_clients, 2)
    self.assertEqual(raw.client_to_group, {'c1': 'g', 'c4': 'h'})
    self.assertEqual(raw.source_groups, ('g', 'h'))
    self.assertEqual(len(raw.clients['c4'].train), 8)

  def test_group_without_eligible_client_is_an_error(self):
    examples = {'c1': ['a b c'] * 3, 'c2': ['a']}
    groups = {'c1': 'kept', 'c2': 'lonely'}
    with self.assertRaisesRegex(DataError,
                                "corpus.jsonl: group 'lonely' has no eligible"):
      client_data.build_raw(examples, groups, min_words_per_client=2,
                            source_name='corpus.jsonl')


class StatisticsTest(tf.test.TestCase):

  def test_keys_and_values(self):
    raw = _tiny_raw()
    stats = client_data.statistics(raw, ['a', 'x', 'five'])
    self.assertEqual(stats['num_clients'], 3)
    self.assertEqual(stats['num_groups'], 2)
    self.assertEqual(stats['dropped_clients'], 1)
    self.assertEqual(stats['clients_per_group'], {'g1': 2, 'g2': 1})
    self.assertEqual(stats['examples_per_client'],
                     {'min': 3, 'median': 3, 'max': 4})
    self.assertEqual(stats['words_per_client'],
                     {'min': 4, 'median': 6, 'max': 8})
    # alice: train [a b c, d e], validation [f], test [g h];
    # bob: x y / z / w; carol: one two three / four / five six.
    self.assertEqual(stats['examples_per_split'],
                     {'train': 4, 'validation': 3, 'test': 3})
    self.assertEqual(stats['words_per_split'],
                     {'train': 10, 'validation': 3, 'test': 5})
    self.assertEqual(stats['vocab_size'], 3)
    # Test words: g h | w | five six -> only "five" is known.
    self.assertAllClose(stats['oov_rate'], 4 / 5)
    self.assertEqual(stats['oov_rate_split'], 'test')


class SaveLoadTest(tf.test.TestCase):

  def test_round_trip(self):
    raw = _tiny_raw()
    vocabulary = ['a', 'b', "o'clock", 'é']
    stats = client_data.statistics(raw, vocabulary)
    directory = os.path.join(self.create_tempdir().full_path, 'prepared')
    client_data.save(raw, vocabulary, stats, directory)
    self.assertCountEqual(
        os.listdir(directory),
        ['train.sqlite', 'validation.sqlite', 'test.sqlite', 'groups.json',
         'vocab.txt', 'stats.json'])

    data = client_data.load(directory)
    self.assertEqual(data.client_ids, ['alice', 'bob', 'carol'])
    self.assertEqual(data.client_to_group, raw.client_to_group)
    self.assertEqual(data.groups, ['g1', 'g2'])
    self.assertEqual(data.vocabulary, vocabulary)
    self.assertEqual(data.stats, stats)
    for split in client_data.SPLITS:
      self.assertEqual(data.split(split).client_ids, data.client_ids)
      self.assertEqual(data.split(split).element_type_structure,
                       client_data.ELEMENT_SPEC)
      for client_id, splits in raw.clients.items():
        texts = [e['text'].numpy().decode('utf-8') for e in
                 data.split(split).create_tf_dataset_for_client(client_id)]
        self.assertEqual(texts, getattr(splits, split), (split, client_id))

  def test_writer_matches_tff(self):
    """The direct writer stores what TFF's save_to_sql_client_data stores."""
    raw = client_data.RawGroupedData(
        clients={
            'b': client_data.ClientSplits(['x y', 'é ü'], [], ['z']),
            'a': client_data.ClientSplits(['one', "it's"], ['two'], ['']),
            'c/d': client_data.ClientSplits(['3'], ['4', '5'], ['6']),
        },
        client_to_group={'a': 'g', 'b': 'g', 'c/d': 'h'})
    root = self.create_tempdir().full_path
    for split in client_data.SPLITS:
      ours = os.path.join(root, f'ours-{split}.sqlite')
      tffs = os.path.join(root, f'tff-{split}.sqlite')
      client_data._save_split(raw, split, ours)
      tff.simulation.datasets.save_to_sql_client_data(
          sorted(raw.clients),
          lambda c, s=split: tf.data.Dataset.from_tensor_slices({'text': (
              tf.constant(getattr(raw.clients[c], s), dtype=tf.string))}),
          tffs)
      for table in ('examples', 'client_metadata'):
        self.assertEqual(_table(ours, table), _table(tffs, table),
                         (split, table))
      self.assertNotEmpty(_table(ours, 'examples')[1])
      parsed = tff.simulation.datasets.load_and_parse_sql_client_data(
          ours, client_data.ELEMENT_SPEC)
      self.assertEqual(parsed.client_ids, ['a', 'b', 'c/d'])
      for client_id in parsed.client_ids:
        texts = [e['text'].numpy().decode('utf-8') for e in
                 parsed.create_tf_dataset_for_client(client_id)]
        self.assertEqual(texts, getattr(raw.clients[client_id], split))

  def test_clients_in_group(self):
    raw = _tiny_raw()
    directory = os.path.join(self.create_tempdir().full_path, 'prepared')
    client_data.save(raw, ['a'], client_data.statistics(raw, ['a']),
                     directory)
    data = client_data.load(directory)
    self.assertEqual(data.clients_in_group('g1'), ['alice', 'carol'])
    self.assertEqual(data.clients_in_group('g2'), ['bob'])
    with self.assertRaisesRegex(DataError, "unknown group 'g3'.*g1, g2"):
      data.clients_in_group('g3')

  def test_load_incomplete_folder(self):
    directory = self.create_tempdir()
    directory.create_file('train.sqlite')
    with self.assertRaisesRegex(DataError, 'not a prepared dataset'):
      client_data.load(directory.full_path)


if __name__ == '__main__':
  tf.test.main()
