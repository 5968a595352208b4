"""Tests of the LSTM language model, its presets and its TFF wrapper."""

import collections

import numpy as np
import tensorflow as tf

from gpfl_tff.data import text
from gpfl_tff.models import language_model
from gpfl_tff.models import metrics
from tests.learning import synthetic


class SoNwpPresetTest(tf.test.TestCase):

  def test_layer_shapes_and_size(self):
    preset = language_model.PRESETS['so_nwp']
    self.assertEqual(
        (preset.vocab_size, preset.embedding_size, preset.lstm_units,
         preset.projection_size), (10000, 96, 670, 96))
    num_tokens = text.TextEncoder(
        [f'w{i}' for i in range(preset.vocab_size)], preset.seq_len).num_tokens
    self.assertEqual(num_tokens, 10004)  # <pad>, <oov>, <bos>, <eos>.
    model = language_model.build_keras_model(preset, num_tokens)
    shapes = [tuple(w.shape) for w in model.weights]
    self.assertEqual(shapes, [
        (10004, 96),  # Embedding.
        (96, 4 * 670), (670, 4 * 670), (4 * 670,),  # LSTM.
        (670, 96), (96,),  # Projection.
        (96, 10004), (10004,),  # Output over every token id.
    ])
    # The size TFF's Stack Overflow next-word baseline reports.
    self.assertEqual(model.count_params(), 4_050_748)
    self.assertEqual(model.output_shape, (None, None, 10004))


class ModelFnTest(tf.test.TestCase):

  def test_tff_model_reports_the_sums(self):
    preset = synthetic.tiny_preset(vocab_size=10)
    model = language_model.build_model_fn(preset,
                                          synthetic.num_tokens(preset))()
    arrays = synthetic.cycle_windows(words=8, offset=1, windows=3)
    arrays['y'][-1, -1] = 0
    batch = collections.OrderedDict(x=tf.constant(arrays['x']),
                                    y=tf.constant(arrays['y']))
    output = model.forward_pass(batch, training=False)
    self.assertEqual(output.predictions.shape, (3, preset.seq_len, 14))
    # A second batch: the metrics are sums over every forward pass.
    model.forward_pass(batch, training=False)
    reported = model.report_local_unfinalized_metrics()
    self.assertCountEqual(reported,
                          ['loss_sum', 'token_count', 'num_examples'])
    expected = metrics.token_sums(batch['y'], output.predictions)
    self.assertAllClose(reported['loss_sum'][0], 2 * expected['loss_sum'],
                        rtol=1e-6)
    self.assertEqual(float(reported['token_count'][0]),
                     2 * (3 * preset.seq_len - 1))
    self.assertEqual(float(reported['num_examples'][0]), 6)
    finalizers = model.metric_finalizers()
    self.assertEqual(float(finalizers['num_examples'](
        reported['num_examples'])), 6)
    model.reset_metrics()
    self.assertEqual(
        [float(v[0]) for v in model.report_local_unfinalized_metrics().values()],
        [0.0, 0.0, 0.0])
    # The training loss is the mean over counted tokens.
    self.assertAllClose(output.loss,
                        expected['loss_sum'] / expected['token_count'],
                        rtol=1e-5)

  def test_input_spec_matches_seq_len(self):
    preset = synthetic.tiny_preset()
    model = language_model.build_model_fn(preset,
                                          synthetic.num_tokens(preset))()
    self.assertEqual(model.input_spec['x'].shape.as_list(),
                     [None, preset.seq_len])
    self.assertEqual(model.input_spec['y'].dtype, tf.int32)

  def test_seed_fixes_initial_weights(self):
    first = language_model.initial_weights(synthetic.tiny_model_fn(seed=3))
    again = language_model.initial_weights(synthetic.tiny_model_fn(seed=3))
    other = language_model.initial_weights(synthetic.tiny_model_fn(seed=4))
    self.assertTrue(synthetic.weights_equal(first, again))
    self.assertFalse(synthetic.weights_equal(first, other))
    # Every weight matrix differs with the seed (biases start at zero).
    for a, b in zip(first.trainable, other.trainable):
      if a.ndim == 2:
        self.assertNotAllClose(a, b)


if __name__ == '__main__':
  tf.test.main()
