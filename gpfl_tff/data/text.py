"""Word-level text preprocessing for next-word prediction, in TensorFlow graphs.

Normalization and tokenization (tensorflow-text):
  1. Unicode NFKC normalization, then case folding (`case_fold_utf8`).
  2. Every character that is neither a word character (a Unicode letter,
     digit, mark or underscore), whitespace nor an apostrophe becomes its own
     token ("sir!" -> "sir", "!"); apostrophes stay inside words ("banish'd",
     "i'll").
  3. Split on whitespace (`WhitespaceTokenizer`).

Token ids: 0 = <pad>, 1 = <oov>, 2 = <bos>, 3 = <eos>, then the vocabulary
words from 4 on, most frequent first.

Sequences: each example becomes <bos> w1 ... wn <eos>; its inputs are all
tokens but the last, its targets all but the first. A client's examples are
packed: their inputs (and targets) are concatenated in order and cut into
windows of `seq_len`; only the client's last window is padded with <pad>. A
window may thus hold the end of one example and the start of the next, and the
model reads the earlier example as context. Every word of an example is a
target exactly once, and <bos> never is. Packing instead of padding each
example to whole windows saves the padded positions (23 % of Shakespeare's
train windows were padding before).

Which targets count for loss, perplexity and accuracy: every target that is not
<pad>. <eos> and <oov> targets count (predicting the end of an utterance, or
that a rare word comes, is part of the task); <pad> never does.
"""

import collections
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PAD, OOV, BOS, EOS = '<pad>', '<oov>', '<bos>', '<eos>'
SPECIAL_TOKENS = (PAD, OOV, BOS, EOS)
PAD_ID, OOV_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

_PUNCTUATION = r"([^\pL\pN\pM_\s'])"
_TOKENIZE_BATCH = 1024


def tokenize(texts: tf.Tensor) -> tf.RaggedTensor:
  """Normalizes and splits strings into word tokens.

  Args:
    texts: tf.string tensor of shape [n].

  Returns:
    tf.string RaggedTensor of shape [n, (words)].
  """
  texts = tf_text.normalize_utf8(texts, 'NFKC')
  texts = tf_text.case_fold_utf8(texts)
  texts = tf.strings.regex_replace(texts, _PUNCTUATION, r' \1 ')
  return tf_text.WhitespaceTokenizer().tokenize(texts)


def iter_tokens(texts: Sequence[str]) -> Iterable[list[str]]:
  """Yields the token list of each text, tokenized in batches by `tokenize`."""
  for start in range(0, len(texts), _TOKENIZE_BATCH):
    batch = tokenize(tf.constant(texts[start:start + _TOKENIZE_BATCH]))
    for row in batch.to_list():
      yield [token.decode('utf-8') for token in row]


def build_vocabulary(texts: Sequence[str], size: int) -> list[str]:
  """Returns the `size` most frequent words of `texts`.

  Ties in frequency are broken by the word itself in code-point order, so the
  vocabulary depends on the texts only, not on their order.
  """
  counts = collections.Counter()
  for tokens in iter_tokens(texts):
    counts.update(tokens)
  for token in SPECIAL_TOKENS:
    counts.pop(token, None)
  ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return [word for word, _ in ranked[:size]]


def oov_rate(texts: Sequence[str], vocabulary: Sequence[str]) -> float:
  """Share of word tokens in `texts` that are not in `vocabulary`."""
  known = set(vocabulary)
  total = unknown = 0
  for tokens in iter_tokens(texts):
    total += len(tokens)
    unknown += sum(token not in known for token in tokens)
  return unknown / total if total else 0.0


class TextEncoder:
  """Turns datasets of {'text': string} examples into batched model inputs.

  Attributes:
    vocabulary: the words, without special tokens.
    seq_len: length of every input and target window.
    num_tokens: size of the output layer (vocabulary + special tokens).
  """

  def __init__(self, vocabulary: Sequence[str], seq_len: int):
    if seq_len < 1:
      raise ValueError(f'seq_len must be positive, got {seq_len}')
    self.vocabulary = list(vocabulary)
    self.seq_len = seq_len
    self.num_tokens = len(SPECIAL_TOKENS) + len(self.vocabulary)

  def _table(self) -> tf.lookup.StaticHashTable:
    # Built inside the caller's graph so that it travels with the dataset.
    keys = tf.constant(self.vocabulary, dtype=tf.string)
    values = tf.range(len(SPECIAL_TOKENS), self.num_tokens, dtype=tf.int64)
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, values), default_value=OOV_ID)

  def to_sequences(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Maps one client's {'text': string} examples to packed windows.

    Returns a dataset of {'x': [seq_len], 'y': [seq_len]} int32 elements.
    """
    table = self._table()
    seq_len = self.seq_len

    def shifted(example):
      words = tokenize(tf.reshape(example['text'], [1])).values
      ids = tf.concat([[BOS_ID], table.lookup(words), [EOS_ID]], axis=0)
      ids = tf.cast(ids, tf.int32)
      return collections.OrderedDict(x=ids[:-1], y=ids[1:])

    def pad(window):
      return collections.OrderedDict(
          (key, tf.ensure_shape(
              tf.pad(value, [[0, seq_len - tf.size(value)]]), [seq_len]))
          for key, value in window.items())

    return dataset.map(shifted).unbatch().batch(seq_len).map(pad)

  def encode(self, texts_by_key: Mapping[Hashable, Sequence[str]]
            ) -> dict[Hashable, dict[str, np.ndarray]]:
    """Windows of each key's texts, in order, as int32 arrays.

    All texts go through `tokenize` in large batches (the same rule as
    `to_sequences`, which does it per example inside a tf.data graph); each
    key's examples are packed as one client's.

    Returns:
      key -> {'x': [windows, seq_len], 'y': [windows, seq_len]}.
    """
    index = {word: i for i, word in enumerate(self.vocabulary,
                                              start=len(SPECIAL_TOKENS))}
    owners = [key for key, texts in texts_by_key.items() for _ in texts]
    flat = [t for texts in texts_by_key.values() for t in texts]
    rows = {key: ([], []) for key in texts_by_key}
    for key, tokens in zip(owners, iter_tokens(flat)):
      ids = [BOS_ID] + [index.get(t, OOV_ID) for t in tokens] + [EOS_ID]
      rows[key][0].extend(ids[:-1])
      rows[key][1].extend(ids[1:])
    return {key: {'x': self._windows(x), 'y': self._windows(y)}
            for key, (x, y) in rows.items()}

  def _windows(self, ids: list[int]) -> np.ndarray:
    """A packed token stream as [windows, seq_len], the last one padded."""
    padding = [PAD_ID] * (-len(ids) % self.seq_len)
    return np.array(ids + padding, np.int32).reshape([-1, self.seq_len])
