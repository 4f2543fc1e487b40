"""label-images duplicates: groups of near-duplicate images, by embedding cosine.

  label-images duplicates OUTPUT_DIR [--threshold 0.90]

Two images whose embeddings have a cosine at or above the threshold are a pair (images of
one embedding: a cosine of 1); images linked through a chain of pairs form one group.
Writes OUTPUT_DIR/_duplicates/duplicates.parquet, one row per image that has a
near-duplicate: its group, its URI, the URI of its nearest neighbour and their cosine. The file's metadata records the
threshold and the parts it was built from (duplicates_record).

The default threshold comes from tests/perf/duplicate_threshold.py: copies of the shared
photos re-encoded at JPEG quality 50-95, halved, or with 5% cropped off had a cosine of at
least 0.93 with their source; different photos at most 0.61. 0.90 keeps every copy with a
margin, and is still far above unrelated pictures.
"""

import argparse
import contextlib
import io
import json
import shlex

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
from transforms.files import DamagedPartError, exists, parquet_file, write_bytes

DEFAULT_THRESHOLD = 0.90
# Cosines are float32 sums of as many products as the embedding is wide (1,280 for MobileNet
# V2): one this far below the threshold is at it.
TOLERANCE = 1e-6
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
  """Union-find over vector ids."""

  def __init__(self, size):
    self.parent = np.arange(size)

  def root(self, vector):
    parent = self.parent
    while parent[vector] != vector:
      parent[vector] = parent[parent[vector]]
      vector = parent[vector]
    return vector

  def join(self, vectors):
    first = self.root(vectors[0])
    for vector in vectors[1:]:
      root = self.root(vector)
      if root != first:
        self.parent[max(root, first)] = min(root, first)
        first = min(root, first)


class _Pairs:
  """What the pairs found so far say: each vector's nearest other vector, and the groups."""

  def __init__(self, size):
    self.cosine = np.full(size, -np.inf, np.float32)
    self.nearest = np.full(size, -1, np.int64)
    self.groups = _Groups(size)

  def _keep_nearest(self, ids, neighbours, cosines):
    """For each distinct id, its best neighbour among these pairs, if better than before."""
    order = np.lexsort((-cosines, ids))
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    ids, neighbours, cosines = ids[first], neighbours[first], cosines[first]
    better = cosines > self.cosine[ids]
    self.cosine[ids[better]] = cosines[better]
    self.nearest[ids[better]] = neighbours[better]

  def add_block(self, ids_a, vectors_a, ids_b, vectors_b, threshold):
    """Compares every vector of a with every vector of b (each with itself excepted)."""
    for start in range(0, len(ids_a), BLOCK_ROWS):
      chunk = slice(start, start + BLOCK_ROWS)
      cosines = vectors_a[chunk] @ vectors_b.T
      hit_a, hit_b = np.nonzero(cosines >= threshold - TOLERANCE)
      pair_a, pair_b = ids_a[chunk][hit_a], ids_b[hit_b]
      others = pair_a != pair_b
      if others.any():
        self._add_pairs(pair_a[others], pair_b[others],
                        np.minimum(cosines[hit_a[others], hit_b[others]], 1))

  def _add_pairs(self, ids_a, ids_b, cosines):
    self._keep_nearest(ids_a, ids_b, cosines)
    self._keep_nearest(ids_b, ids_a, cosines)
    # Vectors linked through a chain of these pairs form a component: joining each
    # component once keeps the work linear in vectors, however many pairs a group makes.
    nodes, ends = np.unique(np.concatenate([ids_a, ids_b]), return_inverse=True)
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(ids_a), np.int8), (ends[:len(ids_a)], ends[len(ids_a):])),
        shape=(len(nodes), len(nodes)))
    _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
    order = np.argsort(component, kind='stable')
    for members in np.split(nodes[order], np.flatnonzero(np.diff(component[order])) + 1):
      self.groups.join(members)


