"""Runs the data/prepare.py binary in a subprocess, as a user would."""

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


def run_prepare(*flags: str, timeout: float = 120) -> Result:
  """`python -m data.prepare FLAGS` from the repository root.

  TF_CPP_MIN_LOG_LEVEL is removed from the environment so that the test sees
  what a user sees: the binary must quiet TensorFlow's C++ logs itself.
  """
  env = dict(os.environ)
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  env.pop('GPFL_CACHE_DIR', None)
  completed = subprocess.run(
      [sys.executable, '-m', 'data.prepare', *flags], cwd=repo_root(),
      env=env, capture_output=True, text=True, timeout=timeout, check=False)
  return Result(completed.returncode, completed.stdout, completed.stderr)
