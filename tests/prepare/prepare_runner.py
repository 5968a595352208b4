"""Runs the project's binaries (data/, experiments/) in a subprocess, as a user
would: `run_prepare` for data/prepare.py, `run_module` for any other."""

import dataclasses
import os
import subprocess
import sys


def repo_root() -> str:
  """The folder holding data/ and gpfl_tff/: Bazel's runfiles, else the tree."""
  srcdir, workspace = os.environ.get('TEST_SRCDIR'), os.environ.get(
      'TEST_WORKSPACE')
  if srcdir and workspace:
    root = os.path.join(srcdir, workspace)
    if os.path.isfile(os.path.join(root, 'data', 'prepare.py')):
      return root
  return os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Result:
  returncode: int
  stdout: str
  stderr: str

  @property
  def stderr_lines(self) -> list[str]:
    return [line for line in self.stderr.splitlines() if line.strip()]


def run_module(module: str, *flags: str, timeout: float = 120,
               env: dict[str, str] | None = None) -> Result:
  """`python -m MODULE FLAGS` from the repository root.

  TF_CPP_MIN_LOG_LEVEL is removed from the environment so that the test sees
  what a user sees: the binary must quiet TensorFlow's C++ logs itself.

  Args:
    module: e.g. 'data.prepare'.
    *flags: the binary's arguments.
    timeout: seconds before the run is killed (and the test fails).
    env: variables added to the test's environment.
  """
  completed = subprocess.run(
      [sys.executable, '-m', module, *flags], cwd=repo_root(),
      env=_environment(env), capture_output=True, text=True,
      timeout=timeout, check=False)
  return Result(completed.returncode, completed.stdout, completed.stderr)


def start_module(module: str, *flags: str,
                 env: dict[str, str] | None = None,
                 capture_stderr: bool = False) -> subprocess.Popen:
  """`run_module` without waiting: the running process, stdout discarded
  (and stderr, unless `capture_stderr`: then text from `communicate()`).

  For tests that stop a binary midway (signals, kill -9, a lost worker).
  """
  return subprocess.Popen(
      [sys.executable, '-m', module, *flags], cwd=repo_root(),
      env=_environment(env), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE if capture_stderr else subprocess.DEVNULL,
      text=capture_stderr)


def _environment(env: dict[str, str] | None) -> dict[str, str]:
  """The test's environment as a user's (see `run_module`), plus `env`."""
  run_env = dict(os.environ)
  run_env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  run_env.pop('GPFL_CACHE_DIR', None)
  run_env.update(env or {})
  return run_env


def run_prepare(*flags: str, timeout: float = 120) -> Result:
  """`python -m data.prepare FLAGS` from the repository root (`run_module`)."""
  return run_module('data.prepare', *flags, timeout=timeout)


# A run's environment may carry this marker (`env={MARKER: value}`); a process
# that still has it after the run (TFF's worker_binary above all) outlived it.
MARKER = 'GPFL_TEST_RUN'


def marked_processes(marker_value: str) -> list[int]:
  """Running processes (not zombies) whose environment holds the marker."""
  needle = f'{MARKER}={marker_value}'.encode()
  pids = []
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/environ', 'rb') as f:
        environ = f.read().split(b'\0')
      with open(f'/proc/{entry}/stat', 'rb') as f:
        stat = f.read().decode(errors='replace')
    except OSError:
      continue
    if needle in environ and stat[stat.rfind(')') + 2] != 'Z':
      pids.append(int(entry))
  return pids
