"""Writing rows as independently committed Parquet parts.

Each writer gathers the rows of its bundle and writes a part every `rows_per_file`
rows and at the end of the bundle: one zstd-compressed Parquet file with a single row
group. The writer sits in the same fused stage as inference, behind no shuffle, so
parts are committed while the run goes on and a crash loses at most the rows each
writer had not yet written. A part is written under a temporary name and renamed into
place, so a file named `PREFIX-*.parquet` is always complete.

A part is named PREFIX-RUN-ATTEMPT-N.parquet: the run, the bundle attempt that wrote it
(new each time a runner retries a bundle) and its number within that attempt. Every
writer emits a CommittedPart for each part it wrote; the runner keeps the outputs of
successful bundles only, so after the last write the run knows exactly which of its
parts to keep (transforms/commit.py deletes the others).
"""

import collections
import contextlib
import hashlib
import threading
import uuid
import weakref
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from transforms import metrics
from transforms.files import (created_atomically, delete_paths, exists, file_name, matching_paths,
                             read_parquet)
from transforms.schema import EMBEDDING, ROW_KINDS, kind_of_part, parts_dir

DEFAULT_ROWS_PER_FILE = 2000


class CommittedPart(NamedTuple):
  path: str
  counts: dict  # rows per value of the writer's count_column, e.g. errors by kind
  new_rows: bool = True  # False for a part that re-homes rows of earlier runs


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


def part_name(kind, run_id, attempt, number):
  return f'{kind}-{run_id}-{attempt}-{number:05d}.parquet'


def run_part_pattern(output_dir, kind, run_id):
  """Every part of KIND written by run RUN_ID, whichever attempt wrote it."""
  return FileSystems.join(parts_dir(output_dir, kind), f'{kind}-{run_id}-*.parquet')


def run_temp_paths(output_dir, run_id):
  """The temporary files of run RUN_ID's parts that exist, in every folder of parts."""
  folders = {parts_dir(output_dir, kind) for kind in ROW_KINDS}
  return [path for folder in sorted(folders)
          for path in matching_paths(FileSystems.join(folder, f'.*-{run_id}-*.tmp'))]


class RunStopping(Exception):
  pass


class WriteGate:
  """Lets a local run that is stopping finish the parts being written and start no other:
  close() returns once those in flight are renamed into place or have failed."""

  def __init__(self):
    self._condition = threading.Condition()
    self._open = True
    self._in_flight = 0

  @contextlib.contextmanager
  def writing(self):
    with self._condition:
      if not self._open:
        raise RunStopping('the run is stopping: no new part is written')
      self._in_flight += 1
    try:
      yield
    finally:
      with self._condition:
        self._in_flight -= 1
        self._condition.notify_all()

  def close(self, timeout_s):
    with self._condition:
      self._open = False
      return self._condition.wait_for(lambda: not self._in_flight, timeout_s)


# Shared by every writer of this process.
PART_WRITES = WriteGate()
_WRITERS = weakref.WeakSet()
_WRITERS_LOCK = threading.Lock()


def write_held_rows():
  """Writes the rows that this process's writers have gathered but not yet written, each
  writer's as a part: a local run that stops keeps what it labelled. Called before
  PART_WRITES closes."""
  with _WRITERS_LOCK:
    writers = list(_WRITERS)
  for writer in writers:
    writer.write_held_rows()


def write_table(output_dir, name, table):
  """Writes table to OUTPUT_DIR/NAME atomically, as one row group; returns its path."""
  final_path = FileSystems.join(output_dir, name)
  with PART_WRITES.writing(), created_atomically(final_path) as f:
    # Embeddings are floats that almost never repeat: a dictionary of them only costs time
    # (about 40% of a part's write) and space.
    pq.write_table(table, f, compression='zstd', row_group_size=max(1, table.num_rows),
                   use_dictionary=[name for name in table.column_names if name != EMBEDDING])
  return final_path


def remove_rows(part_path, uris, run_id):
  """Rewrites a part of an earlier run without the rows of `uris` (copies of rows kept in
  another part); returns the CommittedPart of what remains, or None when nothing does.

  The new part is written before the old one is deleted, so a crash in between leaves a
  copy too many, which the next --resume removes, never a row too few. Its name derives
  from the old one, so a retried rewrite finds or replaces its own output.
  """
  directory, name = FileSystems.split(part_path)
  digest = hashlib.sha256(name.encode()).hexdigest()
  new_path = FileSystems.join(
      directory, part_name(kind_of_part(name), run_id, f'dedup{digest}', 0))
  if not exists(part_path):  # a retry, after the first attempt deleted it
    return CommittedPart(new_path, {}, new_rows=False) if exists(new_path) else None
  table = read_parquet(part_path)
  kept = table.filter(pc.invert(pc.is_in(table.column('uri'), pa.array(sorted(uris)))))
  committed = None
  if kept.num_rows:
    write_table(directory, file_name(new_path), kept)
    committed = CommittedPart(new_path, {}, new_rows=False)
  delete_paths([part_path])
  return committed


class WriteParquetParts(beam.DoFn):
  """rows (dicts of `schema`) -> Parquet parts in OUTPUT_DIR; emits a CommittedPart for each.

  With count_column, each CommittedPart counts its rows per value of that column.
  """

  def __init__(self, output_dir, kind, schema, run_id, rows_per_file=DEFAULT_ROWS_PER_FILE,
               count_column=None):
    self._output_dir = output_dir
    self._kind = kind
    self._schema = schema
    self._run_id = run_id
    self._rows_per_file = rows_per_file
    self._count_column = count_column
    self._rows = []
    self._attempt = None
    self._parts_written = 0

  def setup(self):
    self._lock = threading.Lock()  # pylint: disable=attribute-defined-outside-init
    with _WRITERS_LOCK:
      _WRITERS.add(self)

  def start_bundle(self):
    with self._lock:
      self._rows = []
      self._attempt = uuid.uuid4().hex[:12]
      self._parts_written = 0

  def process(self, row):
    with self._lock:
      self._rows.append(row)
      metrics.PROCESS_TALLY.add(self._kind)
      part = self._write() if len(self._rows) >= self._rows_per_file else None
    if part:
      yield part

  def finish_bundle(self):
    with self._lock:
      part = self._write() if self._rows else None
    if part:
      yield GlobalWindows.windowed_value(part)

  def write_held_rows(self):
    """Writes the rows gathered so far as a part, outside the bundle's own flow."""
    with self._lock:
      if self._rows:
        self._write()

  def _write(self):
    # The rows are let go once their part is in place: a write that fails or is interrupted
    # leaves them for write_held_rows.
    rows = self._rows
    name = part_name(self._kind, self._run_id, self._attempt, self._parts_written)
    self._parts_written += 1
    path = write_table(parts_dir(self._output_dir, self._kind), name,
                       rows_to_table(rows, self._schema))
    self._rows = []
    counts = (dict(collections.Counter(row[self._count_column] for row in rows))
              if self._count_column else {})
    return CommittedPart(path, counts)
