"""Reading a finished output directory back, a batch of rows at a time, on any Beam
filesystem: what report, similar and duplicates are computed from."""

import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.lease import still_written_warning
from pipeline.options import refuse_unknown_options
from pipeline.output_dir import MANIFEST, adopt_legacy_layout
from transforms import files
from transforms.files import (exists, file_name, matching_paths, parquet_file, parquet_rows,
                              read_bytes)
from transforms.schema import (EMBEDDING, ERRORS, ERRORS_SCHEMA, LABELS, ROW_KINDS,
                               embedding_field, labels_schema, part_glob)

BATCH_ROWS = 8192  # 40 MB of 1,280-wide embeddings
# Every column of the output but the embedding (as wide as its model's), by name, as the
# pipeline writes it (both kinds share `uri`; label and label_index are null below --min_score).
_OUTPUT_FIELDS = {field.name: field for schema in (labels_schema(None, open_set=True),
                                                    ERRORS_SCHEMA)
                  for field in schema}


def parse_with_filesystem_options(parser, argv):
  """Parses argv, handing the Beam options among it (--s3_endpoint_url,
  --azure_connection_string, ...) to Beam's filesystems, as a pipeline would. Where a run is
  still writing the OUTPUT_DIR it names, says so."""
  parser.allow_abbrev = False
  refuse_unknown_options(parser, argv)
  args, beam_args = parser.parse_known_args(argv)
  if any(not arg.startswith('--') for arg in beam_args[:1]):
    parser.error(f'unrecognized arguments: {" ".join(beam_args)}')
  FileSystems.set_options(PipelineOptions(beam_args))
  being_written = getattr(args, 'output_dir', None) and still_written_warning(args.output_dir)
  if being_written:
    print(being_written, file=sys.stderr)
  return args


class NoResultsError(Exception):
  pass


class MixedOriginError(Exception):
  pass


class NoEmbeddingsError(NoResultsError):
  """Labels rows without embeddings: their model gives class scores only."""


# A part whose values do not fit the output's types (a null URI, a missing column, embeddings
# of another width than the other parts'), or, as DamagedPartError, that is not Parquet at
# all: defined in transforms/files.py, where every reader of a part opens it, and named here
# for the commands that catch them.
UnreadablePartError = files.UnreadablePartError
DamagedPartError = files.DamagedPartError


def part_paths(output_dir, kind=LABELS):
  """The committed parts of one kind, sorted by name: row ids count through them in order."""
  return sorted(matching_paths(FileSystems.join(output_dir, part_glob(kind))),
                key=file_name)


def finished_parts(output_dir):
  """{LABELS: paths, ERRORS: paths} of a finished output directory: where every command
  starts. A directory of an earlier layout is renamed to today's first. NoResultsError
  where it holds no part at all."""
  adopt_legacy_layout(output_dir)
  parts = {kind: part_paths(output_dir, kind) for kind in ROW_KINDS}
  if not any(parts.values()):
    raise NoResultsError(f'{output_dir} holds no labels-*.parquet nor {part_glob(ERRORS)}: '
                         'label images into it first')
  return parts


def label_parts(output_dir):
  """The labels parts of a finished output directory; NoResultsError where every image
  failed."""
  parts = finished_parts(output_dir)[LABELS]
  if not parts:
    raise NoResultsError(
        f'{output_dir} holds no labels-*.parquet: every image failed, there is nothing to '
        f'compare. `label-images report {output_dir}` shows the errors.')
  return parts


def error_parts(output_dir):
  return part_paths(output_dir, ERRORS)


def part_rows(paths):
  """{part file name: rows}, from the footers."""
  return {file_name(path): parquet_rows(path) for path in paths}


def holds_embeddings(label_paths):
  """Whether the labels parts have an embedding column (a classifier's rows have none).
  The first part speaks for all: read_batches refuses a part that differs."""
  with parquet_file(label_paths[0]) as parquet:
    return EMBEDDING in parquet.schema_arrow.names


