"""Any local file name is labelled (names that are not UTF-8, hold a newline, glob characters,
a leading dash, 250 bytes), stored in one UTF-8 spelling that maps back to the file; list
entries that are not UTF-8; and --input lists checked before any pipeline, wherever they are."""

import glob
import io
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import PHOTOS_DIR, REFERENCE_LABELS, last_run
from test_cli import model_args
from test_input_kinds import label_images_in, output_uris
from test_inputs import assert_lists
from transforms.failures import ImageError
from transforms.inputs import read_listed_uris
from transforms.read import canonical_uri, local_path, read_image_bytes

# File name (bytes) -> the shared photo it is a copy of.
ODD_NAMES = {
    b'caf\xe9.bmp': 'bird.bmp',  # Latin-1: not UTF-8
    b'a\nb.jpg': 'parrot.jpg',
    b'l' * 246 + b'.jpg': 'hot_dog.jpg',  # 250 bytes
    b'star*.jpg': 'cat_720p.jpg',
    b'what?.bmp': 'cat.bmp',
    b'pic[1].bmp': 'dragonfly.bmp',
    b'-dash.bmp': 'sunflower.bmp',
    b'100%.bmp': 'grace_hopper.bmp',  # a plain path is never percent-decoded
    b'trailing space.jpg ': 'face.jpg',
}


@pytest.mark.parametrize('given, stored', [
    ('/p/caf\udce9.bmp', 'file:///p/caf%E9.bmp'),
    ('file:///p/caf%e9.bmp', 'file:///p/caf%E9.bmp'),
    ('file://localhost/p/./caf%E9.bmp', 'file:///p/caf%E9.bmp'),
    ('/p/a\nb.jpg', 'file:///p/a%0Ab.jpg'),
    ('/p/tab\there.jpg', 'file:///p/tab%09here.jpg'),
    ('/p/del\x7f.jpg', 'file:///p/del%7F.jpg'),
    ('/p/t.jpg ', 'file:///p/t.jpg%20'),
    ('/p/100%.jpg', '/p/100%.jpg'),
    ('file:///p/100%25.jpg', '/p/100%.jpg'),
    ('file:///p/caf%C3%A9.jpg', '/p/café.jpg'),
    ('/p/what?[1]*-x.jpg', '/p/what?[1]*-x.jpg'),
    ('rel/caf\udce9.bmp', 'file:///base/rel/caf%E9.bmp'),
    ('gs://b/caf%E9.jpg', 'gs://b/caf%E9.jpg'),
])
def test_one_utf8_spelling_per_file_that_maps_back_to_its_bytes(given, stored):
  assert canonical_uri(given, '/base') == stored
  assert canonical_uri(stored, '/elsewhere') == stored
  stored.encode('utf-8')
  if local_path(stored) is not None:
    assert canonical_uri(local_path(stored), '/elsewhere') == stored


def test_a_file_uri_reads_the_file_its_bytes_name(tmp_path):
  path = os.fsencode(tmp_path) + b'/caf\xe9\n.jpg'
  with open(path, 'wb') as f:
    f.write(b'abc')
  stored = canonical_uri(os.fsdecode(path), '/')
  assert stored == f'file://{tmp_path}/caf%E9%0A.jpg'
  assert os.fsencode(local_path(stored)) == path
  assert read_image_bytes(stored) == b'abc'


def test_list_entries_that_are_not_utf8(tmp_path):
  """A local path names a file by its bytes (stored as its file:// URI, relative ones against
  the base directory); any other entry becomes one that the read step refuses."""
  listing = tmp_path / 'list.parquet'
  pq.write_table(pa.table({'uri': pa.array(
      [b'/p/caf\xe9.bmp', b'rel/\xe9.jpg', b'/p/ok.jpg', b'gs://b/\xff.jpg', None],
      pa.binary())}), listing)
  entries = list(read_listed_uris(str(listing), '/base'))
  assert entries == ['file:///p/caf%E9.bmp', 'file:///base/rel/%E9.jpg', '/p/ok.jpg',
                     "b'gs://b/\\xff.jpg'", None]
  (tmp_path / 'list.txt').write_bytes(b'/p/caf\xe9.bmp\nhttp://h/\xe9.jpg\n')
  assert list(read_listed_uris(str(tmp_path / 'list.txt'), '/base')) == [
      'file:///p/caf%E9.bmp', "b'http://h/\\xe9.jpg'"]
  assert canonical_uri(entries[3], '/base') == entries[3]
  with pytest.raises(ImageError) as refused:
    read_image_bytes(entries[3])
  assert refused.value.error == 'invalid_uri' and 'not UTF-8' in refused.value.message


def odd_folder(directory):
  """`directory` holding a copy of a shared photo under each of ODD_NAMES; its bytes path."""
  os.makedirs(directory)
  folder = os.fsencode(directory)
  for name, photo in ODD_NAMES.items():
    shutil.copyfile(os.path.join(PHOTOS_DIR, photo), folder + b'/' + name)
  return folder


