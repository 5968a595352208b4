"""Round metrics are released to TensorBoard and CSV through tff.program."""

import csv
import glob
import os

import tensorflow as tf

from gpfl_tff.evaluation import release


def _scalars(run_dir: str, tag: str) -> dict:
  """step -> value of `tag` in one TensorBoard run folder."""
  values = {}
  for path in glob.glob(os.path.join(run_dir, 'events.out.tfevents.*')):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def _rows(path: str) -> list[dict]:
  with open(path, encoding='utf-8') as f:
    return list(csv.DictReader(f))


class RoundReleaserTest(tf.test.TestCase):

  def test_records_go_to_tensorboard_and_csv_per_stage(self):
    out = self.create_tempdir().full_path
    releaser = release.RoundReleaser(out)
    releaser('global', {'round': 1, 'train_perplexity': 9.0, 'clients': 3,
                        'seconds': 0.5})
    releaser('global', {'round': 2, 'train_perplexity': 7.0, 'clients': 3,
                        'seconds': 0.5, 'validation_perplexity': 8.0})
    releaser('group/a', {'round': 1, 'train_perplexity': 5.0, 'clients': 2,
                         'seconds': 0.2})
    self.assertEqual(_scalars(os.path.join(out, 'tensorboard', 'global'),
                              'train_perplexity'), {1: 9.0, 2: 7.0})
    self.assertEqual(_scalars(os.path.join(out, 'tensorboard', 'global'),
                              'validation_perplexity'), {2: 8.0})
    self.assertEqual(_scalars(os.path.join(out, 'tensorboard', 'group_a'),
                              'train_perplexity'), {1: 5.0})
    rows = _rows(os.path.join(out, 'metrics', 'global.csv'))
    self.assertEqual([(r['round'], float(r['train_perplexity'])) for r in rows],
                     [('1', 9.0), ('2', 7.0)])
    self.assertEqual(rows[1]['validation_perplexity'], '8.0')
    self.assertLen(_rows(os.path.join(out, 'metrics', 'group_a.csv')), 1)

  def test_a_replayed_round_replaces_the_rows_from_it_on(self):
    out = self.create_tempdir().full_path
    first = release.RoundReleaser(out)
    for r in (1, 2, 3):
      first('global', {'round': r, 'train_perplexity': 10.0 - r})
    # A resumed run (a new releaser on the same files) replays rounds 1-2
    # from its checkpoint, then goes on.
    resumed = release.RoundReleaser(out)
    for r in (1, 2, 3, 4):
      resumed('global', {'round': r, 'train_perplexity': 10.0 - r})
    rows = _rows(os.path.join(out, 'metrics', 'global.csv'))
    self.assertEqual([int(r['round']) for r in rows], [1, 2, 3, 4])


if __name__ == '__main__':
  tf.test.main()
