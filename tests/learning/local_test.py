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
      tuned = self.stage.personalize(self.weights, self._dataset(0),
                                     self._dataset(0), 0, 0.5)
    self.assertTrue(synthetic.weights_equal(tuned, self.weights))

  def test_finetuning_lowers_the_validation_loss(self):
    data = self._dataset(1)
    with runtime.local_runtime():
      before = self.stage.evaluate(self.weights, data)
      tuned = self.stage.personalize(self.weights, data, data, 3, 0.5)
      after = self.stage.evaluate(tuned, data)
    self.assertFalse(synthetic.weights_equal(tuned, self.weights))
    self.assertLess(_mean_loss(after), _mean_loss(before))
    self.assertEqual(after['token_count'], before['token_count'])

  def test_finetuning_keeps_the_best_epoch(self):
    # Far too large a learning rate makes later epochs worse; the kept
    # weights must still score at least as well as the input on validation.
    train, validation = self._dataset(1), self._dataset(2)
    with runtime.local_runtime():
      before = self.stage.evaluate(self.weights, validation)
      tuned = self.stage.personalize(self.weights, train, validation, 4, 50.0)
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

  def test_run_returns_before_and_after_per_client_in_order(self):
    datasets = [self._dataset(i) for i in range(3)]
    with runtime.local_runtime():
      before, after = self.stage.run(self.weights, datasets, datasets,
                                     datasets, np.int32(2), np.float32(0.5))
      expected_before = [self.stage.evaluate(self.weights, d)
                         for d in datasets]
      expected_after = [
          self.stage.evaluate(
              self.stage.personalize(self.weights, d, d, 2, 0.5), d)
          for d in datasets]
    self.assertLen(before, 3)
    self.assertLen(after, 3)
    for i in range(3):
      self.assertEqual(dict(before[i]), dict(expected_before[i]))
      self.assertAllClose(dict(after[i]), dict(expected_after[i]), rtol=1e-5)
      self.assertLess(_mean_loss(after[i]), _mean_loss(before[i]))
    # Clients differ in size, so the order shows in the token counts.
    self.assertEqual([s['token_count'] for s in before],
                     [float(a['y'].size) - 2 * (i == 0)
                      for i, a in enumerate(self.arrays)])


if __name__ == '__main__':
  tf.test.main()
