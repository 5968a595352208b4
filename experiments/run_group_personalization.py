r"""Compares GroupPerFL with its baselines on one grouped dataset.

  .venv/bin/python -m experiments.run_group_personalization \
      --dataset=shakespeare --group_by=genre --output_dir=results/shakespeare

Writes results.json, clients.csv, summary.md, client_perplexity.png and
validation_curves.png to --output_dir (with --unseen_fraction, also
unseen_clients.csv: the held-out clients' rows), and prints the methods
table. Every round's metrics are released as the run goes (tff.program
release managers: tensorboard/<stage>/ and metrics/<stage>.csv).
The defaults are sized for a 2-core CPU (model `small`).
"""

import contextlib
import dataclasses
import json
import os
import signal
import sys

from absl import flags

from data import dataset_flags
from experiments import cli
from experiments import common_flags
from experiments import progress as progress_lib
from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.data import datasets
from gpfl_tff.evaluation import release
from gpfl_tff.evaluation import report
from gpfl_tff.learning import checkpoints
from gpfl_tff.learning import methods as methods_lib

METHODS = flags.DEFINE_string(
    'methods', 'all', 'Comma-separated methods, or all: '
    + ', '.join(methods_lib.METHODS) + '.')
PROGRESS = flags.DEFINE_enum(
    'progress', 'bars', ['bars', 'lines'], 'bars: one progress bar per stage; '
    'lines: a line per round or evaluated chunk. Both go to '
    '<output_dir>/progress.log too.')
MIN_GROUP_CLIENTS = flags.DEFINE_integer(
    'min_group_clients', 2, 'Groups with fewer clients keep their start '
    'weights instead of training.')
EVAL_SPLIT = flags.DEFINE_enum(
    'eval_split', 'test', ['validation', 'test'],
    'Split to report; choose hyperparameters on validation.')
EVAL_CLIENTS = flags.DEFINE_enum(
    'eval_clients', 'report', ['report', 'tuning', 'all'],
    'Which clients are scored: report clients (numbers to publish), tuning '
    'clients (choose hyperparameters on these only) or all.')
CURVE_EVERY = flags.DEFINE_integer(
    'curve_every', 5, 'Evaluate every federated stage on validation data '
    'every this many rounds (and at its last round), for the curves; 0: off.')
CURVE_CLIENTS = flags.DEFINE_integer(
    'curve_clients', 50, 'Clients (a fixed sample of the stage\'s clients) '
    'whose validation splits give the curves.')
STAGE_SELECTION = flags.DEFINE_enum(
    'stage_selection', 'last', ['last', 'best'], 'Which round of each '
    'federated stage its methods use: the last, or the best on its '
    'validation curve (round 0, the stage\'s start, included; needs '
    '--curve_every and --curve_clients above 0).')
GROUPS = flags.DEFINE_enum(
    'groups', 'given', ['given', 'inferred', 'random'], 'Groups of the group '
    'stages: the data\'s (given), inferred without labels from the global '
    'model by federated k-means, or dealt at random (the control).')
NUM_GROUPS = flags.DEFINE_integer(
    'num_groups', 0, 'inferred or random: how many groups (0: as many as '
    'the data gives).')
SUBGROUPS = flags.DEFINE_enum(
    'subgroups', 'none', ['none', 'client_prefix'], 'A third level of the '
    'hierarchy (global -> group -> subgroup -> client) for the subgroupfl and '
    'subgroupperfl methods: client_prefix = the part of a client id before '
    'its first "/" (Shakespeare: the play; each within a genre).')
UNSEEN_FRACTION = flags.DEFINE_float(
    'unseen_fraction', 0.0, 'Share of each group\'s clients (drawn from its '
    'report clients by --split_seed) held out of every training stage, then '
    'personalized from their group\'s model and reported apart ("unseen").')
EVAL_CLIENTS_PER_GROUP = flags.DEFINE_integer(
    'eval_clients_per_group', 0, 'Evaluate every method on the same seeded '
    'sample of this many clients per group (0: every client).')
CHECKPOINT_EVERY = flags.DEFINE_integer(
    'checkpoint_every', 20, 'Checkpoint every federated stage every this many '
    'rounds (and at its end) in <output_dir>/state, and keep finished '
    'evaluations there: the same command run again resumes. 0: off.')
WORKERS = flags.DEFINE_list(
    'workers', [], 'host:port,... of TFF worker_binary processes started '
    'elsewhere (see README, "Remote workers"): the groups of a stage and the '
    'chunks of evaluated clients run on them concurrently. Empty: local '
    'workers (--local_workers).')
