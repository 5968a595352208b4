r"""Times every stage through TFF and through plain TensorFlow, against the peak.

  .venv/bin/python -m experiments.benchmark --dataset=shakespeare

Stages, each at the experiment binary's default configuration (the flags of
`experiments/common_flags.py`):
  global  one round of the learning process over `--clients_per_round`
          clients sampled from all clients;
  group   one round of the same process, its weights set to the global
          weights, over clients sampled from one group (groups in turn);
  local   the local stage over `--local_clients` clients: fine-tune each
          (best epoch on validation, early stop by patience) and score it on
          its test split (`local.build_local_stage().run`).
Each repetition runs one stage through TFF and right after through the plain-TF
reference of `benchmarks/plain_tf.py` on the same clients and batches, and the
stages take turns, so that other load on the machine hits both alike. One
untimed warm-up repetition of each comes first. The matmul peak is measured in
the same run (`benchmarks/hardware.py`, which also says how FLOPs are counted).

Wall time is the measure; CPU seconds (this process and its TFF worker) are
recorded beside it, as a check that is steadier when other jobs load the
machine. Prints one line per stage,
  stage=<s> tff_s=<median> plain_s=<median> ratio=<tff/plain>
      tff_gflops=<x> peak_gflops=<y>
and as its last line `tff_over_plain_tf_ratio=<the largest stage ratio>`;
writes every timing to --output (benchmark.json).
"""

import dataclasses
import json
import os
import time

from absl import flags
import numpy as np

from benchmarks import hardware
from benchmarks import plain_tf
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

REPS = flags.DEFINE_integer('reps', 10, 'Timed repetitions of each stage.')
LOCAL_CLIENTS = flags.DEFINE_integer(
    'local_clients', 20, 'Clients fine-tuned and scored per local-stage '
    'repetition.')
OUTPUT = flags.DEFINE_string('output', 'results/benchmark.json',
                             'Where benchmark.json goes.')

STAGES = ('global', 'group', 'local')


def _cpu_seconds() -> float:
  """CPU seconds of this process and of its TFF worker processes so far.

  CPU time, unlike wall time, does not grow when other jobs share the
  machine, so its ratio is the steadier measure of framework overhead.
  """
  total = sum(os.times()[:2])
  for pid in runtime.worker_pids():
    try:
      with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
      pass
  return total


def _stats(values):
  values = [float(v) for v in values]
  return {'median': float(np.median(values)), 'min': min(values),
          'max': max(values), 'all': values}


class Bench:
  """The data, both implementations and the samples of every repetition."""

  def __init__(self, data, preset, encoder, training_config, stage_config,
               seed):
    self.data = data
    self.training_config = training_config
    self.stage_config = stage_config
    self.batches = batches_lib.ClientBatches(data, encoder,
                                             training_config.batch_size)
    model_fn = language_model.build_model_fn(preset, encoder.num_tokens, seed)
    self.process = training.build_process(model_fn, training_config)
    self.local_stage = local.build_local_stage(model_fn)
    self.state = training.start_state(self.process)
    # Built after TFF has traced its graphs: Keras objects made before that
    # become invalid.
    keras = lambda: language_model.build_keras_model(
        preset, encoder.num_tokens, seed)
    self.plain_fedavg = plain_tf.PlainFedAvg(
        keras(), training_config.client_learning_rate,
        training_config.server_learning_rate)
    self.plain_local = plain_tf.PlainLocalStage(keras())
    self.plain_weights = [v.numpy()
                          for v in self.plain_fedavg.model.trainable_variables]
    self.rng = np.random.default_rng(seed)
    self.forward_flops = hardware.preset_forward_flops(preset,
                                                       encoder.num_tokens)
    self.group_turn = 0

  def _tokens(self, split, clients):
    return sum(self.batches.token_count(split, c) for c in clients)

  def _train(self, clients):
    return [self.batches.dataset('train', c,
                                 self.training_config.client_epochs)
            for c in clients]

  def sample(self, stage):
    """The clients of one repetition of `stage`."""
    if stage == 'global':
      pool = self.data.client_ids
    elif stage == 'group':
      groups = self.data.groups
      pool = self.data.clients_in_group(groups[self.group_turn % len(groups)])
      self.group_turn += 1
    else:
      return data_source.sample_clients(self.rng, self.data.client_ids,
                                     LOCAL_CLIENTS.value)
    return data_source.sample_clients(self.rng, pool,
                                   self.training_config.clients_per_round)

  def run_tff(self, stage, clients):
    if stage in ('global', 'group'):
      state = self.state
      if stage == 'group':
        state = training.start_state(
            self.process, self.process.get_model_weights(self.state))
      state = self.process.next(state, self._train(clients)).state
      if stage == 'global':
        self.state = state
      return None
    return self.local_stage.run(
        self.process.get_model_weights(self.state),
        *methods.local_run_args(self.batches, clients, self.stage_config))

  def run_plain(self, stage, clients):
    """Runs the reference; returns the FLOPs the stage did."""
    if stage in ('global', 'group'):
      weights = self.plain_fedavg.next(self.plain_weights,
                                       self._train(clients))
      if stage == 'global':
        self.plain_weights = weights
      return hardware.stage_flops(
          self.forward_flops,
          self.training_config.client_epochs * self._tokens('train', clients),
          0)
    results = self.plain_local.run(
        self.plain_weights,
        *methods.local_run_args(self.batches, clients, self.stage_config))
    train = sum(int(r['epochs_run']) * self.batches.token_count('train', c)
                for r, c in zip(results, clients))
    evaluated = sum((int(r['epochs_run']) + 1)
                    * self.batches.token_count('validation', c)
                    + self.batches.token_count('test', c)
                    for r, c in zip(results, clients))
    return hardware.stage_flops(self.forward_flops, train, evaluated)


