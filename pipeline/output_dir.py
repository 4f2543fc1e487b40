"""What to do with an output directory that already holds results.

A run never mixes its rows with an earlier run's by accident: it refuses a directory
with results unless told to --resume (label only the URIs that have no row yet) or to
--overwrite (delete the earlier results first). Temporary files a killed run left are
removed either way.
"""

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from transforms.files import matching_paths
from transforms.select import output_part_patterns

MANIFEST = 'manifest.json'


class OutputExistsError(Exception):
  pass


def prepare_output_dir(output_dir, resume=False, overwrite=False):
  """Raises OutputExistsError where results exist and neither resume nor overwrite is set,
  or where the directory cannot be listed."""
  try:
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
  doomed = leftovers + (parts + matching_paths(FileSystems.join(output_dir, MANIFEST))
                        if overwrite else [])
  if doomed:
    FileSystems.delete(doomed)
