"""End-to-end test of the stage tree on a prepared grouped dataset.

One `experiment.run` (in `setUpClass`) over four groups with disjoint
vocabularies (see `synthetic`): a, b and c have enough clients to train a
group model; d has one client, below `min_group_clients`. Fine-tuning is off
(finetune_epochs=0), so every personalized method must equal its base.
"""

import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.learning import methods
from gpfl_tff.learning import training
from tests.learning import synthetic

_CLIENTS_PER_GROUP = {'a': 3, 'b': 3, 'c': 2, 'd': 1}
_METHODS = ['fl', 'perfl', 'groupfl', 'groupperfl', 'fl_compute', 'unigram',
            'group_unigram']


class StageTreeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    directory = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.data = synthetic.prepare_grouped(directory, _CLIENTS_PER_GROUP)
    training_config = training.TrainingConfig(
        clients_per_round=3, client_epochs=2, client_learning_rate=0.5,
        batch_size=4)
    cls.stage_config = methods.StageConfig(
        global_rounds=3, group_rounds=3, finetune_epochs=0,
        min_group_clients=2, seed=0, eval_clients='all')
    with mock.patch.object(
        training, 'build_process',
        wraps=training.build_process) as build_process, mock.patch.object(
            tff.learning.algorithms, 'build_weighted_fed_avg',
            wraps=tff.learning.algorithms.build_weighted_fed_avg
        ) as build_fed_avg, runtime.local_runtime():
      cls.plans, cls.progress = [], []

      def make_progress(plan):
        cls.plans.append(plan)
        return lambda *report: cls.progress.append(report)

      cls.outcome = experiment.run(cls.data, synthetic.TINY, training_config,
                                   cls.stage_config, _METHODS,
                                   make_progress=make_progress)
      cls.tree = cls.outcome.tree
      # Asked again: served from the tree, nothing runs.
      cls.again = {m: cls.tree.evaluate(m) for m in _METHODS}
      cls.global_weights = cls.tree.weights('global')
      cls.group_weights = cls.tree.group_weights('group')
    cls.build_process_calls = build_process.call_count
    cls.build_fed_avg_calls = build_fed_avg.call_count

  def _per_group(self, method):
    report = self.outcome.results['methods'][method]['test']
    return {g: r['perplexity'] for g, r in report['per_group'].items()}

  def test_prepared_dataset_has_the_groups(self):
    self.assertEqual(self.data.groups, ['a', 'b', 'c', 'd'])
    self.assertLen(self.data.vocabulary, 40)
    for method in _METHODS:
      self.assertEqual(sorted(self.outcome.client_sums[method]),
                       self.data.client_ids)

  def test_group_models_beat_the_global_model_on_their_group(self):
    fl, groupfl = self._per_group('fl'), self._per_group('groupfl')
    for group in ('a', 'b', 'c'):
      self.assertLess(groupfl[group], fl[group], group)
    # The groups learned their own cycle: far below the 40-word uniform guess.
    for group in ('a', 'b', 'c'):
      self.assertLess(groupfl[group], 10.0, group)

  def test_each_stage_runs_once(self):
    stage_runs = self.outcome.results['stage_runs']
    self.assertEqual(
        stage_runs, {'global': 1, 'group': 1, 'eval/global': 1,
                     'eval/group': 1, 'local/global': 1, 'local/group': 1,
                     'fl_compute': 1, 'eval/fl_compute': 1, 'eval/unigram': 1,
                     'eval/group_unigram': 1})
    self.assertEqual(self.tree.stage_runs, stage_runs)  # Not rerun on demand.
    for method in _METHODS:
      self.assertIs(self.again[method], self.outcome.client_sums[method])
    self.assertLen(self.tree.history['global'],
                   self.stage_config.global_rounds)

  def test_one_learning_process_serves_every_group(self):
    self.assertEqual(self.build_process_calls, 1)
    self.assertEqual(self.build_fed_avg_calls, 1)
    self.assertCountEqual(
        [s for s in self.tree.history if s.startswith('group/')],
        ['group/a', 'group/b', 'group/c'])
    for group in ('a', 'b', 'c'):
      self.assertLen(self.tree.history[f'group/{group}'],
                     self.stage_config.group_rounds)

  def test_group_with_too_few_clients_keeps_its_start_weights(self):
    self.assertEqual(self.outcome.results['groups_kept_start'], ['d'])
    self.assertTrue(synthetic.weights_equal(self.group_weights['d'],
                                            self.global_weights))
    for group in ('a', 'b', 'c'):
      self.assertFalse(synthetic.weights_equal(self.group_weights[group],
                                               self.global_weights))
    sums = self.outcome.client_sums
    self.assertEqual(dict(sums['groupfl']['d-0']), dict(sums['fl']['d-0']))

  def test_no_finetuning_leaves_every_client_unchanged(self):
    sums = self.outcome.client_sums
    keys = ('loss_sum', 'token_count', 'correct_count')
    for client in self.data.client_ids:
      for tuned, plain in (('perfl', 'fl'), ('groupperfl', 'groupfl')):
        self.assertEqual({k: sums[tuned][client][k] for k in keys},
                         {k: sums[plain][client][k] for k in keys}, client)
        self.assertEqual(sums[tuned][client]['best_epoch'], 0)
    # The sums are real: every client's test split has counted tokens.
    for client in self.data.client_ids:
      self.assertGreater(sums['fl'][client]['token_count'], 0)

  def test_with_config_refits_finetuning_on_the_trained_stages(self):
    config = methods.StageConfig(**{
        **self.stage_config.__dict__, 'finetune_epochs': 2,
        'finetune_learning_rate': 0.5})
    tree = self.tree.with_config(config)
    with runtime.local_runtime():
      tuned = tree.evaluate('groupperfl')
    # The group stage was not trained again; only the new evaluation ran.
    self.assertEqual(tree.stage_runs, {'global': 1, 'group': 1,
                                       'fl_compute': 1, 'local/group': 1})
    self.assertIs(tree.group_weights('group'), self.group_weights)
    self.assertEqual(self.tree.stage_runs['local/group'], 1)  # Untouched.
    plain = self.outcome.client_sums['groupfl']
    self.assertTrue(any(tuned[c]['best_epoch'] > 0 for c in tuned))
    for client, sums in tuned.items():
      if sums['best_epoch'] == 0:
        self.assertEqual(float(sums['loss_sum']),
                         float(plain[client]['loss_sum']), client)
      else:
        self.assertNotEqual(float(sums['loss_sum']),
                            float(plain[client]['loss_sum']), client)
    with self.assertRaisesRegex(ValueError, 'cannot change global_rounds'):
      self.tree.with_config(methods.StageConfig(**{
          **self.stage_config.__dict__, 'global_rounds': 4}))

  def _priors(self, *estimators):
    """estimator -> the group stage's `prior_precisions` under it (two
    fine-tuning epochs at rate 0.5)."""
    base = {**self.stage_config.__dict__, 'finetune_epochs': 2,
            'finetune_learning_rate': 0.5}
    with runtime.local_runtime():
      return {
          estimator: self.tree.with_config(methods.StageConfig(**{
              **base, 'prior_estimator': estimator})).prior_precisions(
                  'group')
          for estimator in estimators}

  def test_empirical_bayes_prior_per_tensor_and_isotropic(self):
    priors = self._priors('per_tensor', 'isotropic')
    sizes = np.array([np.size(w) for w in self.global_weights.trainable])
    measured = 0
    for group, per_tensor in priors['per_tensor'].items():
      pooled = priors['isotropic'][group]
      self.assertEqual(per_tensor['clients'], pooled['clients'])
      self.assertLen(per_tensor['spread'], len(sizes))
      if not per_tensor['clients']:  # No tuning client: no prior.
        self.assertEqual(pooled['precision'], 0.0)
        self.assertEqual(set(per_tensor['precision']), {0.0})
        continue
      measured += 1
      spread = np.array(per_tensor['spread'])
      # The isotropic variance pools the tensors' by their sizes.
      self.assertAllClose(pooled['spread'], sizes @ spread / sizes.sum(),
                          rtol=1e-6)
      self.assertAllClose(pooled['precision'], 1 / pooled['spread'])
      self.assertAllClose(per_tensor['precision'],
                          [1 / x if x > 0 else 0.0 for x in spread])
      # Fine-tuning moves the tensors by different amounts.
      self.assertGreater(spread.max(), 2 * spread[spread > 0].min())
    self.assertGreater(measured, 0)

  def test_predictive_prior_keeps_the_best_precision_on_tuning_clients(self):
    config = methods.StageConfig(**{
        **self.stage_config.__dict__, 'finetune_epochs': 2,
        'finetune_learning_rate': 0.5, 'prior_estimator': 'predictive'})
    tree = self.tree.with_config(config)
    tuning, _ = methods.split_clients(self.data, config.tuning_fraction,
                                      config.split_seed)
    grid = [f'{p:g}' for p in methods.PREDICTIVE_PRECISIONS]
    measured = 0
    with runtime.local_runtime():
      priors = tree.prior_precisions('group')
      for group, prior in priors.items():
        clients = tuning.get(group, [])
        self.assertEqual(prior['clients'], len(clients), group)
        if not clients:  # No tuning client: no prior.
          self.assertEqual(prior['precision'], 0.0)
          continue
        measured += 1
        losses = prior['held_out_loss']
        self.assertEqual(list(losses), grid)
        self.assertEqual(f"{prior['precision']:g}",
                         min(grid, key=lambda p: losses[p]))
        # Precision 0 is plain fine-tuning, scored on the tuning clients'
        # test splits (never a report client's).
        plain = tree.local_stage.run(
            tree.group_weights('group')[group],
            *methods.local_run_args(tree.batches, clients, config, 'test'))
        self.assertAllClose(
            losses['0'], sum(float(s['loss_sum']) for s in plain)
            / sum(float(s['token_count']) for s in plain), rtol=1e-5)
        # The prior changes what fine-tuning reaches.
        self.assertGreater(max(losses.values()) - min(losses.values()), 0)
    self.assertGreater(measured, 0)

  def test_pooled_predictive_prior_shares_the_best_precision_over_groups(self):
    priors = self._priors('predictive', 'predictive_pooled')
    per_group, pooled = priors['predictive'], priors['predictive_pooled']
    self.assertCountEqual(pooled, per_group)
    grid = [f'{p:g}' for p in methods.PREDICTIVE_PRECISIONS]
    # The pooled loss of each precision: all groups' tuning tokens together.
    losses = {p: sum(g['held_out_sums'][p][0] for g in per_group.values())
              / sum(g['held_out_sums'][p][1] for g in per_group.values())
              for p in grid}
    chosen = min(grid, key=lambda p: losses[p])
    for group, prior in pooled.items():
      # Each group's own losses are the per-group estimator's.
      self.assertEqual(prior['held_out_loss'],
                       per_group[group]['held_out_loss'], group)
      self.assertAllClose(prior['pooled_held_out_loss'], losses)
      # Every group gets the one choice, a group without tuning clients too.
      self.assertEqual(f"{prior['precision']:g}", chosen, group)
    self.assertEqual(pooled['d']['clients'], 0)

  def test_plan_names_every_reported_stage_and_its_steps(self):
    self.assertLen(self.plans, 1)
    plan = self.plans[0]
    final = {}
    for stage, done, total in self.progress:
      self.assertIn(stage, plan)
      self.assertEqual(total, plan[stage][0], stage)
      self.assertLessEqual(done, total)
      final[stage] = done
    # Every planned stage ran to its end, and nothing else was reported.
    self.assertEqual(final, {stage: steps for stage, (steps, _) in
                             plan.items()})
    self.assertCountEqual(
        plan, ['global', 'group/a', 'group/b', 'group/c', 'eval global',
               'eval group', 'eval global + local', 'eval group + local',
               'fl_compute', 'eval fl_compute'])
    self.assertTrue(all(work > 0 for _, work in plan.values()))

  def test_validation_curves_of_every_trained_stage(self):
    curves = self.outcome.results['curves']
    self.assertCountEqual(curves, ['global', 'group/a', 'group/b', 'group/c',
                                   'fl_compute'])
    # curve_every=5 > 3 rounds: only the last round is validated.
    self.assertEqual([r for r, _ in curves['global']], [3])
    self.assertEqual([r for r, _ in curves['fl_compute']], [5, 8])
    for curve in curves.values():
      for _, perplexity in curve:
        self.assertTrue(np.isfinite(perplexity))
        self.assertGreater(perplexity, 1.0)
    # Each group model fits its own vocabulary: far below the global
    # model's validation perplexity on all clients.
    for group in ('a', 'b', 'c'):
      self.assertLess(curves[f'group/{group}'][-1][1], curves['global'][-1][1])
    self.assertIsNone(self.outcome.results['convergence']['global'])

  def test_budgets_count_rounds_and_client_updates(self):
    # 3 clients per round; groups a, b, c (3, 3, 2 clients) train 3 rounds.
    group_updates = 3 * 3 + 3 * 3 + 3 * 2
    budget = {m: self.outcome.results['methods'][m]['budget']
              for m in _METHODS}
    self.assertEqual(budget['fl'], {'rounds': 3, 'client_updates': 9,
                                    'finetuned': False})
    self.assertEqual(budget['groupfl'],
                     {'rounds': 6, 'client_updates': 9 + group_updates,
                      'finetuned': False})
    self.assertTrue(budget['groupperfl']['finetuned'])
    # fl_compute gets the group stages' client updates: 24 / 3 = 8 rounds.
    self.assertEqual(budget['fl_compute'],
                     {'rounds': 3 + 8, 'client_updates': 9 + group_updates,
                      'finetuned': False})
    self.assertLen(self.tree.history['fl_compute'], 8)
    self.assertEqual(budget['unigram']['client_updates'], 0)

  def test_group_unigram_beats_unigram_on_disjoint_groups(self):
    unigram, group_unigram = (self._per_group('unigram'),
                              self._per_group('group_unigram'))
    for group in ('a', 'b', 'c', 'd'):
      self.assertLess(group_unigram[group], unigram[group], group)
    # Trained group models beat counting words in their group.
    groupfl = self._per_group('groupfl')
    for group in ('a', 'b', 'c'):
      self.assertLess(groupfl[group], group_unigram[group], group)

  def test_paired_differences_against_groupperfl(self):
    paired = self.outcome.results['paired']
    self.assertCountEqual(paired, [m for m in _METHODS if m != 'groupperfl'])
    # Without fine-tuning groupperfl is groupfl: a difference of exactly 0.
    self.assertEqual(paired['groupfl']['mean'], 0.0)
    self.assertEqual(paired['groupfl']['ci_low'], 0.0)
    # Group models on disjoint vocabularies beat the global model.
    self.assertLess(paired['fl']['ci_high'], 0.0)
    for result in paired.values():
      self.assertLessEqual(result['ci_low'], result['mean'])
      self.assertGreaterEqual(result['ci_high'], result['mean'])
      self.assertEqual(result['clients'], len(self.data.client_ids))

  def test_paired_stages_give_the_group_stage_its_own_gain(self):
    stages = self.outcome.results['paired_stages']
    # groupperfl_prior did not run.
    self.assertCountEqual(stages, ['groupfl - fl', 'groupperfl - perfl'])
    # Without fine-tuning each pair is groupfl against fl, as is groupperfl
    # (= groupfl) against fl.
    for pair in stages.values():
      self.assertAllClose(pair['mean'],
                          self.outcome.results['paired']['fl']['mean'])
      self.assertLess(pair['ci_high'], 0.0)


