"""A faiss index of an output directory's embeddings, by cosine, saved beside the results.

Up to EXACT_LIMIT images the index is exact: every vector, as float32. Above, it is an
inverted file: vectors are assigned to the nearest of ~2*sqrt(n) k-means centroids and
stored 8 bits per dimension (1.3 KB per image instead of 5 KB; cosines then carry an error
of about 0.005), and a query scans only the lists of its `nprobe` nearest centroids. Embeddings are streamed from the parts a batch at a
time, so memory holds the index, never the Parquet.

Row ids count through the labels parts in name order. OUTPUT_DIR/index/ holds the index,
the URI and label of every row id, and the parts it was built from: a directory that has
gained or lost parts since gets a fresh index.
"""

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
from pipeline.console import status
from pipeline.output_dir import INDEX_DIR
from transforms.files import (delete_paths, exists, open_file, read_bytes, read_parquet,
                              write_bytes)
from transforms.model import EMBEDDING_SIZE

EXACT_LIMIT = 50_000
TRAINING_PER_CENTROID = 40  # faiss asks for at least 39
SEARCH_NPROBE = 32  # one query at a time: cheap, so scan widely

_INDEX_FILE = 'embeddings.faiss'
_ROWS_FILE = 'rows.parquet'
_META_FILE = 'index.json'


def _faiss():
  import faiss  # pylint: disable=import-outside-toplevel
  return faiss


def _index_path(output_dir, name):
  return FileSystems.join(output_dir, INDEX_DIR, name)


def centroid_count(rows):
  """~2 * sqrt(n), as a power of two: assigning vectors costs n * lists, comparing the
  members of each list n^2 / lists."""
  return 2 ** round(math.log2(2 * math.sqrt(rows)))


class EmbeddingIndex:
  """The index, and the uri and label of each of its row ids."""

  def __init__(self, index, rows, parts):
    self.index = index
    self.uris = rows.column('uri')
    self.labels = rows.column('label')
    self.parts = parts  # {part file name: rows}
    faiss = _faiss()
    self.exact = isinstance(index, faiss.IndexFlat)
    self._ivf = None if self.exact else faiss.downcast_index(faiss.extract_index_ivf(index))
    if self._ivf is not None:
      trained = faiss.vector_to_array(self._ivf.sq.trained).reshape(2, EMBEDDING_SIZE)
      self._code_range = trained[0], trained[1] / 255

  @property
  def size(self):
    return self.index.ntotal

  def row_of(self, uri):
    """The row id of `uri`, or None."""
    found = pc.index(self.uris, pa.scalar(uri, pa.string())).as_py()
    return None if found < 0 else found

  def part_and_offset(self, row):
    for name, rows in self.parts.items():
      if row < rows:
        return name, row
      row -= rows
    raise IndexError(row)

  def set_nprobe(self, nprobe):
    if not self.exact:
      self._ivf.nprobe = nprobe

  def search(self, vectors, k):
    """(cosines [n, k], row ids [n, k]) of the k nearest, nearest first; -1 pads."""
    return self.index.search(np.ascontiguousarray(vectors, np.float32), k)

  def lists(self):
    """Yields (row ids, float32 vectors) of each inverted list; the exact index is one list.
    The vectors of a list are decoded when it is reached."""
    faiss = _faiss()
    if self.exact:
      vectors = faiss.rev_swig_ptr(self.index.get_xb(), self.size * EMBEDDING_SIZE)
      yield np.arange(self.size), vectors.reshape(self.size, EMBEDDING_SIZE)
      return
    for number in range(self.list_count):
      yield self.list_rows(number), self.decode(self.list_codes(number))

  def list_rows(self, number):
    invlists = self._ivf.invlists
    return _faiss().rev_swig_ptr(invlists.get_ids(number), invlists.list_size(number)).copy()

  @property
  def list_count(self):
    return 1 if self.exact else self._ivf.nlist

  def all_list_codes(self):
    return [self.list_codes(number) for number in range(self.list_count)]

  def list_codes(self, number):
    """The 8-bit codes of a list's vectors [size, 1280], without a copy."""
    invlists = self._ivf.invlists
    size = invlists.list_size(number)
    return _faiss().rev_swig_ptr(invlists.get_codes(number), size * invlists.code_size).reshape(
        size, invlists.code_size)

  def decode(self, codes):
    """float32 vectors from 8-bit codes: each dimension's code 0-255 spans that
    dimension's trained range (faiss's QT_8bit, vectorized by numpy: several times faster
    than faiss's own decoder)."""
    low, span = self._code_range
    return low + (codes.astype(np.float32) + 0.5) * span

  def nearest_lists(self, vectors, count):
    """The lists whose centroids are nearest to each vector [n, count], nearest first."""
    return self._ivf.quantizer.search(vectors, count)[1]


