"""Paths a user takes that other tests do not: the tf engine, reruns on gs://, csv and
parquet lists in a bucket, reading the output as README shows, and the rarer error kinds."""

import glob
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from conftest import ALL_PHOTOS, PHOTOS_DIR, REFERENCE_LABELS, ROOT, last_run, unavailable
from test_cli import check_labels, label_images, model_args
from test_exactly_once import label_images_here
from transforms import inference
from transforms.schema import ERRORS, part_glob


def test_the_tf_engine_through_the_cli(model_dir, tmp_path):
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        '--engine', 'tf', *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  labels = pq.ParquetDataset(glob.glob(str(tmp_path / 'out' / 'labels-*.parquet'))).read()
  check_labels(labels.to_pylist(), lambda uri: uri)
  assert last_run(tmp_path / 'out')['engine'] == 'tf'


def test_the_output_reads_back_the_way_readme_shows(model_dir, tmp_path):
  output = tmp_path / 'out'
  assert label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                      *model_args(model_dir)).returncode == 0
  labels = pq.ParquetDataset(glob.glob(str(output / 'labels-*.parquet'))).read().to_pandas()
  assert isinstance(labels, pd.DataFrame) and len(labels) == len(ALL_PHOTOS)
  by_name = labels.set_index(labels['uri'].map(os.path.basename))
  for name, index in REFERENCE_LABELS.items():
    assert by_name.loc[name, 'label_index'] == index
  assert np.stack(labels['embedding'].to_numpy()).shape == (len(ALL_PHOTOS), 1280)


def test_reruns_on_gcs_are_refused_resumed_or_overwritten(model_dir, gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  for name in ('parrot.jpg', 'bird.bmp'):
    bucket.blob(f'photos/{name}').upload_from_filename(os.path.join(PHOTOS_DIR, name))
  args = ['--input', f'{bucket_uri}/photos/*', '--output', f'{bucket_uri}/out',
          *model_args(model_dir)]
  assert label_images(*args).returncode == 0
  first_parts = {blob.name for blob in bucket.list_blobs(prefix='out/labels-')}

  refused = label_images(*args)
  assert refused.returncode == 2 and '--resume' in refused.stderr

  bucket.blob('photos/hot_dog.jpg').upload_from_filename(os.path.join(PHOTOS_DIR, 'hot_dog.jpg'))
  resumed = label_images(*args, '--resume')
  assert resumed.returncode == 0, resumed.stderr
  assert '1 image labelled' in resumed.stdout and '2 already in the output' in resumed.stdout
  assert first_parts < {blob.name for blob in bucket.list_blobs(prefix='out/labels-')}

  overwritten = label_images(*args, '--overwrite')
  assert overwritten.returncode == 0, overwritten.stderr
  assert '3 images labelled' in overwritten.stdout
  parts = {blob.name for blob in bucket.list_blobs(prefix='out/labels-')}
  assert not parts & first_parts


def test_csv_and_parquet_lists_in_a_bucket(model_dir, gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  names = ['parrot.jpg', 'sunflower.bmp']
  for name in names:
    bucket.blob(f'photos/{name}').upload_from_filename(os.path.join(PHOTOS_DIR, name))
  uris = [f'{bucket_uri}/photos/{name}' for name in names]
  bucket.blob('lists/photos.csv').upload_from_string(
      'id,uri\n' + ''.join(f'{i},{uri}\n' for i, uri in enumerate(uris)))
  buffer = io.BytesIO()
  pq.write_table(pa.table({'uri': uris, 'id': [0, 1]}), buffer)
  bucket.blob('lists/photos.parquet').upload_from_string(buffer.getvalue())
  for listing in ('photos.csv', 'photos.parquet'):
    output = f'{bucket_uri}/out-{listing.replace(".", "-")}'
    result = label_images('--input', f'{bucket_uri}/lists/{listing}', '--output', output,
                          *model_args(model_dir))
    assert result.returncode == 0, result.stderr
    assert '2 images labelled, 0 errors' in result.stdout, listing


def test_an_image_the_model_fails_on_becomes_an_inference_failed_row(
    model_dir, tmp_path, monkeypatch):
  """The engine is made to fail on black images only: its batch is retried image by image,
  and only the black one becomes an error row."""
  load = inference.load_engine

  class FailsOnBlack:

    def __init__(self, engine):
      self.engine = engine
      self.name = engine.name

    def predict(self, pixels):
      if (pixels.reshape(len(pixels), -1).max(axis=1) == 0).any():
        raise ValueError('injected: the engine fails on a black image')
      return self.engine.predict(pixels)

  monkeypatch.setattr(inference, 'load_engine', lambda *args: FailsOnBlack(load(*args)))
  images = tmp_path / 'images'
  images.mkdir()
  Image.new('RGB', (300, 200)).save(images / 'black.png')
  for name in ('parrot.jpg', 'bird.bmp'):
    os.symlink(os.path.join(PHOTOS_DIR, name), images / name)
  output = tmp_path / 'out'
  assert label_images_here('--input', images / '*', '--output', output,
                           *model_args(model_dir)) == 0
  errors = pq.ParquetDataset(glob.glob(str(output / part_glob(ERRORS)))).read().to_pylist()
  assert [(os.path.basename(row['uri']), row['stage'], row['error']) for row in errors] == [
      ('black.png', 'inference', 'inference_failed')]
  assert 'injected' in errors[0]['message']
  labels = pq.ParquetDataset(glob.glob(str(output / 'labels-*.parquet'))).read()
  assert sorted(map(os.path.basename, labels['uri'].to_pylist())) == ['bird.bmp', 'parrot.jpg']


def test_broken_pixel_data_and_unreadable_paths_have_their_kinds(model_dir, tmp_path):
  png = io.BytesIO()
  Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(
      png, 'PNG')
  corrupt = bytearray(png.getvalue())
  start = corrupt.find(b'IDAT') + 20
  corrupt[start:start + 20] = bytes(20)  # the compressed pixels, not the file's structure
  (tmp_path / 'corrupt.png').write_bytes(bytes(corrupt))
  too_long = str(tmp_path / ('x' * 300 + '.jpg'))  # longer than a file name may be
  listing = tmp_path / 'list.txt'
  listing.write_text(f'{tmp_path / "corrupt.png"}\n{too_long}\n')
  result = label_images('--input', listing, '--output', tmp_path / 'out', *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  errors = pq.ParquetDataset(glob.glob(str(tmp_path / 'out' / part_glob(ERRORS)))).read()
  assert {(os.path.basename(row['uri']), row['stage'], row['error'])
          for row in errors.to_pylist()} == {
              ('corrupt.png', 'decode', 'decode_failed'),
              (os.path.basename(too_long), 'read', 'read_failed')}


def test_a_file_the_process_may_not_read_is_permission_denied(tmp_path):
  """Root reads every file: as root, the read runs without the capabilities that allow it."""
  path = tmp_path / 'locked.jpg'
  path.write_bytes(b'\xff\xd8 not readable anyway')
  path.chmod(0)
  code = ('from transforms.failures import ImageError\n'
          'from transforms.read import read_image_bytes\n'
          f'try:\n  read_image_bytes({str(path)!r})\nexcept ImageError as e:\n  print(e.error)\n')
  command = [sys.executable, '-c', code]
  if os.geteuid() == 0:
    if not shutil.which('setpriv'):
      unavailable('as root, needs setpriv(1) to drop the capability to read any file')
    command = ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', *command]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.stdout.strip() == 'permission_denied', result.stderr
