"""experiments/aggregate_results.py: mean and spread over seeds, as a user runs it."""

import json
import os

from absl.testing import absltest

from tests.prepare import prepare_runner

_MODULE = 'experiments.aggregate_results'


def _run_dir(root: str, seed: int, fl_ppl: float, share: float,
             rounds: int = 20, curves: dict | None = None) -> str:
  """An output folder holding a minimal results.json of two methods."""
  directory = os.path.join(root, f'seed{seed}')
  os.makedirs(directory)

  def report(ppl, share_better):
    return {'perplexity': ppl, 'accuracy': 0.5,
            'client_perplexity': {'median': ppl - 1},
            'share_better_than_fl': share_better,
            'by_train_size_quartile': [{'perplexity': ppl + 10}]}

  results = {'eval_split': 'test', 'stages': {'seed': seed},
             'flags': {'seed': seed, 'output_dir': directory,
                       'global_rounds': rounds, 'dataset': 'bbc'},
             'methods': {'groupperfl': {'test': report(fl_ppl - 20, share)},
                         'fl': {'test': report(fl_ppl, None)}},
             'paired': {'fl': {'mean': -0.01 * (seed + 1)}}}
  if curves is not None:
    results['curves'] = curves
  with open(os.path.join(directory, 'results.json'), 'w') as f:
    json.dump(results, f)
  return directory


def _edit_results(directory: str, edit) -> None:
  """Rewrites a run folder's results.json after `edit(results)`."""
  path = os.path.join(directory, 'results.json')
  with open(path) as f:
    results = json.load(f)
  edit(results)
  with open(path, 'w') as f:
    json.dump(results, f)


def _write_clients(directory: str, losses: dict) -> None:
  """clients.csv: method -> loss sums of clients c0, c1, ... (10 tokens)."""
  with open(os.path.join(directory, 'clients.csv'), 'w') as f:
    f.write('method,client_id,loss_sum,token_count\n')
    for method, values in losses.items():
      for index, loss in enumerate(values):
        f.write(f'{method},c{index},{loss},10\n')


def _write_sized_clients(directory: str, rows) -> None:
  """clients.csv with groups and train tokens: rows of (method, index,
  loss sum) for client c<index> of group g with index + 1 train tokens and
  10 test tokens."""
  with open(os.path.join(directory, 'clients.csv'), 'w') as f:
    f.write('method,client_id,group,train_tokens,loss_sum,token_count\n')
    for method, index, loss in rows:
      f.write(f'{method},c{index},g,{index + 1},{loss},10\n')


def _run_sized(root: str, rows, key: str, values):
  """Runs the module on two runs (seeds 0 and 1) whose clients.csv holds
  `rows(seed)` (see _write_sized_clients) and whose results.json holds
  `values(seed)` under `key`."""
  dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
  for seed, directory in enumerate(dirs):
    _write_sized_clients(directory, rows(seed))
    _edit_results(directory, lambda r, s=seed: r.update({key: values(s)}))
  return prepare_runner.run_module(_MODULE, *dirs)


