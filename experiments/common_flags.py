"""Flags shared by the experiment binaries: model, training, stages, fine-tuning.

`run_group_personalization` and `benchmark` both read these, so the benchmark
times the binary's default configuration.
"""

from absl import flags

from gpfl_tff.learning import grouping
from gpfl_tff.learning import methods as methods_lib
from gpfl_tff.learning import training
from gpfl_tff.models import language_model
from gpfl_tff.models import metrics

MODEL = flags.DEFINE_enum('model', 'small', list(language_model.PRESETS),
                          'Model size preset.')
CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', 10,
                                         'Clients sampled per round.')
CLIENT_EPOCHS = flags.DEFINE_integer('client_epochs', 1,
                                     'Local epochs per round.')
CLIENT_LR = flags.DEFINE_float('client_learning_rate', 0.5,
                               'Client SGD learning rate.')
SERVER_OPTIMIZER = flags.DEFINE_enum(
    'server_optimizer', 'sgd', list(training.SERVER_OPTIMIZERS),
    'sgd (FedAvg), sgdm (FedAvgM), adam (FedAdam) or yogi (FedYogi).')
SERVER_LR = flags.DEFINE_float('server_learning_rate', 1.0,
                               'Server learning rate.')
SERVER_MOMENTUM = flags.DEFINE_float('server_momentum', 0.9,
                                     'Momentum of the sgdm server optimizer.')
BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'Sequences per batch.')
CROSS_ENTROPY = flags.DEFINE_enum(
    'cross_entropy', 'ops', list(metrics.CROSS_ENTROPIES),
    "The loss's implementation, in training and evaluation: ops (plain "
    "TensorFlow ops, faster on CPU) or kernel (TensorFlow's fused kernel, as "
    'every run before 2026-12-03; repeats their numbers bit for bit). See '
    'gpfl_tff/models/metrics.py.')
FINETUNE_EPOCHS = flags.DEFINE_integer(
    'finetune_epochs', 3, 'Most local fine-tuning epochs (the best on the '
    "client's validation split is kept).")
FINETUNE_LR = flags.DEFINE_float('finetune_learning_rate', 0.1,
                                 'Local fine-tuning SGD learning rate.')
FINETUNE_PATIENCE = flags.DEFINE_integer(
    'finetune_patience', 1, 'Stop fine-tuning a client after this many '
    'epochs without a lower validation loss (0: run every epoch).')
PRIOR_PRECISION = flags.DEFINE_float(
    'prior_precision', -1.0, 'groupperfl_prior: precision of the Gaussian '
    'prior around the group model (its strength); negative: per group by '
    'empirical Bayes from the group\'s tuning clients (--prior_estimator).')
PRIOR_ESTIMATOR = flags.DEFINE_enum(
    'prior_estimator', 'predictive', list(methods_lib.PRIOR_ESTIMATORS),
    'groupperfl_prior with empirical Bayes (--prior_precision negative): per '
    'group, the precision whose fine-tuning scores best on the group\'s '
    'tuning clients\' held-out data (predictive; predictive_pooled: one '
    'precision for every group, scored on all groups\' tuning clients '
    'together), or from their fine-tuning '
    'deltas one prior variance per weight tensor (per_tensor) or one for all '
    'parameters (isotropic).')
GROUPING_STATISTIC = flags.DEFINE_enum(
    'grouping_statistic', 'pearson', list(grouping.STATISTICS),
    'With --groups=inferred: the per-client statistic clustered (pearson: '
    'Pearson residuals of the client\'s word counts against the global '
    'model\'s predictions; bias_gradient: the output-bias gradient).')
GROUP_START = flags.DEFINE_enum(
    'group_start', 'fresh', list(methods_lib.GROUP_STARTS),
    'How each group stage starts from the global stage: a fresh process state '
    'holding the global weights (fresh: the server optimizer reset) or the '
    'global stage\'s kept state (continue: the server optimizer, say '
    'FedAdam\'s moments, carried on, as in fl_matched and fl_compute).')
GROUP_SERVER_LR = flags.DEFINE_float(
    'group_server_learning_rate', 0.0, 'Server learning rate of the stages '
    'that fine-tune the global model per group (group, subgroup) and of '
    'their equal-budget controls (fl_matched, fl_compute); 0: the global '
    'stage\'s (--server_learning_rate).')
EVAL_BATCH_SIZE = flags.DEFINE_integer(
    'eval_batch_size', 128, 'Sequences per evaluation batch (speed only: '
    'metrics are sums).')
SEED = flags.DEFINE_integer('seed', 0, 'Seeds initialization and sampling.')
GLOBAL_ROUNDS = flags.DEFINE_integer('global_rounds', 20,
                                     'Rounds of the global stage.')
GROUP_ROUNDS = flags.DEFINE_integer('group_rounds', 10,
                                    'Rounds of each group process.')
TUNING_FRACTION = flags.DEFINE_float(
    'tuning_fraction', 0.2, 'Share of each group\'s clients set apart as '
    'tuning clients (split by --split_seed, not --seed).')
SPLIT_SEED = flags.DEFINE_integer(
    'split_seed', 0, 'Seeds the tuning/report split of clients and the '
    'evaluated sample.')


def preset() -> language_model.Preset:
  return language_model.PRESETS[MODEL.value]


def flags_for_files() -> list:
  """The flags of this module and the dataset flags, for flag files."""
  from data import dataset_flags  # pylint: disable=g-import-not-at-top
  names = {__name__, dataset_flags.__name__}
  return [f for module, module_flags in
          flags.FLAGS.flags_by_module_dict().items() if module in names
          for f in module_flags]


def training_config(**overrides) -> training.TrainingConfig:
  """The federated training configuration of the flags (ValueError if bad).

  `overrides` replace flag values (a tuning grid point).
  """
  values = dict(
      clients_per_round=CLIENTS_PER_ROUND.value,
      client_epochs=CLIENT_EPOCHS.value,
      client_learning_rate=CLIENT_LR.value,
      server_optimizer=SERVER_OPTIMIZER.value,
      server_learning_rate=SERVER_LR.value,
      server_momentum=SERVER_MOMENTUM.value, batch_size=BATCH_SIZE.value,
      cross_entropy=CROSS_ENTROPY.value)
  values.update(overrides)
  return training.TrainingConfig(**values)


def stage_config(**stages) -> methods_lib.StageConfig:
  """The stage configuration of the flags plus `stages` (ValueError if bad).

  `stages` set the other fields, or replace flag values.
  """
  values = dict(
      finetune_epochs=FINETUNE_EPOCHS.value,
      finetune_learning_rate=FINETUNE_LR.value,
      finetune_patience=FINETUNE_PATIENCE.value,
      prior_precision=PRIOR_PRECISION.value,
      prior_estimator=PRIOR_ESTIMATOR.value,
      grouping_statistic=GROUPING_STATISTIC.value,
      group_start=GROUP_START.value,
      group_server_learning_rate=GROUP_SERVER_LR.value,
      eval_batch_size=EVAL_BATCH_SIZE.value,
      seed=SEED.value,
      global_rounds=GLOBAL_ROUNDS.value, group_rounds=GROUP_ROUNDS.value,
      tuning_fraction=TUNING_FRACTION.value, split_seed=SPLIT_SEED.value)
  values.update(stages)
  return methods_lib.StageConfig(**values)
