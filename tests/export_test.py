"""Exported computations load back and compute what the in-process ones do."""

import json
import os
import tempfile

from absl.testing import absltest

import numpy as np
import tensorflow as tf

from gpfl_tff import export
from gpfl_tff import runtime
from gpfl_tff.learning import training
from tests.learning import synthetic
from tests.prepare import prepare_runner

# Intrinsics a production runtime is expected to provide (see gpfl_tff.export).
_EXPECTED = {'federated_apply', 'federated_broadcast', 'federated_eval_at_server',
             'federated_map', 'federated_sum', 'federated_value_at_server',
             'federated_zip_at_clients', 'federated_zip_at_server',
             'federated_mean', 'federated_weighted_mean'}


class ExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # staticmethod: a plain function attribute would be bound to the test.
    cls.model_fn = staticmethod(synthetic.tiny_model_fn(vocab_size=8))
    cls.config = training.TrainingConfig(clients_per_round=2, batch_size=4)
    cls.dir = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.here = export.computations(cls.model_fn, cls.config)
    cls.manifest = export.export(cls.here, cls.dir)
    cls.data = [synthetic.token_dataset(
        synthetic.cycle_windows(words=6, offset=i, windows=6))
                for i in range(3)]

  def test_manifest_lists_files_types_and_intrinsics(self):
    with open(os.path.join(self.dir, export.MANIFEST)) as f:
      self.assertEqual(json.load(f), self.manifest)
    self.assertCountEqual(self.manifest, export.COMPUTATIONS)
    for name, entry in self.manifest.items():
      self.assertTrue(os.path.isfile(os.path.join(self.dir, entry['file'])))
      self.assertContainsSubset(entry['intrinsics'], _EXPECTED, name)
    self.assertContainsSubset(
        ['federated_broadcast', 'federated_map'],
        self.manifest['round']['intrinsics'])
    self.assertIn('@CLIENTS', self.manifest['personalize']['type_signature'])

  def test_loaded_computations_equal_the_in_process_ones(self):
    here = self.here
    loaded = {n: export.load(self.dir, n) for n in export.COMPUTATIONS}
    with runtime.local_runtime():
      state = here['initialize']()
      # Initial weights are drawn afresh by each call (runs set their own,
      # `training.start_state`): the same structure, shapes and types.
      def shapes(value):
        return sorted((np.shape(v), str(np.asarray(v).dtype))
                      for v in tf.nest.flatten(value))
      self.assertEqual(shapes(state), shapes(loaded['initialize']()))
      after = here['round'](state, self.data[:2]).state
      after_loaded = loaded['round'](state, self.data[:2])
      weights = after.global_model_weights
      self._assert_same(weights,
                        after_loaded['state']['global_model_weights'])
      args = (weights, self.data, self.data, self.data, np.int32(2),
              np.float32(0.5), np.int32(0))
      self._assert_same(here['personalize'](*args),
                        loaded['personalize'](*args))
      self._assert_same(here['evaluate'](weights, self.data),
                        loaded['evaluate'](weights, self.data))

  def _assert_same(self, a, b):
    """Equal leaves (exactly), structures compared by their flattened leaves."""
    leaves_a, leaves_b = tf.nest.flatten(a), tf.nest.flatten(b)
    self.assertLen(leaves_b, len(leaves_a))
    for x, y in zip(leaves_a, leaves_b):
      self.assertTrue(np.array_equal(np.asarray(x), np.asarray(y)), (x, y))

  def test_corrupt_file_is_a_value_error_naming_it(self):
    path = os.path.join(self.dir, 'broken.pb')
    with open(path, 'wb') as f:
      f.write(b'\x0a\xff\xff garbage')
    with self.assertRaisesRegex(ValueError, 'broken.pb: not a serialized'):
      export.load(self.dir, 'broken')
    with self.assertRaisesRegex(ValueError, 'missing.pb: cannot read'):
      export.load(self.dir, 'missing')

  def test_binary_writes_the_manifest(self):
    output_dir = os.path.join(self.create_tempdir().full_path, 'binary')
    run = prepare_runner.run_module(
        'experiments.export', '--model=small', '--vocab_size=50',
        f'--output_dir={output_dir}', timeout=600)
    self.assertEqual(run.returncode, 0, run.stderr)
    with open(os.path.join(output_dir, export.MANIFEST)) as f:
      manifest = json.load(f)
    self.assertCountEqual(manifest, export.COMPUTATIONS)
    # 50 words and 4 special tokens: the output layer has 54 units.
    self.assertIn('float32[64,54]', manifest['evaluate']['type_signature'])


if __name__ == '__main__':
  tf.test.main()