class _Data:
  """The part of GroupedClientData that `split_clients` reads."""

  def __init__(self, sizes):
    self.groups = sorted(sizes)
    self._clients = {g: [f'{g}-{i:02d}' for i in range(n)]
                     for g, n in sizes.items()}

  def clients_in_group(self, group):
    return self._clients[group]


class SplitClientsTest(absltest.TestCase):

  def test_split_per_group_by_fraction_and_seed_only(self):
    data = _Data({'a': 10, 'b': 5, 'c': 1})
    tuning, report = methods.split_clients(data, 0.2, split_seed=0)
    self.assertEqual({g: len(c) for g, c in tuning.items()},
                     {'a': 2, 'b': 1, 'c': 0})
    for group in data.groups:
      self.assertCountEqual(tuning[group] + report[group],
                            data.clients_in_group(group))
      self.assertNotEmpty(report[group])
    # The same split every time; another split seed gives another split.
    self.assertEqual(methods.split_clients(data, 0.2, 0), (tuning, report))
    others = [methods.split_clients(data, 0.2, seed)[0]['a']
              for seed in range(1, 6)]
    self.assertTrue(any(o != tuning['a'] for o in others))

  def test_bad_settings(self):
    with self.assertRaisesRegex(ValueError, 'tuning_fraction'):
      methods.StageConfig(tuning_fraction=1.0)
    with self.assertRaisesRegex(ValueError, 'eval_clients'):
      methods.StageConfig(eval_clients='everyone')
    with self.assertRaisesRegex(ValueError, 'stage_selection must be one'):
      methods.StageConfig(stage_selection='first')
    with self.assertRaisesRegex(ValueError, 'curve_every and curve_clients'):
      methods.StageConfig(stage_selection='best', curve_every=0)


