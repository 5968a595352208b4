"""Local stage: fine-tune given weights on one client, and evaluate as sums.

`build_local_stage` returns four TFF computations:
  personalize  (TF)  weights, train data, validation data, epochs, learning
                     rate -> the weights after the epoch (0..epochs) with the
                     lowest validation loss; epoch 0 is the input, so
                     epochs = 0 returns the input unchanged, and fine-tuning
                     never makes the validation loss worse.
  evaluate     (TF)  weights, data -> OrderedDict(loss_sum, token_count,
                     correct_count) over the counted tokens.
  evaluate_clients  (federated)  weights@SERVER, data@CLIENTS -> sums@CLIENTS.
  run          (federated)  weights@SERVER, train, validation and test data
                     @CLIENTS, epochs and learning rate @SERVER ->
                     (sums before, sums after fine-tuning)@CLIENTS.

Fine-tuning uses plain SGD from `tff.learning.optimizers` on mini-batches in
order; it is deterministic.
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.models import metrics


def _assign(variables, values):
  tf.nest.map_structure(lambda v, t: v.assign(t), variables, values)


def _dataset_sums(model, dataset):
  """Sums of `metrics.token_sums` over a dataset of {'x', 'y'} batches."""
  zero = collections.OrderedDict(
      (name, tf.constant(0.0)) for name in metrics.SUM_NAMES)

  def add(total, batch):
    logits = model.predict_on_batch(batch['x'], training=False)
    sums = metrics.token_sums(batch['y'], logits)
    return collections.OrderedDict(
        (name, total[name] + sums[name]) for name in metrics.SUM_NAMES)

  return dataset.reduce(zero, add)


def _mean_loss(sums):
  return sums['loss_sum'] / tf.maximum(sums['token_count'], 1.0)


@dataclasses.dataclass(frozen=True)
class LocalStage:
  personalize: tff.Computation
  evaluate: tff.Computation
  evaluate_clients: tff.Computation
  run: tff.Computation


def build_local_stage(model_fn) -> LocalStage:
  """Builds the local-stage computations for the model of `model_fn`."""
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  with tf.Graph().as_default():
    data_type = tff.SequenceType(
        tff.types.tensorflow_to_type(model_fn().input_spec))

  @tff.tensorflow.computation(weights_type, data_type)
  def evaluate(weights, dataset):
    model = model_fn()

    @tf.function  # Orders the assignment before the reads.
    def assign_and_sum():
      _assign(tff.learning.models.ModelWeights.from_model(model), weights)
      return _dataset_sums(model, dataset)

    return assign_and_sum()

  @tff.tensorflow.computation(weights_type, data_type, data_type, tf.int32,
                              tf.float32)
  def personalize(weights, train_data, validation_data, epochs,
                  learning_rate):
    model = model_fn()
    model_weights = tff.learning.models.ModelWeights.from_model(model)
    trainable = tuple(model_weights.trainable)
    optimizer = tff.learning.optimizers.build_sgdm(learning_rate=learning_rate)

    @tf.function
    def fine_tune():
      _assign(model_weights, weights)
      specs = tf.nest.map_structure(
          lambda v: tf.TensorSpec(v.shape, v.dtype), trainable)
      state = optimizer.initialize(specs)
      best_weights = tf.nest.map_structure(tf.identity, trainable)
      best_loss = _mean_loss(_dataset_sums(model, validation_data))

      # One pass over the repeated data (a dataset loop nested in a loop over
      # epochs costs far more per epoch in TF); validate at epoch ends.
      steps_per_epoch = train_data.reduce(0, lambda count, _: count + 1)
      step = 0
      for batch in train_data.repeat(tf.cast(epochs, tf.int64)):
        with tf.GradientTape() as tape:
          loss = model.forward_pass(batch, training=True).loss
        # Dense, statically shaped gradients (the embedding's arrive as
        # IndexedSlices) so that they match the weights' structure.
        grads = tuple(
            tf.reshape(tf.convert_to_tensor(g), v.shape)
            for g, v in zip(tape.gradient(loss, trainable), trainable))
        state, updated = optimizer.next(state, trainable, grads)
        _assign(trainable, updated)
        step += 1
        # tf.equal, not ==: TFF traces in a tf.Graph, where Tensor.__eq__
        # compares identity, so `==` would be a constant False.
        if tf.equal(step % steps_per_epoch, 0):
          loss = _mean_loss(_dataset_sums(model, validation_data))
          if loss < best_loss:
            best_loss = loss
            best_weights = tf.nest.map_structure(tf.identity, trainable)
      return tff.learning.models.ModelWeights(
          trainable=list(best_weights),
          non_trainable=tf.nest.map_structure(tf.identity,
                                              model_weights.non_trainable))

    return fine_tune()

  @tff.federated_computation(
      tff.FederatedType(weights_type, tff.SERVER),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(np.int32, tff.SERVER),
      tff.FederatedType(np.float32, tff.SERVER))
  def run(weights, train_data, validation_data, test_data, epochs,
          learning_rate):
    client_weights = tff.federated_broadcast(weights)
    before = tff.federated_map(evaluate, (client_weights, test_data))
    tuned = tff.federated_map(
        personalize,
        (client_weights, train_data, validation_data,
         tff.federated_broadcast(epochs),
         tff.federated_broadcast(learning_rate)))
    after = tff.federated_map(evaluate, (tuned, test_data))
    return before, after

  @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def evaluate_clients(weights, data):
    return tff.federated_map(evaluate,
                             (tff.federated_broadcast(weights), data))

  return LocalStage(personalize=personalize, evaluate=evaluate,
                    evaluate_clients=evaluate_clients, run=run)
