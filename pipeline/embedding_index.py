"""A faiss index of an output directory's embeddings, by cosine, saved beside the results.

What is indexed: every URI once, by its first row (after a crash, a URI can have rows in
several parts); not the embeddings with NaN or inf, nor the all-zero ones, which have no
direction to compare (they are counted as left out); and each distinct embedding once, as
one vector that all its images share, so that a thousand copies of one image cost one
vector and no comparison among themselves. Embeddings are streamed from the parts a batch
at a time, so memory holds the index, never the Parquet.

Up to EXACT_LIMIT images the index is exact: every vector, as float32. Above (unless a
sample of the embeddings holds fewer than two distinct ones), it is an inverted file:
vectors are assigned to the nearest of ~2*sqrt(n) k-means centroids and stored 8 bits per
dimension (a quarter of float32's size: 1.3 KB for a 1,280-wide embedding; cosines then
carry an error of about 0.005), and a query scans only the lists of its `nprobe` nearest
centroids. The index is as wide as the embeddings the parts hold, whatever their model.

OUTPUT_DIR/_index/ holds the index; rows.parquet, one row per URI: its label, its vector's
id in the index (-1 where left out, with the reason) and its row number counting through
the labels parts in name order; and index.json, the parts it was built from: a directory
that has gained or lost parts since gets a fresh index.
"""

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.console import plural, status
from pipeline.output_dir import INDEX_DIR
from transforms.files import (DamagedPartError, created_atomically, delete_paths, exists,
                              open_file, read_bytes, read_parquet, write_bytes)

EXACT_LIMIT = 50_000
TRAINING_PER_CENTROID = 40  # faiss asks for at least 39
SEARCH_NPROBE = 32  # one query at a time: cheap, so scan widely

# Why a row is left out of the index.
NAN_OR_INF = 'NaN or inf'
ALL_ZERO = 'all zero'
_LEFT_OUT_NOTES = {NAN_OR_INF: 'with NaN/inf in their embedding', ALL_ZERO: 'all-zero'}
ROWS_SCHEMA = pa.schema([
    pa.field('uri', pa.string()),
    pa.field('label', pa.string()),
    pa.field('vector', pa.int64()),  # -1 where left out
    pa.field('left_out', pa.string()),  # why, or null
    pa.field('part_row', pa.int64()),
])

_INDEX_FILE = 'embeddings.faiss'
_ROWS_FILE = 'rows.parquet'
_META_FILE = 'index.json'
# Of the saved index: one that another version saved is rebuilt, not misread.
_FORMAT = 2


def _faiss():
  import faiss  # pylint: disable=import-outside-toplevel
  return faiss


def _index_path(output_dir, name):
  return FileSystems.join(output_dir, INDEX_DIR, name)


def centroid_count(rows):
  """~2 * sqrt(n), as a power of two: assigning vectors costs n * lists, comparing the
  members of each list n^2 / lists."""
  return 2 ** round(math.log2(2 * math.sqrt(rows)))


def unit_rows(embeddings):
  """The rows of `embeddings` [n, d] that have a direction, as float32 of length 1 [m, d];
  and why each of the n is left out: NAN_OR_INF, ALL_ZERO, or None where it is kept."""
  embeddings = np.asarray(embeddings, np.float32)
  # Summed in float64: the norm of float32 values does not overflow there.
  norms = np.sqrt(np.einsum('ij,ij->i', embeddings, embeddings, dtype=np.float64))
  left_out = np.full(len(norms), None, object)
  left_out[~np.isfinite(norms)] = NAN_OR_INF
  left_out[norms == 0] = ALL_ZERO
  kept = np.equal(left_out, None)
  unit = embeddings[kept]
  unit /= norms[kept, None]  # in place: no float64 copy of the batch
  return unit, left_out


def _digests(vectors):
  """128 bits of each vector's bytes: equal for identical vectors, and (but for a chance of
  2^-128) only for them."""
  return [hashlib.blake2b(vector, digest_size=16).digest() for vector in vectors]


