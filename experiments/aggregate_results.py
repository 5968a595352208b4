r"""Mean and spread over seeds of several run_group_personalization outputs.

  .venv/bin/python -m experiments.aggregate_results \
      results/shakespeare-genre-seed0 results/shakespeare-genre-seed1 ...

Prints a markdown table per split: for each method, the mean and the sample
standard deviation over the runs of the token-weighted perplexity, the
accuracy, the median client perplexity and the share of clients better served
than by `fl`, and the mean perplexity of the quartile of clients with the least
training data, and the paired difference against groupperfl (mean over runs
of each run's token-weighted log-perplexity difference; see
`gpfl_tff.evaluation.paired`). When every run has its clients.csv, a last
column pools the seeds into one paired interval: each client's loss and
token sums are added over the runs (which must have scored the same clients
on the same tokens), and the bootstrap resamples clients with all their
seeds, so the interval covers training noise and the choice of clients. When the
clients.csv files also give each client's group and train tokens, and the
runs have perfl and groupperfl, a table of the small-data claim follows:
groupperfl - perfl by fifths of train tokens within group, each run's value
and the runs pooled the same way; when they also have groupperfl_prior, the
same table of groupperfl_prior - groupperfl (the prior's claim) follows.
When every run also has unseen_clients.csv (runs with --unseen_fraction), a
table of the unseen clients follows: each method's perplexity and its pooled
difference against groupperfl. Then a table of what the group stage adds
(`methods.STAGE_PAIRS`: groupfl - fl, groupfl - fl_matched, ...), each run's
value and the runs pooled, on the seen and, where present, unseen clients.

When the runs have validation curves (`results.json` `curves`), a second
table gives each run's convergence by the rule of
`gpfl_tff.evaluation.summary.convergence` over its last 20 % of rounds:
the global stage's improvement between the end points and along the fitted
trend (positive: lower perplexity at the end; flat: under +2 %), and how
many group stages are flat by each reading.

Runs are pooled only if they differ in nothing but the seed: the dataset and
every flag recorded in results.json (except --seed and --output_dir, flags
of speed and progress only, and the prior's flags when no run has
groupperfl_prior) must be equal, or the binary ends with one `error:` line
naming the first difference.
"""

import collections
import csv
import json
import os
import statistics

from experiments import cli
from gpfl_tff.evaluation import paired as paired_lib
from gpfl_tff.evaluation import summary
from gpfl_tff.learning import methods as methods_lib
from gpfl_tff.learning import training


def load(directory: str) -> dict:
  path = os.path.join(directory, 'results.json')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    cli.fail(f'{path}: not found')
  except json.JSONDecodeError as e:
    cli.fail(f'{path}: invalid JSON ({e.msg})')


def _spread(values: list[float], digits: int) -> str:
  mean = statistics.fmean(values)
  if len(values) < 2:
    return f'{mean:.{digits}f}'
  return f'{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}'


# Flags that may differ between pooled runs: the seed, and flags that change
# where or how a run executes but not its numbers (checkpointing and resuming
# give the same metrics: tests/experiments/resume_test.py; the worker runs
# the same computations).
_FREE_FLAGS = ('seed', 'output_dir', 'progress', 'checkpoint_every',
               'workers', 'local_workers', 'split_rounds', 'worker_timeout',
               'worker_concurrency')


# Flags that change only the methods with a prior (groupperfl_prior): they
# may differ, or be missing (runs from before the flag), when no run has one.
_PRIOR_FLAGS = ('prior_precision', 'prior_estimator')


def _free_flags(runs: list[dict]) -> tuple[str, ...]:
  """The flags whose values cannot change these runs' numbers."""
  prior_methods = {m for m, spec in methods_lib.METHOD_TABLE.items()
                   if spec.prior}
  if any(prior_methods & set(run['methods']) for run in runs):
    return _FREE_FLAGS
  return _FREE_FLAGS + _PRIOR_FLAGS


