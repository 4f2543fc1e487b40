"""What an output directory holds, and what to do with one that already holds results.

OUTPUT_DIR/labels-*.parquet is the dataset. Everything else starts with '_' (or '.', for
temporary files), which pyarrow, pandas and Spark skip, and every other Parquet file is in a
folder, which a glob such as DuckDB's read_parquet('OUTPUT_DIR/*.parquet') does not enter:
pd.read_parquet(OUTPUT_DIR) reads the labels alone.

A run never mixes its rows with an earlier run's by accident: it refuses a directory
with results unless told to --resume (label only the URIs that have no row yet) or to
--overwrite (delete the earlier results, and what was derived from them, first).
Temporary files a killed run left are removed either way. --resume first moves each part it
cannot read as Parquet (truncated by a partial copy, another file under a part's name) to
OUTPUT_DIR/_damaged/NAME.damaged, where no reader of the dataset looks, never deleting it:
the URIs it held are then labelled again, as any URI without a row.
"""

import concurrent.futures
import os
import secrets
import sys

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from transforms.files import (DAMAGED, DAMAGED_FOLDER, DAMAGED_SUFFIX, delete_paths, exists,
                              file_name, footer_damage, matching_paths)
from transforms.schema import ERRORS, LABELS, part_glob, parts_dir
from transforms.select import output_part_patterns

MANIFEST = '_manifest.json'
# Derived from the labels parts by the commands that run after the labelling; each records
# the parts it was built from.
INDEX_DIR = '_index'
DUPLICATES_FILE = '_duplicates/duplicates.parquet'
REPORT_FILE = '_report.html'
# Each derived file, with the command that builds it again.
DERIVED_FILES = {DUPLICATES_FILE: 'duplicates', REPORT_FILE: 'report'}

# Names an earlier version of this program used, with the name each has now.
_LEGACY_NAMES = {'manifest.json': MANIFEST, 'duplicates.parquet': DUPLICATES_FILE,
                 'report.html': REPORT_FILE}
_LEGACY_INDEX_FILES = ('embeddings.faiss', 'rows.parquet', 'index.json')
# Footers read at once by --resume's check: each is a round trip on an object store.
_FOOTER_READERS = 32


class OutputExistsError(Exception):
  pass


class LayoutError(Exception):
  pass


def prepare_output_dir(output_dir, resume=False, overwrite=False):
  """Readies OUTPUT_DIR for a run; returns the damaged parts that resume moved aside, as
  [{'part': path, 'moved_to': path, 'cause': pyarrow's word}] (see set_aside_damaged_parts).

  Raises OutputExistsError where results exist and neither resume nor overwrite is set,
  or where the directory, or a part's footer, cannot be read (a failure of the filesystem,
  not of the part)."""
  try:
    parts = _parts(output_dir) + legacy_error_parts(output_dir)
  except BeamIOError as e:
    raise OutputExistsError(f'cannot list {output_dir}: {e}') from e
  if parts and not (resume or overwrite):
    raise OutputExistsError(
        f'{output_dir} already holds {len(parts)} result files from an earlier run. '
        'Pass --resume to label only the URIs that have no row there yet, or --overwrite to '
        'replace them.')
  adopt_legacy_layout(output_dir)
  parts = _parts(output_dir)
  moved = set_aside_damaged_parts(output_dir, parts) if resume and not overwrite else []
  leftovers = [path for folder in sorted(_written_folders(output_dir))
               for path in matching_paths(FileSystems.join(folder, '.*.tmp'))]
  # --overwrite deletes every part, damaged or not.
  doomed = leftovers + (parts + derived_paths(output_dir) if overwrite else [])
  if doomed:
    delete_paths(doomed)
  return moved


