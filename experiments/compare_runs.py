r"""Two run_group_personalization outputs, method by method, paired over clients.

  .venv/bin/python -m experiments.compare_runs RUN_A RUN_B

For runs that differ in something other than the seed (two models, two
budgets, two settings of one flag) and scored the same clients on the same
tokens: for every method both runs have, the difference of A minus B in
token-weighted log-perplexity with its 95 % bootstrap interval over clients
(`gpfl_tff.evaluation.paired`; negative: A is better). The flags that differ
are printed first, so the table says what was compared.
`experiments.aggregate_results` is the tool for seeds of one setting; this one
is for two settings of one seed.

The runs must be of one dataset and split, and each method must have been
scored on the same clients and tokens in both (the same vocabulary: a token
counted in one vocabulary may be `<oov>` in another); otherwise the binary ends
with one `error:` line naming the difference.
"""

from experiments import aggregate_results
from experiments import cli
from gpfl_tff.evaluation import paired as paired_lib
from gpfl_tff.learning import methods as methods_lib


def differing_flags(a: dict, b: dict) -> list[str]:
  """'--flag: A vs B' for each flag whose values differ, read as
  `aggregate_results.flag_differences` reads them ('-': a flag one run does
  not record and that has no earlier value)."""
  show = lambda value: '-' if value is None else value
  return [f'--{flag}: {show(value_a)} vs {show(value_b)}'
          for flag, value_a, value_b in aggregate_results.flag_differences(a, b)
          if flag != 'output_dir']


def compare(a: dict, b: dict, sums_a: dict, sums_b: dict) -> list[dict]:
  """One row per method of both runs (in the order of methods.METHODS):
  method, perplexity of each run, and paired.difference(A, B).

  Raises:
    ValueError: the runs differ in dataset or split, have no method in
      common, or scored a method on other clients or tokens.
  """
  for key in ('dataset', 'eval_split'):
    if a.get(key) != b.get(key):
      raise ValueError(f'{key} differs ({a.get(key)} vs {b.get(key)})')
  split = a['eval_split']
  shared = [m for m in methods_lib.METHODS
            if m in a['methods'] and m in b['methods']]
  if not shared:
    raise ValueError('the runs have no method in common')
  rows = []
  for method in shared:
    clients_a, clients_b = sums_a.get(method, {}), sums_b.get(method, {})
    if set(clients_a) != set(clients_b):
      raise ValueError(f'{method} was scored on other clients in the two runs')
    try:
      row = paired_lib.difference(clients_a, clients_b)
    except ValueError as e:
      raise ValueError(f'{method}: {e}') from e
    row.update(method=method,
               perplexity_a=a['methods'][method][split]['perplexity'],
               perplexity_b=b['methods'][method][split]['perplexity'])
    rows.append(row)
  return rows


def table(rows: list[dict], split: str) -> str:
  lines = [f'| method | A {split} perplexity | B {split} perplexity | '
           'A - B (log ppl) [95% CI] | clients |', '|---|---|---|---|---|']
  for row in rows:
    lines.append(f'| {row["method"]} | {row["perplexity_a"]:.2f} | '
                 f'{row["perplexity_b"]:.2f} | '
                 f'{row["mean"]:+.4f} [{row["ci_low"]:+.4f}, '
                 f'{row["ci_high"]:+.4f}] | {row["clients"]} |')
  return '\n'.join(lines)


def main(argv):
  directories = argv[1:]
  if len(directories) != 2:
    cli.fail('give two output folders of run_group_personalization: '
             'RUN_A RUN_B')
  runs = [aggregate_results.load(d) for d in directories]
  sums = []
  for directory in directories:
    found = aggregate_results.client_sums(directory)
    if found is None:
      cli.fail(f'{directory}/clients.csv: not found')
    sums.append(found[0])
  try:
    rows = compare(runs[0], runs[1], sums[0], sums[1])
  except ValueError as e:
    cli.fail(f'cannot compare {directories[0]} with {directories[1]}: {e}')
  print(f'A = {directories[0]}, B = {directories[1]}')
  for line in differing_flags(runs[0], runs[1]) or ['no flag differs']:
    print(f'  {line}')
  print()
  print(table(rows, runs[0]['eval_split']))
  print()
  print('A - B: paired difference in token-weighted log-perplexity over the '
        'same clients (negative: A better)')


if __name__ == '__main__':
  cli.run(main, arguments=True)
