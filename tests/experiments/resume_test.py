"""A run stopped by SIGTERM, or killed -9 five times, resumes to the same results.

Also: a changed flag is refused, and a broken checkpoint is named, both with
one error line and nothing overwritten.
"""

import asyncio
import glob
import json
import os
import random
import shutil
import signal
import tempfile
import time
import uuid

from absl.testing import absltest
import numpy as np
import tensorflow_federated as tff

from tests.learning import synthetic
from tests.prepare import prepare_runner

_MODULE = 'experiments.run_group_personalization'


def _lines(path: str) -> int:
  try:
    with open(path, encoding='utf-8') as f:
      return sum(1 for _ in f)
  except FileNotFoundError:
    return 0


def _latest_round(stage_dir: str) -> int:
  """The latest saved round of a stage's checkpoints (0 if none)."""
  rounds = [int(name[len('round_'):]) for name in (
      os.listdir(stage_dir) if os.path.isdir(stage_dir) else [])
            if name.startswith('round_') and name[len('round_'):].isdigit()]
  return max(rounds, default=0)


class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    corpus = synthetic.write_grouped_corpus(
        os.path.join(cls.root, 'corpus.jsonl'), {'a': 3, 'b': 3})
    cls.flags = [
        '--dataset=text_corpus', f'--input={corpus}',
        f'--cache_dir={os.path.join(cls.root, "cache")}', '--vocab_size=30',
        '--global_rounds=30', '--group_rounds=2', '--clients_per_round=3',
        '--finetune_epochs=1', '--batch_size=4', '--seed=1',
        '--checkpoint_every=1', '--curve_every=10',
        '--methods=fl,perfl,groupfl,groupperfl']
    cls.whole = os.path.join(cls.root, 'whole')
    cls.whole_run = prepare_runner.run_module(
        _MODULE, *cls.flags, f'--output_dir={cls.whole}', timeout=600)

    # The same command, stopped by SIGTERM once the global stage has saved
    # round 4, then run again.
    cls.resumed = os.path.join(cls.root, 'resumed')
    marker = uuid.uuid4().hex
    stopped = prepare_runner.start_module(
        _MODULE, *cls.flags, f'--output_dir={cls.resumed}',
        env={prepare_runner.MARKER: marker})
    stage_dir = os.path.join(cls.resumed, 'state', 'stages', 'global')
    deadline = time.time() + 300
    while _latest_round(stage_dir) < 4 and stopped.poll() is None and (
        time.time() < deadline):
      time.sleep(0.02)
    stopped.send_signal(signal.SIGTERM)
    cls.stopped_code = stopped.wait(timeout=120)
    cls.stopped_results = os.path.exists(
        os.path.join(cls.resumed, 'results.json'))
    cls.survivors = prepare_runner.marked_processes(marker)
    cls.rounds_saved = _latest_round(stage_dir)
    cls.resume_run = prepare_runner.run_module(
        _MODULE, *cls.flags, f'--output_dir={cls.resumed}', timeout=600)

  def _read(self, directory, name):
    with open(os.path.join(directory, name), encoding='utf-8') as f:
      return f.read()

  def test_stopped_midway_with_state_saved_and_no_worker_left(self):
    self.assertEqual(self.whole_run.returncode, 0, self.whole_run.stderr)
    self.assertEqual(self.stopped_code, 128 + signal.SIGTERM)
    self.assertFalse(self.stopped_results)
    self.assertGreaterEqual(self.rounds_saved, 4)
    self.assertLess(self.rounds_saved, 30)
    self.assertEqual(self.survivors, [])

  def test_resumed_run_ends_with_the_same_metrics(self):
    self.assertEqual(self.resume_run.returncode, 0, self.resume_run.stderr)
    self.assertEqual(self._read(self.resumed, 'clients.csv'),
                     self._read(self.whole, 'clients.csv'))
    resumed, whole = (json.loads(self._read(d, 'results.json'))
                      for d in (self.resumed, self.whole))
    for key in ('methods', 'paired', 'curves', 'small_data'):
      self.assertEqual(resumed[key], whole[key], key)

  def test_killed_five_times_then_resumed_equals_uninterrupted(self):
    output_dir = os.path.join(self.root, 'killed')
    log = os.path.join(output_dir, 'progress.log')
    rng = random.Random(5)
    marker = uuid.uuid4().hex
    kills = 0
    for _ in range(5):
      # Killed once the run has logged a random number of new steps
      # (rounds or evaluated chunks): a random round of a random stage.
      before = _lines(log)
      steps = rng.randint(2, 12)
      run = prepare_runner.start_module(
          _MODULE, *self.flags, f'--output_dir={output_dir}',
          env={prepare_runner.MARKER: marker})
      deadline = time.time() + 300
      while (_lines(log) < before + steps and run.poll() is None
             and time.time() < deadline):
        time.sleep(0.02)
      if run.poll() is None:
        run.kill()
        kills += 1
      run.wait()
    self.assertGreaterEqual(kills, 3)
    deadline = time.time() + 30
    while prepare_runner.marked_processes(marker) and time.time() < deadline:
      time.sleep(0.1)
    self.assertEqual(prepare_runner.marked_processes(marker), [])
    final = prepare_runner.run_module(
        _MODULE, *self.flags, f'--output_dir={output_dir}', timeout=600)
    self.assertEqual(final.returncode, 0, final.stderr)
    self.assertEqual(self._read(output_dir, 'clients.csv'),
                     self._read(self.whole, 'clients.csv'))

  def test_finished_run_run_again_gives_the_same_results(self):
    again = os.path.join(self.root, 'again')
    shutil.copytree(self.whole, again)
    os.remove(os.path.join(again, 'results.json'))
    # As if written before --stage_selection, --prior_estimator,
    # --group_start and --cross_entropy existed: the fields are missing. The
    # run held stage_selection's and group_start's defaults (last, fresh)
    # then, and the estimator and loss of that code (isotropic, kernel), not
    # today's defaults.
    path = os.path.join(again, 'state', 'run.json')
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
    del stored['stages']['stage_selection']
    del stored['stages']['prior_estimator']
    del stored['stages']['group_start']
    del stored['training']['cross_entropy']
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(stored, f)
    for flag, message in (
        ('--stage_selection=best', '--stage_selection=last; this command '
         'gives --stage_selection=best'),
        ('--prior_estimator=per_tensor', '--prior_estimator=isotropic; this '
         'command gives --prior_estimator=per_tensor'),
        ('--group_start=continue', '--group_start=fresh; this command gives '
         '--group_start=continue'),
        ('--cross_entropy=ops', '--cross_entropy=kernel; this command gives '
         '--cross_entropy=ops')):
      refused = prepare_runner.run_module(
          _MODULE, *self.flags, '--prior_estimator=isotropic',
          '--cross_entropy=kernel', flag, f'--output_dir={again}',
          timeout=300)
      self.assertEqual(refused.returncode, 2)
      self.assertLen(refused.stderr_lines, 1)
      self.assertIn(message, refused.stderr_lines[0])
    run = prepare_runner.run_module(_MODULE, *self.flags,
                                    '--prior_estimator=isotropic',
                                    '--cross_entropy=kernel',
                                    f'--output_dir={again}', timeout=600)
    self.assertEqual(run.returncode, 0, run.stderr)
    again_results, whole = (json.loads(self._read(d, 'results.json'))
                            for d in (again, self.whole))
    for key in ('methods', 'paired', 'curves', 'small_data'):
      self.assertEqual(again_results[key], whole[key], key)
    self.assertNotEmpty(again_results['curves']['global'])

  def test_changed_flag_is_refused_and_nothing_is_overwritten(self):
    before = self._read(self.whole, 'results.json')
    run = prepare_runner.run_module(
        _MODULE, *self.flags, '--global_rounds=31',
        f'--output_dir={self.whole}', timeout=300)
    self.assertEqual(run.returncode, 2)
    self.assertLen(run.stderr_lines, 1)
    self.assertStartsWith(run.stderr_lines[0], 'error: ')
    self.assertIn('--global_rounds=30', run.stderr_lines[0])
    self.assertIn('--global_rounds=31', run.stderr_lines[0])
    self.assertEqual(self._read(self.whole, 'results.json'), before)

  def test_broken_checkpoint_is_named_not_restarted(self):
    broken = os.path.join(self.root, 'broken')
    shutil.copytree(self.whole, broken)
    os.remove(os.path.join(broken, 'results.json'))
    # Without kept evaluations the global stage must be loaded again.
    shutil.rmtree(os.path.join(broken, 'state', 'evaluations'))
    latest = glob.glob(os.path.join(broken, 'state', 'stages', 'global',
                                    'round_30', 'variables', '*'))
    for path in latest:
      with open(path, 'r+b') as f:
        f.truncate(8)
    run = prepare_runner.run_module(_MODULE, *self.flags,
                                    f'--output_dir={broken}', timeout=300)
    self.assertEqual(run.returncode, 2)
    # After the progress bars of the stage it was loading: one error line.
    errors = [l for l in run.stderr_lines if 'error' in l]
    self.assertLen(errors, 1)
    self.assertEqual(errors[0], run.stderr_lines[-1])
    self.assertStartsWith(errors[0], 'error: checkpoint ')
    self.assertIn('round_30 is unreadable', errors[0])
    self.assertFalse(os.path.exists(os.path.join(broken, 'results.json')))

  def test_foreign_checkpoint_is_refused_and_nothing_is_overwritten(self):
    foreign = os.path.join(self.root, 'foreign')
    shutil.copytree(self.whole, foreign)
    os.remove(os.path.join(foreign, 'results.json'))
    shutil.rmtree(os.path.join(foreign, 'state', 'evaluations'))
    # The global stage's folder now holds another program's checkpoint.
    stage_dir = os.path.join(foreign, 'state', 'stages', 'global')
    shutil.rmtree(stage_dir)
    manager = tff.program.FileProgramStateManager(stage_dir, prefix='round_')
    asyncio.run(manager.save({'weights': [np.zeros(3, np.float32)]}, 30))
    before = sorted(os.listdir(stage_dir))
    run = prepare_runner.run_module(_MODULE, *self.flags,
                                    f'--output_dir={foreign}', timeout=300)
    self.assertEqual(run.returncode, 2)
    errors = [l for l in run.stderr_lines if 'error' in l]
    self.assertLen(errors, 1)
    self.assertEqual(errors[0], run.stderr_lines[-1])
    self.assertIn('global/round_30 is unreadable', errors[0])
    self.assertEqual(sorted(os.listdir(stage_dir)), before)
    self.assertFalse(os.path.exists(os.path.join(foreign, 'results.json')))


if __name__ == '__main__':
  absltest.main()