def _new_index(rows):
  faiss = _faiss()
  if rows <= EXACT_LIMIT:
    return faiss.IndexFlatIP(EMBEDDING_SIZE)
  index = faiss.index_factory(EMBEDDING_SIZE, f'IVF{centroid_count(rows)},SQ8',
                              faiss.METRIC_INNER_PRODUCT)
  # Codes of the vectors themselves, not of their offsets from the centroid: a list's
  # members then decode without it, to be compared with other lists' members.
  ivf = faiss.extract_index_ivf(index)
  ivf.by_residual = False
  # Centroids of length 1, as the vectors are: by inner product, longer centroids would
  # draw more than their share of vectors, and a few lists would hold most images.
  ivf.cp.spherical = True
  return index


def _training_sample(paths, total, wanted):
  """About `wanted` vectors spread evenly over the whole output (every k-th row)."""
  step = max(1, total // wanted)
  chunks, seen = [], 0
  for batch in results.read_batches(paths, ['embedding']):
    offsets = np.arange((-seen) % step, len(batch), step)
    if len(offsets):
      chunks.append(results.unit_embeddings(batch.take(pa.array(offsets))))
    seen += len(batch)
  return np.concatenate(chunks)


def build_index(output_dir, progress=status):
  """Streams every labels part of output_dir into a new EmbeddingIndex."""
  paths = results.label_parts(output_dir)
  parts = results.part_rows(paths)
  total = sum(parts.values())
  index = _new_index(total)
  if not index.is_trained:
    centroids = _faiss().extract_index_ivf(index).nlist
    progress(f'training an inverted-file index of {centroids} lists for {total:,} images')
    index.train(_training_sample(paths, total, centroids * TRAINING_PER_CENTROID))
  columns, models = [], set()
  for batch in results.read_batches(paths, ['uri', 'label', 'model', 'embedding']):
    models.update(pc.unique(batch.column('model')).to_pylist())
    if len(models) > 1:
      raise results.MixedOriginError(
          f'{output_dir} holds rows of several models ({", ".join(sorted(models))}): their '
          'embeddings cannot be compared. Label into one directory per model.')
    index.add(results.unit_embeddings(batch))
    columns.append(batch.select(['uri', 'label']))
    progress(f'indexed {index.ntotal:,} of {total:,} images', transient=True)
  rows = pa.Table.from_batches(columns).combine_chunks()
  return EmbeddingIndex(index, rows, parts)


def save_index(output_dir, embedding_index):
  faiss = _faiss()
  with tempfile.TemporaryDirectory() as local:
    local_index = os.path.join(local, _INDEX_FILE)
    faiss.write_index(embedding_index.index, local_index)
    with open(local_index, 'rb') as src, FileSystems.create(
        _index_path(output_dir, _INDEX_FILE)) as dst:
      shutil.copyfileobj(src, dst, 16 << 20)
  with FileSystems.create(_index_path(output_dir, _ROWS_FILE)) as f:
    pq.write_table(pa.table({'uri': embedding_index.uris, 'label': embedding_index.labels}), f)
  # Written last: an index without it is never trusted.
  write_bytes(_index_path(output_dir, _META_FILE), json.dumps(
      {'parts': embedding_index.parts, 'images': embedding_index.size,
       'kind': 'exact' if embedding_index.exact else 'inverted file, 8-bit'}, indent=2).encode())


def load_index(output_dir):
  """The saved index, or None where there is none or it no longer matches the parts."""
  meta_path = _index_path(output_dir, _META_FILE)
  if not exists(meta_path):
    return None
  parts = json.loads(read_bytes(meta_path))['parts']
  if parts != results.part_rows(results.label_parts(output_dir)):
    delete_paths([meta_path])
    return None
  faiss = _faiss()
  with tempfile.TemporaryDirectory() as local:
    local_index = os.path.join(local, _INDEX_FILE)
    with open_file(_index_path(output_dir, _INDEX_FILE)) as src, open(local_index, 'wb') as dst:
      shutil.copyfileobj(src, dst, 16 << 20)
    index = faiss.read_index(local_index)
  rows = read_parquet(_index_path(output_dir, _ROWS_FILE))
  return EmbeddingIndex(index, rows, parts)


def index_for(output_dir, progress=status):
  """The saved index where it is current, else a new one, saved."""
  embedding_index = load_index(output_dir)
  if embedding_index is None:
    embedding_index = build_index(output_dir, progress)
    save_index(output_dir, embedding_index)
  return embedding_index
