"""Tests of the add-one unigram reference."""

import math

import numpy as np
import tensorflow as tf

from gpfl_tff.models import metrics
from gpfl_tff.models import unigram


class UnigramTest(tf.test.TestCase):

  def test_add_one_probabilities_over_possible_targets(self):
    # Ids: 0 pad, 1 oov, 2 bos, 3 eos, 4..6 words. Possible targets: 5 ids.
    log_probs = unigram.fit([np.array([[4, 4, 5, 3, 0, 0]])], num_tokens=7)
    probs = np.exp(log_probs)
    self.assertEqual(probs[0], 0.0)
    self.assertEqual(probs[2], 0.0)
    self.assertAllClose(probs.sum(), 1.0)
    # 4 counted targets + 5 possible ids.
    self.assertAllClose(probs[[1, 3, 4, 5, 6]],
                        np.array([1, 2, 3, 2, 1]) / 9.0)

  def test_sums_match_the_metrics_rule(self):
    log_probs = unigram.fit([np.array([4, 4, 5, 3])], num_tokens=7)
    targets = np.array([[4, 1, 3, 6, 0]])
    sums = unigram.sums(log_probs, targets)
    self.assertCountEqual(sums, metrics.SUM_NAMES)
    self.assertAllClose(sums['loss_sum'],
                        -(math.log(3 / 9) + math.log(1 / 9) + math.log(2 / 9)
                          + math.log(1 / 9)))
    self.assertEqual(sums['token_count'], 4)
    # The guess is id 4: right once, on a word.
    self.assertEqual(sums['correct_count'], 1)
    self.assertEqual(sums['word_count'], 2)
    self.assertEqual(sums['word_correct_count'], 1)
    # The same numbers as metrics.token_sums with the unigram as logits.
    logits = np.broadcast_to(np.where(np.isfinite(log_probs), log_probs, -1e9),
                             targets.shape + (7,)).astype(np.float32)
    expected = metrics.token_sums(tf.constant(targets, tf.int32),
                                  tf.constant(logits))
    for name in metrics.SUM_NAMES:
      self.assertAllClose(sums[name], float(expected[name]), rtol=1e-5)


if __name__ == '__main__':
  tf.test.main()