class _DistinctVectors:
  """Numbers vectors as they come: identical vectors get the same number."""

  def __init__(self):
    self._number_of = {}

  def numbers(self, vectors):
    """The number of each vector, and whether it is new: the first of its kind."""
    known = len(self._number_of)
    numbers = np.array([self._number_of.setdefault(digest, len(self._number_of))
                        for digest in _digests(vectors)], np.int64)
    _, first = np.unique(numbers, return_index=True)
    new = np.zeros(len(numbers), bool)
    new[first] = True
    return numbers, new & (numbers >= known)


def _faiss_array(pointer, count, dtype):
  """`count` items at a faiss pointer, as numpy, without a copy; an empty list's pointer
  does not tell its type."""
  if count == 0:
    return np.empty(0, dtype)
  return _faiss().rev_swig_ptr(pointer, count)


class EmbeddingIndex:
  """The index of distinct vectors, and the rows (URIs) of the output: row i has vector
  vector_of[i], -1 where it is left out."""

  def __init__(self, index, rows, parts):
    self.index = index
    self.rows = rows  # ROWS_SCHEMA
    self.uris = rows.column('uri')
    self.labels = rows.column('label')
    self.vector_of = rows.column('vector').to_numpy()
    self.parts = parts  # {part file name: rows}
    faiss = _faiss()
    self.exact = isinstance(index, faiss.IndexFlat)
    self._ivf = None if self.exact else faiss.downcast_index(faiss.extract_index_ivf(index))
    if self._ivf is not None:
      trained = faiss.vector_to_array(self._ivf.sq.trained).reshape(2, index.d)
      self._code_range = trained[0], trained[1] / 255

  @property
  def size(self):
    """Vectors in the index: distinct embeddings."""
    return self.index.ntotal

  @property
  def width(self):
    """Of the embeddings indexed."""
    return self.index.d

  @property
  def images(self):
    """Rows of the output, a URI counted once."""
    return len(self.uris)

  @property
  def indexed_images(self):
    """Rows with a vector."""
    return int(np.count_nonzero(self.vector_of >= 0))

  def row_of(self, uri):
    """The row of `uri`, or None."""
    found = pc.index(self.uris, pa.scalar(uri, pa.string())).as_py()
    return None if found < 0 else found

  def part_and_offset(self, row):
    """The part that holds a row, and the row's offset in it."""
    part_row = self.rows.column('part_row')[row].as_py()
    for name, rows in self.parts.items():
      if part_row < rows:
        return name, part_row
      part_row -= rows
    raise IndexError(row)

  @functools.cached_property
  def rows_by_vector(self):
    """(order, starts): the rows of vector v are order[starts[v]:starts[v + 1]], in row
    order; the rows left out come before starts[0]."""
    order = np.argsort(self.vector_of, kind='stable')
    return order, np.searchsorted(self.vector_of[order], np.arange(self.size + 1))

  def rows_of_vector(self, vector):
    order, starts = self.rows_by_vector
    return order[starts[vector]:starts[vector + 1]]

  def left_out_reason(self, row):
    """NAN_OR_INF or ALL_ZERO where the row is left out, else None."""
    return self.rows.column('left_out')[row].as_py()

  def left_out_counts(self):
    """{reason: rows}."""
    counts = pc.value_counts(self.rows.column('left_out').drop_null())
    return dict(zip(counts.field('values').to_pylist(), counts.field('counts').to_pylist()))

  def notes(self):
    """Lines saying what of the output is not indexed, if anything."""
    lines = []
    left_out = self.left_out_counts()
    if left_out:
      lines.append(f'{plural(sum(left_out.values()), "image")} left out: ' + ', '.join(
          f'{left_out[reason]:,} {note}' for reason, note in _LEFT_OUT_NOTES.items()
          if reason in left_out))
    repeated = sum(self.parts.values()) - self.images
    if repeated:
      lines.append(f'{plural(repeated, "row")} repeat the URI of an earlier row: each URI '
                   'counts once, by its first row')
    return lines

  def set_nprobe(self, nprobe):
    if not self.exact:
      self._ivf.nprobe = nprobe

  def search(self, vectors, k):
    """(cosines [n, k], vectors [n, k]) of the k nearest vectors, nearest first; -1 pads."""
    return self.index.search(np.ascontiguousarray(vectors, np.float32), k)

  def lists(self):
    """Yields (vector ids, float32 vectors) of each inverted list; the exact index is one
    list. The vectors of a list are decoded when it is reached."""
    if self.exact:
      vectors = _faiss_array(self.index.get_xb(), self.size * self.index.d, np.float32)
      yield np.arange(self.size), vectors.reshape(self.size, self.index.d)
      return
    for number in range(self.list_count):
      yield self.list_rows(number), self.decode(self.list_codes(number))

  def list_rows(self, number):
    """The vector ids of a list."""
    invlists = self._ivf.invlists
    return _faiss_array(invlists.get_ids(number), invlists.list_size(number), np.int64).copy()

  @property
  def list_count(self):
    return 1 if self.exact else self._ivf.nlist

  def all_list_codes(self):
    return [self.list_codes(number) for number in range(self.list_count)]

  def list_codes(self, number):
    """The 8-bit codes of a list's vectors [size, d], without a copy."""
    invlists = self._ivf.invlists
    size = invlists.list_size(number)
    return _faiss_array(invlists.get_codes(number), size * invlists.code_size,
                        np.uint8).reshape(size, invlists.code_size)

  def decode(self, codes):
    """float32 vectors from 8-bit codes: each dimension's code 0-255 spans that
    dimension's trained range (faiss's QT_8bit, vectorized by numpy: several times faster
    than faiss's own decoder)."""
    low, span = self._code_range
    return low + (codes.astype(np.float32) + 0.5) * span

  def nearest_lists(self, vectors, count):
    """The lists whose centroids are nearest to each vector [n, count], nearest first."""
    return self._ivf.quantizer.search(vectors, count)[1]


