"""--input as a user gives it, through the command line: local paths in any spelling, a folder,
lists of every format, and the mistakes refused before any pipeline starts."""

import glob
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import PHOTOS_DIR, last_run
from test_cli import model_args
from transforms.schema import ERRORS, ERRORS_SCHEMA, part_glob, parts_dir
from transforms.write import rows_to_table, write_table


def label_images_in(directory, *args):
  """Runs `label-images ARGS` in a fresh process whose current directory is `directory`."""
  return subprocess.run([sys.executable, '-m', 'pipeline.run', *map(str, args)],
                        cwd=directory, capture_output=True, text=True, timeout=600)


def photos(directory, names):
  """`directory`/NAME for each of the shared photos `names`, as links to them."""
  for name in names:
    (directory / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.join(PHOTOS_DIR, os.path.basename(name)), directory / name)


def output_uris(output, kind):
  return sorted(uri for path in glob.glob(os.path.join(output, part_glob(kind)))
                for uri in pq.read_table(path, columns=['uri'])['uri'].to_pylist())


def counts(output, *names):
  """The latest run's counts of `names`, from the manifest."""
  return tuple(last_run(output)['counts'][name] for name in names)


def test_one_file_spelled_two_ways_is_one_uri_and_resumes(model_dir, tmp_path):
  """Stored URIs are absolute and normalised, symlinks kept: a resume that lists the same
  files by other spellings (absolute, file://) finds them done."""
  photos(tmp_path / 'photos', ['parrot.jpg', 'bird.bmp', 'hot_dog.jpg'])
  (tmp_path / 'first.txt').write_text('photos/parrot.jpg\n./photos//bird.bmp\nphotos/parrot.jpg\n')
  first = label_images_in(tmp_path, '--input', 'first.txt', '--output', 'out',
                          *model_args(model_dir))
  assert first.returncode == 0, first.stderr
  assert counts(tmp_path / 'out', 'labelled', 'duplicate_uris') == (2, 1)
  assert output_uris(tmp_path / 'out', 'labels') == [
      f'{tmp_path}/photos/bird.bmp', f'{tmp_path}/photos/parrot.jpg']

  (tmp_path / 'again.txt').write_text(
      f'file://{tmp_path}/photos/parrot.jpg\n{tmp_path}/photos/bird.bmp\nphotos/hot_dog.jpg\n')
  resumed = label_images_in(tmp_path, '--input', 'again.txt', '--output', tmp_path / 'out',
                            '--resume', *model_args(model_dir))
  assert resumed.returncode == 0, resumed.stderr
  assert counts(tmp_path / 'out', 'labelled', 'already_done') == (1, 2)
  assert len(output_uris(tmp_path / 'out', 'labels')) == 3


def test_a_resume_matches_the_relative_paths_of_rows_written_before(model_dir, tmp_path):
  """Rows written when local paths were stored as listed hold relative ones: a resume from
  the same directory finds them done, and where a file has rows under both spellings keeps
  the absolute one."""
  photos(tmp_path / 'photos', ['parrot.jpg', 'bird.bmp'])
  output = tmp_path / 'out'
  for part, uris in (('errors-1-a-00000.parquet', ['photos/parrot.jpg', 'photos/bird.bmp']),
                     ('errors-2-a-00000.parquet', [f'{tmp_path}/photos/bird.bmp'])):
    write_table(parts_dir(str(output), ERRORS), part, rows_to_table(
        [{'uri': uri, 'stage': 'read', 'error': 'unavailable', 'message': 'then'}
         for uri in uris], ERRORS_SCHEMA))
  resumed = label_images_in(tmp_path, '--input', f'{tmp_path}/photos/*', '--output', 'out',
                            '--resume', *model_args(model_dir))
  assert resumed.returncode == 0, resumed.stderr
  assert counts(output, 'uris_to_label', 'already_done', 'redundant_rows_removed') == (0, 2, 1)
  assert output_uris(output, 'errors') == [f'{tmp_path}/photos/bird.bmp', 'photos/parrot.jpg']


