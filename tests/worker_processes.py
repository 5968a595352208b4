"""TFF worker processes for tests: start one as another machine would, and
tell whether a process still runs."""

import os
import subprocess

import portpicker
import tensorflow_federated as tff


def worker_binary() -> str:
  return os.path.join(os.path.dirname(tff.__file__), 'data', 'worker_binary')


def start_worker() -> tuple[int, str]:
  """A worker_binary that is not this process's child, like one started on
  another machine (through a shell that exits at once): (pid, address)."""
  port = portpicker.pick_unused_port()
  started = subprocess.run(
      ['sh', '-c', f'{worker_binary()} --port={port} >/dev/null 2>&1 & '
       'echo $!'], capture_output=True, text=True, check=True)
  return int(started.stdout), f'localhost:{port}'


def alive(pid: int) -> bool:
  """Whether `pid` runs (an exited, unreaped zombie does not count)."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      stat = f.read().decode(errors='replace')
  except OSError:
    return False
  return stat[stat.rfind(')') + 2] != 'Z'
