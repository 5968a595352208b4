"""The next-word LSTM language model, its size presets, and its TFF wrapper.

Architecture (as in TFF's Stack Overflow next-word baselines): token embedding,
one LSTM, a dense projection, and a dense output over all token ids
(vocabulary plus the special tokens of `gpfl_tff.data.text`).
"""

import collections
import dataclasses
from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.models import metrics


@dataclasses.dataclass(frozen=True)
class Preset:
  vocab_size: int
  embedding_size: int
  lstm_units: int
  projection_size: int
  seq_len: int


PRESETS = {
    # TFF's Stack Overflow next-word prediction baseline.
    'so_nwp': Preset(vocab_size=10000, embedding_size=96, lstm_units=670,
                     projection_size=96, seq_len=20),
    # Sized for CPU runs of many methods in minutes.
    'small': Preset(vocab_size=4000, embedding_size=64, lstm_units=128,
                    projection_size=64, seq_len=20),
}


def build_keras_model(preset: Preset, num_tokens: int,
                      seed: int = 0) -> tf.keras.Model:
  """An uncompiled Keras model: int32 [batch, time] -> logits [batch, time, num_tokens]."""
  init = lambda offset: tf.keras.initializers.GlorotUniform(seed=seed + offset)
  return tf.keras.Sequential([
      tf.keras.layers.Input(shape=(None,), dtype=tf.int32),
      tf.keras.layers.Embedding(num_tokens, preset.embedding_size,
                                embeddings_initializer=init(1)),
      tf.keras.layers.LSTM(preset.lstm_units, return_sequences=True,
                           kernel_initializer=init(2),
                           recurrent_initializer=tf.keras.initializers.Orthogonal(
                               seed=seed + 3)),
      tf.keras.layers.Dense(preset.projection_size, kernel_initializer=init(4)),
      tf.keras.layers.Dense(num_tokens, kernel_initializer=init(5)),
  ])


def input_spec(seq_len: int | None = None) -> collections.OrderedDict:
  return collections.OrderedDict(
      x=tf.TensorSpec([None, seq_len], tf.int32),
      y=tf.TensorSpec([None, seq_len], tf.int32))


class LanguageModel(tff.learning.models.VariableModel):
  """The Keras language model as a TFF model, with sum metrics.

  Why not `tff.learning.models.from_keras_model`: its forward pass runs the
  loss function once for the loss, again for its own `loss` metric, and once
  more for every Keras metric that needs it, plus an argmax per batch for an
  accuracy metric. Over a 4,000-word output layer that made a training step
  about 15 % slower than the same step in plain TF (measured in
  `experiments/benchmark.py`). This model computes the masked cross-entropy
  once per batch and keeps the training metrics as sums:
    loss_sum      summed cross-entropy (nats) over the counted targets;
    token_count   counted (non-padding) targets;
    num_examples  sequences.
  Training accuracy is not kept: evaluation computes its own sums
  (`gpfl_tff.learning.local`).
  """

  METRICS = ('loss_sum', 'token_count', 'num_examples')

  def __init__(self, keras_model: tf.keras.Model, seq_len: int,
               cross_entropy: str = 'ops'):
    self._keras_model = keras_model
    self._input_spec = input_spec(seq_len)
    # Per-target cross-entropy (targets, logits) -> losses, for training and
    # evaluation alike (see `metrics.CROSS_ENTROPIES`).
    self.cross_entropy = metrics.cross_entropy_fn(cross_entropy)
    self._sums = collections.OrderedDict(
        (name, tf.Variable(0.0, trainable=False, name=name))
        for name in self.METRICS)

  @property
  def trainable_variables(self):
    return self._keras_model.trainable_variables

  @property
  def non_trainable_variables(self):
    return self._keras_model.non_trainable_variables

  @property
  def local_variables(self):
    return list(self._sums.values())

  @property
  def input_spec(self):
    return self._input_spec

  @tf.function
  def predict_on_batch(self, x, training=True):
    return self._keras_model(x, training=training)

  @tf.function
  def forward_pass(self, batch_input, training=True):
    logits = self.predict_on_batch(batch_input['x'], training)
    targets = batch_input['y']
    loss_sum, token_count = metrics.loss_and_count(targets, logits,
                                                   self.cross_entropy)
    num_examples = tf.shape(targets)[0]
    self._sums['loss_sum'].assign_add(loss_sum)
    self._sums['token_count'].assign_add(token_count)
    self._sums['num_examples'].assign_add(tf.cast(num_examples, tf.float32))
    return tff.learning.models.BatchOutput(
        loss=loss_sum / tf.maximum(token_count, 1.0), predictions=logits,
        num_examples=num_examples)

  @tf.function
  def report_local_unfinalized_metrics(self):
    return collections.OrderedDict(
        (name, [v.read_value()]) for name, v in self._sums.items())

  def metric_finalizers(self):
    return collections.OrderedDict(
        (name, tf.function(lambda values: values[0])) for name in self.METRICS)

  @tf.function
  def reset_metrics(self):
    for variable in self._sums.values():
      variable.assign(0.0)


def build_model_fn(preset: Preset, num_tokens: int, seed: int = 0,
                   cross_entropy: str = 'ops'
                  ) -> Callable[[], tff.learning.models.VariableModel]:
  """A no-argument function returning the TFF model (weights from `seed`;
  `cross_entropy` one of `metrics.CROSS_ENTROPIES`)."""
  metrics.cross_entropy_fn(cross_entropy)  # ValueError if unknown.

  def model_fn():
    return LanguageModel(build_keras_model(preset, num_tokens, seed),
                         preset.seq_len, cross_entropy)

  return model_fn


def initial_weights(model_fn) -> tff.learning.models.ModelWeights:
  """The model's initial weights as numpy arrays."""
  model = model_fn()
  return tff.learning.models.ModelWeights.from_model(model).convert_variables_to_arrays()
