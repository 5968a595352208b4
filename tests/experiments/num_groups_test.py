"""experiments/num_groups.py on a tiny corpus: its groupings and outputs."""

import json
import os

from absl.testing import absltest

from tests.learning import synthetic
from tests.prepare import prepare_runner


class NumGroupsTest(absltest.TestCase):

  def test_groupings_are_compared_with_random_and_written(self):
    root = self.create_tempdir().full_path
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), {'a': 4, 'b': 4, 'c': 3})
    out = os.path.join(root, 'out')
    run = prepare_runner.run_module(
        'experiments.num_groups', '--dataset=text_corpus',
        f'--input={corpus}', f'--cache_dir={os.path.join(root, "cache")}',
        '--vocab_size=30', '--global_rounds=4', '--group_rounds=3',
        '--clients_per_round=3', '--finetune_epochs=1', '--batch_size=4',
        '--num_groups=2,3', '--local_workers=2', f'--output_dir={out}',
        timeout=600)
    self.assertEqual(run.returncode, 0, run.stderr)
    with open(os.path.join(out, 'num_groups.json')) as f:
      result = json.load(f)
    rows = {(r['mode'], r['num_groups']): r for r in result['rows']}
    self.assertCountEqual(rows, [('given', 3), ('inferred', 2), ('random', 2),
                                 ('inferred', 3), ('random', 3)])
    # The synthetic groups have disjoint words: inference finds them.
    self.assertAlmostEqual(rows[('inferred', 3)]['adjusted_rand_index'], 1.0)
    self.assertEqual(rows[('given', 3)]['adjusted_rand_index'], 1.0)
    for key, row in rows.items():
      self.assertCountEqual(row['perplexity'], ['groupfl', 'groupperfl'])
      if key[0] == 'random':
        self.assertEqual(row['vs_random'], {})
      else:
        interval = row['vs_random']['groupfl']
        self.assertLessEqual(interval['ci_low'], interval['mean'])
    with open(os.path.join(out, 'num_groups.png'), 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    with open(os.path.join(out, 'num_groups.md')) as f:
      self.assertLen(f.read().strip().splitlines(), 2 + len(rows))

  def test_merge_combines_parts_and_refuses_mismatches(self):
    root = self.create_tempdir().full_path

    def row(mode, k, perplexity):
      return {'mode': mode, 'num_groups': k, 'adjusted_rand_index': 0.5,
              'perplexity': {'groupperfl': perplexity}, 'vs_random': {},
              'seconds': {}}

    def part(name, rows, **changes):
      result = {'dataset': 'text_corpus', 'group_by': 'group',
                'grouping_statistic': 'pearson', 'methods': ['groupperfl'],
                'evaluated_clients': 7, 'training': {'batch_size': 4},
                'stages': {'seed': 0}, 'rows': rows, **changes}
      directory = os.path.join(root, name)
      os.makedirs(directory)
      with open(os.path.join(directory, 'num_groups.json'), 'w') as f:
        json.dump(result, f)
      return directory

    a = part('a', [row('inferred', 6, 10.0), row('random', 6, 12.0)])
    b = part('b', [row('inferred', 2, 11.0), row('inferred', 6, 99.0)])
    out = os.path.join(root, 'merged')
    run = prepare_runner.run_module('experiments.num_groups',
                                    f'--merge={a},{b}', f'--output_dir={out}',
                                    timeout=120)
    self.assertEqual(run.returncode, 0, run.stderr)
    with open(os.path.join(out, 'num_groups.json')) as f:
      merged = json.load(f)
    # Sorted by K; the grouping in both parts is kept from the first.
    self.assertEqual(
        [(r['mode'], r['num_groups'], r['perplexity']['groupperfl'])
         for r in merged['rows']],
        [('inferred', 2, 11.0), ('inferred', 6, 10.0), ('random', 6, 12.0)])
    self.assertEqual(merged['merged_from'], [a, b])
    with open(os.path.join(out, 'num_groups.png'), 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')

    other_seed = part('c', [row('inferred', 4, 9.0)], stages={'seed': 1})
    with open(os.path.join(a, 'num_groups.json')) as f:
      before = f.read()
    for flags, message in (
        ((f'--merge={a},{other_seed}', f'--output_dir={out}2'),
         f'stages of {other_seed} differs'),
        ((f'--merge={a},{os.path.join(root, "missing")}',
          f'--output_dir={out}2'), 'unreadable'),
        ((f'--merge={a},{b}', f'--output_dir={a}'), 'would be overwritten')):
      run = prepare_runner.run_module('experiments.num_groups', *flags,
                                      timeout=120)
      self.assertEqual(run.returncode, 2, flags)
      self.assertLen(run.stderr_lines, 1, run.stderr)
      self.assertIn(message, run.stderr_lines[0])
    self.assertFalse(os.path.exists(f'{out}2'))
    with open(os.path.join(a, 'num_groups.json')) as f:
      self.assertEqual(f.read(), before)

  def test_bad_groupings_are_one_error_line(self):
    for flag, message in (('--modes=learned', "unknown grouping 'learned'"),
                          ('--num_groups=two', 'must be integers'),
                          ('--num_groups=0', 'at least 1'),
                          ('--local_workers=-1', 'must be 0'),
                          ('--worker_concurrency=-2', '-1, 0 or positive')):
      run = prepare_runner.run_module('experiments.num_groups', flag,
                                      timeout=120)
      self.assertEqual(run.returncode, 2, flag)
      self.assertLen(run.stderr_lines, 1, run.stderr)
      self.assertIn(message, run.stderr_lines[0])


if __name__ == '__main__':
  absltest.main()
