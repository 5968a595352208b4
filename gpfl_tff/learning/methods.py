"""The methods compared, as paths through one tree of stages.

Two tables declare everything; adding a method is one row of `METHOD_TABLE`
(and a new kind of federated stage one row of `STAGE_TABLE`).

`STAGE_TABLE`: the federated stages, each continuing from a parent:
  stage       parent   clients     rounds
  global      initial  all         global_rounds
  fl_matched  global   all         group_rounds (same rounds per path as
                                   global -> group; continues global's state)
  fl_compute  global   all         as many client updates as every group
                                   stage together (continues global's state)
  group       global   per group   group_rounds (per group, from the global
                                   weights: `group_start`, below)
  group_only  initial  per group   global_rounds + group_rounds

`METHOD_TABLE`: a method is the weights of one stage (or `initial`),
evaluated as they are or after local fine-tuning, or a reference row:
  local_only     initial + local         fl_compute     fl_compute
  fl             global                  perfl_compute  fl_compute + local
  fl_matched     fl_matched              groupfl        group
  perfl_matched  fl_matched + local      groupperfl     group + local
  perfl          global + local          group_only     group_only
  unigram, group_unigram: add-one unigram models of all clients' or the
  client's group's train targets (`gpfl_tff.models.unigram`).

Each stage runs once and is shared by every method on its path (`StageTree`
memoizes them). One learning process serves every federated stage. The
groups of a per-group stage, and the chunks of evaluated clients, are
independent tasks that `StageTree.map` may run concurrently (on several TFF
workers); each has its own random stream, so results do not depend on it.

Budgets (`StageTree.budget`): rounds on the method's path (the rounds that
led to one client's model) and client updates (every client's local training
in every round of every stage on the path, all groups together), plus
whether each evaluated client was fine-tuned.

Stage selection (`stage_selection`): 'last' keeps each federated stage's
state after its last round; 'best' keeps the state of its best validated
round (the lowest perplexity on the stage's validation curve, round 0 = its
start included): early stopping on validation clients' validation splits,
applied alike to every stage, so that no method gets a selection the others
lack. Budgets count every round run either way.

Group start (`group_start`): each group's process starts from a fresh
process state holding its parent's weights ('fresh': the server optimizer's
state, say FedAdam's moments and step count, reset, as in the paper's reading
of a group stage as a new federated process), or from the parent stage's
kept state itself ('continue': the server optimizer goes on where the global
stage left it, as `fl_matched` and `fl_compute` do, so that a group stage and
those controls differ only in their clients). A reset Adam's first steps move
every weight by about its learning rate whatever the gradient's scale, which
a trained model may not survive. 'continue' applies to stages whose parent is
a whole-population stage; a subgroup stage starts fresh from its group's
weights either way.

Group learning rate (`group_server_learning_rate`): the server learning rate
of the stages that fine-tune a parent's model per group (`group`,
`subgroup`) and of their equal-budget controls (`fl_matched`, `fl_compute`:
the same rounds or client updates from the global model without groups, so
that they still differ from a group stage only in its clients), set in their
start state through the process's hyperparameters
(`training.with_server_learning_rate`); 0, the default, keeps the global
stage's. A stage that fine-tunes a trained model may want smaller steps than
the one that trained it. `group_only` trains from its initial weights and
keeps the global stage's rate.

Group stage rule: a group with fewer than `min_group_clients` clients is not
trained; it keeps its start weights, and `groups_kept_start` lists it.

Evaluation covers the report clients of every group (`split_clients`; or the
tuning clients, or all), or with `eval_clients_per_group = K > 0` the same
sample of K of them per group (all of a smaller group) for every method and
every run seed; training always uses every client.
"""

import copy
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from gpfl_tff.data import batches as batches_lib
from gpfl_tff.evaluation import summary
from gpfl_tff.learning import data_source
from gpfl_tff.learning import grouping
from gpfl_tff.learning import local
from gpfl_tff.learning import training
from gpfl_tff.models import unigram


@dataclasses.dataclass(frozen=True)
class Stage:
  """A federated stage: `rounds(config)` rounds from its parent's model.

  per_group: one run per group over that group's clients, each from the
    parent's weights (`StageConfig.group_start`); else one run over all
    clients, continuing the parent's process state.
  seed: the stage's client-sampling stream.
  """
  parent: str
  per_group: bool
  rounds: Callable[['StageConfig'], int] | None
  seed: int


STAGE_TABLE = {
    'global': Stage('initial', False, lambda c: c.global_rounds, seed=1),
    'fl_matched': Stage('global', False, lambda c: c.group_rounds, seed=2),
    # Rounds follow from the group stages' client updates (`_rounds`).
    'fl_compute': Stage('global', False, None, seed=6),
    'group': Stage('global', True, lambda c: c.group_rounds, seed=3),
    'group_only': Stage('initial', True,
                        lambda c: c.global_rounds + c.group_rounds, seed=4),
    # The hierarchy's third level: per subgroup (`StageTree.subgrouping`,
    # say the play within a genre), from its parent group's model.
    'subgroup': Stage('group', True, lambda c: c.group_rounds, seed=10),
}


@dataclasses.dataclass(frozen=True)
class Method:
  """Evaluate the weights of `start`; fine-tune each client first if asked.

  start: `initial`, a stage of STAGE_TABLE, or for reference rows
  `unigram` / `group_unigram`.
  prior: fine-tune under a Gaussian prior centred on the start model, its
    precisions per group by empirical Bayes (`StageTree.prior_precisions`).
  """
  start: str
  finetune: bool = False
  prior: bool = False

  @property
  def reference(self) -> bool:
    return self.start in ('unigram', 'group_unigram')

  @property
  def evaluation(self) -> str:
    """The name of its evaluation in the tree (shared by equal methods)."""
    if self.reference or not self.finetune:
      return f'eval/{self.start}'
    return f'local_prior/{self.start}' if self.prior else f'local/{self.start}'

  @property
  def label(self) -> str:
    """Its evaluation's progress label."""
    if not self.finetune:
      return f'eval {self.start}'
    return f'eval {self.start} + local' + (' (prior)' if self.prior else '')


