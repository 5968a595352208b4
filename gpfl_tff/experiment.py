"""One comparison of methods on one grouped dataset: build once, run the stage tree.

`run` knows nothing of flags or files: it takes configurations and returns the
results; `gpfl_tff.evaluation.report` writes them.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

from gpfl_tff.data import batches as batches_lib
from gpfl_tff.data import client_data
from gpfl_tff.data import text
from gpfl_tff.evaluation import paired
from gpfl_tff.evaluation import summary
from gpfl_tff.learning import checkpoints
from gpfl_tff.learning import grouping
from gpfl_tff.learning import local
from gpfl_tff.learning import methods as methods_lib
from gpfl_tff.learning import training
from gpfl_tff.models import language_model


@dataclasses.dataclass
class Outcome:
  """What `run` returns.

  results: the JSON-ready report (see `gpfl_tff.evaluation.report`).
  client_sums: method -> client id -> evaluation sums, seen clients.
  train_tokens: evaluated seen client id -> counted tokens of its train
    split.
  tree: the stage tree (histories, stage runs, timings).
  unseen_sums, unseen_tokens: the same for the unseen clients (held out of
    training); empty without them.
  """
  results: dict
  client_sums: dict
  train_tokens: dict
  tree: methods_lib.StageTree
  unseen_sums: dict = dataclasses.field(default_factory=dict)
  unseen_tokens: dict = dataclasses.field(default_factory=dict)


def build_tree(data: client_data.GroupedClientData,
               preset: language_model.Preset,
               training_config: training.TrainingConfig,
               stage_config: methods_lib.StageConfig) -> methods_lib.StageTree:
  """The stage tree of one comparison: model, learning process, local stage."""
  encoder = text.TextEncoder(data.vocabulary, preset.seq_len)
  model_fn = language_model.build_model_fn(
      preset, encoder.num_tokens, seed=stage_config.seed,
      cross_entropy=training_config.cross_entropy)
  client_batches = batches_lib.ClientBatches(data, encoder,
                                             training_config.batch_size)
  process = training.build_process(model_fn, training_config)
  tree = methods_lib.StageTree(
      process, local.build_local_stage(model_fn), client_batches,
      language_model.initial_weights(model_fn), training_config, stage_config)
  tree.build_statistics = lambda statistic: grouping.build_statistics(
      model_fn, encoder.num_tokens, statistic)
  return tree


def run(data: client_data.GroupedClientData, preset: language_model.Preset,
        training_config: training.TrainingConfig,
        stage_config: methods_lib.StageConfig, methods: Sequence[str],
        make_progress: Callable[[dict], Callable[[str, int, int], None]]
        | None = None,
        on_record: Callable[[str, dict], None] | None = None,
        tree: methods_lib.StageTree | None = None,
        store: checkpoints.RunStore | None = None,
        map_fn: Callable[[Callable, Sequence], list] | None = None,
        run_round: Callable | None = None,
        subgrouping: dict[str, str] | None = None) -> Outcome:
  """Trains the stages the `methods` need and evaluates every client.

  `make_progress`, given the plan of the run (`StageTree.plan`), returns the
  callback `(stage, done, total)` that the stages report progress to;
  `on_record(stage, record)` receives every round's record as it is made
  (train and validation perplexity), e.g. for live TensorBoard curves.
  `tree`: a stage tree from `build_tree` for these configurations (or from
  `StageTree.with_config`), whose trained stages are reused; by default a
  new one. `store`: where stages checkpoint and finished evaluations are
  kept, so that a run stopped midway and started again with the same
  configurations resumes and ends with the same results. `map_fn(fn, items)`
  runs the independent tasks of a stage (its groups, chunks of evaluated
  clients), e.g. `runtime.Workers.map` over several TFF workers; the results
  are the same either way. `run_round(process, state, datasets)` runs each
  training round (e.g. `runtime.Workers.run_round`, split over workers).
  `subgrouping` (client -> subgroup) enables the hierarchy's third level
  (the subgroup methods).
  """
  methods = methods_lib.check_methods(methods)
  start = time.time()
  if tree is None:
    tree = build_tree(data, preset, training_config, stage_config)
  elif tree.config != stage_config or tree.training_config != training_config:
    raise ValueError('the given tree was built for other configurations')
  client_batches = tree.batches
  tree.store = store
  if map_fn is not None:
    tree.map = map_fn
  if run_round is not None:
    tree.run_round = run_round
  if subgrouping is not None:
    tree.subgrouping = subgrouping
  if make_progress is not None:
    tree.on_progress = make_progress(tree.plan(methods))
  if on_record is not None:
    tree.on_record = on_record
  build_seconds = time.time() - start

  all_sums = {m: tree.evaluate(m) for m in methods}
  # Seen clients are the main report; unseen ones (held out of training,
  # `methods.unseen_clients`) are reported apart.
  client_sums = all_sums if not tree.unseen else {
      m: {c: v for c, v in sums.items() if c not in tree.unseen}
      for m, sums in all_sums.items()}
  unseen_sums = {m: {c: v for c, v in sums.items() if c in tree.unseen}
                 for m, sums in all_sums.items()}
  tokens = {c: client_batches.token_count('train', c)
            for clients in tree.eval_clients.values() for c in clients}
  train_tokens = {c: n for c, n in tokens.items() if c not in tree.unseen}
  unseen_tokens = {c: n for c, n in tokens.items() if c in tree.unseen}
  reference = None
  if 'fl' in client_sums:
    reference = {c: summary.perplexity(s) for c, s in client_sums['fl'].items()}
  reports = {
      m: {stage_config.eval_split: summary.summarize(
          sums, data.client_to_group, train_tokens,
          None if m == 'fl' else reference),
          'stages': tree.stages_of(m), 'budget': tree.budget(m)}
      for m, sums in client_sums.items()}
  # Every method against groupperfl, on the same clients and tokens:
  # negative means groupperfl is better.
  paired_results = {}
  if 'groupperfl' in client_sums:
    paired_results = {
        m: paired.difference(client_sums['groupperfl'], sums,
                             seed=stage_config.seed)
        for m, sums in client_sums.items() if m != 'groupperfl'}
  # The small-data claim: groupperfl's gain over perfl by client data size.
  small_data = []
  if 'groupperfl' in client_sums and 'perfl' in client_sums:
    small_data = paired.by_data_size(
        client_sums['groupperfl'], client_sums['perfl'], train_tokens,
        data.client_to_group, seed=stage_config.seed)
  # The hierarchical prior against plain fine-tuning, by client data size.
  prior_small_data = []
  if 'groupperfl_prior' in client_sums and 'groupperfl' in client_sums:
    prior_small_data = paired.by_data_size(
        client_sums['groupperfl_prior'], client_sums['groupperfl'],
        train_tokens, data.client_to_group, seed=stage_config.seed)
  priors = {m: tree.prior_precisions(methods_lib.METHOD_TABLE[m].start)
            for m in methods if methods_lib.METHOD_TABLE[m].prior}
  unseen = {}
  if unseen_tokens:
    unseen = {
        'clients': len(unseen_tokens),
        'methods': {m: summary.summarize(sums, data.client_to_group,
                                         unseen_tokens)
                    for m, sums in unseen_sums.items()},
        # The group's model against the global one, and every method
        # against groupperfl, on the unseen clients.
        'paired': _stage_pairs(unseen_sums, stage_config.seed, tuple(
            ('groupperfl', m) for m in methods if m != 'groupperfl'))}
  curves = tree.curves()
  results = {
      'methods': reports,
      'paired': paired_results,
      # What the group stage adds, with and without fine-tuning.
      'paired_stages': _stage_pairs(client_sums, stage_config.seed),
      'curves': curves,
      'small_data': small_data,
      'prior_small_data': prior_small_data,
      'unseen': unseen,
      'priors': priors,
      'convergence': {stage: summary.convergence(curve)
                      for stage, curve in curves.items()},
      'kept_rounds': tree.kept_rounds(),
      'eval_split': stage_config.eval_split,
      'groups_kept_start': sorted(tree.groups_kept_start),
      'groups': tree.grouping_report(),
      'evaluated_clients': len(train_tokens),
      'stage_runs': dict(tree.stage_runs),
      'seconds': {'build': build_seconds, **tree.seconds,
                  'total': time.time() - start},
      'model': dataclasses.asdict(preset),
      'training': dataclasses.asdict(training_config),
      'stages': dataclasses.asdict(stage_config),
      'dataset': data.stats,
  }
  return Outcome(results=results, client_sums=client_sums,
                 train_tokens=train_tokens, tree=tree,
                 unseen_sums=unseen_sums if unseen_tokens else {},
                 unseen_tokens=unseen_tokens)


def _stage_pairs(client_sums: dict, seed: int, more=()) -> dict:
  """'a - b' -> paired.difference(a, b) for each pair of
  `methods.STAGE_PAIRS` and `more` whose methods both ran."""
  return {f'{a} - {b}': paired.difference(client_sums[a], client_sums[b],
                                          seed=seed)
          for a, b in methods_lib.STAGE_PAIRS + tuple(more)
          if a in client_sums and b in client_sums}
