r"""Fine-tuning throughput of one process against two, by TF thread count.

  .venv/bin/python -m benchmarks.worker_threads --steps=200 --reps=3

What `--local_workers=2` can gain on this machine. Each layout runs the same
total of training steps of the `small` model at batch 16 (fine-tuning's step)
on random windows, in fresh child processes (the thread counts are read from
the environment when TensorFlow starts, as in TFF's worker processes):
  one_process       one process, TensorFlow's default thread pools;
  two_processes     two processes side by side, default pools each;
  two_single        two processes side by side, one intra-op and one
                    inter-op thread each (TF_NUM_INTRAOP_THREADS=1,
                    TF_NUM_INTEROP_THREADS=1).
The layouts are interleaved, `--reps` times; prints one line per layout with
the median wall seconds and the steps per second, then the speed-up of each
two-process layout over one process. Every child builds its model and takes
one warm-up step, says it is ready, and waits; the parent starts them all at
once and times from then until the last one is done, so start-up is left out
and two children always run side by side.
"""

import os
import subprocess
import sys
import time

from experiments import cli  # First: it quiets TensorFlow's C++ logs.

from absl import flags  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import plain_tf
from gpfl_tff.models import language_model

STEPS = flags.DEFINE_integer('steps', 200,
                             'Training steps in all, per layout (even).')
REPS = flags.DEFINE_integer('reps', 3,
                            'Interleaved repetitions of the layouts.')
BATCH = flags.DEFINE_integer('batch_size', 16, 'Sequences per step.')
CHILD = flags.DEFINE_bool('child', False, 'Internal: be one timed process; '
                          'run --steps steps when told to on stdin.')

_SINGLE = {'TF_NUM_INTRAOP_THREADS': '1', 'TF_NUM_INTEROP_THREADS': '1'}
LAYOUTS = {'one_process': (1, {}), 'two_processes': (2, {}),
           'two_single': (2, _SINGLE)}


def _child(steps: int, batch: int) -> None:
  """Builds the model, takes a warm-up step, prints `ready`, waits for a
  line on stdin, takes `steps` steps and prints `done`."""
  preset = language_model.PRESETS['small']
  num_tokens = preset.vocab_size + 4
  step = plain_tf.keras_training_step(
      language_model.build_keras_model(preset, num_tokens))

  x = tf.constant(np.random.default_rng(0).integers(
      4, num_tokens, size=(batch, preset.seq_len)), tf.int32)
  step(x).numpy()
  print('ready', flush=True)
  sys.stdin.readline()
  for _ in range(steps):
    loss = step(x)
  loss.numpy()
  print('done', flush=True)


def run_layout(processes: int, env: dict, steps: int, batch: int) -> float:
  """Wall seconds from starting every process of the layout (each ready,
  warmed up) until the last has run its `steps / processes` steps."""
  command = [sys.executable, '-m', 'benchmarks.worker_threads', '--child',
             f'--steps={steps // processes}', f'--batch_size={batch}']
  children = [subprocess.Popen(command, env={**os.environ, **env},
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
              for _ in range(processes)]
  try:
    for child in children:
      if child.stdout.readline().strip() != 'ready':
        raise RuntimeError('a child process failed before it was ready')
    start = time.perf_counter()
    for child in children:
      child.stdin.write('go\n')
      child.stdin.flush()
    for child in children:
      if child.stdout.readline().strip() != 'done':
        raise RuntimeError('a child process failed while timed')
    return time.perf_counter() - start
  finally:
    for child in children:
      child.kill()
      child.wait()


def main(argv):
  del argv
  if CHILD.value:
    _child(STEPS.value, BATCH.value)
    return
  if STEPS.value < 2 or STEPS.value % 2:
    cli.fail(f'--steps must be even and at least 2, got {STEPS.value}')
  times = {name: [] for name in LAYOUTS}
  for _ in range(REPS.value):
    for name, (processes, env) in LAYOUTS.items():
      times[name].append(run_layout(processes, env, STEPS.value, BATCH.value))
  medians = {name: float(np.median(t)) for name, t in times.items()}
  for name, seconds in medians.items():
    print(f'layout={name} seconds={seconds:.3f} '
          f'min={min(times[name]):.3f} max={max(times[name]):.3f} '
          f'steps_per_s={STEPS.value / seconds:.2f}')
  for name in ('two_processes', 'two_single'):
    print(f'speedup_{name}={medians["one_process"] / medians[name]:.3f}')


if __name__ == '__main__':
  cli.run(main)
