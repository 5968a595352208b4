r"""Mean and spread over seeds of several run_group_personalization outputs.

  .venv/bin/python -m experiments.aggregate_results \
      results/shakespeare-genre-seed0 results/shakespeare-genre-seed1 ...

Prints a markdown table per split: for each method, the mean and the sample
standard deviation over the runs of the token-weighted perplexity, the
accuracy, the median client perplexity and the share of clients better served
than by `fl`, and the mean perplexity of the quartile of clients with the least
training data.
"""

import json
import os
import statistics

from absl import app

from data import dataset_flags
from gpfl_tff.learning import methods as methods_lib


def _load(directory: str) -> dict:
  path = os.path.join(directory, 'results.json')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    dataset_flags.fail(f'{path}: not found')
  except json.JSONDecodeError as e:
    dataset_flags.fail(f'{path}: invalid JSON ({e.msg})')


def _spread(values: list[float], digits: int) -> str:
  mean = statistics.fmean(values)
  if len(values) < 2:
    return f'{mean:.{digits}f}'
  return f'{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def table(runs: list[dict]) -> str:
  split = runs[0]['eval_split']
  methods = [m for m in methods_lib.METHODS if m in runs[0]['methods']]
  lines = [f'| method | {split} perplexity | accuracy | client ppl median | '
           'share better than fl | Q1 (least data) perplexity |',
           '|---|---|---|---|---|---|']
  for method in methods:
    reports = [run['methods'][method][split] for run in runs]
    shares = [r['share_better_than_fl'] for r in reports]
    lines.append(' | '.join([
        f'| {method}',
        _spread([r['perplexity'] for r in reports], 2),
        _spread([r['accuracy'] for r in reports], 4),
        _spread([r['client_perplexity']['median'] for r in reports], 2),
        '-' if None in shares else _spread(shares, 3),
        _spread([r['by_train_size_quartile'][0]['perplexity']
                 for r in reports], 2),
    ]) + ' |')
  return '\n'.join(lines)


def main(argv):
  directories = argv[1:]
  if not directories:
    dataset_flags.fail('give one or more output folders of '
                       'run_group_personalization')
  runs = [_load(d) for d in directories]
  splits = {run['eval_split'] for run in runs}
  method_sets = {tuple(run['methods']) for run in runs}
  if len(splits) > 1 or len(method_sets) > 1:
    dataset_flags.fail('the runs differ in eval split or methods')
  seeds = [run['stages']['seed'] for run in runs]
  print(f'{len(runs)} runs, seeds {seeds}; mean ± standard deviation over '
        'runs')
  print()
  print(table(runs))


if __name__ == '__main__':
  app.run(main)
