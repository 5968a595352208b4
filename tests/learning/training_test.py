"""Tests of the federated training rounds."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from gpfl_tff import runtime
from gpfl_tff.learning import data_source
from gpfl_tff.learning import training
from gpfl_tff.models import language_model
from tests.learning import synthetic


class SampleClientsTest(tf.test.TestCase):

  def test_data_source_iterator_resumes_from_its_bytes(self):
    clients = [f'c{i:02d}' for i in range(30)]
    source = data_source.ClientIdsDataSource(clients, seed=[4, 1])
    self.assertEqual(source.federated_type,
                     tff.FederatedType(np.str_, tff.CLIENTS))
    iterator = source.iterator()
    first = iterator.select(5)
    self.assertEqual(first, data_source.sample_clients(
        np.random.default_rng([4, 1]), clients, 5))
    saved = iterator.to_bytes()
    later = [iterator.select(5) for _ in range(3)]
    resumed = data_source.ClientIdsIterator.from_bytes(saved)
    self.assertEqual([resumed.select(5) for _ in range(3)], later)
    self.assertEqual(resumed, iterator)
    # A new iterator starts over.
    self.assertEqual(source.iterator().select(5), first)
    with self.assertRaisesRegex(ValueError, 'not a client sampler state'):
      data_source.ClientIdsIterator.from_bytes(b'{"weights": 1}')
    with self.assertRaisesRegex(ValueError, 'positive number of clients'):
      iterator.select(0)

  def test_deterministic_distinct_sorted(self):
    clients = [f'c{i:02d}' for i in range(30)]
    first = data_source.sample_clients(np.random.default_rng(7), clients, 5)
    second = data_source.sample_clients(np.random.default_rng(7), clients, 5)
    self.assertEqual(first, second)
    self.assertLen(first, 5)
    self.assertLen(set(first), 5)
    self.assertEqual(first, sorted(first))
    self.assertContainsSubset(first, clients)
    other = data_source.sample_clients(np.random.default_rng(8), clients, 5)
    self.assertNotEqual(first, other)

  def test_successive_rounds_differ(self):
    rng = np.random.default_rng(0)
    clients = [f'c{i:02d}' for i in range(30)]
    rounds = [tuple(data_source.sample_clients(rng, clients, 5))
              for _ in range(4)]
    self.assertGreater(len(set(rounds)), 1)

  def test_capped_at_the_number_of_clients(self):
    clients = ['x', 'y', 'z']
    self.assertEqual(
        data_source.sample_clients(np.random.default_rng(0), clients, 10),
        clients)


class TrainingConfigTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(
      ('unknown_optimizer', dict(server_optimizer='adagrad'),
       'unknown server optimizer'),
      ('no_clients', dict(clients_per_round=0), 'clients_per_round'),
      ('no_epochs', dict(client_epochs=0), 'client_epochs'),
      ('no_batch', dict(batch_size=0), 'batch_size'),
  )
  def test_bad_config_raises(self, fields, message):
    with self.assertRaisesRegex(ValueError, message):
      training.TrainingConfig(**fields)

  @parameterized.parameters(*training.SERVER_OPTIMIZERS)
  def test_server_optimizer_steps_downhill(self, name):
    config = training.TrainingConfig(server_optimizer=name,
                                     server_learning_rate=0.1)
    optimizer = training.server_optimizer(config)
    self.assertIsInstance(optimizer, tff.learning.optimizers.Optimizer)
    weights = (tf.constant([1.0, -1.0]),)
    state = optimizer.initialize(
        (tf.TensorSpec([2], tf.float32),))
    _, updated = optimizer.next(state, weights, (tf.constant([1.0, -1.0]),))
    # A step against the gradient moves each weight toward zero.
    self.assertAllLess(tf.abs(updated[0]), 1.0)

  def test_momentum_differs_from_plain_sgd(self):
    def two_steps(name):
      optimizer = training.server_optimizer(training.TrainingConfig(
          server_optimizer=name, server_learning_rate=0.1,
          server_momentum=0.9))
      weights = (tf.constant([1.0]),)
      state = optimizer.initialize((tf.TensorSpec([1], tf.float32),))
      for _ in range(2):
        state, weights = optimizer.next(state, weights, (tf.constant([1.0]),))
      return float(weights[0][0])

    self.assertAllClose(two_steps('sgd'), 0.8)
    self.assertAllClose(two_steps('sgdm'), 1.0 - 0.1 - 0.1 * 1.9)


class RunRoundsTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(*training.SERVER_OPTIMIZERS)
  def test_process_builds(self, name):
    process = training.build_process(
        synthetic.tiny_model_fn(vocab_size=8),
        training.TrainingConfig(server_optimizer=name))
    self.assertIsInstance(process, tff.learning.templates.LearningProcess)

  @staticmethod
  def _process_and_clients():
    """(model_fn, a learning process, client id -> dataset) of 4 clients."""
    model_fn = synthetic.tiny_model_fn(vocab_size=8)
    process = training.build_process(model_fn, training.TrainingConfig(
        clients_per_round=2, client_learning_rate=0.5, batch_size=4))
    data = {f'c{i}': synthetic.token_dataset(
        synthetic.cycle_windows(words=6, offset=i, windows=8))
            for i in range(4)}
    return model_fn, process, data

  def test_perplexity_falls_over_rounds(self):
    model_fn, process, data = self._process_and_clients()
    seen = []
    with runtime.local_runtime():
      state = training.start_state(process)
      state, history = training.run_rounds(
          process, state,
          data_source.ClientIdsDataSource(sorted(data), seed=0).iterator(),
          lambda c: data[c].repeat(2), rounds=6, clients_per_round=2,
          on_round=seen.append)
      weights = process.get_model_weights(state)
    self.assertEqual([r['round'] for r in history], list(range(1, 7)))
    self.assertEqual([r['clients'] for r in history], [2] * 6)
    self.assertEqual(seen, history)
    perplexities = [r['train_perplexity'] for r in history]
    self.assertLess(perplexities[-1], 0.8 * perplexities[0])
    self.assertFalse(synthetic.weights_equal(
        weights, language_model.initial_weights(model_fn)))

  @parameterized.parameters(
      ([10.0, 8.0, 5.0, 7.0], 4),  # a middle round
      ([10.0, 5.0, 5.0, 7.0], 2),  # the earliest of a tie
      ([4.0, 8.0, 5.0, 7.0], 0))  # the start: no round improved on it
  def test_keep_best_returns_the_best_validated_round(self, scripted, kept):
    _, process, data = self._process_and_clients()
    validated = []  # The weights of each validation: start, rounds 2, 4, 6.

    def validate(state):
      validated.append(process.get_model_weights(state))
      return scripted[len(validated) - 1]

    def run(**kwargs):
      return training.run_rounds(
          process, training.start_state(process),
          data_source.ClientIdsDataSource(sorted(data), seed=0).iterator(),
          lambda c: data[c], rounds=6, clients_per_round=2, **kwargs)

    with runtime.local_runtime():
      state, history = run(validate=validate, validate_every=2,
                           keep_best=True)
      weights = process.get_model_weights(state)
      last, _ = run()
      last_weights = process.get_model_weights(last)
      with self.assertRaisesRegex(ValueError, 'needs validation rounds'):
        run(keep_best=True)
    self.assertLen(validated, 4)
    self.assertTrue(synthetic.weights_equal(weights, validated[kept // 2]))
    self.assertEqual(history[0]['start_validation_perplexity'], scripted[0])
    self.assertEqual(history[-1]['kept_round'], kept)
    self.assertEqual([r['validation_perplexity'] for r in history
                      if 'validation_perplexity' in r], scripted[1:])
    # Selection does not change the rounds: the last state is as without it.
    self.assertTrue(synthetic.weights_equal(last_weights, validated[3]))

  def test_start_state_holds_the_given_weights(self):
    model_fn = synthetic.tiny_model_fn(vocab_size=8)
    process = training.build_process(model_fn, training.TrainingConfig())
    weights = language_model.initial_weights(
        synthetic.tiny_model_fn(vocab_size=8, seed=5))
    with runtime.local_runtime():
      state = training.start_state(process, weights)
      self.assertTrue(synthetic.weights_equal(
          process.get_model_weights(state), weights))


if __name__ == '__main__':
  tf.test.main()
