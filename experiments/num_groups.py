r"""How many groups, and which: given, inferred and random groups on one model.

  .venv/bin/python -m experiments.num_groups \
      --flagfile=experiments/configs/shakespeare.flags \
      --num_groups=2,6,12 --modes=given,inferred,random \
      --eval_clients_per_group=40 --output_dir=results/num_groups-shakespeare

Trains the global stage once, then for each grouping (mode x K) the group
stages from it and the `--methods` on top (`StageTree.with_config`: only the
per-group stages are trained again). `given` uses the data's groups (one K,
whatever --num_groups says); `inferred` clusters clients from the global
model by federated k-means; `random` deals them at random (the control).
Every grouping is scored on the same clients (the report clients of the
data's groups) and the same global model, so differences are paired: each
grouping's method is compared with the same method under `random` groups
at the same K, with a 95 % bootstrap interval over clients (negative: the
grouping is better than random).

Writes num_groups.json, num_groups.md (the table) and num_groups.png
(perplexity against K) to --output_dir.

A sweep may be run in parts (say K = 1, 2, 6, 12 one day and 4, 38 the
next, with the same flags and so the same global model); `--merge` then
combines the parts' num_groups.json into one table and figure without
training:

  .venv/bin/python -m experiments.num_groups \
      --merge=results/num_groups-a,results/num_groups-b \
      --output_dir=results/num_groups-merged

It refuses parts whose dataset, methods, evaluated clients or training and
stage settings differ (their rows would not share a global model or
clients); a grouping in several parts is kept from the first part named.
Each row keeps its own run's comparison with `random` at its K.
"""

import dataclasses
import json
import os

from absl import flags

from data import dataset_flags
from experiments import cli
from experiments import common_flags
from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.data import datasets
from gpfl_tff.evaluation import paired
from gpfl_tff.learning import grouping
from gpfl_tff.learning import methods as methods_lib

MODES = flags.DEFINE_list('modes', ['given', 'inferred', 'random'],
                          'Groupings: given, inferred, random.')
NUM_GROUPS = flags.DEFINE_list(
    'num_groups', [], 'K values for inferred and random groups (default: '
    'the number of given groups).')
METHODS = flags.DEFINE_list('methods', ['groupfl', 'groupperfl'],
                            'Methods scored under each grouping.')
EVAL_CLIENTS_PER_GROUP = flags.DEFINE_integer(
    'eval_clients_per_group', 0, 'The same seeded sample of this many report '
    'clients per given group for every grouping (0: every report client).')
OUTPUT_DIR = flags.DEFINE_string('output_dir', '', 'Where outputs go.')
MERGE = flags.DEFINE_list(
    'merge', [], 'Instead of training: output directories of earlier runs '
    'of this binary to combine into one table and figure (see the module '
    'doc).')
LOCAL_WORKERS = flags.DEFINE_integer(
    'local_workers', 0, 'Local TFF worker processes that run the groups of '
    'a stage and the chunks of evaluated clients concurrently (0: one per '
    'core, at most 2; the results do not depend on it).')
WORKER_CONCURRENCY = flags.DEFINE_integer(
    'worker_concurrency', 0, 'The most client computations each local '
    'worker runs at once (0: one per core; -1: no bound, TFF\'s default). '
    'Speed only: the results do not depend on it.')


def _parse_groupings() -> tuple[list[str], list[int]]:
  """The --modes and --num_groups values, checked (before any data loads)."""
  for mode in MODES.value:
    if mode not in grouping.GROUPINGS:
      cli.fail(f'--modes: unknown grouping {mode!r} (choose from '
               f'{", ".join(grouping.GROUPINGS)})')
  try:
    ks = [int(k) for k in NUM_GROUPS.value]
  except ValueError:
    cli.fail(f'--num_groups must be integers, got {",".join(NUM_GROUPS.value)}')
  if any(k < 1 for k in ks):
    cli.fail('--num_groups values must be at least 1')
  return list(MODES.value), ks


