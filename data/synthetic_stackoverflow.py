r"""Writes a synthetic `stackoverflow.sqlite` in TFF's exact schema.

  .venv/bin/python -m data.synthetic_stackoverflow --clients=50000 \
      --posts=2000000 --output_dir=/tmp/so_synthetic

Why: TFF's real file (342,477 train users, about 135 million train examples)
cannot be downloaded here, yet preparation must be measured at a size where
per-client and per-post costs show. This binary writes a stand-in that the
Stack Overflow reader cannot tell from the real one by its structure.

Schema (as `tff.simulation.datasets.stackoverflow.load_data` reads it):
  examples(split_name, client_id, serialized_example_proto)
  client_metadata(client_id, split_name, num_examples)
Each example is a tf.train.Example with the features TFF parses:
creation_date, title, tokens, tags, type (bytes) and score (int64).

Shape (deterministic given --seed):
  - client ids: distinct 8-digit numbers; as in TFF, a user whose id is 0
    modulo 10 is held out: all its posts are `heldout`. Of the others, most
    have `train` posts (dated before 2018) and `test` posts (dated after);
    some have only train, a few only test posts.
  - posts per user: heavy-tailed (log-normal weights), at least one each,
    exactly --posts in all.
  - tokens: 5 to 100 per post (log-normal, about 25 on average), drawn with
    Zipf frequencies from a few tens of thousands of made-up lower-case words
    and punctuation marks; some tokens come from words typical of the user's
    favourite tag, so that groups differ a little.
  - tags: 1 to 4 per post, '|'-joined, from a few hundred made-up tags with
    Zipf frequencies; each user favours one tag.
  - rows are written user by user in a shuffled user order (not sorted by
    client id), so a reader cannot rely on the order of the rows.
"""

import contextlib
import os
import sqlite3

from absl import flags
import numpy as np

from experiments import cli
from gpfl_tff.data import client_data
from gpfl_tff.data.errors import DataError

# After dataset_flags, which quiets TensorFlow's C++ logs before it loads.
import tensorflow as tf  # pylint: disable=g-bad-import-order

CLIENTS = flags.DEFINE_integer('clients', 1000, 'Number of users.')
POSTS = flags.DEFINE_integer('posts', 40000,
                             'Number of posts over all users and splits.')
OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', '', 'Folder to write stackoverflow.sqlite into (created if '
    'missing; an existing stackoverflow.sqlite there is an error).')
SEED = flags.DEFINE_integer('seed', 0, 'Seed of everything generated.')

FILENAME = 'stackoverflow.sqlite'
_VOCABULARY_SIZE = 30000
_NUM_TAGS = 300
_PUNCTUATION = ['.', ',', '(', ')', '?', ':', '"', '=', ';', '!', '-', '/']
_TOPIC_WORDS = 100  # Words typical of each tag.
_TOPIC_SHARE = 0.15  # Share of tokens drawn from the favourite tag's words.
_CLIENTS_PER_CHUNK = 2000  # Users generated at once (bounds memory).
_TEST_START = np.datetime64('2018-01-01T00:00:00', 'ms')  # TFF's split date.
_FIRST_DATE = np.datetime64('2008-08-01T00:00:00', 'ms')
_LAST_DATE = np.datetime64('2019-09-01T00:00:00', 'ms')


def _made_up_words(rng: np.random.Generator, count: int) -> list[str]:
  """`count` distinct pronounceable lower-case words, shortest first."""
  consonants = 'bcdfghjklmnprstvwz'
  syllables = [c + v for c in consonants for v in 'aeiou']
  words = set()
  while len(words) < count:
    lengths = rng.integers(1, 5, size=count).tolist()
    parts = rng.integers(0, len(syllables), size=(count, 4)).tolist()
    endings = rng.integers(0, 3 * len(consonants), size=count).tolist()
    for n, part, end in zip(lengths, parts, endings):
      # A final consonant on about a third of the words.
      words.add(''.join(syllables[p] for p in part[:n]) +
                (consonants[end] if end < len(consonants) else ''))
  # Sorting makes the set's order irrelevant; short words get the low (most
  # frequent) ranks, as in natural text.
  return sorted(words, key=lambda w: (len(w), w))[:count]


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
  weights = 1.0 / np.arange(1, n + 1) ** exponent
  return np.cumsum(weights) / weights.sum()


