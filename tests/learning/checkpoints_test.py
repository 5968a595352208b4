"""Checkpointed rounds resume to the same result; broken checkpoints are named."""

import asyncio
import glob
import os

import numpy as np
import tensorflow as tf

from gpfl_tff import runtime
from gpfl_tff.learning import checkpoints
from gpfl_tff.learning import data_source
from gpfl_tff.learning import training
from tests.learning import synthetic

_ROUNDS = 7


class _Stop(Exception):
  pass


class CheckpointsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = training.TrainingConfig(
        clients_per_round=2, client_learning_rate=0.5,
        server_optimizer='adam', server_learning_rate=0.05, batch_size=4)
    cls.process = training.build_process(
        synthetic.tiny_model_fn(vocab_size=8), cls.config)
    cls.data = {f'c{i}': synthetic.token_dataset(
        synthetic.cycle_windows(words=6, offset=i, windows=8))
                for i in range(5)}

  def _run(self, store=None, stop_at=None, seen=None, validate=None):
    """Rounds from a fresh state; raises _Stop when round `stop_at` starts."""
    started = []

    def dataset_fn(client):
      if len(started) // 2 + 1 == stop_at:
        raise _Stop()
      started.append(client)
      return self.data[client]

    state = training.start_state(self.process)
    return training.run_rounds(
        self.process, state,
        data_source.ClientIdsIterator(sorted(self.data),
                                      np.random.default_rng(3)),
        dataset_fn, _ROUNDS, clients_per_round=2,
        on_round=None if seen is None else seen.append, checkpoints=store,
        validate=validate, validate_every=1, keep_best=validate is not None)

  def test_stopped_and_resumed_equals_uninterrupted(self):
    root = self.create_tempdir().full_path
    with runtime.local_runtime():
      state, history = self._run()
      store = checkpoints.StageCheckpoints(root, every=3)
      # Stopped in round 5: rounds 1-4 are done, 3 was checkpointed on
      # schedule and 4 when the exception went through.
      with self.assertRaises(_Stop):
        self._run(store, stop_at=5)
      self.assertEqual(store.latest_round(), 4)
      seen = []
      resumed, resumed_history = self._run(store, seen=seen)
      # A finished stage loads and replays without training.
      again, again_history = self._run(store, stop_at=1)
    for records in (resumed_history, seen, again_history):
      self.assertEqual([{k: r[k] for k in ('round', 'train_perplexity')}
                        for r in records],
                       [{k: r[k] for k in ('round', 'train_perplexity')}
                        for r in history])
    for other in (resumed, again):
      for a, b in zip(tf.nest.flatten(state), tf.nest.flatten(other)):
        self.assertAllEqual(a, b)
    # At most two versions are kept, the last the whole stage.
    self.assertEqual(sorted(os.listdir(root)),
                     ['round_6', f'round_{_ROUNDS}'])

  def test_best_round_before_the_last_checkpoint_survives_a_resume(self):
    def total(state):
      return sum(float(np.sum(w)) for w in tf.nest.flatten(
          self.process.get_model_weights(state)))

    root = self.create_tempdir().full_path
    with runtime.local_runtime():
      totals = []
      self._run(validate=lambda s: totals.append(total(s)) or 1.0)

      def validate(state):  # Lowest at round 3 (totals[0]: the start).
        return 1.0 + abs(total(state) - totals[3])

      kept, history = self._run(validate=validate)
      store = checkpoints.StageCheckpoints(root, every=2)
      with self.assertRaises(_Stop):  # Rounds 1-4 done, round 4 saved.
        self._run(store, stop_at=5, validate=validate)
      self.assertEqual(store.latest_round(), 4)
      resumed, resumed_history = self._run(store, validate=validate)
      self.assertAlmostEqual(total(kept), totals[3], places=4)
    self.assertEqual(history[-1]['kept_round'], 3)
    self.assertEqual(resumed_history[-1]['kept_round'], 3)
    for a, b in zip(tf.nest.flatten(kept), tf.nest.flatten(resumed)):
      self.assertAllEqual(a, b)

  def test_unreadable_checkpoint_is_an_error_naming_it(self):
    root = self.create_tempdir().full_path
    store = checkpoints.StageCheckpoints(root, every=2)
    with runtime.local_runtime():
      with self.assertRaises(_Stop):
        self._run(store, stop_at=4)
      for path in glob.glob(os.path.join(root, 'round_3', 'variables', '*')):
        with open(path, 'r+b') as f:
          f.truncate(10)
      with self.assertRaisesRegex(checkpoints.CheckpointError,
                                  'round_3 is unreadable'):
        self._run(store)

  def test_foreign_checkpoint_is_an_error_naming_it(self):
    # TFF itself would load another model's state (one more word in the
    # vocabulary: larger embedding and output tensors) into this template.
    other = training.build_process(synthetic.tiny_model_fn(vocab_size=9),
                                   self.config)
    root = self.create_tempdir().full_path
    store = checkpoints.StageCheckpoints(root, every=1)
    with runtime.local_runtime():
      store.save(2, other.initialize(), b'{}', [{}, {}])
      with self.assertRaisesRegex(
          checkpoints.CheckpointError,
          r'round_2 holds a float32 tensor of shape \(13, 8\) where this '
          r'run has float32 \(12, 8\) .*another model'):
        store.load(self.process.initialize())
      # Another program's state: other structure, other tensors.
      foreign = checkpoints.StageCheckpoints(
          self.create_tempdir().full_path, every=1)
      asyncio.run(foreign._manager.save({'weights': [np.zeros(3)]}, 5))
      with self.assertRaisesRegex(checkpoints.CheckpointError,
                                  'round_5 is unreadable'):
        foreign.load(self.process.initialize())

  def test_evaluations_round_trip_and_broken_ones_are_named(self):
    store = checkpoints.RunStore(self.create_tempdir().full_path, every=1)
    self.assertIsNone(store.load_evaluation('local/group'))
    sums = {'a/b': {'loss_sum': 1.5, 'token_count': 3.0, 'best_epoch': 2}}
    store.save_evaluation('local/group', sums)
    self.assertEqual(store.load_evaluation('local/group'), sums)
    path = glob.glob(os.path.join(store.root_dir, 'evaluations', '*'))[0]
    with open(path, 'w') as f:
      f.write('{"a": ')
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                'evaluation .* is unreadable'):
      store.load_evaluation('local/group')

  def test_stage_names_make_distinct_folders(self):
    # A stage's checkpoint manager creates its folder: under a temporary
    # root, never the machine's own (read-only in Bazel's sandbox).
    root = self.create_tempdir().full_path
    store = checkpoints.RunStore(root, every=1)
    names = ['group/a b', 'group/a_b', 'group/a%20b', 'global']
    folders = {store.stage(n).root_dir for n in names}
    self.assertLen(folders, len(names))
    for folder in folders:
      self.assertEqual(os.path.dirname(folder), os.path.join(root, 'stages'))


if __name__ == '__main__':
  tf.test.main()
