"""The stages' math in plain TensorFlow, without TFF: the benchmark reference.

Not part of the method: `experiments/benchmark.py` times these against the TFF
computations of `gpfl_tff.learning` on the same clients and batches, and
`tests/benchmarks/plain_tf_test.py` checks that both compute the same thing.

`PlainFedAvg`: the same math as `training.build_process` with the `sgd` server
optimizer. Each client starts from the server weights, runs client SGD over its
batches in order, and returns its weight delta; the server averages the deltas
weighted by the clients' example counts (sequences) and applies them with SGD
at the server learning rate.

`keras_training_step`: one SGD step of a Keras model on a batch of windows
(its own targets), the step the step-timing benchmarks (`batch_scaling`,
`worker_threads`) time.

`PlainLocalStage`: the same math as `local.build_local_stage().run`. Each
client fine-tunes the given weights with SGD for up to `epochs` epochs, keeps
the epoch (0..epochs) with the lowest mean validation loss, stops after
`patience` epochs without a lower one (0: never), and returns the test sums of
the kept weights.

Both loop over dataset iterators inside one `tf.function` per client: the
fastest way found to run these steps in plain TF (a `for batch in dataset` loop
would move the body into a tf.data function, rebuilt on every call).
"""

import collections

import numpy as np
import tensorflow as tf

from gpfl_tff.models import metrics


def keras_training_step(model: tf.keras.Model, learning_rate: float = 0.1):
  """A `tf.function` x -> loss: one SGD step of `model` on the windows `x`
  ([batch, time] token ids, also the targets, as the step benchmarks use)."""
  loss_fn = metrics.MaskedCrossEntropy()
  optimizer = tf.keras.optimizers.SGD(learning_rate)

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      loss = loss_fn(x, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return step


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


class PlainLocalStage:
  """Fine-tunes and scores clients one after another in this process."""

  def __init__(self, keras_model: tf.keras.Model):
    self.model = keras_model
    self._loss = metrics.MaskedCrossEntropy()
    self._optimizer = tf.keras.optimizers.SGD(0.1)

  def _sums(self, dataset):
    total = collections.OrderedDict(
        (name, tf.constant(0.0)) for name in metrics.SUM_NAMES)
    for batch in iter(dataset):
      sums = metrics.token_sums(batch['y'],
                                self.model(batch['x'], training=False))
      total = collections.OrderedDict(
          (name, total[name] + sums[name]) for name in metrics.SUM_NAMES)
    return total

  def _mean_loss(self, dataset):
    sums = self._sums(dataset)
    return sums['loss_sum'] / tf.maximum(sums['token_count'], 1.0)

  @tf.function
  def _client(self, train, validation, test, epochs, patience):
    variables = self.model.trainable_variables
    best = [tf.identity(v) for v in variables]
    best_loss = self._mean_loss(validation)
    best_epoch = tf.constant(0)
    epoch = tf.constant(0)
    limit = tf.where(patience > 0, patience, epochs + 1)
    while epoch < epochs and epoch - best_epoch < limit:
      for batch in iter(train):
        with tf.GradientTape() as tape:
          loss = self._loss(batch['y'], self.model(batch['x'], training=True))
        self._optimizer.apply_gradients(
            zip(tape.gradient(loss, variables), variables))
      epoch += 1
      loss = self._mean_loss(validation)
      if loss < best_loss:
        best_loss, best_epoch = loss, epoch
        best = [tf.identity(v) for v in variables]
    for variable, value in zip(variables, best):
      variable.assign(value)
    result = self._sums(test)
    result['best_epoch'] = best_epoch
    result['epochs_run'] = epoch
    return result

  def run(self, weights: list[np.ndarray], train, validation, test,
          epochs: int, learning_rate: float, patience: int) -> list[dict]:
    """Per client: test sums after fine-tuning from `weights` (trainable).

    Also returns each client's `best_epoch` and `epochs_run`.
    """
    # The optimizer keeps its own variable; assigning it needs no retrace.
    self._optimizer.learning_rate.assign(learning_rate)
    results = []
    for client in zip(train, validation, test):
      for variable, value in zip(self.model.trainable_variables, weights):
        variable.assign(value)
      out = self._client(*client, tf.constant(epochs), tf.constant(patience))
      results.append({k: v.numpy() for k, v in out.items()})
    return results