METHOD_TABLE = {
    'local_only': Method('initial', finetune=True),
    'fl': Method('global'),
    'fl_matched': Method('fl_matched'),
    'perfl_matched': Method('fl_matched', finetune=True),
    'fl_compute': Method('fl_compute'),
    'perfl_compute': Method('fl_compute', finetune=True),
    'perfl': Method('global', finetune=True),
    'groupfl': Method('group'),
    'groupperfl': Method('group', finetune=True),
    'groupperfl_prior': Method('group', finetune=True, prior=True),
    'group_only': Method('group_only'),
    'subgroupfl': Method('subgroup'),
    'subgroupperfl': Method('subgroup', finetune=True),
    'unigram': Method('unigram'),
    'group_unigram': Method('group_unigram'),
}
METHODS = tuple(METHOD_TABLE)
# What a group stage adds: a method from the group's model against the same
# method from the global model, and from the global model trained on as many
# more rounds without groups (`fl_matched`, the equal-rounds control).
# `results.json` `paired_stages` and `unseen.paired` give these pairs.
STAGE_PAIRS = (('groupfl', 'fl'), ('groupperfl', 'perfl'),
               ('groupperfl_prior', 'perfl'), ('groupfl', 'fl_matched'),
               ('groupperfl', 'perfl_matched'))
_EVAL_SEED = 5
_GROUPING_SEED = 8
_UNSEEN_SEED = 9
_SPLIT_SEED = 7
EVAL_CLIENTS = ('report', 'tuning', 'all')
STAGE_SELECTIONS = ('last', 'best')
PRIOR_ESTIMATORS = ('per_tensor', 'isotropic', 'predictive',
                    'predictive_pooled')
