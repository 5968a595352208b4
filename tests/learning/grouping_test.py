"""Groups when none are given: random, inferred (federated k-means), scored by
the adjusted Rand index."""

import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff import experiment
from gpfl_tff import runtime
from gpfl_tff.learning import grouping
from gpfl_tff.learning import local
from gpfl_tff.learning import methods
from gpfl_tff.learning import training
from gpfl_tff.models import language_model
from tests.learning import synthetic


class AdjustedRandIndexTest(tf.test.TestCase):

  def test_known_values(self):
    ari = grouping.adjusted_rand_index
    self.assertAlmostEqual(ari([0, 0, 1, 1], ['x', 'x', 'y', 'y']), 1.0)
    self.assertAlmostEqual(ari([0, 0, 1, 1], [0, 1, 0, 1]), -0.5)
    # Hubert and Arabie's formula by hand: index 2 (two pairs together in
    # both), row and column pair sums 6 and 3 of 15 pairs, so expected
    # 6 * 3 / 15 = 1.2 and maximum (6 + 3) / 2 = 4.5.
    self.assertAlmostEqual(ari([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]),
                           (2 - 1.2) / (4.5 - 1.2))
    self.assertAlmostEqual(ari([0, 0, 0], [1, 1, 1]), 1.0)
    with self.assertRaisesRegex(ValueError, 'same items'):
      ari([0, 1], [0])


class RandomGroupingTest(tf.test.TestCase):

  def test_balanced_seeded_and_named(self):
    clients = [f'c{i:02d}' for i in range(23)]
    first = grouping.random_grouping(clients, 4, seed=[0, 8])
    self.assertEqual(first, grouping.random_grouping(clients, 4, [0, 8]))
    self.assertNotEqual(first, grouping.random_grouping(clients, 4, [1, 8]))
    sizes = sorted(list(first.values()).count(g) for g in set(first.values()))
    self.assertEqual(sizes, [5, 6, 6, 6])
    self.assertEqual(sorted(set(first.values())),
                     ['random0', 'random1', 'random2', 'random3'])
    with self.assertRaisesRegex(ValueError, 'at least 1'):
      grouping.random_grouping(clients, 0, seed=0)


class KMeansTest(tf.test.TestCase):

  def test_federated_kmeans_finds_separated_clusters(self):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6))
    labels = np.repeat([0, 1, 2], 8)
    vectors = [centers[l] + 0.05 * rng.normal(size=6) for l in labels]
    with runtime.local_runtime():
      found, new = grouping.kmeans(vectors, 3, seed=1,
                                   new_vectors=[centers[2] + 0.01])
      with self.assertRaisesRegex(ValueError, 'cannot make 30 groups'):
        grouping.kmeans(vectors, 30, seed=1)
    self.assertAlmostEqual(grouping.adjusted_rand_index(labels, found), 1.0)
    self.assertEqual(new, [found[-1]])  # Nearest the third cluster.