def _second_list_members(embedding_index):
  """{list: vector ids whose second nearest centroid it is}, and where each is stored."""
  size = embedding_index.size
  list_of, offset_of, second_of = (np.empty(size, np.int64) for _ in range(3))
  for number, (members, vectors) in enumerate(embedding_index.lists()):
    if not len(members):  # k-means can leave a list empty
      continue
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
  """_Pairs over every pair of the index's vectors with a cosine at or above threshold.

  The exact index is compared block by block, all with all. An inverted file is compared
  list by list: each list's members with each other, and with the vectors whose second
  nearest centroid is that list's, which finds near-duplicates split by a boundary
  between two lists. Both are matrix products, rather than one query at a time.
  """
  pairs = _Pairs(embedding_index.size)
  if embedding_index.exact:
    (ids, vectors), = embedding_index.lists()
    for start in range(0, len(ids), BLOCK_ROWS):
      block = slice(start, start + BLOCK_ROWS)
      pairs.add_block(ids[block], vectors[block], ids, vectors, threshold)
      progress(f'compared {min(start + BLOCK_ROWS, len(ids)):,} of {len(ids):,} embeddings',
               transient=True)
    return pairs
  order, bounds, list_of, offset_of = _second_list_members(embedding_index)
  codes_of_list = embedding_index.all_list_codes()
  done = 0
  for number, (ids, vectors) in enumerate(embedding_index.lists()):
    if not len(ids):
      continue
    pairs.add_block(ids, vectors, ids, vectors, threshold)
    # A few lists are the second nearest of very many vectors: a slice at a time.
    seconds = order[bounds[number]:bounds[number + 1]]
    for start in range(0, len(seconds), SECONDS_AT_ONCE):
      others = seconds[start:start + SECONDS_AT_ONCE]
      codes = np.stack([codes_of_list[list_of[other]][offset_of[other]] for other in others])
      pairs.add_block(ids, vectors, others, embedding_index.decode(codes), threshold)
    done += len(ids)
    progress(f'compared {done:,} of {embedding_index.size:,} embeddings', transient=True)
  return pairs


def duplicates_table(embedding_index, pairs):
  """One row per image with a near-duplicate, in row order; groups numbered from 0 in the
  order of their first image."""
  _, starts = embedding_index.rows_by_vector
  copies = np.diff(starts)  # images of each vector
  vector_of = embedding_index.vector_of
  indexed = np.flatnonzero(vector_of >= 0)
  rows = indexed[(copies[vector_of[indexed]] > 1) | (pairs.nearest[vector_of[indexed]] >= 0)]
  nearest, cosine = _nearest_images(embedding_index, pairs, rows)
  return pa.table({
      'group': pa.array(_group_numbers(pairs.groups, vector_of[rows]), pa.int64()),
      'uri': embedding_index.uris.take(pa.array(rows)),
      'nearest_uri': embedding_index.uris.take(pa.array(nearest)),
      'cosine': pa.array(cosine, pa.float32()),
  }, schema=DUPLICATES_SCHEMA)


def _nearest_images(embedding_index, pairs, rows):
  """The nearest other image of each row, and their cosine: the first other image of its
  embedding where it shares one (at 1), else the first image of its nearest vector."""
  order, starts = embedding_index.rows_by_vector
  vectors = embedding_index.vector_of[rows]
  copied = np.diff(starts)[vectors] > 1
  nearest, cosine = np.empty(len(rows), np.int64), np.ones(len(rows), np.float32)
  first = starts[vectors[copied]]
  nearest[copied] = np.where(order[first] == rows[copied], order[first + 1], order[first])
  alone = vectors[~copied]
  nearest[~copied] = order[starts[pairs.nearest[alone]]]
  cosine[~copied] = pairs.cosine[alone]
  return nearest, cosine


