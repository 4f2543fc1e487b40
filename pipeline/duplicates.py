"""label-images duplicates: groups of near-duplicate images, by embedding cosine.

  label-images duplicates OUTPUT_DIR [--threshold 0.90]

Two images whose embeddings have a cosine above the threshold are a pair; images linked
through a chain of pairs form one group. Writes OUTPUT_DIR/duplicates.parquet, one row per
image that has a near-duplicate: its group, its URI, the URI of its nearest neighbour and
their cosine.

The default threshold comes from tests/perf/duplicate_threshold.py: copies of the shared
photos re-encoded at JPEG quality 50-95, halved, or with 5% cropped off had a cosine of at
least 0.93 with their source; different photos at most 0.61. 0.90 keeps every copy with a
margin, and is still far above unrelated pictures.
"""

import argparse
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse
import scipy.sparse.csgraph
from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.console import add_verbose_flag, status
from pipeline.embedding_index import index_for
from pipeline.output_dir import DUPLICATES_FILE
from transforms.files import write_bytes

DEFAULT_THRESHOLD = 0.90
# Rows compared with all others at once: 1024 x 50,000 cosines take 200 MB.
BLOCK_ROWS = 1024
SECONDS_AT_ONCE = 8192
DUPLICATES_SCHEMA = pa.schema([
    pa.field('group', pa.int64(), nullable=False),
    pa.field('uri', pa.string(), nullable=False),
    pa.field('nearest_uri', pa.string(), nullable=False),
    pa.field('cosine', pa.float32(), nullable=False),
])


class _Groups:
  """Union-find over row ids."""

  def __init__(self, size):
    self.parent = np.arange(size)

  def root(self, row):
    parent = self.parent
    while parent[row] != row:
      parent[row] = parent[parent[row]]
      row = parent[row]
    return row

  def join(self, rows):
    first = self.root(rows[0])
    for row in rows[1:]:
      root = self.root(row)
      if root != first:
        self.parent[max(root, first)] = min(root, first)
        first = min(root, first)


class _Pairs:
  """What the pairs found so far say: each row's nearest neighbour, and the groups."""

  def __init__(self, size):
    self.cosine = np.full(size, -np.inf, np.float32)
    self.nearest = np.full(size, -1, np.int64)
    self.groups = _Groups(size)

  def _keep_nearest(self, rows, neighbours, cosines):
    """For each distinct row, its best neighbour among these pairs, if better than before."""
    order = np.lexsort((-cosines, rows))
    first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
    rows, neighbours, cosines = rows[first], neighbours[first], cosines[first]
    better = cosines > self.cosine[rows]
    self.cosine[rows[better]] = cosines[better]
    self.nearest[rows[better]] = neighbours[better]

  def add_block(self, rows_a, vectors_a, rows_b, vectors_b, threshold):
    """Compares every row of a with every row of b (each row with itself excepted)."""
    for start in range(0, len(rows_a), BLOCK_ROWS):
      chunk = slice(start, start + BLOCK_ROWS)
      cosines = vectors_a[chunk] @ vectors_b.T
      hit_a, hit_b = np.nonzero(cosines > threshold)
      pair_a, pair_b = rows_a[chunk][hit_a], rows_b[hit_b]
      others = pair_a != pair_b
      if others.any():
        self._add_pairs(pair_a[others], pair_b[others], cosines[hit_a[others], hit_b[others]])

  def _add_pairs(self, rows_a, rows_b, cosines):
    self._keep_nearest(rows_a, rows_b, cosines)
    self._keep_nearest(rows_b, rows_a, cosines)
    # Rows linked through a chain of these pairs form a component: joining each component
    # once keeps the work linear in rows, however many pairs a group of copies makes.
    nodes, ends = np.unique(np.concatenate([rows_a, rows_b]), return_inverse=True)
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(rows_a), np.int8), (ends[:len(rows_a)], ends[len(rows_a):])),
        shape=(len(nodes), len(nodes)))
    _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
    order = np.argsort(component, kind='stable')
    for members in np.split(nodes[order], np.flatnonzero(np.diff(component[order])) + 1):
      self.groups.join(members)


def _second_list_members(embedding_index):
  """{list: row ids whose second nearest centroid it is}, and where each row is stored."""
  rows = embedding_index.size
  list_of, offset_of, second_of = (np.empty(rows, np.int64) for _ in range(3))
  for number, (members, vectors) in enumerate(embedding_index.lists()):
    list_of[members], offset_of[members] = number, np.arange(len(members))
    nearest_two = embedding_index.nearest_lists(vectors, 2)
    # Decoded from 8 bits, a vector's nearest centroid may differ from the one it was
    # assigned to: its second list is then the nearest.
    second_of[members] = np.where(nearest_two[:, 1] == number, nearest_two[:, 0],
                                  nearest_two[:, 1])
  order = np.argsort(second_of, kind='stable')
  bounds = np.searchsorted(second_of[order], np.arange(embedding_index.list_count + 1))
  return order, bounds, list_of, offset_of