WORKER_TIMEOUT = flags.DEFINE_float(
    'worker_timeout', 30.0, 'Seconds a remote worker may take to answer (at '
    'the start, or again after its connection broke) before it counts as '
    'lost.')
SPLIT_ROUNDS = flags.DEFINE_boolean(
    'split_rounds', False, 'With several workers: split each training '
    'round\'s clients over them (TFF\'s mergeable execution context) instead '
    'of running the groups and chunks concurrently.')
LOCAL_WORKERS = flags.DEFINE_integer(
    'local_workers', 0, 'Without --workers: how many local TFF worker '
    'processes run the groups and chunks concurrently (0: one per core, at '
    'most 2). Speed only: the results do not depend on it.')
WORKER_CONCURRENCY = flags.DEFINE_integer(
    'worker_concurrency', 0, 'The most client computations each local '
    'worker runs at once (0: one per core; -1: no bound, TFF\'s default). '
    'Speed only: the results do not depend on it.')
OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', '', 'Where outputs go (default: results/<dataset>-'
    '<group_by>-seed<seed>).')


def parse_methods(value: str, subgroups: bool) -> list[str]:
  """The methods of --methods; `all` leaves out the subgroup methods unless
  there are subgroups."""
  if value == 'all':
    return [m for m in methods_lib.METHODS
            if subgroups or not methods_lib.needs_subgroups(m)]
  methods = methods_lib.check_methods([m.strip() for m in value.split(',')
                                       if m.strip()])
  if not subgroups:
    missing = [m for m in methods if methods_lib.needs_subgroups(m)]
    if missing:
      raise ValueError(f'{", ".join(missing)} need --subgroups')
  return methods


