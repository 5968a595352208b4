"""Exact metrics from per-client sums: overall, per group, over clients.

Per-client sums (loss_sum, token_count, correct_count, word_count,
word_correct_count; see `gpfl_tff.models.metrics`) are added, never averaged,
before perplexity = exp(loss_sum / token_count), accuracy =
word_correct_count / word_count (word targets only, as TFF's Stack Overflow
baselines count it) and accuracy_with_oov_eos = correct_count / token_count
are formed. The distribution over clients uses each client's own perplexity.
"""

import math
from collections.abc import Iterable, Mapping

import numpy as np

from gpfl_tff.models import metrics

Sums = Mapping[str, float]


def add(sums: Iterable[Sums]) -> dict[str, float]:
  total = {key: 0.0 for key in metrics.SUM_NAMES}
  for s in sums:
    for key in total:
      total[key] += float(s[key])
  return total


def _ratio(numerator: float, denominator: float) -> float:
  return numerator / denominator if denominator > 0 else float('nan')


def perplexity(sums: Sums) -> float:
  if sums['token_count'] <= 0:
    return float('nan')
  return math.exp(sums['loss_sum'] / sums['token_count'])


def accuracy(sums: Sums) -> float:
  """Share of word targets predicted exactly (<oov>, <eos> excluded)."""
  return _ratio(sums['word_correct_count'], sums['word_count'])


def accuracy_with_oov_eos(sums: Sums) -> float:
  """Share of every counted target predicted exactly."""
  return _ratio(sums['correct_count'], sums['token_count'])


def _totals(client_sums: Mapping[str, Sums], clients: list[str]) -> dict:
  total = add(client_sums[c] for c in clients)
  return {'perplexity': perplexity(total), 'accuracy': accuracy(total),
          'accuracy_with_oov_eos': accuracy_with_oov_eos(total),
          'token_count': total['token_count'], 'clients': len(clients)}


def distribution(values: Iterable[float]) -> dict[str, float]:
  values = np.asarray(list(values), dtype=np.float64)
  return {'mean': float(values.mean()), 'median': float(np.median(values)),
          'p10': float(np.percentile(values, 10)),
          'p90': float(np.percentile(values, 90)), 'max': float(values.max())}


def _share_better(clients, client_ppl, reference) -> float | None:
  if reference is None:
    return None
  return float(np.mean([client_ppl[c] < reference[c] for c in clients]))


def summarize(client_sums: Mapping[str, Sums],
              client_to_group: Mapping[str, str],
              train_tokens: Mapping[str, int],
              reference: Mapping[str, float] | None = None) -> dict:
  """The report of one method.

  Args:
    client_sums: client id -> its test sums.
    client_to_group: client id -> group.
    train_tokens: client id -> counted tokens in its train split (for the
      quartiles of training-data size).
    reference: client id -> perplexity under the reference method (`fl`), for
      the share of clients this method serves better; None to leave it out.

  Returns:
    perplexity, accuracy, token_count, clients; per_group (the same per
    group); client_perplexity {mean, median, p10, p90, max};
    share_better_than_fl; by_train_size_quartile: for quartiles 1 (least
    data) to 4, clients, train token range, perplexity, median client
    perplexity and share_better_than_fl.
  """
  clients = sorted(client_sums)
  client_ppl = {c: perplexity(client_sums[c]) for c in clients}
  report = _totals(client_sums, clients)
  groups = sorted({client_to_group[c] for c in clients})
  report['per_group'] = {
      g: _totals(client_sums, [c for c in clients if client_to_group[c] == g])
      for g in groups}
  report['client_perplexity'] = distribution(client_ppl.values())
  report['share_better_than_fl'] = _share_better(clients, client_ppl,
                                                 reference)
  by_size = sorted(clients, key=lambda c: (train_tokens[c], c))
  quartiles = []
  for number, part in enumerate(np.array_split(by_size, 4), start=1):
    part = list(part)
    if not part:
      continue
    row = _totals(client_sums, part)
    row.update(quartile=number,
               train_tokens_min=int(train_tokens[part[0]]),
               train_tokens_max=int(train_tokens[part[-1]]),
               client_perplexity_median=float(
                   np.median([client_ppl[c] for c in part])),
               share_better_than_fl=_share_better(part, client_ppl,
                                                  reference))
    quartiles.append(row)
  report['by_train_size_quartile'] = quartiles
  return report


def convergence(curve: list[list[float]], tail: float = 0.2,
                tolerance: float = 0.02) -> dict | None:
  """Whether a validation curve is flat over its last `tail` of rounds.

  Args:
    curve: [[round, validation perplexity], ...] in round order.

  Returns:
    {from_round, to_round, improvement, converged, trend_improvement,
    trend_converged}: improvement is the relative drop in perplexity from
    the last point at or before round (1 - tail) * last round to the last
    point; converged if it is under `tolerance`. Two points carry the
    curve's point-to-point noise (3 to 8 % on converged federated curves
    here), so the trend is given too: the relative drop over the same
    rounds of a least-squares line through log perplexity at every point
    from `from_round` on (None with fewer than 3 points), and whether that
    is under `tolerance`. None if the curve has no point that early.
  """
  if len(curve) < 2:
    return None
  last_round, last = curve[-1]
  earlier = [p for p in curve[:-1] if p[0] <= (1.0 - tail) * last_round]
  if not earlier:
    return None
  from_round, reference = earlier[-1]
  improvement = (reference - last) / reference
  window = np.array([p for p in curve if p[0] >= from_round], np.float64)
  trend = None
  if len(window) >= 3:
    slope = np.polyfit(window[:, 0], np.log(window[:, 1]), 1)[0]
    trend = float(1.0 - np.exp(slope * (last_round - from_round)))
  return {'from_round': from_round, 'to_round': last_round,
          'improvement': float(improvement),
          'converged': bool(improvement < tolerance),
          'trend_improvement': trend,
          'trend_converged': None if trend is None else trend < tolerance}
