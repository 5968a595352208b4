"""The methods compared, as paths through one tree of stages.

  method       stages                                  evaluated
  local_only   local from the initial weights          after fine-tuning
  fl           global                                  as is
  fl_matched   global, continued for group_rounds more as is
  perfl        global -> local                         after fine-tuning
  groupfl      global -> group                         as is
  groupperfl   global -> group -> local                after fine-tuning
  group_only   group from the initial weights, for     as is
               global_rounds + group_rounds (the same
               budget as global -> group)

Each stage runs once and is shared by every method on its path (`StageTree`
memoizes them). One learning process serves every federated stage.

Group stage rule: a group with fewer than `min_group_clients` clients is not
trained; it keeps its start weights, and `groups_kept_start` lists it.

Evaluation covers every client, or with `eval_clients_per_group = K > 0` the
same seeded sample of K clients per group (all of a smaller group) for every
method; training always uses every client.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from gpfl_tff.data import batches as batches_lib
from gpfl_tff.learning import local
from gpfl_tff.learning import training

METHODS = ('local_only', 'fl', 'fl_matched', 'perfl', 'groupfl', 'groupperfl',
           'group_only')
# method -> (weights it starts from, whether it is fine-tuned per client)
_PATHS = {
    'local_only': ('initial', True),
    'fl': ('global', False),
    'fl_matched': ('fl_matched', False),
    'perfl': ('global', True),
    'groupfl': ('group', False),
    'groupperfl': ('group', True),
    'group_only': ('group_only', False),
}
# Seeds of the client-sampling streams, one per federated stage.
_STAGE_SEEDS = {'global': 1, 'fl_matched': 2, 'group': 3, 'group_only': 4}
_EVAL_SEED = 5


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """Rounds and fine-tuning settings of the stages (see module docstring)."""
  global_rounds: int = 20
  group_rounds: int = 10
  finetune_epochs: int = 3
  finetune_learning_rate: float = 0.1
  finetune_patience: int = 1
  min_group_clients: int = 2
  seed: int = 0
  eval_split: str = 'test'
  eval_clients_per_group: int = 0
  eval_chunk: int = 100
  eval_batch_size: int = 128

  def __post_init__(self):
    if self.eval_split not in ('validation', 'test'):
      raise ValueError(f'eval_split must be validation or test, '
                       f'got {self.eval_split!r}')
    for name in ('global_rounds', 'group_rounds', 'finetune_epochs',
                 'finetune_patience', 'eval_clients_per_group'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must not be negative')
    for name in ('eval_chunk', 'eval_batch_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be at least 1')


def check_methods(methods: Sequence[str]) -> list[str]:
  unknown = [m for m in methods if m not in METHODS]
  if unknown or not methods:
    raise ValueError(f'unknown methods {unknown} (choose from '
                     f'{", ".join(METHODS)} or all)')
  return list(methods)


class StageTree:
  """Computes stages on demand, each once, and evaluates methods.

  Attributes:
    stage_runs: stage name -> how many times it ran (1 once computed).
    history: stage name -> per-round records (for groups, `group/<name>`).
    seconds: stage name -> wall-clock seconds of the stage itself.
    groups_kept_start: groups that kept their start weights (too few clients).
  """

  def __init__(self, process, local_stage: local.LocalStage,
               client_batches: batches_lib.ClientBatches, initial_weights,
               training_config: training.TrainingConfig, config: StageConfig,
               on_progress: Callable[[str, int, int], None] | None = None):
    self.process = process
    self.local_stage = local_stage
    self.batches = client_batches
    self.data = client_batches.data
    self.training_config = training_config
    self.config = config
    self.on_progress = on_progress or (lambda stage, done, total: None)
    self._initial = initial_weights
    self._cache = {}
    self._nested_seconds = 0.0
    self.stage_runs = {}
    self.history = {}
    self.seconds = {}
    self.groups_kept_start = []
    self.eval_clients = self._sample_eval_clients()

  def _sample_eval_clients(self) -> dict[str, list[str]]:
    """group -> its evaluated clients (sorted)."""
    per_group = self.config.eval_clients_per_group
    chosen = {}
    for index, group in enumerate(self.data.groups):
      clients = self.data.clients_in_group(group)
      if per_group > 0:
        rng = np.random.default_rng([self.config.seed, _EVAL_SEED, index])
        clients = training.sample_clients(rng, clients, per_group)
      chosen[group] = clients
    return chosen

  def _stage(self, name: str, compute):
    """Runs `compute` once for `name`; later calls return its value.

    `seconds[name]` is the stage's own time: time spent in stages it pulled in
    (say `global` computed inside `eval/global`) is counted there instead.
    """
    if name not in self._cache:
      start = time.time()
      outer_nested, self._nested_seconds = self._nested_seconds, 0.0
      self._cache[name] = compute()
      elapsed = time.time() - start
      self.stage_runs[name] = self.stage_runs.get(name, 0) + 1
      self.seconds[name] = elapsed - self._nested_seconds
      self._nested_seconds = outer_nested + elapsed
    return self._cache[name]

  def _rng(self, stage: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([self.config.seed, _STAGE_SEEDS[stage],
                                  index])

  def _train(self, stage: str, state, client_ids, rounds, rng):
    def progress(record):
      self.history.setdefault(stage, []).append(record)
      self.on_progress(stage, record['round'], rounds)

    state, _ = training.run_rounds(
        self.process, state, client_ids,
        lambda c: self.batches.dataset('train', c,
                                       self.training_config.client_epochs),
        rounds, self.training_config.clients_per_round, rng, progress)
    return state

  # Federated stages -----------------------------------------------------

  def global_state(self):
    return self._stage('global', lambda: self._train(
        'global', training.start_state(self.process, self._initial),
        self.data.client_ids, self.config.global_rounds, self._rng('global')))

  def weights(self, start: str):
    """Weights of one start point: initial, global or fl_matched."""
    if start == 'initial':
      return self._initial
    if start == 'global':
      return self.process.get_model_weights(self.global_state())
    if start == 'fl_matched':
      state = self._stage('fl_matched', lambda: self._train(
          'fl_matched', self.global_state(), self.data.client_ids,
          self.config.group_rounds, self._rng('fl_matched')))
      return self.process.get_model_weights(state)
    raise ValueError(f'unknown start {start!r}')

  def group_weights(self, stage: str) -> dict:
    """Weights per group: stage `group` (from global) or `group_only`."""
    if stage == 'group':
      return self._stage('group', lambda: self._train_groups(
          'group', self.weights('global'), self.config.group_rounds))
    return self._stage('group_only', lambda: self._train_groups(
        'group_only', self._initial,
        self.config.global_rounds + self.config.group_rounds))

  def _train_groups(self, stage: str, start_weights, rounds: int) -> dict:
    weights = {}
    for index, group in enumerate(self.data.groups):
      clients = self.data.clients_in_group(group)
      if len(clients) < self.config.min_group_clients:
        weights[group] = start_weights
        if group not in self.groups_kept_start:
          self.groups_kept_start.append(group)
        continue
      state = self._train(f'{stage}/{group}',
                          training.start_state(self.process, start_weights),
                          clients, rounds, self._rng(stage, index))
      weights[group] = self.process.get_model_weights(state)
    return weights

  # Evaluation -----------------------------------------------------------

  def _weights_by_group(self, start: str) -> dict:
    if start in ('group', 'group_only'):
      return self.group_weights(start)
    weights = self.weights(start)
    return {group: weights for group in self.data.groups}

  def _evaluate_start(self, start: str, finetune: bool) -> dict:
    """client -> test sums of the weights of `start`, fine-tuned or not."""
    split = self.config.eval_split
    epochs = self.config.finetune_epochs if finetune else 0
    eval_batch = self.config.eval_batch_size
    results = {}
    total = sum(len(c) for c in self.eval_clients.values())
    label = self._eval_label(start, finetune)
    for group, weights in self._weights_by_group(start).items():
      clients = self.eval_clients[group]
      for begin in range(0, len(clients), self.config.eval_chunk):
        chunk = clients[begin:begin + self.config.eval_chunk]
        scored = [self.batches.dataset(split, c, batch_size=eval_batch)
                  for c in chunk]
        if finetune:
          train = [self.batches.dataset('train', c) for c in chunk]
          validation = [self.batches.dataset('validation', c,
                                             batch_size=eval_batch)
                        for c in chunk]
          sums = self.local_stage.run(
              weights, train, validation, scored, np.int32(epochs),
              np.float32(self.config.finetune_learning_rate),
              np.int32(self.config.finetune_patience))
        else:
          sums = self.local_stage.evaluate_clients(weights, scored)
        results.update(zip(chunk, sums))
        self.on_progress(label, len(results), total)
    return results

  def evaluate(self, method: str) -> dict:
    """client id -> evaluation sums of `method` (each stage computed once)."""
    start, finetune = _PATHS[method]
    name = f'local/{start}' if finetune else f'eval/{start}'
    return self._stage(name, lambda: self._evaluate_start(start, finetune))

  def plan(self, methods: Sequence[str]) -> dict[str, tuple[int, float]]:
    """What the `methods` will run: progress label -> (steps, work).

    Labels and steps are those `on_progress` reports (rounds of a federated
    stage, evaluated clients of an evaluation). Work is a rough cost in
    client-epochs of training, for an estimate of the whole run's time left.
    """
    rounds = {'global': self.config.global_rounds,
              'fl_matched': self.config.group_rounds,
              'group': self.config.group_rounds,
              'group_only': (self.config.global_rounds
                             + self.config.group_rounds)}
    per_round = self.training_config.client_epochs
    evaluated = sum(len(c) for c in self.eval_clients.values())
    plan = {}
    for method in methods:
      for stage in self.stages_of(method):
        kind, _, start = stage.partition('/')
        if kind in ('global', 'fl_matched'):
          plan[kind] = (rounds[kind], rounds[kind] * per_round *
                        self.training_config.clients_per_round)
        elif kind in ('group', 'group_only'):
          for group in self.data.groups:
            clients = len(self.data.clients_in_group(group))
            if clients >= self.config.min_group_clients:
              plan[f'{kind}/{group}'] = (rounds[kind], rounds[kind] * per_round
                                         * min(clients, self.training_config
                                               .clients_per_round))
        else:
          finetune = kind == 'local'
          # Evaluation costs about a third of a training epoch.
          per_client = (self.config.finetune_epochs + 1 if finetune else 0.3)
          plan[self._eval_label(start, finetune)] = (evaluated,
                                                     evaluated * per_client)
    return plan

  @staticmethod
  def _eval_label(start: str, finetune: bool) -> str:
    return f'eval {start}' + (' + local' if finetune else '')

  def stages_of(self, method: str) -> list[str]:
    """Names of the stages `method` depends on, for timing reports."""
    start, finetune = _PATHS[method]
    stages = {'initial': [], 'global': ['global'],
              'fl_matched': ['global', 'fl_matched'],
              'group': ['global', 'group'], 'group_only': ['group_only']}[start]
    return stages + [f'local/{start}' if finetune else f'eval/{start}']
