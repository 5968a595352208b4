"""Federated training rounds: the learning process of the global and group stages.

Both stages use one `tff.learning.algorithms.build_weighted_fed_avg` process,
built once: the group stage sets the process's model weights to its start
weights for each group (`LearningProcess.set_model_weights`) instead of
building or tracing anything again. Each round's clients come from the
stage's `tff.program` data source (`data_source.ClientIdsIterator`); the
driver hands their datasets to the round.

Why `run_rounds` and not `tff.simulation.run_training_process`, which also
loops rounds with a `ProgramStateManager` and release managers:
- it starts every run from `training_process.initialize()`; a group stage
  starts from a state holding the global weights;
- it saves program state only every N rounds, and not when the run is stopped
  or fails: a stopped stage here saves its last finished round;
- it saves the learning state only; resuming here needs the data source
  iterator (which clients come next) and the round records (curves) too;
- it drives its releases through `asyncio.get_event_loop()`, which has no
  loop in the worker threads that run a stage's groups concurrently.
The state manager and release managers themselves are TFF's
(`checkpoints.StageCheckpoints`, `gpfl_tff.evaluation.release`).
"""

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff.learning import checkpoints as checkpoints_lib
from gpfl_tff.learning import data_source
from gpfl_tff.models import metrics

SERVER_OPTIMIZERS = ('sgd', 'sgdm', 'adam', 'yogi')


