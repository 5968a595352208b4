"""TFF's C++ runtime: local workers that always end, or remote ones.

TFF's default local execution context serves computations from a
`worker_binary` subprocess. That process can outlive Python (and hold the
parent's stdout open, so `prog | tail` hangs). `local_runtime(workers=N)`
installs N such contexts (TFF's `create_sync_local_cpp_execution_context`,
one worker each) and, on exit (and at interpreter exit, for a body that never
returns), ends every `worker_binary` child of this process. Importing this
module does nothing: the interpreter-exit hook is registered by the first
`local_runtime()` only.

`remote_runtime(addresses)` runs the computations on `worker_binary`
processes started elsewhere (see README: "Remote workers"), through TFF's
public parts: `RemoteExecutorGrpcStub` over a gRPC channel, a
`RemoteExecutor` per cardinality from a `ResourceManagingExecutorFactory`, and
the same `SyncExecutionContext` with TFF's native compiler that the local
context uses.

Both yield `Workers`: one execution context per worker, the first installed
as the default, and `Workers.map`, which runs independent tasks (the groups of
a stage, chunks of clients to fine-tune) concurrently, one thread per worker,
each thread with its worker's context installed (TFF's context stack is
thread-local). One round is not split over workers: see `Workers`.

How many client computations a local worker runs at once: TFF's local
context starts its worker with no bound (`max_concurrent_computation_calls`
-1), so a call over 100 clients runs 100 TensorFlow computations side by side
on a 2-core machine, and they contend for the cores and caches. Fine-tuning
200 Shakespeare clients on two workers took 16 % less time with each worker
bounded at 2 than unbounded (5 % on one worker), with identical results
(`benchmarks/worker_concurrency.py`; docs/RESULTS.md, "Speed"); a round's
aggregate does not depend on it either (the clients' results are combined in
client order: tests/experiments/workers_test.py). `local_runtime` bounds
each worker at `concurrent_calls`, by default `default_concurrent_calls()`.

How many local workers: on 2 cores, fine-tuning 200 Shakespeare clients took
16 % less time on two bounded workers than on one (27.0 s against 32.2 s,
same benchmark), and BBC's thirteen-method run 13 min 42 s against
17 min 46 s, with identical results;
`default_local_workers()` is one per core, at most two (the layout measured).

Why workers are found in /proc: TFF 0.87's local context starts its worker
in a private subprocess object and offers no public handle to it.
"""

import atexit
from collections.abc import Callable, Iterable, Sequence
import concurrent.futures
import contextlib
import os
import queue
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


class WorkerError(Exception):
  """A TFF worker cannot be reached, or stopped answering."""