class BestRoundTest(tf.test.TestCase):
  """stage_selection='best': every stage keeps its best validated round."""

  def test_each_stage_keeps_the_lowest_point_of_its_curve(self):
    directory = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    data = synthetic.prepare_grouped(directory, {'a': 3, 'b': 3})
    # A client learning rate this high overshoots: some rounds are worse.
    training_config = training.TrainingConfig(
        clients_per_round=3, client_learning_rate=2.0, batch_size=4)
    config = methods.StageConfig(
        global_rounds=4, group_rounds=4, finetune_epochs=0, seed=0,
        eval_clients='all', curve_every=1, stage_selection='best')
    with runtime.local_runtime():
      results = experiment.run(data, synthetic.TINY, training_config, config,
                               ['fl', 'fl_matched', 'groupfl']).results
    # The group stage against its equal-rounds control too.
    self.assertCountEqual(results['paired_stages'],
                          ['groupfl - fl', 'groupfl - fl_matched'])
    curves, kept = results['curves'], results['kept_rounds']
    self.assertCountEqual(kept, ['global', 'fl_matched', 'group/a',
                                 'group/b'])
    self.assertCountEqual(curves, kept)
    for stage, curve in curves.items():
      self.assertEqual([r for r, _ in curve], [0, 1, 2, 3, 4], stage)
      lowest = min(p for _, p in curve)
      self.assertEqual(kept[stage],
                       next(r for r, p in curve if p == lowest), stage)
    # The test's overshooting rate makes at least one stage keep an earlier
    # round than its last.
    self.assertTrue(any(kept[s] < curves[s][-1][0] for s in kept), curves)
    # fl_matched continues from the global stage's kept state (the same
    # validation clients: all of them).
    global_kept = dict(curves['global'])[kept['global']]
    self.assertAlmostEqual(curves['fl_matched'][0][1], global_kept, places=4)


