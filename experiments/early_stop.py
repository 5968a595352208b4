r"""How often early stopping changes the fine-tuning result, on real clients.

  .venv/bin/python -m experiments.early_stop --dataset=shakespeare

Trains the global model for --global_rounds rounds (the experiment's global
stage), then fine-tunes the same clients from it twice through the local
stage: with --finetune_patience (early stop) and with patience 0 (every epoch,
"best epoch of 0..E on validation"). Prints how many clients keep the same
epoch, the largest change in a client's test log-perplexity, the change in
the token-weighted test perplexity, and both timings; writes them as JSON to
--output.
"""

import json
import math
import os
import time

from absl import flags
import numpy as np

from data import dataset_flags
from experiments import cli
from experiments import common_flags
from gpfl_tff import runtime
from gpfl_tff.data import batches as batches_lib
from gpfl_tff.data import datasets
from gpfl_tff.data import text
from gpfl_tff.learning import data_source
from gpfl_tff.learning import local
from gpfl_tff.learning import methods
from gpfl_tff.learning import training
from gpfl_tff.models import language_model

CLIENTS = flags.DEFINE_integer('clients', 0,
                               'Fine-tune this many sampled clients (0: all).')
OUTPUT = flags.DEFINE_string('output', 'results/early_stop.json',
                             'Where the JSON goes.')


def _log_ppl(sums) -> float:
  return float(sums['loss_sum']) / max(float(sums['token_count']), 1.0)


def main(argv):
  del argv
  preset = common_flags.preset()
  try:
    training_config = common_flags.training_config()
    stage_config = common_flags.stage_config()
  except ValueError as e:
    cli.fail(str(e))
  if stage_config.finetune_patience < 1:
    cli.fail('--finetune_patience must be at least 1 here')
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  encoder = text.TextEncoder(data.vocabulary, preset.seq_len)
  batches = batches_lib.ClientBatches(data, encoder, training_config.batch_size)
  seed = common_flags.SEED.value
  model_fn = language_model.build_model_fn(preset, encoder.num_tokens, seed)
  rng = np.random.default_rng(seed)
  clients = data.client_ids
  if CLIENTS.value > 0:
    clients = data_source.sample_clients(rng, clients, CLIENTS.value)

  with runtime.local_runtime():
    process = training.build_process(model_fn, training_config)
    state, _ = training.run_rounds(
        process, training.start_state(process),
        data_source.ClientIdsIterator(data.client_ids, rng),
        lambda c: batches.dataset('train', c, training_config.client_epochs),
        stage_config.global_rounds, training_config.clients_per_round)
    weights = process.get_model_weights(state)
    stage = local.build_local_stage(model_fn)
    results, seconds = {}, {}
    for patience in (stage_config.finetune_patience, 0):
      start = time.time()
      out = []
      for begin in range(0, len(clients), stage_config.eval_chunk):
        chunk = clients[begin:begin + stage_config.eval_chunk]
        out += stage.run(weights, *methods.local_run_args(
            batches, chunk, stage_config, patience=patience))
      results[patience] = out
      seconds[patience] = time.time() - start

  early, full = results[stage_config.finetune_patience], results[0]
  same = sum(int(a['best_epoch']) == int(b['best_epoch'])
             for a, b in zip(early, full))
  changes = [abs(_log_ppl(a) - _log_ppl(b)) for a, b in zip(early, full)]

  def total_ppl(rows):
    return math.exp(sum(float(r['loss_sum']) for r in rows)
                    / sum(float(r['token_count']) for r in rows))

  summary = {
      'dataset': config.dataset, 'clients': len(clients),
      'finetune_epochs': stage_config.finetune_epochs,
      'patience': stage_config.finetune_patience,
      'same_best_epoch': same, 'share_same': same / len(clients),
      'max_client_log_ppl_change': max(changes),
      'test_perplexity_early_stop': total_ppl(early),
      'test_perplexity_every_epoch': total_ppl(full),
      'best_epoch_counts_every_epoch': np.bincount(
          [int(r['best_epoch']) for r in full],
          minlength=stage_config.finetune_epochs + 1).tolist(),
      'seconds_early_stop': seconds[stage_config.finetune_patience],
      'seconds_every_epoch': seconds[0],
  }
  os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
  with open(OUTPUT.value, 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=2)
    f.write('\n')
  for key, value in summary.items():
    print(f'{key}={value}')


if __name__ == '__main__':
  cli.run(main)
