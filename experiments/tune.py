r"""Chooses hyperparameters on tuning clients only, and writes a flag file.

  .venv/bin/python -m experiments.tune --dataset=shakespeare --family=federated \
      --client_learning_rates=0.3,1.0 --server_optimizers=sgd:1.0,adam:0.01 \
      --output_dir=results/tune-shakespeare
  .venv/bin/python -m experiments.tune --dataset=shakespeare --family=finetune \
      --flagfile=results/tune-shakespeare/federated.flags \
      --finetune_learning_rates=0.03,0.1,0.3 --finetune_epochs_grid=1,3,5 \
      --output_dir=results/tune-shakespeare

Every grid point runs `gpfl_tff.experiment.run` with `eval_clients='tuning'`:
the scored clients are each group's tuning clients (`methods.split_clients`,
by --split_seed), scored on their test splits, which are never reported.
Report clients are not scored at all, so nothing reported can leak into the
choice. Training still uses every client's train split, and each client's
validation split still picks its fine-tuning epoch.

Families:
  federated  client learning rate x server optimizer x server learning rate;
             scored by the mean log-perplexity of `fl` and `groupfl` (the
             global and group stages).
  finetune   fine-tuning learning rate x most epochs, the federated flags
             fixed; scored by the mean log-perplexity of `perfl` and
             `groupperfl`, the same rule for both fine-tuned families. The
             federated stages are trained once and shared by every point
             (`StageTree.with_config`).
  prior      the precision of groupperfl_prior's Gaussian prior
             (--prior_precisions; a negative value: empirical Bayes), the
             other flags fixed; scored by `groupperfl_prior`; trained once.
Writes <family>_grid.json (every point and its scores), and <family>.flags:
the given flags with the chosen values, for `--flagfile`.
"""

import itertools
import json
import math
import os

from absl import flags

from data import dataset_flags
from experiments import cli
from experiments import common_flags
from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.data import datasets

FAMILY = flags.DEFINE_enum('family', 'federated',
                           ['federated', 'finetune', 'prior'],
                           'Which hyperparameters to sweep.')
CLIENT_LRS = flags.DEFINE_list('client_learning_rates', ['0.3', '1.0'],
                               'federated: client learning rates.')
SERVER_OPTIMIZERS = flags.DEFINE_list(
    'server_optimizers', ['sgd'],
    'federated: server optimizers, each `name` (crossed with '
    '--server_learning_rates) or `name:lr` (that learning rate only, since '
    'adaptive optimizers want rates far from sgd\'s).')
SERVER_LRS = flags.DEFINE_list('server_learning_rates', ['1.0'],
                               'federated: server learning rates.')
FINETUNE_LRS = flags.DEFINE_list('finetune_learning_rates', ['0.1'],
                                 'finetune: fine-tuning learning rates.')
FINETUNE_EPOCHS_GRID = flags.DEFINE_list('finetune_epochs_grid', ['3'],
                                         'finetune: most fine-tuning epochs.')
PRIOR_PRECISIONS = flags.DEFINE_list(
    'prior_precisions', ['-1', '1000', '10000'],
    'prior: prior precisions (negative: empirical Bayes).')
OUTPUT_DIR = flags.DEFINE_string('output_dir', 'results/tune',
                                 'Where the grid and the flag file go.')

_SCORED = {'federated': ('fl', 'groupfl'), 'finetune': ('perfl', 'groupperfl'),
           'prior': ('groupperfl_prior',)}
# Grid fields of the stage configuration (the others are training fields).
_STAGE_FIELDS = ('finetune_learning_rate', 'finetune_epochs',
                 'prior_precision')


