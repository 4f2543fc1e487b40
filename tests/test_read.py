"""Reading bytes from local files and gs://."""

import pytest

from transforms.failures import ImageError
from transforms.read import read_image_bytes


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
