"""One run over every kind of URI at once (local paths, file://, gs://, https://, s3://,
azfs://), writing to every kind of output location, against real servers on loopback: the
GCS emulator, moto's S3, Azurite and the tests' own HTTPS server."""

import os
import pathlib

import boto3
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from azure.storage.blob import BlobServiceClient

from conftest import AZURITE_ACCOUNT, PHOTOS_DIR, REFERENCE_LABELS
from http_server import ImageServer
from pipeline import results
from test_cli import label_images, model_args
from transforms.files import exists

PHOTOS = sorted(REFERENCE_LABELS)


@pytest.fixture(scope='module')
def stores(gcs_emulator, s3_server, azurite, tmp_path_factory):
  """Every photo in every store; yields (the listing of all their URIs, {uri: label index},
  the environment and the Beam options a run needs, the output location of each kind)."""
  from google.cloud import storage  # pylint: disable=import-outside-toplevel
  gcs = storage.Client(project='test').create_bucket('mixed-stores')
  s3 = boto3.client('s3', endpoint_url=s3_server)
  s3.create_bucket(Bucket='mixed-stores')
  azure = BlobServiceClient.from_connection_string(azurite)
  azure.create_container('mixed-stores')
  work = tmp_path_factory.mktemp('stores')
  https = ImageServer(PHOTOS_DIR)
  certificate = https.use_tls(str(work))
  https.start()
  listed, expected = [], {}
  for name in PHOTOS:
    local = os.path.join(PHOTOS_DIR, name)
    gcs.blob(f'photos/{name}').upload_from_filename(local)
    s3.upload_file(local, 'mixed-stores', f'photos/{name}')
    with open(local, 'rb') as f:
      azure.get_blob_client('mixed-stores', f'photos/{name}').upload_blob(f)
    for uri in (local, pathlib.Path(local).as_uri(), f'gs://mixed-stores/photos/{name}',
                f'{https.base_url}/photos/{name}', f's3://mixed-stores/photos/{name}',
                f'azfs://{AZURITE_ACCOUNT}/mixed-stores/photos/{name}'):
      listed.append(uri)
      # A file:// URI is stored as the plain path it names: one file, one row.
      expected[local if uri.startswith('file://') else uri] = REFERENCE_LABELS[name]
  listing = work / 'uris.txt'
  listing.write_text('\n'.join(listed) + '\n')
  env = dict(os.environ, SSL_CERT_FILE=certificate, AZURE_STORAGE_CONNECTION_STRING=azurite)
  beam_args = ['--s3_endpoint_url', s3_server]
  outputs = {'local': str(work / 'out'), 'gs': 'gs://mixed-stores/out',
             's3': 's3://mixed-stores/out', 'azfs': f'azfs://{AZURITE_ACCOUNT}/mixed-stores/out'}
  yield listing, expected, env, beam_args, outputs
  https.shutdown()


@pytest.mark.parametrize('kind', ['local', 'gs', 's3', 'azfs'])
def test_every_kind_of_uri_in_one_run_to_every_kind_of_output(model_dir, stores, kind,
                                                              monkeypatch):
  listing, expected, env, beam_args, outputs = stores
  result = label_images('--input', listing, '--output', outputs[kind], *beam_args,
                        *model_args(model_dir), env=env)
  assert result.returncode == 0, result.stderr
  assert f'{len(expected)} images labelled, 0 errors' in result.stdout
  assert f'skipped: {len(PHOTOS)} duplicate URIs' in result.stdout

  monkeypatch.setenv('AZURE_STORAGE_CONNECTION_STRING', env['AZURE_STORAGE_CONNECTION_STRING'])
  FileSystems.set_options(PipelineOptions(beam_args))
  labelled = {}
  for batch in results.read_batches(results.label_parts(outputs[kind]), ['uri', 'label_index']):
    labelled.update(zip(batch.column('uri').to_pylist(), batch.column('label_index').to_pylist()))
  assert labelled == expected
  assert FileSystems.exists(FileSystems.join(outputs[kind], '_manifest.json'))
  assert not exists(FileSystems.join(outputs[kind], '_lease.json'))  # the lease, given back
  assert not results.error_parts(outputs[kind])


def test_missing_objects_are_not_found_in_every_store(model_dir, stores, tmp_path):
  _, _, env, beam_args, _ = stores
  missing = ['gs://mixed-stores/photos/nothing.jpg', 's3://mixed-stores/photos/nothing.jpg',
             f'azfs://{AZURITE_ACCOUNT}/mixed-stores/photos/nothing.jpg']
  listing = tmp_path / 'missing.txt'
  listing.write_text('\n'.join(missing) + '\n')
  result = label_images('--input', listing, '--output', tmp_path / 'out', *beam_args,
                        *model_args(model_dir), env=env)
  assert result.returncode == 0, result.stderr
  errors = {}
  for batch in results.read_batches(results.error_parts(str(tmp_path / 'out')),
                                    ['uri', 'error']):
    errors.update(zip(batch.column('uri').to_pylist(), batch.column('error').to_pylist()))
  assert errors == dict.fromkeys(missing, 'not_found')
