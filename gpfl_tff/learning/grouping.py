"""Groups when none are given: random groups, and groups inferred federatedly.

`random_grouping` deals the clients into K groups at random (sizes differ by
at most one): the control that tells a real group signal from the extra
capacity of K group models.

`infer_grouping` clusters clients without their labels, from what a federated
system may use: each client compares, on its own train split, the words it
uses with the words the global model predicts for it. With n counted target
tokens, c_v the count of word v among them and q_v the mean of the model's
predicted probability of v over the same positions, the statistic
(`STATISTICS`) is one vocabulary-sized vector:
  pearson        (c_v / n - q_v) / sqrt(q_v), the Pearson residuals of the
                 client's word counts against the model's expectation (the
                 geometry of a chi-square test, or of correspondence
                 analysis): a topical word the client uses far more than
                 predicted counts as much as a frequent one. The default.
  bias_gradient  q_v - c_v / n, the gradient of the client's mean loss with
                 respect to the output-layer bias. Dominated by frequent
                 words and the special tokens (<oov>, <eos>).
either normalized to unit length. Measured with `experiments.num_groups` on
the tuned flags (docs/RESULTS.md), adjusted Rand index against the given
groups: BBC topics 0.59 with pearson, 0.04 with bias_gradient; Shakespeare
genres (K = 6) 0.17 against 0.02. The vectors stay on the
clients. Federated k-means (`build_kmeans`) clusters them: the server
broadcasts K centroids; each client finds its nearest and sends back its
vector in that centroid's row of a K x V matrix and a one-hot count, summed
over clients (`federated_sum`); the server divides. Each client finally
learns its nearest centroid: its group, which the server needs to select
the group's clients. Several seeded restarts; the one with the lowest
within-cluster distance (also a federated sum) is kept.

Why our own k-means rather than `tff.learning.algorithms.build_fed_kmeans`:
that process updates centroids from client data in rounds of sampled
clients, with weights decayed over rounds (online k-means); here the
statistics exist once per client and every client takes part in each step,
which is Lloyd's algorithm and a few lines of TFF.

`adjusted_rand_index` scores a grouping against the true groups (1: the
same partition; about 0: no better than chance).
"""

import collections
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.learning import local
from gpfl_tff.models import metrics

GROUPINGS = ('given', 'inferred', 'random')
STATISTICS = ('pearson', 'bias_gradient')


def group_name(prefix: str, index: int, count: int) -> str:
  return f'{prefix}{index:0{len(str(count - 1))}d}'


def random_grouping(client_ids: Sequence[str], num_groups: int,
                    seed) -> dict[str, str]:
  """client -> one of `num_groups` groups, dealt at random (seeded)."""
  if num_groups < 1:
    raise ValueError(f'num_groups must be at least 1, got {num_groups}')
  order = np.random.default_rng(seed).permutation(len(client_ids))
  return {client_ids[i]: group_name('random', rank % num_groups, num_groups)
          for rank, i in enumerate(order)}


def adjusted_rand_index(labels: Sequence, other: Sequence) -> float:
  """Hubert and Arabie's adjusted Rand index of two labelings of the same
  items (order matters, names do not)."""
  if len(labels) != len(other):
    raise ValueError('the labelings must be of the same items')
  _, a = np.unique(np.asarray(labels), return_inverse=True)
  _, b = np.unique(np.asarray(other), return_inverse=True)
  table = np.zeros((a.max() + 1, b.max() + 1))
  np.add.at(table, (a, b), 1)
  pairs = lambda x: float(np.sum(x * (x - 1) / 2))
  index = pairs(table)
  rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
  total = pairs(np.array([len(labels)], float))
  expected = rows * cols / total if total else 0.0
  maximum = (rows + cols) / 2
  if maximum == expected:  # One group each, or every item alone.
    return 1.0
  return (index - expected) / (maximum - expected)


def build_statistics(model_fn, num_tokens: int,
                     statistic: str = 'pearson') -> tff.Computation:
  """weights@SERVER, train data@CLIENTS -> unit statistic vectors@CLIENTS.

  num_tokens: the model's output size (vocabulary and special tokens);
  statistic: one of `STATISTICS` (see the module doc).
  """
  if statistic not in STATISTICS:
    raise ValueError(f'statistic must be one of {", ".join(STATISTICS)}, '
                     f'got {statistic!r}')
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  with tf.Graph().as_default():
    data_type = tff.SequenceType(
        tff.types.tensorflow_to_type(model_fn().input_spec))

  @tff.tensorflow.computation(weights_type, data_type)
  def client_statistic(weights, dataset):
    model = model_fn()

    @tf.function
    def compute():
      local.assign_weights(model, weights)
      predicted = tf.zeros([num_tokens])
      counts = tf.zeros([num_tokens])
      for batch in iter(dataset):
        logits = model.predict_on_batch(batch['x'], training=False)
        mask = metrics.token_mask(batch['y'])[..., tf.newaxis]
        predicted += tf.reduce_sum(tf.nn.softmax(logits) * mask, axis=[0, 1])
        counts += tf.reduce_sum(
            tf.one_hot(batch['y'], num_tokens) * mask, axis=[0, 1])
      total = tf.maximum(tf.reduce_sum(counts), 1.0)
      expected, observed = predicted / total, counts / total
      if statistic == 'pearson':
        vector = (observed - expected) / tf.sqrt(expected + 1e-7)
      else:
        vector = expected - observed
      return vector / tf.maximum(tf.norm(vector), 1e-12)

    return compute()

  @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def statistics(weights, data):
    return tff.federated_map(client_statistic,
                             (tff.federated_broadcast(weights), data))

  return statistics


