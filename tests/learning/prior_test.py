"""The hierarchical prior of groupperfl_prior: MAP fine-tuning and its
empirical-Bayes spread.

The closed-form check: a Gaussian hierarchy, w_client ~ N(w_group, tau^2 I)
and n observations y_i ~ N(w_client, I). The posterior mean of w_client is
  (sum_i y_i + w_group / tau^2) / (n + 1 / tau^2).
Proximal gradient descent on the mean loss mean_i ||y_i - w||^2 / 2 with
`local.prior_prox` (precision 1 / tau^2) must reach it; tolerance 1e-5
relative to its distance from the group mean.
"""

import numpy as np
import tensorflow as tf

from gpfl_tff import runtime
from gpfl_tff.learning import local
from gpfl_tff.models import language_model
from tests.learning import synthetic


def _map_by_proximal_descent(y, center, precision, learning_rate=0.5,
                             steps=400):
  """The library's fine-tuning rule on the Gaussian likelihood."""
  y = tf.constant(y, tf.float32)
  n = float(y.shape[0])
  w = (tf.constant(center, tf.float32),)
  center = (tf.constant(center, tf.float32),)
  step = learning_rate * precision / n
  for _ in range(steps):
    grad = w[0] - tf.reduce_mean(y, axis=0)  # d/dw of the mean loss.
    w = local.prior_prox((w[0] - learning_rate * grad,), center, step)
  return w[0].numpy()


class GaussianHierarchyTest(tf.test.TestCase):

  def test_map_fine_tuning_is_the_closed_form_posterior_mean(self):
    rng = np.random.default_rng(0)
    dimension, tau = 5, 0.3
    group = rng.normal(size=dimension)
    for n in (1, 3, 10, 100):  # Little data leans on the group most.
      client = group + tau * rng.normal(size=dimension)
      y = client + rng.normal(size=(n, dimension))
      posterior = (y.sum(0) + group / tau**2) / (n + 1 / tau**2)
      found = _map_by_proximal_descent(y, group, precision=1 / tau**2)
      self.assertAllClose(found, posterior,
                          atol=1e-5 * np.linalg.norm(posterior - group))
      # The share of the way from the group mean to the client's own mean.
      shrink = n / (n + 1 / tau**2)
      self.assertAllClose(found - group, shrink * (y.mean(0) - group),
                          atol=1e-5)

  def test_zero_precision_is_the_client_mean_and_a_huge_one_the_group(self):
    rng = np.random.default_rng(1)
    y, group = rng.normal(size=(4, 3)), rng.normal(size=3)
    self.assertAllClose(_map_by_proximal_descent(y, group, 0.0), y.mean(0),
                        atol=1e-5)
    self.assertAllClose(_map_by_proximal_descent(y, group, 1e9), group,
                        atol=1e-5)


class LocalStagePriorTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_fn = synthetic.tiny_model_fn(vocab_size=10)
    cls.stage = local.build_local_stage(cls.model_fn)
    cls.weights = language_model.initial_weights(cls.model_fn)
    cls.data = [synthetic.token_dataset(
        synthetic.cycle_windows(words=5 + i, offset=i, windows=6),
        batch_size=4) for i in range(3)]

  def _args(self):
    return (self.weights, self.data, self.data, self.data, np.int32(2),
            np.float32(0.5), np.int32(0))

  def test_precision_zero_is_plain_fine_tuning(self):
    with runtime.local_runtime():
      plain = self.stage.run(*self._args())
      prior = self.stage.run_prior(*self._args(), np.float32(0.0))
    for a, b in zip(plain, prior):
      for key in a:
        self.assertAllClose(a[key], b[key], rtol=1e-6)

  def test_a_strong_prior_keeps_the_group_model(self):
    with runtime.local_runtime():
      start = self.stage.evaluate_clients(self.weights, self.data)
      prior = self.stage.run_prior(*self._args(), np.float32(1e9))
      plain = self.stage.run(*self._args())
    for s, p, f in zip(start, prior, plain):
      self.assertAllClose(p['loss_sum'], s['loss_sum'], rtol=1e-4)
      self.assertLess(f['loss_sum'], s['loss_sum'])

  def test_spread_is_the_mean_squared_fine_tuning_delta(self):
    with runtime.local_runtime():
      spread = self.stage.prior_spread(
          self.weights, self.data, self.data, np.int32(2), np.float32(0.5),
          np.int32(0))
      squares = []
      for d in self.data:
        tuned, _, _ = self.stage.personalize(self.weights, d, d, 2, 0.5, 0)
        deltas = [np.asarray(t) - np.asarray(w) for t, w in
                  zip(tuned.trainable, self.weights.trainable)]
        size = sum(x.size for x in deltas)
        squares.append(sum(float((x**2).sum()) for x in deltas) / size)
    self.assertGreater(spread, 0.0)
    self.assertAllClose(spread, np.mean(squares), rtol=1e-4)


if __name__ == '__main__':
  tf.test.main()