def require_embeddings(output_dir, label_paths):
  """NoEmbeddingsError where the labels parts hold no embedding to compare."""
  if holds_embeddings(label_paths):
    return
  identity = (read_manifest(output_dir) or {}).get('identity') or {}
  handle = f" ({identity['model_handle']})" if identity.get('model_handle') else ''
  raise NoEmbeddingsError(
      f'{output_dir} holds no embeddings: its model{handle} gives class scores only; '
      'similar and duplicates need a model with an embedding (a feature-vector twin, '
      '--feature_handle)')


def read_batches(paths, columns, batch_rows=BATCH_ROWS):
  """Yields pyarrow RecordBatches of `columns` from each part in turn, in the output's own
  types whatever wrote the part: a part rewritten by pandas, DuckDB or Spark holds the same
  values as nullable, large_string, large_list, list (for the fixed-size embedding) or
  dictionary-encoded columns, or as columns of type null where it has no rows.

  The embedding is a fixed-size list as wide as the parts hold it; UnreadablePartError
  where one part's width differs from another's, DamagedPartError (one) where a part is not
  Parquet."""
  width = None  # of the embeddings, once a part has shown it
  for path in paths:
    with parquet_file(path) as parquet:
      missing = [name for name in columns if name not in parquet.schema_arrow.names]
      if missing:
        raise UnreadablePartError(f'{path} does not hold what label-images writes: no '
                                  f'column {", ".join(missing)}')
      if EMBEDDING in columns:  # a width its type states is checked before any batch is read
        stated = parquet.schema_arrow.field(EMBEDDING).type
        if pa.types.is_fixed_size_list(stated):
          width = _same_width(stated.list_size, width, path)
      # One thread: pyarrow's reader threads calling back into a Python file object can
      # still be running when the interpreter exits, which then aborts.
      for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns,
                                        use_threads=False):
        if EMBEDDING in columns:
          width = _same_width(_embedding_width(batch.column(EMBEDDING), path), width, path)
          if width is None:  # no rows, and none before: no width to read them at
            continue
        yield _in_schema(batch, _output_schema(columns, width), path)


def _output_schema(columns, embedding_width):
  return pa.schema([embedding_field(embedding_width) if name == EMBEDDING
                    else _OUTPUT_FIELDS[name] for name in columns])


def _embedding_width(embeddings, path):
  """The width of a batch's embeddings: their type's, or where a tool rewrote them as plain
  lists, their one length; None where the batch has no rows."""
  if pa.types.is_fixed_size_list(embeddings.type):
    return embeddings.type.list_size
  if not len(embeddings):
    return None
  if embeddings.null_count:
    raise UnreadablePartError(f'{path} holds rows without an embedding')
  shortest, longest = (length.as_py() for length in
                       pc.min_max(pc.list_value_length(embeddings)).values())
  if shortest != longest:
    raise UnreadablePartError(f'{path} holds embeddings of {shortest:,} to {longest:,} '
                              'values: label-images writes them all of one width')
  return shortest


def _same_width(width, known_width, path):
  """The embeddings' width, once one part has told it; UnreadablePartError where two differ."""
  if known_width is not None and width not in (None, known_width):
    raise UnreadablePartError(
        f'{path} holds {width:,}-wide embeddings, the parts before it {known_width:,}-wide: '
        'rows of two models, which cannot be compared. Label into one directory per model.')
  return known_width if width is None else width


def _in_schema(batch, schema, path):
  try:
    return batch.cast(schema)
  except (pa.ArrowException, ValueError) as e:
    raise UnreadablePartError(f'{path} does not hold what label-images writes: {e}') from e


def read_row(path, row, columns):
  """One row of one part, as a dict, reading only the row group that holds it."""
  with parquet_file(path) as parquet:
    for group in range(parquet.num_row_groups):
      group_rows = parquet.metadata.row_group(group).num_rows
      if row < group_rows:
        table = parquet.read_row_group(group, columns=columns, use_threads=False)
        return table.slice(row, 1).to_pylist()[0]
      row -= group_rows
  raise IndexError(f'{path} has no row {row}')


def read_manifest(output_dir):
  """The manifest of the last run, or None where there is none."""
  path = FileSystems.join(output_dir, MANIFEST)
  if not exists(path):
    return None
  return json.loads(read_bytes(path))
