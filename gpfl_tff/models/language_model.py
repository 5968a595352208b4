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


def build_model_fn(preset: Preset, num_tokens: int, seed: int = 0
                  ) -> Callable[[], tff.learning.models.VariableModel]:
  """A no-argument function returning the TFF model (weights from `seed`)."""

  def model_fn():
    return tff.learning.models.from_keras_model(
        build_keras_model(preset, num_tokens, seed),
        loss=metrics.MaskedCrossEntropy(),
        input_spec=input_spec(preset.seq_len),
        metrics=metrics.sum_metrics())

  return model_fn


def initial_weights(model_fn) -> tff.learning.models.ModelWeights:
  """The model's initial weights as numpy arrays."""
  model = model_fn()
  return tff.learning.models.ModelWeights.from_model(model).convert_variables_to_arrays()
