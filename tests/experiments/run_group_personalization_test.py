"""End-to-end test of experiments/run_group_personalization.py, as a user runs it.

The binary runs twice with the same flags and seed on a small JSON Lines corpus
(two groups with disjoint words, see `tests.learning.synthetic`), into two
output folders; the tests compare the two and check every output file.
"""

import csv
import json
import math
import os
import tempfile
import uuid

from absl.testing import absltest
import tensorflow as tf

from gpfl_tff.learning import methods as methods_lib
from tests.learning import synthetic
from tests.prepare import prepare_runner

_MODULE = 'experiments.run_group_personalization'
_CLIENTS_PER_GROUP = {'a': 3, 'b': 3}
_OUTPUT_FILES = ('results.json', 'clients.csv', 'summary.md', 'progress.log',
                 'client_perplexity.png', 'validation_curves.png',
                 'small_data.png')
_MARKER = prepare_runner.MARKER
# --methods=all without --subgroups: every method but the subgroup ones.
_ALL = [m for m in methods_lib.METHODS if not methods_lib.needs_subgroups(m)]


class RunGroupPersonalizationTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), _CLIENTS_PER_GROUP)
    flags = ('--dataset=text_corpus', f'--input={corpus}',
             f'--cache_dir={os.path.join(root, "cache")}', '--vocab_size=30',
             '--global_rounds=2', '--group_rounds=1', '--clients_per_round=3',
             '--finetune_epochs=1', '--batch_size=4', '--seed=3')
    cls.output_dirs = [os.path.join(root, f'run{i}') for i in (1, 2)]
    cls.runs, cls.survivors = [], []
    for output_dir in cls.output_dirs:
      marker = uuid.uuid4().hex
      cls.runs.append(prepare_runner.run_module(
          _MODULE, *flags, f'--output_dir={output_dir}', timeout=600,
          env={_MARKER: marker}))
      cls.survivors.append(prepare_runner.marked_processes(marker))
    cls.results = []
    for output_dir in cls.output_dirs:
      path = os.path.join(output_dir, 'results.json')
      if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
          cls.results.append(json.load(f))

  def test_runs_succeed(self):
    for run in self.runs:
      self.assertEqual(run.returncode, 0, run.stderr)
    self.assertLen(self.results, 2)
    self.assertIn('| groupperfl |', self.runs[0].stdout)
    self.assertIn(f'outputs in {self.output_dirs[0]}/', self.runs[0].stdout)

  def test_no_worker_outlives_the_binary(self):
    self.assertEqual(self.survivors, [[], []])

  def test_results_json_has_every_method(self):
    methods = self.results[0]['methods']
    self.assertCountEqual(methods, _ALL)
    for name in _ALL:
      test = methods[name]['test']
      numbers = [test['perplexity'], test['accuracy']]
      numbers += [test['client_perplexity'][k]
                  for k in ('mean', 'median', 'p10', 'p90', 'max')]
      self.assertCountEqual(test['per_group'], ['a', 'b'])
      numbers += [test['per_group'][g]['perplexity'] for g in ('a', 'b')]
      for value in numbers:
        self.assertTrue(math.isfinite(value), (name, test))
      # Over 34 token ids, a model starting from random weights is near 34.
      self.assertBetween(test['perplexity'], 1.0, 100.0)
      self.assertIn('budget', methods[name])
      self.assertBetween(test['accuracy'], 0.0, 1.0)
      # The report clients: 3 per group less round(0.2 * 3) tuning clients.
      self.assertEqual(test['clients'], 4)
    paired = self.results[0]['paired']
    self.assertCountEqual(paired, [m for m in _ALL
                                   if m != 'groupperfl'])
    for result in paired.values():
      self.assertLessEqual(result['ci_low'], result['ci_high'])
      self.assertEqual(result['clients'], 4)
    self.assertEqual(self.results[0]['methods']['unigram']['budget']
                     ['client_updates'], 0)
    self.assertEqual(self.results[0]['stage_runs'],
                     {name: 1 for name in self.results[0]['stage_runs']})

  def test_results_json_records_the_machine_and_packages(self):
    environment = self.results[0]['environment']
    self.assertEqual(environment['packages']['tensorflow'], tf.__version__)
    self.assertEqual(environment['cpu_count'], os.cpu_count())
    self.assertTrue(environment['cpu'])

  def test_same_seed_gives_the_same_metrics(self):
    first, second = (r['methods'] for r in self.results)
    self.assertEqual(first, second)
    # Not trivially equal: the methods themselves differ.
    self.assertNotEqual(first['fl']['test']['perplexity'],
                        first['groupfl']['test']['perplexity'])

  def test_output_files(self):
    for output_dir in self.output_dirs:
      for name in _OUTPUT_FILES:
        self.assertTrue(os.path.isfile(os.path.join(output_dir, name)), name)
      events = tf.io.gfile.glob(os.path.join(
          output_dir, 'tensorboard', '*', 'events.out.tfevents.*'))
      runs = {os.path.basename(os.path.dirname(e)) for e in events}
      self.assertContainsSubset({'global', 'group_a', 'group_b'}, runs)
    with open(os.path.join(self.output_dirs[0], 'clients.csv'),
              encoding='utf-8') as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, len(_ALL) * 4)
    with open(os.path.join(self.output_dirs[0], 'summary.md'),
              encoding='utf-8') as f:
      summary_md = f.read()
    for name in _ALL:
      self.assertIn(f'| {name} | ', summary_md)
    # The progress log has every step, whatever the display.
    with open(os.path.join(self.output_dirs[0], 'progress.log'),
              encoding='utf-8') as f:
      log = f.read()
    self.assertIn('] global: 2/2 (run time left', log)
    self.assertIn('] group/a: 1/1 (run time left', log)
    self.assertTrue(log.rstrip().endswith('done'), log[-200:])

  def test_bad_methods_flag(self):
    run = prepare_runner.run_module(_MODULE, '--methods=bogus', timeout=120)
    self.assertEqual(run.returncode, 2, run.stderr)
    self.assertLen(run.stderr_lines, 1, run.stderr)
    self.assertStartsWith(run.stderr_lines[0], 'error: ')
    self.assertIn('bogus', run.stderr_lines[0])


if __name__ == '__main__':
  tf.test.main()
