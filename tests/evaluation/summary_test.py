"""Tests of exact metrics from per-client sums."""

import math

import numpy as np
import tensorflow as tf

from gpfl_tff.evaluation import summary


def _sums(loss_sum, token_count, correct_count):
  # Half of the hits are word hits, so that accuracy (words only) and
  # accuracy_with_oov_eos differ.
  return {'loss_sum': loss_sum, 'token_count': token_count,
          'correct_count': correct_count, 'word_count': token_count,
          'word_correct_count': correct_count / 2}


# Four clients in two groups; per-client mean losses 1, 2, 0.5 and 3.
_CLIENT_SUMS = {
    'a1': _sums(10.0, 10.0, 4.0),
    'a2': _sums(60.0, 30.0, 3.0),
    'b1': _sums(10.0, 20.0, 10.0),
    'b2': _sums(120.0, 40.0, 8.0),
}
_GROUPS = {'a1': 'a', 'a2': 'a', 'b1': 'b', 'b2': 'b'}
_TRAIN_TOKENS = {'a1': 500, 'a2': 20, 'b1': 80, 'b2': 300}


class SumsTest(tf.test.TestCase):

  def test_add_is_exact(self):
    total = summary.add(_CLIENT_SUMS.values())
    self.assertEqual(total, _sums(200.0, 100.0, 25.0))
    self.assertEqual(summary.add([]), _sums(0.0, 0.0, 0.0))

  def test_perplexity_and_accuracy(self):
    self.assertAlmostEqual(summary.perplexity(_sums(200.0, 100.0, 25.0)),
                           math.exp(2.0))
    self.assertAlmostEqual(summary.accuracy(_sums(200.0, 100.0, 25.0)), 0.125)
    self.assertAlmostEqual(
        summary.accuracy_with_oov_eos(_sums(200.0, 100.0, 25.0)), 0.25)

  def test_no_tokens_is_nan(self):
    self.assertTrue(math.isnan(summary.perplexity(_sums(0.0, 0.0, 0.0))))
    self.assertTrue(math.isnan(summary.accuracy(_sums(0.0, 0.0, 0.0))))

  def test_distribution(self):
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    dist = summary.distribution(values)
    self.assertEqual(dist['mean'], 4.0)
    self.assertEqual(dist['median'], 3.0)
    self.assertEqual(dist['max'], 10.0)
    self.assertAlmostEqual(dist['p10'], np.percentile(values, 10))
    self.assertAlmostEqual(dist['p90'], np.percentile(values, 90))


class SummarizeTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    # The reference serves a1 and b1 better than this method, a2 and b2 worse.
    self.reference = {'a1': math.exp(0.5), 'a2': math.exp(2.5),
                      'b1': math.exp(0.1), 'b2': math.exp(3.5)}
    self.report = summary.summarize(_CLIENT_SUMS, _GROUPS, _TRAIN_TOKENS,
                                    self.reference)

  def test_overall_is_token_weighted(self):
    # Token-weighted: exp(200 / 100); a mean of client means would be 1.625.
    self.assertAlmostEqual(self.report['perplexity'], math.exp(2.0))
    self.assertAlmostEqual(self.report['accuracy'], 0.125)
    self.assertAlmostEqual(self.report['accuracy_with_oov_eos'], 0.25)
    self.assertEqual(self.report['token_count'], 100.0)
    self.assertEqual(self.report['clients'], 4)

  def test_per_group(self):
    per_group = self.report['per_group']
    self.assertEqual(sorted(per_group), ['a', 'b'])
    self.assertAlmostEqual(per_group['a']['perplexity'], math.exp(70 / 40))
    self.assertAlmostEqual(per_group['a']['accuracy'], 3.5 / 40)
    self.assertAlmostEqual(per_group['b']['perplexity'], math.exp(130 / 60))
    self.assertEqual(per_group['b']['clients'], 2)
    self.assertEqual(per_group['b']['token_count'], 60.0)

  def test_client_distribution(self):
    dist = self.report['client_perplexity']
    client_ppl = [math.exp(x) for x in (1.0, 2.0, 0.5, 3.0)]
    self.assertAlmostEqual(dist['mean'], float(np.mean(client_ppl)))
    self.assertAlmostEqual(dist['median'], float(np.median(client_ppl)))
    self.assertAlmostEqual(dist['max'], math.exp(3.0))
    self.assertAlmostEqual(dist['p10'], float(np.percentile(client_ppl, 10)))
    self.assertAlmostEqual(dist['p90'], float(np.percentile(client_ppl, 90)))

  def test_share_better_than_fl(self):
    # Better on a2 (2 < 2.5) and b2 (3 < 3.5); worse on a1 and b1.
    self.assertEqual(self.report['share_better_than_fl'], 0.5)
    no_reference = summary.summarize(_CLIENT_SUMS, _GROUPS, _TRAIN_TOKENS)
    self.assertIsNone(no_reference['share_better_than_fl'])

  def test_quartiles_split_clients_by_train_tokens(self):
    quartiles = self.report['by_train_size_quartile']
    self.assertEqual([q['quartile'] for q in quartiles], [1, 2, 3, 4])
    # Ascending train tokens: a2 (20), b1 (80), b2 (300), a1 (500).
    self.assertEqual([(q['train_tokens_min'], q['train_tokens_max'])
                      for q in quartiles],
                     [(20, 20), (80, 80), (300, 300), (500, 500)])
    self.assertAlmostEqual(quartiles[0]['perplexity'], math.exp(2.0))  # a2.
    self.assertAlmostEqual(quartiles[3]['perplexity'], math.exp(1.0))  # a1.
    self.assertEqual([q['share_better_than_fl'] for q in quartiles],
                     [1.0, 0.0, 1.0, 0.0])

  def test_quartiles_with_many_clients(self):
    client_sums = {f'c{i}': _sums(float(i), 10.0, 1.0) for i in range(10)}
    groups = {c: 'g' for c in client_sums}
    tokens = {f'c{i}': 100 - i for i in range(10)}  # c9 has the least data.
    quartiles = summary.summarize(client_sums, groups,
                                  tokens)['by_train_size_quartile']
    self.assertEqual([q['clients'] for q in quartiles], [3, 3, 2, 2])
    self.assertEqual(quartiles[0]['train_tokens_min'], 91)
    self.assertEqual(quartiles[0]['train_tokens_max'], 93)
    self.assertEqual(quartiles[3]['train_tokens_max'], 100)
    self.assertEqual(sum(q['token_count'] for q in quartiles), 100.0)

  def test_fewer_clients_than_quartiles(self):
    report = summary.summarize({'a1': _CLIENT_SUMS['a1']}, _GROUPS,
                               _TRAIN_TOKENS)
    self.assertLen(report['by_train_size_quartile'], 1)
    self.assertEqual(report['by_train_size_quartile'][0]['quartile'], 1)


