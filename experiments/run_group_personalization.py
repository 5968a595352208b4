r"""Compares GroupPerFL with its baselines on one grouped dataset.

  .venv/bin/python -m experiments.run_group_personalization \
      --dataset=shakespeare --group_by=genre --output_dir=results/shakespeare

Writes results.json, clients.csv, summary.md, tensorboard/ and
client_perplexity.png to --output_dir, and prints the methods table.
The defaults are sized for a 2-core CPU (model `small`).
"""

import sys
import time

from absl import flags

from data import dataset_flags
from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.data import datasets
from gpfl_tff.evaluation import report
from gpfl_tff.learning import methods as methods_lib
from gpfl_tff.learning import training
from gpfl_tff.models import language_model

METHODS = flags.DEFINE_string(
    'methods', 'all', 'Comma-separated methods, or all: '
    + ', '.join(methods_lib.METHODS) + '.')
MODEL = flags.DEFINE_enum('model', 'small', list(language_model.PRESETS),
                          'Model size preset.')
GLOBAL_ROUNDS = flags.DEFINE_integer('global_rounds', 20,
                                     'Rounds of the global stage.')
GROUP_ROUNDS = flags.DEFINE_integer('group_rounds', 10,
                                    'Rounds of each group process.')
CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', 10,
                                         'Clients sampled per round.')
CLIENT_EPOCHS = flags.DEFINE_integer('client_epochs', 1,
                                     'Local epochs per round.')
CLIENT_LR = flags.DEFINE_float('client_learning_rate', 0.5,
                               'Client SGD learning rate.')
SERVER_OPTIMIZER = flags.DEFINE_enum(
    'server_optimizer', 'sgd', list(training.SERVER_OPTIMIZERS),
    'sgd (FedAvg), sgdm (FedAvgM), adam (FedAdam) or yogi (FedYogi).')
SERVER_LR = flags.DEFINE_float('server_learning_rate', 1.0,
                               'Server learning rate.')
SERVER_MOMENTUM = flags.DEFINE_float('server_momentum', 0.9,
                                     'Momentum of the sgdm server optimizer.')
BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'Sequences per batch.')
FINETUNE_EPOCHS = flags.DEFINE_integer(
    'finetune_epochs', 3, 'Most local fine-tuning epochs (the best on the '
    "client's validation split is kept).")
FINETUNE_LR = flags.DEFINE_float('finetune_learning_rate', 0.1,
                                 'Local fine-tuning SGD learning rate.')
MIN_GROUP_CLIENTS = flags.DEFINE_integer(
    'min_group_clients', 2, 'Groups with fewer clients keep their start '
    'weights instead of training.')
SEED = flags.DEFINE_integer('seed', 0, 'Seeds initialization and sampling.')
EVAL_SPLIT = flags.DEFINE_enum(
    'eval_split', 'test', ['validation', 'test'],
    'Split to report; choose hyperparameters on validation.')
EVAL_CLIENTS_PER_GROUP = flags.DEFINE_integer(
    'eval_clients_per_group', 0, 'Evaluate every method on the same seeded '
    'sample of this many clients per group (0: every client).')
OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', '', 'Where outputs go (default: results/<dataset>-'
    '<group_by>-seed<seed>).')


class Progress:
  """Prints stage progress with elapsed time and the stage's time left."""

  def __init__(self):
    self.start = time.time()
    self.stage_start = {}

  def __call__(self, stage: str, done: int, total: int) -> None:
    now = time.time()
    begun = self.stage_start.setdefault(stage, now)
    if done == total:
      self.stage_start.pop(stage, None)
    left = (now - begun) / max(done, 1) * (total - done)
    print(f'[{now - self.start:7.1f}s] {stage}: {done}/{total} '
          f'(stage time left ~{left:.0f}s)', flush=True)


def parse_methods(value: str) -> list[str]:
  if value == 'all':
    return list(methods_lib.METHODS)
  return methods_lib.check_methods([m.strip() for m in value.split(',')
                                    if m.strip()])


def main(argv):
  del argv
  preset = language_model.PRESETS[MODEL.value]
  try:
    methods = parse_methods(METHODS.value)
    training_config = training.TrainingConfig(
        clients_per_round=CLIENTS_PER_ROUND.value,
        client_epochs=CLIENT_EPOCHS.value,
        client_learning_rate=CLIENT_LR.value,
        server_optimizer=SERVER_OPTIMIZER.value,
        server_learning_rate=SERVER_LR.value,
        server_momentum=SERVER_MOMENTUM.value, batch_size=BATCH_SIZE.value)
    stage_config = methods_lib.StageConfig(
        global_rounds=GLOBAL_ROUNDS.value, group_rounds=GROUP_ROUNDS.value,
        finetune_epochs=FINETUNE_EPOCHS.value,
        finetune_learning_rate=FINETUNE_LR.value,
        min_group_clients=MIN_GROUP_CLIENTS.value, seed=SEED.value,
        eval_split=EVAL_SPLIT.value,
        eval_clients_per_group=EVAL_CLIENTS_PER_GROUP.value)
  except ValueError as e:
    dataset_flags.fail(str(e))

  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  output_dir = OUTPUT_DIR.value or (
      f'results/{config.dataset}-{config.group_by}-seed{SEED.value}')
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  print(f'{config.dataset} by {config.group_by}: '
        f"{data.stats['num_clients']} clients, {len(data.groups)} groups; "
        f'methods: {", ".join(methods)}', flush=True)

  with runtime.local_runtime():
    outcome = experiment.run(data, preset, training_config, stage_config,
                             methods, on_progress=Progress())
    outcome.results['flags'] = {
        f.name: f.value
        for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
        if module in (__name__, sys.argv[0], dataset_flags.__name__)
        or module.endswith('run_group_personalization')
        for f in module_flags}
    report.write_all(output_dir, outcome.results, outcome.client_sums,
                     dict(data.client_to_group), outcome.train_tokens,
                     outcome.tree.history)
  print()
  print(report.methods_table(outcome.results))
  print(f'\noutputs in {output_dir}/ '
        f"(total {outcome.results['seconds']['total']:.0f}s)")
  sys.stdout.flush()


if __name__ == '__main__':
  dataset_flags.run(main)