KMeans = collections.namedtuple('KMeans', ['step', 'assign'])


def build_kmeans(num_groups: int, dimension: int) -> KMeans:
  """Federated Lloyd steps over client-held vectors (see the module doc).

  step: centroids@SERVER, vectors@CLIENTS -> (new centroids, counts,
    within-cluster squared distance)@SERVER; an empty cluster keeps its
    centroid.
  assign: centroids@SERVER, vectors@CLIENTS -> nearest centroid@CLIENTS.
  """
  centroids_type = tff.TensorType(np.float32, [num_groups, dimension])
  vector_type = tff.TensorType(np.float32, [dimension])

  def nearest(centroids, vector):
    distances = tf.reduce_sum(tf.square(centroids - vector[tf.newaxis]), 1)
    return tf.cast(tf.argmin(distances), tf.int32), tf.reduce_min(distances)

  @tff.tensorflow.computation(centroids_type, vector_type)
  def client_part(centroids, vector):
    index, distance = nearest(centroids, vector)
    one_hot = tf.one_hot(index, num_groups)
    return (one_hot[:, tf.newaxis] * vector[tf.newaxis], one_hot, distance)

  @tff.tensorflow.computation(centroids_type, centroids_type,
                              tff.TensorType(np.float32, [num_groups]))
  def server_update(centroids, sums, counts):
    means = sums / tf.maximum(counts, 1.0)[:, tf.newaxis]
    return tf.where((counts > 0)[:, tf.newaxis], means, centroids)

  @tff.federated_computation(tff.FederatedType(centroids_type, tff.SERVER),
                             tff.FederatedType(vector_type, tff.CLIENTS))
  def step(centroids, vectors):
    sums, counts, distance = tff.federated_map(
        client_part, (tff.federated_broadcast(centroids), vectors))
    sums = tff.federated_sum(sums)
    counts = tff.federated_sum(counts)
    updated = tff.federated_map(server_update, (centroids, sums, counts))
    return updated, counts, tff.federated_sum(distance)

  @tff.tensorflow.computation(centroids_type, vector_type)
  def client_assign(centroids, vector):
    return nearest(centroids, vector)[0]

  @tff.federated_computation(tff.FederatedType(centroids_type, tff.SERVER),
                             tff.FederatedType(vector_type, tff.CLIENTS))
  def assign(centroids, vectors):
    return tff.federated_map(client_assign,
                             (tff.federated_broadcast(centroids), vectors))

  return KMeans(step=step, assign=assign)


def kmeans(vectors: Sequence[np.ndarray], num_groups: int, seed,
           iterations: int = 20, restarts: int = 3,
           new_vectors: Sequence[np.ndarray] = ()
           ) -> tuple[list[int], list[int]]:
  """Each vector's cluster, by `build_kmeans` steps from seeded starts, and
  the nearest cluster of each of `new_vectors` (which do not move them).

  A start is `num_groups` distinct clients' vectors. The vectors stand for
  client-held values: in simulation they are passed to each computation
  as the clients' inputs.
  """
  vectors = [np.asarray(v, np.float32) for v in vectors]
  if not 1 <= num_groups <= len(vectors):
    raise ValueError(f'cannot make {num_groups} groups of {len(vectors)} '
                     'clients')
  computations = build_kmeans(num_groups, vectors[0].shape[0])
  rng = np.random.default_rng(seed)
  best, best_distance = None, np.inf
  for _ in range(restarts):
    start = rng.choice(len(vectors), size=num_groups, replace=False)
    centroids = np.stack([vectors[i] for i in start])
    for _ in range(iterations):
      updated, _, distance = computations.step(centroids, vectors)
      if np.array_equal(updated, centroids):
        break
      centroids = updated
    _, _, distance = computations.step(centroids, vectors)
    if distance < best_distance:
      best, best_distance = centroids, distance
  assigned = [int(i) for i in computations.assign(best, vectors)]
  new = ([int(i) for i in computations.assign(
      best, [np.asarray(v, np.float32) for v in new_vectors])]
         if len(new_vectors) else [])
  return assigned, new


def infer_grouping(statistics: tff.Computation, weights,
                   datasets: Callable[[str], tf.data.Dataset],
                   client_ids: Sequence[str], num_groups: int, seed,
                   map_fn=None, chunk: int = 100,
                   new_clients: Sequence[str] = ()) -> dict[str, str]:
  """client -> inferred group (`cluster<k>`), see the module doc.

  `new_clients` (clients held out of training) are not clustered: each is
  given the nearest cluster, from its own statistics.

  statistics: `build_statistics(model_fn)`; weights: the global model's;
  datasets: a client's train dataset; map_fn(fn, items) may run the chunks
  of clients concurrently (`runtime.Workers.map`).
  """
  everyone = list(client_ids) + list(new_clients)
  chunks = [everyone[i:i + chunk] for i in range(0, len(everyone), chunk)]
  map_fn = map_fn or (lambda fn, items: [fn(item) for item in items])
  vectors = [v for part in map_fn(
      lambda ids: statistics(weights, [datasets(c) for c in ids]), chunks)
             for v in part]
  seen = len(client_ids)
  clusters, new = kmeans(vectors[:seen], num_groups, seed,
                         new_vectors=vectors[seen:])
  return {client: group_name('cluster', k, num_groups)
          for client, k in zip(everyone, clusters + new)}
