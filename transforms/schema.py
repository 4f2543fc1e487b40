"""The output Parquet files: their kinds, file names and Arrow schemas."""

import pyarrow as pa

from transforms.model import EMBEDDING_SIZE

# The two kinds of rows; also the names of the counters of rows written to each.
LABELS = 'labels'
ERRORS = 'errors'
ROW_KINDS = (LABELS, ERRORS)
# Their parts: OUTPUT_DIR/labels-*.parquet and OUTPUT_DIR/_errors-*.parquet. Dataset readers
# (pyarrow, pandas, DuckDB's hive reader, Spark) skip names starting with '_' or '.', so
# pd.read_parquet(OUTPUT_DIR) reads the labels alone.
_FILE_PREFIXES = {LABELS: 'labels', ERRORS: '_errors'}


def file_prefix(kind):
  return _FILE_PREFIXES[kind]


def part_glob(kind):
  """The file names of every part of one kind, as a glob."""
  return f'{file_prefix(kind)}-*.parquet'


def kind_of_part(name):
  """LABELS or ERRORS, from a part's file name."""
  prefix = name.split('-', 1)[0]
  return next(kind for kind, known in _FILE_PREFIXES.items() if known == prefix)

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
