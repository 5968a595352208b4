"""Writes an experiment's outputs: results.json, clients.csv (and
unseen_clients.csv), summary.md, the round metrics (TensorBoard and CSV,
`release`) and figures.
"""

import csv
import json
import math
import os

import numpy as np

from gpfl_tff.evaluation import release
from gpfl_tff.evaluation import summary
from gpfl_tff.models import metrics


def methods_table(results: dict) -> str:
  """The methods as a markdown table (lower perplexity is better).

  `vs groupperfl` is the paired difference in log-perplexity, groupperfl
  minus the method, with its 95 % bootstrap interval over clients (negative:
  groupperfl is better); budgets are rounds on the path and client updates.
  """
  split = results['eval_split']
  paired = results.get('paired', {})
  lines = [
      f'| method | {split} perplexity | accuracy | client ppl median | '
      'p10 | p90 | share better than fl | vs groupperfl [95% CI] | '
      'rounds | client updates |',
      '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for name, report in results['methods'].items():
    r = report[split]
    dist = r['client_perplexity']
    share = r['share_better_than_fl']
    budget = report.get('budget', {})
    versus = paired.get(name)
    lines.append(
        f"| {name} | {r['perplexity']:.2f} | {r['accuracy']:.4f} | "
        f"{dist['median']:.2f} | {dist['p10']:.2f} | {dist['p90']:.2f} | "
        f"{'-' if share is None else f'{share:.3f}'} | "
        + ('-' if versus is None else
           f"{versus['mean']:+.4f} [{versus['ci_low']:+.4f}, "
           f"{versus['ci_high']:+.4f}]")
        + f" | {budget.get('rounds', '-')} | "
        f"{budget.get('client_updates', '-')}"
        + (' + tuning' if budget.get('finetuned') else '') + ' |')
  return '\n'.join(lines)


def summary_markdown(results: dict) -> str:
  split = results['eval_split']
  data = results['dataset']
  parts = [
      f"# Methods on {data['config']['dataset']} grouped by "
      f"{data['config']['group_by']}",
      '',
      f"{data['num_clients']} clients in {data['num_groups']} groups; "
      f'metrics on each client\'s {split} split, token-weighted.',
      '',
      methods_table(results),
  ]
  if results['groups_kept_start']:
    parts += ['', 'Groups with too few clients kept their start weights: '
              + ', '.join(results['groups_kept_start'])]
  parts += ['', '## Perplexity by quartile of client training data', '',
            '| method | ' + ' | '.join(
                f'Q{q}' for q in range(1, 5)) + ' |',
            '|---|---|---|---|---|']
  for name, report in results['methods'].items():
    cells = [f"{row['perplexity']:.2f}"
             for row in report[split]['by_train_size_quartile']]
    parts.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(parts) + '\n'


def write_clients_csv(path: str, client_sums: dict,
                      client_to_group: dict, train_tokens: dict) -> None:
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['method', 'client_id', 'group', 'train_tokens',
                     *metrics.SUM_NAMES, 'perplexity', 'best_epoch'])
    for method, sums_by_client in client_sums.items():
      for client_id in sorted(sums_by_client):
        s = sums_by_client[client_id]
        writer.writerow([method, client_id, client_to_group[client_id],
                         train_tokens[client_id], f"{s['loss_sum']:.6f}",
                         *(int(s[k]) for k in metrics.SUM_NAMES[1:]),
                         f'{summary.perplexity(s):.6f}',
                         # The kept fine-tuning epoch; empty if not tuned.
                         int(s['best_epoch']) if 'best_epoch' in s else ''])


