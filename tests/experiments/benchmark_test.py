"""experiments/benchmark.py on a tiny corpus: its outputs, not its speed."""

import json
import os

from absl.testing import absltest

from tests.learning import synthetic
from tests.prepare import prepare_runner


class BenchmarkTest(absltest.TestCase):

  def test_writes_benchmark_json_and_ends_with_the_ratio(self):
    root = self.create_tempdir().full_path
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), {'a': 3, 'b': 2})
    output = os.path.join(root, 'out', 'benchmark.json')
    run = prepare_runner.run_module(
        'experiments.benchmark', '--dataset=text_corpus', f'--input={corpus}',
        f'--cache_dir={os.path.join(root, "cache")}', '--vocab_size=20',
        '--reps=2', '--local_clients=3', '--clients_per_round=2',
        f'--output={output}', timeout=600)
    self.assertEqual(run.returncode, 0, run.stderr)
    lines = run.stdout.strip().splitlines()
    last = lines[-1]
    self.assertTrue(last.startswith('tff_over_plain_tf_ratio='), last)
    ratio = float(last.split('=')[1])
    with open(output) as f:
      result = json.load(f)
    self.assertAlmostEqual(result['tff_over_plain_tf_ratio'], ratio,
                           places=3)
    self.assertEqual(sorted(result['stages']), ['global', 'group', 'local'])
    stage_lines = [l for l in lines if l.startswith('stage=')]
    self.assertLen(stage_lines, 3)
    for line in stage_lines:
      fields = dict(f.split('=') for f in line.split())
      self.assertCountEqual(fields, ['stage', 'tff_s', 'plain_s', 'ratio',
                                     'tff_gflops', 'peak_gflops'])
      stage = result['stages'][fields['stage']]
      self.assertLen(stage['tff_seconds']['all'], 2)
      self.assertLen(stage['plain_tf_seconds']['all'], 2)
      self.assertAlmostEqual(float(fields['ratio']), stage['ratio'], places=3)
      self.assertTrue(all(f > 0 for f in stage['flops']))
      self.assertGreater(stage['tff_gflops'], 0.0)
    # The last line is the worst stage.
    self.assertAlmostEqual(
        ratio, max(s['ratio'] for s in result['stages'].values()), places=3)
    self.assertGreater(result['peak_gflops'], 0.0)

  def test_benchmark_workers_times_both_stages_and_checks_results(self):
    root = self.create_tempdir().full_path
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), {'a': 3, 'b': 2})
    output = os.path.join(root, 'workers.json')
    run = prepare_runner.run_module(
        'experiments.benchmark_workers', '--dataset=text_corpus',
        f'--input={corpus}', f'--cache_dir={os.path.join(root, "cache")}',
        '--vocab_size=20', '--reps=1', '--group_rounds=2',
        '--global_rounds=2', '--clients_per_round=2', f'--output={output}',
        timeout=600)
    self.assertEqual(run.returncode, 0, run.stderr)
    with open(output) as f:
      result = json.load(f)
    lines = run.stdout.strip().splitlines()
    self.assertLen(lines, 2)
    for line, stage in zip(lines, ('group', 'global_split')):
      self.assertStartsWith(line, f'stage={stage} workers=1 s=')
      speedup = float(line.split('speedup=')[1])
      self.assertAlmostEqual(speedup, result[stage]['speedup'], places=2)
      self.assertLen(result[stage]['seconds']['2'], 1)


if __name__ == '__main__':
  absltest.main()