# TrainingConfig fields added since runs were first stored, whose behaviour
# before they existed differs from their default: a stored run without the
# field ran with this value (see `methods.VALUES_BEFORE_FIELD`).
VALUES_BEFORE_FIELD = {'cross_entropy': 'kernel'}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Hyperparameters of a federated learning process.

  server_optimizer: 'sgd' (FedAvg), 'sgdm' (FedAvgM, momentum
  `server_momentum`), 'adam' (FedAdam) or 'yogi' (FedYogi).
  cross_entropy: how the model computes its loss, in training and evaluation
  alike: 'ops' or 'kernel' (`gpfl_tff.models.metrics.CROSS_ENTROPIES`).
  """
  clients_per_round: int = 10
  client_epochs: int = 1
  client_learning_rate: float = 0.5
  server_optimizer: str = 'sgd'
  server_learning_rate: float = 1.0
  server_momentum: float = 0.9
  batch_size: int = 16
  cross_entropy: str = 'ops'

  def __post_init__(self):
    metrics.cross_entropy_fn(self.cross_entropy)  # ValueError if unknown.
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


def with_server_learning_rate(process, state, learning_rate: float):
  """`state` with its server optimizer's learning rate set to
  `learning_rate`, through the process's hyperparameters (`get_hparams` /
  `set_hparams` of a composed `tff.learning` process; every server optimizer
  of `server_optimizer` has one)."""
  hparams = process.get_hparams(state)
  hparams['finalizer']['learning_rate'] = np.float32(learning_rate)
  return process.set_hparams(state, hparams)


def train_perplexity(metrics) -> float:
  """Training perplexity of one round, from the summed token metrics."""
  train = metrics['client_work']['train']
  return float(np.exp(train['loss_sum'] / max(train['token_count'], 1.0)))


def run_rounds(process, state, clients: data_source.ClientIdsIterator,
               dataset_fn: Callable[[str], tf.data.Dataset], rounds: int,
               clients_per_round: int,
               on_round: Callable[[dict], None] | None = None,
               validate: Callable[[object], float] | None = None,
               validate_every: int = 0, checkpoints=None,
               run_round: Callable | None = None, keep_best: bool = False):
  """Runs `rounds` rounds, each over `clients.select(clients_per_round)`.

  `clients`: the stage's client data source iterator; `dataset_fn` maps a
  selected client id to its dataset. `run_round(process, state, datasets)`
  runs one round (default `process.next(state, datasets)`; e.g.
  `runtime.Workers.run_round`, which may split it over workers).

  With `validate` (state -> validation perplexity) and `validate_every` = K
  > 0, every K-th round and the last also record `validation_perplexity`.

  With `checkpoints` (a `checkpoints.StageCheckpoints`), the stage resumes
  from its latest checkpoint (state, the iterator's bytes and the records,
  which are replayed through `on_round`), saves one every `checkpoints.every`
  rounds and after the last, and, when the run is stopped (an exception,
  Ctrl-C or SIGTERM turned into SystemExit), saves the last finished round
  before the exception goes on.

  With `keep_best` (needs `validate` and `validate_every`), the stage
  returns the state of its best validated round instead of its last: the
  lowest validation perplexity among round 0 (the start state, validated
  first) and the validated rounds, the earliest on a tie. Every round still
  runs (the budget is unchanged). The first record then holds
  `start_validation_perplexity`, the last `kept_round`; checkpoints also
  hold the best state.

  Returns:
    (state, history): the final (or kept) state and one dict per round with
    `round`, `clients`, `train_perplexity`, `seconds` and, on validated
    rounds, `validation_perplexity`.
  """
  if keep_best and (validate is None or validate_every <= 0):
    raise ValueError('keeping the best round needs validation rounds')
  start_state = state
  history = []
  done = 0
  best_state = None
  # The iterator as it was after the last finished round: a round stopped
  # midway has selected its clients already.
  clients_done = clients.to_bytes()
  if checkpoints is not None:
    loaded = checkpoints.load(state, with_best=keep_best)
    if loaded is not None:
      done, state, clients_done, history, best_state = loaded
      if done > rounds:
        raise ValueError(f'{checkpoints.root_dir} holds {done} rounds, more '
                         f'than the {rounds} asked for')
      try:
        resumed = data_source.ClientIdsIterator.from_bytes(clients_done)
      except ValueError as e:
        raise checkpoints_lib.CheckpointError(
            f'checkpoint {checkpoints.root_dir}/round_{done}: {e}') from None
      if resumed.client_ids != clients.client_ids:
        raise checkpoints_lib.CheckpointError(
            f'checkpoint {checkpoints.root_dir}/round_{done} samples other '
            'clients than this stage: it comes from another stage or dataset')
      clients = resumed
      if on_round is not None:
        for record in history:
          on_round(record)
  best = None  # (validation perplexity, round, state) with keep_best.
  if keep_best:
    start_perplexity = (history[0]['start_validation_perplexity']
                        if history else validate(start_state))
    best = _best_of((start_perplexity, 0, start_state), history, best_state)
  try:
    for round_num in range(done + 1, rounds + 1):
      start = time.time()
      selected = clients.select(clients_per_round)
      datasets = [dataset_fn(c) for c in selected]
      output = (process.next(state, datasets) if run_round is None
                else run_round(process, state, datasets))
      record = {'round': round_num, 'clients': len(selected),
                'train_perplexity': train_perplexity(output.metrics),
                'seconds': time.time() - start}
      if validate is not None and validate_every > 0 and (
          round_num % validate_every == 0 or round_num == rounds):
        record['validation_perplexity'] = validate(output.state)
      if best is not None:
        if round_num == 1:
          record['start_validation_perplexity'] = best[0]
        best = _best_of(best, [record], output.state)
        if round_num == rounds:
          record['kept_round'] = best[1]
      # The round counts once its record is complete.
      state, done = output.state, round_num
      clients_done = clients.to_bytes()
      history.append(record)
      if checkpoints is not None and (round_num % checkpoints.every == 0
                                      or round_num == rounds):
        checkpoints.save(round_num, state, clients_done, history,
                         best_state=None if best is None else best[2])
      if on_round is not None:
        on_round(record)
  except BaseException:
    if checkpoints is not None and done > 0:
      checkpoints.save(done, state, clients_done, history,
                       best_state=None if best is None else best[2])
    raise
  return (state if best is None else best[2]), history


def _best_of(best, records, state):
  """(perplexity, round, state) `best`, or `records`' best validated round
  (whose state is `state`) if it is lower."""
  validated = [(r['validation_perplexity'], r['round']) for r in records
               if 'validation_perplexity' in r]
  if validated:
    perplexity, round_num = min(validated)  # The earliest on a tie.
    if perplexity < best[0]:
      return (perplexity, round_num, state)
  return best
