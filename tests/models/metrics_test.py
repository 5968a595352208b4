"""Tests of the next-word metrics as sums."""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff import runtime
from gpfl_tff.models import metrics


def _numpy_sums(targets, logits):
  logits = logits.astype(np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  mask = targets != 0
  picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  words = targets >= 4  # Not <pad>, <oov>, <bos> or <eos>.
  hits = logits.argmax(-1) == targets
  return {'loss_sum': -(picked * mask).sum(),
          'token_count': float(mask.sum()),
          'correct_count': float((hits & mask).sum()),
          'word_count': float(words.sum()),
          'word_correct_count': float((hits & words).sum())}


def _batch(seed, batch=3, time=4, tokens=7, pad_last=2):
  rng = np.random.default_rng(seed)
  targets = rng.integers(1, tokens, size=(batch, time)).astype(np.int32)
  targets[-1, time - pad_last:] = 0
  logits = rng.normal(size=(batch, time, tokens)).astype(np.float32)
  return targets, logits


def _losses_and_gradient(loss_fn, targets, logits, upstream):
  """Per-target losses and d(sum(losses * upstream))/d logits."""
  with tf.GradientTape() as tape:
    tape.watch(logits)
    losses = loss_fn(targets, logits)
    total = tf.reduce_sum(losses * upstream)
  return losses, tape.gradient(total, logits)


def _compare(targets, logits, upstream):
  """(losses that differ, largest loss difference in units in the last
  place, gradient entries that differ) of `cross_entropy` against TF's
  kernel, both in one graph."""
  mine, mine_grad = _losses_and_gradient(metrics.cross_entropy, targets,
                                         logits, upstream)
  ref, ref_grad = _losses_and_gradient(metrics.kernel_cross_entropy, targets, logits, upstream)
  spacing = tf.abs(tf.math.nextafter(ref, tf.fill(tf.shape(ref), np.inf))
                   - ref)
  return (tf.reduce_sum(tf.cast(tf.not_equal(mine, ref), tf.int32)),
          tf.reduce_max(tf.abs(mine - ref) / spacing),
          tf.reduce_sum(tf.cast(tf.not_equal(mine_grad, ref_grad), tf.int32)))


def _random_case(seed, rows, columns, scale):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, columns, size=rows).astype(np.int32),
          (rng.normal(size=(rows, columns)) * scale).astype(np.float32),
          rng.random(rows).astype(np.float32))


# (rows, columns, logit scale): the `small` model's outputs (4,004) at the
# training and evaluation batch sizes, other widths (a whole number of
# packets, or not) and scales.
_CASES = [(320, 4004, 1.0), (2560, 4004, 3.0), (17, 5004, 0.1),
          (64, 261, 10.0), (40, 8, 1.0), (33, 7, 1.0), (50, 8188, 1.0)]


class CrossEntropyTest(tf.test.TestCase):

  def test_matches_tensorflows_kernel(self):
    # Gradients equal to the bit on these cases: no row's sum of exp meets
    # one of the C library's rare misrounded exps (see the metrics module).
    compare = tf.function(_compare)
    differing = total = 0
    for seed, (rows, columns, scale) in enumerate(_CASES):
      with self.subTest(rows=rows, columns=columns, scale=scale):
        losses, ulps, gradients = compare(
            *map(tf.constant, _random_case(seed, rows, columns, scale)))
        self.assertEqual(int(gradients), 0)
        self.assertLessEqual(float(ulps), 1.0)
        differing += int(losses)
        total += rows
    self.assertLess(differing, total / 500)

  def test_matches_the_kernel_in_tffs_runtime(self):
    rows, columns, scale = 320, 4004, 1.0

    @tff.tensorflow.computation(
        tff.TensorType(np.int32, [rows]),
        tff.TensorType(np.float32, [rows, columns]),
        tff.TensorType(np.float32, [rows]))
    def compare(targets, logits, upstream):
      return _compare(targets, logits, upstream)

    with runtime.local_runtime():
      losses, ulps, gradients = compare(*_random_case(7, rows, columns,
                                                      scale))
    self.assertEqual(int(gradients), 0)
    self.assertLessEqual(float(ulps), 1.0)
    self.assertLess(int(losses), rows / 100)

  def test_keeps_the_targets_shape(self):
    targets, logits = _batch(5)
    losses = metrics.cross_entropy(tf.constant(targets), tf.constant(logits))
    self.assertEqual(losses.shape, targets.shape)
    self.assertAllClose(losses, metrics.kernel_cross_entropy(targets, logits), rtol=1e-6)

  def test_named_implementations(self):
    self.assertIs(metrics.cross_entropy_fn('ops'), metrics.cross_entropy)
    self.assertIs(metrics.cross_entropy_fn('kernel'),
                  metrics.kernel_cross_entropy)
    with self.assertRaisesRegex(ValueError, 'ops, kernel'):
      metrics.cross_entropy_fn('fused')

  def test_token_sums_by_either_implementation(self):
    targets, logits = _batch(6)
    ops, kernel = (metrics.token_sums(tf.constant(targets),
                                      tf.constant(logits), loss_fn)
                   for loss_fn in (None, metrics.kernel_cross_entropy))
    for name in metrics.SUM_NAMES:
      self.assertAllClose(ops[name], kernel[name], rtol=1e-6)

  def test_wide_outputs_use_the_kernel(self):
    # 8,192 columns in whole packets: summed in halves by the kernel.
    targets, logits, _ = _random_case(3, 4, 8196, 1.0)
    self.assertAllEqual(metrics.cross_entropy(targets, logits),
                        metrics.kernel_cross_entropy(targets, logits))


