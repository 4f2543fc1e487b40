"""The output Parquet files: their name prefixes and Arrow schemas."""

import pyarrow as pa

from transforms.model import EMBEDDING_SIZE

# OUTPUT_DIR/labels-*.parquet and OUTPUT_DIR/errors-*.parquet; also the names of the counters
# of rows written to each.
LABELS = 'labels'
ERRORS = 'errors'
OUTPUT_PREFIXES = (LABELS, ERRORS)

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
