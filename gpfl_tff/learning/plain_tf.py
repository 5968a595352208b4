"""A FedAvg round in plain TensorFlow, without TFF: the reference for benchmarks.

The same math as `training.build_process` with the `sgd` server optimizer:
each client starts from the server weights, runs client SGD over its batches
in order, and returns its weight delta; the server averages the deltas
weighted by the clients' example counts (sequences) and applies them with SGD
at the server learning rate.
"""

import numpy as np
import tensorflow as tf

from gpfl_tff.models import metrics


class PlainFedAvg:
  """FedAvg rounds on one Keras model in the current process."""

  def __init__(self, keras_model: tf.keras.Model, client_learning_rate: float,
               server_learning_rate: float = 1.0):
    self.model = keras_model
    self.client_learning_rate = client_learning_rate
    self.server_learning_rate = server_learning_rate
    self._loss = metrics.MaskedCrossEntropy()
    self._optimizer = tf.keras.optimizers.SGD(client_learning_rate)

  @tf.function
  def _client_update(self, dataset):
    variables = self.model.trainable_variables
    examples = tf.constant(0, tf.int64)
    # An iterator loop keeps the model in this graph; `for batch in dataset`
    # would move it into a tf.data function, rebuilt (seconds) on every call.
    for batch in iter(dataset):
      with tf.GradientTape() as tape:
        loss = self._loss(batch['y'], self.model(batch['x'], training=True))
      grads = tape.gradient(loss, variables)
      self._optimizer.apply_gradients(zip(grads, variables))
      examples += tf.shape(batch['x'], out_type=tf.int64)[0]
    return examples

  def next(self, weights: list[np.ndarray],
           datasets: list[tf.data.Dataset]) -> list[np.ndarray]:
    """One round from `weights` (trainable, as arrays) over `datasets`."""
    total = 0
    delta_sum = [np.zeros_like(w) for w in weights]
    for dataset in datasets:
      for variable, value in zip(self.model.trainable_variables, weights):
        variable.assign(value)
      examples = int(self._client_update(dataset))
      for i, variable in enumerate(self.model.trainable_variables):
        delta_sum[i] += examples * (variable.numpy() - weights[i])
      total += examples
    return [w + self.server_learning_rate * d / max(total, 1)
            for w, d in zip(weights, delta_sum)]
