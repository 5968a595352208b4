"""Tests of gpfl_tff.runtime: TFF's worker process ends with the block."""

import os
import signal
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import portpicker
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff import runtime
from tests import worker_processes


@tff.tensorflow.computation(np.int32)
def _add_one(x):
  return x + 1


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
        self.assertTrue(worker_processes.alive(pid))
        self.assertIn('worker_binary', _command(pid))
    self.assertEqual(runtime.worker_pids(), [])
    for pid in workers:
      self.assertFalse(worker_processes.alive(pid), pid)

  def test_workers_get_the_bound_on_concurrent_client_computations(self):
    client_squares = tff.federated_computation(
        lambda xs: tff.federated_map(_add_one, xs),
        tff.FederatedType(np.int32, tff.CLIENTS))
    for calls, expected in ((0, runtime.default_concurrent_calls()),
                            (3, 3), (-1, -1)):
      with runtime.local_runtime(concurrent_calls=calls):
        self.assertEqual(client_squares(list(range(8))),
                         [x + 1 for x in range(8)])
        commands = [_command(pid) for pid in runtime.worker_pids()]
        self.assertNotEmpty(commands)
        for command in commands:
          self.assertIn(f'--max_concurrent_computation_calls={expected}',
                        command.split('\0'))
    self.assertGreaterEqual(runtime.default_concurrent_calls(), 1)
    with self.assertRaisesRegex(ValueError, 'concurrent_calls must be'):
      with runtime.local_runtime(concurrent_calls=-2):
        pass

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

  def test_workers_end_when_the_driver_is_killed(self):
    # A driver that starts its worker, reports the pid and waits; kill -9
    # gives it no chance to clean up.
    code = ('import sys, time, numpy as np, tensorflow_federated as tff\n'
            'from gpfl_tff import runtime\n'
            'comp = tff.tensorflow.computation(lambda x: x + 1, np.int32)\n'
            'with runtime.local_runtime():\n'
            '  comp(1)\n'
            '  print(*runtime.worker_pids(), flush=True)\n'
            '  time.sleep(600)\n')
    driver = subprocess.Popen([sys.executable, '-c', code],
                              stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in driver.stdout.readline().split()]
    self.assertNotEmpty(workers)
    for pid in workers:
      self.assertTrue(worker_processes.alive(pid))
    driver.kill()
    driver.wait()
    deadline = time.time() + 30
    while (any(worker_processes.alive(p) for p in workers)
           and time.time() < deadline):
      time.sleep(0.1)
    for pid in workers:
      self.assertFalse(worker_processes.alive(pid), pid)

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


@tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
def _sum_plus_one(values):
  return tff.federated_sum(tff.federated_map(_add_one, values))


@tff.tensorflow.computation(np.int32)
def _slow_square(x):
  """x * x after a few hundred milliseconds of matrix products."""
  m = tf.eye(300) * 0.5
  _, m = tf.while_loop(lambda i, m: i < 100,
                       lambda i, m: (i + 1, tf.matmul(m, m) + 0.5), [0, m])
  return x * x + tf.cast(tf.reduce_sum(m) * 0.0, tf.int32)


class WorkersTest(tf.test.TestCase):

  def test_two_local_workers_share_the_tasks_in_order(self):
    with runtime.local_runtime(workers=2) as workers:
      self.assertLen(workers, 2)
      used = []

      def task(x):
        used.append(id(tff.framework.get_context_stack().current))
        return _slow_square(x)

      self.assertEqual(workers.map(task, range(6)), [x * x for x in range(6)])
      self.assertLen(set(used), 2)  # Both workers' contexts ran tasks.
      self.assertLen(runtime.worker_pids(), 2)
      # The main thread keeps the first worker as its default.
      self.assertEqual(_slow_square(3), 9)
    self.assertEqual(runtime.worker_pids(), [])

  def test_default_is_one_worker_per_core_at_most_two(self):
    for cores, expected in ((1, 1), (2, 2), (16, 2)):
      with mock.patch.object(os, 'sched_getaffinity',
                             return_value=set(range(cores))):
        self.assertEqual(runtime.default_local_workers(), expected, cores)
        with runtime.local_runtime(workers=0) as workers:
          self.assertLen(workers, expected)
          self.assertEqual(workers.map(_slow_square, range(4)),
                           [x * x for x in range(4)])
          self.assertLen(runtime.worker_pids(), expected)
    self.assertEqual(runtime.worker_pids(), [])
    with self.assertRaisesRegex(ValueError, 'workers must be 0'):
      with runtime.local_runtime(workers=-1):
        pass

  def test_an_error_in_a_task_is_raised_and_later_tasks_do_not_start(self):
    started = []

    def task(x):
      started.append(x)
      if x == 0:
        raise ValueError('task 0 failed')
      return _slow_square(x)

    with runtime.local_runtime(workers=2) as workers:
      with self.assertRaisesRegex(ValueError, 'task 0 failed'):
        workers.map(task, range(20))
    self.assertLess(len(started), 20)
    self.assertEqual(runtime.worker_pids(), [])

  def test_run_goes_on_without_a_killed_worker_and_fails_without_any(self):
    workers_started = [worker_processes.start_worker() for _ in range(2)]
    pids = [pid for pid, _ in workers_started]
    try:
      with runtime.remote_runtime([a for _, a in workers_started],
                                  connect_seconds=2) as workers:
        killed = []

        def task(x):
          if x == 3 and not killed:  # Mid-run: the second worker dies.
            os.kill(pids[1], signal.SIGKILL)
            killed.append(x)
          return _slow_square(x)

        self.assertEqual(workers.map(task, range(10)),
                         [x * x for x in range(10)])
        os.kill(pids[0], signal.SIGKILL)
        with self.assertRaisesRegex(
            runtime.WorkerError,
            f'the TFF worker at {workers_started[0][1]} stopped answering'):
          workers.map(_slow_square, range(4))
    finally:
      for pid in pids:
        try:
          os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
          pass


class RemoteRuntimeTest(tf.test.TestCase):

  def test_computations_run_on_a_worker_started_elsewhere(self):
    pid, address = worker_processes.start_worker()
    try:
      with runtime.remote_runtime(address):
        self.assertEqual(_add_one(41), 42)
        remote = _sum_plus_one([1, 2, 3, 4])
        # No local worker was started for it.
        self.assertEqual(runtime.worker_pids(), [])
      with runtime.local_runtime():
        self.assertEqual(_sum_plus_one([1, 2, 3, 4]), remote)
      self.assertEqual(remote, 14)
      # The remote worker is not ours to end.
      self.assertTrue(worker_processes.alive(pid))
    finally:
      os.kill(pid, signal.SIGKILL)

  def test_no_worker_is_one_clear_error(self):
    port = portpicker.pick_unused_port()
    with self.assertRaisesRegex(runtime.WorkerError,
                                f'no TFF worker answers at localhost:{port}'):
      with runtime.remote_runtime(f'localhost:{port}', connect_seconds=1):
        pass


if __name__ == '__main__':
  tf.test.main()