def _groupings(modes: list[str], ks: list[int],
               given_k: int) -> list[tuple[str, int]]:
  """(mode, K) to run: given first, then each K (default: given_k)."""
  result = []
  for k in sorted(set(ks or [given_k])):
    result += [(m, k) for m in modes if m != 'given']
  if 'given' in modes:
    result.insert(0, ('given', given_k))
  return result


def table(rows: list[dict], methods: list[str]) -> str:
  lines = ['| grouping | K | adjusted Rand index | '
           + ' | '.join(f'{m} perplexity | {m} vs random [95% CI]'
                        for m in methods) + ' |',
           '|---|---|---|' + '---|---|' * len(methods)]
  for row in rows:
    cells = [row['mode'], str(row['num_groups']),
             f'{row["adjusted_rand_index"]:.3f}']
    for m in methods:
      cells.append(f'{row["perplexity"][m]:.2f}')
      vs = row['vs_random'].get(m)
      cells.append('-' if vs is None else
                   f'{vs["mean"]:+.4f} [{vs["ci_low"]:+.4f}, '
                   f'{vs["ci_high"]:+.4f}]')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def figure(path: str, rows: list[dict], methods: list[str]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for mode, marker in (('inferred', 'o-'), ('random', 's--'), ('given', '*')):
    for m in methods:
      points = sorted((r['num_groups'], r['perplexity'][m]) for r in rows
                      if r['mode'] == mode)
      if points:
        ax.plot(*zip(*points), marker, label=f'{m}, {mode}',
                markersize=12 if mode == 'given' else 6)
  ax.set_xscale('log')
  ks = sorted({r['num_groups'] for r in rows})
  ax.set_xticks(ks)
  ax.set_xticklabels([str(k) for k in ks])
  ax.minorticks_off()
  ax.set_xlabel('number of groups K')
  ax.set_ylabel('test perplexity (report clients)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# What must agree between merged parts: their rows then share the global
# model and the scored clients. (The stages' `groups` and `num_groups` are
# the base configuration's, the same in every run of this binary.)
_MERGE_KEYS = ('dataset', 'group_by', 'grouping_statistic', 'methods',
               'evaluated_clients', 'training', 'stages')


def merge(directories: list[str]) -> dict:
  """One num_groups result from the num_groups.json of `directories`.

  Raises ValueError naming the first unreadable part or difference.
  """
  parts = []
  for directory in directories:
    path = os.path.join(directory, 'num_groups.json')
    try:
      with open(path, encoding='utf-8') as f:
        part = json.load(f)
    except (OSError, ValueError) as e:
      raise ValueError(f'{path}: unreadable ({e})') from None
    if not isinstance(part, dict) or not isinstance(part.get('rows'), list):
      raise ValueError(f'{path}: not a num_groups.json (no rows)')
    for key in _MERGE_KEYS:
      if parts and part.get(key) != parts[0].get(key):
        raise ValueError(f'refusing to merge: {key} of {directory} differs '
                         f'from {directories[0]}')
    parts.append(part)
  merged = {key: parts[0].get(key) for key in _MERGE_KEYS}
  merged['rows'], seen = [], set()
  for part in parts:
    for row in part['rows']:
      if (row['mode'], row['num_groups']) not in seen:
        seen.add((row['mode'], row['num_groups']))
        merged['rows'].append(row)
  merged['rows'].sort(key=lambda r: (r['num_groups'], r['mode']))
  merged['merged_from'] = list(directories)
  merged['environment'] = [part.get('environment') for part in parts]
  return merged


def write_outputs(output_dir: str, result: dict) -> str:
  """Writes num_groups.json, .md and .png; returns the table."""
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, 'num_groups.json'), 'w',
            encoding='utf-8') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  text = table(result['rows'], result['methods'])
  with open(os.path.join(output_dir, 'num_groups.md'), 'w',
            encoding='utf-8') as f:
    f.write(text)
  figure(os.path.join(output_dir, 'num_groups.png'), result['rows'],
         result['methods'])
  return text