def _group_numbers(groups, vectors):
  """Numbers from 0 for the groups of `vectors`, in the order of their first vector: a
  group's root is its lowest vector, and vectors are numbered in row order."""
  distinct, inverse = np.unique(vectors, return_inverse=True)
  roots = np.array([groups.root(vector) for vector in distinct], np.int64)
  return np.unique(roots, return_inverse=True)[1][inverse]


def find_duplicates(output_dir, threshold=DEFAULT_THRESHOLD):
  """Writes OUTPUT_DIR/_duplicates/duplicates.parquet; returns its table and the index searched."""
  embedding_index = index_for(output_dir)
  table = duplicates_table(embedding_index, find_pairs(embedding_index, threshold))
  record = {'threshold': json.dumps(threshold), 'parts': json.dumps(embedding_index.parts)}
  buffer = io.BytesIO()
  pq.write_table(table.replace_schema_metadata(record), buffer)
  write_bytes(FileSystems.join(output_dir, DUPLICATES_FILE), buffer.getvalue())
  return table, embedding_index


def duplicates_record(output_dir):
  """(threshold, {part file name: rows}) that OUTPUT_DIR/_duplicates/duplicates.parquet was found with,
  or None where there is none, or it does not say (an earlier version wrote it). The file is
  stale where the parts differ from results.part_rows(results.label_parts(output_dir))."""
  path = FileSystems.join(output_dir, DUPLICATES_FILE)
  if not exists(path):
    return None
  with damaged_duplicates_refreshed(output_dir):
    with parquet_file(path) as parquet:
      record = parquet.schema_arrow.metadata or {}
  if b'threshold' not in record or b'parts' not in record:
    return None
  return json.loads(record[b'threshold']), json.loads(record[b'parts'])


@contextlib.contextmanager
def damaged_duplicates_refreshed(output_dir):
  """Within it, DamagedPartError (of a damaged duplicates file, say) says that this command
  writes the file again."""
  try:
    yield
  except DamagedPartError as e:
    raise DamagedPartError(
        e.path, e.cause, e.in_footer,
        advice=f'`label-images duplicates {shlex.quote(output_dir)}` writes it again') from e


def summary(table, embedding_index, threshold, output_dir):
  images, output = embedding_index.indexed_images, FileSystems.join(output_dir, DUPLICATES_FILE)
  notes = [f'  {note}' for note in embedding_index.notes()]
  if not len(table):
    return '\n'.join([f'label-images: no near-duplicates among {images:,} images (cosine '
                      f'{threshold:g} or above); wrote an empty {output}', *notes])
  sizes = np.bincount(table.column('group').to_numpy())
  largest = int(np.argmax(sizes))
  members = table.filter(pa.compute.equal(table.column('group'), largest)).column('uri')
  return '\n'.join([
      f'label-images: {len(table):,} of {images:,} images have a near-duplicate (cosine '
      f'{threshold:g} or above), in {len(sizes):,} group' + ('' if len(sizes) == 1 else 's'),
      f'  largest group: {sizes[largest]:,} images, e.g. ' + ', '.join(
          members.slice(0, 3).to_pylist()),
      *notes,
      f'  output: {output}',
  ])


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='label-images duplicates',
      description='Find groups of near-duplicate images in an output directory.')
  parser.add_argument('output_dir', help='A directory label-images wrote (local or gs://).')
  parser.add_argument(
      '--threshold', type=float, default=DEFAULT_THRESHOLD,
      help='Cosine of the embeddings at or above which two images are near-duplicates: '
      'above 0, at most 1 (exact copies only). Default: %(default)s')
  add_verbose_flag(parser)
  args = results.parse_with_filesystem_options(parser, argv)
  if not 0 < args.threshold <= 1:
    parser.error('--threshold is a cosine above 0, at most 1')
  return args


def main(argv):
  args = parse_args(argv)
  table, embedding_index = find_duplicates(args.output_dir, args.threshold)
  print(summary(table, embedding_index, args.threshold, args.output_dir))
  return 0
