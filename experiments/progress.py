"""Progress of a run: one tqdm bar per stage, and a log file of every step.

The bar of a stage (one per stage running; several when a stage's groups run
concurrently on several workers) shows its steps (rounds, or evaluated clients) and its own
time left; its postfix shows the whole run's time left, estimated from the
planned work (`StageTree.plan`: label -> (steps, work)) and the work done so
far. With `lines=True` (a binary's `--progress=lines`) one line per step is
printed instead of bars, as before. Every step is also appended to `log_path`
whatever the display, so a run's progress can be read after the fact.
"""

import sys
import time

import tqdm


def _clock(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Progress:
  """A callable `(stage, done, total)` for `StageTree`'s `on_progress`."""

  def __init__(self, plan: dict[str, tuple[int, float]], log_path: str,
               lines: bool = False, stream=None):
    self.plan = dict(plan)
    self.total_work = sum(work for _, work in self.plan.values()) or 1.0
    self.lines = lines
    self.stream = stream or sys.stderr
    self.start = time.time()
    self._done_work = {}
    self._bars = {}  # stage -> its open bar (several when stages overlap)
    self._log = open(log_path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with

  def _run_left(self) -> float | None:
    done = sum(self._done_work.values())
    if done <= 0:
      return None
    return (time.time() - self.start) * (self.total_work - done) / done

  def __call__(self, stage: str, done: int, total: int) -> None:
    steps, work = self.plan.get(stage, (total, 0.0))
    self._done_work[stage] = work * done / max(steps, 1)
    left = self._run_left()
    run_left = '?' if left is None else _clock(left)
    elapsed = time.time() - self.start
    line = (f'[{elapsed:7.1f}s] {stage}: {done}/{total} '
            f'(run time left ~{run_left})')
    self._log.write(line + '\n')
    self._log.flush()
    if self.lines:
      print(line, file=self.stream, flush=True)
      return
    bar = self._bars.get(stage)
    if bar is None:
      # Stages run concurrently on several workers get a line each.
      bar = self._bars[stage] = tqdm.tqdm(
          total=total, desc=stage, file=self.stream, leave=True,
          dynamic_ncols=True, position=len(self._bars),
          bar_format='{desc}: {n}/{total} {bar} '
          '[{elapsed}<{remaining}{postfix}]')
    bar.set_postfix_str(f'run left ~{run_left}', refresh=False)
    bar.update(done - bar.n)
    if done >= total:
      self._close_bar(stage)

  def _close_bar(self, stage: str) -> None:
    self._bars.pop(stage).close()

  def close(self) -> None:
    """Ends the bar and the log; a second call does nothing."""
    if self._log.closed:
      return
    for stage in list(self._bars):
      self._close_bar(stage)
    self._log.write(f'[{time.time() - self.start:7.1f}s] done\n')
    self._log.close()
