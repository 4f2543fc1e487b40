"""`label-images duplicates` on outputs made mostly of exact copies: time and peak memory of
the whole process, against one on a small output (the program's own footprint).
Not part of CI (a minute or two at the defaults).

  python tests/perf/duplicates_of_copies.py [--case NAME ...] [--images N --copies C]

Cases:
  small      1,000 different images: the baseline
  identical  20,000 images of one embedding among 22,000
  twenty     50,001 images: 20 embeddings 500 times each (one-hot: far from the others, so
             k-means leaves lists empty), 40,001 different ones; an inverted-file index
  custom     --images N, of which the first --copies C share one embedding
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests', 'fixtures')]

from measure import run_measured  # pylint: disable=wrong-import-position
from pipeline.output_dir import DUPLICATES_FILE  # pylint: disable=wrong-import-position
from synthetic_embeddings import (  # pylint: disable=wrong-import-position
    ROWS_PER_PART, image_vectors, write_vectors)


def _write_copies_then_images(output_dir, images, copies):
  """`copies` images of one embedding, then different ones, a part at a time."""
  one = image_vectors(1, seed=1)
  for part, start in enumerate(range(0, images, ROWS_PER_PART)):
    stop = min(images, start + ROWS_PER_PART)
    shared = max(0, min(stop, copies) - start)
    vectors = np.concatenate([np.repeat(one, shared, axis=0),
                              image_vectors(stop - start - shared, seed=2 + part)])
    write_vectors(output_dir, vectors, [f'gs://photos/{row:08d}.jpg'
                                        for row in range(start, stop)], first_part=part)


def _write_twenty(output_dir):
  axes = np.eye(image_vectors(1).shape[1], dtype=np.float32)[:20]
  write_vectors(output_dir, np.concatenate([np.repeat(axes, 500, axis=0),
                                            image_vectors(40_001, seed=7)]))


CASES = {
    'small': lambda output_dir, _: _write_copies_then_images(output_dir, 1_000, 0),
    'identical': lambda output_dir, _: _write_copies_then_images(output_dir, 22_000, 20_000),
    'twenty': lambda output_dir, _: _write_twenty(output_dir),
    'custom': lambda output_dir, args: _write_copies_then_images(output_dir, args.images,
                                                                 args.copies),
}


def measure(case, args):
  output_dir = tempfile.mkdtemp(prefix=f'duplicates-{case}-')
  try:
    CASES[case](output_dir, args)
    run = run_measured([sys.executable, '-m', 'pipeline.run', 'duplicates', output_dir],
                       cwd=ROOT)
    if run.exit_code:
      raise SystemExit(run.output)
    groups = pq.read_table(os.path.join(output_dir, DUPLICATES_FILE)).column('group')
    return {'case': case, 'seconds': round(run.seconds, 1),
            'peak_rss_mb': round(run.peak_rss_mb), 'cpu_cores': round(run.cpu_cores, 2),
            'images_with_a_duplicate': len(groups),
            'largest_group': int(np.bincount(groups.to_numpy()).max()) if len(groups) else 0,
            'summary': run.output.strip().splitlines()}
  finally:
    shutil.rmtree(output_dir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
  parser.add_argument('--case', action='append', choices=sorted(CASES))
  parser.add_argument('--images', type=int, default=1_000_000)
  parser.add_argument('--copies', type=int, default=100_000)
  args = parser.parse_args()
  for case in args.case or ['small', 'identical', 'twenty']:
    print(json.dumps(measure(case, args), indent=2), flush=True)


if __name__ == '__main__':
  main()
