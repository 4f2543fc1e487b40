"""Writing rows as independently committed Parquet parts.

Each writer gathers the rows of its bundle and writes a part every `rows_per_file`
rows and at the end of the bundle: one zstd-compressed Parquet file with a single row
group. The writer sits in the same fused stage as inference, behind no shuffle, so
parts are committed while the run goes on and a crash loses at most the rows each
writer had not yet written. A part is written under a temporary name and renamed into
place, so a file named `PREFIX-*.parquet` is always complete. The part's name is a hash
of its URIs: a bundle retried by the runner rewrites the same file instead of adding a
duplicate.
"""

import collections
import hashlib
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms import metrics

DEFAULT_ROWS_PER_FILE = 2000


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


class WriteParquetParts(beam.DoFn):
  """rows (dicts of `schema`) -> Parquet parts in OUTPUT_DIR named PREFIX-<hash>.parquet.

  Counters in the 'label_images' namespace: PREFIX (rows committed) and, with
  count_column, PREFIX.VALUE for each value of that column.
  """

  def __init__(self, output_dir, prefix, schema, rows_per_file=DEFAULT_ROWS_PER_FILE,
               count_column=None):
    self._output_dir = output_dir
    self._prefix = prefix
    self._schema = schema
    self._rows_per_file = rows_per_file
    self._count_column = count_column
    self._rows_written = metrics.counter(prefix)
    self._rows = []

  def start_bundle(self):
    self._rows = []

  def process(self, row):
    self._rows.append(row)
    metrics.PROCESS_TALLY.add(self._prefix)
    if len(self._rows) >= self._rows_per_file:
      self._write()

  def finish_bundle(self):
    if self._rows:
      self._write()

  def _write(self):
    rows, self._rows = self._rows, []
    write_part(self._output_dir, self._prefix, rows, self._schema)
    self._rows_written.inc(len(rows))
    if self._count_column:
      for value, count in collections.Counter(row[self._count_column] for row in rows).items():
        metrics.counter(f'{self._prefix}.{value}').inc(count)