def test_a_folder_labels_every_image_under_it_but_hidden_files(model_dir, tmp_path):
  photos(tmp_path / 'photos', ['parrot.jpg', 'birds/bird.bmp', 'birds/2024/sunflower.bmp',
                               '.thumbnails/cat.bmp'])
  (tmp_path / 'photos' / '.DS_Store').write_bytes(b'\0\0\0\1Bud1')
  (tmp_path / 'photos' / 'birds' / '._bird.bmp').write_bytes(b'\0\5\26\7AppleDouble')
  (tmp_path / 'photos' / 'notes.txt').write_text('not an image')
  result = label_images_in(tmp_path, '--input', 'photos', '--output', 'out',
                           *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert counts(tmp_path / 'out', 'labelled', 'errors') == (3, 1)
  assert output_uris(tmp_path / 'out', 'labels') == [
      f'{tmp_path}/photos/{name}'
      for name in ('birds/2024/sunflower.bmp', 'birds/bird.bmp', 'parrot.jpg')]
  assert output_uris(tmp_path / 'out', 'errors') == [f'{tmp_path}/photos/notes.txt']


def test_a_parquet_list_of_utf8_bytes(model_dir, tmp_path):
  names = ['parrot.jpg', 'bird.bmp']
  pq.write_table(pa.table({'uri': pa.array(
      [os.path.join(PHOTOS_DIR, name).encode() for name in names], pa.binary())}),
                 tmp_path / 'list.parquet')
  result = label_images_in(tmp_path, '--input', 'list.parquet', '--output', 'out',
                           *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert counts(tmp_path / 'out', 'labelled', 'errors') == (2, 0)


def write_list_lst(directory):
  (directory / 'list.lst').write_text(f'{PHOTOS_DIR}/parrot.jpg\n')


def write_csv_without_uri(directory):
  (directory / 'no_uri.csv').write_text(f'path,id\n{PHOTOS_DIR}/parrot.jpg,1\n')


def write_parquet_without_uri(directory):
  pq.write_table(pa.table({'path': [f'{PHOTOS_DIR}/parrot.jpg']}), directory / 'no_uri.parquet')


def write_folder_of_hidden_files(directory):
  (directory / 'empty' / '.hidden').mkdir(parents=True)
  (directory / 'empty' / '.hidden' / 'a.jpg').symlink_to(os.path.join(PHOTOS_DIR, 'parrot.jpg'))


def write_folder_of_photos(directory):
  photos(directory / 'photos', ['parrot.jpg'])


@pytest.mark.parametrize('write, input_spec, output, message', [
    (write_list_lst, 'list.lst', 'out',
     '--input: list.lst is neither an image nor a list of URIs: a list is a .txt, .csv, .tsv or '
     '.parquet file'),
    (write_csv_without_uri, 'no_uri.csv', 'out',
     "--input: {dir}/no_uri.csv has no 'uri' column; its columns are ['path', 'id']"),
    (write_parquet_without_uri, 'no_uri.parquet', 'out',
     "--input: {dir}/no_uri.parquet has no 'uri' column; its columns are ['path']"),
    (write_folder_of_hidden_files, 'empty', 'out',
     '--input: the folder empty holds no files (hidden ones are skipped)'),
    (write_folder_of_photos, 'photos', 'photos/labels',
     '--output photos/labels is inside the --input folder photos: its results would be '
     'labelled as images; write them elsewhere'),
])
def test_input_mistakes_are_refused_before_any_pipeline(
    model_dir, tmp_path, write, input_spec, output, message):
  write(tmp_path)
  result = label_images_in(tmp_path, '--input', input_spec, '--output', output,
                           *model_args(model_dir))
  assert result.returncode == 2, (result.returncode, result.stderr)
  assert result.stderr.strip().splitlines() == [
      'label-images: error: ' + message.format(dir=tmp_path)]
  assert not os.path.exists(tmp_path / output)
