"""Tests of the paired bootstrap comparison."""

import math

import numpy as np
import tensorflow as tf

from gpfl_tff.evaluation import paired


def _sums(loss, tokens):
  return {'loss_sum': loss, 'token_count': tokens}


class PairedTest(tf.test.TestCase):

  def test_mean_is_the_token_weighted_log_perplexity_difference(self):
    a = {'x': _sums(10.0, 10.0), 'y': _sums(30.0, 20.0)}
    b = {'x': _sums(20.0, 10.0), 'y': _sums(40.0, 20.0)}
    result = paired.difference(a, b, resamples=200)
    self.assertAlmostEqual(result['mean'], (40.0 - 60.0) / 30.0)
    self.assertAlmostEqual(result['mean'],
                           math.log(math.exp(40 / 30)) - 60 / 30)
    self.assertEqual(result['clients'], 2)
    self.assertLessEqual(result['ci_low'], result['mean'])
    self.assertGreaterEqual(result['ci_high'], result['mean'])

  def test_consistent_gain_gives_an_interval_below_zero(self):
    rng = np.random.default_rng(0)
    b = {f'c{i}': _sums(float(rng.uniform(50, 100)), 20.0) for i in range(60)}
    a = {c: _sums(s['loss_sum'] - float(rng.uniform(1, 3)), 20.0)
         for c, s in b.items()}
    result = paired.difference(a, b)
    self.assertLess(result['ci_high'], 0.0)

  def test_noise_around_zero_gives_an_interval_across_zero(self):
    rng = np.random.default_rng(1)
    b = {f'c{i}': _sums(60.0, 20.0) for i in range(60)}
    a = {c: _sums(60.0 + float(rng.normal(0, 5)), 20.0) for c in b}
    result = paired.difference(a, b)
    self.assertLess(result['ci_low'], 0.0)
    self.assertGreater(result['ci_high'], 0.0)

  def test_same_seed_same_interval(self):
    a = {f'c{i}': _sums(float(i), 5.0) for i in range(10)}
    b = {f'c{i}': _sums(float(10 - i), 5.0) for i in range(10)}
    self.assertEqual(paired.difference(a, b, seed=3),
                     paired.difference(a, b, seed=3))

  def test_different_tokens_or_no_common_client_is_an_error(self):
    with self.assertRaisesRegex(ValueError, 'different tokens'):
      paired.difference({'x': _sums(1.0, 2.0)}, {'x': _sums(1.0, 3.0)})
    with self.assertRaisesRegex(ValueError, 'no client'):
      paired.difference({'x': _sums(1.0, 2.0)}, {'y': _sums(1.0, 2.0)})

  def test_bins_by_data_size_within_groups(self):
    # Two groups of 10 clients; the gain is large for the smallest clients.
    a, b, tokens, groups = {}, {}, {}, {}
    for group, scale in (('g', 1), ('h', 100)):
      for i in range(10):
        client = f'{group}{i}'
        tokens[client], groups[client] = scale * (i + 1), group
        b[client] = _sums(100.0, 50.0)
        a[client] = _sums(100.0 - (20.0 if i < 2 else 0.0), 50.0)
    rows = paired.by_data_size(a, b, tokens, groups, bins=5, resamples=300)
    self.assertEqual([r['bin'] for r in rows], [0, 1, 2, 3, 4])
    # Every bin holds 2 clients of each group.
    self.assertEqual([r['clients'] for r in rows], [4] * 5)
    self.assertAlmostEqual(rows[0]['mean'], -20.0 / 50.0)
    self.assertLess(rows[0]['ci_high'], 0.0)
    for row in rows[1:]:
      self.assertEqual(row['mean'], 0.0)
    self.assertLess(rows[0]['train_tokens_median'],
                    rows[4]['train_tokens_median'])


if __name__ == '__main__':
  tf.test.main()