def main_merge() -> None:
  if not OUTPUT_DIR.value:
    cli.fail('--merge needs --output_dir')
  output = os.path.realpath(OUTPUT_DIR.value)
  if any(os.path.realpath(d) == output for d in MERGE.value):
    cli.fail(f'--output_dir={OUTPUT_DIR.value} is one of the merged runs: '
             'its num_groups.json would be overwritten')
  try:
    result = merge(list(MERGE.value))
  except ValueError as e:
    cli.fail(str(e))
  text = write_outputs(OUTPUT_DIR.value, result)
  print(text)
  print(f'outputs in {OUTPUT_DIR.value}/')


def main(argv):
  del argv
  if MERGE.value:
    main_merge()
    return
  preset = common_flags.preset()
  try:
    methods = methods_lib.check_methods(METHODS.value)
    training_config = common_flags.training_config()
    base_config = common_flags.stage_config(
        eval_clients_per_group=EVAL_CLIENTS_PER_GROUP.value, curve_every=0)
  except ValueError as e:
    cli.fail(str(e))
  modes, ks = _parse_groupings()
  if LOCAL_WORKERS.value < 0:
    cli.fail('--local_workers must be 0 (one per core, at most 2) or '
             f'positive, got {LOCAL_WORKERS.value}')
  if WORKER_CONCURRENCY.value < -1:
    cli.fail('--worker_concurrency must be -1, 0 or positive, got '
             f'{WORKER_CONCURRENCY.value}')
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  groupings = _groupings(modes, ks, len(data.groups))
  output_dir = OUTPUT_DIR.value or (
      f'results/num_groups-{config.dataset}-seed{common_flags.SEED.value}')
  os.makedirs(output_dir, exist_ok=True)
  print(f'{config.dataset}: {len(data.client_ids)} clients, '
        f'{len(data.groups)} given groups; groupings: '
        + ', '.join(f'{m} K={k}' for m, k in groupings), flush=True)

  outcomes = {}
  with runtime.local_runtime(
      LOCAL_WORKERS.value,
      concurrent_calls=WORKER_CONCURRENCY.value) as workers:
    tree = experiment.build_tree(data, preset, training_config, base_config)
    for mode, k in groupings:
      stage_config = dataclasses.replace(
          base_config, groups=mode, num_groups=0 if mode == 'given' else k)
      outcome = experiment.run(data, preset, training_config, stage_config,
                               methods, tree=tree.with_config(stage_config),
                               map_fn=workers.map)
      outcomes[(mode, k)] = outcome
      print(f'{mode} K={k}: ' + ', '.join(
          f'{m} {outcome.results["methods"][m]["test"]["perplexity"]:.2f}'
          for m in methods) + ' (adjusted Rand index '
            f'{outcome.results["groups"]["adjusted_rand_index"]:.3f})',
            flush=True)

  rows = []
  for (mode, k), outcome in outcomes.items():
    control = outcomes.get(('random', k))
    rows.append({
        'mode': mode, 'num_groups': k,
        'adjusted_rand_index': outcome.results['groups'][
            'adjusted_rand_index'],
        'perplexity': {m: outcome.results['methods'][m]['test']['perplexity']
                       for m in methods},
        'vs_random': {} if control is None or mode == 'random' else {
            m: paired.difference(outcome.client_sums[m],
                                 control.client_sums[m],
                                 seed=base_config.seed) for m in methods},
        'seconds': outcome.results['seconds']})
  result = {'dataset': config.dataset, 'group_by': config.group_by,
            'grouping_statistic': base_config.grouping_statistic,
            'methods': methods, 'rows': rows,
            'evaluated_clients': len(next(iter(outcomes.values())
                                          ).train_tokens),
            'training': dataclasses.asdict(training_config),
            'stages': dataclasses.asdict(base_config),
            'environment': cli.environment()}
  text = write_outputs(output_dir, result)
  print()
  print(text)
  print(f'outputs in {output_dir}/')


if __name__ == '__main__':
  cli.run(main)
