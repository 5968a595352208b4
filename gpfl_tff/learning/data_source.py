"""The clients of a federated stage as a `tff.program` data source.

A TFF program asks a `tff.program.FederatedDataSource` for an iterator and
the iterator for each round's clients (`select(k)`); the iterator is
`Serializable`, so that a program's checkpoint holds where the sampling
stands. `ClientIdsDataSource` is that source over a stage's clients: its
iterator selects `k` distinct client ids per round, uniformly, from a seeded
numpy generator, and `to_bytes` holds the client ids and the generator's
state (JSON, no pickle). The driver maps the ids to the clients' token-id
datasets (`ClientBatches.dataset`) and hands those to the round.

Why not TFF's own sources: `tff.program.DatasetDataSource` selects among
whole datasets and serializes them into its bytes (every client's data in
every checkpoint); `tff.simulation.build_uniform_sampling_fn` draws a round's
clients from a seed and the round number, which would change the clients of
every run documented in docs/RESULTS.md. Why ids and not datasets: the
federated value that a production task selects is the clients; their data is
read where it lives.
"""

import json

import numpy as np
import tensorflow_federated as tff


def sample_clients(rng: np.random.Generator, client_ids, count: int
                  ) -> list[str]:
  """`count` distinct clients (all of them if fewer), in sorted order."""
  count = min(count, len(client_ids))
  chosen = rng.choice(len(client_ids), size=count, replace=False)
  return [client_ids[i] for i in sorted(chosen)]


_FEDERATED_TYPE = tff.FederatedType(np.str_, tff.CLIENTS)


class ClientIdsIterator(tff.program.FederatedDataSourceIterator):
  """Selects `k` distinct client ids per call, sorted, from a generator."""

  def __init__(self, client_ids, rng: np.random.Generator):
    if not client_ids:
      raise ValueError('a data source needs at least one client')
    self.client_ids = list(client_ids)
    self.rng = rng

  @property
  def federated_type(self) -> tff.FederatedType:
    return _FEDERATED_TYPE

  def select(self, k: int | None = None) -> list[str]:
    if k is None or k < 1:
      raise ValueError(f'select needs a positive number of clients, got {k}')
    return sample_clients(self.rng, self.client_ids, k)

  def to_bytes(self) -> bytes:
    return json.dumps({'client_ids': self.client_ids,
                       'rng': self.rng.bit_generator.state}).encode()

  @classmethod
  def from_bytes(cls, buffer: bytes) -> 'ClientIdsIterator':
    """An iterator where the one that wrote `buffer` stood (ValueError if
    `buffer` is not one)."""
    try:
      saved = json.loads(bytes(buffer).decode())
      rng = np.random.default_rng()
      rng.bit_generator.state = saved['rng']
      return cls(saved['client_ids'], rng)
    except (UnicodeDecodeError, KeyError, TypeError) as e:
      raise ValueError(f'not a client sampler state ({e})') from None

  def __eq__(self, other) -> bool:
    return (isinstance(other, ClientIdsIterator)
            and self.to_bytes() == other.to_bytes())


class ClientIdsDataSource(tff.program.FederatedDataSource):
  """A stage's clients; each `iterator()` starts the sampling from `seed`."""

  def __init__(self, client_ids, seed):
    self.client_ids = list(client_ids)
    self.seed = seed

  @property
  def federated_type(self) -> tff.FederatedType:
    return _FEDERATED_TYPE

  def iterator(self) -> ClientIdsIterator:
    return ClientIdsIterator(self.client_ids, np.random.default_rng(self.seed))
