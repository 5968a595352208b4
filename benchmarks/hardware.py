"""FLOPs of the stages, counted from the model's shapes, and the machine's peak.

FLOPs count the matrix products only (a multiply-add is 2 FLOPs), per token:
  forward  = 2 * (4 * units * (embedding + units)   LSTM gates
                  + units * projection               projection
                  + projection * num_tokens)         output layer
  training = 3 * forward (the backward pass costs about twice the forward).
Embedding lookups, element-wise ops and the softmax are left out, so achieved
GFLOP/s are a lower bound. Tokens are the counted (non-padding) targets; the
padded positions a stage also computes are not credited.

The peak is the best fp32 matmul rate of this process over a few square sizes,
measured in the same run as the stages it is compared with.
"""

import time

import numpy as np
import tensorflow as tf


def forward_flops_per_token(embedding: int, units: int, projection: int,
                            num_tokens: int) -> int:
  return 2 * (4 * units * (embedding + units) + units * projection
              + projection * num_tokens)


def preset_forward_flops(preset, num_tokens: int) -> int:
  """`forward_flops_per_token` for a `language_model.Preset`."""
  return forward_flops_per_token(preset.embedding_size, preset.lstm_units,
                                 preset.projection_size, num_tokens)


def median_seconds(fn, reps: int) -> float:
  """Median wall seconds of `reps` calls of `fn`, each waited for (its
  tensors read back to numpy)."""
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def stage_flops(forward_per_token: int, train_tokens: float,
                eval_tokens: float) -> float:
  """FLOPs of `train_tokens` trained on and `eval_tokens` evaluated."""
  return forward_per_token * (3.0 * train_tokens + eval_tokens)


def matmul_peak_gflops(sizes=(512, 1024, 2048), seconds_per_size=1.0) -> float:
  """Best fp32 matmul GFLOP/s seen over `sizes` (square matrices)."""
  best = 0.0
  for n in sizes:
    a = tf.random.normal([n, n], seed=1)
    b = tf.random.normal([n, n], seed=2)
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    reps = max(3, int(seconds_per_size * 50e9 / (2 * n ** 3)))
    times = []
    for _ in range(3):
      start = time.perf_counter()
      for _ in range(reps):
        out = matmul(a, b)
      out.numpy()
      times.append((time.perf_counter() - start) / reps)
    best = max(best, 2 * n ** 3 / float(np.min(times)) / 1e9)
  return best