def _draw(rng: np.random.Generator, cdf: np.ndarray, size) -> np.ndarray:
  """Ranks drawn with the probabilities whose cumulative sums are `cdf`."""
  return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1)


class _Generator:
  """Draws the users and posts of one file; see the module docstring."""

  def __init__(self, clients: int, posts: int, seed: int):
    rng = np.random.default_rng(seed)
    self.rng = rng
    made_up = _made_up_words(rng, _VOCABULARY_SIZE + _NUM_TAGS)
    is_tag = np.zeros(len(made_up), bool)
    is_tag[rng.choice(len(made_up), _NUM_TAGS, replace=False)] = True
    words = [w for w, t in zip(made_up, is_tag) if not t]
    # Punctuation marks are among the most frequent tokens, as in real posts.
    self.words = np.array(_PUNCTUATION[:2] + words[:8] + _PUNCTUATION[2:] +
                          words[8:], dtype=object)
    tag_words = [w for w, t in zip(made_up, is_tag) if t]
    self.tags = [w if i % 5 else f'{w}-{tag_words[i - 1][:3]}'
                 for i, w in enumerate(tag_words)]
    self.word_cdf = _zipf_cdf(len(self.words), 1.07)
    self.tag_cdf = _zipf_cdf(_NUM_TAGS, 1.0)
    self.topic_cdf = _zipf_cdf(_TOPIC_WORDS, 1.0)
    self.topic_words = rng.integers(2, len(self.words),
                                    size=(_NUM_TAGS, _TOPIC_WORDS))
    # Distinct ids: user i gets one of 7*i+1 .. 7*i+7.
    self.client_ids = [f'{7 * i + int(o):08d}' for i, o in
                       enumerate(rng.integers(1, 8, size=clients))]
    weights = rng.lognormal(0.0, 1.2, size=clients)
    self.posts_per_client = 1 + rng.multinomial(posts - clients,
                                                weights / weights.sum())
    self.favourite_tag = _draw(rng, self.tag_cdf, clients)
    self.order = rng.permutation(clients)

  def _splits(self, client: int, n: int) -> list[str]:
    """The split of each of a user's `n` posts, in date order."""
    if int(self.client_ids[client]) % 10 == 0:
      return ['heldout'] * n
    kind = self.rng.random()
    if kind < 0.05:
      return ['test'] * n
    if kind < 0.35 or n < 2:
      return ['train'] * n
    n_test = min(n - 1, max(1, round(n * self.rng.uniform(0.05, 0.3))))
    return ['train'] * (n - n_test) + ['test'] * n_test

  def _dates(self, splits: list[str]) -> list[str]:
    """Sorted creation dates: train before 2018, test after, heldout any."""
    rng = self.rng
    # The user's first post: at least a month before the test period starts.
    latest_start = (_TEST_START - _FIRST_DATE).astype(np.int64) - 30 * 86400000
    start = _FIRST_DATE + rng.integers(0, latest_start)
    before = (_TEST_START - start).astype(np.int64)
    after = (_LAST_DATE - _TEST_START).astype(np.int64)
    offsets = {
        'train': lambda k: start + rng.integers(0, before, k),
        'test': lambda k: _TEST_START + rng.integers(0, after, k),
        'heldout': lambda k: start + rng.integers(0, before + after, k),
    }
    dates = np.sort(np.concatenate(
        [offsets[s](splits.count(s)) for s in ('train', 'heldout', 'test')]))
    return [d.replace('T', ' ') + ' UTC'
            for d in np.datetime_as_string(dates, unit='ms')]

  def _texts(self, lengths: np.ndarray, topic: np.ndarray) -> list[str]:
    """Space-joined tokens of posts of `lengths` tokens and `topic` tags."""
    rng = self.rng
    ids = _draw(rng, self.word_cdf, int(lengths.sum()))
    from_topic = rng.random(len(ids)) < _TOPIC_SHARE
    token_topic = np.repeat(topic, lengths)[from_topic]
    ids[from_topic] = self.topic_words[
        token_topic, _draw(rng, self.topic_cdf, len(token_topic))]
    tokens = self.words[ids].tolist()
    ends = np.cumsum(lengths).tolist()
    return [' '.join(tokens[end - n:end])
            for end, n in zip(ends, lengths.tolist())]

  def _tags(self, favourite: int, n: int) -> list[str]:
    rng = self.rng
    firsts = np.where(rng.random(n) < 0.7, favourite,
                      _draw(rng, self.tag_cdf, n))
    extras = _draw(rng, self.tag_cdf, (n, 3))
    counts = rng.integers(0, 4, n)
    result = []
    for first, extra, count in zip(firsts.tolist(), extras.tolist(),
                                   counts.tolist()):
      chosen = list(dict.fromkeys([first] + extra[:count]))
      result.append('|'.join(self.tags[t] for t in chosen))
    return result

  def rows(self, metadata: dict[tuple[str, str], int]):
    """Yields (split_name, client_id, serialized example) rows.

    Counts each user's examples per split into `metadata`.
    """
    rng = self.rng
    # One message reused for every post: 7x faster than building a new one.
    example = tf.train.Example()
    feature = example.features.feature
    fields = {k: feature[k].bytes_list.value
              for k in ('creation_date', 'tags', 'title', 'tokens', 'type')}
    for values in fields.values():
      values.append(b'')
    score = feature['score'].int64_list.value
    score.append(0)
    for start in range(0, len(self.order), _CLIENTS_PER_CHUNK):
      chunk = self.order[start:start + _CLIENTS_PER_CHUNK]
      counts = self.posts_per_client[chunk]
      total = int(counts.sum())
      lengths = np.clip(rng.lognormal(np.log(20), 0.7, total), 5, 100)
      lengths = lengths.astype(np.int64)
      topics = np.repeat(self.favourite_tag[chunk], counts)
      texts = self._texts(lengths, topics)
      is_question = rng.random(total) < 0.3
      titles = iter(self._texts(rng.integers(4, 13, int(is_question.sum())),
                                topics[is_question]))
      scores = (rng.poisson(2.0, total) - 1).tolist()
      post = 0
      for client, n in zip(chunk.tolist(), counts.tolist()):
        client_id = self.client_ids[client]
        splits = self._splits(client, n)
        dates = self._dates(splits)
        tags = self._tags(int(self.favourite_tag[client]), n)
        for i, split in enumerate(splits):
          question = bool(is_question[post])
          title = next(titles) if question else ''
          fields['creation_date'][0] = dates[i].encode()
          fields['tags'][0] = tags[i].encode()
          fields['title'][0] = title.encode()
          fields['tokens'][0] = texts[post].encode()
          fields['type'][0] = b'question' if question else b'answer'
          score[0] = scores[post]
          metadata[(client_id, split)] = metadata.get((client_id, split),
                                                      0) + 1
          yield split, client_id, example.SerializeToString()
          post += 1


