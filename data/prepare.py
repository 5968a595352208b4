r"""Prepares a grouped federated text dataset and prints its statistics.

  .venv/bin/python -m data.prepare --dataset=shakespeare --group_by=genre
  .venv/bin/python -m data.prepare --dataset=bbc
  .venv/bin/python -m data.prepare --dataset=wikipedia [--keep_uncategorized]
  .venv/bin/python -m data.prepare --dataset=text_corpus --input=articles.jsonl \
      --output_dir=/tmp/articles

Writes the prepared folder (TFF SQLite splits, groups.json, vocab.txt,
stats.json) to --output_dir, by default a folder in the cache keyed by the
flags; there, an earlier result is reused.
"""

import json
import os

from absl import flags

from data import dataset_flags
from experiments import cli
from gpfl_tff.data import datasets

OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', '', 'Where to write the prepared dataset (default: a folder '
    'under <cache_dir>/prepared named after the flags).')


def format_stats(stats: dict) -> str:
  """The statistics as a plain two-column table."""
  rows = [
      ('clients', stats['num_clients']),
      ('groups', stats['num_groups']),
      ('dropped clients', stats['dropped_clients']),
  ]
  for name in ('examples_per_client', 'words_per_client'):
    s = stats[name]
    rows.append((name.replace('_', ' ') + ' (min/median/max)',
                 f"{s['min']} / {s['median']:g} / {s['max']}"))
  for split in ('train', 'validation', 'test'):
    rows.append((f'{split} examples / words',
                 f"{stats['examples_per_split'][split]} / "
                 f"{stats['words_per_split'][split]}"))
  rows.append(('vocabulary size', stats['vocab_size']))
  rows.append((f"oov rate ({stats['oov_rate_split']})",
               f"{stats['oov_rate']:.4f}"))
  for group, count in stats['clients_per_group'].items():
    rows.append((f'  clients in {group}', count))
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'{name:<{width}}  {value}' for name, value in rows)


def main(argv):
  del argv
  config = dataset_flags.config()
  cache_dir = dataset_flags.cache_dir()
  output_dir = OUTPUT_DIR.value or datasets.prepared_dir(config, cache_dir)
  stats_path = os.path.join(output_dir, 'stats.json')
  if not OUTPUT_DIR.value and os.path.isfile(stats_path):
    with open(stats_path, encoding='utf-8') as f:
      stats = json.load(f)
  else:
    stats = datasets.prepare(config, output_dir, cache_dir)
  print(f'dataset {config.dataset} grouped by {config.group_by}: {output_dir}')
  print(format_stats(stats))


if __name__ == '__main__':
  cli.run(main)
