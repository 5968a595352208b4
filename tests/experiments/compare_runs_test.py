"""experiments/compare_runs.py: two settings, method by method, as a user runs it."""

import json
import os

from absl.testing import absltest

from tests.prepare import prepare_runner

_MODULE = 'experiments.compare_runs'


def _run_dir(root: str, name: str, losses: dict, model: str = 'small',
             dataset: str = 'shakespeare', tokens: int = 10) -> str:
  """A run folder: results.json and clients.csv, where `losses` maps each
  method to the loss sums of clients c0, c1, ... (`tokens` tokens each)."""
  directory = os.path.join(root, name)
  os.makedirs(directory)
  methods = {}
  with open(os.path.join(directory, 'clients.csv'), 'w') as f:
    f.write('method,client_id,group,train_tokens,loss_sum,token_count\n')
    for method, values in losses.items():
      for index, loss in enumerate(values):
        f.write(f'{method},c{index},g,100,{loss},{tokens}\n')
      methods[method] = {'test': {'perplexity': 100.0 + len(values)}}
  results = {'dataset': dataset, 'eval_split': 'test', 'methods': methods,
             'flags': {'model': model, 'output_dir': directory, 'seed': 0}}
  with open(os.path.join(directory, 'results.json'), 'w') as f:
    json.dump(results, f)
  return directory


class CompareRunsTest(absltest.TestCase):

  def test_paired_difference_of_each_shared_method(self):
    root = self.create_tempdir().full_path
    a = _run_dir(root, 'a', {'fl': [10.0, 20.0], 'groupperfl': [8.0, 9.0]},
                 model='so_nwp')
    b = _run_dir(root, 'b', {'fl': [12.0, 22.0], 'groupperfl': [8.0, 11.0],
                             'perfl': [1.0, 1.0]})
    run = prepare_runner.run_module(_MODULE, a, b)
    self.assertEqual(run.returncode, 0, run.stderr)
    self.assertIn('--model: so_nwp vs small', run.stdout)
    self.assertNotIn('output_dir', run.stdout)
    rows = {line.split('|')[1].strip(): line for line in run.stdout.splitlines()
            if line.startswith('| ') and not line.startswith('| method')}
    # perfl is in B only: not compared.
    self.assertEqual(set(rows), {'fl', 'groupperfl'})
    # fl: every client 2 nats lower over 20 tokens, so every resample too.
    self.assertIn('| -0.2000 [-0.2000, -0.2000] | 2 |', rows['fl'])
    # groupperfl: (0 - 2) / 20 on all clients; resamples lie in [-0.2, 0].
    cells = rows['groupperfl'].split('|')
    self.assertTrue(cells[4].strip().startswith('-0.1000 ['), cells[4])
    low, high = (float(x) for x in
                 cells[4].split('[')[1].rstrip('] ').split(','))
    self.assertGreaterEqual(low, -0.2)
    self.assertLessEqual(high, 0.0)

  def test_bad_input_is_one_error_line(self):
    root = self.create_tempdir().full_path
    a = _run_dir(root, 'a', {'fl': [10.0, 20.0]})
    cases = {
        'other dataset': ([a, _run_dir(root, 'bbc', {'fl': [1.0, 2.0]},
                                       dataset='bbc')], 'dataset differs'),
        'other clients': ([a, _run_dir(root, 'three', {'fl': [1.0, 2.0, 3.0]})],
                          'fl was scored on other clients'),
        'other tokens': ([a, _run_dir(root, 'tokens', {'fl': [1.0, 2.0]},
                                      tokens=11)], 'different tokens'),
        'one folder': ([a], 'give two output folders'),
        'no results.json': ([a, root], 'results.json: not found'),
    }
    os.remove(os.path.join(_run_dir(root, 'bare', {'fl': [1.0, 2.0]}),
                           'clients.csv'))
    cases['missing clients.csv'] = ([a, os.path.join(root, 'bare')],
                                    'clients.csv: not found')
    for name, (folders, message) in cases.items():
      with self.subTest(name):
        run = prepare_runner.run_module(_MODULE, *folders)
        self.assertEqual(run.returncode, 2, run.stdout)
        lines = run.stderr.strip().splitlines()
        self.assertLen(lines, 1, run.stderr)
        self.assertTrue(lines[0].startswith('error: '), lines[0])
        self.assertIn(message, lines[0])


if __name__ == '__main__':
  absltest.main()
