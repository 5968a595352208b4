"""Local stage: fine-tune given weights on one client, and evaluate as sums.

`build_local_stage` returns four TFF computations:
  personalize  (TF)  weights, train data, validation data, epochs, learning
                     rate, patience -> (weights, best_epoch,
                     validation_losses): the weights after
                     the epoch (0..epochs) with the lowest validation loss;
                     epoch 0 is the input, so epochs = 0 returns the input
                     unchanged, and fine-tuning never makes the validation
                     loss worse; validation_losses[e] is the mean
                     validation loss after epoch e, for the epochs run.
  evaluate     (TF)  weights, data -> OrderedDict(loss_sum, token_count,
                     correct_count) over the counted tokens.
  evaluate_clients  (federated)  weights@SERVER, data@CLIENTS -> sums@CLIENTS.
  run_prior    (federated)  as `run`, plus prior precisions@SERVER (float32,
                     one per trainable tensor): MAP fine-tuning under a
                     Gaussian prior centred on the given weights
                     (`fine_tune`, `prior_prox`).
  prior_spread (federated)  weights@SERVER, train and validation data
                     @CLIENTS, epochs, learning rate, patience@SERVER ->
                     float32 [tensors]@SERVER: per trainable tensor k, the
                     mean over clients of ||tuned_k - weights_k||^2 / D_k
                     (D_k its entries), for the empirical-Bayes prior.
  run          (federated)  weights@SERVER, train, validation and test data
                     @CLIENTS, epochs, learning rate and patience @SERVER ->
                     OrderedDict(sums..., best_epoch)@CLIENTS: the test sums of
                     each client's fine-tuned weights. Fine-tuning and scoring
                     are one client computation, so the tuned weights never
                     leave the client.

Early stopping (`patience` = P > 0): fine-tuning ends once P epochs in a row
have not lowered the validation loss below the best so far. The kept weights
are still the best epoch seen; with P = 0 (or P >= epochs) every epoch runs and
the rule is exactly "best epoch of 0..E on validation". With P = 1 the result
is the same whenever the client's validation curve over epochs falls and then
rises (has one minimum); `tests/learning/local_test.py` checks both, and
docs/RESULTS.md reports how often the two differ on real clients.

Fine-tuning uses plain SGD from `tff.learning.optimizers` on mini-batches in
order; it is deterministic.

Why loops over dataset iterators (`for batch in iter(dataset)`): a `for batch
in dataset` loop, or `dataset.reduce`, turns the loop body (the model's forward
and backward pass) into a tf.data function, which TFF's C++ runtime
instantiates and optimizes again for every client dataset it receives. That
cost (about 0.2 s a call for the `small` model, measured) exceeded the
fine-tuning itself. Iterator loops keep the body in the computation's own
graph, which the runtime prepares once.

Why `evaluate_clients` and not `tff.learning.algorithms.build_fed_eval`:
fed_eval returns metrics aggregated over the clients (a `LearningProcess`
whose state holds the weights); every comparison here is paired over
clients, so each client's own sums must come back (`@CLIENTS`), and the
same sums must come from the fine-tuned path (`run`) to be comparable. The
model's `tff.learning.models.VariableModel` metrics are the same either way.
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.models import metrics


def _assign(variables, values):
  tf.nest.map_structure(lambda v, t: v.assign(t), variables, values)


def assign_weights(model, weights) -> None:
  """Sets `model`'s variables to `weights` (a ModelWeights structure)."""
  _assign(tff.learning.models.ModelWeights.from_model(model), weights)


def dataset_sums(model, dataset):
  """Sums of `metrics.token_sums` over a dataset of {'x', 'y'} batches, by
  the model's cross-entropy.

  Call inside a tf.function (or TFF computation): the iterator loop becomes a
  while loop in the caller's graph.
  """
  total = collections.OrderedDict(
      (name, tf.constant(0.0)) for name in metrics.SUM_NAMES)
  for batch in iter(dataset):
    logits = model.predict_on_batch(batch['x'], training=False)
    sums = metrics.token_sums(batch['y'], logits, model.cross_entropy)
    total = collections.OrderedDict(
        (name, total[name] + sums[name]) for name in metrics.SUM_NAMES)
  return total


def _mean_loss(sums):
  return sums['loss_sum'] / tf.maximum(sums['token_count'], 1.0)