class Workers:
  """The execution contexts of a run's TFF workers, one per worker.

  `map(fn, items)` runs `fn` on every item and returns the results in order;
  with several workers the items run concurrently, each on a free worker (its
  context installed in the thread that runs it). The items must be
  independent: each its own process state and random stream, as the groups of
  a stage are, so the results do not depend on which worker ran what.

  The alternative, one round's clients split over the workers, is
  `split_rounds=True` of `local_runtime` / `remote_runtime`: then
  `run_round` runs each training round on the mergeable `round_context`, and
  everything else, `map`'s tasks one after another, runs on the first worker.
  A worker lost by the first (default) context, outside `map`, ends the run
  with WorkerError.
  """

  def __init__(self, contexts: Sequence[object], addresses: Sequence[str],
               round_context=None):
    self.contexts = list(contexts)
    self.addresses = list(addresses)
    # With split_rounds: the mergeable context for training rounds.
    self.round_context = round_context

  def run_round(self, process, state, data):
    """`process.next(state, data)`, on `round_context` if there is one."""
    if self.round_context is None:
      return process.next(state, data)
    with tff.framework.get_context_stack().install(self.round_context):
      return process.next(state, data)

  def __len__(self) -> int:
    return len(self.contexts)

  def map(self, fn: Callable, items: Iterable) -> list:
    items = list(items)
    if len(self.contexts) < 2 or len(items) < 2:
      return [fn(item) for item in items]
    stack = tff.framework.get_context_stack()
    free = queue.SimpleQueue()
    for index in range(len(self.contexts)):
      free.put(index)
    lost = []  # WorkerError messages of the workers that stopped answering.

    def task(item):
      # A worker that stops answering is dropped and the task runs again on
      # another; `fn` must start over cleanly (the stage tree's tasks do:
      # each resumes from its checkpoint or restarts its own random stream).
      while True:
        index = free.get()
        if index is None:  # Every worker is lost; let the others know.
          free.put(None)
          raise WorkerError('; '.join(lost))
        try:
          with stack.install(self.contexts[index]):
            result = fn(item)
        except WorkerError as e:
          lost.append(str(e))
          if len(lost) == len(self.contexts):
            free.put(None)
          continue
        except BaseException:
          free.put(index)
          raise
        free.put(index)
        return result

    with concurrent.futures.ThreadPoolExecutor(len(self.contexts)) as pool:
      futures = [pool.submit(task, item) for item in items]
      _, pending = concurrent.futures.wait(
          futures, return_when=concurrent.futures.FIRST_EXCEPTION)
      for future in pending:
        future.cancel()  # Not started yet: not started at all.
      concurrent.futures.wait(futures)
    for future in futures:  # The first error in task order, if any.
      if not future.cancelled() and future.exception() is not None:
        raise future.exception()
    return [future.result() for future in futures]


