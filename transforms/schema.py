"""The output Parquet files: their kinds, file names and Arrow schemas."""

import posixpath

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from transforms.model import EMBEDDING_SIZE

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

LABELS_SCHEMA = pa.schema([
    pa.field('uri', pa.string(), nullable=False),
    pa.field('label', pa.string(), nullable=False),
    pa.field('label_index', pa.int32(), nullable=False),
    pa.field('score', pa.float32(), nullable=False),
    pa.field('top_k_labels', pa.list_(pa.string()), nullable=False),
    pa.field('top_k_scores', pa.list_(pa.float32()), nullable=False),
    pa.field('embedding', pa.list_(pa.float32(), EMBEDDING_SIZE), nullable=False),
    pa.field('width', pa.int32(), nullable=False),
    pa.field('height', pa.int32(), nullable=False),
    pa.field('model', pa.string(), nullable=False),
])

ERRORS_SCHEMA = pa.schema([
    pa.field('uri', pa.string(), nullable=False),
    pa.field('stage', pa.string(), nullable=False),
    pa.field('error', pa.string(), nullable=False),
    pa.field('message', pa.string(), nullable=False),
])
