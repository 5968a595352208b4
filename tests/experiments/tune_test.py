"""experiments/tune.py on a tiny corpus: the grid, the choice, the flag file."""

import json
import os

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from experiments import tune

from tests.learning import synthetic
from tests.prepare import prepare_runner

_MODULE = 'experiments.tune'


class TuneTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if not flags.FLAGS.is_parsed():
      flags.FLAGS(['tune_test'])

  @flagsaver.flagsaver(client_learning_rates=['0.5'],
                       server_optimizers=['sgd', 'adam:0.01'],
                       server_learning_rates=['1.0', '0.3'])
  def test_server_learning_rate_per_optimizer(self):
    self.assertEqual(
        [(p['server_optimizer'], p['server_learning_rate'])
         for p in tune._grid()],  # pylint: disable=protected-access
        [('sgd', 1.0), ('sgd', 0.3), ('adam', 0.01)])

  def test_flag_file_holds_the_vocabulary_the_run_used(self):
    # --vocab_size not given: the run used the preset's 4,000 words, and the
    # file must keep that, not the flag's default.
    lines = tune._flag_lines({'client_learning_rate': 0.3}, 4000)  # pylint: disable=protected-access
    self.assertIn('--vocab_size=4000', lines)
    self.assertIn('--client_learning_rate=0.3', lines)
    self.assertFalse([l for l in lines if l.startswith('--cache_dir')])

  def test_federated_grid_writes_scores_choice_and_a_usable_flag_file(self):
    root = self.create_tempdir().full_path
    corpus = synthetic.write_grouped_corpus(
        os.path.join(root, 'corpus.jsonl'), {'a': 5, 'b': 5})
    output_dir = os.path.join(root, 'tune')
    run = prepare_runner.run_module(
        _MODULE, '--dataset=text_corpus', f'--input={corpus}',
        f'--cache_dir={os.path.join(root, "cache")}', '--vocab_size=30',
        '--global_rounds=2', '--group_rounds=1', '--clients_per_round=3',
        '--batch_size=4', '--family=federated',
        '--client_learning_rates=0.01,1.0', f'--output_dir={output_dir}',
        timeout=900)
    self.assertEqual(run.returncode, 0, run.stderr)
    with open(os.path.join(output_dir, 'federated_grid.json')) as f:
      grid = json.load(f)
    self.assertLen(grid['points'], 2)
    self.assertEqual(grid['scored_clients'], 'tuning')
    best = min(grid['points'], key=lambda p: p['mean_log_perplexity'])
    self.assertEqual(grid['choice'], best['point'])
    for point in grid['points']:
      self.assertCountEqual(point['perplexity'], ['fl', 'groupfl'])
    with open(os.path.join(output_dir, 'federated.flags')) as f:
      lines = f.read().splitlines()
    chosen = grid['choice']['client_learning_rate']
    self.assertIn(f'--client_learning_rate={chosen}', lines)
    self.assertIn('--global_rounds=2', lines)
    self.assertIn('--vocab_size=30', lines)
    self.assertIn('--dataset=text_corpus', lines)
    self.assertFalse([l for l in lines if l.startswith('--cache_dir')])
    # The flag file is what the experiment binary reads.
    check = prepare_runner.run_module(
        'experiments.run_group_personalization',
        f'--flagfile={os.path.join(output_dir, "federated.flags")}',
        f'--cache_dir={os.path.join(root, "cache")}',
        '--methods=fl,unigram', '--curve_every=0',
        f'--output_dir={os.path.join(root, "run")}', timeout=900)
    self.assertEqual(check.returncode, 0, check.stderr)
    with open(os.path.join(root, 'run', 'results.json')) as f:
      flags_used = json.load(f)['flags']
    self.assertEqual(flags_used['client_learning_rate'], chosen)


if __name__ == '__main__':
  absltest.main()
