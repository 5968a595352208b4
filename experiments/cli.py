"""The absl runner of every binary, with its one-line errors at the edge.

`run(main)` parses flags and runs `main`; bad flags, stray arguments and bad
data (`DataError`) end in one `error:` line and exit status 2, no traceback.
The library below never sees flags or exits: binaries call `fail` instead.
"""

from importlib import metadata
import os
import platform
import signal
import sys

# Before TensorFlow loads: keep its C++ start-up chatter off the console.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from gpfl_tff.data.errors import DataError  # pylint: disable=g-import-not-at-top


def fail(message: str) -> None:
  """Prints one error line and exits with status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def environment() -> dict:
  """The machine and packages a run ran on, for its results.json: runs of
  one seed agree to the last digit within a session, but long reruns in
  later sessions drifted slightly, cause not established (docs/RESULTS.md);
  TensorFlow's CPU kernels pick their code by the CPU's instruction sets,
  so these are recorded to trace or rule out the machine."""
  cpu, simd = platform.processor() or platform.machine(), []
  try:
    with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          cpu = value.strip()
        elif key.strip() == 'flags':
          simd = sorted(v for v in value.split()
                        if v.startswith(('avx', 'fma', 'amx')))
          break
  except OSError:
    pass
  packages = {}
  for name in ('tensorflow', 'tensorflow-federated', 'numpy'):
    try:
      packages[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      packages[name] = None
  return {'cpu': cpu, 'cpu_simd_flags': simd, 'cpu_count': os.cpu_count(),
          'python': platform.python_version(), 'packages': packages}


def _parse(argv):
  try:
    argv = flags.FLAGS(argv)
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    return argv
  except flags.Error as e:
    fail(str(e).splitlines()[0])


def run(main, arguments: bool = False) -> None:
  """Runs an absl main; bad flags and bad data end in one line and exit 2.

  arguments: whether `main` takes positional arguments (argv[1:]); if not,
  any is an error.
  """

  def guarded(argv):
    # SIGTERM ends the run like Ctrl-C would: `finally` blocks run, so TFF's
    # worker process is stopped instead of orphaned. (A binary may install
    # its own handler in `main`, as run_group_personalization does.)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if len(argv) > 1 and not arguments:
      fail(f'unexpected arguments: {" ".join(argv[1:])}')
    try:
      main(argv)
    except DataError as e:
      fail(str(e))

  app.run(guarded, flags_parser=_parse)