def find_pairs(embedding_index, threshold, progress=status):
  """_Pairs over every pair of images with a cosine above threshold.

  The exact index is compared block by block, all with all. An inverted file is compared
  list by list: each list's members with each other, and with the images whose second
  nearest centroid is that list's, which finds near-duplicates split by a boundary
  between two lists. Both are matrix products, rather than one query at a time.
  """
  pairs = _Pairs(embedding_index.size)
  if embedding_index.exact:
    (rows, vectors), = embedding_index.lists()
    for start in range(0, len(rows), BLOCK_ROWS):
      block = slice(start, start + BLOCK_ROWS)
      pairs.add_block(rows[block], vectors[block], rows, vectors, threshold)
      progress(f'compared {min(start + BLOCK_ROWS, len(rows)):,} of {len(rows):,} images',
               transient=True)
    return pairs
  order, bounds, list_of, offset_of = _second_list_members(embedding_index)
  codes_of_list = embedding_index.all_list_codes()
  done = 0
  for number, (rows, vectors) in enumerate(embedding_index.lists()):
    pairs.add_block(rows, vectors, rows, vectors, threshold)
    # A few lists are the second nearest of very many images: a slice at a time.
    seconds = order[bounds[number]:bounds[number + 1]]
    for start in range(0, len(seconds), SECONDS_AT_ONCE):
      others = seconds[start:start + SECONDS_AT_ONCE]
      codes = np.stack([codes_of_list[list_of[row]][offset_of[row]] for row in others])
      pairs.add_block(rows, vectors, others, embedding_index.decode(codes), threshold)
    done += len(rows)
    progress(f'compared {done:,} of {embedding_index.size:,} images', transient=True)
  return pairs


def duplicates_table(embedding_index, pairs):
  """One row per image with a near-duplicate; groups numbered from 0 in row order."""
  rows = np.flatnonzero(pairs.nearest >= 0)
  roots = np.array([pairs.groups.root(row) for row in rows], np.int64)
  _, group = np.unique(roots, return_inverse=True)
  return pa.table({
      'group': pa.array(group, pa.int64()),
      'uri': embedding_index.uris.take(pa.array(rows)),
      'nearest_uri': embedding_index.uris.take(pa.array(pairs.nearest[rows])),
      'cosine': pa.array(pairs.cosine[rows], pa.float32()),
  }, schema=DUPLICATES_SCHEMA)


def find_duplicates(output_dir, threshold=DEFAULT_THRESHOLD):
  """Writes OUTPUT_DIR/duplicates.parquet; returns its table and the images searched."""
  embedding_index = index_for(output_dir)
  table = duplicates_table(embedding_index, find_pairs(embedding_index, threshold))
  buffer = io.BytesIO()
  pq.write_table(table, buffer)
  write_bytes(FileSystems.join(output_dir, DUPLICATES_FILE), buffer.getvalue())
  return table, embedding_index.size


def summary(table, images, threshold, output_dir):
  if not len(table):
    return (f'label-images: no near-duplicates among {images:,} images (cosine above '
            f'{threshold:g}); wrote an empty {FileSystems.join(output_dir, DUPLICATES_FILE)}')
  sizes = np.bincount(table.column('group').to_numpy())
  largest = int(np.argmax(sizes))
  members = table.filter(pa.compute.equal(table.column('group'), largest)).column('uri')
  return '\n'.join([
      f'label-images: {len(table):,} of {images:,} images have a near-duplicate (cosine above '
      f'{threshold:g}), in {len(sizes):,} group' + ('' if len(sizes) == 1 else 's'),
      f'  largest group: {sizes[largest]} images, e.g. ' + ', '.join(
          members.slice(0, 3).to_pylist()),
      f'  output: {FileSystems.join(output_dir, DUPLICATES_FILE)}',
  ])


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='label-images duplicates',
      description='Find groups of near-duplicate images in an output directory.')
  parser.add_argument('output_dir', help='A directory label-images wrote (local or gs://).')
  parser.add_argument(
      '--threshold', type=float, default=DEFAULT_THRESHOLD,
      help='Cosine of the embeddings above which two images are near-duplicates. '
      'Default: %(default)s')
  add_verbose_flag(parser)
  args = results.parse_with_filesystem_options(parser, argv)
  if not -1 <= args.threshold <= 1:
    parser.error('--threshold is a cosine, between -1 and 1')
  return args


def main(argv):
  args = parse_args(argv)
  table, images = find_duplicates(args.output_dir, args.threshold)
  print(summary(table, images, args.threshold, args.output_dir))
  return 0
