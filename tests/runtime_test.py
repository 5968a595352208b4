"""Tests of gpfl_tff.runtime: TFF's worker process ends with the block."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff import runtime


@tff.tensorflow.computation(np.int32)
def _add_one(x):
  return x + 1


def _alive(pid: int) -> bool:
  """Whether `pid` runs (an exited, unreaped zombie does not count)."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      stat = f.read().decode(errors='replace')
  except OSError:
    return False
  return stat[stat.rfind(')') + 2] != 'Z'


def _command(pid: int) -> str:
  with open(f'/proc/{pid}/cmdline', 'rb') as f:
    return f.read().decode(errors='replace')


class LocalRuntimeTest(tf.test.TestCase):

  def test_worker_runs_inside_and_ends_after(self):
    self.assertEqual(runtime.worker_pids(), [])
    with runtime.local_runtime():
      self.assertEqual(_add_one(41), 42)
      workers = runtime.worker_pids()
      self.assertNotEmpty(workers)
      for pid in workers:
        self.assertTrue(_alive(pid))
        self.assertIn('worker_binary', _command(pid))
    self.assertEqual(runtime.worker_pids(), [])
    for pid in workers:
      self.assertFalse(_alive(pid), pid)

  def test_a_second_block_starts_a_new_worker(self):
    with runtime.local_runtime():
      self.assertEqual(_add_one(1), 2)
    with runtime.local_runtime():
      self.assertEqual(_add_one(2), 3)
      self.assertNotEmpty(runtime.worker_pids())
    self.assertEqual(runtime.worker_pids(), [])

  def test_workers_end_when_the_body_raises(self):
    with self.assertRaisesRegex(RuntimeError, 'body failed'):
      with runtime.local_runtime():
        _add_one(0)
        self.assertNotEmpty(runtime.worker_pids())
        raise RuntimeError('body failed')
    self.assertEqual(runtime.worker_pids(), [])

  def test_import_has_no_side_effects(self):
    # In a fresh interpreter: TFF's own hooks first, then ours adds none.
    code = ('import atexit; import tensorflow_federated; '
            'n = atexit._ncallbacks(); from gpfl_tff import runtime; '
            'print(atexit._ncallbacks() - n)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, timeout=300)
    self.assertEqual(out.stdout.split()[-1], '0')

  def test_worker_pids_are_children(self):
    with runtime.local_runtime():
      _add_one(0)
      for pid in runtime.worker_pids():
        with open(f'/proc/{pid}/stat', 'rb') as f:
          stat = f.read().decode()
        self.assertEqual(int(stat[stat.rfind(')') + 2:].split()[1]),
                         os.getpid())


if __name__ == '__main__':
  tf.test.main()
