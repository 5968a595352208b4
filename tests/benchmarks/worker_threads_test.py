"""The worker-threads benchmark, run as a user runs it (a few steps)."""

from absl.testing import absltest

from tests.prepare import prepare_runner

_MODULE = 'benchmarks.worker_threads'


class WorkerThreadsTest(absltest.TestCase):

  def test_every_layout_is_timed_and_compared(self):
    run = prepare_runner.run_module(_MODULE, '--steps=4', '--reps=1',
                                    '--batch_size=2', timeout=300)
    self.assertEqual(run.returncode, 0, run.stderr)
    values = dict(field.split('=') for line in run.stdout.splitlines()
                  for field in line.split())
    for layout in ('one_process', 'two_processes', 'two_single'):
      self.assertIn(f'layout={layout} ', run.stdout)
    for name in ('speedup_two_processes', 'speedup_two_single'):
      self.assertGreater(float(values[name]), 0.0)
    # The speed-ups are the one-process median over each layout's.
    one = float(run.stdout.split('layout=one_process seconds=')[1].split()[0])
    two = float(run.stdout.split('layout=two_single seconds=')[1].split()[0])
    # Seconds are printed to 3 decimals: allow for that rounding.
    rounding = (one + 5e-4) / (two - 5e-4) - one / two
    self.assertAlmostEqual(float(values['speedup_two_single']), one / two,
                           delta=rounding + 1e-3)

  def test_odd_steps_are_one_error_line(self):
    run = prepare_runner.run_module(_MODULE, '--steps=3')
    self.assertEqual(run.returncode, 2)
    self.assertEqual(run.stderr_lines,
                     ['error: --steps must be even and at least 2, got 3'])


if __name__ == '__main__':
  absltest.main()
