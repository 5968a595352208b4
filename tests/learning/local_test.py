"""Tests of the local stage: fine-tuning and evaluation as sums."""

import numpy as np
import tensorflow as tf

from gpfl_tff import runtime
from gpfl_tff.learning import local
from gpfl_tff.models import language_model
from tests.learning import synthetic

_VOCAB_SIZE = 12


def _keras_sums(weights, arrays):
  """The sums of `metrics.token_sums`, computed with Keras and numpy."""
  preset = synthetic.tiny_preset(_VOCAB_SIZE)
  model = language_model.build_keras_model(preset,
                                           synthetic.num_tokens(preset))
  weights.assign_weights_to(model)
  logits = model(arrays['x'], training=False)
  log_probs = tf.nn.log_softmax(logits).numpy().astype(np.float64)
  targets = arrays['y']
  mask = targets != 0
  picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return {'loss_sum': float(-(picked * mask).sum()),
          'token_count': float(mask.sum()),
          'correct_count': float(
              ((log_probs.argmax(-1) == targets) & mask).sum())}


def _mean_loss(sums):
  return sums['loss_sum'] / sums['token_count']


class LocalStageTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_fn = synthetic.tiny_model_fn(vocab_size=_VOCAB_SIZE)
    cls.stage = local.build_local_stage(cls.model_fn)
    cls.weights = language_model.initial_weights(cls.model_fn)
    # Three clients with different data (and different token counts).
    cls.arrays = [synthetic.cycle_windows(words=5 + i, offset=i,
                                          windows=4 + 2 * i)
                  for i in range(3)]
    cls.arrays[0]['y'][-1, -2:] = 0  # Padding, never counted.

  def _dataset(self, i):
    return synthetic.token_dataset(self.arrays[i], batch_size=4)

  def test_zero_epochs_returns_the_input_weights(self):
    with runtime.local_runtime():
      tuned, best_epoch, _ = self.stage.personalize(
          self.weights, self._dataset(0), self._dataset(0), 0, 0.5, 0)
    self.assertTrue(synthetic.weights_equal(tuned, self.weights))
    self.assertEqual(best_epoch, 0)

  def test_finetuning_lowers_the_validation_loss(self):
    data = self._dataset(1)
    with runtime.local_runtime():
      before = self.stage.evaluate(self.weights, data)
      tuned, best_epoch, _ = self.stage.personalize(self.weights, data, data,
                                                    3, 0.5, 0)
      after = self.stage.evaluate(tuned, data)
    self.assertFalse(synthetic.weights_equal(tuned, self.weights))
    self.assertGreater(best_epoch, 0)
    self.assertLess(_mean_loss(after), _mean_loss(before))
    self.assertEqual(after['token_count'], before['token_count'])

  def test_finetuning_keeps_the_best_epoch(self):
    # Far too large a learning rate makes later epochs worse; the kept
    # weights must still score at least as well as the input on validation.
    train, validation = self._dataset(1), self._dataset(2)
    with runtime.local_runtime():
      before = self.stage.evaluate(self.weights, validation)
      tuned, _, _ = self.stage.personalize(self.weights, train, validation,
                                           4, 50.0, 0)
      after = self.stage.evaluate(tuned, validation)
    self.assertLessEqual(_mean_loss(after), _mean_loss(before))

  def test_evaluate_equals_keras(self):
    with runtime.local_runtime():
      sums = self.stage.evaluate(self.weights, self._dataset(0))
    expected = _keras_sums(self.weights, self.arrays[0])
    self.assertEqual(sums['token_count'], expected['token_count'])
    self.assertEqual(expected['token_count'], self.arrays[0]['y'].size - 2)
    self.assertEqual(sums['correct_count'], expected['correct_count'])
    self.assertAllClose(sums['loss_sum'], expected['loss_sum'], rtol=1e-5)

  def test_run_returns_finetuned_test_sums_per_client_in_order(self):
    datasets = [self._dataset(i) for i in range(3)]
    with runtime.local_runtime():
      results = self.stage.run(self.weights, datasets, datasets, datasets,
                               np.int32(2), np.float32(0.5), np.int32(0))
      before = [self.stage.evaluate(self.weights, d) for d in datasets]
      expected = []
      for d in datasets:
        tuned, best_epoch, _ = self.stage.personalize(self.weights, d, d, 2,
                                                      0.5, 0)
        expected.append(dict(self.stage.evaluate(tuned, d),
                             best_epoch=best_epoch))
    self.assertLen(results, 3)
    for i in range(3):
      self.assertAllClose(dict(results[i]), expected[i], rtol=1e-5)
      self.assertLess(_mean_loss(results[i]), _mean_loss(before[i]))
    # Clients differ in size, so the order shows in the token counts.
    self.assertEqual([s['token_count'] for s in results],
                     [float(a['y'].size) - 2 * (i == 0)
                      for i, a in enumerate(self.arrays)])

  def _curve(self, train, validation, epochs, learning_rate):
    """Validation loss after each of 0..epochs epochs (patience 0)."""
    _, _, losses = self.stage.personalize(self.weights, train, validation,
                                          epochs, learning_rate, 0)
    self.assertLen(losses, epochs + 1)
    return list(losses)

  def test_early_stop_equals_best_of_all_epochs_on_one_minimum_curves(self):
    # For each setting, patience 1 must keep the same epoch and weights as
    # running every epoch whenever the validation curve has one minimum;
    # the settings include falling, rising and falling-then-rising curves.
    settings = [(self._dataset(1), self._dataset(1), 4, 0.5),
                (self._dataset(1), self._dataset(2), 5, 3.0),
                (self._dataset(2), self._dataset(0), 4, 50.0)]
    one_minimum = 0
    with runtime.local_runtime():
      for train, validation, epochs, lr in settings:
        losses = self._curve(train, validation, epochs, lr)
        full, full_epoch, _ = self.stage.personalize(
            self.weights, train, validation, epochs, lr, 0)
        early, early_epoch, early_losses = self.stage.personalize(
            self.weights, train, validation, epochs, lr, 1)
        self.assertAllClose(early_losses, losses[:len(early_losses)])
        self.assertEqual(full_epoch, int(np.argmin(losses)))
        falls = np.diff(losses) < 0
        # One minimum: the curve falls, then never falls again.
        if not any(falls[i] and not falls[i - 1] for i in range(1, len(falls))):
          one_minimum += 1
          self.assertEqual(early_epoch, full_epoch)
          self.assertTrue(synthetic.weights_equal(early, full))
        # Early stopping never keeps an epoch worse than the input.
        self.assertLessEqual(losses[early_epoch], losses[0])
    self.assertGreaterEqual(one_minimum, 2)

  def test_early_stop_ends_after_patience_epochs_without_gain(self):
    # A huge learning rate makes epoch 1 worse than the input: patience 1
    # stops there and keeps the input, whatever later epochs would do.
    train, validation = self._dataset(2), self._dataset(0)
    with runtime.local_runtime():
      losses = self._curve(train, validation, 1, 50.0)
      tuned, best_epoch, early_losses = self.stage.personalize(
          self.weights, train, validation, 6, 50.0, 1)
    self.assertGreater(losses[1], losses[0])
    self.assertLen(early_losses, 2)  # Epochs 0 and 1 only.
    self.assertEqual(best_epoch, 0)
    self.assertTrue(synthetic.weights_equal(tuned, self.weights))

if __name__ == '__main__':
  tf.test.main()
