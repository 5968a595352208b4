"""ClientBatches: token-id datasets per client, the same as the in-graph path."""

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from gpfl_tff.data import batches
from gpfl_tff.data import client_data
from gpfl_tff.data import datasets
from gpfl_tff.data import text


class ClientBatchesTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    corpus = os.path.join(root, 'corpus.jsonl')
    lines = {'a-0': ['the cat sat on the mat today'] * 4 +
                    ['a dog!', 'the end of the story is near now'],
             'b-0': ['zebra crossing ahead'] * 5}
    with open(corpus, 'w', encoding='utf-8') as f:
      for client, texts in lines.items():
        for line in texts:
          f.write(json.dumps({'client_id': client, 'group_id': client[0],
                              'text': line}) + '\n')
    prepared = os.path.join(root, 'prepared')
    datasets.prepare(datasets.DatasetConfig(dataset='text_corpus',
                                            input=corpus, vocab_size=8,
                                            min_words_per_client=1),
                     prepared, os.path.join(root, 'cache'))
    cls.data = client_data.load(prepared)
    cls.encoder = text.TextEncoder(cls.data.vocabulary, seq_len=4)

  def test_arrays_equal_the_in_graph_pipeline(self):
    client_batches = batches.ClientBatches(self.data, self.encoder, 3)
    for split in client_data.SPLITS:
      for client_id in self.data.client_ids:
        examples = self.data.split(split).create_tf_dataset_for_client(
            client_id)
        expected = list(self.encoder.to_sequences(examples).batch(1000))[0]
        arrays = client_batches.arrays(split, client_id)
        self.assertAllEqual(arrays['x'], expected['x'])
        self.assertAllEqual(arrays['y'], expected['y'])

  def test_dataset_batches_and_repeats_in_order(self):
    client_batches = batches.ClientBatches(self.data, self.encoder, 3)
    arrays = client_batches.arrays('train', 'a-0')
    windows = len(arrays['x'])
    got = list(client_batches.dataset('train', 'a-0', epochs=2))
    self.assertEqual([len(b['x']) for b in got][:-1],
                     [3] * (len(got) - 1))
    stacked = np.concatenate([b['x'].numpy() for b in got])
    self.assertAllEqual(stacked, np.concatenate([arrays['x'], arrays['x']]))
    self.assertEqual(sum(len(b['x']) for b in got), 2 * windows)

  def test_token_count_counts_non_padding_targets(self):
    client_batches = batches.ClientBatches(self.data, self.encoder, 3)
    # b-0 train: 3 examples of 3 words, each <bos> w w w <eos>: 4 targets.
    self.assertEqual(client_batches.token_count('train', 'b-0'), 3 * 4)

  def test_bad_batch_size(self):
    with self.assertRaises(ValueError):
      batches.ClientBatches(self.data, self.encoder, 0)


if __name__ == '__main__':
  tf.test.main()