def test_every_local_file_name_is_labelled_stored_in_utf8_and_resumed(model_dir, tmp_path):
  folder = odd_folder(tmp_path / 'photos')
  output = tmp_path / 'out'
  first = label_images_in(tmp_path, '--input', 'photos/*', '--output', 'out',
                          *model_args(model_dir))
  assert first.returncode == 0, first.stderr
  stored = output_uris(output, 'labels')
  assert output_uris(output, 'errors') == []
  photo_of = {os.fsdecode(folder + b'/' + name): photo for name, photo in ODD_NAMES.items()}
  assert sorted(local_path(uri) for uri in stored) == sorted(photo_of)
  for uri in stored:
    uri.encode('utf-8')
    assert '\n' not in uri and uri == uri.strip()
  assert f'file://{tmp_path}/photos/caf%E9.bmp' in stored
  assert f'file://{tmp_path}/photos/a%0Ab.jpg' in stored
  assert f'{tmp_path}/photos/100%.bmp' in stored and f'{tmp_path}/photos/pic[1].bmp' in stored
  labels = pq.ParquetDataset(glob.glob(str(output / 'labels-*.parquet'))).read()
  for row in labels.to_pylist():
    photo = photo_of[local_path(row['uri'])]
    if photo in REFERENCE_LABELS:
      assert row['label_index'] == REFERENCE_LABELS[photo], row['uri']

  resumed = label_images_in(tmp_path, '--input', f'{tmp_path}/photos/*', '--output', 'out',
                            '--resume', *model_args(model_dir))
  assert resumed.returncode == 0, resumed.stderr
  assert last_run(output)['counts']['already_done'] == len(ODD_NAMES)
  assert last_run(output)['counts']['labelled'] == 0

  # A .txt list of the stored URIs, and of a name's own bytes: all of them done.
  (tmp_path / 'stored.txt').write_bytes(
      '\n'.join(stored).encode() + b'\n' + folder + b'/caf\xe9.bmp\n')
  assert_lists(str(tmp_path / 'stored.txt'), [], resume_from=str(output))

  # A Parquet list of bytes: the stored URIs, a name's own bytes (done), a new file by its
  # bytes (labelled), and URIs that are not UTF-8 nor local (error rows).
  os.makedirs(tmp_path / 'new')
  new_file = os.fsencode(tmp_path / 'new') + b'/\xe9t\xe9.jpg'
  shutil.copyfile(os.path.join(PHOTOS_DIR, 'parrot.jpg'), new_file)
  undecodable = [b'gs://b/\xff.jpg', b'http://h/caf\xe9.jpg']
  pq.write_table(pa.table({'uri': pa.array(
      [uri.encode() for uri in stored] + [folder + b'/caf\xe9.bmp', new_file] + undecodable,
      pa.binary())}), tmp_path / 'bytes.parquet')
  listed = label_images_in(tmp_path, '--input', 'bytes.parquet', '--output', 'out',
                           '--resume', *model_args(model_dir))
  assert listed.returncode == 0, listed.stderr
  counts = last_run(output)['counts']
  assert (counts['labelled'], counts['errors'], counts['already_done']) == (
      1, 2, len(ODD_NAMES)), counts
  assert f'file://{tmp_path}/new/%E9t%E9.jpg' in output_uris(output, 'labels')
  errors = pq.ParquetDataset(str(output / '_errors')).read().to_pylist()
  assert sorted((row['uri'], row['stage'], row['error']) for row in errors) == sorted(
      (repr(uri), 'read', 'invalid_uri') for uri in undecodable)


def parquet_bytes(table):
  buffer = io.BytesIO()
  pq.write_table(table, buffer)
  return buffer.getvalue()


BUCKET_LISTS = [
    ('no_uri.csv', b'path,id\ngs://b/a.jpg,1\n',
     "{list} has no 'uri' column; its columns are ['path', 'id']"),
    ('no_uri.parquet', parquet_bytes(pa.table({'path': ['gs://b/a.jpg']})),
     "{list} has no 'uri' column; its columns are ['path']"),
    ('ints.parquet', parquet_bytes(pa.table({'uri': [1]})),
     "{list}: its 'uri' column holds int64, not strings"),
    ('not.parquet', b'uri\ngs://b/a.jpg\n', '{list} cannot be read as a parquet list: '),
    ('missing.csv', None, 'no such file: {list}'),
]


def test_a_list_in_a_bucket_is_checked_before_any_pipeline(gcs_bucket, tmp_path, capsys):
  """As a local list is: exit 2, one line (the local ones: test_input_kinds)."""
  from pipeline.options import parse_args  # pylint: disable=import-outside-toplevel
  bucket, bucket_uri = gcs_bucket
  for name, content, message in BUCKET_LISTS:
    if content is not None:
      bucket.blob(f'lists/{name}').upload_from_string(content)
    listing = f'{bucket_uri}/lists/{name}'
    with pytest.raises(SystemExit) as exited:
      parse_args(['--input', listing, '--output', str(tmp_path / 'out')])
    assert exited.value.code == 2, name
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        'label-images: error: --input: ' + message.format(list=listing)), lines
  bucket.blob('lists/good.parquet').upload_from_string(
      parquet_bytes(pa.table({'URI': pa.array([b'gs://b/\xff'], pa.binary())})))
  args, _ = parse_args(['--input', f'{bucket_uri}/lists/good.parquet', '--output',
                        str(tmp_path / 'out')])
  assert args.input == f'{bucket_uri}/lists/good.parquet'


def test_a_list_this_machine_cannot_read_is_left_to_the_workers(monkeypatch, tmp_path):
  """A Dataflow job built where there are no credentials (a dry run, say) is not refused."""
  from pipeline import options  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(options, 'no_gcs_access', lambda: 'no Google Cloud credentials here')
  args, _ = options.parse_args(['--input', 'gs://nowhere/list.parquet', '--output',
                                str(tmp_path / 'out')])
  assert args.input == 'gs://nowhere/list.parquet'
