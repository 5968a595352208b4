"""Dataset flags shared by the binaries (their runner is experiments/cli.py)."""

import os

# Before TensorFlow loads: keep its C++ start-up chatter off the console.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import flags  # pylint: disable=g-import-not-at-top

from gpfl_tff.data import datasets

DATASET = flags.DEFINE_enum('dataset', 'shakespeare', datasets.DATASETS,
                            'Which dataset to read.')
GROUP_BY = flags.DEFINE_string(
    'group_by', '', 'How clients are grouped: shakespeare: genre (default) or '
    'play; stackoverflow: tag; bbc: topic; text_corpus: group_id; wikipedia: '
    'topic.')
INPUT = flags.DEFINE_string(
    'input', '', 'text_corpus: a .jsonl file or a <group>/<client>.txt folder; '
    'stackoverflow: folder holding stackoverflow.sqlite; shakespeare: optional '
    "folder holding TFF's shakespeare.sqlite.")
CACHE_DIR = flags.DEFINE_string(
    'cache_dir', '', 'Where downloaded wheels and prepared datasets are kept '
    '(default: $GPFL_CACHE_DIR, else data/cache).')
VOCAB_SIZE = flags.DEFINE_integer('vocab_size', 10000,
                                  'Vocabulary words, special tokens excluded.')
MIN_WORDS = flags.DEFINE_integer('min_words_per_client', 50,
                                 'Clients with fewer words are dropped.')
TOP_TAGS = flags.DEFINE_integer('top_tags', 10,
                                'stackoverflow: tags kept as groups.')
MAX_CLIENTS = flags.DEFINE_integer(
    'max_clients', 0, 'stackoverflow: read at most this many clients (0: all).')
KEEP_UNCATEGORIZED = flags.DEFINE_boolean(
    'keep_uncategorized', False, 'wikipedia: keep the catch-all '
    '"Uncategorized" topic (1,000 articles) as a group; left out by default.')


def config(default_vocab_size: int | None = None) -> datasets.DatasetConfig:
  """The dataset configuration given by the flags, checked.

  Args:
    default_vocab_size: used instead of --vocab_size's default when the flag
      is not given (a model preset's own vocabulary size).
  """
  vocab_size = VOCAB_SIZE.value
  if default_vocab_size is not None and not VOCAB_SIZE.present:
    vocab_size = default_vocab_size
  return datasets.DatasetConfig(
      dataset=DATASET.value, group_by=GROUP_BY.value, input=INPUT.value,
      vocab_size=vocab_size, min_words_per_client=MIN_WORDS.value,
      top_tags=TOP_TAGS.value, max_clients=MAX_CLIENTS.value,
      keep_uncategorized=KEEP_UNCATEGORIZED.value).resolved()


def cache_dir() -> str:
  return CACHE_DIR.value or datasets.default_cache_dir()
