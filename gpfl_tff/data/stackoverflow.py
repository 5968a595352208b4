"""Stack Overflow: one client per user, grouped by the user's most frequent tag.

Source: TFF's `stackoverflow.sqlite` (the file behind
`tff.simulation.datasets.stackoverflow.load_data`; it is several gigabytes and
is not downloaded here).

Splits follow TFF's: a client's train posts are its train split, its test posts
its test split. Its validation split is its `heldout` posts where TFF has any
for that user, otherwise the last 10% (at least one) of its train posts. Only
users with both train and test posts are clients.

Group: the tag that appears most often over the client's train posts (ties by
tag name); tags outside the `top_tags` most common client-level tags become
`other`.

Reading: the real file has 342,477 train users and about 135 million train
posts, and TFF's `create_tf_dataset_for_client` runs one SQL query (a scan of
the table where there is no index) per client and split. So the file is read
here with sqlite3 in one sequential pass over `examples` in rowid order, each
row's tf.train.Example parsed in Python, rows grouped by user as they come.
Within a user and split, rowid order is the order TFF's per-client query
returns, so the posts and their order are the same as through TFF. No SQL
`ORDER BY client_id` is used: without an index that would sort the whole file
(gigabytes of blobs) on disk, and the grouped result is held in memory anyway.
"""

import collections
import contextlib
import os
import sqlite3
import urllib.parse

from tensorflow.core.example import example_pb2

from gpfl_tff.data import client_data
from gpfl_tff.data.errors import DataError

FILENAME = 'stackoverflow.sqlite'
OTHER_GROUP = 'other'
_ORIGIN = ('https://storage.googleapis.com/tff-datasets-public/'
           'stackoverflow.sqlite.lzma')


class _User:
  """What one pass keeps of a user: non-empty texts per split, tag counts."""

  __slots__ = ('texts', 'tags')

  def __init__(self):
    self.texts = {'train': [], 'heldout': [], 'test': []}
    self.tags = collections.Counter()  # Over all train posts, empty or not.


def _strings(proto: bytes, names: tuple[str, ...]) -> list[str]:
  """The named string features of one serialized tf.train.Example.

  Raises:
    protobuf's DecodeError, UnicodeDecodeError or ValueError: the bytes are
    not such an example.
  """
  features = example_pb2.Example.FromString(proto).features.feature
  values = [features[name].bytes_list.value for name in names]
  if any(len(v) != 1 for v in values):
    missing = [n for n, v in zip(names, values) if len(v) != 1]
    raise ValueError(f'no single string feature {missing[0]!r}')
  return [v[0].decode('utf-8') for v in values]


def _read(path: str, max_clients: int
         ) -> tuple[list[str], set[str], dict[str, _User]]:
  """One pass over the file.

  Returns:
    The eligible client ids (train and test users, sorted, at most
    `max_clients` if positive), the users with heldout posts, and the posts of
    the eligible users.
  """
  uri = 'file:' + urllib.parse.quote(os.path.abspath(path)) + '?mode=ro'
  with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
    # Client ids per split come from client_metadata, as in TFF's SqlClientData.
    ids = {'train': set(), 'test': set(), 'heldout': set()}
    for client_id, split in connection.execute(
        'SELECT DISTINCT client_id, split_name FROM client_metadata'):
      if split in ids:
        ids[split].add(client_id)
    client_ids = sorted(ids['train'] & ids['test'])
    if max_clients > 0:
      client_ids = client_ids[:max_clients]
    users = {client_id: _User() for client_id in client_ids}
    heldout_ids = ids['heldout']

    rows = connection.execute(
        'SELECT client_id, split_name, serialized_example_proto '
        'FROM examples ORDER BY rowid')
    for client_id, split, proto in rows:
      user = users.get(client_id)
      if user is None or (split == 'heldout' and client_id not in heldout_ids):
        continue
      texts = user.texts.get(split)
      if texts is None:
        continue
      try:
        if split == 'train':
          text, tags = _strings(proto, ('tokens', 'tags'))
          for tag in tags.split('|'):
            if tag:
              user.tags[tag] += 1
        else:
          text, = _strings(proto, ('tokens',))
      except Exception as e:  # DecodeError, UnicodeDecodeError, ValueError...
        raise DataError(f'{path}: client {client_id!r}, split {split!r}: not '
                        'a Stack Overflow tf.train.Example '
                        f'({type(e).__name__}: {e})') from None
      if text.strip():
        texts.append(text)
  return client_ids, heldout_ids, users


def _top_tag(tags: collections.Counter) -> str | None:
  if not tags:
    return None
  return min(tags.items(), key=lambda item: (-item[1], item[0]))[0]


def load(cache_dir: str, top_tags: int, min_words_per_client: int,
         max_clients: int = 0) -> client_data.RawGroupedData:
  """Reads and groups the Stack Overflow clients.

  Args:
    cache_dir: folder holding `stackoverflow.sqlite`.
    top_tags: number of tags kept as groups; the rest map to `other`.
    min_words_per_client: clients with fewer words over all splits are dropped.
    max_clients: if positive, only the first `max_clients` eligible client ids
      (sorted) are read, for runs on part of the data.
  """
  path = os.path.join(cache_dir, FILENAME)
  if not os.path.isfile(path):
    raise DataError(f'{path}: not found; download {_ORIGIN}, unpack it with '
                    f'`unxz` and put {FILENAME} in that folder (or pass '
                    '--input=FOLDER)')
  if top_tags < 1:
    raise DataError(f'--top_tags must be at least 1, got {top_tags}')
  try:
    client_ids, heldout_ids, users = _read(path, max_clients)
  except sqlite3.Error as e:  # Not SQLite, or not TFF's tables and columns.
    raise DataError(f'{path}: not a readable TFF Stack Overflow database '
                    f'({type(e).__name__}: {e})') from None

  clients, top_tag, dropped = {}, {}, 0
  for client_id in client_ids:
    user = users.pop(client_id)  # Frees the pass's copy as we go.
    train_texts, test_texts = user.texts['train'], user.texts['test']
    if client_id in heldout_ids:
      validation = user.texts['heldout']
    else:
      held_out = client_data.held_out_size(len(train_texts))
      train_texts, validation = (train_texts[:-held_out],
                                 train_texts[-held_out:])
    splits = client_data.ClientSplits(train_texts, validation, test_texts)
    tag = _top_tag(user.tags)
    words = client_data.count_words(
        splits.train + splits.validation + splits.test)
    if (tag is None or not all((splits.train, splits.validation, splits.test))
        or words < min_words_per_client):
      dropped += 1
      continue
    clients[client_id] = splits
    top_tag[client_id] = tag

  ranked = collections.Counter(top_tag.values()).most_common()
  kept_tags = {tag for tag, _ in sorted(ranked, key=lambda x: (-x[1], x[0]))
               [:top_tags]}
  client_to_group = {c: (t if t in kept_tags else OTHER_GROUP)
                     for c, t in top_tag.items()}
  if not clients:
    raise DataError(f'{path}: no client has train, validation and test posts '
                    f'with at least {min_words_per_client} words')
  return client_data.filter_groups(clients, client_to_group, dropped,
                                   source_name=path)
