"""data/synthetic_stackoverflow.py, run as a user would, read back.

The file must be in TFF's exact schema (TFF's own loader reads it), be the same
for the same --seed, be read by `stackoverflow.load` with the expected clients,
and the binary must refuse to overwrite a file.
"""

import contextlib
import os
import sqlite3

import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.data import stackoverflow
from tests.prepare import prepare_runner


def _generate(output_dir, *flags):
  return prepare_runner.run_module(
      'data.synthetic_stackoverflow', '--clients=50', '--posts=2000',
      f'--output_dir={output_dir}', *flags)


def _query(path, sql):
  with contextlib.closing(sqlite3.connect(path)) as connection:
    return connection.execute(sql).fetchall()


class SyntheticStackOverflowTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tf.compat.v1.test.get_temp_dir()
    cls.folder = os.path.join(cls.root, 'seed0')
    cls.result = _generate(cls.folder)
    cls.path = os.path.join(cls.folder, stackoverflow.FILENAME)

  def test_writes_the_file(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    self.assertEqual(_query(self.path, 'SELECT COUNT(*) FROM examples'),
                     [(2000,)])
    self.assertEqual(
        _query(self.path, 'SELECT COUNT(DISTINCT client_id) FROM examples'),
        [(50,)])
    # client_metadata counts every (client, split) of examples.
    self.assertEqual(
        _query(self.path, 'SELECT client_id, split_name, num_examples FROM '
               'client_metadata ORDER BY 1, 2'),
        _query(self.path, 'SELECT client_id, split_name, COUNT(*) FROM '
               'examples GROUP BY 1, 2 ORDER BY 1, 2'))

  def test_tff_reads_it(self):
    train, heldout, test = tff.simulation.datasets.stackoverflow.load_data(
        cache_dir=self.folder)
    self.assertNotEmpty(train.client_ids)
    self.assertNotEmpty(heldout.client_ids)
    self.assertNotEmpty(test.client_ids)
    # TFF's rule: held-out users (id 0 modulo 10) are in no other split.
    self.assertTrue(all(int(c) % 10 == 0 for c in heldout.client_ids))
    self.assertEmpty(set(heldout.client_ids) & set(train.client_ids))
    post = next(iter(train.create_tf_dataset_for_client(train.client_ids[0])))
    self.assertCountEqual(
        post.keys(),
        ['creation_date', 'score', 'tags', 'title', 'tokens', 'type'])
    self.assertEqual(post['score'].dtype, tf.int64)
    self.assertLess(post['creation_date'].numpy().decode(), '2018')
    words = post['tokens'].numpy().decode().split()
    self.assertBetween(len(words), 5, 100)

  def test_stackoverflow_load_reads_the_expected_clients(self):
    # Every post has tokens and tags, so a user with test posts and at least
    # two train posts (one stays train, one validates) is a client.
    expected = _query(self.path, """
        SELECT COUNT(*) FROM client_metadata AS train
        JOIN client_metadata AS test ON train.client_id = test.client_id
        WHERE train.split_name = 'train' AND train.num_examples >= 2
          AND test.split_name = 'test'""")[0][0]
    self.assertGreater(expected, 10)
    raw = stackoverflow.load(self.folder, top_tags=5, min_words_per_client=0)
    self.assertLen(raw.clients, expected)
    self.assertLen(set(raw.client_to_group.values()), 6)  # 5 tags and other.

  def test_same_seed_same_file_other_seed_other_file(self):
    again = os.path.join(self.root, 'seed0_again')
    other = os.path.join(self.root, 'seed1')
    self.assertEqual(_generate(again).returncode, 0)
    self.assertEqual(_generate(other, '--seed=1').returncode, 0)
    everything = 'SELECT * FROM examples ORDER BY rowid'
    rows = _query(self.path, everything)
    self.assertEqual(
        _query(os.path.join(again, stackoverflow.FILENAME), everything), rows)
    self.assertNotEqual(
        _query(os.path.join(other, stackoverflow.FILENAME), everything), rows)

  def test_refuses_to_overwrite(self):
    folder = self.create_tempdir()
    folder.create_file(stackoverflow.FILENAME, 'mine')
    result = _generate(folder.full_path)
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertEqual(result.stderr_lines, [
        f'error: {os.path.join(folder.full_path, stackoverflow.FILENAME)}: '
        'exists; refusing to overwrite it'])
    with open(os.path.join(folder.full_path, stackoverflow.FILENAME)) as f:
      self.assertEqual(f.read(), 'mine')
    self.assertEqual(os.listdir(folder.full_path), [stackoverflow.FILENAME])


if __name__ == '__main__':
  tf.test.main()