class StatisticsTest(tf.test.TestCase):
  """The clients' statistics against the same formulas in numpy."""

  def test_pearson_residuals_and_bias_gradient(self):
    preset = synthetic.TINY
    num_tokens = preset.vocab_size + 4
    model_fn = language_model.build_model_fn(preset, num_tokens, seed=3)
    weights = language_model.initial_weights(model_fn)
    # A skewed output bias: predicted frequencies far from uniform, where
    # the two statistics part.
    trainable = list(weights.trainable)
    trainable[-1] = np.linspace(-3.0, 3.0, num_tokens).astype(np.float32)
    weights = tff.learning.models.ModelWeights(
        trainable=trainable, non_trainable=list(weights.non_trainable))
    clients = [synthetic.cycle_windows(7, 0, 3), synthetic.cycle_windows(
        12, 5, 2)]
    clients[1]['y'][1, 10:] = 0  # Padding is not counted.
    model = model_fn()
    local.assign_weights(model, weights)
    expected = {'pearson': [], 'bias_gradient': []}
    for arrays in clients:
      mask = (arrays['y'] != 0)[..., None]
      probabilities = tf.nn.softmax(model.predict_on_batch(
          arrays['x'], training=False)).numpy()
      predicted = (probabilities * mask).sum((0, 1)) / mask.sum()
      one_hot = np.eye(num_tokens)[arrays['y']]
      observed = (one_hot * mask).sum((0, 1)) / mask.sum()
      for name, vector in (
          ('pearson', (observed - predicted) / np.sqrt(predicted + 1e-7)),
          ('bias_gradient', predicted - observed)):
        expected[name].append(vector / np.linalg.norm(vector))
    with runtime.local_runtime():
      for name in grouping.STATISTICS:
        statistics = grouping.build_statistics(model_fn, num_tokens, name)
        found = statistics(weights, [synthetic.token_dataset(a, batch_size=2)
                                     for a in clients])
        for vector, want in zip(found, expected[name]):
          self.assertAllClose(vector, want, atol=1e-5)
    # The two statistics differ (the scaling by the predicted frequency).
    self.assertGreater(
        np.abs(expected['pearson'][0] + expected['bias_gradient'][0]).max(),
        0.1)
    with self.assertRaisesRegex(ValueError, 'statistic must be one of'):
      grouping.build_statistics(model_fn, num_tokens, 'tfidf')
    with self.assertRaisesRegex(ValueError, 'grouping_statistic must be'):
      methods.StageConfig(groups='inferred', grouping_statistic='tfidf')


