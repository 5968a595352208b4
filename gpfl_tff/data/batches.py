"""Client datasets of token ids, as the TFF computations receive them.

TFF's C++ worker carries only core TensorFlow kernels, not those of
tensorflow-text, so a dataset that tokenizes inside its graph cannot run there.
The driver therefore runs the tokenizing tf.data pipeline (`TextEncoder`) once
per client and split, keeps the token-id windows, and hands TFF datasets built
from them. This also spares re-tokenizing a client for every round and method.
"""

import collections
import threading

import numpy as np
import tensorflow as tf

from gpfl_tff.data import client_data
from gpfl_tff.data import text


class ClientBatches:
  """Batched {'x', 'y'} datasets of every client and split, encoded once."""

  def __init__(self, data: client_data.GroupedClientData,
               encoder: text.TextEncoder, batch_size: int):
    if batch_size < 1:
      raise ValueError(f'batch_size must be positive, got {batch_size}')
    self.data = data
    self.encoder = encoder
    self.batch_size = batch_size
    self._arrays = {}
    self._lock = threading.Lock()  # Stages may read clients from threads.

  def _encode_split(self, split: str) -> None:
    """Encodes every client of `split` with one batched tokenizer pass."""
    texts = {(split, client_id): examples
             for client_id, examples in self.data.texts(split).items()}
    self._arrays.update(self.encoder.encode(texts))

  def arrays(self, split: str, client_id: str) -> dict[str, np.ndarray]:
    key = (split, client_id)
    if key not in self._arrays:
      with self._lock:
        if key not in self._arrays:
          self._encode_split(split)
    return self._arrays[key]

  def dataset(self, split: str, client_id: str, epochs: int = 1,
              batch_size: int | None = None) -> tf.data.Dataset:
    """The client's windows in order, repeated `epochs` times, batched.

    `batch_size` defaults to the training batch size; evaluation may use a
    larger one, which changes nothing but the speed (metrics are sums).
    """
    arrays = self.arrays(split, client_id)
    windows = tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(x=arrays['x'], y=arrays['y']))
    return windows.repeat(epochs).batch(batch_size or self.batch_size)

  def token_count(self, split: str, client_id: str) -> int:
    """Counted (non-padding) targets of the client's split."""
    return int(np.count_nonzero(self.arrays(split, client_id)['y']))