def write(path: str, clients: int, posts: int, seed: int = 0) -> None:
  """Writes the synthetic file to `path` (which must not exist).

  The file is written beside `path` and renamed into place when complete.
  """
  if clients < 1:
    raise DataError(f'--clients must be at least 1, got {clients}')
  if posts < clients:
    raise DataError(f'--posts ({posts}) must be at least --clients '
                    f'({clients}): every user has a post')
  if os.path.exists(path):
    raise DataError(f'{path}: exists; refusing to overwrite it')
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise DataError(f'{directory}: cannot create the folder ({e})') from None
  generator = _Generator(clients, posts, seed)
  staging = os.path.join(directory, f'.{os.path.basename(path)}.partial')
  if os.path.exists(staging):  # Left by a run that was killed.
    os.remove(staging)
  try:
    with contextlib.closing(sqlite3.connect(staging)) as connection:
      # A scratch file until the rename: no journal, no fsync.
      connection.execute('PRAGMA journal_mode = OFF')
      connection.execute('PRAGMA synchronous = OFF')
      metadata = {}
      client_data.write_sql_tables(
          connection, generator.rows(metadata),
          lambda: [(c, s, n) for (c, s), n in sorted(metadata.items())])
    os.replace(staging, path)
  finally:
    if os.path.exists(staging):
      os.remove(staging)


def main(argv):
  del argv
  if not OUTPUT_DIR.value:
    raise DataError('--output_dir is required')
  path = os.path.join(OUTPUT_DIR.value, FILENAME)
  write(path, CLIENTS.value, POSTS.value, SEED.value)
  print(f'wrote {path}: {CLIENTS.value} users, {POSTS.value} posts')


if __name__ == '__main__':
  cli.run(main)