def set_aside_damaged_parts(output_dir, parts):
  """Reads the footer of each of `parts` (concurrently: a bucket may hold thousands) and
  moves each that cannot be read as Parquet to OUTPUT_DIR/_damaged/NAME.damaged (NAME.TAG.damaged
  where that is taken), printing a line for each. Nothing is deleted; the moved part's URIs,
  no longer found in any part, are labelled again by the run. Returns
  [{'part': path, 'moved_to': path, 'cause': pyarrow's word}], sorted by part."""
  with concurrent.futures.ThreadPoolExecutor(_FOOTER_READERS) as pool:
    causes = list(pool.map(_damage_of, parts))
  damaged = sorted((part, cause) for part, cause in zip(parts, causes) if cause is not None)
  if not damaged:
    return []
  folder = FileSystems.join(output_dir, DAMAGED_FOLDER)
  taken = {file_name(path) for path in matching_paths(FileSystems.join(folder, '*'))}
  moved = []
  for part, cause in damaged:
    name = file_name(part) + DAMAGED_SUFFIX
    while name in taken:  # an earlier run set aside a part of the same name
      name = f'{file_name(part)}.{secrets.token_hex(4)}{DAMAGED_SUFFIX}'
    taken.add(name)
    moved_to = FileSystems.join(folder, name)
    try:
      _make_folder_of(moved_to)
      FileSystems.rename([part], [moved_to])
    except (BeamIOError, OSError) as e:
      raise OutputExistsError(f'{part} {DAMAGED} ({cause}), and moving it to {moved_to} '
                              f'failed: {e}') from e
    print(f'label-images: set aside {part}: it {DAMAGED}: {cause.rstrip(".")}; moved to '
          f'{moved_to}; this run labels again any image it held', file=sys.stderr)
    moved.append({'part': part, 'moved_to': moved_to, 'cause': cause})
  return moved


def _damage_of(part):
  """pyarrow's word on why the part's footer cannot be read, or None where it can."""
  try:
    return footer_damage(part)
  except (BeamIOError, OSError) as e:
    raise OutputExistsError(f'cannot read {part} to check it: {e}') from e


def _parts(output_dir):
  return [path for pattern in output_part_patterns(output_dir) for path in matching_paths(pattern)]


def _written_folders(output_dir):
  """Where this program writes, through temporary files."""
  return {output_dir, parts_dir(output_dir, ERRORS), FileSystems.join(output_dir, INDEX_DIR),
          FileSystems.split(FileSystems.join(output_dir, DUPLICATES_FILE))[0]}


def derived_paths(output_dir):
  """The manifest, the index's files and the derived files that exist in OUTPUT_DIR."""
  names = (MANIFEST, *DERIVED_FILES)
  return ([path for name in names for path in matching_paths(FileSystems.join(output_dir, name))]
          + matching_paths(FileSystems.join(output_dir, INDEX_DIR, '*')))


def out_of_date_lines(output_dir):
  """After a run changed the parts: the derived files there, now out of date, and the
  commands that refresh them (the index refreshes itself when next used)."""
  stale = [name for name in DERIVED_FILES if exists(FileSystems.join(output_dir, name))]
  if not stale:
    return []
  commands = '; '.join(f'label-images {DERIVED_FILES[name]} {output_dir}' for name in stale)
  return [f'  out of date: {", ".join(stale)} (built from the parts before this run); '
          f'refresh with: {commands}']


def legacy_error_parts(output_dir):
  return matching_paths(FileSystems.join(output_dir, f'{ERRORS}-*.parquet'))


def adopt_legacy_layout(output_dir):
  """Moves the files of a directory written by an earlier version to today's places
  (errors-*.parquet into _errors/, manifest.json to _manifest.json, ...); its old index, a
  cache, is deleted and rebuilt when next needed. A directory is taken for one of ours where
  it holds parts and no _manifest.json: anything else there is left alone. Returns the names
  moved."""
  error_parts = legacy_error_parts(output_dir)
  has_labels = matching_paths(FileSystems.join(output_dir, part_glob(LABELS)))
  if not (error_parts or has_labels) or exists(FileSystems.join(output_dir, MANIFEST)):
    return []
  renames = {path: FileSystems.join(output_dir, _LEGACY_NAMES[name])
             for name in _LEGACY_NAMES
             for path in matching_paths(FileSystems.join(output_dir, name))}
  renames.update({path: FileSystems.join(parts_dir(output_dir, ERRORS), file_name(path))
                  for path in error_parts})
  renames = {old: new for old, new in renames.items() if not exists(new)}
  try:
    for old, new in renames.items():
      _make_folder_of(new)
      FileSystems.rename([old], [new])
    delete_paths([path for name in _LEGACY_INDEX_FILES
                  for path in matching_paths(FileSystems.join(output_dir, 'index', name))])
  except (BeamIOError, OSError) as e:
    raise LayoutError(
        f'{output_dir} was written by an earlier version, and moving its files to today\'s '
        f'names failed ({e}). Run this once where the directory can be written, or copy it.'
    ) from e
  return sorted(file_name(path) for path in renames)


def _make_folder_of(path):
  """Local renames need the folder to exist; object stores have none to make."""
  folder = FileSystems.split(path)[0]
  if '://' not in folder:
    os.makedirs(folder, exist_ok=True)