class ConvergenceTest(tf.test.TestCase):

  def test_flat_tail_is_converged(self):
    curve = [[5, 200.0], [10, 150.0], [15, 120.0], [20, 119.0], [25, 118.5]]
    result = summary.convergence(curve)
    # The last 20 % of 25 rounds starts after round 20.
    self.assertEqual(result['from_round'], 20)
    self.assertAlmostEqual(result['improvement'], 0.5 / 119.0)
    self.assertTrue(result['converged'])

  def test_falling_tail_is_not_converged(self):
    result = summary.convergence([[5, 200.0], [10, 150.0], [15, 100.0],
                                  [20, 90.0]])
    self.assertEqual(result['from_round'], 15)
    self.assertAlmostEqual(result['improvement'], 0.1)
    self.assertFalse(result['converged'])

  def test_trend_reads_through_a_noisy_last_point(self):
    # Falling to round 78, then flat at 100 with +-5 % noise, from a high
    # point (105) to a low one (95): the two end points say 9.5 % better,
    # the line through every point of the last 20 % says flat.
    noise = [5.0, -5.0, -2.0, 3.0, -3.0, 0.0, -3.0, 3.0, 2.0, 5.0, -5.0]
    curve = [[r, 300.0 - 2.0 * r] for r in range(2, 80, 2)]
    curve += [[80 + 2 * i, 100.0 + n] for i, n in enumerate(noise)]
    result = summary.convergence(curve)
    self.assertEqual(result['from_round'], 80)
    self.assertAlmostEqual(result['improvement'], 10.0 / 105.0)
    self.assertFalse(result['converged'])
    self.assertLess(abs(result['trend_improvement']), 0.005)
    self.assertTrue(result['trend_converged'])

  def test_trend_of_a_steady_fall_matches_the_end_points(self):
    # Perplexity falls by the same factor every round: the line is exact.
    curve = [[r, 100.0 * 0.99**r] for r in range(0, 101, 5)]
    result = summary.convergence(curve)
    self.assertEqual(result['from_round'], 80)
    self.assertAlmostEqual(result['trend_improvement'],
                           result['improvement'], places=6)
    self.assertAlmostEqual(result['improvement'], 1 - 0.99**20, places=6)
    self.assertFalse(result['trend_converged'])
    # The window is rounds 5 and 10 (the last point at or before round 8,
    # and the last): two points, no line.
    self.assertIsNone(summary.convergence([[2, 150.0], [5, 120.0],
                                           [10, 100.0]])['trend_improvement'])

  def test_too_short_a_curve_gives_none(self):
    self.assertIsNone(summary.convergence([[10, 100.0]]))
    self.assertIsNone(summary.convergence([[9, 100.0], [10, 90.0]]))


if __name__ == '__main__':
  tf.test.main()