def prior_prox(weights, center, step):
  """The proximal step of the prior term sum_k (step_k / 2) ||w_k - c_k||^2:
  per tensor k, argmin_v ||v - w_k||^2 / 2 + (step_k / 2) ||v - c_k||^2.

  `step` holds one value per tensor, or one for all (a scalar). MAP
  fine-tuning of a client with n counted train tokens minimizes
  mean_loss(w) + sum_k (precision_k / (2 n)) ||w_k - center_k||^2 (n times
  this is the negative log posterior under the prior w_k ~ N(center_k,
  I / precision_k), independent over tensors k). Each SGD step on mean_loss
  with learning rate eta is followed by this proximal step with
  step_k = eta * precision_k / n: proximal gradient descent,
  whose fixed point is the MAP estimate, and which stays stable however
  strong the prior (a plain gradient step on the prior term diverges once
  eta * precision / n > 2). `tests/learning/prior_test.py` checks it against
  the closed-form posterior mean of a Gaussian hierarchy.
  """
  steps = tf.broadcast_to(tf.cast(step, tf.float32), [len(weights)])
  return tuple((w + steps[k] * c) / (1.0 + steps[k])
               for k, (w, c) in enumerate(zip(weights, center)))


def _token_count(dataset):
  count = tf.constant(0.0)
  for batch in iter(dataset):
    count += tf.reduce_sum(metrics.token_mask(batch['y']))
  return count


def fine_tune(model, weights, train_data, validation_data, epochs,
              learning_rate, patience, prior_precision=None):
  """Fine-tunes `model` from `weights`; leaves the best epoch's weights in it.

  With `prior_precision` (float32: one per trainable tensor, or a scalar for
  all), every SGD step is followed by
  the prior's proximal step (`prior_prox`), centred on the input weights:
  MAP under a Gaussian prior centred on the start (the group) model. None:
  plain fine-tuning.

  Call inside a tf.function. Returns (best epoch, 0 = the input weights;
  float32 [epochs run + 1] mean validation loss after each epoch).
  """
  model_weights = tff.learning.models.ModelWeights.from_model(model)
  trainable = tuple(model_weights.trainable)
  optimizer = tff.learning.optimizers.build_sgdm(learning_rate=learning_rate)
  loss_fn = metrics.MaskedCrossEntropy(model.cross_entropy)
  _assign(model_weights, weights)
  specs = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype),
                                trainable)
  state = optimizer.initialize(specs)
  best_weights = tf.nest.map_structure(tf.identity, trainable)
  if prior_precision is not None:
    center = tuple(tf.identity(v) for v in trainable)
    prior_step = (learning_rate * prior_precision
                  / tf.maximum(_token_count(train_data), 1.0))
  best_loss = _mean_loss(dataset_sums(model, validation_data))
  losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
  losses = losses.write(0, best_loss)
  best_epoch = tf.constant(0)
  epoch = tf.constant(0)
  # patience <= 0 never stops early.
  limit = tf.where(patience > 0, patience, epochs + 1)
  while epoch < epochs and epoch - best_epoch < limit:
    for batch in iter(train_data):
      with tf.GradientTape() as tape:
        # The loss alone: `model.forward_pass` would also add to the model's
        # metric sums, which fine-tuning never reads.
        logits = model.predict_on_batch(batch['x'], training=True)
        train_loss = loss_fn(batch['y'], logits)
      # Dense, statically shaped gradients (the embedding's arrive as
      # IndexedSlices) so that they match the weights' structure.
      grads = tuple(
          tf.reshape(tf.convert_to_tensor(g), v.shape)
          for g, v in zip(tape.gradient(train_loss, trainable), trainable))
      state, updated = optimizer.next(state, trainable, grads)
      if prior_precision is not None:
        updated = prior_prox(updated, center, prior_step)
      _assign(trainable, updated)
    epoch += 1
    loss = _mean_loss(dataset_sums(model, validation_data))
    losses = losses.write(epoch, loss)
    if loss < best_loss:
      best_loss = loss
      best_epoch = epoch
      best_weights = tf.nest.map_structure(tf.identity, trainable)
  _assign(trainable, best_weights)
  return best_epoch, losses.stack()


def _fine_tuned_sums(model_fn, weights, train_data, validation_data,
                     test_data, epochs, learning_rate, patience,
                     prior_precision=None):
  """The test sums (and best epoch) of a client after `fine_tune`: the body
  of the client computations of `run` and `run_prior`."""
  model = model_fn()

  @tf.function
  def tune_and_score():
    best_epoch, _ = fine_tune(model, weights, train_data, validation_data,
                              epochs, learning_rate, patience, prior_precision)
    result = dataset_sums(model, test_data)
    result['best_epoch'] = best_epoch
    return result

  return tune_and_score()


