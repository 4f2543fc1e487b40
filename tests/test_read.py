"""Reading bytes from local files and gs://."""

import pytest
import requests
from google.api_core import exceptions

from transforms import read
from transforms.failures import ImageError
from transforms.read import RetryPolicy, read_image_bytes


def test_reads_a_local_file(tmp_path):
  path = tmp_path / 'a.jpg'
  path.write_bytes(b'abc')
  assert read_image_bytes(str(path)) == b'abc'


def test_a_name_ending_in_gz_is_not_inflated(tmp_path):
  path = tmp_path / 'photo.jpg.gz'
  path.write_bytes(b'\x1f\x8bnot really gzip')
  assert read_image_bytes(str(path)) == b'\x1f\x8bnot really gzip'


@pytest.mark.parametrize('setup, error', [
    (lambda d: d / 'missing.jpg', 'not_found'),
    (lambda d: (d / 'empty.jpg').write_bytes(b'') and None or d / 'empty.jpg', 'empty'),
    (lambda d: (d / 'big.jpg').write_bytes(b'x' * 11) and None or d / 'big.jpg', 'too_large'),
    (lambda d: d, 'is_a_directory'),
])
def test_unreadable_files_raise_image_error(tmp_path, setup, error):
  with pytest.raises(ImageError) as raised:
    read_image_bytes(str(setup(tmp_path)), max_bytes=10)
  assert raised.value.error == error


def test_reads_from_gcs_and_reports_a_missing_object(gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  bucket.blob('photos/a.jpg').upload_from_string(b'\xff\xd8 bytes')
  assert read_image_bytes(f'{bucket_uri}/photos/a.jpg') == b'\xff\xd8 bytes'
  with pytest.raises(ImageError) as raised:
    read_image_bytes(f'{bucket_uri}/photos/missing.jpg')
  assert raised.value.error == 'not_found'


class FlakyReads:
  """Stands in for one file read: fails with each of `errors` in turn, then returns data."""

  def __init__(self, errors, data=b'image bytes'):
    self.errors = list(errors)
    self.data = data
    self.calls = 0

  def __call__(self, uri, max_bytes, http):
    self.calls += 1
    if self.errors:
      raise self.errors.pop(0)
    return self.data


def no_wait_policy(attempts, waits):
  return RetryPolicy(max_attempts=attempts, base_delay_s=1.0, max_delay_s=30.0,
                     sleep=waits.append)


@pytest.mark.parametrize('error', [
    exceptions.ServiceUnavailable('503'), exceptions.TooManyRequests('429'),
    exceptions.InternalServerError('500'), exceptions.GatewayTimeout('504'),
    ConnectionResetError('reset by peer'), TimeoutError('timed out'),
    requests.exceptions.ConnectionError('dropped'), requests.exceptions.ReadTimeout('slow'),
])
def test_transient_failures_are_retried_with_jittered_backoff(monkeypatch, error):
  flaky = FlakyReads([error, error, error])
  monkeypatch.setattr(read, '_read_once', flaky)
  waits, retries = [], []
  assert read.read_image_bytes('gs://b/a.jpg', retry=no_wait_policy(6, waits),
                               on_retry=lambda: retries.append(1)) == b'image bytes'
  assert flaky.calls == 4 and len(retries) == 3
  assert [0 <= wait < 2 ** attempt for attempt, wait in enumerate(waits)] == [True] * 3


@pytest.mark.parametrize('error, kind', [
    (exceptions.NotFound('404'), 'not_found'),
    (exceptions.Forbidden('403'), 'permission_denied'),
    (exceptions.Unauthorized('401'), 'permission_denied'),
    (PermissionError('denied'), 'permission_denied'),
    (ValueError('Unable to get filesystem from specified path: ftp://x'), 'invalid_uri'),
])
def test_permanent_failures_are_not_retried(monkeypatch, error, kind):
  flaky = FlakyReads([error])
  monkeypatch.setattr(read, '_read_once', flaky)
  waits = []
  with pytest.raises(ImageError) as raised:
    read.read_image_bytes('gs://b/a.jpg', retry=no_wait_policy(6, waits))
  assert raised.value.error == kind
  assert flaky.calls == 1 and waits == []


def test_a_failure_that_stays_transient_becomes_unavailable(monkeypatch):
  flaky = FlakyReads([exceptions.ServiceUnavailable('503')] * 10)
  monkeypatch.setattr(read, '_read_once', flaky)
  with pytest.raises(ImageError) as raised:
    read.read_image_bytes('gs://b/a.jpg', retry=no_wait_policy(4, []))
  assert raised.value.error == 'unavailable'
  assert 'after 4 attempts' in raised.value.message and flaky.calls == 4


@pytest.mark.parametrize('to_uri', [
    lambda path: f'file://{path}', lambda path: f'file://localhost{path}',
    lambda path: 'file://' + path.replace(' ', '%20'),
])
def test_file_uris_read_the_local_file(tmp_path, to_uri):
  path = tmp_path / 'a photo.jpg'
  path.write_bytes(b'abc')
  assert read_image_bytes(to_uri(str(path))) == b'abc'
