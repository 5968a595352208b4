"""Checkpoints of federated stages and finished evaluations, for resuming a run.

`StageCheckpoints` keeps one stage's progress through TFF's
`tff.program.FileProgramStateManager` (SavedModel files, no pickles), version
= rounds done. A checkpoint holds the learning process state, the stage's
client data source iterator (`data_source.ClientIdsIterator.to_bytes`: its
clients and sampling state, JSON) and the round records so far (JSON text),
so that a resumed stage draws the same clients, replays the same records and
ends with the same state as a run never interrupted.
FileProgramStateManager writes each version to a temporary folder and renames
it, so a crash mid-save leaves the previous version whole.

`RunStore` places a run's stage checkpoints and keeps each finished
evaluation (client id -> metric sums) as one JSON file, written to a temporary
name and renamed.

A checkpoint that cannot be read, or that holds another model's tensors (a
foreign checkpoint), raises `CheckpointError` naming its path: a run never
silently starts a stage again from round 0 over a broken one, nor trains on.
"""

import asyncio
import json
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


class CheckpointError(Exception):
  """A checkpoint or stored evaluation exists but cannot be used."""


def _folder_name(name: str) -> str:
  """A file-system name for a stage or evaluation name such as group/a b."""
  return re.sub(r'[^A-Za-z0-9._-]', lambda m: f'%{ord(m.group()):02x}', name)


class StageCheckpoints:
  """Checkpoints of one federated stage under `root_dir`, every `every` rounds.

  `keep` versions are kept (the latest always).
  """

  def __init__(self, root_dir: str, every: int, keep: int = 2):
    if every < 1:
      raise ValueError(f'checkpoint interval must be at least 1, got {every}')
    self.root_dir = root_dir
    self.every = every
    self._manager = tff.program.FileProgramStateManager(
        root_dir, prefix='round_', keep_total=keep, keep_first=False)

  def latest_round(self) -> int:
    """Rounds done in the latest checkpoint (0 if none)."""
    versions = asyncio.run(self._manager.get_versions())
    return versions[-1] if versions else 0

  def load(self, template_state, with_best: bool = False):
    """(rounds done, state, sampler bytes, records, best state) of the
    latest, or None.

    `template_state`: a process state of the same structure (e.g. a fresh
    `process.initialize()`). `with_best`: the checkpoint also holds the state
    of the stage's best round (`save(best_state=...)`); else that is None.
    """
    rounds = self.latest_round()
    if rounds == 0:
      return None
    path = os.path.join(self.root_dir, f'round_{rounds}')
    structure = {'state': template_state, 'clients': '', 'history': ''}
    if with_best:
      structure['best'] = template_state
    try:
      loaded = asyncio.run(self._manager.load(rounds, structure))
      sampler = _text(loaded['clients']).encode()
      history = json.loads(_text(loaded['history']))
    except (OSError, ValueError, TypeError, KeyError,
            tf.errors.OpError) as e:
      raise CheckpointError(f'checkpoint {path} is unreadable '
                            f'({type(e).__name__}); remove it to restart that '
                            'stage') from None
    _check_fits(path, loaded['state'], template_state)
    if with_best:
      _check_fits(path, loaded['best'], template_state)
    if not isinstance(history, list) or len(history) != rounds:
      raise CheckpointError(f'checkpoint {path} holds {len(history)} round '
                            f'records for {rounds} rounds')
    return rounds, loaded['state'], sampler, history, loaded.get('best')

  def save(self, rounds: int, state, sampler: bytes,
           history: list[dict], best_state=None) -> None:
    """Saves the state after `rounds` rounds (`sampler`: the client data
    source iterator's bytes then; `best_state`: that of the best round so
    far, if kept); no-op if already saved."""
    if rounds <= self.latest_round():
      return
    program_state = {'state': state,
                     'clients': sampler.decode(),
                     'history': json.dumps(history)}
    if best_state is not None:
      program_state['best'] = best_state
    asyncio.run(self._manager.save(program_state, rounds))


def _check_fits(path: str, state, template_state) -> None:
  """Raises CheckpointError unless `state` has the template's shapes.

  TFF loads a saved state into any template with as many tensors, whatever
  their shapes: a checkpoint of another model (say another vocabulary) would
  load without complaint and train nonsense.
  """
  loaded = tf.nest.flatten(state)
  expected = tf.nest.flatten(template_state)
  if len(loaded) != len(expected):
    raise CheckpointError(f'checkpoint {path} holds {len(loaded)} tensors '
                          f'where this run has {len(expected)}: it comes '
                          'from another model or program')
  for index, (got, want) in enumerate(zip(loaded, expected)):
    got_shape, want_shape = np.shape(got), np.shape(want)
    if got_shape != want_shape or (np.asarray(got).dtype
                                   != np.asarray(want).dtype):
      raise CheckpointError(
          f'checkpoint {path} holds a {np.asarray(got).dtype} tensor of '
          f'shape {got_shape} where this run has {np.asarray(want).dtype} '
          f'{want_shape} (tensor {index}): it comes from another model or '
          'configuration')


def _text(value) -> str:
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.decode() if isinstance(value, bytes) else str(value)


class RunStore:
  """Where a resumable run keeps its stage checkpoints and evaluations.

  root_dir/stages/<stage>/round_<n>/   `StageCheckpoints`
  root_dir/evaluations/<name>.json     finished evaluations
  """

  def __init__(self, root_dir: str, every: int):
    self.root_dir = root_dir
    self.every = every

  def stage(self, name: str) -> StageCheckpoints:
    return StageCheckpoints(
        os.path.join(self.root_dir, 'stages', _folder_name(name)), self.every)

  def _evaluation_path(self, name: str) -> str:
    return os.path.join(self.root_dir, 'evaluations',
                        _folder_name(name) + '.json')

  def load_evaluation(self, name: str) -> dict | None:
    """client id -> sums of a finished evaluation, or None if not stored."""
    path = self._evaluation_path(name)
    if not os.path.exists(path):
      return None
    try:
      with open(path, encoding='utf-8') as f:
        sums = json.load(f)
      if not isinstance(sums, dict) or not all(
          isinstance(v, dict) for v in sums.values()):
        raise ValueError('not a client -> sums mapping')
    except (OSError, ValueError) as e:
      raise CheckpointError(f'stored evaluation {path} is unreadable ({e}); '
                            'remove it to evaluate again') from None
    return sums

  def save_evaluation(self, name: str, sums: dict) -> None:
    path = self._evaluation_path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as f:
      json.dump(sums, f)
    os.replace(temporary, path)
