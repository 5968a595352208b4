r"""Times stages on one local TFF worker and on several.

  .venv/bin/python -m experiments.benchmark_workers --dataset=shakespeare \
      --workers=2 --group_rounds=5 --global_rounds=10

Two stages, each as `run_group_personalization` runs it, the binary's
configuration otherwise:
  group         every group, `--group_rounds` rounds each from the initial
                weights: sequentially on one worker, or the groups spread
                over `--workers` local workers (`StageTree.map`);
  global_split  `--global_rounds` rounds of the global stage: each round on
                one worker, or its clients split over `--workers` workers
                (`--split_rounds`: TFF's mergeable execution context).
The two variants of a stage take turns, `--reps` times each after one
untimed warm-up of each, in one process. Prints per stage
  stage=<s> workers=1 s=<median> workers=<N> s=<median> speedup=<ratio>
and writes every timing to --output (JSON). The trained weights are checked
equal (up to float rounding for split rounds).
"""

import json
import os
import time

from absl import flags
import numpy as np

from data import dataset_flags
from experiments import cli
from experiments import common_flags
from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.data import datasets
from gpfl_tff.learning import methods as methods_lib

WORKERS = flags.DEFINE_integer('workers', 2, 'Local workers to compare with '
                               'one.')
REPS = flags.DEFINE_integer('reps', 3, 'Timed repetitions of each.')
OUTPUT = flags.DEFINE_string('output', 'results/benchmark_workers.json',
                             'Where the timings go.')


def _tree(base, training_config, stage_config, map_fn=None, run_round=None):
  """A fresh stage tree (nothing trained) sharing `base`'s process and data."""
  tree = methods_lib.StageTree(
      base.process, base.local_stage, base.batches, base.weights('initial'),
      training_config, stage_config)
  if map_fn is not None:
    tree.map = map_fn
  tree.run_round = run_round
  return tree


def _timed(runs, reps):
  """Runs each (name, fn) in turn, reps + 1 times (the first untimed).

  Returns name -> seconds of the timed runs, and name -> the last result.
  """
  seconds = {name: [] for name, _ in runs}
  results = {}
  for rep in range(reps + 1):
    for name, fn in runs:
      start = time.perf_counter()
      results[name] = fn()
      if rep > 0:
        seconds[name].append(time.perf_counter() - start)
  return seconds, results


def _check_close(first, second, atol):
  for a, b in zip(first, second):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


def main(argv):
  del argv
  if WORKERS.value < 2 or REPS.value < 1:
    cli.fail('--workers must be at least 2 and --reps at least 1')
  preset = common_flags.preset()
  try:
    training_config = common_flags.training_config()
    group_config = common_flags.stage_config(global_rounds=0, curve_every=0)
    global_config = common_flags.stage_config(curve_every=0)
  except ValueError as e:
    cli.fail(str(e))
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  n = WORKERS.value

  # The group stage: its groups on one worker, or spread over n.
  with runtime.local_runtime(n) as workers:
    base = experiment.build_tree(data, preset, training_config, group_config)
    one = runtime.Workers(workers.contexts[:1], workers.addresses[:1])
    group_seconds, group_weights = _timed([
        ('1', lambda: _tree(base, training_config, group_config,
                            one.map).group_weights('group')),
        (str(n), lambda: _tree(base, training_config, group_config,
                               workers.map).group_weights('group'))],
                                          REPS.value)
  for group in data.groups:
    _check_close(group_weights['1'][group].trainable,
                 group_weights[str(n)][group].trainable, atol=1e-6)

  # The global stage: each round on one worker, or its clients split over n.
  with runtime.local_runtime(n, split_rounds=True) as workers:
    base = experiment.build_tree(data, preset, training_config, global_config)
    global_seconds, global_weights = _timed([
        ('1', lambda: _tree(base, training_config, global_config
                            ).weights('global')),
        (str(n), lambda: _tree(base, training_config, global_config,
                               run_round=workers.run_round
                               ).weights('global'))], REPS.value)
  # Split rounds sum client updates in another order; an adaptive server
  # optimizer amplifies the rounding (measured: 1e-5 after 10 FedAdam
  # rounds on Shakespeare).
  _check_close(global_weights['1'].trainable,
               global_weights[str(n)].trainable, atol=1e-4)

  result = {
      'dataset': config.dataset, 'group_by': config.group_by,
      'groups': len(data.groups), 'group_rounds': group_config.group_rounds,
      'global_rounds': global_config.global_rounds,
      'clients_per_round': training_config.clients_per_round,
      'cpu_count': os.cpu_count(), 'reps': REPS.value, 'workers': n}
  lines = []
  for stage, seconds in (('group', group_seconds),
                         ('global_split', global_seconds)):
    medians = {k: float(np.median(v)) for k, v in seconds.items()}
    speedup = medians['1'] / medians[str(n)]
    result[stage] = {'seconds': seconds, 'median_seconds': medians,
                     'speedup': speedup}
    lines.append(f'stage={stage} workers=1 s={medians["1"]:.2f} workers={n} '
                 f's={medians[str(n)]:.2f} speedup={speedup:.2f}')
  os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
  with open(OUTPUT.value, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  for line in lines:
    print(line)


if __name__ == '__main__':
  cli.run(main)
