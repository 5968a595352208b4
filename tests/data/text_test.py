"""Tests of gpfl_tff.data.text: tokenization, vocabulary and TextEncoder."""

from unittest import mock

import numpy as np
import tensorflow as tf

from gpfl_tff.data import text


def _tokens(texts):
  return list(text.iter_tokens(texts))


def _windows(encoder, texts):
  """(x, y) numpy arrays of shape [windows, seq_len] for `texts`."""
  dataset = tf.data.Dataset.from_tensor_slices({'text': tf.constant(texts)})
  xs, ys = [], []
  for element in encoder.to_sequences(dataset):
    xs.append(element['x'].numpy().tolist())
    ys.append(element['y'].numpy().tolist())
  return xs, ys


class TokenizeTest(tf.test.TestCase):

  def test_punctuation_is_split_into_tokens(self):
    self.assertEqual(
        _tokens(['Sir! Hello, world... (yes)']),
        [['sir', '!', 'hello', ',', 'world', '.', '.', '.', '(', 'yes', ')']])

  def test_apostrophes_stay_inside_words(self):
    self.assertEqual(_tokens(["I'll go; 'tis banish'd."]),
                     [["i'll", 'go', ';', "'tis", "banish'd", '.']])

  def test_case_folding_and_nfkc(self):
    self.assertEqual(_tokens(['HELLO Hello hello Straße ＦＵＬＬ']),
                     [['hello', 'hello', 'hello', 'strasse', 'full']])

  def test_non_ascii_letters_are_word_characters(self):
    self.assertEqual(_tokens(["Café naïve Zoë's — x_y 3.5 İ"]),
                     [['café', 'naïve', "zoë's", '—', 'x_y', '3', '.', '5',
                       'i̇']])

  def test_whitespace_runs_and_empty_text(self):
    self.assertEqual(_tokens(['  a \t b\n c  ', '', '   ']),
                     [['a', 'b', 'c'], [], []])

  def test_batches_keep_order(self):
    texts = [f'w{i} x' for i in range(7)]
    with mock.patch.object(text, '_TOKENIZE_BATCH', 3):
      self.assertEqual(_tokens(texts), [[f'w{i}', 'x'] for i in range(7)])

  def test_tokenize_returns_ragged_strings(self):
    tokens = text.tokenize(tf.constant(['a b', 'c']))
    self.assertIsInstance(tokens, tf.RaggedTensor)
    self.assertEqual(tokens.to_list(), [[b'a', b'b'], [b'c']])


class VocabularyTest(tf.test.TestCase):

  def test_most_frequent_first(self):
    texts = ['b b b a a c', 'c c c c']
    self.assertEqual(text.build_vocabulary(texts, 10), ['c', 'b', 'a'])

  def test_top_size_only(self):
    texts = ['a a a b b c']
    self.assertEqual(text.build_vocabulary(texts, 2), ['a', 'b'])

  def test_ties_by_code_point_and_independent_of_order(self):
    texts = ['zeta beta Alpha', 'beta zeta alpha', 'É e']
    expected = ['alpha', 'beta', 'zeta', 'e', 'é']
    self.assertEqual(text.build_vocabulary(texts, 10), expected)
    self.assertEqual(text.build_vocabulary(texts[::-1], 10), expected)
    self.assertEqual(text.build_vocabulary(texts, 3), expected[:3])

  def test_special_tokens_are_excluded(self):
    texts = ['<pad> <oov> <bos> <eos> <eos> word']
    vocabulary = text.build_vocabulary(texts, 100)
    for token in text.SPECIAL_TOKENS:
      self.assertNotIn(token, vocabulary)
    self.assertIn('word', vocabulary)
    with mock.patch.object(text, 'iter_tokens',
                           return_value=[['<eos>', '<eos>', '<pad>', 'a']]):
      self.assertEqual(text.build_vocabulary(['ignored'], 10), ['a'])

  def test_oov_rate(self):
    self.assertAllClose(text.oov_rate(['a b c d', 'a x'], ['a', 'b']), 0.5)
    self.assertEqual(text.oov_rate([], ['a']), 0.0)


class TextEncoderTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    # Ids: the=4, cat=5, sat=6.
    self.encoder = text.TextEncoder(['the', 'cat', 'sat'], seq_len=3)

  def test_ids_and_num_tokens(self):
    self.assertEqual(self.encoder.num_tokens, 7)
    self.assertEqual(
        (text.PAD_ID, text.OOV_ID, text.BOS_ID, text.EOS_ID), (0, 1, 2, 3))
    xs, ys = _windows(text.TextEncoder(['the', 'cat', 'sat'], seq_len=10),
                      ['The cat sat'])
    self.assertEqual(xs, [[2, 4, 5, 6, 0, 0, 0, 0, 0, 0]])
    self.assertEqual(ys, [[4, 5, 6, 3, 0, 0, 0, 0, 0, 0]])

  def test_windows_targets_shifted_and_oov(self):
    # <bos> the cat sat on the mat <eos>, with on/mat unknown.
    xs, ys = _windows(self.encoder, ['the cat sat on the mat'])
    self.assertEqual(xs, [[2, 4, 5], [6, 1, 4], [1, 0, 0]])
    self.assertEqual(ys, [[4, 5, 6], [1, 4, 1], [3, 0, 0]])

  def test_exact_multiple_has_no_padding(self):
    # 5 words -> 6 inputs -> two full windows of 3.
    xs, ys = _windows(self.encoder, ['the cat sat the cat'])
    self.assertEqual(xs, [[2, 4, 5], [6, 4, 5]])
    self.assertEqual(ys, [[4, 5, 6], [4, 5, 3]])

  def test_every_word_is_a_target_once_and_padding_only_at_the_end(self):
    vocabulary = ['a', 'b', 'c', 'd']
    texts = ['a b c d a b c', 'd', 'x a y, b!', 'c ' * 11]
    for seq_len in (1, 2, 3, 5, 8):
      encoder = text.TextEncoder(vocabulary, seq_len)
      for example in texts:
        xs, ys = _windows(encoder, [example])
        flat_x = [i for w in xs for i in w]
        flat_y = [i for w in ys for i in w]
        self.assertTrue(all(len(w) == seq_len for w in xs + ys))
        words = next(text.iter_tokens([example]))
        ids = [vocabulary.index(w) + 4 if w in vocabulary else text.OOV_ID
               for w in words]
        num_real = len(ids) + 1
        self.assertEqual(flat_y[:num_real], ids + [text.EOS_ID])
        self.assertEqual(flat_x[:num_real], [text.BOS_ID] + ids)
        # Only padding after the real tokens, and less than one window of it.
        self.assertEqual(set(flat_y[num_real:]) | {0}, {0})
        self.assertEqual(set(flat_x[num_real:]) | {0}, {0})
        self.assertLess(len(flat_y) - num_real, seq_len)
        self.assertNotIn(text.PAD_ID, flat_y[:num_real])

  def test_examples_are_packed_and_only_the_last_window_padded(self):
    # <bos> the | <bos> cat sat, targets the <eos> | cat sat <eos>.
    xs, ys = _windows(self.encoder, ['the', 'cat sat', 'sat'])
    self.assertEqual(xs, [[2, 4, 2], [5, 6, 2], [6, 0, 0]])
    self.assertEqual(ys, [[4, 3, 5], [6, 3, 6], [3, 0, 0]])
    # Packing keeps every target of every example, once, in order.
    flat_y = [i for w in ys for i in w if i]
    self.assertEqual(flat_y, [4, 3, 5, 6, 3, 6, 3])
    self.assertNotIn(text.BOS_ID, flat_y)

  def test_dtype_and_shape(self):
    dataset = tf.data.Dataset.from_tensor_slices({'text': ['a b']})
    spec = self.encoder.to_sequences(dataset).element_spec
    self.assertEqual(spec['x'], tf.TensorSpec([3], tf.int32))
    self.assertEqual(spec['y'], tf.TensorSpec([3], tf.int32))

  def test_encode_returns_windows_per_key(self):
    arrays = self.encoder.encode({'a': ['the cat sat on the mat', 'cat'],
                                  'b': ['sat'], 'none': []})
    self.assertCountEqual(arrays, ['a', 'b', 'none'])
    self.assertEqual(arrays['a']['x'].dtype, np.int32)
    self.assertAllEqual(arrays['a']['x'], [[2, 4, 5], [6, 1, 4], [1, 2, 5]])
    self.assertAllEqual(arrays['a']['y'], [[4, 5, 6], [1, 4, 1], [3, 5, 3]])
    self.assertAllEqual(arrays['b']['x'], [[2, 6, 0]])
    self.assertAllEqual(arrays['b']['y'], [[6, 3, 0]])
    self.assertEqual(arrays['none']['x'].shape, (0, 3))
    self.assertEqual(arrays['none']['y'].shape, (0, 3))

  def test_encode_matches_to_sequences(self):
    texts = ['Sir! I\'ll go, thee cat.', 'the the the the', 'x', 'Café sat']
    for seq_len in (1, 2, 4, 7):
      encoder = text.TextEncoder(['the', 'cat', 'sat', 'café', 'go'], seq_len)
      xs, ys = _windows(encoder, texts)
      arrays = encoder.encode({'k': texts})['k']
      self.assertAllEqual(arrays['x'], xs)
      self.assertAllEqual(arrays['y'], ys)

  def test_works_inside_tf_function(self):
    encoder = self.encoder

    @tf.function
    def count_targets(dataset):
      return encoder.to_sequences(dataset).reduce(
          tf.constant(0), lambda total, e: total + tf.math.count_nonzero(
              e['y'], dtype=tf.int32))

    dataset = tf.data.Dataset.from_tensor_slices({'text': ['a b c', 'd']})
    self.assertEqual(count_targets(dataset).numpy(), 4 + 2)

  def test_bad_seq_len(self):
    with self.assertRaisesRegex(ValueError, 'seq_len'):
      text.TextEncoder(['a'], seq_len=0)


if __name__ == '__main__':
  tf.test.main()
