"""Federated training rounds: the learning process of the global and group stages.

Both stages use one `tff.learning.algorithms.build_weighted_fed_avg` process,
built once: the group stage sets the process's model weights to its start
weights for each group (`LearningProcess.set_model_weights`) instead of
building or tracing anything again. The Python driver only chooses which
clients take part in a round and hands over their datasets.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

SERVER_OPTIMIZERS = ('sgd', 'sgdm', 'adam', 'yogi')


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Hyperparameters of a federated learning process.

  server_optimizer: 'sgd' (FedAvg), 'sgdm' (FedAvgM, momentum
  `server_momentum`), 'adam' (FedAdam) or 'yogi' (FedYogi).
  """
  clients_per_round: int = 10
  client_epochs: int = 1
  client_learning_rate: float = 0.5
  server_optimizer: str = 'sgd'
  server_learning_rate: float = 1.0
  server_momentum: float = 0.9
  batch_size: int = 16

  def __post_init__(self):
    if self.server_optimizer not in SERVER_OPTIMIZERS:
      raise ValueError(f'unknown server optimizer {self.server_optimizer!r} '
                       f'(choose from {", ".join(SERVER_OPTIMIZERS)})')
    for name in ('clients_per_round', 'client_epochs', 'batch_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be at least 1')


def server_optimizer(config: TrainingConfig) -> tff.learning.optimizers.Optimizer:
  lr = config.server_learning_rate
  if config.server_optimizer == 'sgd':
    return tff.learning.optimizers.build_sgdm(learning_rate=lr)
  if config.server_optimizer == 'sgdm':
    return tff.learning.optimizers.build_sgdm(
        learning_rate=lr, momentum=config.server_momentum)
  if config.server_optimizer == 'adam':
    return tff.learning.optimizers.build_adam(learning_rate=lr)
  return tff.learning.optimizers.build_yogi(learning_rate=lr)


def build_process(model_fn, config: TrainingConfig
                 ) -> tff.learning.templates.LearningProcess:
  """Weighted FedAvg with the client and server optimizers of `config`."""
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(
          learning_rate=config.client_learning_rate),
      server_optimizer_fn=server_optimizer(config),
      # The default (DATASET_REDUCE) makes the training step a tf.data
      # function that TFF's runtime instantiates again for every client
      # dataset; iterator loops keep it in the graph, prepared once.
      loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR)


def start_state(process, weights=None):
  """A fresh process state (server optimizer reset), holding `weights` if given."""
  state = process.initialize()
  if weights is not None:
    state = process.set_model_weights(state, weights)
  return state


def sample_clients(rng: np.random.Generator, client_ids: Sequence[str],
                   count: int) -> list[str]:
  """`count` distinct clients (all of them if fewer), in sorted order."""
  count = min(count, len(client_ids))
  chosen = rng.choice(len(client_ids), size=count, replace=False)
  return [client_ids[i] for i in sorted(chosen)]


def train_perplexity(metrics) -> float:
  """Training perplexity of one round, from the summed token metrics."""
  train = metrics['client_work']['train']
  return float(np.exp(train['loss_sum'] / max(train['token_count'], 1.0)))


def run_rounds(process, state, client_ids: Sequence[str],
               dataset_fn: Callable[[str], tf.data.Dataset], rounds: int,
               clients_per_round: int, rng: np.random.Generator,
               on_round: Callable[[dict], None] | None = None,
               validate: Callable[[object], float] | None = None,
               validate_every: int = 0, checkpoints=None):
  """Runs `rounds` rounds over clients sampled from `client_ids`.

  With `validate` (state -> validation perplexity) and `validate_every` = K
  > 0, every K-th round and the last also record `validation_perplexity`.

  With `checkpoints` (a `checkpoints.StageCheckpoints`), the stage resumes
  from its latest checkpoint (state, `rng`'s state and the records, which are
  replayed through `on_round`), saves one every `checkpoints.every` rounds and
  after the last, and, when the run is stopped (an exception, Ctrl-C or
  SIGTERM turned into SystemExit), saves the last finished round before the
  exception goes on.

  Returns:
    (state, history): the final state and one dict per round with `round`,
    `clients`, `train_perplexity`, `seconds` and, on validated rounds,
    `validation_perplexity`.
  """
  history = []
  done = 0
  # The generator as it was after the last finished round: a round stopped
  # midway has drawn its clients already.
  rng_done = rng.bit_generator.state
  if checkpoints is not None:
    loaded = checkpoints.load(state)
    if loaded is not None:
      done, state, rng_state, history = loaded
      if done > rounds:
        raise ValueError(f'{checkpoints.root_dir} holds {done} rounds, more '
                         f'than the {rounds} asked for')
      rng.bit_generator.state = rng_done = rng_state
      if on_round is not None:
        for record in history:
          on_round(record)
  try:
    for round_num in range(done + 1, rounds + 1):
      start = time.time()
      clients = sample_clients(rng, client_ids, clients_per_round)
      output = process.next(state, [dataset_fn(c) for c in clients])
      record = {'round': round_num, 'clients': len(clients),
                'train_perplexity': train_perplexity(output.metrics),
                'seconds': time.time() - start}
      if validate is not None and validate_every > 0 and (
          round_num % validate_every == 0 or round_num == rounds):
        record['validation_perplexity'] = validate(output.state)
      # The round counts once its record is complete.
      state, done = output.state, round_num
      rng_done = rng.bit_generator.state
      history.append(record)
      if checkpoints is not None and (round_num % checkpoints.every == 0
                                      or round_num == rounds):
        checkpoints.save(round_num, state, rng_done, history)
      if on_round is not None:
        on_round(record)
  except BaseException:
    if checkpoints is not None and done > 0:
      checkpoints.save(done, state, rng_done, history)
    raise
  return state, history
