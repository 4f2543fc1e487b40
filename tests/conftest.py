"""Shared test fixtures: the real model built from ../shared, the photos, a GCS emulator."""

import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FIXTURES = os.path.normpath(os.path.join(ROOT, '..', 'shared', 'fixtures'))
TFLITE_MODEL = os.path.join(SHARED_FIXTURES, 'mobilenet_v2_1.0_224_quant.tflite')
PHOTOS_DIR = os.path.join(SHARED_FIXTURES, 'images')
LABELS_FILE = os.path.join(SHARED_FIXTURES, 'imagenet_labels.txt')
# The (height, width) the fixture MobileNet V2 takes.
MODEL_SIZE = (224, 224)

# Top-1 of the reference model, from ../shared/fixtures/README.md; face.jpg is ambiguous.
REFERENCE_LABELS = {
    'bird.bmp': 20,
    'cat.bmp': 286,
    'cat_720p.jpg': 286,
    'dragonfly.bmp': 320,
    'grace_hopper.bmp': 653,
    'hot_dog.jpg': 935,
    'parrot.jpg': 89,
    'sunflower.bmp': 986,
}
ALL_PHOTOS = sorted([*REFERENCE_LABELS, 'face.jpg'])

sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures'))


def unavailable(reason):
  """Skips a test whose component is missing; under CI (CI set), fails it instead."""
  if os.environ.get('CI'):
    pytest.fail(f'CI must provide this: {reason}')
  pytest.skip(reason)


def _require_shared():
  if not os.path.exists(TFLITE_MODEL):
    unavailable(f'the shared fixtures are absent: no {TFLITE_MODEL}')


@pytest.fixture(scope='session')
def shared_fixtures():
  _require_shared()
  return SHARED_FIXTURES


@pytest.fixture(scope='session')
def model_dir(tmp_path_factory):
  """DIR with classification/ and feature_vector/ SavedModels built from the real network."""
  _require_shared()
  import build_models  # pylint: disable=import-outside-toplevel
  directory = tmp_path_factory.mktemp('models')
  build_models.build(TFLITE_MODEL, str(directory))
  return directory


@pytest.fixture(scope='session')
def model_spec(model_dir):
  """The fixture pair's ModelSpec, read from the modules as a run reads it."""
  from transforms.describe import describe  # pylint: disable=import-outside-toplevel
  return describe(str(model_dir / 'classification'), str(model_dir / 'feature_vector'))


@pytest.fixture(scope='session')
def image_model(model_dir, model_spec):
  from transforms.model import load_image_model  # pylint: disable=import-outside-toplevel
  return load_image_model(model_spec, str(model_dir / 'classification'),
                          str(model_dir / 'feature_vector'))


def photo_pixels():
  """(names, pixels at the model's size) of the photos with reference labels, decoded as a
  run decodes them."""
  from transforms.decode import decode_image  # pylint: disable=import-outside-toplevel
  names = sorted(REFERENCE_LABELS)
  pixels = []
  for name in names:
    with open(os.path.join(PHOTOS_DIR, name), 'rb') as f:
      pixels.append(decode_image(f.read(), MODEL_SIZE)[0])
  return names, np.stack(pixels)


@pytest.fixture(scope='session')
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


@contextlib.contextmanager
def environment(**settings):
  """Sets environment variables for the block; puts back what was there before."""
  saved = {name: os.environ.get(name) for name in settings}
  os.environ.update(settings)
  try:
    yield
  finally:
    for name, value in saved.items():
      if value is None:
        os.environ.pop(name, None)
      else:
        os.environ[name] = value


@pytest.fixture(scope='session', autouse=True)
def isolated_caches(tmp_path_factory):
  """Every cache the product keeps lives in this session's own directory, for the tests and
  the commands they start: a copy left by an earlier session cannot stand in for a download
  or a conversion."""
  root = tmp_path_factory.mktemp('caches')
  with environment(LABEL_IMAGES_CACHE_DIR=str(root / 'label-images'),
                   TFHUB_CACHE_DIR=str(root / 'tfhub')):
    yield root


# Bucket names differ from one session to the next.
SESSION = secrets.token_hex(3)


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='session')
def gcs_emulator():
  """A storage emulator on loopback; yields its host:port, with STORAGE_EMULATOR_HOST set."""
  port = free_port()
  host = f'http://127.0.0.1:{port}'
  server = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tests', 'fixtures', 'gcs_emulator.py'), 'start',
       '--host', '127.0.0.1', '--port', str(port), '--in-memory', '--quiet'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for_port(port, server, 'the GCS emulator')
  from pipeline import gcs_emulator as anonymous  # pylint: disable=import-outside-toplevel
  try:
    with environment(STORAGE_EMULATOR_HOST=host):
      anonymous.use_anonymous_credentials_for_emulator()
      yield host
  finally:
    server.terminate()
    server.wait(timeout=10)
    anonymous.forget_credentials()


@pytest.fixture
def gcs_bucket(gcs_emulator, request):
  """A fresh bucket in the emulator; yields (google.cloud.storage Bucket, 'gs://name')."""
  from google.cloud import storage  # pylint: disable=import-outside-toplevel
  client = storage.Client(project='test')
  name = f'b{SESSION}-' + request.node.name.lower().replace('_', '-')[:40].strip('-')
  bucket = client.create_bucket(name)
  return bucket, f'gs://{name}'


def _wait_for_port(port, process, name):
  deadline = time.monotonic() + 60
  while True:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      return
    except OSError:
      if process.poll() is not None or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f'{name} did not start')
      time.sleep(0.2)


S3_ENVIRONMENT = {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing',
                  'AWS_DEFAULT_REGION': 'us-east-1'}


@pytest.fixture(scope='session')
def s3_server():
  """moto's S3 server on loopback; yields its endpoint URL, with dummy credentials set."""
  port = free_port()
  server = subprocess.Popen(
      [sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for_port(port, server, 'the moto S3 server')
  try:
    with environment(**S3_ENVIRONMENT):
      yield f'http://127.0.0.1:{port}'
  finally:
    server.terminate()
    server.wait(timeout=10)


# Azurite's well-known development account.
AZURITE_ACCOUNT = 'devstoreaccount1'
AZURITE_KEY = ('Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/'
               'KBHBeksoGMGw==')


def _azurite_command():
  local = os.path.join(ROOT, '.ci', 'azurite', 'node_modules', '.bin', 'azurite-blob')
  return local if os.path.exists(local) else shutil.which('azurite-blob')


@pytest.fixture(scope='session')
def azurite(tmp_path_factory):
  """Azurite's blob service on loopback; yields its connection string."""
  command = _azurite_command()
  if command is None:
    unavailable('no Azurite: npm install --prefix .ci/azurite azurite@3')
  port = free_port()
  server = subprocess.Popen(
      [command, '--blobHost', '127.0.0.1', '--blobPort', str(port), '--skipApiVersionCheck',
       '--loose', '--silent', '--location', str(tmp_path_factory.mktemp('azurite'))],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for_port(port, server, 'Azurite')
  try:
    yield (f'DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};'
           f'AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};')
  finally:
    server.terminate()
    server.wait(timeout=10)


def read_manifest(output_dir):
  with open(os.path.join(output_dir, '_manifest.json'), encoding='utf-8') as f:
    return json.load(f)


def last_run(output_dir):
  """The manifest's entry for the latest run into output_dir."""
  return read_manifest(output_dir)['runs'][-1]