def flag_differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
  """(flag, value in a, value in b) for each flag two runs' results.json
  record with different values, in flag order. A flag a run does not record
  did not exist yet: it ran with the value that gives the old behaviour
  (`methods.values_before_fields`; None where there is none)."""
  flags_a, flags_b = a.get('flags', {}), b.get('flags', {})
  before = {**methods_lib.values_before_fields(training.TrainingConfig),
            **methods_lib.values_before_fields(methods_lib.StageConfig)}
  found = []
  for flag in sorted(set(flags_a) | set(flags_b)):
    value_a = flags_a.get(flag, before.get(flag))
    value_b = flags_b.get(flag, before.get(flag))
    if value_a != value_b:
      found.append((flag, value_a, value_b))
  return found


def check_poolable(runs: list[dict], names: list[str]) -> str | None:
  """The first difference other than the seed between runs, or None."""
  free = _free_flags(runs)
  first = runs[0]
  for run, name in zip(runs[1:], names[1:]):
    for key in ('eval_split', 'dataset'):
      if key in first and run.get(key) != first.get(key):
        return f'{name}: {key} differs from {names[0]}'
    if tuple(run['methods']) != tuple(first['methods']):
      return f'{name}: methods differ from {names[0]}'
    for flag, value_a, value_b in flag_differences(first, run):
      if flag not in free:
        return (f'{name}: --{flag}={value_b} differs from '
                f'--{flag}={value_a} in {names[0]}')
  return None


def client_sums(directory: str, name: str = 'clients.csv'
                ) -> tuple[dict, dict] | None:
  """A run's clients.csv (or `name`, in its columns: unseen_clients.csv):
  (method -> client id -> {loss_sum, token_count}, client id -> (group,
  train tokens)); the second is empty if the file has no such columns. None
  if the run has no such file."""
  path = os.path.join(directory, name)
  if not os.path.exists(path):
    return None
  sums = collections.defaultdict(dict)
  info = {}
  try:
    with open(path, encoding='utf-8', newline='') as f:
      for row in csv.DictReader(f):
        sums[row['method']][row['client_id']] = {
            'loss_sum': float(row['loss_sum']),
            'token_count': float(row['token_count'])}
        if 'group' in row and 'train_tokens' in row:
          info[row['client_id']] = (row['group'], int(row['train_tokens']))
  except (KeyError, ValueError, csv.Error) as e:
    cli.fail(f'{path}: malformed ({e})')
  return sums, info


def pool(client_sums: list[dict]) -> dict:
  """method -> client id -> its sums added over the runs, which must have
  scored the same clients."""
  pooled = collections.defaultdict(dict)
  for method in client_sums[0]:
    clients = set(client_sums[0][method])
    for run in client_sums[1:]:
      if set(run.get(method, {})) != clients:
        cli.fail(f'refusing to pool runs: {method} was scored on '
                 'other clients in different runs')
    for client in clients:
      pooled[method][client] = {
          key: sum(run[method][client][key] for run in client_sums)
          for key in ('loss_sum', 'token_count')}
  return pooled


def pooled_paired(pooled: dict) -> dict:
  """method -> paired difference against groupperfl, pooled over runs."""
  if 'groupperfl' not in pooled:
    return {}
  return {m: paired_lib.difference(pooled['groupperfl'], sums)
          for m, sums in pooled.items() if m != 'groupperfl'}


# The small-data tables: (method, the method it is paired with, the key of
# each run's own values in results.json), each printed when the runs have
# both methods.
SMALL_DATA_PAIRS = (('groupperfl', 'perfl', 'small_data'),
                    ('groupperfl_prior', 'groupperfl', 'prior_small_data'))


