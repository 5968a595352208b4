"""Next-word metrics as sums, so that they add up exactly across clients.

Counted tokens are the targets that are not padding (id 0); see
`gpfl_tff.data.text` for the rule. Perplexity = exp(loss_sum / token_count)
is formed only after summing.

Accuracy follows TFF's Stack Overflow next-word baselines: word_count counts
the targets that are words (not <pad>, <oov>, <bos> or <eos>), and
word_correct_count those of them predicted exactly; accuracy =
word_correct_count / word_count. A prediction of <oov> or <eos> for a word is
a miss. correct_count / token_count, the share over every counted target
(<oov> and <eos> hits included), is kept as `accuracy_with_oov_eos`.
"""

import collections

import tensorflow as tf

from gpfl_tff.data import text



def token_mask(targets):
  """1.0 where a target is counted (not padding), else 0.0."""
  return tf.cast(tf.not_equal(targets, text.PAD_ID), tf.float32)


def _loss_sum(targets, logits):
  losses = tf.keras.losses.sparse_categorical_crossentropy(
      targets, logits, from_logits=True)
  return tf.reduce_sum(losses * token_mask(targets))


def _token_count(targets, logits):
  del logits
  return tf.reduce_sum(token_mask(targets))


def _correct_count(targets, logits):
  predicted = tf.cast(tf.argmax(logits, axis=-1), targets.dtype)
  return tf.reduce_sum(
      tf.cast(tf.equal(predicted, targets), tf.float32) * token_mask(targets))


def _word_mask(targets):
  return tf.cast(targets >= len(text.SPECIAL_TOKENS), tf.float32)


def _word_count(targets, logits):
  del logits
  return tf.reduce_sum(_word_mask(targets))


def _word_correct_count(targets, logits):
  predicted = tf.cast(tf.argmax(logits, axis=-1), targets.dtype)
  return tf.reduce_sum(
      tf.cast(tf.equal(predicted, targets), tf.float32) * _word_mask(targets))


_SUM_FNS = collections.OrderedDict(
    loss_sum=_loss_sum, token_count=_token_count, correct_count=_correct_count,
    word_count=_word_count, word_correct_count=_word_correct_count)
SUM_NAMES = tuple(_SUM_FNS)


def token_sums(targets: tf.Tensor, logits: tf.Tensor) -> collections.OrderedDict:
  """Sums over the counted tokens of one batch.

  Args:
    targets: int32 [batch, time] next-token ids, 0 = padding.
    logits: float32 [batch, time, num_tokens].

  Returns:
    OrderedDict of float32 scalars loss_sum (natural log), token_count,
    correct_count, word_count and word_correct_count.
  """
  return collections.OrderedDict(
      (name, fn(targets, logits)) for name, fn in _SUM_FNS.items())


def loss_and_count(targets: tf.Tensor, logits: tf.Tensor
                  ) -> tuple[tf.Tensor, tf.Tensor]:
  """(loss_sum, token_count) of one batch, the cross-entropy computed once."""
  return _loss_sum(targets, logits), _token_count(targets, logits)


class MaskedCrossEntropy(tf.keras.losses.Loss):
  """Mean cross-entropy over the counted tokens of a batch (training loss)."""

  def __init__(self, name='masked_cross_entropy'):
    super().__init__(reduction=tf.keras.losses.Reduction.SUM, name=name)

  def call(self, y_true, y_pred):
    return _loss_sum(y_true, y_pred) / tf.maximum(
        _token_count(y_true, y_pred), 1.0)
