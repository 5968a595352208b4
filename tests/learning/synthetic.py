"""Small synthetic data and models shared by the tests of the learning stages.

Grouped corpus: every group `g` has its own ten words g0 ... g9, disjoint from
the other groups' words, and every line of its clients walks them in a cycle
(g3 g4 ... g9 g0 g1 g2), so after the first word each next word is certain.
A model trained on one group can learn that group's cycle and its first words;
a model shared by all groups must spread its first-word guess over them.
"""

import collections
import json
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from gpfl_tff.data import client_data
from gpfl_tff.data import datasets
from gpfl_tff.data import text
from gpfl_tff.models import language_model

WORDS_PER_GROUP = 10

# A model small enough to train in a test within seconds on a CPU.
TINY = language_model.Preset(vocab_size=40, embedding_size=8, lstm_units=16,
                             projection_size=8, seq_len=5)


def group_words(group: str) -> list[str]:
  return [f'{group}{i}' for i in range(WORDS_PER_GROUP)]


def client_lines(group: str, client_index: int, lines: int) -> list[str]:
  """The examples of one client: cycles through its group's words."""
  words = group_words(group)
  examples = []
  for line in range(lines):
    start = (client_index + line) % WORDS_PER_GROUP
    examples.append(' '.join(words[(start + i) % WORDS_PER_GROUP]
                             for i in range(WORDS_PER_GROUP)))
  return examples


def write_grouped_corpus(path: str, clients_per_group: Mapping[str, int],
                         lines_per_client: int = 20) -> str:
  """Writes the corpus as text_corpus JSON Lines; returns `path`.

  Client ids are `<group>-<index>`; with 20 lines a client's split is 16
  train, 2 validation and 2 test lines (see `client_data.split_examples`).
  """
  with open(path, 'w', encoding='utf-8') as f:
    for group, count in clients_per_group.items():
      for index in range(count):
        for line in client_lines(group, index, lines_per_client):
          f.write(json.dumps({'client_id': f'{group}-{index}',
                              'group_id': group, 'text': line}) + '\n')
  return path


def prepare_grouped(directory: str, clients_per_group: Mapping[str, int],
                    lines_per_client: int = 20
                   ) -> client_data.GroupedClientData:
  """The corpus prepared like a real dataset (`datasets.prepare`), loaded."""
  corpus = write_grouped_corpus(os.path.join(directory, 'corpus.jsonl'),
                                clients_per_group, lines_per_client)
  config = datasets.DatasetConfig(
      dataset='text_corpus', input=corpus,
      vocab_size=WORDS_PER_GROUP * len(clients_per_group),
      min_words_per_client=1)
  prepared = os.path.join(directory, 'prepared')
  datasets.prepare(config, prepared, os.path.join(directory, 'cache'))
  return client_data.load(prepared)


def cycle_windows(words: int, offset: int, windows: int,
                  seq_len: int = TINY.seq_len) -> dict[str, np.ndarray]:
  """Token windows {'x', 'y'} [windows, seq_len] of a cycle over `words` ids.

  Ids run over the first `words` vocabulary ids (from 4 on); targets are the
  inputs shifted by one, as `text.TextEncoder` makes them.
  """
  first = len(text.SPECIAL_TOKENS)
  ids = first + (offset + np.arange(windows * seq_len + 1)) % words
  return {'x': ids[:-1].reshape(windows, seq_len).astype(np.int32),
          'y': ids[1:].reshape(windows, seq_len).astype(np.int32)}


def token_dataset(arrays: Mapping[str, np.ndarray],
                  batch_size: int = 4) -> tf.data.Dataset:
  """Batched {'x', 'y'} dataset, in the order the arrays hold."""
  return tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(x=arrays['x'], y=arrays['y'])).batch(batch_size)


def tiny_preset(vocab_size: int = TINY.vocab_size) -> language_model.Preset:
  return language_model.Preset(
      vocab_size=vocab_size, embedding_size=TINY.embedding_size,
      lstm_units=TINY.lstm_units, projection_size=TINY.projection_size,
      seq_len=TINY.seq_len)


def num_tokens(preset: language_model.Preset) -> int:
  """Output size of a model over `preset.vocab_size` words."""
  return preset.vocab_size + len(text.SPECIAL_TOKENS)


def tiny_model_fn(vocab_size: int = TINY.vocab_size, seed: int = 0):
  preset = tiny_preset(vocab_size)
  return language_model.build_model_fn(preset, num_tokens(preset), seed=seed)


def weights_equal(a, b) -> bool:
  """Whether two ModelWeights hold exactly the same arrays."""
  arrays = lambda w: list(w.trainable) + list(w.non_trainable)
  if len(arrays(a)) != len(arrays(b)):
    return False
  return all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))
