r"""Times the group stage on one local TFF worker and on several.

  .venv/bin/python -m experiments.benchmark_workers --dataset=shakespeare \
      --workers=2 --group_rounds=5

The group stage (every group, `--group_rounds` rounds each from the initial
weights, the binary's default configuration otherwise) runs as
`run_group_personalization` runs it: through `StageTree.map`, sequentially on
the first worker, or with its groups spread over `--workers` local workers
(`runtime.local_runtime(workers=N)`). The two take turns, `--reps` times each
after one untimed warm-up of each, in one process. Prints
  workers=1 group_stage_s=<median> workers=<N> group_stage_s=<median>
      speedup=<1-worker median / N-worker median>
and writes every timing to --output (JSON). The results are checked equal.
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


def main(argv):
  del argv
  if WORKERS.value < 2 or REPS.value < 1:
    cli.fail('--workers must be at least 2 and --reps at least 1')
  preset = common_flags.preset()
  try:
    training_config = common_flags.training_config()
    stage_config = common_flags.stage_config(global_rounds=0, curve_every=0)
  except ValueError as e:
    cli.fail(str(e))
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  seconds = {1: [], WORKERS.value: []}
  weights = {}
  with runtime.local_runtime(WORKERS.value) as workers:
    base = experiment.build_tree(data, preset, training_config, stage_config)
    one = runtime.Workers(workers.contexts[:1], workers.addresses[:1])
    for rep in range(REPS.value + 1):  # Repetition 0 warms up, untimed.
      for count, pool in ((1, one), (WORKERS.value, workers)):
        tree = methods_lib.StageTree(
            base.process, base.local_stage, base.batches, base.weights(
                'initial'), training_config, stage_config)
        tree.map = pool.map
        start = time.perf_counter()
        weights[count] = tree.group_weights('group')
        if rep > 0:
          seconds[count].append(time.perf_counter() - start)
  for group in data.groups:
    for a, b in zip(weights[1][group].trainable,
                    weights[WORKERS.value][group].trainable):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  medians = {n: float(np.median(s)) for n, s in seconds.items()}
  result = {
      'dataset': config.dataset, 'group_by': config.group_by,
      'groups': len(data.groups), 'group_rounds': stage_config.group_rounds,
      'clients_per_round': training_config.clients_per_round,
      'cpu_count': os.cpu_count(), 'reps': REPS.value,
      'seconds': {str(n): s for n, s in seconds.items()},
      'median_seconds': {str(n): m for n, m in medians.items()},
      'speedup': medians[1] / medians[WORKERS.value]}
  os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
  with open(OUTPUT.value, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  print(f'workers=1 group_stage_s={medians[1]:.2f} workers={WORKERS.value} '
        f'group_stage_s={medians[WORKERS.value]:.2f} '
        f'speedup={result["speedup"]:.2f}')


if __name__ == '__main__':
  cli.run(main)
