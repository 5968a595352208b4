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

The cross-entropy has two implementations (`CROSS_ENTROPIES`):
  ops     `cross_entropy`, plain TensorFlow ops (the default);
  kernel  TensorFlow's fused `SparseSoftmaxCrossEntropyWithLogits` kernel,
          which every run before 2026-12-03 used.
Why `ops`: on CPU the kernel takes about a quarter of a training step of the
`small` model and two thirds of an evaluation pass (docs/RESULTS.md,
"Speed"): it
builds the loss through a per-element generator over all [tokens x
vocabulary] entries and computes the gradient even where none is needed.
`cross_entropy` computes the kernel's numbers in the kernel's order (the row
sums of exp as the kernel adds them, see `_row_exp_sums`), with one
difference: where the kernel calls the C library's float exp and log (the
row's last `columns mod 8` exps, and the log of the row sum), it rounds
float64 results, which is correctly rounded and the C library's float
functions are not always (measured here: exp on about 6 in 10,000 inputs,
log on about 3 in 10,000). Losses then differ by at most one unit in the last
place on a few tokens, and a gradient differs on the rare row whose sum of
exp changes; a long training stage that meets such a row drifts from there.
In the 13-method default runs on Shakespeare and BBC nearly every method kept
the same epochs and test perplexities to 8 significant digits; the largest
change was BBC's `group_only`, -0.03 % (docs/RESULTS.md, "Speed").
`tests/models/metrics_test.py` compares the two in TensorFlow and in TFF's
C++ runtime. Use `kernel` to repeat an earlier run's numbers bit for bit.
"""

import collections

import tensorflow as tf

from gpfl_tff.data import text



def token_mask(targets):
  """1.0 where a target is counted (not padding), else 0.0."""
  return tf.cast(tf.not_equal(targets, text.PAD_ID), tf.float32)


# Eigen's float packet size in TensorFlow's CPU kernels (AVX: 8 floats) and
# its leaf size for one-pass inner-dimension sums: a row sum of exp is added
# in one pass while its whole packets hold fewer than 8,192 columns; wider
# rows are split in halves, in an order the plain ops do not reproduce
# (measured: 8,188 columns match the kernel, 8,196 do not).
_PACKET = 8
_ONE_PASS_COLUMNS = 1024 * _PACKET


def _row_exp_sums(shifted, exps):
  """sum_j exp(shifted[i, j]) for each row i, added in the order of
  TensorFlow's sparse softmax cross-entropy kernel on CPU.

  The kernel sums the row's whole packets of exp (vectorized exp), then adds
  the remaining columns one by one, each exp from the C library (`std::exp`).
  A reduce_sum of the exps with those columns masked to zero gives the
  packets' part unchanged (adding zeros is exact); the last columns' exps are
  rounded from float64 (where the C library's float exp, not always
  correctly rounded, can differ by one unit in the last place) and summed in
  order (a sum over fewer than one packet runs one by one).
  """
  num = shifted.shape[-1]
  head = num // _PACKET * _PACKET
  sums = tf.reduce_sum(
      exps * tf.constant([1.0] * head + [0.0] * (num - head), exps.dtype), -1)
  if num > head:
    tail = tf.cast(tf.exp(tf.cast(shifted[:, head:], tf.float64)), exps.dtype)
    sums = sums + tf.reduce_sum(tail, -1)
  return sums


@tf.custom_gradient
def _cross_entropy_2d(targets, logits):
  """Per-row cross-entropy of int targets [n] under logits [n, classes]."""
  shifted = logits - tf.reduce_max(logits, -1, keepdims=True)
  exps = tf.exp(shifted)
  sums = _row_exp_sums(shifted, exps)
  log_sums = tf.cast(tf.math.log(tf.cast(sums, tf.float64)), logits.dtype)
  losses = log_sums - tf.gather(shifted, targets, batch_dims=1)

  def grad(upstream):
    probabilities = exps / sums[:, tf.newaxis]
    one_hot = tf.one_hot(targets, tf.shape(logits)[-1], dtype=logits.dtype)
    return None, upstream[:, tf.newaxis] * (probabilities - one_hot)

  return losses, grad


def cross_entropy(targets, logits):
  """Cross-entropy (nats) of each target: int [...] under logits [..., C].

  The numbers of `tf.nn.sparse_softmax_cross_entropy_with_logits` up to the
  rounding of the C library's exp and log (see the module doc), faster on
  CPU. Falls back to that kernel where the summation order cannot be
  reproduced (`_ONE_PASS_COLUMNS` or more whole packets of columns, or an
  unknown number of columns).
  """
  num = logits.shape[-1]
  if num is None or num // _PACKET * _PACKET >= _ONE_PASS_COLUMNS:
    return kernel_cross_entropy(targets, logits)
  flat = _cross_entropy_2d(tf.reshape(targets, [-1]),
                           tf.reshape(logits, [-1, num]))
  return tf.reshape(flat, tf.shape(targets))


def kernel_cross_entropy(targets, logits):
  """Cross-entropy of each target by TensorFlow's fused kernel."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)


