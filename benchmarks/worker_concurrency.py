r"""The local stage's speed by workers and by each worker's bound on
concurrent client computations.

  .venv/bin/python -m benchmarks.worker_concurrency --dataset=shakespeare \
      --clients=200 --reps=3

TFF's local context starts its `worker_binary` with no bound on the client
computations it runs at once (`max_concurrent_computation_calls=-1`): a call
that fine-tunes a chunk of 100 clients runs 100 TensorFlow computations side
by side. `gpfl_tff.runtime.local_runtime` bounds each worker (by default at
the number of cores). This times the local stage as the binary runs it
(`local.build_local_stage(...).run`: fine-tune up to `--finetune_epochs` with
early stopping, then score the test split) on `--clients` sampled clients in
chunks of `--chunk`, the chunks spread over the workers by `Workers.map`,
for each layout `workers x bound` in `--layouts`. Layouts are interleaved,
`--reps` times after one warm-up each; prints one line per layout with the
median and min-max seconds and the speed against the first layout, and
checks that every layout gives the same test sums as the first, to the bit.
The weights are the model's initial ones: every layout does the same work.

With several `--cross_entropies` (`metrics.CROSS_ENTROPIES`), every layout
runs once per loss implementation (interleaved as well): the speed of the
loss in the stage as the binary runs it. Sums are then compared with the
first layout of the same implementation, and across implementations the
kept epochs and the largest relative change of a client's loss sum are
printed.
"""

import time

from experiments import cli  # First: it quiets TensorFlow's C++ logs.

from absl import flags  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

from data import dataset_flags
from experiments import common_flags
from gpfl_tff import runtime
from gpfl_tff.data import batches as batches_lib
from gpfl_tff.data import datasets
from gpfl_tff.data import text
from gpfl_tff.learning import local
from gpfl_tff.learning import methods
from gpfl_tff.models import language_model

CLIENTS = flags.DEFINE_integer('clients', 200, 'Sampled clients to fine-tune.')
CHUNK = flags.DEFINE_integer('chunk', 100, 'Clients per call (the binary '
                             'fine-tunes chunks of 100).')
REPS = flags.DEFINE_integer('reps', 3, 'Timed, interleaved repetitions.')
LAYOUTS = flags.DEFINE_list(
    'layouts', ['1x-1', '1x1', '1x2', '2x-1', '2x1', '2x2'],
    'workers x bound on concurrent client computations per worker (-1: no '
    'bound, TFF\'s default); the first is the reference.')
CROSS_ENTROPIES = flags.DEFINE_list(
    'cross_entropies', ['ops'], 'Loss implementations to time (ops, kernel).')


def _parse_layouts() -> list[tuple[int, int]]:
  layouts = []
  for layout in LAYOUTS.value:
    workers, _, bound = layout.partition('x')
    try:
      workers, bound = int(workers), int(bound)
    except ValueError:
      cli.fail(f'--layouts: {layout!r} is not WORKERSxBOUND (say 2x1)')
    if workers < 1 or bound < -1 or bound == 0:
      cli.fail(f'--layouts: {layout!r} needs at least 1 worker and a bound '
               'of -1 or at least 1')
    layouts.append((workers, bound))
  return layouts


def main(argv):
  del argv
  layouts = _parse_layouts()
  if CLIENTS.value < 1 or CHUNK.value < 1 or REPS.value < 1:
    cli.fail('--clients, --chunk and --reps must be at least 1')
  preset = common_flags.preset()
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  encoder = text.TextEncoder(data.vocabulary, preset.seq_len)
  try:
    model_fns = {name: language_model.build_model_fn(
        preset, encoder.num_tokens, common_flags.SEED.value, name)
                 for name in CROSS_ENTROPIES.value}
  except ValueError as e:
    cli.fail(f'--cross_entropies: {e}')
  stages = {name: local.build_local_stage(model_fn)
            for name, model_fn in model_fns.items()}
  weights = language_model.initial_weights(model_fns[CROSS_ENTROPIES.value[0]])
  training_config = common_flags.training_config()
  stage_config = common_flags.stage_config()
  batches = batches_lib.ClientBatches(data, encoder,
                                      training_config.batch_size)
  rng = np.random.default_rng(common_flags.SEED.value)
  clients = list(rng.choice(data.client_ids,
                            min(CLIENTS.value, len(data.client_ids)),
                            replace=False))
  chunks = [clients[i:i + CHUNK.value]
            for i in range(0, len(clients), CHUNK.value)]
  variants = [(workers, bound, name) for name in CROSS_ENTROPIES.value
              for workers, bound in layouts]

  def run_chunks(pool, name):
    run = lambda chunk: stages[name].run(
        weights, *methods.local_run_args(batches, chunk, stage_config))
    return [s for chunk_sums in pool.map(run, chunks) for s in chunk_sums]

  # One runtime ends every worker at the end; the layouts' contexts (each
  # its own worker processes) live side by side inside it.
  with runtime.local_runtime():
    pools = [runtime.Workers(
        [tff.backends.native.create_sync_local_cpp_execution_context(
            max_concurrent_computation_calls=bound) for _ in range(workers)],
        [f'worker {i + 1}' for i in range(workers)])
             for workers, bound, _ in variants]
    sums = [run_chunks(pool, name)  # Warm-up.
            for pool, (_, _, name) in zip(pools, variants)]
    times = [[] for _ in variants]
    for _ in range(REPS.value):
      for index, (pool, (_, _, name)) in enumerate(zip(pools, variants)):
        start = time.perf_counter()
        run_chunks(pool, name)
        times[index].append(time.perf_counter() - start)

  reference = float(np.median(times[0]))
  print(f'{len(clients)} clients of {config.dataset}, chunks of '
        f'{CHUNK.value}, {REPS.value} repetitions')
  for (workers, bound, name), seconds, variant_sums in zip(variants, times,
                                                           sums):
    first = sums[variants.index(next(v for v in variants if v[2] == name))]
    same = all(a[k] == b[k] for a, b in zip(variant_sums, first)
               for k in ('loss_sum', 'token_count', 'best_epoch'))
    epochs = all(a['best_epoch'] == b['best_epoch']
                 for a, b in zip(variant_sums, sums[0]))
    change = max(abs(float(a['loss_sum']) - float(b['loss_sum']))
                 / max(abs(float(b['loss_sum'])), 1e-30)
                 for a, b in zip(variant_sums, sums[0]))
    median = float(np.median(seconds))
    print(f'cross_entropy={name} workers={workers} bound={bound} '
          f'seconds={median:.2f} (min {min(seconds):.2f}, max '
          f'{max(seconds):.2f}) speedup={reference / median:.3f} '
          f'same_sums={same} kept_epochs_as_first={epochs} '
          f'largest_loss_change={change:.1e}')


if __name__ == '__main__':
  cli.run(main)
