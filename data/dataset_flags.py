"""Dataset flags shared by the binaries, and their error handling at the edge."""

import os
import signal
import sys

# Before TensorFlow loads: keep its C++ start-up chatter off the console.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from gpfl_tff.data import datasets
from gpfl_tff.data.errors import DataError

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


def fail(message: str) -> None:
  """Prints one error line and exits with status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _parse(argv):
  try:
    argv = flags.FLAGS(argv)
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    return argv
  except flags.Error as e:
    fail(str(e).splitlines()[0])


def run(main) -> None:
  """Runs an absl main; bad flags and bad data end in one line and exit 2."""

  def guarded(argv):
    # SIGTERM ends the run like Ctrl-C would: `finally` blocks run, so TFF's
    # worker process is stopped instead of orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if len(argv) > 1:
      fail(f'unexpected arguments: {" ".join(argv[1:])}')
    try:
      main(argv)
    except DataError as e:
      fail(str(e))

  app.run(guarded, flags_parser=_parse)