@dataclasses.dataclass(frozen=True)
class LocalStage:
  personalize: tff.Computation
  evaluate: tff.Computation
  evaluate_clients: tff.Computation
  run: tff.Computation
  run_prior: tff.Computation
  prior_spread: tff.Computation


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
      assign_weights(model, weights)
      return dataset_sums(model, dataset)

    return assign_and_sum()

  @tff.tensorflow.computation(weights_type, data_type, data_type, tf.int32,
                              tf.float32, tf.int32)
  def personalize(weights, train_data, validation_data, epochs,
                  learning_rate, patience):
    model = model_fn()

    @tf.function
    def tune():
      best_epoch, losses = fine_tune(model, weights, train_data,
                                     validation_data, epochs, learning_rate,
                                     patience)
      model_weights = tff.learning.models.ModelWeights.from_model(model)
      return (tf.nest.map_structure(tf.identity, model_weights), best_epoch,
              losses)

    return tune()

  @tff.tensorflow.computation(weights_type, data_type, data_type, data_type,
                              tf.int32, tf.float32, tf.int32)
  def personalize_and_evaluate(weights, train_data, validation_data,
                               test_data, epochs, learning_rate, patience):
    return _fine_tuned_sums(model_fn, weights, train_data, validation_data,
                            test_data, epochs, learning_rate, patience)

  precisions_type = tff.TensorType(np.float32, [len(weights_type.trainable)])

  @tff.tensorflow.computation(weights_type, data_type, data_type, data_type,
                              tf.int32, tf.float32, tf.int32, precisions_type)
  def personalize_prior_and_evaluate(weights, train_data, validation_data,
                                     test_data, epochs, learning_rate,
                                     patience, prior_precision):
    return _fine_tuned_sums(model_fn, weights, train_data, validation_data,
                            test_data, epochs, learning_rate, patience,
                            prior_precision)

  @tff.tensorflow.computation(weights_type, data_type, data_type, tf.int32,
                              tf.float32, tf.int32)
  def delta_squares(weights, train_data, validation_data, epochs,
                    learning_rate, patience):
    model = model_fn()

    @tf.function
    def tune_and_measure():
      fine_tune(model, weights, train_data, validation_data, epochs,
                learning_rate, patience)
      tuned = tff.learning.models.ModelWeights.from_model(model).trainable
      # Per tensor: its mean squared delta.
      return tf.stack([tf.reduce_mean(tf.square(t - w))
                       for t, w in zip(tuned, weights.trainable)])

    return tune_and_measure()

  @tff.federated_computation(
      tff.FederatedType(weights_type, tff.SERVER),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(np.int32, tff.SERVER),
      tff.FederatedType(np.float32, tff.SERVER),
      tff.FederatedType(np.int32, tff.SERVER))
  def run(weights, train_data, validation_data, test_data, epochs,
          learning_rate, patience):
    return tff.federated_map(
        personalize_and_evaluate,
        (tff.federated_broadcast(weights), train_data, validation_data,
         test_data, tff.federated_broadcast(epochs),
         tff.federated_broadcast(learning_rate),
         tff.federated_broadcast(patience)))

  @tff.federated_computation(
      tff.FederatedType(weights_type, tff.SERVER),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(np.int32, tff.SERVER),
      tff.FederatedType(np.float32, tff.SERVER),
      tff.FederatedType(np.int32, tff.SERVER),
      tff.FederatedType(precisions_type, tff.SERVER))
  def run_prior(weights, train_data, validation_data, test_data, epochs,
                learning_rate, patience, prior_precision):
    return tff.federated_map(
        personalize_prior_and_evaluate,
        (tff.federated_broadcast(weights), train_data, validation_data,
         test_data, tff.federated_broadcast(epochs),
         tff.federated_broadcast(learning_rate),
         tff.federated_broadcast(patience),
         tff.federated_broadcast(prior_precision)))

  @tff.federated_computation(
      tff.FederatedType(weights_type, tff.SERVER),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(data_type, tff.CLIENTS),
      tff.FederatedType(np.int32, tff.SERVER),
      tff.FederatedType(np.float32, tff.SERVER),
      tff.FederatedType(np.int32, tff.SERVER))
  def prior_spread(weights, train_data, validation_data, epochs,
                   learning_rate, patience):
    return tff.federated_mean(tff.federated_map(
        delta_squares,
        (tff.federated_broadcast(weights), train_data, validation_data,
         tff.federated_broadcast(epochs),
         tff.federated_broadcast(learning_rate),
         tff.federated_broadcast(patience))))

  @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def evaluate_clients(weights, data):
    return tff.federated_map(evaluate,
                             (tff.federated_broadcast(weights), data))

  return LocalStage(personalize=personalize, evaluate=evaluate,
                    evaluate_clients=evaluate_clients, run=run,
                    run_prior=run_prior, prior_spread=prior_spread)
