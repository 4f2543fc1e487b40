"""What an output directory holds, and what to do with one that already holds results.

OUTPUT_DIR/labels-*.parquet is the dataset. Everything else starts with '_' (or '.', for
temporary files), which dataset readers skip (pyarrow, pandas, DuckDB's hive reader, Spark):
pd.read_parquet(OUTPUT_DIR) reads the labels alone.

A run never mixes its rows with an earlier run's by accident: it refuses a directory
with results unless told to --resume (label only the URIs that have no row yet) or to
--overwrite (delete the earlier results, and what was derived from them, first).
Temporary files a killed run left are removed either way.
"""

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from transforms.files import delete_paths, exists, file_name, matching_paths
from transforms.schema import ERRORS, file_prefix
from transforms.select import output_part_patterns

MANIFEST = '_manifest.json'
# Derived from the labels parts by the commands that run after the labelling; each records
# the parts it was built from.
INDEX_DIR = '_index'
DUPLICATES_FILE = '_duplicates.parquet'
REPORT_FILE = '_report.html'
DERIVED_FILES = (DUPLICATES_FILE, REPORT_FILE)

# Names an earlier version of this program used, with the name each has now.
_LEGACY_NAMES = {'manifest.json': MANIFEST, 'duplicates.parquet': DUPLICATES_FILE,
                 'report.html': REPORT_FILE}
_LEGACY_INDEX_FILES = ('embeddings.faiss', 'rows.parquet', 'index.json')


class OutputExistsError(Exception):
  pass


def prepare_output_dir(output_dir, resume=False, overwrite=False):
  """Raises OutputExistsError where results exist and neither resume nor overwrite is set,
  or where the directory cannot be listed."""
  try:
    adopt_legacy_layout(output_dir)
    parts = [path for pattern in output_part_patterns(output_dir)
             for path in matching_paths(pattern)]
  except BeamIOError as e:
    raise OutputExistsError(f'cannot list {output_dir}: {e}') from e
  if parts and not (resume or overwrite):
    raise OutputExistsError(
        f'{output_dir} already holds {len(parts)} result files from an earlier run. '
        'Pass --resume to label only the URIs that have no row there yet, or --overwrite to '
        'replace them.')
  leftovers = matching_paths(FileSystems.join(output_dir, '.*.tmp'))
  doomed = leftovers + (parts + derived_paths(output_dir) if overwrite else [])
  if doomed:
    delete_paths(doomed)


def derived_paths(output_dir):
  """The manifest, the index's files and the derived files that exist in OUTPUT_DIR."""
  names = (MANIFEST,) + DERIVED_FILES
  return ([path for name in names for path in matching_paths(FileSystems.join(output_dir, name))]
          + matching_paths(FileSystems.join(output_dir, INDEX_DIR, '*')))


def adopt_legacy_layout(output_dir):
  """Renames the files of a directory written by an earlier version to today's names
  (errors-*.parquet to _errors-*.parquet, manifest.json to _manifest.json, ...); its old
  index, a cache, is deleted and rebuilt when next needed. Returns the names renamed."""
  renames = {path: FileSystems.join(output_dir, _LEGACY_NAMES[name])
             for name in _LEGACY_NAMES
             for path in matching_paths(FileSystems.join(output_dir, name))}
  legacy_errors = f'{ERRORS}-*.parquet'
  renames.update({path: FileSystems.join(output_dir, f'{file_prefix(ERRORS)}-'
                                         + file_name(path).split('-', 1)[1])
                  for path in matching_paths(FileSystems.join(output_dir, legacy_errors))})
  renames = {old: new for old, new in renames.items() if not exists(new)}
  if renames:
    FileSystems.rename(list(renames), list(renames.values()))
  delete_paths([path for name in _LEGACY_INDEX_FILES
                for path in matching_paths(FileSystems.join(output_dir, 'index', name))])
  return sorted(file_name(path) for path in renames)
