"""Where the near-duplicate threshold should be: embedding cosines of real photos against
their own near copies, and against different photos.

  python tests/perf/duplicate_threshold.py

Labels the shared photos and copies of each (tests/fixtures/near_copies.py: JPEG quality
50/75/95, halved, 5% cropped) through the command line, with the model built from
../shared/fixtures, then prints the lowest cosine between a copy and its source, the
highest between different photos (cat.bmp and cat_720p.jpg are one photo at two sizes),
and the threshold halfway between them.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests', 'fixtures')]
SHARED = os.path.join(ROOT, '..', 'shared', 'fixtures')

import build_models  # pylint: disable=wrong-import-position
from near_copies import make_near_copies  # pylint: disable=wrong-import-position
from pipeline.duplicates import DEFAULT_THRESHOLD  # pylint: disable=wrong-import-position
from pipeline.embedding_index import unit_rows  # pylint: disable=wrong-import-position

SAME_PHOTO = {'cat_720p': 'cat'}


def photo_of(path):
  stem = os.path.splitext(os.path.basename(path))[0].split('-')[0]
  return SAME_PHOTO.get(stem, stem)


def main():
  work = tempfile.mkdtemp(prefix='duplicate-threshold-')
  try:
    images = os.path.join(work, 'images')
    os.makedirs(images)
    sources = [shutil.copy(path, images) for path in sorted(glob.glob(
        os.path.join(SHARED, 'images', '*')))]
    copies = make_near_copies(sources, images)
    models = os.path.join(work, 'models')
    build_models.build(os.path.join(SHARED, 'mobilenet_v2_1.0_224_quant.tflite'), models)
    output = os.path.join(work, 'out')
    subprocess.run([sys.executable, '-m', 'pipeline.run', '--input', os.path.join(images, '*'),
                    '--output', output, '--model_handle', os.path.join(models, 'classification'),
                    '--feature_handle', os.path.join(models, 'feature_vector')],
                   cwd=ROOT, check=True, capture_output=True)
    table = pq.ParquetDataset(glob.glob(os.path.join(output, 'labels-*.parquet'))).read(
        columns=['uri', 'embedding'])
    uris = table.column('uri').to_pylist()
    row = {uri: i for i, uri in enumerate(uris)}
    vectors = unit_rows(np.stack(table.column('embedding').to_numpy(zero_copy_only=False)))[0]
    cosines = vectors @ vectors.T
    copy_to_source = {os.path.basename(copy): float(cosines[row[copy], row[source]])
                      for source, copy_paths in copies.items() for copy in copy_paths}
    different = max((float(cosines[i, j]), os.path.basename(uris[i]), os.path.basename(uris[j]))
                    for i in range(len(uris)) for j in range(i)
                    if photo_of(uris[i]) != photo_of(uris[j]))
    lowest_copy = min(copy_to_source, key=copy_to_source.get)
    print(json.dumps({
        'copies': len(copy_to_source),
        'lowest_copy_to_source': [lowest_copy, round(copy_to_source[lowest_copy], 4)],
        'highest_between_different_photos': [different[1], different[2], round(different[0], 4)],
        'threshold': DEFAULT_THRESHOLD,
        'margin_below_copies': round(copy_to_source[lowest_copy] - DEFAULT_THRESHOLD, 4),
        'margin_above_different_photos': round(DEFAULT_THRESHOLD - different[0], 4),
    }, indent=2))
  finally:
    shutil.rmtree(work)


if __name__ == '__main__':
  main()
