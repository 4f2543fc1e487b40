"""Expanding --input into the distinct URIs to label, on Beam's DirectRunner."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.inputs import ListImageUris, check_list, input_format, list_input_uris
from transforms.schema import ERRORS, ERRORS_SCHEMA, parts_dir
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
  write_table(parts_dir(str(output), ERRORS), name, rows_to_table(
      [{'uri': uri, 'stage': 'read', 'error': 'not_found', 'message': 'gone'} for uri in uris],
      ERRORS_SCHEMA))


@pytest.mark.parametrize('spec, kind', [
    ('gs://b/photos/**.jpg', 'glob'), ('list.TXT', 'text'), ('a/b.csv', 'csv'),
    ('a/b.tsv', 'tsv'), ('gs://b/uris.parquet', 'parquet'), ('photos/*', 'glob'),
    ('gs://b/photos/', 'folder'), ('s3://b/', 'folder'), ('.', 'folder'),
])
def test_input_format(spec, kind):
  assert input_format(spec) == kind


def test_glob(tmp_path):
  for name in ('a.jpg', 'b.jpg', 'c.png'):
    (tmp_path / name).write_bytes(b'x')
  assert_lists(str(tmp_path / '*.jpg'), [str(tmp_path / 'a.jpg'), str(tmp_path / 'b.jpg')])


def test_text_list_drops_blanks_and_duplicates(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('/a.jpg\n\n  /b.jpg \r\n/a.jpg\n   \ngs://x/c.jpg')
  assert_lists(str(listing), ['/a.jpg', '/b.jpg', 'gs://x/c.jpg'])


def test_local_paths_are_listed_absolute_and_normalised_other_uris_as_given(
    tmp_path, monkeypatch):
  """Relative entries are taken from the current directory, not the list's; file:// URIs
  become plain paths; symlinks are kept; remote URIs are not touched, '..' included."""
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'lists').mkdir()
  os.symlink('/elsewhere', tmp_path / 'link')
  listing = tmp_path / 'lists' / 'list.txt'
  listing.write_text('\n'.join([
      'photos/a.jpg', './photos//a.jpg', f'{tmp_path}/photos/x/../a.jpg',
      f'file://{tmp_path}/photos/a.jpg', f'file://localhost{tmp_path}/photos/b%20c.jpg',
      'link/d.jpg', '//root.jpg', 'gs://bucket/x/../e.jpg', 'https://host/./f.jpg?v=1',
      'file://otherhost/g.jpg']))
  expected = [f'{tmp_path}/photos/a.jpg', f'{tmp_path}/photos/b c.jpg', f'{tmp_path}/link/d.jpg',
              '/root.jpg', 'gs://bucket/x/../e.jpg', 'https://host/./f.jpg?v=1',
              'file://otherhost/g.jpg']
  assert_lists('lists/list.txt', expected)
  assert sorted(set(list_input_uris('lists/list.txt'))) == sorted(expected)


def test_a_relative_glob_lists_absolute_paths(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'photos').mkdir()
  (tmp_path / 'photos' / 'a.jpg').write_bytes(b'x')
  assert_lists('./photos//*.jpg', [str(tmp_path / 'photos' / 'a.jpg')])


def test_a_folder_lists_every_file_under_it_but_hidden_ones(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for name in ('a.jpg', 'no_extension', 'sub/b.png', 'sub/deeper/c', '.DS_Store',
               'sub/._b.png', '.thumbnails/a.jpg', 'sub/.git/objects/x'):
    (tmp_path / 'photos' / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'photos' / name).write_bytes(b'x')
  expected = [str(tmp_path / 'photos' / name)
              for name in ('a.jpg', 'no_extension', 'sub/b.png', 'sub/deeper/c')]
  for spec in ('photos', 'photos/', f'file://{tmp_path}/photos'):
    assert_lists(spec, expected)
  assert sorted(list_input_uris('photos')) == expected


def test_a_folder_in_a_bucket(gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  for name in ('photos/a.jpg', 'photos/sub/b.jpg', 'photos/sub/', 'photos/.hidden/c.jpg',
               'other/d.jpg'):
    bucket.blob(name).upload_from_string(b'' if name.endswith('/') else b'x')
  assert_lists(f'{bucket_uri}/photos/', [f'{bucket_uri}/photos/a.jpg',
                                         f'{bucket_uri}/photos/sub/b.jpg'])


def test_csv_uri_column(tmp_path):
  listing = tmp_path / 'list.csv'
  listing.write_text('id,uri\n1,/a.jpg\n2,"/b, with comma.jpg"\n3,/a.jpg\n4,\n')
  assert_lists(str(listing), ['/a.jpg', '/b, with comma.jpg'])


@pytest.mark.parametrize('name, header', [('list.csv', 'id,URI'), ('list.tsv', 'id\tUri'),
                                          ('list.csv', '\ufeffid, uri ')])
def test_the_uri_column_in_any_case_of_csv_and_tsv_lists(tmp_path, name, header):
  separator = '\t' if name.endswith('.tsv') else ','
  (tmp_path / name).write_text(f'{header}\n1{separator}/a.jpg\n2{separator}"/b, c.jpg"\n',
                               encoding='utf-8')
  check_list(str(tmp_path / name))
  assert_lists(str(tmp_path / name), ['/a.jpg', '/b, c.jpg'])


def test_parquet_uri_column(tmp_path):
  listing = tmp_path / 'list.parquet'
  pq.write_table(pa.table({'uri': ['/a.jpg', '/b.jpg', '/a.jpg'], 'other': [1, 2, 3]}), listing)
  assert_lists(str(listing), ['/a.jpg', '/b.jpg'])


@pytest.mark.parametrize('column', [
    pa.array(['/a.jpg'.encode(), '/é.jpg'.encode(), None], pa.binary()),
    pa.array(['/a.jpg'.encode(), '/é.jpg'.encode(), None], pa.large_binary()),
    pa.array(['/a.jpg', '/é.jpg', None]).dictionary_encode(),
])
@pytest.mark.parametrize('name', ['uri', 'URI'])
def test_a_parquet_uri_column_of_utf8_bytes_or_a_dictionary(tmp_path, column, name):
  listing = tmp_path / 'list.parquet'
  pq.write_table(pa.table({name: column}), listing)
  check_list(str(listing))
  assert_lists(str(listing), ['/a.jpg', '/é.jpg'])


@pytest.mark.parametrize('name, write, message', [
    ('list.csv', lambda path: path.write_text('path\na.jpg\n'),
     r"has no 'uri' column; its columns are \['path'\]"),
    ('list.tsv', lambda path: path.write_text('uri,id\na.jpg,1\n'),
     r"has no 'uri' column; its columns are \['uri,id'\]"),
    ('list.csv', lambda path: path.write_text('URI,Uri\na.jpg,b.jpg\n'),
     r"has several 'uri' columns"),
    ('list.parquet', lambda path: pq.write_table(pa.table({'path': ['a.jpg']}), path),
     r"has no 'uri' column; its columns are \['path'\]"),
    ('list.parquet', lambda path: pq.write_table(pa.table({'uri': [1]}), path),
     r"its 'uri' column holds int64, not strings"),
])
def test_a_list_without_uri_column_fails_clearly(tmp_path, name, write, message):
  write(tmp_path / name)
  with pytest.raises(ValueError, match=message):
    check_list(str(tmp_path / name))
  with pytest.raises(Exception, match=message):
    assert_lists(str(tmp_path / name), [])


@pytest.mark.parametrize('name, content', [('list.parquet', b'uri\na.jpg\n'),
                                           ('list.csv', b'\x89PNG\r\n\x1a\n\xff\xfe')])
def test_a_list_that_is_not_of_its_format_fails_clearly(tmp_path, name, content):
  (tmp_path / name).write_bytes(content)
  with pytest.raises(ValueError, match=f'{name} cannot be read as a '):
    check_list(str(tmp_path / name))


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
  listing.write_text('/a.jpg\n/b.jpg\n/c.jpg\n/d.jpg\n/b.jpg\n')
  output = tmp_path / 'out'
  write_errors_part(output, 'errors-1-a-00000.parquet', ['/b.jpg'])
  write_errors_part(output, 'errors-1-b-00000.parquet', ['/x.jpg', '/d.jpg'])
  assert_lists(str(listing), ['/a.jpg', '/c.jpg'], resume_from=str(output))


def test_resume_finds_rows_held_by_more_than_one_part(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('/a.jpg\n/b.jpg\n/c.jpg\n')
  output = tmp_path / 'out'
  write_errors_part(output, 'errors-1-a-00000.parquet', ['/a.jpg', '/b.jpg', '/x.jpg'])
  write_errors_part(output, 'errors-1-b-00000.parquet', ['/b.jpg', '/x.jpg'])
  write_errors_part(output, 'errors-1-c-00000.parquet', ['/x.jpg'])
  assert_lists(str(listing), ['/c.jpg'], resume_from=str(output), redundant=[
      ('errors-1-b-00000.parquet', '/b.jpg'), ('errors-1-b-00000.parquet', '/x.jpg'),
      ('errors-1-c-00000.parquet', '/x.jpg')])


def test_resume_into_an_empty_directory_lists_everything(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('/a.jpg\n/b.jpg\n')
  assert_lists(str(listing), ['/a.jpg', '/b.jpg'], resume_from=str(tmp_path / 'nothing'))


def test_resume_matches_rows_of_relative_paths_from_the_current_directory(
    tmp_path, monkeypatch):
  """Rows written before local paths were stored absolute hold them as listed. Where both
  spellings of one file have a row, the canonical one is kept."""
  monkeypatch.chdir(tmp_path)
  listing = tmp_path / 'list.txt'
  listing.write_text(f'{tmp_path}/a.jpg\nb.jpg\nc.jpg\n')
  output = tmp_path / 'out'
  write_errors_part(output, 'errors-1-a-00000.parquet', ['a.jpg', './b.jpg'])
  write_errors_part(output, 'errors-1-b-00000.parquet', [f'{tmp_path}/b.jpg'])
  assert_lists(str(listing), [f'{tmp_path}/c.jpg'], resume_from=str(output),
               redundant=[('errors-1-a-00000.parquet', './b.jpg')])
