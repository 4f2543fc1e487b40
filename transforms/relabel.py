"""Relabelling stored embeddings with a head of the user's own classes: no image is read.

  source part paths | Reshuffle | RelabelParts | FinalizeRun

Each labels part of the source directory is streamed a batch of rows at a time: the head's
logits are computed from the embeddings at once (transforms/head.py), turned into
probabilities and top-k exactly as transforms/rows.label_row does it for one row (a softmax
in float64, a stable descending sort), and the new label, label_index, score, top_k_labels,
top_k_scores and model columns are built as Arrow arrays beside the columns carried over
(uri, embedding, width, height), which are never turned into Python objects. Each source
part gives one new part (or one per --rows_per_file rows), written under the bundle's
attempt as the labelling pipeline's writers do (transforms/write.py), so FinalizeRun keeps
the parts of successful bundles only and counts their rows from the footers. The source's
errors parts are copied byte for byte, as parts of this run, counted by error kind.

Memory holds one source part's rows per worker thread, whatever the number of rows.
"""

import collections
import shutil
import uuid
from typing import NamedTuple, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from transforms import metrics
from transforms.commit import FinalizeRun
from transforms.files import (created_atomically, file_name, open_file, parquet_file,
                              read_parquet)
from transforms.head import head_logits, load_head
from transforms.rows import NONE_OF_THE_CLASSES
from transforms.schema import EMBEDDING, ERRORS, LABELS, kind_of_part, labels_schema, parts_dir
from transforms.write import PART_WRITES, CommittedPart, part_name, write_table

# The columns of a labels part carried over as they are; the others are the head's.
CARRIED_COLUMNS = ['uri', EMBEDDING, 'width', 'height']
BATCH_ROWS = 8192  # 40 MB of 1,280-wide embeddings
# Counters (transforms/metrics.py) besides FinalizeRun's: rows read from the source's labels
# parts, and the source parts done.
ROWS_READ = 'source_rows_read'
SOURCE_PARTS = 'source_parts'


class RelabelSettings(NamedTuple):
  head_dir: str  # HEAD_DIR: the head loaded by each worker; also the `model` column
  embedding_width: int  # of the source's embeddings, which the head takes
  top_k: int
  min_score: Optional[float] = None  # below it a row is none of the classes
  rows_per_file: Optional[int] = None  # None: one new part per source part

  @property
  def schema(self):
    return labels_schema(self.embedding_width, open_set=self.min_score is not None)


def carried_batches(path, embedding_width, batch_rows=BATCH_ROWS):
  """Yields RecordBatches of CARRIED_COLUMNS of a labels part, in the output's types whatever
  wrote the part (a tool may have rewritten the embedding as a plain list, the URI as a large
  or dictionary-encoded string); ValueError where they do not fit, e.g. embeddings of
  another width."""
  schema = pa.schema([labels_schema(embedding_width).field(name) for name in CARRIED_COLUMNS])
  with parquet_file(path) as parquet:  # DamagedPartError where it is not Parquet
    missing = [name for name in CARRIED_COLUMNS if name not in parquet.schema_arrow.names]
    if missing:
      raise ValueError(f'{path} does not hold what label-images writes: no column '
                       f'{", ".join(missing)}')
    # One thread: pyarrow's reader threads calling back into a Python file object can still
    # be running when the interpreter exits, which then aborts.
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=CARRIED_COLUMNS,
                                      use_threads=False):
      try:
        yield batch.cast(schema)
      except (pa.ArrowException, ValueError) as e:
        raise ValueError(f'{path} does not hold {embedding_width:,}-wide embeddings and the '
                         f'columns label-images writes: {e}') from e


def probabilities_of(logits):
  """Softmax of each row of float32 logits [n, classes], in float64: rows.softmax, row-wise."""
  shifted = np.exp(logits.astype(np.float64) - np.max(logits, axis=1, keepdims=True))
  return shifted / shifted.sum(axis=1, keepdims=True)


def embedding_matrix(embeddings):
  """The float32 [n, width] values of a fixed-size list array of embeddings."""
  width = embeddings.type.list_size
  values = embeddings.flatten().to_numpy(zero_copy_only=False)
  return np.asarray(values, np.float32).reshape(len(embeddings), width)


def head_columns(head, embeddings, top_k, min_score=None, label_names=None):
  """The head's columns for float32 embeddings [n, width]: {name: Arrow array} of label,
  label_index, score, top_k_labels and top_k_scores, as label_row makes them, and the
  number of rows that are none of the classes (top score below min_score)."""
  names = pa.array(head.labels, pa.string()) if label_names is None else label_names
  probabilities = probabilities_of(head_logits(head, embeddings))
  rows, classes = probabilities.shape
  k = min(top_k, classes)
  top = np.argsort(-probabilities, axis=1, kind='stable')[:, :k]
  top_scores = np.take_along_axis(probabilities, top, axis=1).astype(np.float32)
  labelled = (np.ones(rows, bool) if min_score is None else top_scores[:, 0] >= min_score)
  label_index = pa.array(top[:, 0].astype(np.int32), pa.int32(),
                         mask=None if labelled.all() else ~labelled)
  offsets = pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32))
  columns = {
      'label': names.take(label_index),
      'label_index': label_index,
      'score': pa.array(top_scores[:, 0], pa.float32()),
      'top_k_labels': pa.ListArray.from_arrays(offsets, names.take(pa.array(top.ravel()))),
      'top_k_scores': pa.ListArray.from_arrays(offsets, pa.array(top_scores.ravel(),
                                                                  pa.float32())),
  }
  return columns, int(rows - np.count_nonzero(labelled))


