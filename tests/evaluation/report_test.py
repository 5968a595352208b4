"""Tests of the files an experiment writes."""

import csv
import glob
import json
import math
import os

import tensorflow as tf

from gpfl_tff.evaluation import report
from gpfl_tff.evaluation import summary

_GROUPS = {'a1': 'a', 'a2': 'a', 'b1': 'b'}
_TRAIN_TOKENS = {'a1': 50, 'a2': 10, 'b1': 30}


def _sums(mean_loss, token_count=10.0, correct=3.0):
  return {'loss_sum': mean_loss * token_count, 'token_count': token_count,
          'correct_count': correct, 'word_count': token_count - 2,
          'word_correct_count': correct - 1}


def _client_sums():
  return {
      'fl': {'a1': _sums(2.0), 'a2': _sums(2.0), 'b1': _sums(3.0)},
      'perfl': {'a1': _sums(1.5), 'a2': _sums(2.5), 'b1': _sums(2.0)},
      'groupperfl': {'a1': _sums(1.0), 'a2': _sums(1.5), 'b1': _sums(1.0)},
  }


def _results(client_sums):
  reference = {c: summary.perplexity(s) for c, s in client_sums['fl'].items()}
  return {
      'methods': {
          m: {'test': summary.summarize(sums, _GROUPS, _TRAIN_TOKENS,
                                        reference),
              'stages': ['global']}
          for m, sums in client_sums.items()},
      'eval_split': 'test',
      'groups_kept_start': ['b'],
      'stage_runs': {'global': 1},
      'seconds': {'total': 1.0},
      'dataset': {'config': {'dataset': 'text_corpus', 'group_by': 'group_id'},
                  'num_clients': 3, 'num_groups': 2},
  }


_HISTORY = {
    'global': [{'round': 1, 'train_perplexity': 9.0},
               {'round': 2, 'train_perplexity': 7.0}],
    'group/a': [{'round': 1, 'train_perplexity': 5.0}],
}


def _scalars(run_dir):
  """step -> train_perplexity written in one TensorBoard run folder."""
  values = {}
  for path in glob.glob(os.path.join(run_dir, 'events.out.tfevents.*')):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == 'train_perplexity':
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


class WriteAllTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.output_dir = os.path.join(self.create_tempdir().full_path, 'out')
    self.client_sums = _client_sums()
    self.results = _results(self.client_sums)
    report.write_all(self.output_dir, self.results, self.client_sums,
                     _GROUPS, _TRAIN_TOKENS, _HISTORY)

  def test_results_json(self):
    with open(os.path.join(self.output_dir, 'results.json'),
              encoding='utf-8') as f:
      written = json.load(f)
    self.assertEqual(sorted(written['methods']),
                     ['fl', 'groupperfl', 'perfl'])
    test = written['methods']['groupperfl']['test']
    # Token-weighted over clients: mean loss (1 + 1.5 + 1) / 3.
    self.assertAlmostEqual(test['perplexity'], math.exp(3.5 / 3))
    # Words: 8 targets, 2 hits per client; all targets: 10 and 3.
    self.assertAlmostEqual(test['accuracy'], 0.25)
    self.assertAlmostEqual(test['accuracy_with_oov_eos'], 0.3)
    self.assertAlmostEqual(test['per_group']['b']['perplexity'], math.exp(1.0))
    self.assertAlmostEqual(test['client_perplexity']['max'], math.exp(1.5))
    self.assertEqual(test['share_better_than_fl'], 1.0)
    self.assertEqual(written['groups_kept_start'], ['b'])

  def test_clients_csv(self):
    with open(os.path.join(self.output_dir, 'clients.csv'),
              encoding='utf-8') as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, 3 * 3)  # methods x clients
    self.assertEqual([(r['method'], r['client_id']) for r in rows[:3]],
                     [('fl', 'a1'), ('fl', 'a2'), ('fl', 'b1')])
    row = next(r for r in rows
               if r['method'] == 'perfl' and r['client_id'] == 'a2')
    self.assertEqual(row['group'], 'a')
    self.assertEqual(row['train_tokens'], '10')
    self.assertEqual(row['token_count'], '10')
    self.assertAlmostEqual(float(row['loss_sum']), 25.0)
    self.assertAlmostEqual(float(row['perplexity']), math.exp(2.5), places=5)

  def test_no_unseen_clients_csv_without_unseen_clients(self):
    self.assertFalse(os.path.exists(
        os.path.join(self.output_dir, 'unseen_clients.csv')))

  def test_unseen_clients_csv_in_the_columns_of_clients_csv(self):
    output_dir = os.path.join(self.create_tempdir().full_path, 'unseen')
    unseen = {m: {'b1': sums['b1']} for m, sums in self.client_sums.items()}
    seen = {m: {c: v for c, v in sums.items() if c != 'b1'}
            for m, sums in self.client_sums.items()}
    report.write_all(output_dir, self.results, seen, _GROUPS,
                     {'a1': 20, 'a2': 10}, _HISTORY,
                     unseen_sums=unseen, unseen_tokens={'b1': 30})
    files = {}
    for name in ('clients.csv', 'unseen_clients.csv'):
      with open(os.path.join(output_dir, name), encoding='utf-8') as f:
        files[name] = list(csv.DictReader(f))
    self.assertEqual({r['client_id'] for r in files['clients.csv']},
                     {'a1', 'a2'})
    rows = files['unseen_clients.csv']
    self.assertEqual([(r['method'], r['client_id'], r['group'],
                       r['train_tokens']) for r in rows],
                     [(m, 'b1', 'b', '30') for m in self.client_sums])
    self.assertEqual(list(rows[0]), list(files['clients.csv'][0]))

  def test_summary_markdown(self):
    with open(os.path.join(self.output_dir, 'summary.md'),
              encoding='utf-8') as f:
      text = f.read()
    self.assertIn('# Methods on text_corpus grouped by group_id', text)
    self.assertIn(report.methods_table(self.results), text)
    lines = text.splitlines()
    self.assertIn('| method | test perplexity | accuracy | client ppl median '
                  '| p10 | p90 | share better than fl | vs groupperfl '
                  '[95% CI] | rounds | client updates |', lines)
    fl_row = next(l for l in lines if l.startswith('| fl | '))
    self.assertStartsWith(fl_row, f'| fl | {math.exp(7 / 3):.2f} | 0.2500 |')
    self.assertIn('kept their start weights: b', text)
    self.assertIn('## Perplexity by quartile of client training data', text)

  def test_tensorboard_curves(self):
    directory = os.path.join(self.output_dir, 'tensorboard')
    self.assertCountEqual(os.listdir(directory), ['global', 'group_a'])
    self.assertEqual(_scalars(os.path.join(directory, 'global')),
                     {1: 9.0, 2: 7.0})
    self.assertEqual(_scalars(os.path.join(directory, 'group_a')), {1: 5.0})

  def test_figure_is_a_png(self):
    path = os.path.join(self.output_dir, 'client_perplexity.png')
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    self.assertGreater(os.path.getsize(path), 1000)

  def test_figure_without_groupperfl(self):
    path = os.path.join(self.create_tempdir().full_path, 'fl_only.png')
    report.write_figure(path, {'fl': self.client_sums['fl']}, _TRAIN_TOKENS)
    self.assertTrue(os.path.isfile(path))


if __name__ == '__main__':
  tf.test.main()
