"""End-to-end test of data/prepare.py on a small JSON Lines corpus."""

import json
import os

import tensorflow as tf

from tests.prepare import prepare_runner


def _write_corpus(path):
  """Four articles in two groups, five paragraphs each."""
  with open(path, 'w', encoding='utf-8') as f:
    for group, clients in (('sport', ['s1', 's2']), ('tech', ['t1', 't2'])):
      for client in clients:
        for i in range(5):
          text = f'The {group} story of {client}, paragraph {i}: ' + (
              'more words here. ' * (i + 1))
          f.write(json.dumps({'client_id': client, 'group_id': group,
                              'text': text}) + '\n')


class PrepareBinaryTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.corpus = os.path.join(self.root, 'corpus.jsonl')
    _write_corpus(self.corpus)
    self.cache_dir = os.path.join(self.root, 'cache')

  def test_writes_dataset_and_prints_statistics(self):
    output_dir = os.path.join(self.root, 'out')
    result = prepare_runner.run_prepare(
        '--dataset=text_corpus', f'--input={self.corpus}',
        f'--output_dir={output_dir}', f'--cache_dir={self.cache_dir}',
        '--vocab_size=12', '--min_words_per_client=20')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stderr_lines, [])  # No stray TensorFlow logs.
    self.assertCountEqual(
        os.listdir(output_dir),
        ['train.sqlite', 'validation.sqlite', 'test.sqlite', 'groups.json',
         'vocab.txt', 'stats.json'])

    with open(os.path.join(output_dir, 'stats.json'), encoding='utf-8') as f:
      stats = json.load(f)
    self.assertEqual(stats['num_clients'], 4)
    self.assertEqual(stats['num_groups'], 2)
    self.assertEqual(stats['clients_per_group'], {'sport': 2, 'tech': 2})
    # Words per paragraph i: 7 + 3 * (i + 1); per client 35 + 45 = 80.
    self.assertEqual(stats['words_per_client'],
                     {'min': 80, 'median': 80, 'max': 80})
    self.assertEqual(stats['vocab_size'], 12)
    self.assertBetween(stats['oov_rate'], 0.0, 1.0)
    self.assertEqual(stats['oov_rate_split'], 'test')

    lines = result.stdout.splitlines()
    self.assertEqual(lines[0],
                     f'dataset text_corpus grouped by group_id: {output_dir}')
    table = {line[:line.rindex('  ')].strip(): line[line.rindex('  '):].strip()
             for line in lines[1:]}
    self.assertEqual(table['clients'], '4')
    self.assertEqual(table['groups'], '2')
    self.assertEqual(table['dropped clients'], '0')
    self.assertEqual(table['words per client (min/median/max)'],
                     '80 / 80 / 80')
    self.assertEqual(table['examples per client (min/median/max)'],
                     '5 / 5 / 5')
    # Train: paragraphs 0-2 of each client, 4 x (3 x 7 + 3 x (1 + 2 + 3)).
    self.assertEqual(table['train examples / words'], '12 / 156')
    self.assertEqual(table['vocabulary size'], '12')
    self.assertEqual(table['oov rate (test)'], f"{stats['oov_rate']:.4f}")
    self.assertEqual(table['clients in sport'], '2')
    self.assertEqual(table['clients in tech'], '2')

  def test_default_output_dir_is_cached(self):
    flags = ('--dataset=text_corpus', f'--input={self.corpus}',
             f'--cache_dir={self.cache_dir}', '--min_words_per_client=20')
    first = prepare_runner.run_prepare(*flags)
    self.assertEqual(first.returncode, 0, first.stderr)
    prepared = os.listdir(os.path.join(self.cache_dir, 'prepared'))
    self.assertLen(prepared, 1)
    self.assertStartsWith(prepared[0], 'text_corpus-group_id-')
    stats_path = os.path.join(self.cache_dir, 'prepared', prepared[0],
                              'stats.json')
    mtime = os.stat(stats_path).st_mtime_ns
    second = prepare_runner.run_prepare(*flags)
    self.assertEqual(second.returncode, 0, second.stderr)
    self.assertEqual(second.stdout, first.stdout)
    self.assertEqual(os.stat(stats_path).st_mtime_ns, mtime)


if __name__ == '__main__':
  tf.test.main()
