"""TFF's C++ runtime: a local worker that always ends, or a remote one.

TFF's default local execution context serves computations from a
`worker_binary` subprocess. That process can outlive Python (and hold the
parent's stdout open, so `prog | tail` hangs). `local_runtime()` installs the
context and, on exit (and at interpreter exit, for a body that never returns),
ends every `worker_binary` child of this process. Importing this module does
nothing: the interpreter-exit hook is registered by the first
`local_runtime()` only.

`remote_runtime(address)` runs every computation on a `worker_binary` started
elsewhere (see README: "Remote workers"), through TFF's public parts:
`RemoteExecutorGrpcStub` over a gRPC channel, a `RemoteExecutor` per
cardinality from a `ResourceManagingExecutorFactory`, and the same
`SyncExecutionContext` with TFF's native compiler that the local context uses.

Why workers are found in /proc: TFF 0.87's local context starts its worker
in a private subprocess object and offers no public handle to it.
"""

import atexit
import contextlib
import os
import signal
import subprocess
import time
import uuid

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
      with open(f'/proc/{pid}/stat', 'rb') as f:
        stat = f.read().decode(errors='replace')
    except OSError:
      continue
    # Exited (zombie, state Z) workers are already ended.
    if f'({_WORKER})' in stat and stat[stat.rfind(')') + 2] != 'Z':
      pids.append(pid)
  return pids


def _kill_workers() -> int:
  """Kills this process's current workers and waits for each; returns how many."""
  pids = worker_pids()
  for pid in pids:
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except (ProcessLookupError, ChildProcessError):
      pass
  return len(pids)


def stop_workers(quiet_seconds: float = 1.0) -> None:
  """Ends this process's TFF workers and waits until they have exited.

  A computation interrupted by Ctrl-C or SIGTERM may still run in TFF's
  event-loop thread; when its worker dies, TFF starts a new one and retries.
  So workers are killed until none has appeared for `quiet_seconds` after a
  kill. The exited workers are left for TFF to reap (WNOWAIT): TFF's own
  clean-up signals and waits on its worker later, which must still find it.
  """
  if not _kill_workers():
    return
  quiet_since = time.monotonic()
  while time.monotonic() - quiet_since < quiet_seconds:
    time.sleep(0.05)
    if _kill_workers():
      quiet_since = time.monotonic()


_exit_hook_registered = False
_MARK = 'GPFL_RUNTIME_ID'

# Waits for the driver (pid $1) to end, then kills every process whose
# environment holds the mark ($2): the workers it started (they inherit the
# driver's environment), however the driver ended, kill -9 included.
_WATCHER = r"""
while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = "$$" ] && continue
  if tr '\0' '\n' < "$dir/environ" 2>/dev/null | grep -qx "$2"; then
    kill -9 "$pid" 2>/dev/null
  fi
done
"""


def _start_watcher() -> subprocess.Popen:
  """Marks this process's environment and starts the watcher (see _WATCHER).

  The watcher is a separate session with no terminal streams, so that neither
  Ctrl-C nor a closed pipe ends it before the driver.
  """
  mark = f'{_MARK}={os.getpid()}-{uuid.uuid4().hex}'
  os.environ[_MARK] = mark.split('=', 1)[1]
  return subprocess.Popen(
      ['sh', '-c', _WATCHER, 'gpfl-worker-watcher', str(os.getpid()), mark],
      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, start_new_session=True)


@contextlib.contextmanager
def local_runtime():
  """Runs the body under TFF's local C++ runtime; its workers end on exit.

  They also end if this process dies without cleaning up (kill -9): a small
  watcher process outlives it just long enough to end them.
  """
  global _exit_hook_registered
  if not _exit_hook_registered:
    atexit.register(stop_workers)
    _exit_hook_registered = True
  watcher = _start_watcher()
  tff.backends.native.set_sync_local_cpp_execution_context()
  try:
    yield
  finally:
    stop_workers()
    watcher.kill()
    watcher.wait()


class WorkerError(Exception):
  """A remote TFF worker cannot be reached."""


@contextlib.contextmanager
def remote_runtime(address: str, connect_seconds: float = 30.0,
                   default_num_clients: int = 0):
  """Runs the body's computations on the TFF worker at `address` (host:port).

  Raises WorkerError if no worker answers within `connect_seconds`. The
  previous default context is restored on exit; the remote worker is left
  running (it belongs to whoever started it).
  """
  import grpc  # pylint: disable=g-import-not-at-top

  channel = grpc.insecure_channel(address)
  try:
    grpc.channel_ready_future(channel).result(timeout=connect_seconds)
  except grpc.FutureTimeoutError:
    channel.close()
    raise WorkerError(f'no TFF worker answers at {address} (waited '
                      f'{connect_seconds:g} s)') from None
  stub = tff.framework.RemoteExecutorGrpcStub(channel)

  def stack_fn(cardinalities):
    cardinalities.setdefault(tff.CLIENTS, default_num_clients)
    executor = tff.framework.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor

  context = tff.framework.SyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(stack_fn),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)
  stack = tff.framework.get_context_stack()
  previous = stack.current
  tff.framework.set_default_context(context)
  try:
    yield
  finally:
    # The channel is left to be collected with the context: TFF may still
    # release remote values through it.
    tff.framework.set_default_context(previous)
