"""The hierarchical prior of groupperfl_prior: MAP fine-tuning and its
empirical-Bayes spread.

The closed-form check: a Gaussian hierarchy, w_client ~ N(w_group, tau^2 I)
and n observations y_i ~ N(w_client, I). The posterior mean of w_client is
  (sum_i y_i + w_group / tau^2) / (n + 1 / tau^2).
Proximal gradient descent on the mean loss mean_i ||y_i - w||^2 / 2 with
`local.prior_prox` (precision 1 / tau^2) must reach it; tolerance 1e-5
relative to its distance from the group mean. With one variance per tensor
(tau_k, the `per_tensor` prior) each tensor's posterior mean is the same
formula with its own tau_k.
"""

import numpy as np
import tensorflow as tf

from gpfl_tff import runtime
from gpfl_tff.learning import local
from gpfl_tff.models import language_model
from tests.learning import synthetic


def _map_by_proximal_descent(y, center, precision, learning_rate=0.5,
                             steps=400):
  """The library's fine-tuning rule on the Gaussian likelihood.

  y: [n, ...] observations of one tensor, or a tuple of such (one per
  tensor, the same n); `precision`: a number, or one per tensor.
  """
  single = not isinstance(y, tuple)
  ys = (y,) if single else y
  ys = tuple(tf.constant(t, tf.float32) for t in ys)
  n = float(ys[0].shape[0])
  center = (center,) if single else center
  center = tuple(tf.constant(c, tf.float32) for c in center)
  w = center
  step = learning_rate * np.asarray(precision, np.float32) / n
  for _ in range(steps):
    # d/dw of the mean loss, per tensor.
    grads = tuple(v - tf.reduce_mean(t, axis=0) for v, t in zip(w, ys))
    w = local.prior_prox(
        tuple(v - learning_rate * g for v, g in zip(w, grads)), center, step)
  found = tuple(v.numpy() for v in w)
  return found[0] if single else found


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

  def test_one_precision_per_tensor_is_each_tensors_posterior_mean(self):
    rng = np.random.default_rng(2)
    taus, shapes, n = (0.05, 1.0), ((4,), (2, 3)), 5
    groups = tuple(rng.normal(size=s) for s in shapes)
    clients = tuple(g + t * rng.normal(size=g.shape)
                    for g, t in zip(groups, taus))
    ys = tuple(c + rng.normal(size=(n,) + c.shape) for c in clients)
    found = _map_by_proximal_descent(
        ys, groups, precision=[1 / t**2 for t in taus])
    for f, y, g, t in zip(found, ys, groups, taus):
      posterior = (y.sum(0) + g / t**2) / (n + 1 / t**2)
      self.assertAllClose(f, posterior,
                          atol=1e-5 * np.linalg.norm(posterior - g))
    # The tight tensor stays near its group mean, the loose one follows
    # the data: what one shared variance cannot do.
    self.assertLess(np.abs(found[0] - groups[0]).max(),
                    0.2 * np.abs(ys[0].mean(0) - groups[0]).max())
    self.assertGreater(np.abs(found[1] - groups[1]).mean(),
                       0.7 * np.abs(ys[1].mean(0) - groups[1]).mean())

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

  def _precisions(self, value):
    return np.full([len(self.weights.trainable)], value, np.float32)

  def _args(self):
    return (self.weights, self.data, self.data, self.data, np.int32(2),
            np.float32(0.5), np.int32(0))

  def test_precision_zero_is_plain_fine_tuning(self):
    with runtime.local_runtime():
      plain = self.stage.run(*self._args())
      prior = self.stage.run_prior(*self._args(), self._precisions(0.0))
    for a, b in zip(plain, prior):
      for key in a:
        self.assertAllClose(a[key], b[key], rtol=1e-6)

  def test_a_strong_prior_keeps_the_group_model(self):
    with runtime.local_runtime():
      start = self.stage.evaluate_clients(self.weights, self.data)
      prior = self.stage.run_prior(*self._args(), self._precisions(1e9))
      plain = self.stage.run(*self._args())
    for s, p, f in zip(start, prior, plain):
      self.assertAllClose(p['loss_sum'], s['loss_sum'], rtol=1e-4)
      self.assertLess(f['loss_sum'], s['loss_sum'])

  def test_spread_is_each_tensors_mean_squared_fine_tuning_delta(self):
    with runtime.local_runtime():
      spread = self.stage.prior_spread(
          self.weights, self.data, self.data, np.int32(2), np.float32(0.5),
          np.int32(0))
      squares = []
      for d in self.data:
        tuned, _, _ = self.stage.personalize(self.weights, d, d, 2, 0.5, 0)
        squares.append([float(((np.asarray(t) - np.asarray(w))**2).mean())
                        for t, w in zip(tuned.trainable,
                                        self.weights.trainable)])
    self.assertEqual(np.shape(spread), (len(self.weights.trainable),))
    self.assertTrue(np.all(np.asarray(spread) > 0.0))
    self.assertAllClose(spread, np.mean(squares, axis=0), rtol=1e-4)

  def test_a_strong_prior_on_one_tensor_holds_only_that_tensor(self):
    precisions = self._precisions(0.0)
    precisions[-1] = 1e9  # The output bias, the last trainable tensor.
    model = type(self).model_fn()  # The class attribute, unbound.

    @tf.function
    def tune():
      local.fine_tune(model, self.weights, self.data[0], self.data[0],
                      tf.constant(2), tf.constant(0.5), tf.constant(0),
                      tf.constant(precisions))
      return [tf.identity(v) for v in model.trainable_variables]

    tuned = tune()
    moved = [float(np.abs(t - np.asarray(w)).max())
             for t, w in zip(tuned, self.weights.trainable)]
    self.assertLess(moved[-1], 1e-6)
    self.assertGreater(max(moved[:-1]), 1e-3)


if __name__ == '__main__':
  tf.test.main()