class AggregateResultsTest(absltest.TestCase):

  def test_mean_and_standard_deviation_in_method_order(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)
    lines = run.stdout.splitlines()
    self.assertIn('2 runs, seeds [0, 1]', lines[0])
    rows = [l for l in lines if l.startswith('| fl') or
            l.startswith('| groupperfl')]
    # fl comes before groupperfl (the order of methods.METHODS).
    self.assertTrue(rows[0].startswith('| fl |'))
    # mean 105, sample standard deviation of (100, 110) = 7.07.
    self.assertIn('105.00 ± 7.07', rows[0])
    self.assertIn('| - |', rows[0])
    self.assertIn('85.00 ± 7.07', rows[1])
    self.assertIn('0.600 ± 0.141', rows[1])
    self.assertIn('95.00 ± 7.07', rows[1])
    # fl's paired difference: mean of -0.01 and -0.02.
    self.assertIn('-0.0150 ± 0.0071', rows[0])

  def test_convergence_of_each_run_by_end_points_and_trend(self):
    root = self.create_tempdir().full_path
    flat = [[r, 100.0 + (3.0 if r % 20 else -3.0)] for r in range(10, 101, 5)]
    falling = [[r, 200.0 - r] for r in range(10, 101, 5)]
    dirs = [_run_dir(root, 0, 100.0, 0.5, curves={
                'global': flat, 'group/a': falling, 'group/b': flat}),
            _run_dir(root, 1, 110.0, 0.7, curves={'global': falling})]
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)
    rows = [l for l in run.stdout.splitlines() if l.startswith('| 0 |')
            or l.startswith('| 1 |')]
    self.assertLen(rows, 2)
    # Seed 0: the end points 80 -> 100 are both low (97), flat; the trend
    # through 97, 103, 103, 103, 97 is flat; one of its two group stages
    # still falls.
    self.assertEqual(rows[0], '| 0 | 100 | +0.0 % | +0.0 % | 1 of 2 | 1 of 2 |')
    # Seed 1: 120 -> 100, 16.7 % better; no group stages.
    self.assertTrue(rows[1].startswith('| 1 | 100 | +16.7 % | +16.'), rows[1])
    self.assertTrue(rows[1].endswith('| 0 of 0 | - |'), rows[1])

  def test_seeds_pooled_into_one_paired_interval_from_clients_csv(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    # groupperfl's loss is lower by 1, 2, 3 (seed 0) and 3, 4, 5 (seed 1)
    # on clients with 10 tokens each: pooled (1+2+3+3+4+5) / 60 = 0.3.
    for seed, directory in enumerate(dirs):
      _write_clients(directory, {'fl': [10.0, 10.0, 10.0],
                                 'groupperfl': [9.0 - 2 * seed, 8.0 - 2 * seed,
                                                7.0 - 2 * seed]})
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)
    row = [l for l in run.stdout.splitlines() if l.startswith('| fl |')][0]
    interval = row.split('|')[-2].strip()
    self.assertStartsWith(interval, '-0.3000 [')
    low, high = (float(v) for v in interval[9:-1].split(','))
    self.assertLess(low, -0.3)
    self.assertGreater(high, -0.3)
    self.assertLess(high, 0.0)  # Every client is better under groupperfl.

  def test_small_data_fifths_pooled_over_seeds(self):
    # Ten clients of one group with 1..10 train tokens: fifths of two.
    # groupperfl's loss is lower than perfl's by the client's fifth + 1 in
    # seed 0 and by twice that in seed 1 (10 test tokens each).
    run = _run_sized(
        self.create_tempdir().full_path,
        lambda seed: [row for index in range(10) for row in (
            ('perfl', index, 20.0),
            ('groupperfl', index, 20.0 - (index // 2 + 1) * (seed + 1)))],
        'small_data', lambda seed: [
            {'bin': b, 'mean': -0.1 * (b + 1) * (seed + 1)}
            for b in range(5)])
    self.assertEqual(run.returncode, 0, run.stderr)
    rows = [l for l in run.stdout.splitlines()
            if l[:4] in ('| 1 ', '| 5 ')]
    self.assertLen(rows, 2)
    # Fifth 1: clients c0, c1, gains 1 (seed 0) and 2 (seed 1) each, over
    # 40 tokens pooled: -6 / 40 = -0.15, the same for every resample.
    self.assertEqual(
        rows[0], '| 1 | 2 | 2 | -0.1000, -0.2000 | '
        '-0.1500 [-0.1500, -0.1500] |')
    # Fifth 5: gains 5 and 10: -30 / 40.
    self.assertEqual(
        rows[1], '| 5 | 2 | 10 | -0.5000, -1.0000 | '
        '-0.7500 [-0.7500, -0.7500] |')

  def test_the_prior_gets_its_own_small_data_table(self):
    # Ten clients with 1..10 train tokens; the prior's loss is lower than
    # groupperfl's by 2 on the two clients with least data, else equal, in
    # both seeds. No perfl: only the prior's table is printed.
    run = _run_sized(
        self.create_tempdir().full_path,
        lambda seed: [row for index in range(10) for row in (
            ('groupperfl', index, 20.0),
            ('groupperfl_prior', index, 18.0 if index < 2 else 20.0))],
        'prior_small_data', lambda seed: [
            {'bin': b, 'mean': -0.2 if b == 0 else 0.0} for b in range(5)])
    self.assertEqual(run.returncode, 0, run.stderr)
    self.assertIn('groupperfl_prior - groupperfl in token-weighted '
                  'log-perplexity by fifths', run.stdout)
    self.assertNotIn('groupperfl - perfl in', run.stdout)
    rows = [l for l in run.stdout.splitlines()
            if l[:4] in ('| 1 ', '| 2 ')]
    self.assertEqual(rows, [
        '| 1 | 2 | 2 | -0.2000, -0.2000 | -0.2000 [-0.2000, -0.2000] |',
        '| 2 | 2 | 4 | +0.0000, +0.0000 | +0.0000 [+0.0000, +0.0000] |'])

  def test_unseen_clients_and_what_the_group_stage_adds(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    for seed, directory in enumerate(dirs):
      # Seen clients c0, c1: groupfl's loss is lower than fl's by 1 and 3
      # (10 tokens each); unseen u0, u1: by 2 in seed 0 and 4 in seed 1.
      _write_clients(directory, {'fl': [10.0, 10.0], 'groupfl': [9.0, 7.0],
                                 'groupperfl': [9.0, 7.0]})
      with open(os.path.join(directory, 'unseen_clients.csv'), 'w') as f:
        f.write('method,client_id,loss_sum,token_count\n')
        for method, loss in (('fl', 10.0), ('groupfl', 8.0 - 2 * seed),
                             ('groupperfl', 8.0 - 2 * seed)):
          for client in ('u0', 'u1'):
            f.write(f'{method},{client},{loss},10\n')
      _edit_results(directory, lambda r, s=seed: r.update(
          paired_stages={'groupfl - fl': {'mean': -0.2}},
          unseen={'methods': {m: {'perplexity': p + s} for m, p in (
              ('fl', 100.0), ('groupfl', 90.0), ('groupperfl', 80.0))},
                  'paired': {'groupfl - fl': {'mean': -0.2 * (s + 1)}}}))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)
    lines = run.stdout.splitlines()
    self.assertIn('Unseen clients (held out of every training stage; 2 a '
                  'run)', lines)
    # fl on unseen clients: 100 and 101; groupperfl - fl pooled: -12 / 40.
    self.assertIn('| fl | 100.50 ± 0.71 | -0.3000 [-0.3000, -0.3000] |',
                  lines)
    self.assertIn('| groupperfl | 80.50 ± 0.71 | - |', lines)
    # Seen: (-1 - 3) * 2 / 40 = -0.2, resampled over two clients that
    # differ; unseen: -0.3 for every resample.
    seen = [l for l in lines if l.startswith('| groupfl - fl | seen | ')]
    self.assertLen(seen, 1)
    self.assertStartsWith(seen[0],
                          '| groupfl - fl | seen | -0.2000, -0.2000 | '
                          '-0.2000 [')
    self.assertIn('| groupfl - fl | unseen | -0.2000, -0.4000 | '
                  '-0.3000 [-0.3000, -0.3000] |', lines)

  def test_runs_scored_on_other_clients_are_refused(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    _write_clients(dirs[0], {'fl': [10.0, 10.0], 'groupperfl': [9.0, 9.0]})
    _write_clients(dirs[1], {'fl': [10.0], 'groupperfl': [9.0]})
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 2)
    self.assertLen(run.stderr_lines, 1)
    self.assertIn('scored on other clients', run.stderr_lines[0])

  def test_flags_that_leave_the_numbers_alone_may_differ(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    _edit_results(dirs[1], lambda r: r['flags'].update(
        workers=['host:1'], checkpoint_every=5, progress='bars'))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)

  def test_prior_flags_matter_only_with_a_prior_method(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    # Seed 0 has none.
    _edit_results(dirs[1], lambda r: r['flags'].update(
        prior_estimator='per_tensor'))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)
    for directory in dirs:
      _edit_results(directory, lambda r: r['methods'].update(
          groupperfl_prior=r['methods']['fl']))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 2)
    self.assertLen(run.stderr_lines, 1)
    # Seed 0 predates the flag: it ran the isotropic estimator.
    self.assertIn('--prior_estimator=per_tensor differs from '
                  '--prior_estimator=isotropic', run.stderr_lines[0])
    _edit_results(dirs[1], lambda r: r['flags'].update(
        prior_estimator='isotropic'))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)

  def test_a_flag_added_since_a_run_holds_the_old_behaviour_there(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5), _run_dir(root, 1, 110.0, 0.7)]
    # Seed 0 predates --group_start and ran its default (fresh) behaviour.
    _edit_results(dirs[0], lambda r: r['flags'].pop('group_start', None))
    _edit_results(dirs[1], lambda r: r['flags'].update(group_start='fresh'))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 0, run.stderr)
    _edit_results(dirs[1], lambda r: r['flags'].update(
        group_start='continue'))
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 2)
    self.assertLen(run.stderr_lines, 1)
    self.assertIn('--group_start=continue differs from --group_start=fresh',
                  run.stderr_lines[0])

  def test_runs_with_other_flags_are_refused(self):
    root = self.create_tempdir().full_path
    dirs = [_run_dir(root, 0, 100.0, 0.5),
            _run_dir(root, 1, 110.0, 0.7, rounds=50)]
    run = prepare_runner.run_module(_MODULE, *dirs)
    self.assertEqual(run.returncode, 2)
    self.assertLen(run.stderr_lines, 1)
    self.assertStartsWith(run.stderr_lines[0], 'error: refusing to pool')
    self.assertIn('--global_rounds=50', run.stderr_lines[0])

  def test_missing_results_is_one_error_line(self):
    missing = os.path.join(self.create_tempdir().full_path, 'nothing')
    run = prepare_runner.run_module(_MODULE, missing)
    self.assertEqual(run.returncode, 2)
    self.assertEqual(run.stderr_lines,
                     [f'error: {missing}/results.json: not found'])


if __name__ == '__main__':
  absltest.main()