def usable_cores() -> int:
  """How many cores this process may use."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # Not Linux.
    return max(1, os.cpu_count() or 1)


def default_concurrent_calls() -> int:
  """Client computations a local worker runs at once by default: as many as
  this process may use cores (see the module doc)."""
  return usable_cores()


# The most local workers `default_local_workers()` starts: two is the layout
# measured (on 2 cores; docs/RESULTS.md, "Speed"). Each worker is a process
# with its own TensorFlow runtime and copy of the computations; past the
# measured layout, choose the number yourself.
MAX_DEFAULT_LOCAL_WORKERS = 2


def default_local_workers() -> int:
  """Local workers started by default: one per usable core, at most
  `MAX_DEFAULT_LOCAL_WORKERS` (see the module doc)."""
  return min(usable_cores(), MAX_DEFAULT_LOCAL_WORKERS)


@contextlib.contextmanager
def local_runtime(workers: int = 1, split_rounds: bool = False,
                  concurrent_calls: int = 0):
  """Runs the body under TFF's local C++ runtime; its workers end on exit.

  workers: how many local `worker_binary` processes (each started by TFF on
    first use, on its own loopback port) serve `Workers.map` (0:
    `default_local_workers()`).
  split_rounds: instead, split each training round's clients over the
    workers (`Workers.run_round`), with one more worker for everything else
    (see the module doc).
  concurrent_calls: the most client computations each worker runs at once
    (0: `default_concurrent_calls()`; -1: no bound, TFF's default). Speed
    only: results are the same.

  They also end if this process dies without cleaning up (kill -9): a small
  watcher process outlives it just long enough to end them.

  Yields:
    The `Workers`.
  """
  global _exit_hook_registered
  if workers < 0:
    raise ValueError(f'workers must be 0 (default) or positive, got {workers}')
  workers = workers or default_local_workers()
  if concurrent_calls < -1:
    raise ValueError('concurrent_calls must be -1 (no bound), 0 (default) '
                     f'or positive, got {concurrent_calls}')
  bound = concurrent_calls or default_concurrent_calls()
  if not _exit_hook_registered:
    atexit.register(stop_workers)
    _exit_hook_registered = True
  watcher = _start_watcher()
  names = [f'local worker {i + 1}' for i in range(workers)]
  round_context = None
  if split_rounds and workers > 1:
    # The rounds' workers, and one more for everything else.
    round_context = _merged(
        [tff.backends.native.create_async_local_cpp_execution_context(
            max_concurrent_computation_calls=bound)
         for _ in range(workers)])
    workers, names = 1, ['local worker']
  contexts = [tff.backends.native.create_sync_local_cpp_execution_context(
      max_concurrent_computation_calls=bound) for _ in range(workers)]
  tff.framework.set_default_context(contexts[0])
  try:
    yield Workers(contexts, names, round_context)
  finally:
    stop_workers()
    watcher.kill()
    watcher.wait()


def _merged(async_contexts):
  """One context whose computations' clients are split over `async_contexts`."""
  return tff.backends.native.create_mergeable_comp_execution_context(
      async_contexts)


def _remote_context(address: str, connect_seconds: float,
                    default_num_clients: int, asynchronous: bool = False):
  """An execution context on the worker at `address` (WorkerError if none).

  A SyncExecutionContext, or with `asynchronous` an AsyncExecutionContext
  (for `_merged`).

  TFF retries a computation whose worker connection broke, without end. Each
  retry asks `stack_fn` for a new executor; it waits up to `connect_seconds`
  for the worker to answer again, then raises WorkerError, which TFF does not
  retry.
  """
  import grpc  # pylint: disable=g-import-not-at-top

  # TFF's own local context raises gRPC's message limits the same way:
  # model states are sent whole.
  limit = 2**31 - 1
  channel = grpc.insecure_channel(address, [
      ('grpc.max_message_length', limit),
      ('grpc.max_receive_message_length', limit),
      ('grpc.max_send_message_length', limit)])
  try:
    grpc.channel_ready_future(channel).result(timeout=connect_seconds)
  except grpc.FutureTimeoutError:
    channel.close()
    raise WorkerError(f'no TFF worker answers at {address} (waited '
                      f'{connect_seconds:g} s)') from None
  stub = tff.framework.RemoteExecutorGrpcStub(channel)

  def stack_fn(cardinalities):
    if not stub.is_ready:
      try:
        grpc.channel_ready_future(channel).result(timeout=connect_seconds)
      except grpc.FutureTimeoutError:
        raise WorkerError(f'the TFF worker at {address} stopped answering '
                          f'(waited {connect_seconds:g} s)') from None
    cardinalities.setdefault(tff.CLIENTS, default_num_clients)
    executor = tff.framework.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor

  # The channel lives as long as the context: TFF may still release remote
  # values through it.
  context_class = (tff.framework.AsyncExecutionContext if asynchronous
                   else tff.framework.SyncExecutionContext)
  return context_class(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(stack_fn),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)


@contextlib.contextmanager
def remote_runtime(addresses: str | Sequence[str],
                   connect_seconds: float = 30.0,
                   default_num_clients: int = 0, split_rounds: bool = False):
  """Runs the body's computations on the TFF workers at `addresses`.

  addresses: host:port of each worker (one string for a single worker).
  split_rounds: split each training round's clients over the workers
    (`Workers.run_round`) instead of running whole tasks on each; everything
    else runs on the first (see the module doc).

  Raises WorkerError if a worker does not answer within `connect_seconds`.
  The previous default context is restored on exit; the remote workers are
  left running (they belong to whoever started them).

  Yields:
    The `Workers`; the first is the default context.
  """
  if isinstance(addresses, str):
    addresses = [addresses]
  if not addresses:
    raise ValueError('remote_runtime needs at least one worker address')
  if len(set(addresses)) != len(addresses):
    raise ValueError(f'worker addresses repeat: {", ".join(addresses)}')
  round_context = None
  if split_rounds and len(addresses) > 1:
    round_context = _merged([
        _remote_context(a, connect_seconds, default_num_clients,
                        asynchronous=True) for a in addresses])
    addresses = addresses[:1]  # Everything but rounds runs on the first.
  contexts = [_remote_context(a, connect_seconds, default_num_clients)
              for a in addresses]
  stack = tff.framework.get_context_stack()
  previous = stack.current
  tff.framework.set_default_context(contexts[0])
  try:
    yield Workers(contexts, addresses, round_context)
  finally:
    tff.framework.set_default_context(previous)
