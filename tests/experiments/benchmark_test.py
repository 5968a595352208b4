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
        '--rounds=2', '--group_rounds=1', '--clients_per_round=2',
        f'--output={output}', timeout=600)
    self.assertEqual(run.returncode, 0, run.stderr)
    last = run.stdout.strip().splitlines()[-1]
    self.assertTrue(last.startswith('tff_over_plain_tf_ratio='), last)
    ratio = float(last.split('=')[1])
    with open(output) as f:
      result = json.load(f)
    self.assertAlmostEqual(result['tff_over_plain_tf_ratio'], ratio,
                           places=3)
    self.assertLen(result['global_round_seconds']['tff'], 2)
    self.assertLen(result['global_round_seconds']['plain_tf'], 2)
    self.assertGreater(ratio, 0.0)
    self.assertEqual(sorted(result['group_stage_seconds']), ['a', 'b'])
    self.assertLen(result['tokens_per_round'], 2)
    self.assertTrue(all(t > 0 for t in result['tokens_per_round']))


if __name__ == '__main__':
  absltest.main()
