"""label-images duplicates: groups of near-duplicate images, by embedding cosine.

  label-images duplicates OUTPUT_DIR [--threshold 0.90] [--nprobe 4]

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
from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.console import add_verbose_flag, status
from pipeline.embedding_index import index_for
from transforms.files import write_bytes

DEFAULT_THRESHOLD = 0.90
# Near-duplicates fall in the same inverted list, or the next nearest, almost always.
DEFAULT_NPROBE = 4
DUPLICATES_FILE = 'duplicates.parquet'
DUPLICATES_SCHEMA = pa.schema([
    pa.field('group', pa.int64(), nullable=False),
    pa.field('uri', pa.string(), nullable=False),
    pa.field('nearest_uri', pa.string(), nullable=False),
    pa.field('cosine', pa.float32(), nullable=False),
])


class _Groups:
  """Union-find over row ids, created only for rows that have a pair."""

  def __init__(self):
    self.parent = {}

  def root(self, row):
    path = []
    while self.parent.setdefault(row, row) != row:
      path.append(row)
      row = self.parent[row]
    for member in path:
      self.parent[member] = row
    return row

  def join(self, a, b):
    a, b = self.root(a), self.root(b)
    if a != b:
      self.parent[max(a, b)] = min(a, b)


def nearest_pairs(embedding_index, output_dir, threshold, progress=status):
  """({row: (nearest row, cosine)}, _Groups) over every row with a neighbour above
  threshold, streaming the queries from the parts."""
  nearest, groups, first = {}, _Groups(), 0
  for batch in results.read_batches(results.label_parts(output_dir), ['embedding']):
    limits, cosines, rows = embedding_index.range_search(results.unit_embeddings(batch),
                                                         threshold)
    for query in np.flatnonzero(np.diff(limits)):
      row = first + int(query)
      span = slice(limits[query], limits[query + 1])
      others = rows[span] != row
      if not others.any():
        continue
      neighbour_cosines, neighbours = cosines[span][others], rows[span][others]
      best = int(np.argmax(neighbour_cosines))
      nearest[row] = (int(neighbours[best]), float(neighbour_cosines[best]))
      for neighbour in neighbours:
        groups.join(row, int(neighbour))
    first += len(batch)
    progress(f'searched {first:,} of {embedding_index.size:,} images', transient=True)
  return nearest, groups


def duplicates_table(embedding_index, nearest, groups):
  """One row per image with a pair; groups numbered from 0 by their first row id."""
  rows = sorted(nearest)
  roots = [groups.root(row) for row in rows]
  numbers = {root: number for number, root in enumerate(sorted(set(roots)))}
  return pa.table({
      'group': pa.array([numbers[root] for root in roots], pa.int64()),
      'uri': embedding_index.uris.take(pa.array(rows, pa.int64())),
      'nearest_uri': embedding_index.uris.take(
          pa.array([nearest[row][0] for row in rows], pa.int64())),
      'cosine': pa.array([nearest[row][1] for row in rows], pa.float32()),
  }, schema=DUPLICATES_SCHEMA)


def find_duplicates(output_dir, threshold=DEFAULT_THRESHOLD, nprobe=DEFAULT_NPROBE):
  """Writes OUTPUT_DIR/duplicates.parquet; returns its table."""
  embedding_index = index_for(output_dir)
  embedding_index.set_nprobe(nprobe)
  nearest, groups = nearest_pairs(embedding_index, output_dir, threshold)
  table = duplicates_table(embedding_index, nearest, groups)
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
      f'{threshold:g}), in {len(sizes):,} groups',
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
  parser.add_argument(
      '--nprobe', type=int, default=DEFAULT_NPROBE,
      help='Above 50,000 images: how many inverted lists each image is compared within '
      '(more finds more pairs, slower). Default: %(default)s')
  add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if not -1 <= args.threshold <= 1:
    parser.error('--threshold is a cosine, between -1 and 1')
  return args


def main(argv):
  args = parse_args(argv)
  table, images = find_duplicates(args.output_dir, args.threshold, args.nprobe)
  print(summary(table, images, args.threshold, args.output_dir))
  return 0