def _embeddings(batch):
  column = batch.column('embedding')
  return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


def _first_rows_of_uris(paths):
  """Whether each row of the parts, counting through them, is the first of its URI."""
  batches = results.read_batches(paths, ['uri'])
  uris = pa.chunked_array([batch.column('uri') for batch in batches], pa.string())
  rows = pa.table({'uri': uris, 'row': np.arange(len(uris))})
  first_rows = rows.group_by('uri').aggregate([('row', 'min')]).column('row_min')
  is_first = np.zeros(len(uris), bool)
  is_first[first_rows.to_numpy()] = True
  return is_first


def _training_sample(paths, total, wanted):
  """About `wanted` vectors spread evenly over the whole output (every k-th row), each
  distinct vector once."""
  step = max(1, total // wanted)
  chunks, seen, distinct = [], 0, _DistinctVectors()
  for batch in results.read_batches(paths, ['embedding']):
    offsets = np.arange((-seen) % step, len(batch), step)
    if len(offsets):
      vectors, _ = unit_rows(_embeddings(batch.take(pa.array(offsets))))
      _, new = distinct.numbers(vectors)
      chunks.append(vectors[new])
    seen += len(batch)
  return np.concatenate(chunks)


def _trained_inverted_file(paths, total, images, progress):
  """An inverted file for `images` of the `total` rows of the parts, trained on a sample;
  None where the sample holds too few distinct vectors."""
  faiss = _faiss()
  sample = _training_sample(paths, total, centroid_count(images) * TRAINING_PER_CENTROID)
  lists = min(centroid_count(images), len(sample))  # k-means needs a vector per list
  if lists < 2:
    return None
  index = faiss.index_factory(sample.shape[1], f'IVF{lists},SQ8', faiss.METRIC_INNER_PRODUCT)
  # Codes of the vectors themselves, not of their offsets from the centroid: a list's
  # members then decode without it, to be compared with other lists' members.
  ivf = faiss.extract_index_ivf(index)
  ivf.by_residual = False
  # Centroids of length 1, as the vectors are: by inner product, longer centroids would
  # draw more than their share of vectors, and a few lists would hold most images.
  ivf.cp.spherical = True
  progress(f'training an inverted-file index of {lists} lists for {images:,} images')
  index.train(sample)
  return index


def _require_one_model(models, batch, output_dir):
  """Adds the batch's models to `models`; MixedOriginError where that makes two."""
  models.update(pc.unique(batch.column('model')).to_pylist())
  if len(models) > 1:
    raise results.MixedOriginError(
        f'{output_dir} holds rows of several models ({", ".join(sorted(models))}): their '
        'embeddings cannot be compared. Label into one directory per model.')


def build_index(output_dir, progress=status):
  """Streams every labels part of output_dir into a new EmbeddingIndex."""
  paths = results.label_parts(output_dir)
  results.require_embeddings(output_dir, paths)
  parts = results.part_rows(paths)
  total = sum(parts.values())
  if not total:
    raise results.NoResultsError(f'{output_dir} holds no labelled image: nothing to compare')
  is_first = _first_rows_of_uris(paths)
  images = int(np.count_nonzero(is_first))
  index = (_trained_inverted_file(paths, total, images, progress) if images > EXACT_LIMIT
           else None)
  distinct = _DistinctVectors()
  tables, models, read = [ROWS_SCHEMA.empty_table()], set(), 0
  for batch in results.read_batches(paths, ['uri', 'label', 'model', 'embedding']):
    _require_one_model(models, batch, output_dir)
    offsets = np.flatnonzero(is_first[read:read + len(batch)])
    part_rows, read = read + offsets, read + len(batch)
    batch = batch.take(pa.array(offsets))
    vectors, left_out = unit_rows(_embeddings(batch))
    if index is None:  # exact, as wide as the embeddings
      index = _faiss().IndexFlatIP(vectors.shape[1])
    numbers, new = distinct.numbers(vectors)
    index.add(vectors[new])
    vector_of = np.full(len(batch), -1, np.int64)
    vector_of[np.equal(left_out, None)] = numbers
    tables.append(pa.table([batch.column('uri'), batch.column('label'), vector_of,
                            pa.array(left_out, pa.string()), part_rows], schema=ROWS_SCHEMA))
    progress(f'indexed {read:,} of {total:,} rows', transient=True)
  return EmbeddingIndex(index, pa.concat_tables(tables).combine_chunks(), parts)


def save_index(output_dir, embedding_index):
  faiss = _faiss()
  with tempfile.TemporaryDirectory() as local:
    local_index = os.path.join(local, _INDEX_FILE)
    faiss.write_index(embedding_index.index, local_index)
    with open(local_index, 'rb') as src, created_atomically(
        _index_path(output_dir, _INDEX_FILE)) as dst:
      shutil.copyfileobj(src, dst, 16 << 20)
  with created_atomically(_index_path(output_dir, _ROWS_FILE)) as f:
    pq.write_table(embedding_index.rows, f)
  # Written last: an index without it is never trusted.
  write_bytes(_index_path(output_dir, _META_FILE), json.dumps(
      {'format': _FORMAT, 'parts': embedding_index.parts, 'images': embedding_index.images,
       'vectors': embedding_index.size, 'left_out': embedding_index.left_out_counts(),
       'kind': 'exact' if embedding_index.exact else 'inverted file, 8-bit'}, indent=2).encode())


def load_index(output_dir):
  """The saved index, or None where there is none or it no longer matches the parts."""
  meta_path = _index_path(output_dir, _META_FILE)
  if not exists(meta_path):
    return None
  meta = json.loads(read_bytes(meta_path))
  if (meta.get('format') != _FORMAT
      or meta['parts'] != results.part_rows(results.label_parts(output_dir))):
    delete_paths([meta_path])
    return None
  faiss = _faiss()
  with tempfile.TemporaryDirectory() as local:
    local_index = os.path.join(local, _INDEX_FILE)
    with open_file(_index_path(output_dir, _INDEX_FILE)) as src, open(local_index, 'wb') as dst:
      shutil.copyfileobj(src, dst, 16 << 20)
    index = faiss.read_index(local_index)
  try:
    rows = read_parquet(_index_path(output_dir, _ROWS_FILE))
  except DamagedPartError:  # a cache (a partial copy of the directory, say): built again
    delete_paths([meta_path])
    return None
  return EmbeddingIndex(index, rows, meta['parts'])


def index_for(output_dir, progress=status):
  """The saved index where it is current, else a new one, saved."""
  embedding_index = load_index(output_dir)
  if embedding_index is None:
    embedding_index = build_index(output_dir, progress)
    save_index(output_dir, embedding_index)
  return embedding_index
