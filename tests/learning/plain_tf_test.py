"""The plain-TF FedAvg round does the same math as the TFF learning process."""

import numpy as np
import tensorflow as tf

from gpfl_tff import runtime
from gpfl_tff.learning import plain_tf
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


if __name__ == '__main__':
  tf.test.main()
