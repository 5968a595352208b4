"""Paired comparisons of two methods over the same clients, with a bootstrap.

The statistic is the difference in token-weighted log-perplexity,
  d = sum_c loss_a(c) / sum_c n(c) - sum_c loss_b(c) / sum_c n(c),
over the clients both methods scored on the same tokens (n(c) counted
targets): d < 0 means method `a` is better. Its 95 % interval comes from a
bootstrap over clients (resampling clients with replacement, `resamples`
times, seeded): clients, not tokens, are the independent units.
"""

from collections.abc import Mapping

import numpy as np

Sums = Mapping[str, float]


def difference(a: Mapping[str, Sums], b: Mapping[str, Sums],
               resamples: int = 2000, seed: int = 0,
               level: float = 0.95) -> dict:
  """Paired difference of `a` minus `b` (client id -> sums) and its interval.

  Returns:
    {mean, ci_low, ci_high, clients, resamples}: `mean` is d on all clients.
  """
  clients = sorted(set(a) & set(b))
  if not clients:
    raise ValueError('no client is scored by both methods')
  tokens = np.array([a[c]['token_count'] for c in clients], np.float64)
  other = np.array([b[c]['token_count'] for c in clients], np.float64)
  if not np.array_equal(tokens, other):
    raise ValueError('the methods were scored on different tokens')
  delta = np.array([a[c]['loss_sum'] - b[c]['loss_sum'] for c in clients],
                   np.float64)
  rng = np.random.default_rng(seed)
  picks = rng.integers(0, len(clients), size=(resamples, len(clients)))
  boot = delta[picks].sum(axis=1) / np.maximum(tokens[picks].sum(axis=1), 1.0)
  tail = (1.0 - level) / 2.0 * 100.0
  return {'mean': float(delta.sum() / max(tokens.sum(), 1.0)),
          'ci_low': float(np.percentile(boot, tail)),
          'ci_high': float(np.percentile(boot, 100.0 - tail)),
          'clients': len(clients), 'resamples': resamples}


def by_data_size(a: Mapping[str, Sums], b: Mapping[str, Sums],
                 train_tokens: Mapping[str, int],
                 client_to_group: Mapping[str, str], bins: int = 5,
                 resamples: int = 2000, seed: int = 0) -> list[dict]:
  """`difference(a, b)` within bins of clients by their training data.

  A client's bin is the quantile of its train tokens within its own group
  (so that every bin holds clients of every group, and a group with more data
  does not fill the top bins): bin k of `bins` holds the clients whose
  within-group rank r of n has floor(bins * r / n) = k, least data first.

  Returns:
    One dict per non-empty bin: bin, clients, train_tokens_median and the
    `difference` fields.
  """
  members = {}
  for group in sorted(set(client_to_group[c] for c in a)):
    clients = sorted((c for c in a if client_to_group[c] == group),
                     key=lambda c: (train_tokens[c], c))
    for rank, client in enumerate(clients):
      members.setdefault(bins * rank // len(clients), []).append(client)
  rows = []
  for index in sorted(members):
    clients = members[index]
    row = difference({c: a[c] for c in clients}, {c: b[c] for c in clients},
                     resamples=resamples, seed=seed)
    row.update(bin=index, train_tokens_median=float(
        np.median([train_tokens[c] for c in clients])))
    rows.append(row)
  return rows