def small_data_table(runs: list[dict], pooled: dict, infos: list[dict],
                     pair: tuple[str, str, str] = SMALL_DATA_PAIRS[0]
                     ) -> str | None:
  """`pair`'s first method minus its second by fifths of train tokens within
  group (groupperfl - perfl by default): each run's difference (its
  results.json value under the pair's key) and the runs pooled, with a
  bootstrap over clients that keeps each client's seeds together. None
  without both methods or without the clients' groups and train tokens."""
  first, second, key = pair
  if not (first in pooled and second in pooled and infos[0]):
    return None
  if any(info != infos[0] for info in infos[1:]):
    cli.fail('refusing to pool runs: their clients differ in group or '
             'train tokens')
  groups = {c: group for c, (group, _) in infos[0].items()}
  tokens = {c: n for c, (_, n) in infos[0].items()}
  rows = paired_lib.by_data_size(pooled[first], pooled[second], tokens,
                                 groups)
  lines = ['| fifth (least data first) | clients | train tokens (median) | '
           'each run | pooled [95% CI] |', '|---|---|---|---|---|']
  for row in rows:
    each = []
    for run in runs:
      found = [r for r in run.get(key, []) if r['bin'] == row['bin']]
      each.append(f'{found[0]["mean"]:+.4f}' if found else '-')
    lines.append(f'| {row["bin"] + 1} | {row["clients"]} | '
                 f'{row["train_tokens_median"]:.0f} | {", ".join(each)} | '
                 f'{_interval(row)} |')
  return '\n'.join(lines)


def stage_pairs_table(runs: list[dict], pooled: dict, pooled_unseen: dict
                      ) -> str | None:
  """What the group stage adds (`methods.STAGE_PAIRS` whose methods ran), on
  the seen clients and, where the runs have them, the unseen ones: each
  run's difference (results.json `paired_stages`, `unseen.paired`) and the
  runs pooled. None without such a pair."""
  lines = ['| pair | clients | each run | pooled [95% CI] |',
           '|---|---|---|---|']
  for clients, sums, stored in (
      ('seen', pooled, lambda run: run.get('paired_stages', {})),
      ('unseen', pooled_unseen,
       lambda run: run.get('unseen', {}).get('paired', {}))):
    for a, b in methods_lib.STAGE_PAIRS:
      if a not in sums or b not in sums:
        continue
      name = f'{a} - {b}'
      each = [stored(run).get(name) for run in runs]
      lines.append(f'| {name} | {clients} | ' + ', '.join(
          '-' if e is None else f'{e["mean"]:+.4f}' for e in each) + ' | '
                   + _interval(paired_lib.difference(sums[a], sums[b]))
                   + ' |')
  return '\n'.join(lines) if len(lines) > 2 else None


def unseen_table(runs: list[dict], pooled_unseen: dict) -> str:
  """Each method's perplexity on the unseen clients (mean ± standard
  deviation over runs) and its pooled difference against groupperfl."""
  against = pooled_paired(pooled_unseen)
  lines = ['| method | perplexity | pooled vs groupperfl [95% CI] |',
           '|---|---|---|']
  for method in methods_lib.METHODS:
    if method in pooled_unseen:
      lines.append(f'| {method} | ' + _spread(
          [run['unseen']['methods'][method]['perplexity'] for run in runs],
          2) + f' | {_interval(against.get(method))} |')
  return '\n'.join(lines)


def table(runs: list[dict], pooled: dict | None = None) -> str:
  split = runs[0]['eval_split']
  methods = [m for m in methods_lib.METHODS if m in runs[0]['methods']]
  lines = [f'| method | {split} perplexity | accuracy | client ppl median | '
           'share better than fl | Q1 (least data) perplexity | '
           'vs groupperfl (log ppl) | pooled vs groupperfl [95% CI] |',
           '|---|---|---|---|---|---|---|---|']
  for method in methods:
    reports = [run['methods'][method][split] for run in runs]
    shares = [r['share_better_than_fl'] for r in reports]
    paired = [run.get('paired', {}).get(method) for run in runs]
    lines.append(' | '.join([
        f'| {method}',
        _spread([r['perplexity'] for r in reports], 2),
        _spread([r['accuracy'] for r in reports], 4),
        _spread([r['client_perplexity']['median'] for r in reports], 2),
        '-' if None in shares else _spread(shares, 3),
        _spread([r['by_train_size_quartile'][0]['perplexity']
                 for r in reports], 2),
        '-' if None in paired else _spread([p['mean'] for p in paired], 4),
        _interval((pooled or {}).get(method)),
    ]) + ' |')
  return '\n'.join(lines)