GROUP_STARTS = ('fresh', 'continue')
# The precisions the predictive estimator chooses among (0: no prior), a
# method constant, the same for every dataset: from none up to ten times the
# precision tuned on Shakespeare's tuning clients (100, docs/RESULTS.md).
PREDICTIVE_PRECISIONS = (0.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
# Fields added since runs were first stored, whose behaviour before they
# existed differs from their default: a stored run without the field ran with
# this value (resuming such a run must ask for it).
VALUES_BEFORE_FIELD = {'prior_estimator': 'isotropic'}


def values_before_fields(config_type) -> dict:
  """field -> the value a run stored before the field existed ran with, for
  a configuration dataclass (`StageConfig`, `training.TrainingConfig`, the
  dataset's): `VALUES_BEFORE_FIELD` (this module's for StageConfig,
  `training`'s for TrainingConfig), else the field's default (a field added
  with a default that keeps the old behaviour)."""
  values = {f.name: f.default for f in dataclasses.fields(config_type)
            if f.default is not dataclasses.MISSING}
  if config_type is StageConfig:
    values.update(VALUES_BEFORE_FIELD)
  if config_type is training.TrainingConfig:
    values.update(training.VALUES_BEFORE_FIELD)
  return values


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
  eval_clients: str = 'report'
  tuning_fraction: float = 0.2
  split_seed: int = 0
  eval_clients_per_group: int = 0
  eval_chunk: int = 100
  eval_batch_size: int = 128
  curve_every: int = 5
  curve_clients: int = 50
  groups: str = 'given'
  num_groups: int = 0
  grouping_statistic: str = 'pearson'
  prior_precision: float = -1.0
  prior_estimator: str = 'predictive'
  unseen_fraction: float = 0.0
  stage_selection: str = 'last'
  group_start: str = 'fresh'
  group_server_learning_rate: float = 0.0

  def __post_init__(self):
    if self.eval_split not in ('validation', 'test'):
      raise ValueError(f'eval_split must be validation or test, '
                       f'got {self.eval_split!r}')
    if self.eval_clients not in EVAL_CLIENTS:
      raise ValueError(f'eval_clients must be one of {", ".join(EVAL_CLIENTS)}'
                       f', got {self.eval_clients!r}')
    if self.groups not in grouping.GROUPINGS:
      raise ValueError(f'groups must be one of {", ".join(grouping.GROUPINGS)}'
                       f', got {self.groups!r}')
    if self.grouping_statistic not in grouping.STATISTICS:
      raise ValueError('grouping_statistic must be one of '
                       f'{", ".join(grouping.STATISTICS)}, got '
                       f'{self.grouping_statistic!r}')
    if self.groups == 'given' and self.num_groups:
      raise ValueError('num_groups applies to inferred or random groups '
                       '(given groups are as many as the data has)')
    if self.stage_selection not in STAGE_SELECTIONS:
      raise ValueError('stage_selection must be one of '
                       f'{", ".join(STAGE_SELECTIONS)}, got '
                       f'{self.stage_selection!r}')
    if self.stage_selection == 'best' and not (self.curve_every > 0
                                               and self.curve_clients > 0):
      raise ValueError('stage_selection best picks rounds on the validation '
                       'curves: curve_every and curve_clients must be above 0')
    if self.group_start not in GROUP_STARTS:
      raise ValueError(f'group_start must be one of {", ".join(GROUP_STARTS)}'
                       f', got {self.group_start!r}')
    if self.group_server_learning_rate < 0:
      raise ValueError('group_server_learning_rate must not be negative '
                       '(0: the global stage\'s)')
    if self.prior_estimator not in PRIOR_ESTIMATORS:
      raise ValueError('prior_estimator must be one of '
                       f'{", ".join(PRIOR_ESTIMATORS)}, got '
                       f'{self.prior_estimator!r}')
    if not 0.0 <= self.unseen_fraction < 1.0:
      raise ValueError('unseen_fraction must be in [0, 1), got '
                       f'{self.unseen_fraction}')
    if not 0.0 <= self.tuning_fraction < 1.0:
      raise ValueError('tuning_fraction must be in [0, 1), got '
                       f'{self.tuning_fraction}')
    for name in ('global_rounds', 'group_rounds', 'finetune_epochs',
                 'finetune_patience', 'eval_clients_per_group', 'curve_every',
                 'curve_clients', 'num_groups'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must not be negative')
    for name in ('eval_chunk', 'eval_batch_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be at least 1')


def scored_datasets(batches, clients, config: StageConfig,
                    split: str) -> list:
  """The `split` datasets of `clients` (ids) of `batches`, in evaluation
  batches: what a method is scored on."""
  return [batches.dataset(split, c, batch_size=config.eval_batch_size)
          for c in clients]


def local_run_args(batches, clients, config: StageConfig,
                   split: str | None = 'test',
                   patience: int | None = None) -> tuple:
  """The arguments of `LocalStage.run` and `run_prior` after the weights, for
  `clients` (ids) of `batches`: their train, validation and `split` (scored)
  datasets, then `config`'s fine-tuning epochs, learning rate and patience
  (`patience` overrides the config's). `split=None`: no scored datasets, the
  arguments of `LocalStage.prior_spread`."""
  scored = () if split is None else (
      scored_datasets(batches, clients, config, split),)
  return ([batches.dataset('train', c) for c in clients],
          scored_datasets(batches, clients, config, 'validation'),
          *scored,
          np.int32(config.finetune_epochs),
          np.float32(config.finetune_learning_rate),
          np.int32(config.finetune_patience if patience is None else patience))


def split_clients(data, tuning_fraction: float, split_seed: int
                 ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
  """(tuning, report): group -> client ids, split within each group.

  round(tuning_fraction * n) of a group's n clients, chosen by `split_seed`
  (not the run seed, so that every run shares the split), are tuning clients:
  hyperparameters are chosen on them. The rest are report clients, the only
  ones whose numbers are reported. A group keeps at least one report client.
  Training uses every client's train split either way.
  """
  tuning, report = {}, {}
  for index, group in enumerate(data.groups):
    clients = data.clients_in_group(group)
    count = min(round(tuning_fraction * len(clients)), len(clients) - 1)
    order = np.random.default_rng([split_seed, _SPLIT_SEED, index]
                                  ).permutation(len(clients))
    picked = {clients[i] for i in order[:count]}
    tuning[group] = sorted(picked)
    report[group] = [c for c in clients if c not in picked]
  return tuning, report


def unseen_clients(data, report: dict[str, list[str]], unseen_fraction: float,
                   split_seed: int) -> set[str]:
  """Clients held out of every training stage: round(unseen_fraction * n)
  of each group's n clients, drawn from its report clients by `split_seed`.

  They are still personalized (from the model of their group) and scored,
  apart from the seen clients: clients that join after training.
  """
  unseen = set()
  for index, group in enumerate(data.groups):
    count = min(round(unseen_fraction * len(data.clients_in_group(group))),
                len(report[group]))
    order = np.random.default_rng([split_seed, _UNSEEN_SEED, index]
                                  ).permutation(len(report[group]))
    unseen.update(report[group][i] for i in order[:count])
  return unseen


def needs_subgroups(method: str) -> bool:
  """Whether `method`'s path has the subgroup stage (it then needs
  `StageTree.subgrouping`)."""
  start = METHOD_TABLE[method].start
  while start in STAGE_TABLE:
    if start == 'subgroup':
      return True
    start = STAGE_TABLE[start].parent
  return False


def check_methods(methods: Sequence[str]) -> list[str]:
  unknown = [m for m in methods if m not in METHOD_TABLE]
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
    # Called with (stage, record) after every round, e.g. for TensorBoard.
    self.on_record = lambda stage, record: None
    # Runs independent tasks (the groups of a stage, chunks of evaluated
    # clients): `map(fn, items)` -> results in order, e.g. concurrently on
    # several TFF workers (`runtime.Workers.map`). Callbacks are then called
    # from several threads, one at a time (`_lock`).
    self.map = lambda fn, items: [fn(item) for item in items]
    # Runs one training round: (process, state, datasets) -> output, e.g.
    # split over workers (`runtime.Workers.run_round`); None: process.next.
    self.run_round = None
    self._lock = threading.RLock()
    self._initial = initial_weights
    # A `checkpoints.RunStore` makes the tree resumable: stages checkpoint
    # their rounds and finished evaluations are kept (see `_stage`).
    self.store = None
    self._cache = {}
    self._nested_seconds = 0.0
    self.stage_runs = {}
    self.history = {}
    self.seconds = {}
    self.groups_kept_start = []
    _, report = split_clients(self.data, config.tuning_fraction,
                              config.split_seed)
    # Held out of every training stage (`unseen_clients`).
    self.unseen = unseen_clients(self.data, report, config.unseen_fraction,
                                 config.split_seed)
    self.training_clients = [c for c in self.data.client_ids
                             if c not in self.unseen]
    self.eval_clients = self._sample_eval_clients()
    # statistic -> `grouping.build_statistics` of the model, for inferred
    # groups (set by `experiment.build_tree`); each built on first use.
    self.build_statistics = None
    self.statistics = {}
    self._grouping = None
    # client -> subgroup, nested in the groups (every client of a subgroup
    # in one group), for the `subgroup` stage; None: no such stage.
    self.subgrouping = None

  # StageConfig fields that the federated stages depend on.
  _TRAINING_FIELDS = ('global_rounds', 'group_rounds', 'min_group_clients',
                      'seed', 'curve_every', 'curve_clients', 'split_seed',
                      'unseen_fraction', 'tuning_fraction',
                      'group_server_learning_rate')
  # Fields that decide the groups.
  _GROUPING_FIELDS = ('groups', 'num_groups', 'grouping_statistic')
  # Fields only the per-group stages depend on.
  _PER_GROUP_FIELDS = _GROUPING_FIELDS + ('group_start',)

  def with_config(self, config: StageConfig) -> 'StageTree':
    """A tree for `config` sharing the federated stages trained so far.

    `config` may change only fine-tuning, evaluation and grouping settings
    (ValueError otherwise); evaluations are redone under it, trained stages
    are not, except the per-group stages when the grouping changes. Used to
    tune fine-tuning without retraining, and to compare groupings on one
    global model.
    """
    changed = [f for f in self._TRAINING_FIELDS
               if getattr(config, f) != getattr(self.config, f)]
    if changed:
      raise ValueError(f'with_config cannot change {", ".join(changed)}: '
                       'the trained stages depend on them')
    tree = copy.copy(self)
    tree.config = config
    trained = tuple(STAGE_TABLE)
    if any(getattr(config, f) != getattr(self.config, f)
           for f in self._PER_GROUP_FIELDS):
      trained = tuple(n for n, s in STAGE_TABLE.items() if not s.per_group)
      if any(getattr(config, f) != getattr(self.config, f)
             for f in self._GROUPING_FIELDS):
        tree._grouping = None
      tree.groups_kept_start = []
      tree.history = {n: r for n, r in self.history.items()
                      if n.split('/')[0] in trained}
    tree._cache = {name: value for name, value in self._cache.items()
                   if name.split('/')[0] in trained}
    tree.stage_runs = {n: c for n, c in self.stage_runs.items()
                       if n in tree._cache}
    tree.seconds = {n: s for n, s in self.seconds.items() if n in tree._cache}
    tree.eval_clients = tree._sample_eval_clients()
    return tree

  def _sample_eval_clients(self) -> dict[str, list[str]]:
    """group -> its evaluated clients (sorted); see `split_clients`.

    With `eval_clients_per_group` = K, K seen clients are sampled; unseen
    clients (`unseen_clients`) are all scored, after them.
    """
    tuning, report = split_clients(self.data, self.config.tuning_fraction,
                                   self.config.split_seed)
    role = self.config.eval_clients
    per_group = self.config.eval_clients_per_group
    chosen = {}
    for index, group in enumerate(self.data.groups):
      clients = sorted((tuning[group] if role != 'report' else [])
                       + (report[group] if role != 'tuning' else []))
      unseen = [c for c in clients if c in self.unseen]
      clients = [c for c in clients if c not in self.unseen]
      if per_group > 0:
        # Seeded by the split seed, not the run seed: every seed and every
        # method scores the same clients.
        rng = np.random.default_rng([self.config.split_seed, _EVAL_SEED,
                                     index])
        clients = data_source.sample_clients(rng, clients, per_group)
      chosen[group] = clients + unseen
    return chosen

  def _stage(self, name: str, compute):
    """Runs `compute` once for `name`; later calls return its value.

    `seconds[name]` is the stage's own time: time spent in stages it pulled in
    (say `global` computed inside `eval/global`) is counted there instead.
    """
    if name not in self._cache:
      start = time.time()
      outer_nested, self._nested_seconds = self._nested_seconds, 0.0
      stored = name not in STAGE_TABLE and self.store is not None
      value = self.store.load_evaluation(name) if stored else None
      if value is None:
        value = compute()
        if stored:
          self.store.save_evaluation(name, value)
      self._cache[name] = value
      elapsed = time.time() - start
      self.stage_runs[name] = self.stage_runs.get(name, 0) + 1
      self.seconds[name] = elapsed - self._nested_seconds
      self._nested_seconds = outer_nested + elapsed
    return self._cache[name]

  def _clients(self, stage: str, client_ids, index: int = 0
               ) -> data_source.ClientIdsIterator:
    """The client data source iterator of a stage (of its group `index`)."""
    return data_source.ClientIdsDataSource(
        client_ids, [self.config.seed, STAGE_TABLE[stage].seed, index]
    ).iterator()

  def _train(self, stage: str, state, clients, rounds):
    def progress(record):
      with self._lock:
        self.history[stage].append(record)
        self.on_record(stage, record)
        self.on_progress(stage, record['round'], rounds)

    with self._lock:
      # Started again (a lost worker): its records are replayed or redone.
      self.history[stage] = []
      self.on_progress(stage, 0, rounds)
    state, _ = training.run_rounds(
        self.process, state, clients,
        lambda c: self.batches.dataset('train', c,
                                       self.training_config.client_epochs),
        rounds, self.training_config.clients_per_round, progress,
        validate=self._validator(clients.client_ids),
        validate_every=self.config.curve_every,
        checkpoints=None if self.store is None else self.store.stage(stage),
        run_round=self.run_round,
        keep_best=self.config.stage_selection == 'best')
    return state

  def _validator(self, client_ids):
    """state -> validation perplexity on a fixed sample of `client_ids`.

    The sample (at most `curve_clients`, seeded by the split seed) is the
    same for every round of a stage and every run seed; its validation splits
    are never reported.
    """
    if self.config.curve_every <= 0 or self.config.curve_clients <= 0:
      return None
    rng = np.random.default_rng([self.config.split_seed, _EVAL_SEED,
                                 len(client_ids)])
    clients = data_source.sample_clients(rng, list(client_ids),
                                      self.config.curve_clients)
    datasets = scored_datasets(self.batches, clients, self.config,
                               'validation')

    def validate(state):
      sums = self.local_stage.evaluate_clients(
          self.process.get_model_weights(state), datasets)
      loss = sum(float(s['loss_sum']) for s in sums)
      tokens = sum(float(s['token_count']) for s in sums)
      return float(np.exp(loss / max(tokens, 1.0)))

    return validate

  def curves(self) -> dict[str, list[list[float]]]:
    """stage -> [[round, validation perplexity], ...] of every trained stage
    (from round 0, the start, where it was validated)."""
    return {stage: [[0, r['start_validation_perplexity']] for r in records[:1]
                    if 'start_validation_perplexity' in r]
            + [[r['round'], r['validation_perplexity']] for r in records
               if 'validation_perplexity' in r]
            for stage, records in self.history.items()}

  def kept_rounds(self) -> dict[str, int]:
    """stage -> the round whose state it kept (stage_selection best)."""
    return {stage: records[-1]['kept_round']
            for stage, records in self.history.items()
            if records and 'kept_round' in records[-1]}

  # Groups ---------------------------------------------------------------

  def _num_groups(self) -> int:
    return self.config.num_groups or len(self.data.groups)

  @property
  def grouping(self) -> dict[str, str]:
    """client -> the group whose stage trains it and whose model it gets.

    The data's groups (`given`), or `num_groups` groups dealt at random or
    inferred from the global model (`grouping`); computed once. Evaluated
    clients and reports stay by the data's groups, so every grouping is
    scored on the same clients.
    """
    if self._grouping is None:
      mode = self.config.groups
      seed = [self.config.seed, _GROUPING_SEED]
      if mode == 'given':
        self._grouping = dict(self.data.client_to_group)
      elif mode == 'random':
        self._grouping = grouping.random_grouping(
            self.data.client_ids, self._num_groups(), seed)
      else:
        statistic = self.config.grouping_statistic
        if statistic not in self.statistics:
          if self.build_statistics is None:
            raise ValueError('inferred groups need the model\'s statistics '
                             '(experiment.build_tree sets build_statistics)')
          self.statistics[statistic] = self.build_statistics(statistic)
        self._grouping = grouping.infer_grouping(
            self.statistics[statistic], self.weights('global'),
            lambda c: self.batches.dataset('train', c), self.training_clients,
            self._num_groups(), seed, self.map, self.config.eval_chunk,
            new_clients=sorted(self.unseen))
    return self._grouping

  def grouping_of(self, stage: str) -> dict[str, str]:
    """client -> its group in a per-group stage (`subgrouping` for the
    subgroup stage, else `grouping`)."""
    if stage != 'subgroup':
      return self.grouping
    if self.subgrouping is None:
      raise ValueError('the subgroup stage needs StageTree.subgrouping '
                       '(client -> subgroup)')
    return self.subgrouping

  def groups(self, stage: str = 'group') -> list[str]:
    """The groups of a per-group stage, sorted."""
    return sorted(set(self.grouping_of(stage).values()))

  def clients_of(self, group: str, stage: str = 'group') -> list[str]:
    """The training (seen) clients of `group` in a per-group stage."""
    mapping = self.grouping_of(stage)
    return [c for c in self.training_clients if mapping[c] == group]

  def _parent_group(self, subgroup: str) -> str:
    """The group that holds most clients of `subgroup`."""
    members = [self.grouping[c] for c, s in self.subgrouping.items()
               if s == subgroup]
    return max(sorted(set(members)), key=members.count)

  def grouping_report(self) -> dict:
    """mode, number of groups, the statistic inferred groups are clustered
    on, and the adjusted Rand index against the data's groups."""
    clients = self.data.client_ids
    return {'mode': self.config.groups, 'num_groups': len(self.groups()),
            'statistic': (self.config.grouping_statistic
                          if self.config.groups == 'inferred' else None),
            'adjusted_rand_index': grouping.adjusted_rand_index(
                [self.data.client_to_group[c] for c in clients],
                [self.grouping[c] for c in clients])}

  # Federated stages -----------------------------------------------------

  def _trained_groups(self, stage: str = 'group') -> list[str]:
    return [g for g in self.groups(stage) if len(self.clients_of(g, stage))
            >= self.config.min_group_clients]

  def _updates_per_round(self, clients: int) -> int:
    return min(clients, self.training_config.clients_per_round)

  def _rounds(self, stage: str) -> int:
    """Rounds of `stage` (per group for per-group stages)."""
    rule = STAGE_TABLE[stage].rounds
    if rule is not None:
      return rule(self.config)
    # fl_compute: as many client updates as all group stages together.
    updates = self.client_updates('group')
    return math.ceil(updates / self._updates_per_round(
        len(self.training_clients)))

  def client_updates(self, stage: str) -> int:
    """Client updates (local trainings) of one stage, all groups together."""
    if STAGE_TABLE[stage].per_group:
      return sum(self._rounds(stage) * self._updates_per_round(
          len(self.clients_of(g, stage))) for g in self._trained_groups(stage))
    return self._rounds(stage) * self._updates_per_round(
        len(self.training_clients))

  def path(self, start: str) -> list[str]:
    """The federated stages that lead to `start`, first to last."""
    stages = []
    while start in STAGE_TABLE:
      stages.insert(0, start)
      start = STAGE_TABLE[start].parent
    return stages

  def _state(self, stage: str):
    """The process state after a whole-population stage."""
    spec = STAGE_TABLE[stage]
    if spec.parent == 'initial':
      parent = training.start_state(self.process, self._initial)
    else:
      parent = self._state(spec.parent)
    return self._stage(stage, lambda: self._train(
        stage, self._with_stage_rate(stage, parent),
        self._clients(stage, self.training_clients), self._rounds(stage)))

  def _with_stage_rate(self, stage: str, state):
    """`state` with `group_server_learning_rate` as its server learning rate
    if that is set and `stage` continues a trained model (its parent is a
    stage, not `initial`: the group stages and their equal-budget controls);
    else `state` as it is."""
    rate = self.config.group_server_learning_rate
    if rate > 0 and STAGE_TABLE[stage].parent != 'initial':
      return training.with_server_learning_rate(self.process, state, rate)
    return state

  def weights(self, start: str):
    """Weights of a whole-population start point (`initial` or a stage)."""
    if start == 'initial':
      return self._initial
    if STAGE_TABLE[start].per_group:
      raise ValueError(f'{start} has weights per group; use group_weights')
    return self.process.get_model_weights(self._state(start))

  def global_state(self):
    return self._state('global')

  def group_weights(self, stage: str) -> dict:
    """Weights per group of a per-group stage."""
    spec = STAGE_TABLE[stage]

    def train():
      parent_state = None
      if STAGE_TABLE.get(spec.parent) and STAGE_TABLE[spec.parent].per_group:
        parents = self.group_weights(spec.parent)
        starts = {g: parents[self._parent_group(g)]
                  for g in self.groups(stage)}
      else:
        weights = self.weights(spec.parent)
        starts = {g: weights for g in self.groups(stage)}
        if self.config.group_start == 'continue' and spec.parent != 'initial':
          parent_state = self._state(spec.parent)
      return self._train_groups(stage, starts, self._rounds(stage),
                                parent_state)

    return self._stage(stage, train)

  def _train_groups(self, stage: str, start_weights: dict,
                    rounds: int, parent_state=None) -> dict:
    """Weights per group, each from its start weights; the groups are
    independent tasks (`map`).

    Each group's process starts from a fresh state holding its start weights,
    or with `parent_state` from that state (its server optimizer's state
    carried on) holding them; `_with_stage_rate` then sets the group
    stages' server learning rate there.
    """
    trained = self._trained_groups(stage)
    groups = self.groups(stage)
    for group in groups:
      if group not in trained and group not in self.groups_kept_start:
        self.groups_kept_start.append(group)

    def train_group(group):
      # Everything the group needs starts here, its random stream included,
      # so that a task run again (on another worker) starts over cleanly.
      state = self._with_stage_rate(stage, (
          training.start_state(self.process, start_weights[group])
          if parent_state is None else self.process.set_model_weights(
              parent_state, start_weights[group])))
      state = self._train(
          f'{stage}/{group}', state,
          self._clients(stage, self.clients_of(group, stage),
                        groups.index(group)), rounds)
      return self.process.get_model_weights(state)

    with self._lock:  # Records keep the groups' order, whatever runs first.
      for group in trained:
        self.history.setdefault(f'{stage}/{group}', [])
    trained_weights = dict(zip(trained, self.map(train_group, trained)))
    return {group: trained_weights.get(group, start_weights[group])
            for group in groups}

  # Evaluation -----------------------------------------------------------

  def _weights_by_group(self, start: str) -> dict:
    if start in STAGE_TABLE and STAGE_TABLE[start].per_group:
      return self.group_weights(start)
    weights = self.weights(start)
    return {group: weights for group in self.groups()}

  @staticmethod
  def _grouping_stage(start: str) -> str:
    """The per-group stage whose grouping keys `_weights_by_group(start)`."""
    per_group = start in STAGE_TABLE and STAGE_TABLE[start].per_group
    return start if per_group else 'group'

  def _group_of(self, start: str, client: str) -> str:
    """The key of `client`'s model in `_weights_by_group(start)`."""
    return self.grouping_of(self._grouping_stage(start))[client]

  def _evaluate_reference(self, start: str) -> dict:
    """client -> sums of a unigram model (of all clients or of its group)."""
    num_tokens = self.batches.encoder.num_tokens
    split = self.config.eval_split
    fitted = {}
    results = {}
    for clients in self.eval_clients.values():
      for client in clients:
        key = self.grouping[client] if start == 'group_unigram' else None
        if key not in fitted:
          owners = (self.clients_of(key) if key is not None
                    else self.training_clients)
          fitted[key] = unigram.fit(
              (self.batches.arrays('train', c)['y'] for c in owners),
              num_tokens)
        results[client] = unigram.sums(fitted[key],
                                       self.batches.arrays(split, client)['y'])
    return results

  def _evaluate_start(self, spec: Method) -> dict:
    """client -> test sums of the weights of `spec.start`, fine-tuned or not
    (under the prior if `spec.prior`)."""
    start, finetune = spec.start, spec.finetune
    split = self.config.eval_split
    results = {}
    total = sum(len(c) for c in self.eval_clients.values())
    label = spec.label
    weights_by_group = self._weights_by_group(start)  # May train stages.
    precisions = self.prior_precisions(start) if spec.prior else None
    self.on_progress(label, 0, total)
    # Chunks of the evaluated clients that share a model (a group's).
    by_group = {}
    for clients in self.eval_clients.values():
      for client in clients:
        by_group.setdefault(self._group_of(start, client), []).append(client)
    chunks = [(group, clients[begin:begin + self.config.eval_chunk])
              for group, clients in by_group.items()
              for begin in range(0, len(clients), self.config.eval_chunk)]

    def score(chunk_of_group):
      group, chunk = chunk_of_group
      weights = weights_by_group[group]
      if finetune:
        args = (weights,
                *local_run_args(self.batches, chunk, self.config, split))
        if precisions is None:
          sums = self.local_stage.run(*args)
        else:
          # One precision per trainable tensor (a number: the same for all).
          sums = self.local_stage.run_prior(*args, np.broadcast_to(
              np.float32(precisions[group]['precision']),
              [len(weights.trainable)]).copy())
      else:
        sums = self.local_stage.evaluate_clients(
            weights, scored_datasets(self.batches, chunk, self.config, split))
      # Plain Python numbers: the same whether computed or resumed.
      chunk_results = {
          client: {k: float(v) if k != 'best_epoch' else int(v)
                   for k, v in client_sums.items()}
          for client, client_sums in zip(chunk, sums)}
      with self._lock:
        done[0] += len(chunk)
        self.on_progress(label, done[0], total)
      return chunk_results

    done = [0]
    for chunk_results in self.map(score, chunks):
      results.update(chunk_results)
    return results

  def evaluate(self, method: str) -> dict:
    """client id -> evaluation sums of `method` (each stage computed once)."""
    spec = METHOD_TABLE[method]
    if spec.reference:
      return self._stage(f'eval/{spec.start}',
                         lambda: self._evaluate_reference(spec.start))
    if self.store is not None and spec.start != 'initial':
      # A resumed run may hold this evaluation already; its stages are still
      # loaded (from their checkpoints) so that their records and curves are
      # in `history`, as in a run never stopped.
      self._weights_by_group(spec.start)
    return self._stage(spec.evaluation, lambda: self._evaluate_start(spec))

  def stages_of(self, method: str) -> list[str]:
    """Names of the stages `method` depends on, for timing reports."""
    spec = METHOD_TABLE[method]
    return self.path(spec.start) + [spec.evaluation]

  def budget(self, method: str) -> dict:
    """Rounds on the method's path, client updates, and fine-tuning."""
    spec = METHOD_TABLE[method]
    stages = self.path(spec.start)
    return {'rounds': sum(self._rounds(s) for s in stages),
            'client_updates': sum(self.client_updates(s) for s in stages),
            'finetuned': spec.finetune}

  def plan(self, methods: Sequence[str]) -> dict[str, tuple[int, float]]:
    """What the `methods` will run: progress label -> (steps, work).

    Labels and steps are those `on_progress` reports (rounds of a federated
    stage, evaluated clients of an evaluation). Work is a rough cost in
    client-epochs of training, for an estimate of the whole run's time left.
    """
    provisional = self._grouping is None and self.config.groups == 'inferred'
    if provisional:
      # Inferred groups need the global model: plan with K equal groups.
      k = self._num_groups()
      self._grouping = {c: grouping.group_name('cluster', i % k, k)
                        for i, c in enumerate(self.data.client_ids)}
    try:
      return self._plan(methods)
    finally:
      if provisional:
        self._grouping = None

  def _plan(self, methods: Sequence[str]) -> dict[str, tuple[int, float]]:
    epochs = self.training_config.client_epochs
    evaluated = sum(len(c) for c in self.eval_clients.values())
    plan = {}
    for method in methods:
      spec = METHOD_TABLE[method]
      if spec.reference:
        continue
      for stage in self.path(spec.start):
        rounds = self._rounds(stage)
        if STAGE_TABLE[stage].per_group:
          for group in self._trained_groups(stage):
            clients = len(self.clients_of(group, stage))
            plan[f'{stage}/{group}'] = (
                rounds, rounds * epochs * self._updates_per_round(clients))
        else:
          plan[stage] = (rounds, self.client_updates(stage) * epochs)
      # Evaluation costs about a third of a training epoch.
      per_client = (self.config.finetune_epochs + 1 if spec.finetune else 0.3)
      plan[spec.label] = (evaluated, evaluated * per_client)
    return plan

  def prior_precisions(self, start: str) -> dict:
    """group -> {'precision', 'spread' or 'held_out_loss', 'clients'} of the
    Gaussian prior around the group's model of `start`.

    `config.prior_precision` >= 0: that precision for every tensor (a value
    tuned on tuning clients). Negative: empirical Bayes, per group, from the
    group's tuning clients only (never reported), by
    `config.prior_estimator`. Two estimators match moments of the fine-tuning
    deltas: each tuning client is fine-tuned plainly (the same epochs,
    learning rate and patience) and its delta w_tuned - w_group measured per
    trainable tensor (`local_stage.prior_spread`, a federated mean over the
    clients):
      per_tensor  w_k ~ N(w_group_k, tau_k^2 I) independently for each weight
                  tensor k; tau_k^2 = mean over clients of ||delta_k||^2 /
                  D_k (D_k its entries); precision_k = 1 / tau_k^2.
                  'precision' and 'spread' are lists, one per tensor;
                  'shapes' lists the tensors' shapes, in the lists' order.
      isotropic   one tau^2 for all D parameters: sum_k D_k tau_k^2 / D;
                  'precision' and 'spread' are numbers.
    A zero spread (no tuning client, or a tensor no client moved) gives
    precision 0 (no prior on it); precisions are capped at 1e30 (float32
    stays finite). Per tensor is better than isotropic because fine-tuning
    moves some tensors far more than others (up to about 6,000 times in mean
    squared delta within a group, measured), but both are far too strong:
    fine-tuning stops early, so the deltas measure how far a few SGD steps
    move the weights, not how far the clients' optima lie from the group
    model, and tau^2 comes out 50 to 30,000 times too small
    (docs/RESULTS.md measures it). The third estimator asks the data
    directly, and is the default:
      predictive  empirical Bayes by held-out likelihood (type-II selection):
                  for each precision of PREDICTIVE_PRECISIONS the group's
                  tuning clients are fine-tuned under the prior (as
                  `groupperfl_prior`: epochs still picked on their
                  validation splits) and scored on their test splits; the
                  precision with the lowest token-weighted loss is kept
                  (equal losses: the smaller). 'precision' is that number
                  (the same for every tensor); 'held_out_loss' maps each
                  precision tried to its loss. The grid holds 0, so on the
                  tuning clients the prior never does worse than plain
                  fine-tuning.
      predictive_pooled  the same, with one precision shared by every group
                  (the hierarchy's prior scale as a hyperparameter of the
                  whole population, as in classical hierarchical empirical
                  Bayes): each group's tuning clients are fine-tuned under
                  the prior from their own group's model, and the precision
                  with the lowest loss over all groups' tuning clients
                  together is kept. Per-group choices rest on a group's few
                  tuning clients, whose losses across the grid can differ by
                  less than their noise; pooling uses every tuning client for
                  the one choice, and a group without tuning clients gets it
                  too. Measured (docs/RESULTS.md): it chooses what most groups
                  chose alone, and moves the results little either way.
                  Each group also reports its own 'held_out_loss';
                  'pooled_held_out_loss' holds the losses the choice used.
    """
    cap = 1e30
    def estimate():
      if self.config.prior_precision >= 0:
        return {group: {'precision': self.config.prior_precision,
                        'spread': 0.0, 'clients': 0.0}
                for group in self._weights_by_group(start)}
      tuning, _ = split_clients(self.data, self.config.tuning_fraction,
                                self.config.split_seed)
      tuning_clients = {c for clients in tuning.values() for c in clients}
      weights_by_group = self._weights_by_group(start)
      result = {}
      for group, weights in weights_by_group.items():
        clients = [c for c in self.clients_of(
            group, self._grouping_stage(start)) if c in tuning_clients]
        if self.config.prior_estimator.startswith('predictive'):
          result[group] = self._predictive_prior(weights, clients)
          continue
        sizes = np.array([np.size(w) for w in weights.trainable], np.float64)
        spreads = np.zeros(len(sizes))
        if clients:
          spreads = np.asarray(self.local_stage.prior_spread(
              weights, *local_run_args(self.batches, clients, self.config,
                                       split=None)), np.float64)
        if self.config.prior_estimator == 'isotropic':
          spread = float((sizes * spreads).sum() / sizes.sum())
          precision = min(1.0 / spread, cap) if spread > 0 else 0.0
        else:
          spread = [float(x) for x in spreads]
          precision = [min(1.0 / x, cap) if x > 0 else 0.0 for x in spread]
        result[group] = {'precision': precision, 'spread': spread,
                         'clients': float(len(clients)),
                         'shapes': [list(np.shape(w))
                                    for w in weights.trainable]}
      if self.config.prior_estimator == 'predictive_pooled':
        sums = [prior['held_out_sums'] for prior in result.values()]
        pooled = {p: sum(s[p][0] for s in sums)
                  / max(sum(s[p][1] for s in sums), 1.0)
                  for p in (f'{p:g}' for p in PREDICTIVE_PRECISIONS)}
        # The first of equal losses: the smaller precision.
        chosen = min(PREDICTIVE_PRECISIONS, key=lambda p: pooled[f'{p:g}'])
        for prior in result.values():
          prior['precision'] = chosen
          prior['pooled_held_out_loss'] = pooled
      return result

    return self._stage(f'prior/{start}', estimate)

  def _predictive_prior(self, weights, clients: list) -> dict:
    """The 'predictive' estimate of `prior_precisions` for one group: its
    model `weights` and tuning `clients` (ids)."""
    if not clients:  # No tuning client: no prior.
      return {'precision': 0.0, 'held_out_loss': {}, 'clients': 0.0,
              'held_out_sums': {f'{p:g}': [0.0, 0.0]
                                for p in PREDICTIVE_PRECISIONS}}
    num_tensors = len(weights.trainable)
    chunks = [clients[begin:begin + self.config.eval_chunk]
              for begin in range(0, len(clients), self.config.eval_chunk)]

    def held_out_sums(item):
      precision, chunk = item
      return precision, self.local_stage.run_prior(
          weights, *local_run_args(self.batches, chunk, self.config, 'test'),
          np.full([num_tensors], precision, np.float32))

    client_sums = {p: [] for p in PREDICTIVE_PRECISIONS}
    for precision, sums in self.map(
        held_out_sums, [(p, chunk) for p in PREDICTIVE_PRECISIONS
                        for chunk in chunks]):
      client_sums[precision].extend(sums)
    totals = {p: summary.add(sums) for p, sums in client_sums.items()}
    losses = {p: total['loss_sum'] / max(total['token_count'], 1.0)
              for p, total in totals.items()}
    # min() keeps the first of equal losses: the smaller precision.
    chosen = min(PREDICTIVE_PRECISIONS, key=lambda p: losses[p])
    return {'precision': chosen,
            'held_out_loss': {f'{p:g}': losses[p] for p in losses},
            # precision -> [loss sum, token count], for pooling groups.
            'held_out_sums': {f'{p:g}': [float(totals[p]['loss_sum']),
                                         float(totals[p]['token_count'])]
                              for p in totals},
            'clients': float(len(clients))}