class GroupStartTest(tf.test.TestCase):
  """group_start: a group stage starts from a fresh server optimizer state or
  carries on the global stage's."""

  def _data_and_fedadam(self):
    """Two groups of three synthetic clients, and FedAdam at rate 0.01."""
    directory = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    return (synthetic.prepare_grouped(directory, {'a': 3, 'b': 3}),
            training.TrainingConfig(
                clients_per_round=3, client_learning_rate=0.5, batch_size=4,
                server_optimizer='adam', server_learning_rate=0.01))

  def test_continue_carries_the_global_optimizer_state_on(self):
    data, training_config = self._data_and_fedadam()
    starts, weights = {}, {}
    for group_start in methods.GROUP_STARTS:
      config = methods.StageConfig(
          global_rounds=3, group_rounds=2, finetune_epochs=0, seed=0,
          eval_clients='all', group_start=group_start)
      started = []
      with mock.patch.object(training, 'run_rounds',
                             wraps=training.run_rounds) as run_rounds, \
          runtime.local_runtime():
        tree = experiment.run(data, synthetic.TINY, training_config, config,
                              ['fl', 'groupfl']).tree
        for call in run_rounds.call_args_list:
          started.append(call.args[1])  # The stage's start state.
        global_weights = tree.weights('global')
        weights[group_start] = tree.group_weights('group')
      # The global stage, then groups a and b.
      self.assertLen(started, 3)
      starts[group_start] = started
      for state in started[1:]:
        self.assertAllClose(state.global_model_weights.trainable,
                            global_weights.trainable)
    # FedAdam's step count: reset for a fresh group stage, the global
    # stage's three rounds carried on with continue.
    self.assertEqual(int(starts['fresh'][0].finalizer['step']), 0)
    for state in starts['fresh'][1:]:
      self.assertEqual(int(state.finalizer['step']), 0)
    for state in starts['continue'][1:]:
      self.assertEqual(int(state.finalizer['step']), 3)
    # The carried moments change what the groups learn.
    for group in ('a', 'b'):
      self.assertNotAllClose(weights['fresh'][group].trainable,
                             weights['continue'][group].trainable)

  def test_group_server_learning_rate_is_set_in_groups_and_controls(self):
    data, training_config = self._data_and_fedadam()
    weights = {}
    for group_start in methods.GROUP_STARTS:
      for rate in (0.0, 0.001):
        config = methods.StageConfig(
            global_rounds=3, group_rounds=2, finetune_epochs=0, seed=0,
            eval_clients='all', group_start=group_start,
            group_server_learning_rate=rate)
        with mock.patch.object(training, 'run_rounds',
                               wraps=training.run_rounds) as run_rounds, \
            runtime.local_runtime():
          tree = experiment.run(data, synthetic.TINY, training_config, config,
                                ['fl', 'fl_matched', 'groupfl']).tree
          weights[group_start, rate] = (tree.group_weights('group'),
                                        tree.weights('fl_matched'))
          started = [call.args[1] for call in run_rounds.call_args_list]
        # The global stage keeps its rate; fl_matched (its equal-rounds
        # control) and each group stage get the group rate (0: the global
        # one), whichever the groups' start.
        self.assertLen(started, 4)  # global, fl_matched, a, b
        self.assertAllClose(started[0].finalizer['learning_rate'], 0.01)
        for state in started[1:]:
          self.assertAllClose(state.finalizer['learning_rate'], rate or 0.01)
        # FedAdam's step count is not touched by the rate: fl_matched
        # carries the global stage's on; the groups as group_start says.
        self.assertEqual(int(started[1].finalizer['step']), 3)
        for state in started[2:]:
          self.assertEqual(int(state.finalizer['step']),
                           0 if group_start == 'fresh' else 3)
      for group in ('a', 'b'):
        self.assertNotAllClose(
            weights[group_start, 0.0][0][group].trainable,
            weights[group_start, 0.001][0][group].trainable)
      self.assertNotAllClose(weights[group_start, 0.0][1].trainable,
                             weights[group_start, 0.001][1].trainable)

  def test_bad_group_server_learning_rate(self):
    with self.assertRaisesRegex(ValueError,
                                'group_server_learning_rate must not be'):
      methods.StageConfig(group_server_learning_rate=-0.1)

  def test_bad_group_start(self):
    with self.assertRaisesRegex(ValueError, 'group_start must be one of'):
      methods.StageConfig(group_start='warm')


if __name__ == '__main__':
  tf.test.main()
