"""The output Parquet files: their kinds, file names and Arrow schemas."""

import posixpath

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

# The two kinds of rows; also the names of the counters of rows written to each.
LABELS = 'labels'
ERRORS = 'errors'
ROW_KINDS = (LABELS, ERRORS)
# Their parts: OUTPUT_DIR/labels-*.parquet, the dataset, and
# OUTPUT_DIR/_errors/errors-*.parquet, in a folder that readers of the dataset pass by:
# pyarrow, pandas and Spark skip names starting with '_' or '.', and a glob such as DuckDB's
# read_parquet('OUTPUT_DIR/*.parquet') does not descend into folders.
_PART_FOLDERS = {LABELS: '', ERRORS: '_errors'}


def parts_dir(output_dir, kind):
  """The folder that holds the parts of one kind."""
  folder = _PART_FOLDERS[kind]
  return FileSystems.join(output_dir, folder) if folder else output_dir


def part_glob(kind):
  """The parts of one kind, relative to OUTPUT_DIR, as a glob."""
  return posixpath.join(_PART_FOLDERS[kind], f'{kind}-*.parquet')


def kind_of_part(name):
  """LABELS or ERRORS, from a part's file name."""
  kind = name.split('-', 1)[0]
  if kind not in _PART_FOLDERS:
    raise ValueError(f'{name} is not the name of a part')
  return kind


_LABEL_FIELDS = (
    pa.field('uri', pa.string(), nullable=False),
    pa.field('score', pa.float32(), nullable=False),
    pa.field('top_k_labels', pa.list_(pa.string()), nullable=False),
    pa.field('top_k_scores', pa.list_(pa.float32()), nullable=False),
    pa.field('width', pa.int32(), nullable=False),
    pa.field('height', pa.int32(), nullable=False),
    pa.field('model', pa.string(), nullable=False),
)
EMBEDDING = 'embedding'


def embedding_field(embedding_width):
  return pa.field(EMBEDDING, pa.list_(pa.float32(), embedding_width), nullable=False)


def labels_schema(embedding_width, open_set=False):
  """The labels rows of a model whose embedding is `embedding_width` wide; a model without
  an embedding (None) gives rows without the column. With `open_set` (--min_score), a row
  whose top score is below the minimum has a null label and label_index: none of the
  classes."""
  fields = list(_LABEL_FIELDS)
  fields[1:1] = [pa.field('label', pa.string(), nullable=open_set),
                 pa.field('label_index', pa.int32(), nullable=open_set)]
  if embedding_width:
    fields.insert(6, embedding_field(embedding_width))
  return pa.schema(fields)


ERRORS_SCHEMA = pa.schema([
    pa.field('uri', pa.string(), nullable=False),
    pa.field('stage', pa.string(), nullable=False),
    pa.field('error', pa.string(), nullable=False),
    pa.field('message', pa.string(), nullable=False),
])