class _Stopped(Exception):
  """Raised at a stopping point after SIGINT or SIGTERM."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


class _StopRequests:
  """SIGINT and SIGTERM end the run at its next stopping point.

  An exception raised by the signal itself could land anywhere: inside a
  checkpoint being written, or while TFF's event-loop thread still runs a
  computation (measured: the driver then sometimes aborted with SIGABRT
  instead of exiting). So the first signal is only recorded, and `check()`,
  called after every round and every evaluated chunk, raises `_Stopped`
  there: the round's state is whole and `run_rounds` saves it. A second
  signal exits at once.
  """

  def __init__(self):
    self.signum = None
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, self._record)

  def _record(self, signum, frame):
    del frame
    if self.signum is not None:
      sys.exit(128 + signum)
    self.signum = signum

  def check(self) -> None:
    if self.signum is not None:
      raise _Stopped(self.signum)


def _check_resumable(state_dir: str, run_config: dict,
                     defaults: dict) -> None:
  """Refuses a run whose configuration differs from the one in `state_dir`.

  The first run writes its configuration there; a later run must match it
  field by field (field names are flag names), or it ends with one error
  line: resumed stages and kept evaluations would not be its own. A field
  the stored run does not record was added to the code since; it held its
  default then, or the value that gives the behaviour of the code before it
  (`defaults`: part -> field -> that value; see
  `methods.values_before_fields`).
  """
  path = os.path.join(state_dir, 'run.json')
  if not os.path.exists(path):
    os.makedirs(state_dir, exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(run_config, f, indent=2, sort_keys=True)
    os.replace(path + '.tmp', path)
    return
  try:
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
  except (OSError, ValueError) as e:
    cli.fail(f'{path}: unreadable ({e}); it records the run being '
             'resumed: use another --output_dir')
  for part in sorted(set(stored) | set(run_config)):
    before, now = stored.get(part, {}), run_config.get(part, {})
    for name in sorted(set(before) | set(now)):
      old = before.get(name, defaults.get(part, {}).get(name))
      if old != now.get(name):
        cli.fail(
            f'{os.path.dirname(state_dir)} holds a run with --{name}='
            f'{old}; this command gives --{name}={now.get(name)}'
            ' (use another --output_dir, or the same flags to resume)')


def main(argv):
  del argv
  preset = common_flags.preset()
  try:
    methods = parse_methods(METHODS.value, SUBGROUPS.value != 'none')
    training_config = common_flags.training_config()
    stage_config = common_flags.stage_config(
        min_group_clients=MIN_GROUP_CLIENTS.value, eval_split=EVAL_SPLIT.value,
        eval_clients=EVAL_CLIENTS.value, curve_every=CURVE_EVERY.value,
        curve_clients=CURVE_CLIENTS.value,
        stage_selection=STAGE_SELECTION.value,
        eval_clients_per_group=EVAL_CLIENTS_PER_GROUP.value,
        groups=GROUPS.value, num_groups=NUM_GROUPS.value,
        unseen_fraction=UNSEEN_FRACTION.value)
  except ValueError as e:
    cli.fail(str(e))

  if LOCAL_WORKERS.value < 0:
    cli.fail('--local_workers must be 0 (one per core, at most 2) or '
             f'positive, got {LOCAL_WORKERS.value}')
  if WORKER_CONCURRENCY.value < -1:
    cli.fail('--worker_concurrency must be -1, 0 or positive, got '
             f'{WORKER_CONCURRENCY.value}')
  if len(set(WORKERS.value)) != len(WORKERS.value):
    cli.fail(f'--workers repeats an address: {",".join(WORKERS.value)}')
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  output_dir = OUTPUT_DIR.value or (
      f'results/{config.dataset}-{config.group_by}-seed{common_flags.SEED.value}')
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  print(f'{config.dataset} by {config.group_by}: '
        f"{data.stats['num_clients']} clients, {len(data.groups)} groups; "
        f'methods: {", ".join(methods)}', flush=True)

  subgrouping = None
  if SUBGROUPS.value == 'client_prefix':
    subgrouping = {c: c.split('/')[0] for c in data.client_ids}
  os.makedirs(output_dir, exist_ok=True)
  bars = []

  def close_bars():  # Ends the bars' lines before a last message.
    for bar in bars:
      bar.close()

  stop = _StopRequests()

  def make_progress(plan):
    bars.append(progress_lib.Progress(
        plan, os.path.join(output_dir, 'progress.log'),
        lines=PROGRESS.value == 'lines'))

    def report(*step):
      bars[-1](*step)
      stop.check()  # After each round or chunk: the stopping point.

    return report

  store = None
  if CHECKPOINT_EVERY.value > 0:
    state_dir = os.path.join(output_dir, 'state')
    _check_resumable(state_dir, {
        'dataset': dataclasses.asdict(config),
        'model': {'model': common_flags.MODEL.value},
        'training': dataclasses.asdict(training_config),
        'stages': dataclasses.asdict(stage_config)}, {
            part: methods_lib.values_before_fields(type(value))
            for part, value in (('dataset', config),
                                ('training', training_config),
                                ('stages', stage_config))})
    store = checkpoints.RunStore(state_dir, CHECKPOINT_EVERY.value)
  releaser = release.RoundReleaser(output_dir)
  with contextlib.ExitStack() as stack:
    try:
      workers = stack.enter_context(
          runtime.remote_runtime(WORKERS.value,
                                 connect_seconds=WORKER_TIMEOUT.value,
                                 split_rounds=SPLIT_ROUNDS.value)
          if WORKERS.value else runtime.local_runtime(
              LOCAL_WORKERS.value, split_rounds=SPLIT_ROUNDS.value,
              concurrent_calls=WORKER_CONCURRENCY.value))
    except runtime.WorkerError as e:
      cli.fail(str(e))
    try:
      outcome = experiment.run(data, preset, training_config, stage_config,
                               methods, make_progress=make_progress,
                               on_record=releaser, store=store,
                               map_fn=workers.map,
                               run_round=workers.run_round,
                               subgrouping=subgrouping)
    except (checkpoints.CheckpointError, runtime.WorkerError) as e:
      close_bars()
      resume = (f'; re-run the same command to resume from {output_dir}/state'
                if store and isinstance(e, runtime.WorkerError) else '')
      cli.fail(f'{e}{resume}')
    except _Stopped as e:
      close_bars()
      print(f'stopped; re-run the same command to resume from '
            f'{output_dir}/state' if store else 'stopped', file=sys.stderr)
      sys.exit(128 + e.signum)
    finally:
      close_bars()
    outcome.results['flags'] = {
        f.name: f.value
        for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
        if module in (__name__, sys.argv[0], dataset_flags.__name__,
                      common_flags.__name__)
        or module.endswith('run_group_personalization')
        for f in module_flags}
    outcome.results['environment'] = cli.environment()
    report.write_all(output_dir, outcome.results, outcome.client_sums,
                     dict(data.client_to_group), outcome.train_tokens,
                     outcome.tree.history, release_rounds=False,
                     unseen_sums=outcome.unseen_sums,
                     unseen_tokens=outcome.unseen_tokens)
  print()
  print(report.methods_table(outcome.results))
  print(f'\noutputs in {output_dir}/ '
        f"(total {outcome.results['seconds']['total']:.0f}s)")
  sys.stdout.flush()


if __name__ == '__main__':
  cli.run(main)
