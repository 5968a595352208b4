"""The binary on two TFF workers started elsewhere equals its local run.

Two `worker_binary` processes are started on loopback ports, not as this
process's children (like workers on other machines); `--workers` spreads the
groups of each stage and the chunks of evaluated clients over them, and with
`--split_rounds` each round's clients.
"""

import json
import os
import signal
import tempfile
import time

from absl.testing import absltest
import portpicker

from tests import worker_processes
from tests.learning import synthetic
from tests.prepare import prepare_runner

_MODULE = 'experiments.run_group_personalization'


class WorkersTest(absltest.TestCase):

  def test_two_remote_workers_give_the_local_results(self):
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), {'a': 4, 'b': 4, 'c': 3})
    flags = ['--dataset=text_corpus', f'--input={corpus}',
             f'--cache_dir={os.path.join(root, "cache")}', '--vocab_size=30',
             '--global_rounds=4', '--group_rounds=3', '--clients_per_round=3',
             '--finetune_epochs=1', '--batch_size=4', '--curve_every=2',
             '--methods=fl,groupfl,groupperfl,group_only', '--progress=lines']
    local = prepare_runner.run_module(
        _MODULE, *flags, f'--output_dir={os.path.join(root, "local")}',
        timeout=600)
    self.assertEqual(local.returncode, 0, local.stderr)
    workers = [worker_processes.start_worker() for _ in range(2)]
    try:
      addresses = '--workers=' + ','.join(address for _, address in workers)
      remote = prepare_runner.run_module(
          _MODULE, *flags, f'--output_dir={os.path.join(root, "remote")}',
          addresses, timeout=600)
      self.assertEqual(remote.returncode, 0, remote.stderr)
      # Each round's clients split over both workers instead.
      split = prepare_runner.run_module(
          _MODULE, *flags, f'--output_dir={os.path.join(root, "split")}',
          addresses, '--split_rounds', timeout=600)
      self.assertEqual(split.returncode, 0, split.stderr)
      for pid, _ in workers:  # Not the run's to end.
        self.assertTrue(worker_processes.alive(pid))
    finally:
      for pid, _ in workers:
        os.kill(pid, signal.SIGKILL)
    results = []
    for name in ('local', 'remote', 'split'):
      with open(os.path.join(root, name, 'results.json')) as f:
        results.append(json.load(f))
    # The local worker runs at most one client computation per core at once
    # (runtime.default_concurrent_calls); the remote ones, started without
    # --max_concurrent_computation_calls, have no bound: the same results.
    for key in ('methods', 'paired', 'curves', 'evaluated_clients'):
      self.assertEqual(results[0][key], results[1][key], key)
    # Split rounds sum the clients' updates in another order: equal up to
    # float rounding.
    for method, report in results[0]['methods'].items():
      self.assertAlmostEqual(
          results[2]['methods'][method]['test']['perplexity'],
          report['test']['perplexity'], delta=1e-4 * report['test'][
              'perplexity'], msg=method)
    self.assertEqual(set(results[0]['curves']),
                     {'global', 'group/a', 'group/b', 'group/c',
                      'group_only/a', 'group_only/b', 'group_only/c'})

  def test_a_lost_worker_ends_the_run_resumably(self):
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), {'a': 3, 'b': 3})
    flags = ['--dataset=text_corpus', f'--input={corpus}',
             f'--cache_dir={os.path.join(root, "cache")}', '--vocab_size=30',
             '--global_rounds=40', '--group_rounds=2', '--clients_per_round=3',
             '--finetune_epochs=1', '--batch_size=4', '--curve_every=0',
             '--checkpoint_every=1', '--methods=fl,groupfl',
             '--worker_timeout=2', '--progress=lines']
    out = os.path.join(root, 'out')
    pid, address = worker_processes.start_worker()
    try:
      run = prepare_runner.start_module(
          _MODULE, *flags, f'--output_dir={out}', f'--workers={address}',
          capture_stderr=True)
      stage_dir = os.path.join(out, 'state', 'stages', 'global')
      deadline = time.time() + 300
      while not (os.path.isdir(stage_dir) and len(os.listdir(stage_dir)) > 1
                 ) and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
      os.kill(pid, signal.SIGKILL)  # The worker dies mid-stage.
      _, stderr = run.communicate(timeout=300)
    finally:
      if worker_processes.alive(pid):
        os.kill(pid, signal.SIGKILL)
    lines = [l for l in stderr.splitlines() if l.strip()]
    self.assertEqual(run.returncode, 2, stderr)
    self.assertStartsWith(lines[-1], f'error: the TFF worker at {address} '
                          'stopped answering')
    self.assertIn(f're-run the same command to resume from {out}/state',
                  lines[-1])
    self.assertFalse(os.path.exists(os.path.join(out, 'results.json')))
    saved = os.listdir(os.path.join(out, 'state', 'stages', 'global'))
    self.assertNotEmpty(saved)
    # Resumed on a new worker (the workers may change), and against a run
    # never stopped on the local runtime: the same metrics.
    pid, address = worker_processes.start_worker()
    try:
      resumed = prepare_runner.run_module(
          _MODULE, *flags, f'--output_dir={out}', f'--workers={address}',
          timeout=600)
    finally:
      os.kill(pid, signal.SIGKILL)
    self.assertEqual(resumed.returncode, 0, resumed.stderr)
    whole = prepare_runner.run_module(
        _MODULE, *flags, f'--output_dir={os.path.join(root, "whole")}',
        timeout=600)
    self.assertEqual(whole.returncode, 0, whole.stderr)
    results = []
    for directory in (out, os.path.join(root, 'whole')):
      with open(os.path.join(directory, 'results.json')) as f:
        results.append(json.load(f)['methods'])
    self.assertEqual(results[0], results[1])

  def test_bad_worker_flags_are_one_error_line(self):
    port = portpicker.pick_unused_port()
    for flag, message in (
        (f'--workers=localhost:{port},localhost:{port}',
         'error: --workers repeats an address'),
        ('--local_workers=-1', 'error: --local_workers must be 0'),
        ('--worker_concurrency=-2',
         'error: --worker_concurrency must be -1, 0 or positive')):
      run = prepare_runner.run_module(_MODULE, flag, '--output_dir=' +
                                      tempfile.mkdtemp(), timeout=120)
      self.assertEqual(run.returncode, 2, flag)
      self.assertLen(run.stderr_lines, 1, run.stderr)
      self.assertStartsWith(run.stderr_lines[0], message)


if __name__ == '__main__':
  absltest.main()
