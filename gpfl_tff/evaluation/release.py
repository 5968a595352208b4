"""Releases every round's metrics while a run goes, through `tff.program`.

Each federated stage (`global`, `group/<name>`, ...) gets TFF's
`tff.program.TensorBoardReleaseManager` (a TensorBoard run,
`tensorboard/<stage>`) and `tff.program.CSVFileReleaseManager`
(`metrics/<stage>.csv`); a record is released under its round number as key.
Released again (a resumed stage replays its records), a key replaces the rows
from it on in the CSV file, as TFF's manager does, so the files match a run
never stopped.

The release managers are asynchronous; each release runs to completion before
the next round, in the calling thread's own event loop (the groups of a stage
may run in several threads).
"""

import asyncio
import os
import threading

import tensorflow_federated as tff

# The metrics of a round record that are released (when present).
RELEASED = ('train_perplexity', 'validation_perplexity', 'clients', 'seconds')


def _folder_name(stage: str) -> str:
  return stage.replace('/', '_')


class RoundReleaser:
  """A callable `(stage, record)` for `StageTree.on_record`."""

  def __init__(self, output_dir: str):
    self.output_dir = output_dir
    self._managers = {}
    self._lock = threading.Lock()

  def managers(self, stage: str) -> list:
    with self._lock:
      if stage not in self._managers:
        name = _folder_name(stage)
        self._managers[stage] = [
            tff.program.TensorBoardReleaseManager(
                os.path.join(self.output_dir, 'tensorboard', name)),
            tff.program.CSVFileReleaseManager(
                os.path.join(self.output_dir, 'metrics', name + '.csv'),
                key_fieldname='round')]
      return self._managers[stage]

  def __call__(self, stage: str, record: dict) -> None:
    value = {name: record[name] for name in RELEASED if name in record}
    managers = self.managers(stage)

    async def release():
      await asyncio.gather(*(m.release(value, key=int(record['round']))
                             for m in managers))

    asyncio.run(release())


def release_history(output_dir: str, history: dict) -> None:
  """Releases all records of `history` (stage -> records) at once."""
  releaser = RoundReleaser(output_dir)
  for stage, records in history.items():
    for record in records:
      releaser(stage, record)
