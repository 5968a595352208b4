"""TFF's local C++ runtime, and making sure its worker process ends.

TFF's default local execution context serves computations from a
`worker_binary` subprocess. That process can outlive Python (and hold the
parent's stdout open, so `prog | tail` hangs). `local_runtime()` installs the
context and, on exit (and at interpreter exit), ends every `worker_binary`
child of this process.
"""

import atexit
import contextlib
import os
import signal

import tensorflow_federated as tff

_WORKER = 'worker_binary'


def _children(pid: int) -> list[int]:
  """Pids of the direct children of `pid` (Linux /proc)."""
  children = []
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat', 'rb') as f:
        stat = f.read().decode(errors='replace')
    except OSError:
      continue
    # The command name is in parentheses and may hold spaces; ppid follows it.
    fields = stat[stat.rfind(')') + 2:].split()
    if len(fields) > 1 and int(fields[1]) == pid:
      children.append(int(entry))
  return children


def worker_pids() -> list[int]:
  """Pids of this process's TFF worker processes."""
  pids = []
  for pid in _children(os.getpid()):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        if _WORKER.encode() in f.read():
          pids.append(pid)
    except OSError:
      continue
  return pids


def stop_workers() -> None:
  """Ends this process's TFF workers and waits for them."""
  for pid in worker_pids():
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
      pass


@contextlib.contextmanager
def local_runtime():
  """Runs the body under TFF's local C++ runtime; its workers end on exit."""
  tff.backends.native.set_sync_local_cpp_execution_context()
  try:
    yield
  finally:
    stop_workers()


atexit.register(stop_workers)
