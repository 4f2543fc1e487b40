"""`label-images duplicates` on a million synthetic embeddings with planted near-duplicates:
recall of the planted pairs, time and peak memory. Not part of CI (minutes, 5 GB of disk).

  python tests/perf/duplicates_at_scale.py [--images 1000000] [--planted 5000] [--keep DIR]

The embeddings imitate MobileNet V2's: non-negative (after ReLU6 and pooling), clustered by
class (1,000 prototypes), with unrelated images at cosine ~0.4 (at most ~0.7) as measured on
real photos. A planted copy is its source plus noise, at cosine 0.92-0.99 with it: the range
real re-encoded, halved and cropped copies measured (tests/perf/duplicate_threshold.py).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests', 'fixtures')]

from measure import run_measured  # pylint: disable=wrong-import-position
from transforms.model import EMBEDDING_SIZE  # pylint: disable=wrong-import-position
from transforms.schema import LABELS_SCHEMA  # pylint: disable=wrong-import-position

ROWS_PER_PART = 20_000
CLASSES = 1000


def _unit(vectors):
  return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _images(rng, prototypes, count):
  classes = rng.integers(0, CLASSES, count)
  noise = rng.normal(0, 0.7, (count, EMBEDDING_SIZE)).astype(np.float32)
  return _unit(np.maximum(prototypes[classes] * 0.8 + noise, 0)), classes


def _copies(rng, sources):
  """Each source plus noise of a random strength: cosine 0.92-0.99 with it."""
  strength = rng.uniform(0.006, 0.016, (len(sources), 1)).astype(np.float32)
  noise = rng.normal(0, 1, sources.shape).astype(np.float32) * strength
  return _unit(np.maximum(sources + noise, 0))


def _uri(row):
  return f'gs://photos/{row:08d}.jpg'


def _part(path, uris, vectors, classes):
  count = len(uris)
  embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), EMBEDDING_SIZE)
  labels = [f'class {c}' for c in classes]
  table = pa.table({
      'uri': uris, 'label': labels, 'label_index': pa.array(classes, pa.int32()),
      'score': pa.array(np.full(count, 0.9), pa.float32()),
      'top_k_labels': [[label] for label in labels],
      'top_k_scores': pa.array([[0.9]] * count, pa.list_(pa.float32())),
      'embedding': embedding,
      'width': pa.array(np.full(count, 640), pa.int32()),
      'height': pa.array(np.full(count, 480), pa.int32()),
      'model': ['synthetic'] * count,
  }, schema=LABELS_SCHEMA)
  pq.write_table(table, path)


def write_output(output_dir, images, planted, seed=0):
  """Parts of `images` rows, the last `planted` of them copies of earlier ones; returns
  {copy uri: source uri}."""
  rng = np.random.default_rng(seed)
  prototypes = np.maximum(rng.normal(0, 1, (CLASSES, EMBEDDING_SIZE)), 0).astype(np.float32)
  originals = images - planted
  # Sources are drawn from the first part, kept in memory until the copies are written.
  sources = np.sort(rng.choice(min(originals, ROWS_PER_PART), planted, replace=False))
  source_vectors, source_classes = None, None
  planted_pairs = {}
  for part, start in enumerate(range(0, images, ROWS_PER_PART)):
    stop = min(images, start + ROWS_PER_PART)
    vectors, classes = _images(rng, prototypes, max(0, min(stop, originals) - start))
    if start == 0:
      source_vectors, source_classes = vectors[sources], classes[sources]
    copies = slice(max(start, originals) - originals, stop - originals)
    if copies.start < copies.stop:
      vectors = np.concatenate([vectors, _copies(rng, source_vectors[copies])])
      classes = np.concatenate([classes, source_classes[copies]])
      for copy, source in zip(range(copies.start, copies.stop), sources[copies]):
        planted_pairs[_uri(originals + copy)] = _uri(source)
    _part(os.path.join(output_dir, f'labels-synthetic-0-{part:05d}.parquet'),
          [_uri(i) for i in range(start, stop)], vectors, classes)
  return planted_pairs


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
  parser.add_argument('--images', type=int, default=1_000_000)
  parser.add_argument('--planted', type=int, default=5_000)
  parser.add_argument('--keep', help='write the output here and keep it')
  args = parser.parse_args()
  output_dir = args.keep or tempfile.mkdtemp(prefix='duplicates-at-scale-')
  os.makedirs(output_dir, exist_ok=True)
  try:
    planted_pairs = write_output(output_dir, args.images, args.planted)
    run = run_measured([sys.executable, '-m', 'pipeline.run', 'duplicates', output_dir],
                       cwd=ROOT)
    if run.exit_code:
      raise SystemExit(run.output)
    found = pq.read_table(os.path.join(output_dir, 'duplicates.parquet')).to_pylist()
    group_of = {row['uri']: row['group'] for row in found}
    recalled = sum(1 for copy, source in planted_pairs.items()
                   if copy in group_of and group_of[copy] == group_of.get(source))
    planted_uris = set(planted_pairs) | set(planted_pairs.values())
    print(run.output.strip())
    print(json.dumps({
        'images': args.images,
        'planted_pairs': len(planted_pairs),
        'recall': round(recalled / len(planted_pairs), 4),
        'images_grouped_not_planted': sum(1 for uri in group_of if uri not in planted_uris),
        'seconds': round(run.seconds, 1),
        'peak_rss_mb': round(run.peak_rss_mb),
        'index_mb': round(os.path.getsize(
            os.path.join(output_dir, 'index', 'embeddings.faiss')) / 2**20),
    }, indent=2))
  finally:
    if not args.keep:
      shutil.rmtree(output_dir)


if __name__ == '__main__':
  main()
