"""The int8 engine: quantized once by stage-model on the user's images, then run by name."""

import json
import os
import random

import pytest
from PIL import Image

from conftest import PHOTOS_DIR, REFERENCE_LABELS, last_run
from test_cli import LABELS_SCHEMA, label_images, read_output
from transforms.int8 import split_sample


@pytest.fixture(scope='module')
def user_images(tmp_path_factory, shared_fixtures):
  """A list of 90 crops of the shared photos: a user's collection to calibrate on."""
  directory = tmp_path_factory.mktemp('user-images')
  rng = random.Random(1)
  photos = [Image.open(os.path.join(PHOTOS_DIR, name)).convert('RGB')
            for name in sorted(REFERENCE_LABELS)]
  paths = []
  for i in range(90):
    photo = rng.choice(photos)
    width, height = int(photo.width * 0.8), int(photo.height * 0.8)
    left, top = rng.randint(0, photo.width - width), rng.randint(0, photo.height - height)
    path = directory / f'{i:03d}.jpg'
    photo.crop((left, top, left + width, top + height)).save(path, quality=90)
    paths.append(str(path))
  listing = directory / 'list.txt'
  listing.write_text('\n'.join(paths) + '\n')
  return listing


def test_the_sample_depends_on_the_set_of_images_not_their_order():
  uris = [f'gs://b/{i}.jpg' for i in range(100)]
  calibration, holdout = split_sample(uris, 10, 20)
  assert (calibration, holdout) == split_sample(list(reversed(uris)) + uris[:5], 10, 20)
  assert len(calibration) == 10 and len(holdout) == 20 and not set(calibration) & set(holdout)


def test_staged_int8_model_labels_the_photos_and_the_manifest_says_how_well(
    model_dir, user_images, gcs_bucket, tmp_path):
  bucket, bucket_uri = gcs_bucket
  staged = label_images('stage-model', '--source', model_dir, '--dest', f'{bucket_uri}/models',
                        '--int8_calibration', user_images, '--int8_images', 60,
                        '--int8_holdout', 30)
  assert staged.returncode == 0, staged.stderr[-3000:]
  figures = json.loads(bucket.blob('models/int8.json').download_as_bytes())
  assert figures['calibration_images'] == 60 and figures['holdout']['images'] == 30
  assert figures['holdout']['labels_agree'] >= 0.8
  assert figures['holdout']['embedding_cosine_median'] >= 0.95

  output = tmp_path / 'out'
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                        '--engine', 'litert_int8',
                        '--model_handle', f'{bucket_uri}/models/classification',
                        '--feature_handle', f'{bucket_uri}/models/feature_vector')
  assert result.returncode == 0, result.stderr[-3000:]
  labels = {os.path.basename(row['uri']): row['label_index']
            for row in read_output(output, 'labels', LABELS_SCHEMA)}
  agree = sum(labels[name] == index for name, index in REFERENCE_LABELS.items())
  assert agree >= len(REFERENCE_LABELS) - 1, labels
  manifest = last_run(output)
  assert manifest['engine'] == 'litert_int8'
  assert manifest['int8_model']['holdout'] == figures['holdout']
  assert len(manifest['int8_model']['sha256']) == 64


def test_litert_int8_without_a_staged_model_says_how_to_make_one(model_dir, tmp_path):
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        '--engine', 'litert_int8',
                        '--model_handle', model_dir / 'classification',
                        '--feature_handle', model_dir / 'feature_vector')
  assert result.returncode == 2
  assert f'needs {model_dir / "int8.tflite"}' in result.stderr
  assert 'label-images stage-model' in result.stderr and '--int8_calibration' in result.stderr
