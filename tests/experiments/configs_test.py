"""experiments/configs/*.flags: every flag file parses with the binary's flags,
the tuned values are one set for every dataset, and each converged file keeps
its tuned file's values, changing only the budget, selection and scoring."""

import copy
import glob
import os

from absl import flags
from absl.testing import absltest

from experiments import run_group_personalization  # Defines the flags.

_CONFIGS = 'experiments/configs'
_DATASETS = ('shakespeare', 'bbc', 'wikipedia')
# What a converged file may change: the budget, when a stage stops, what is
# scored and which methods run.
_CONVERGED_FIELDS = {'global_rounds', 'group_rounds', 'curve_every',
                     'stage_selection', 'eval_clients_per_group', 'methods'}


def _values(name: str) -> dict:
  """flag name -> value after parsing `--flagfile=<configs>/<name>.flags`."""
  path = os.path.join(_CONFIGS, f'{name}.flags')
  if not os.path.isfile(path):
    raise AssertionError(f'{path} is missing')
  parsed = copy.deepcopy(flags.FLAGS)
  parsed.unparse_flags()
  parsed(['binary', f'--flagfile={path}'])
  return {n: parsed[n].value for n in parsed}


class ConfigsTest(absltest.TestCase):

  def test_every_file_is_a_known_dataset_or_its_converged_variant(self):
    names = sorted(os.path.basename(p)[:-len('.flags')]
                   for p in glob.glob(os.path.join(_CONFIGS, '*.flags')))
    self.assertEqual(
        names, sorted(list(_DATASETS)
                      + [f'{d}-converged' for d in _DATASETS]))

  def test_tuned_values_are_the_same_for_every_dataset(self):
    tuned = {d: _values(d) for d in _DATASETS}
    for dataset, values in tuned.items():
      self.assertEqual(values['dataset'], dataset)
    reference = dict(tuned['shakespeare'], dataset=None)
    for dataset in _DATASETS[1:]:
      self.assertEqual(dict(tuned[dataset], dataset=None), reference,
                       dataset)

  def test_converged_files_change_only_budget_selection_and_scoring(self):
    methods = set(run_group_personalization.parse_methods('all', False))
    for dataset in _DATASETS:
      tuned, converged = _values(dataset), _values(f'{dataset}-converged')
      changed = {n for n in tuned if tuned[n] != converged[n]}
      self.assertLessEqual(changed, _CONVERGED_FIELDS, dataset)
      self.assertGreaterEqual(converged['global_rounds'],
                              10 * tuned['global_rounds'], dataset)
      self.assertEqual(converged['eval_clients_per_group'], 0, dataset)
      chosen = set(converged['methods'].split(','))
      self.assertLessEqual(chosen, methods, dataset)
      self.assertLessEqual(
          {'fl', 'perfl', 'groupfl', 'groupperfl', 'fl_matched',
           'perfl_matched', 'fl_compute', 'perfl_compute', 'unigram',
           'group_unigram'}, chosen, dataset)


if __name__ == '__main__':
  absltest.main()
