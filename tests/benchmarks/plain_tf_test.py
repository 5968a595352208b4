"""The plain-TF references do the same math as the TFF computations."""

import numpy as np
import tensorflow as tf

from benchmarks import plain_tf
from gpfl_tff import runtime
from gpfl_tff.learning import local
from gpfl_tff.learning import training
from gpfl_tff.models import language_model
from tests.learning import synthetic


class PlainFedAvgTest(tf.test.TestCase):

  def test_one_round_matches_tff_process(self):
    preset = synthetic.tiny_preset()
    model_fn = synthetic.tiny_model_fn(seed=3)
    # Clients of different sizes, so that the example weighting matters.
    datasets = [
        synthetic.token_dataset(synthetic.cycle_windows(10, offset, windows))
        for offset, windows in ((0, 3), (4, 8), (7, 5))
    ]
    config = training.TrainingConfig(client_learning_rate=0.3,
                                     server_learning_rate=1.0)
    with runtime.local_runtime():
      process = training.build_process(model_fn, config)
      state = training.start_state(process)
      start = process.get_model_weights(state)
      tff_weights = process.get_model_weights(
          process.next(state, datasets).state)

    plain = plain_tf.PlainFedAvg(
        language_model.build_keras_model(preset,
                                         synthetic.num_tokens(preset), 3),
        client_learning_rate=0.3)
    initial = [v.numpy() for v in plain.model.trainable_variables]
    for ours, theirs in zip(initial, start.trainable):
      self.assertAllEqual(ours, theirs)
    plain_weights = plain.next(initial, datasets)

    moved = sum(float(np.abs(w - i).sum())
                for w, i in zip(plain_weights, initial))
    self.assertGreater(moved, 1e-3)
    for ours, theirs in zip(plain_weights, tff_weights.trainable):
      self.assertAllClose(ours, theirs, atol=1e-5, rtol=1e-4)


class PlainLocalStageTest(tf.test.TestCase):

  def test_matches_the_tff_local_stage(self):
    preset = synthetic.tiny_preset()
    model_fn = synthetic.tiny_model_fn(seed=4)
    clients = [synthetic.cycle_windows(10, offset, windows)
               for offset, windows in ((0, 6), (3, 9), (5, 4))]
    train = [synthetic.token_dataset(c, batch_size=2) for c in clients]
    # Validation on another client's data, so that some clients stop early.
    validation = [synthetic.token_dataset(clients[(i + 1) % 3], batch_size=5)
                  for i in range(3)]
    test = [synthetic.token_dataset(c, batch_size=5) for c in clients]
    with runtime.local_runtime():
      stage = local.build_local_stage(model_fn)
      weights = language_model.initial_weights(model_fn)
      expected = stage.run(weights, train, validation, test, np.int32(4),
                           np.float32(5.0), np.int32(1))
    plain = plain_tf.PlainLocalStage(language_model.build_keras_model(
        preset, synthetic.num_tokens(preset), 4))
    results = plain.run(list(weights.trainable), train, validation, test,
                        epochs=4, learning_rate=5.0, patience=1)
    self.assertLen(results, 3)
    # The large learning rate makes every client stop before epoch 4.
    self.assertTrue(all(r['epochs_run'] < 4 for r in results))
    for ours, theirs in zip(results, expected):
      self.assertEqual(int(ours['best_epoch']), int(theirs['best_epoch']))
      self.assertLessEqual(ours['best_epoch'], ours['epochs_run'])
      self.assertEqual(ours['token_count'], theirs['token_count'])
      self.assertAllClose(ours['loss_sum'], theirs['loss_sum'], rtol=1e-5)


if __name__ == '__main__':
  tf.test.main()