def main(argv):
  del argv
  if REPS.value < 1 or LOCAL_CLIENTS.value < 1:
    cli.fail('--reps and --local_clients must be positive')
  preset = common_flags.preset()
  try:
    training_config = common_flags.training_config()
    stage_config = common_flags.stage_config()
  except ValueError as e:
    cli.fail(str(e))
  config = dataset_flags.config(default_vocab_size=preset.vocab_size)
  data = datasets.load_or_prepare(config, dataset_flags.cache_dir())
  encoder = text.TextEncoder(data.vocabulary, preset.seq_len)

  peak_before = hardware.matmul_peak_gflops()
  seconds = {s: {'tff': [], 'plain_tf': []} for s in STAGES}
  cpu = {s: {'tff': [], 'plain_tf': []} for s in STAGES}
  flops = {s: [] for s in STAGES}
  with runtime.local_runtime():
    bench = Bench(data, preset, encoder, training_config, stage_config,
                  common_flags.SEED.value)
    for rep in range(REPS.value + 1):  # Repetition 0 warms up, untimed.
      for stage in STAGES:
        clients = bench.sample(stage)
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        bench.run_tff(stage, clients)
        tff_s = time.perf_counter() - start
        tff_cpu = _cpu_seconds() - start_cpu
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        stage_flops = bench.run_plain(stage, clients)
        plain_s = time.perf_counter() - start
        plain_cpu = _cpu_seconds() - start_cpu
        if rep > 0:
          seconds[stage]['tff'].append(tff_s)
          seconds[stage]['plain_tf'].append(plain_s)
          cpu[stage]['tff'].append(tff_cpu)
          cpu[stage]['plain_tf'].append(plain_cpu)
          flops[stage].append(stage_flops)
  peak_after = hardware.matmul_peak_gflops()
  peak = max(peak_before, peak_after)

  result = {
      'dataset': config.dataset, 'group_by': config.group_by,
      'model': common_flags.MODEL.value,
      'training': dataclasses.asdict(training_config),
      'finetune': {'epochs': stage_config.finetune_epochs,
                   'learning_rate': stage_config.finetune_learning_rate,
                   'patience': stage_config.finetune_patience,
                   'eval_batch_size': stage_config.eval_batch_size},
      'local_clients': LOCAL_CLIENTS.value, 'reps': REPS.value,
      'peak_gflops': peak,
      'peak_gflops_before_after': [peak_before, peak_after],
      'stages': {},
  }
  lines = []
  for stage in STAGES:
    tff, plain = _stats(seconds[stage]['tff']), _stats(
        seconds[stage]['plain_tf'])
    ratio = tff['median'] / plain['median']
    # Per repetition, then the median: repetitions differ in their clients.
    tff_gflops = float(np.median([f / t / 1e9 for f, t in zip(
        flops[stage], seconds[stage]['tff'])]))
    plain_gflops = float(np.median([f / t / 1e9 for f, t in zip(
        flops[stage], seconds[stage]['plain_tf'])]))
    tff_cpu, plain_cpu = _stats(cpu[stage]['tff']), _stats(
        cpu[stage]['plain_tf'])
    result['stages'][stage] = {
        'tff_seconds': tff, 'plain_tf_seconds': plain, 'ratio': ratio,
        'tff_cpu_seconds': tff_cpu, 'plain_tf_cpu_seconds': plain_cpu,
        'cpu_ratio': tff_cpu['median'] / max(plain_cpu['median'], 1e-9),
        'flops': flops[stage], 'tff_gflops': tff_gflops,
        'plain_tf_gflops': plain_gflops,
        'tff_fraction_of_peak': tff_gflops / peak,
        'plain_tf_fraction_of_peak': plain_gflops / peak}
    lines.append(f'stage={stage} tff_s={tff["median"]:.3f} '
                 f'plain_s={plain["median"]:.3f} ratio={ratio:.3f} '
                 f'tff_gflops={tff_gflops:.2f} peak_gflops={peak:.1f}')
  worst = max(r['ratio'] for r in result['stages'].values())
  result['tff_over_plain_tf_ratio'] = worst
  os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
  with open(OUTPUT.value, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  for stage, line in zip(STAGES, lines):
    r = result['stages'][stage]
    print(f'# {stage}: plain TF {r["plain_tf_gflops"]:.2f} GFLOP/s '
          f'({100 * r["plain_tf_fraction_of_peak"]:.1f}% of peak), TFF '
          f'{100 * r["tff_fraction_of_peak"]:.1f}% of peak; '
          f'TFF min-max {r["tff_seconds"]["min"]:.3f}-'
          f'{r["tff_seconds"]["max"]:.3f}s, plain '
          f'{r["plain_tf_seconds"]["min"]:.3f}-'
          f'{r["plain_tf_seconds"]["max"]:.3f}s; CPU-time ratio '
          f'{r["cpu_ratio"]:.3f}')
  print(f'wrote {OUTPUT.value}')
  for line in lines:
    print(line)
  print(f'tff_over_plain_tf_ratio={worst:.3f}')


if __name__ == '__main__':
  cli.run(main)
