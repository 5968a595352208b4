r"""Times the TFF stages against the same math in plain TensorFlow.

  .venv/bin/python -m experiments.benchmark --dataset=shakespeare

Global stage: each timed round runs on the same sampled clients and batches
twice, once through the TFF learning process (`training.build_process`, the
`sgd` server optimizer) and right after through `plain_tf.PlainFedAvg` in this
process; one untimed warm-up round each comes first. Group stage: seconds per group for
--group_rounds rounds of the one process, started from the global weights.
Writes benchmark.json; the last line printed is `tff_over_plain_tf_ratio=<x>`.
"""

import json
import os
import time

from absl import flags
import numpy as np

from data import dataset_flags
from gpfl_tff import runtime
from gpfl_tff.data import batches as batches_lib
from gpfl_tff.data import datasets
from gpfl_tff.data import text
from gpfl_tff.learning import plain_tf
from gpfl_tff.learning import training
from gpfl_tff.models import language_model

MODEL = flags.DEFINE_enum('model', 'small', list(language_model.PRESETS),
                          'Model size preset.')
ROUNDS = flags.DEFINE_integer('rounds', 5, 'Timed global rounds.')
GROUP_ROUNDS = flags.DEFINE_integer('group_rounds', 2,
                                    'Rounds timed per group.')
CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', 10,
                                         'Clients per round.')
BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'Sequences per batch.')
CLIENT_LR = flags.DEFINE_float('client_learning_rate', 0.5,
                               'Client SGD learning rate.')
SEED = flags.DEFINE_integer('seed', 0, 'Seeds initialization and sampling.')
OUTPUT = flags.DEFINE_string('output', 'results/benchmark.json',
                             'Where benchmark.json goes.')


def main(argv):
  del argv
  if ROUNDS.value < 1 or CLIENTS_PER_ROUND.value < 1:
    dataset_flags.fail('--rounds and --clients_per_round must be positive')
  preset = language_model.PRESETS[MODEL.value]
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  encoder = text.TextEncoder(data.vocabulary, preset.seq_len)
  client_batches = batches_lib.ClientBatches(data, encoder, BATCH_SIZE.value)
  model_fn = language_model.build_model_fn(preset, encoder.num_tokens,
                                           SEED.value)
  training_config = training.TrainingConfig(
      clients_per_round=CLIENTS_PER_ROUND.value,
      client_learning_rate=CLIENT_LR.value, batch_size=BATCH_SIZE.value)
  rng = np.random.default_rng(SEED.value)
  rounds = [training.sample_clients(rng, data.client_ids,
                                    CLIENTS_PER_ROUND.value)
            for _ in range(ROUNDS.value + 1)]
  tokens = [sum(client_batches.token_count('train', c) for c in clients)
            for clients in rounds]

  with runtime.local_runtime():
    process = training.build_process(model_fn, training_config)
    state = training.start_state(process)
    # Built after TFF has traced its graphs: Keras objects made before that
    # become invalid.
    plain = plain_tf.PlainFedAvg(
        language_model.build_keras_model(preset, encoder.num_tokens, SEED.value),
        CLIENT_LR.value)
    weights = [v.numpy() for v in plain.model.trainable_variables]
    tff_seconds, plain_seconds = [], []
    # Interleaved, so that any other load on the machine hits both alike.
    for clients in rounds:
      start = time.time()
      state = process.next(
          state, [client_batches.dataset('train', c) for c in clients]).state
      tff_seconds.append(time.time() - start)
      start = time.time()
      weights = plain.next(
          weights, [client_batches.dataset('train', c) for c in clients])
      plain_seconds.append(time.time() - start)
    global_weights = process.get_model_weights(state)

    group_seconds = {}
    for group in data.groups:
      start = time.time()
      training.run_rounds(
          process, training.start_state(process, global_weights),
          data.clients_in_group(group),
          lambda c: client_batches.dataset('train', c), GROUP_ROUNDS.value,
          CLIENTS_PER_ROUND.value, np.random.default_rng(SEED.value))
      group_seconds[group] = time.time() - start

  # The first round of each is a warm-up (tracing, worker start) and untimed.
  tff_round = float(np.mean(tff_seconds[1:]))
  plain_round = float(np.mean(plain_seconds[1:]))
  result = {
      'dataset': config.dataset, 'group_by': config.group_by,
      'model': MODEL.value, 'clients_per_round': CLIENTS_PER_ROUND.value,
      'batch_size': BATCH_SIZE.value, 'timed_rounds': ROUNDS.value,
      'tokens_per_round': tokens[1:],
      'global_round_seconds': {'tff': tff_seconds[1:],
                               'plain_tf': plain_seconds[1:],
                               'tff_warmup': tff_seconds[0],
                               'plain_tf_warmup': plain_seconds[0]},
      'tff_round_mean_seconds': tff_round,
      'plain_tf_round_mean_seconds': plain_round,
      'tff_over_plain_tf_ratio': tff_round / plain_round,
      'group_rounds': GROUP_ROUNDS.value,
      'group_stage_seconds': group_seconds,
  }
  os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
  with open(OUTPUT.value, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  print(f'global round: TFF {tff_round:.2f}s, plain TF {plain_round:.2f}s '
        f'({ROUNDS.value} rounds of {CLIENTS_PER_ROUND.value} clients)')
  for group, seconds in group_seconds.items():
    print(f'group {group}: {seconds:.1f}s for {GROUP_ROUNDS.value} rounds')
  print(f'wrote {OUTPUT.value}')
  print(f'tff_over_plain_tf_ratio={tff_round / plain_round:.3f}')


if __name__ == '__main__':
  dataset_flags.run(main)
