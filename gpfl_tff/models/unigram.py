"""Add-one smoothed unigram models: the reference rows of the methods table.

A neural model that does not beat counting words has learned little; these
rows say how far above counting the methods are, on the same tokens.

The model predicts every target with one distribution over the token ids that
can be targets: the words, <oov> and <eos> (not <pad> or <bos>). It is fitted
on the counted targets of train splits (all clients', or one group's):
p(t) = (count(t) + 1) / (total + V), V = the number of such ids. Its sums are
those of `gpfl_tff.models.metrics.token_sums`; its prediction is the most
frequent id, so its accuracy is that of always guessing it.
"""

from collections.abc import Iterable

import numpy as np

from gpfl_tff.data import text


def fit(targets: Iterable[np.ndarray], num_tokens: int) -> np.ndarray:
  """Log-probabilities [num_tokens] (-inf for <pad>, <bos>) from targets.

  Args:
    targets: int arrays of target ids (any shape); 0 = padding, not counted.
    num_tokens: size of the id space (vocabulary + special tokens).
  """
  counts = np.zeros(num_tokens, np.float64)
  for array in targets:
    counts += np.bincount(np.ravel(array), minlength=num_tokens)
  possible = np.ones(num_tokens, bool)
  possible[[text.PAD_ID, text.BOS_ID]] = False
  counts[~possible] = 0.0
  smoothed = np.where(possible, counts + 1.0, 0.0)
  with np.errstate(divide='ignore'):
    return np.log(smoothed / smoothed.sum())


def sums(log_probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """The `metrics.token_sums` of the unigram model on one client's targets."""
  targets = np.ravel(targets)
  counted = targets[targets != text.PAD_ID]
  words = counted[counted >= len(text.SPECIAL_TOKENS)]
  guess = int(np.argmax(log_probs))
  return {
      'loss_sum': float(-log_probs[counted].sum()),
      'token_count': float(counted.size),
      'correct_count': float(np.count_nonzero(counted == guess)),
      'word_count': float(words.size),
      'word_correct_count': float(np.count_nonzero(words == guess)),
  }