class InferredGroupsTest(tf.test.TestCase):
  """A whole comparison with inferred and random groups on the synthetic
  corpus (groups of disjoint vocabularies, never shown to the inference)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    directory = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.data = synthetic.prepare_grouped(directory, {'a': 4, 'b': 4, 'c': 3})
    training_config = training.TrainingConfig(
        clients_per_round=3, client_learning_rate=0.5, batch_size=4)
    cls.outcomes = {}
    with runtime.local_runtime():
      for mode in ('given', 'inferred', 'random'):
        config = methods.StageConfig(
            global_rounds=3, group_rounds=2, finetune_epochs=0,
            eval_clients='all', curve_every=0, groups=mode)
        cls.outcomes[mode] = experiment.run(
            cls.data, synthetic.TINY, training_config, config,
            ['fl', 'groupfl', 'group_unigram'])

  def test_inferred_groups_are_the_true_ones_and_random_are_not(self):
    report = {m: o.results['groups'] for m, o in self.outcomes.items()}
    self.assertEqual(report['given'], {'mode': 'given', 'num_groups': 3,
                                       'statistic': None,
                                       'adjusted_rand_index': 1.0})
    self.assertEqual(report['inferred']['num_groups'], 3)
    self.assertEqual(report['inferred']['statistic'], 'pearson')
    self.assertAlmostEqual(report['inferred']['adjusted_rand_index'], 1.0)
    self.assertLess(report['random']['adjusted_rand_index'], 0.5)
    tree = self.outcomes['inferred'].tree
    self.assertCountEqual(tree.groups(), ['cluster0', 'cluster1', 'cluster2'])

  def test_every_grouping_scores_the_same_clients_and_global_model(self):
    sums = {m: o.client_sums for m, o in self.outcomes.items()}
    for mode in ('inferred', 'random'):
      for method in ('fl', 'groupfl', 'group_unigram'):
        self.assertCountEqual(sums[mode][method], sums['given'][method])
      self.assertEqual(sums[mode]['fl'], sums['given']['fl'])
    # Groups of the wrong clients fit their clients worse.
    perplexity = {m: o.results['methods']['group_unigram']['test']['perplexity']
                  for m, o in self.outcomes.items()}
    self.assertAlmostEqual(perplexity['inferred'], perplexity['given'])
    self.assertGreater(perplexity['random'], perplexity['given'])

  def test_unseen_clients_are_left_out_of_training_and_reported_apart(self):
    config = methods.StageConfig(
        global_rounds=3, group_rounds=2, finetune_epochs=0,
        eval_clients='all', curve_every=0, groups='inferred',
        unseen_fraction=0.25)
    sampled = []
    with runtime.local_runtime():
      tree = experiment.build_tree(self.data, synthetic.TINY,
                                   training.TrainingConfig(
                                       clients_per_round=3, batch_size=4),
                                   config)
      original = tree.batches.dataset

      def dataset(split, client, *args, **kwargs):
        if split == 'train':
          sampled.append(client)
        return original(split, client, *args, **kwargs)

      tree.batches.dataset = dataset
      outcome = experiment.run(
          self.data, synthetic.TINY, tree.training_config, config,
          ['fl', 'groupfl', 'group_unigram'], tree=tree)
    # One of each group's 4, 4 and 3 clients (round(0.25 * n)).
    self.assertLen(tree.unseen, 3)
    self.assertEqual(
        sorted(self.data.client_to_group[c] for c in tree.unseen),
        ['a', 'b', 'c'])
    self.assertEqual(outcome.results['unseen']['clients'], 3)
    self.assertEqual(outcome.results['evaluated_clients'], 8)
    # Unseen clients got a group (the nearest cluster) ...
    self.assertAlmostEqual(
        outcome.results['groups']['adjusted_rand_index'], 1.0)
    # ... but trained nothing: their train splits were read only for their
    # statistics (one dataset each) and for fine-tuning (none here).
    for client in tree.unseen:
      self.assertEqual(sampled.count(client), 1, client)
    self.assertIn('groupfl - fl', outcome.results['unseen']['paired'])
    # Their sums come apart from the seen clients', for unseen_clients.csv.
    self.assertEqual(set(outcome.unseen_tokens), tree.unseen)
    for method in ('fl', 'groupfl', 'group_unigram'):
      self.assertEqual(set(outcome.unseen_sums[method]), tree.unseen)
      self.assertFalse(set(outcome.client_sums[method]) & tree.unseen)

  def test_subgroups_continue_from_their_group_model(self):
    # Two subgroups in each of a and b, one in c.
    subgrouping = {c: f'{self.data.client_to_group[c]}{int(c[-1]) // 2}'
                   for c in self.data.client_ids}
    config = methods.StageConfig(global_rounds=3, group_rounds=2,
                                 finetune_epochs=0, eval_clients='all',
                                 curve_every=0)
    with runtime.local_runtime():
      outcome = experiment.run(
          self.data, synthetic.TINY, training.TrainingConfig(
              clients_per_round=3, client_learning_rate=0.5, batch_size=4),
          config, ['groupfl', 'subgroupfl'], subgrouping=subgrouping)
      tree = outcome.tree
      groups = tree.group_weights('group')
      subgroups = tree.group_weights('subgroup')
    self.assertEqual(sorted(subgroups), ['a0', 'a1', 'b0', 'b1', 'c0', 'c1'])
    # c1 has one client (c-2): too few to train, it keeps c's model.
    self.assertTrue(synthetic.weights_equal(subgroups['c1'], groups['c']))
    self.assertFalse(synthetic.weights_equal(subgroups['a0'], groups['a']))
    self.assertEqual(
        sorted(s for s in tree.history if s.startswith('subgroup/')),
        ['subgroup/a0', 'subgroup/a1', 'subgroup/b0', 'subgroup/b1',
         'subgroup/c0'])
    budget = outcome.results['methods']['subgroupfl']['budget']
    self.assertEqual(budget['rounds'], 3 + 2 + 2)
    self.assertIn('subgroup', outcome.results['methods']['subgroupfl'][
        'stages'])
    self.assertTrue(methods.needs_subgroups('subgroupperfl'))
    self.assertFalse(methods.needs_subgroups('groupperfl'))
    # Without a subgrouping the stage cannot run.
    tree.subgrouping = None
    with self.assertRaisesRegex(ValueError, 'needs StageTree.subgrouping'):
      tree.with_config(config).groups('subgroup')

  def test_given_groups_take_no_num_groups(self):
    with self.assertRaisesRegex(ValueError, 'num_groups applies'):
      methods.StageConfig(groups='given', num_groups=3)
    with self.assertRaisesRegex(ValueError, 'groups must be one of'):
      methods.StageConfig(groups='learned')


if __name__ == '__main__':
  tf.test.main()
