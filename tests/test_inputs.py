"""Expanding --input into the distinct URIs to label, on Beam's DirectRunner."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.inputs import ListImageUris, input_format
from transforms.schema import ERRORS_SCHEMA
from transforms.select import REDUNDANT, SelectUrisToLabel
from transforms.write import rows_to_table, write_table


def assert_lists(input_spec, expected, resume_from=None, redundant=()):
  """The distinct URIs to label from input_spec are `expected`; the copies of rows to remove
  from the output's parts are `redundant` (part, URI) pairs."""
  with BeamTestPipeline(runner='FnApiRunner') as pipeline:
    selected = pipeline | ListImageUris(input_spec) | SelectUrisToLabel(resume_from)
    assert_that(selected.uris, equal_to(expected))
    assert_that(selected[REDUNDANT], equal_to(redundant), label='Redundant')


def write_errors_part(output, name, uris):
  write_table(str(output), name, rows_to_table(
      [{'uri': uri, 'stage': 'read', 'error': 'not_found', 'message': 'gone'} for uri in uris],
      ERRORS_SCHEMA))


@pytest.mark.parametrize('spec, kind', [
    ('gs://b/photos/**.jpg', 'glob'), ('list.TXT', 'text'), ('a/b.csv', 'csv'),
    ('gs://b/uris.parquet', 'parquet'), ('photos/*', 'glob'),
])
def test_input_format(spec, kind):
  assert input_format(spec) == kind


def test_glob(tmp_path):
  for name in ('a.jpg', 'b.jpg', 'c.png'):
    (tmp_path / name).write_bytes(b'x')
  assert_lists(str(tmp_path / '*.jpg'), [str(tmp_path / 'a.jpg'), str(tmp_path / 'b.jpg')])


def test_text_list_drops_blanks_and_duplicates(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('a.jpg\n\n  b.jpg \r\na.jpg\n   \ngs://x/c.jpg')
  assert_lists(str(listing), ['a.jpg', 'b.jpg', 'gs://x/c.jpg'])


def test_csv_uri_column(tmp_path):
  listing = tmp_path / 'list.csv'
  listing.write_text('id,uri\n1,a.jpg\n2,"b, with comma.jpg"\n3,a.jpg\n4,\n')
  assert_lists(str(listing), ['a.jpg', 'b, with comma.jpg'])


def test_parquet_uri_column(tmp_path):
  listing = tmp_path / 'list.parquet'
  pq.write_table(pa.table({'uri': ['a.jpg', 'b.jpg', 'a.jpg'], 'other': [1, 2, 3]}), listing)
  assert_lists(str(listing), ['a.jpg', 'b.jpg'])


@pytest.mark.parametrize('name, write', [
    ('list.csv', lambda path: path.write_text('path\na.jpg\n')),
    ('list.parquet', lambda path: pq.write_table(pa.table({'path': ['a.jpg']}), path)),
])
def test_a_list_without_uri_column_fails_clearly(tmp_path, name, write):
  write(tmp_path / name)
  with pytest.raises(Exception, match="has no 'uri' column"):
    assert_lists(str(tmp_path / name), [])


@pytest.mark.parametrize('spec', ['missing.txt', 'missing/*.jpg'])
def test_a_missing_list_or_empty_glob_fails_the_pipeline(tmp_path, spec):
  with pytest.raises(Exception, match='missing'):
    assert_lists(str(tmp_path / spec), [])


def test_a_list_on_gcs(gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  bucket.blob('lists/photos.txt').upload_from_string('gs://x/a.jpg\ngs://x/b.jpg\n')
  assert_lists(f'{bucket_uri}/lists/photos.txt', ['gs://x/a.jpg', 'gs://x/b.jpg'])


def test_resume_leaves_out_uris_the_output_holds(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('a.jpg\nb.jpg\nc.jpg\nd.jpg\nb.jpg\n')
  output = tmp_path / 'out'
  write_errors_part(output, '_errors-1-a-00000.parquet', ['b.jpg'])
  write_errors_part(output, '_errors-1-b-00000.parquet', ['x.jpg', 'd.jpg'])
  assert_lists(str(listing), ['a.jpg', 'c.jpg'], resume_from=str(output))


def test_resume_finds_rows_held_by_more_than_one_part(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('a.jpg\nb.jpg\nc.jpg\n')
  output = tmp_path / 'out'
  write_errors_part(output, '_errors-1-a-00000.parquet', ['a.jpg', 'b.jpg', 'x.jpg'])
  write_errors_part(output, '_errors-1-b-00000.parquet', ['b.jpg', 'x.jpg'])
  write_errors_part(output, '_errors-1-c-00000.parquet', ['x.jpg'])
  assert_lists(str(listing), ['c.jpg'], resume_from=str(output), redundant=[
      ('_errors-1-b-00000.parquet', 'b.jpg'), ('_errors-1-b-00000.parquet', 'x.jpg'),
      ('_errors-1-c-00000.parquet', 'x.jpg')])


def test_resume_into_an_empty_directory_lists_everything(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('a.jpg\nb.jpg\n')
  assert_lists(str(listing), ['a.jpg', 'b.jpg'], resume_from=str(tmp_path / 'nothing'))