def write_curves_figure(path: str, curves: dict) -> None:
  """Validation perplexity by round, one line per stage (groups included)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(8, 5))
  for stage, curve in sorted(curves.items()):
    if curve:
      rounds, values = zip(*curve)
      ax.plot(rounds, values, marker='.', label=stage)
  ax.set_xlabel('round of the stage')
  ax.set_ylabel('validation perplexity')
  ax.set_yscale('log')
  ax.set_title('Federated validation curves')
  if curves:
    ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_small_data_figure(path: str, rows: list[dict]) -> None:
  """groupperfl minus perfl log-perplexity by bin of client data size."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4.5))
  if rows:
    x = [r['bin'] + 1 for r in rows]
    mean = np.array([r['mean'] for r in rows])
    ax.errorbar(x, mean, yerr=[mean - [r['ci_low'] for r in rows],
                               [r['ci_high'] for r in rows] - mean],
                marker='o', capsize=4)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{i}\n(median {r['train_tokens_median']:.0f})"
                        for i, r in zip(x, rows)], fontsize=8)
  ax.axhline(0.0, color='black', linewidth=0.8)
  ax.set_xlabel('bin of train tokens within the group (1 = least data)')
  ax.set_ylabel('log ppl(groupperfl) - log ppl(perfl)')
  ax.set_title('Gain of groupperfl over perfl by client data\n'
               '(below 0: groupperfl better; 95% bootstrap CI)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_figure(path: str, client_sums: dict, train_tokens: dict) -> None:
  """Per-client perplexity per method, and groupperfl's gain over perfl."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  methods = list(client_sums)
  has_gain = 'groupperfl' in client_sums and 'perfl' in client_sums
  fig, axes = plt.subplots(1, 2 if has_gain else 1,
                           figsize=(13 if has_gain else 7, 4.5),
                           squeeze=False)
  ax = axes[0][0]
  values = [[math.log(summary.perplexity(s)) for s in client_sums[m].values()]
            for m in methods]
  ax.boxplot(values, labels=methods, showfliers=False)
  ax.set_ylabel('log perplexity per client')
  ax.set_title('Per-client test perplexity')
  ax.tick_params(axis='x', rotation=30)
  if has_gain:
    ax = axes[0][1]
    clients = sorted(client_sums['perfl'])
    sizes = np.array([train_tokens[c] for c in clients])
    gain = np.array([
        math.log(summary.perplexity(client_sums['perfl'][c])) -
        math.log(summary.perplexity(client_sums['groupperfl'][c]))
        for c in clients])
    ax.scatter(sizes, gain, s=8, alpha=0.5)
    ax.axhline(0.0, color='black', linewidth=0.8)
    ax.set_xscale('log')
    ax.set_xlabel('client training tokens')
    ax.set_ylabel('log ppl(perfl) - log ppl(groupperfl)')
    ax.set_title('Gain of groupperfl over perfl (above 0: groupperfl better)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_all(output_dir: str, results: dict, client_sums: dict,
              client_to_group: dict, train_tokens: dict,
              history: dict, release_rounds: bool = True,
              unseen_sums: dict | None = None,
              unseen_tokens: dict | None = None) -> None:
  """Writes every output file into `output_dir` (created if needed).

  With `release_rounds`, every round record of `history` is released into
  tensorboard/ and metrics/ (`release.release_history`); False when a
  `release.RoundReleaser` released them during the run. With `unseen_sums`
  (and their `unseen_tokens`), the unseen clients' rows go to
  unseen_clients.csv, in clients.csv's columns.
  """
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, 'results.json'), 'w',
            encoding='utf-8') as f:
    json.dump(results, f, indent=2, sort_keys=True)
    f.write('\n')
  write_clients_csv(os.path.join(output_dir, 'clients.csv'), client_sums,
                    client_to_group, train_tokens)
  if unseen_sums:
    write_clients_csv(os.path.join(output_dir, 'unseen_clients.csv'),
                      unseen_sums, client_to_group, unseen_tokens)
  with open(os.path.join(output_dir, 'summary.md'), 'w',
            encoding='utf-8') as f:
    f.write(summary_markdown(results))
  if release_rounds:
    release.release_history(output_dir, history)
  write_curves_figure(os.path.join(output_dir, 'validation_curves.png'),
                      results.get('curves', {}))
  if results.get('small_data'):
    write_small_data_figure(os.path.join(output_dir, 'small_data.png'),
                            results['small_data'])
  write_figure(os.path.join(output_dir, 'client_perplexity.png'),
               client_sums, train_tokens)