def _interval(row: dict | None) -> str:
  if row is None:
    return '-'
  return f'{row["mean"]:+.4f} [{row["ci_low"]:+.4f}, {row["ci_high"]:+.4f}]'


def convergence_table(runs: list[dict]) -> str | None:
  """Each run's convergence (see the module doc); None without curves."""
  lines = ['| seed | global rounds | global: end points | global: trend | '
           'group stages flat: end points | group stages flat: trend |',
           '|---|---|---|---|---|---|']
  any_curve = False
  # Rounded first, then + 0.0: no '-0.0'.
  percent = lambda x: ('-' if x is None
                       else f'{round(100 * x, 1) + 0.0:+.1f} %')
  for run in runs:
    found = {stage: summary.convergence(curve)
             for stage, curve in run.get('curves', {}).items()}
    found = {stage: c for stage, c in found.items() if c is not None}
    if 'global' not in found:
      continue
    any_curve = True
    main_stage = found['global']
    groups = [c for stage, c in found.items() if stage.startswith('group/')]
    with_trend = [c for c in groups if c['trend_converged'] is not None]
    lines.append(
        f'| {run["stages"]["seed"]} | {main_stage["to_round"]} | '
        f'{percent(main_stage["improvement"])} | '
        f'{percent(main_stage["trend_improvement"])} | '
        f'{sum(c["converged"] for c in groups)} of {len(groups)} | '
        + (f'{sum(c["trend_converged"] for c in with_trend)} of '
           f'{len(with_trend)} |' if with_trend else '- |'))
  return '\n'.join(lines) if any_curve else None


def main(argv):
  directories = argv[1:]
  if not directories:
    cli.fail('give one or more output folders of '
             'run_group_personalization')
  runs = [load(d) for d in directories]
  difference = check_poolable(runs, directories)
  if difference is not None:
    cli.fail(f'refusing to pool runs: {difference}')
  seeds = [run['stages']['seed'] for run in runs]
  print(f'{len(runs)} runs, seeds {seeds}; mean ± standard deviation over '
        'runs')
  found = [client_sums(d) for d in directories]
  pooled = None
  if None not in found:
    pooled = pool([sums for sums, _ in found])
  print()
  print(table(runs, pooled_paired(pooled) if pooled is not None else None))
  for first, second, key in SMALL_DATA_PAIRS if pooled is not None else ():
    small = small_data_table(runs, pooled, [info for _, info in found],
                             (first, second, key))
    if small is not None:
      print()
      print(f'{first} - {second} in token-weighted log-perplexity by fifths '
            f'of train tokens within group (negative: {first} better)')
      print()
      print(small)
  unseen = ([client_sums(d, 'unseen_clients.csv') for d in directories]
            if pooled is not None else [None])
  pooled_unseen = (pool([sums for sums, _ in unseen])
                   if None not in unseen else {})
  if pooled_unseen:
    print()
    print(f'Unseen clients (held out of every training stage; '
          f'{len(next(iter(pooled_unseen.values())))} a run)')
    print()
    print(unseen_table(runs, pooled_unseen))
  pairs = (stage_pairs_table(runs, pooled, pooled_unseen)
           if pooled is not None else None)
  if pairs is not None:
    print()
    print('What the group stage adds, in token-weighted log-perplexity '
          '(negative: the first better)')
    print()
    print(pairs)
  converged = convergence_table(runs)
  if converged is not None:
    print()
    print('Convergence over the last 20 % of rounds (improvement in '
          'validation perplexity, positive: lower at the end; flat: under '
          '+2 %)')
    print()
    print(converged)


if __name__ == '__main__':
  cli.run(main, arguments=True)