class TokenSumsTest(tf.test.TestCase):

  def test_equal_numpy(self):
    targets, logits = _batch(0)
    sums = metrics.token_sums(tf.constant(targets), tf.constant(logits))
    expected = _numpy_sums(targets, logits)
    self.assertEqual(list(sums), list(metrics.SUM_NAMES))
    self.assertAllClose(sums['loss_sum'], expected['loss_sum'], rtol=1e-5)
    self.assertEqual(float(sums['token_count']), expected['token_count'])
    self.assertEqual(float(sums['token_count']), 3 * 4 - 2)
    self.assertEqual(float(sums['correct_count']), expected['correct_count'])
    self.assertEqual(float(sums['word_count']), expected['word_count'])
    self.assertEqual(float(sums['word_correct_count']),
                     expected['word_correct_count'])

  def test_words_exclude_oov_and_eos_targets(self):
    # Targets: a word (5), <oov> (1), <eos> (3), padding; every one predicted.
    targets = np.array([[5, 1, 3, 0]], np.int32)
    logits = np.full((1, 4, 7), -5.0, np.float32)
    for position, target in enumerate(targets[0]):
      logits[0, position, target] = 5.0
    sums = metrics.token_sums(tf.constant(targets), tf.constant(logits))
    self.assertEqual(float(sums['token_count']), 3)
    self.assertEqual(float(sums['correct_count']), 3)
    self.assertEqual(float(sums['word_count']), 1)
    self.assertEqual(float(sums['word_correct_count']), 1)

  def test_padding_never_counts(self):
    targets, logits = _batch(1, pad_last=0)
    padded_targets = np.concatenate(
        [targets, np.zeros_like(targets)], axis=1)
    # Padding positions whose argmax is 0, so they would count as correct.
    pad_logits = np.zeros_like(logits)
    pad_logits[..., 0] = 100.0
    padded_logits = np.concatenate([logits, pad_logits], axis=1)
    plain = metrics.token_sums(tf.constant(targets), tf.constant(logits))
    padded = metrics.token_sums(tf.constant(padded_targets),
                                tf.constant(padded_logits))
    for name in metrics.SUM_NAMES:
      self.assertAllClose(padded[name], plain[name], rtol=1e-6)

  def test_all_padding_is_zero(self):
    sums = metrics.token_sums(tf.zeros([2, 3], tf.int32),
                              tf.random.normal([2, 3, 5], seed=0))
    for name in metrics.SUM_NAMES:
      self.assertEqual(float(sums[name]), 0.0)


class LossAndCountTest(tf.test.TestCase):

  def test_equals_the_token_sums(self):
    targets, logits = _batch(2)
    loss_sum, token_count = metrics.loss_and_count(tf.constant(targets),
                                                   tf.constant(logits))
    expected = _numpy_sums(targets, logits)
    self.assertAllClose(loss_sum, expected['loss_sum'], rtol=1e-5)
    self.assertEqual(float(token_count), expected['token_count'])


class MaskedCrossEntropyTest(tf.test.TestCase):

  def test_is_loss_sum_over_token_count(self):
    targets, logits = _batch(4)
    expected = _numpy_sums(targets, logits)
    loss = metrics.MaskedCrossEntropy()(tf.constant(targets),
                                        tf.constant(logits))
    self.assertAllClose(loss, expected['loss_sum'] / expected['token_count'],
                        rtol=1e-5)

  def test_all_padding_gives_zero_not_nan(self):
    loss = metrics.MaskedCrossEntropy()(tf.zeros([2, 3], tf.int32),
                                        tf.random.normal([2, 3, 5], seed=0))
    self.assertEqual(float(loss), 0.0)


if __name__ == '__main__':
  tf.test.main()