def _grid() -> list[dict]:
  def floats(values):
    return [float(v) for v in values]

  if FAMILY.value == 'federated':
    servers = []
    for entry in SERVER_OPTIMIZERS.value:
      name, _, rate = entry.partition(':')
      rates = floats([rate]) if rate else floats(SERVER_LRS.value)
      servers += [(name, r) for r in rates]
    return [{'client_learning_rate': c, 'server_optimizer': o,
             'server_learning_rate': s}
            for c, (o, s) in itertools.product(floats(CLIENT_LRS.value),
                                               servers)]
  if FAMILY.value == 'prior':
    return [{'prior_precision': p} for p in floats(PRIOR_PRECISIONS.value)]
  return [{'finetune_learning_rate': lr, 'finetune_epochs': int(e)}
          for lr, e in itertools.product(floats(FINETUNE_LRS.value),
                                         FINETUNE_EPOCHS_GRID.value)]


def _flag_lines(choice: dict, vocab_size: int) -> list[str]:
  """Every flag of the binaries' configuration, with `choice` applied.

  `vocab_size` is the one the run used (the model preset's unless the flag
  was given): written as the flag's value, it keeps the file's runs on it.
  """
  # Not the cache folder: a flag file is meant for other machines too.
  values = {f.name: f.value for f in common_flags.flags_for_files()
            if f.name != 'cache_dir'}
  values['vocab_size'] = vocab_size
  values.update(choice)
  return [f'--{name}={value}' for name, value in sorted(values.items())]


def main(argv):
  del argv
  preset = common_flags.preset()
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  try:
    grid = _grid()
  except ValueError as e:
    cli.fail(f'bad grid value ({e})')
  methods = _SCORED[FAMILY.value]
  points = []
  tree = None
  with runtime.local_runtime():
    for number, point in enumerate(grid, start=1):
      try:
        training_config = common_flags.training_config(
            **{k: v for k, v in point.items() if k not in _STAGE_FIELDS})
        stage_config = common_flags.stage_config(
            eval_clients='tuning', curve_every=0,
            **{k: v for k, v in point.items() if k in _STAGE_FIELDS})
      except ValueError as e:
        cli.fail(f'grid point {point}: {e}')
      if FAMILY.value != 'federated':
        # Fine-tuning settings leave the federated stages unchanged: they
        # are trained once, on the first point, and shared.
        tree = (experiment.build_tree(data, preset, training_config,
                                      stage_config) if tree is None
                else tree.with_config(stage_config))
      outcome = experiment.run(data, preset, training_config, stage_config,
                               list(methods), tree=tree)
      perplexities = {m: outcome.results['methods'][m]['test']['perplexity']
                      for m in methods}
      score = sum(math.log(p) for p in perplexities.values()) / len(methods)
      points.append({'point': point, 'perplexity': perplexities,
                     'mean_log_perplexity': score,
                     'seconds': outcome.results['seconds']['total']})
      print(f'[{number}/{len(grid)}] {point}: ' + ', '.join(
          f'{m} {p:.2f}' for m, p in perplexities.items()), flush=True)

  best = min(points, key=lambda p: p['mean_log_perplexity'])
  os.makedirs(OUTPUT_DIR.value, exist_ok=True)
  family = FAMILY.value
  with open(os.path.join(OUTPUT_DIR.value, f'{family}_grid.json'), 'w',
            encoding='utf-8') as f:
    json.dump({'family': family, 'scored_methods': list(methods),
               'scored_clients': 'tuning', 'dataset': config.dataset,
               'points': points, 'choice': best['point']}, f, indent=2)
    f.write('\n')
  flag_file = os.path.join(OUTPUT_DIR.value, f'{family}.flags')
  with open(flag_file, 'w', encoding='utf-8') as f:
    f.write(f'# Chosen by experiments.tune --family={family} on tuning '
            'clients only.\n')
    f.write('\n'.join(_flag_lines(best['point'], config.vocab_size)) + '\n')
  print(f'choice: {best["point"]} (mean log-perplexity '
        f'{best["mean_log_perplexity"]:.4f}); wrote {flag_file}')


if __name__ == '__main__':
  cli.run(main)