CROSS_ENTROPIES = {'ops': cross_entropy, 'kernel': kernel_cross_entropy}


def cross_entropy_fn(name: str):
  """The per-target cross-entropy called `name` in `CROSS_ENTROPIES`
  (ValueError if none)."""
  if name not in CROSS_ENTROPIES:
    raise ValueError(f'cross_entropy must be one of '
                     f'{", ".join(CROSS_ENTROPIES)}, got {name!r}')
  return CROSS_ENTROPIES[name]


def _loss_sum(targets, logits, loss_fn=None):
  return tf.reduce_sum((loss_fn or cross_entropy)(targets, logits)
                       * token_mask(targets))


def _token_count(targets):
  return tf.reduce_sum(token_mask(targets))


def _word_mask(targets):
  return tf.cast(targets >= len(text.SPECIAL_TOKENS), tf.float32)


SUM_NAMES = ('loss_sum', 'token_count', 'correct_count', 'word_count',
             'word_correct_count')


def token_sums(targets: tf.Tensor, logits: tf.Tensor,
               loss_fn=None) -> collections.OrderedDict:
  """Sums over the counted tokens of one batch.

  Args:
    targets: int32 [batch, time] next-token ids, 0 = padding.
    logits: float32 [batch, time, num_tokens].
    loss_fn: (targets, logits) -> per-target cross-entropy (one of
      `CROSS_ENTROPIES`); None: `cross_entropy`.

  Returns:
    OrderedDict of float32 scalars loss_sum (natural log), token_count,
    correct_count, word_count and word_correct_count.
  """
  mask, words = token_mask(targets), _word_mask(targets)
  predicted = tf.cast(tf.argmax(logits, axis=-1), targets.dtype)
  hits = tf.cast(tf.equal(predicted, targets), tf.float32)
  return collections.OrderedDict(
      loss_sum=_loss_sum(targets, logits, loss_fn),
      token_count=tf.reduce_sum(mask),
      correct_count=tf.reduce_sum(hits * mask),
      word_count=tf.reduce_sum(words),
      word_correct_count=tf.reduce_sum(hits * words))


def loss_and_count(targets: tf.Tensor, logits: tf.Tensor, loss_fn=None
                  ) -> tuple[tf.Tensor, tf.Tensor]:
  """(loss_sum, token_count) of one batch, the cross-entropy computed once
  (by `loss_fn`, as in `token_sums`)."""
  return _loss_sum(targets, logits, loss_fn), _token_count(targets)


class MaskedCrossEntropy(tf.keras.losses.Loss):
  """Mean cross-entropy over the counted tokens of a batch (training loss),
  by `loss_fn` (as in `token_sums`)."""

  def __init__(self, loss_fn=None, name='masked_cross_entropy'):
    super().__init__(reduction=tf.keras.losses.Reduction.SUM, name=name)
    self._loss_fn = loss_fn

  def call(self, y_true, y_pred):
    return (_loss_sum(y_true, y_pred, self._loss_fn)
            / tf.maximum(_token_count(y_true), 1.0))
