"""Writing rows as independently committed Parquet parts.

Rows are gathered into batches of `rows_per_file` (per shard of a sharded key, so
writers work in parallel), and each batch becomes one zstd-compressed Parquet file
with a single row group. A part is written under a temporary name and renamed into
place, so a file named `PREFIX-*.parquet` is always complete, and what a crashed run
had committed stays. The part's name is a hash of its URIs: a bundle retried by the
runner rewrites the same file instead of adding a duplicate.
"""

import hashlib
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

DEFAULT_ROWS_PER_FILE = 5000


def rows_to_table(rows, schema):
  columns = []
  for field in schema:
    values = [row[field.name] for row in rows]
    if pa.types.is_fixed_size_list(field.type):
      flat = np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)
      columns.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
    else:
      columns.append(pa.array(values, type=field.type))
  return pa.Table.from_arrays(columns, schema=schema)


def part_name(prefix, rows):
  uris = '\n'.join(sorted(row['uri'] for row in rows))
  return f'{prefix}-{hashlib.sha256(uris.encode()).hexdigest()[:16]}.parquet'


def write_part(output_dir, prefix, rows, schema):
  """Writes rows to OUTPUT_DIR/PREFIX-<hash>.parquet atomically; returns its path."""
  final_path = FileSystems.join(output_dir, part_name(prefix, rows))
  temp_path = FileSystems.join(output_dir, f'.{prefix}-{uuid.uuid4().hex}.tmp')
  table = rows_to_table(rows, schema)
  with FileSystems.create(temp_path) as f:
    pq.write_table(table, f, compression='zstd', row_group_size=len(rows))
  # Replaces a part a retried bundle wrote before: the same URIs, the same rows.
  FileSystems.rename([temp_path], [final_path])
  return final_path


class _WriteBatch(beam.DoFn):

  def __init__(self, output_dir, prefix, schema, count_column):
    self._output_dir = output_dir
    self._prefix = prefix
    self._schema = schema
    self._count_column = count_column
    self._rows_written = Metrics.counter('label_images', prefix)

  def process(self, keyed_rows):
    _, rows = keyed_rows
    rows = list(rows)
    yield write_part(self._output_dir, self._prefix, rows, self._schema)
    self._rows_written.inc(len(rows))
    if self._count_column:
      for value in {row[self._count_column] for row in rows}:
        count = sum(row[self._count_column] == value for row in rows)
        Metrics.counter('label_images', f'{self._prefix}.{value}').inc(count)


class WriteParquetParts(beam.PTransform):
  """rows (dicts of `schema`) -> paths of the Parquet parts written.

  Counters in the 'label_images' namespace: PREFIX (rows committed) and, with
  count_column, PREFIX.VALUE for each value of that column.
  """

  def __init__(self, output_dir, prefix, schema, rows_per_file=DEFAULT_ROWS_PER_FILE,
               count_column=None):
    super().__init__()
    self._output_dir = output_dir
    self._prefix = prefix
    self._schema = schema
    self._rows_per_file = rows_per_file
    self._count_column = count_column

  def expand(self, rows):
    return (
        rows
        | 'Key' >> beam.WithKeys(self._prefix)
        | 'Batch' >> beam.GroupIntoBatches.WithShardedKey(self._rows_per_file)
        | 'Write' >> beam.ParDo(
            _WriteBatch(self._output_dir, self._prefix, self._schema, self._count_column)))
