"""GroupedClientData: TFF ClientData splits plus each client's group.

A prepared dataset is a folder:
  train.sqlite, validation.sqlite, test.sqlite  TFF SQLite client data (the
                                                content TFF's
                                                `save_to_sql_client_data`
                                                writes), elements
                                                {'text': tf.string}
  groups.json                                   client id -> group
  vocab.txt                                     one word per line
  stats.json                                    statistics (see `statistics`)

Split rule (`split_examples`), for sources without their own split: a client's
examples in their original order; the last `round(10%)` (at least
`min_examples_per_split`) go to test, the `round(10%)` (same minimum) before them
to validation, the rest to train. A client whose train split would fall below
`min_examples_per_split`, or whose words (whitespace-separated, in all its
examples) are fewer than `min_words_per_client`, is dropped and counted.
"""

import collections
import contextlib
import dataclasses
import json
import os
import sqlite3
import statistics as pystats
from collections.abc import Callable, Iterable, Mapping, Sequence

import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.data import text
from gpfl_tff.data.errors import DataError

SPLITS = ('train', 'validation', 'test')
ELEMENT_SPEC = {'text': tf.TensorSpec(shape=[], dtype=tf.string)}
_SPLIT_NAME = 'default_split'  # What save_to_sql_client_data writes.


@dataclasses.dataclass(frozen=True)
class ClientSplits:
  train: list[str]
  validation: list[str]
  test: list[str]


@dataclasses.dataclass
class RawGroupedData:
  """Text examples per client, split, and each client's group (in memory)."""
  clients: dict[str, ClientSplits]
  client_to_group: dict[str, str]
  dropped_clients: int = 0
  source_groups: tuple[str, ...] = ()


def count_words(examples: Sequence[str]) -> int:
  return sum(len(example.split()) for example in examples)


def held_out_size(n: int, minimum: int = 1) -> int:
  """Examples a held-out split takes from `n`: round(10%), at least `minimum`."""
  return max(minimum, round(0.1 * n))


def split_examples(examples: Sequence[str],
                   min_examples_per_split: int = 1) -> ClientSplits | None:
  """Splits one client's examples by the rule in the module docstring."""
  n = len(examples)
  held_out = held_out_size(n, min_examples_per_split)
  n_train = n - 2 * held_out
  if n_train < min_examples_per_split:
    return None
  return ClientSplits(
      train=list(examples[:n_train]),
      validation=list(examples[n_train:n_train + held_out]),
      test=list(examples[n_train + held_out:]))


def build_raw(examples_by_client: Mapping[str, Sequence[str]],
              client_to_group: Mapping[str, str],
              min_words_per_client: int,
              min_examples_per_split: int = 1,
              source_name: str = 'dataset') -> RawGroupedData:
  """Splits every client and drops those the split rule rejects."""
  clients = {}
  dropped = 0
  for client_id in sorted(examples_by_client):
    examples = examples_by_client[client_id]
    splits = None
    if count_words(examples) >= min_words_per_client:
      splits = split_examples(examples, min_examples_per_split)
    if splits is None:
      dropped += 1
    else:
      clients[client_id] = splits
  return filter_groups(clients, client_to_group, dropped, source_name)


def filter_groups(clients: dict[str, ClientSplits],
                  client_to_group: Mapping[str, str], dropped: int,
                  source_name: str) -> RawGroupedData:
  """Checks that every group of the source keeps at least one client."""
  source_groups = tuple(sorted(set(client_to_group.values())))
  kept = {client_to_group[c] for c in clients}
  for group in source_groups:
    if group not in kept:
      raise DataError(f'{source_name}: group {group!r} has no eligible client '
                      '(too few examples or words in all its clients)')
  return RawGroupedData(
      clients=clients,
      client_to_group={c: client_to_group[c] for c in clients},
      dropped_clients=dropped,
      source_groups=source_groups)


def _summary(values: Sequence[float]) -> dict[str, float]:
  return {'min': min(values), 'median': pystats.median(values),
          'max': max(values)}


def statistics(raw: RawGroupedData, vocabulary: Sequence[str]) -> dict:
  """Dataset statistics, as written to stats.json."""
  per_group = collections.Counter(raw.client_to_group.values())
  all_examples = {c: s.train + s.validation + s.test
                  for c, s in raw.clients.items()}
  test_texts = [t for s in raw.clients.values() for t in s.test]
  return {
      'num_clients': len(raw.clients),
      'num_groups': len(per_group),
      'dropped_clients': raw.dropped_clients,
      'clients_per_group': dict(sorted(per_group.items())),
      'examples_per_client': _summary(
          [len(e) for e in all_examples.values()]),
      'words_per_client': _summary(
          [count_words(e) for e in all_examples.values()]),
      'examples_per_split': {
          split: sum(len(getattr(s, split)) for s in raw.clients.values())
          for split in SPLITS},
      'words_per_split': {
          split: sum(count_words(getattr(s, split))
                     for s in raw.clients.values()) for split in SPLITS},
      'vocab_size': len(vocabulary),
      'oov_rate': text.oov_rate(test_texts, vocabulary),
      'oov_rate_split': 'test',
  }


