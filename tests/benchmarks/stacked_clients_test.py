"""The stacked-clients benchmark model does the math of the Keras model."""

import numpy as np
import tensorflow as tf

from benchmarks import stacked_clients
from gpfl_tff.models import language_model
from gpfl_tff.models import metrics


class StackedClientsTest(tf.test.TestCase):

  def test_each_client_gets_its_own_keras_gradient(self):
    preset = language_model.Preset(vocab_size=20, embedding_size=4,
                                   lstm_units=8, projection_size=4, seq_len=5)
    rng = np.random.default_rng(0)
    models = [language_model.build_keras_model(preset, 24, seed=s)
              for s in (0, 10, 20)]
    x = tf.constant(rng.integers(4, 24, size=(3, 2, 5)), tf.int32)
    y = tf.constant(rng.integers(0, 24, size=(3, 2, 5)), tf.int32)
    expected = []
    for c, model in enumerate(models):
      with tf.GradientTape() as tape:
        loss = metrics.MaskedCrossEntropy()(y[c], model(x[c], training=True))
      expected.append([tf.convert_to_tensor(g) for g in
                       tape.gradient(loss, model.trainable_variables)])
    # Three clients with different weights, stacked on a leading axis.
    weights = [tf.Variable(tf.stack(vs)) for vs in
               zip(*(m.trainable_variables for m in models))]
    with tf.GradientTape() as tape:
      loss = stacked_clients.stacked_loss(weights, x, y)
    stacked = tape.gradient(loss, weights)
    for c in range(3):
      for want, got in zip(expected[c], stacked):
        self.assertAllClose(want, tf.convert_to_tensor(got)[c], rtol=1e-4,
                            atol=1e-6)


if __name__ == '__main__':
  tf.test.main()