def relabelled_table(head, batch, settings, label_names=None):
  """A batch of labels rows (at least CARRIED_COLUMNS, in the output's types) -> (a table of
  settings.schema, with the head's columns and the others carried over; the rows that are
  none of the classes)."""
  embeddings = batch.column(EMBEDDING)
  columns, none_of_the_classes = head_columns(
      head, embedding_matrix(embeddings), settings.top_k, settings.min_score, label_names)
  columns.update({name: batch.column(name) for name in CARRIED_COLUMNS})
  columns['model'] = pa.repeat(pa.scalar(settings.head_dir, pa.string()), len(batch))
  schema = settings.schema
  return (pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema),
          none_of_the_classes)


def require_head_shape(head, embedding_width=None):
  """ValueError where the head's kernel, bias and labels disagree, or where it does not take
  embeddings `embedding_width` wide."""
  kernel, bias = head.kernel, head.bias
  if kernel.ndim != 2 or bias.shape != (kernel.shape[1],) or len(head.labels) != len(bias):
    raise ValueError(f'a head is a kernel [width, classes], a bias [classes] and one label per '
                     f'class; this one has a kernel {list(kernel.shape)}, a bias '
                     f'{list(bias.shape)} and {len(head.labels):,} labels')
  if embedding_width is not None and kernel.shape[0] != embedding_width:
    raise ValueError(f'the head takes {kernel.shape[0]:,}-wide embeddings, the parts hold '
                     f'{embedding_width:,}-wide ones')


class RelabelParts(beam.DoFn):
  """A source part's path -> CommittedParts of the new directory: a labels part relabelled
  by the head, an errors part copied as it is."""

  def __init__(self, new_dir, run_id, settings):
    self._new_dir = new_dir
    self._run_id = run_id
    self._settings = settings
    self._none_of_the_classes = metrics.counter(NONE_OF_THE_CLASSES)
    self._rows_read = metrics.counter(ROWS_READ)
    self._source_parts = metrics.counter(SOURCE_PARTS)
    self._head = None
    self._names = None
    self._attempt = None
    self._parts_written = 0

  def setup(self):
    self._head = load_head(self._settings.head_dir)
    require_head_shape(self._head, self._settings.embedding_width)
    self._names = pa.array(self._head.labels, pa.string())

  def start_bundle(self):
    # A retried bundle writes under a new attempt: FinalizeRun deletes a failed one's parts.
    self._attempt = uuid.uuid4().hex[:12]
    self._parts_written = 0

  def process(self, path):
    kind = kind_of_part(file_name(path))
    if kind == ERRORS:
      yield self._copy_errors(path)
    else:
      yield from self._relabel(path)
    self._source_parts.inc()

  def _next_path(self, kind):
    name = part_name(kind, self._run_id, self._attempt, self._parts_written)
    self._parts_written += 1
    return parts_dir(self._new_dir, kind), name

  def _relabel(self, path):
    limit = self._settings.rows_per_file
    pending, pending_rows = [], 0
    batch_rows = min(BATCH_ROWS, limit) if limit else BATCH_ROWS
    for batch in carried_batches(path, self._settings.embedding_width, batch_rows):
      table, none_of_the_classes = relabelled_table(self._head, batch, self._settings,
                                                    self._names)
      self._rows_read.inc(len(batch))
      self._none_of_the_classes.inc(none_of_the_classes)
      pending.append(table)
      pending_rows += table.num_rows
      while limit and pending_rows >= limit:
        whole = pa.concat_tables(pending)
        yield self._write(whole.slice(0, limit))
        rest = whole.slice(limit)
        pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows:
      yield self._write(pa.concat_tables(pending))

  def _write(self, table):
    folder, name = self._next_path(LABELS)
    written = write_table(folder, name, table)
    metrics.PROCESS_TALLY.add(LABELS, table.num_rows)
    return CommittedPart(written, {})

  def _copy_errors(self, path):
    folder, name = self._next_path(ERRORS)
    counts = collections.Counter(read_parquet(path, ['error']).column('error').to_pylist())
    new_path = FileSystems.join(folder, name)
    with PART_WRITES.writing(), open_file(path) as source, \
        created_atomically(new_path) as copy:
      shutil.copyfileobj(source, copy, length=8 * 1024 * 1024)
    metrics.PROCESS_TALLY.add(ERRORS, sum(counts.values()))
    return CommittedPart(new_path, dict(counts))


class RelabelDirectory(beam.PTransform):
  """The source's part paths (labels and errors) -> the new directory's parts, committed."""

  def __init__(self, part_paths, new_dir, run_id, settings):
    super().__init__()
    self._part_paths = list(part_paths)
    self._new_dir = new_dir
    self._run_id = run_id
    self._settings = settings

  def expand(self, pipeline):
    return (pipeline
            | 'SourceParts' >> beam.Create(self._part_paths)
            | 'Spread' >> beam.Reshuffle()
            | 'Relabel' >> beam.ParDo(RelabelParts(self._new_dir, self._run_id,
                                                   self._settings))
            | 'Commit' >> FinalizeRun(self._new_dir, self._run_id))


def build_relabel_pipeline(pipeline, part_paths, new_dir, run_id, settings):
  """Adds the relabelling of `part_paths` into `new_dir` to `pipeline`; every part it writes
  is named after `run_id`."""
  _ = pipeline | 'Relabel' >> RelabelDirectory(part_paths, new_dir, run_id, settings)
