"""FLOP counting from the model's shapes, checked against Keras' own shapes."""

import numpy as np
import tensorflow as tf

from benchmarks import hardware
from gpfl_tff.models import language_model


class HardwareTest(tf.test.TestCase):

  def test_forward_flops_are_twice_the_matmul_weights(self):
    # Every kernel of the model is used once per token in a matrix product
    # (the embedding is a lookup), so forward FLOPs = 2 * kernel sizes.
    preset = language_model.PRESETS['small']
    model = language_model.build_keras_model(preset, num_tokens=4004)
    kernels = sum(int(np.prod(w.shape)) for w in model.trainable_weights
                  if 'kernel' in w.name)
    self.assertEqual(
        hardware.forward_flops_per_token(preset.embedding_size,
                                         preset.lstm_units,
                                         preset.projection_size, 4004),
        2 * kernels)
    self.assertEqual(hardware.preset_forward_flops(preset, 4004), 2 * kernels)

  def test_stage_flops_count_training_three_times(self):
    self.assertEqual(hardware.stage_flops(10, train_tokens=2, eval_tokens=5),
                     10 * (3 * 2 + 5))

  def test_peak_is_positive_and_finite(self):
    peak = hardware.matmul_peak_gflops(sizes=(64,), seconds_per_size=0.01)
    self.assertGreater(peak, 0.0)
    self.assertTrue(np.isfinite(peak))


if __name__ == '__main__':
  tf.test.main()