def _save_split(raw: RawGroupedData, split: str, path: str) -> None:
  """Writes one split in the format of `save_to_sql_client_data`, directly.

  TFF's writer builds one tf.data dataset per client and inserts its rows one
  statement at a time, which takes many minutes for tens of thousands of
  clients. This writes the same tables and columns and the same rows in the
  same order (for each client, sorted: its examples, then its client_metadata
  row; split_name 'default_split', TFF 0.87's name when no split is given;
  each example a tf.train.Example with one bytes feature 'text'), in one
  transaction. `client_data_test` checks that the
  content equals what TFF's writer produces.
  """
  # One message reused for every example: its serialization is the same as
  # that of a new message built for each, and several times faster.
  example = tf.train.Example()
  value = example.features.feature['text'].bytes_list.value
  value.append(b'')

  def example_rows():
    for client_id in sorted(raw.clients):
      for text in getattr(raw.clients[client_id], split):
        value[0] = text.encode('utf-8')
        yield _SPLIT_NAME, client_id, example.SerializeToString()

  with contextlib.closing(sqlite3.connect(path)) as connection:
    write_sql_tables(
        connection, example_rows(),
        lambda: [(client_id, _SPLIT_NAME,
                  len(getattr(raw.clients[client_id], split)))
                 for client_id in sorted(raw.clients)])


def write_sql_tables(connection: sqlite3.Connection,
                     example_rows: Iterable[tuple[str, str, bytes]],
                     metadata_rows: Callable[[], Iterable[tuple[str, str, int]]]
                    ) -> None:
  """Creates TFF's SQL client-data tables and fills them in one transaction.

  Args:
    connection: an open connection to a new database.
    example_rows: (split_name, client_id, serialized tf.train.Example).
    metadata_rows: called after every example row is written (so that it may
      count them): (client_id, split_name, num_examples).
  """
  with connection:
    connection.execute("""CREATE TABLE examples (
        split_name TEXT NOT NULL,
        client_id TEXT NOT NULL,
        serialized_example_proto BLOB NOT NULL);""")
    connection.execute("""CREATE TABLE client_metadata (
        client_id TEXT NOT NULL,
        split_name TEXT NOT NULL,
        num_examples INTEGER NOT NULL);""")
    connection.executemany(
        'INSERT INTO examples (split_name, client_id, '
        'serialized_example_proto) VALUES (?, ?, ?);', example_rows)
    connection.executemany(
        'INSERT INTO client_metadata (client_id, split_name, num_examples) '
        'VALUES (?, ?, ?);', metadata_rows())


def save(raw: RawGroupedData, vocabulary: Sequence[str], stats: dict,
         directory: str) -> None:
  """Writes a prepared dataset into `directory` (which must be new)."""
  os.makedirs(directory)
  for split in SPLITS:
    _save_split(raw, split, os.path.join(directory, f'{split}.sqlite'))
  _write_json(os.path.join(directory, 'groups.json'), raw.client_to_group)
  _write_json(os.path.join(directory, 'stats.json'), stats)
  with open(os.path.join(directory, 'vocab.txt'), 'w', encoding='utf-8') as f:
    f.writelines(word + '\n' for word in vocabulary)


def _write_json(path: str, value) -> None:
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write('\n')


@dataclasses.dataclass(frozen=True)
class GroupedClientData:
  """Train / validation / test `ClientData` over the same clients, grouped.

  Every split holds the same client ids; elements are {'text': tf.string}.
  """
  train: tff.simulation.datasets.ClientData
  validation: tff.simulation.datasets.ClientData
  test: tff.simulation.datasets.ClientData
  client_to_group: Mapping[str, str]
  vocabulary: list[str]
  stats: dict
  directory: str

  @property
  def client_ids(self) -> list[str]:
    return sorted(self.client_to_group)

  @property
  def groups(self) -> list[str]:
    return sorted(set(self.client_to_group.values()))

  def clients_in_group(self, group: str) -> list[str]:
    """Client ids of `group`, sorted; an unknown group is an error."""
    clients = [c for c in self.client_ids if self.client_to_group[c] == group]
    if not clients:
      raise DataError(f'unknown group {group!r} (known: '
                      f'{", ".join(self.groups)})')
    return clients

  def split(self, name: str) -> tff.simulation.datasets.ClientData:
    return getattr(self, name)

  def texts(self, split: str) -> dict[str, list[str]]:
    """Every client's examples of `split`, in order: {client id: [text]}.

    Reads the split's SQLite file in one query; the same content as iterating
    `split(name).create_tf_dataset_for_client` for each client, but much faster.
    """
    path = os.path.join(self.directory, f'{split}.sqlite')
    texts = {client_id: [] for client_id in self.client_ids}
    with contextlib.closing(sqlite3.connect(path)) as connection:
      rows = connection.execute(
          'SELECT client_id, serialized_example_proto FROM examples '
          'ORDER BY rowid')
      for client_id, proto in rows:
        feature = tf.train.Example.FromString(proto).features.feature['text']
        texts[client_id].append(feature.bytes_list.value[0].decode('utf-8'))
    return texts


def load(directory: str) -> GroupedClientData:
  """Reads a folder written by `save`."""
  required = [f'{s}.sqlite' for s in SPLITS] + [
      'groups.json', 'vocab.txt', 'stats.json']
  for name in required:
    if not os.path.isfile(os.path.join(directory, name)):
      raise DataError(f'{directory}: not a prepared dataset ({name} missing)')
  splits = {
      s: tff.simulation.datasets.load_and_parse_sql_client_data(
          os.path.join(directory, f'{s}.sqlite'), ELEMENT_SPEC)
      for s in SPLITS
  }
  with open(os.path.join(directory, 'groups.json'), encoding='utf-8') as f:
    client_to_group = json.load(f)
  with open(os.path.join(directory, 'stats.json'), encoding='utf-8') as f:
    stats = json.load(f)
  with open(os.path.join(directory, 'vocab.txt'), encoding='utf-8') as f:
    vocabulary = [line.rstrip('\n') for line in f]
  return GroupedClientData(
      client_to_group=client_to_group, vocabulary=vocabulary, stats=stats,
      directory=directory, **splits)
