"""Stack Overflow: one client per user, grouped by the user's most frequent tag.

Source: TFF's `stackoverflow.sqlite` (read by
`tff.simulation.datasets.stackoverflow.load_data` from a cache folder; the file
is several gigabytes and is not downloaded here).

Splits follow TFF's: a client's train posts are its train split, its test posts
its test split. Its validation split is its `heldout` posts where TFF has any
for that user, otherwise the last 10% (at least one) of its train posts. Only
users with both train and test posts are clients.

Group: the tag that appears most often over the client's train posts (ties by
tag name); tags outside the `top_tags` most common client-level tags become
`other`.
"""

import collections
import os

import tensorflow_federated as tff

from gpfl_tff.data import client_data
from gpfl_tff.data.errors import DataError

FILENAME = 'stackoverflow.sqlite'
OTHER_GROUP = 'other'
_ORIGIN = ('https://storage.googleapis.com/tff-datasets-public/'
           'stackoverflow.sqlite.lzma')


def _posts(data, client_id):
  """(tokens, tags) of each post of one client, in order."""
  return [(e['tokens'].numpy().decode('utf-8'),
           e['tags'].numpy().decode('utf-8'))
          for e in data.create_tf_dataset_for_client(client_id)]


def _top_tag(posts) -> str | None:
  counts = collections.Counter(
      tag for _, tags in posts for tag in tags.split('|') if tag)
  if not counts:
    return None
  return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


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
    train, heldout, test = tff.simulation.datasets.stackoverflow.load_data(
        cache_dir=cache_dir)
    client_ids = sorted(set(train.client_ids) & set(test.client_ids))
    heldout_ids = set(heldout.client_ids)
  except Exception as e:  # sqlite3 and TF raise many types for a bad file.
    raise DataError(f'{path}: not a readable TFF Stack Overflow database '
                    f'({type(e).__name__}: {e})') from None
  if max_clients > 0:
    client_ids = client_ids[:max_clients]

  clients, top_tag, dropped = {}, {}, 0
  for client_id in client_ids:
    train_posts = _posts(train, client_id)
    test_texts = [t for t, _ in _posts(test, client_id) if t.strip()]
    train_texts = [t for t, _ in train_posts if t.strip()]
    if client_id in heldout_ids:
      validation = [t for t, _ in _posts(heldout, client_id) if t.strip()]
    else:
      held_out = client_data.held_out_size(len(train_texts))
      train_texts, validation = (train_texts[:-held_out],
                                 train_texts[-held_out:])
    splits = client_data.ClientSplits(train_texts, validation, test_texts)
    tag = _top_tag(train_posts)
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
