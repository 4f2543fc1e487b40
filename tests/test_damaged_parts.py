"""Damaged parts in an output directory: a labels or errors part truncated by a partial copy,
or another file under a part's name. Every reader names the file and the cause in one line;
--resume moves such parts to OUTPUT_DIR/_damaged/, keeping them, and labels their URIs again;
report, similar and duplicates refuse with exit status 2 and say so."""

import io
import os
import shutil

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import BeamIOError

from conftest import ALL_PHOTOS, PHOTOS_DIR, read_manifest
from pipeline import duplicates, html_report, output_dir, results, run, similar
from pipeline.embedding_index import index_for
from pipeline.output_dir import OutputExistsError, prepare_output_dir
from test_cli import ERRORS_SCHEMA, LABELS_SCHEMA, label_images, model_args, read_output
from test_results import labels_table as full_labels_table
from transforms import select
from transforms.files import (DamagedPartError, damage_named, parquet_rows, read_parquet,
                              write_bytes)
from transforms.write import write_table

NOT_PARQUET = b'these are not the rows you are looking for\n'
MAGIC = 'Parquet magic bytes not found in footer'


def labels_table(first, count):
  return pa.table({
      'uri': [f'/photos/{i}.jpg' for i in range(first, first + count)],
      'label': ['cat'] * count,
      'model': ['m'] * count,
      'embedding': pa.array([[float(i)] * 4 for i in range(first, first + count)],
                            pa.list_(pa.float32(), 4)),
  })


def truncate(path):
  """Cuts a file in half, as a copy that stopped partway leaves it."""
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


@pytest.fixture
def damaged_dir(tmp_path):
  """OUTPUT_DIR with two whole labels parts, a truncated one, a text file named like a part,
  and an errors part of zero bytes; returns (OUTPUT_DIR, {damaged path: its bytes})."""
  out = tmp_path / 'out'
  (out / '_errors').mkdir(parents=True)
  for number in range(3):
    write_table(str(out), f'labels-run-0-{number:05d}.parquet', labels_table(number * 2, 2))
  write_table(str(out / '_errors'), 'errors-run-0-00000.parquet',
              pa.table({'uri': ['/photos/x.jpg'], 'error': ['not_found']}))
  truncate(out / 'labels-run-0-00001.parquet')
  (out / 'labels-zzz.parquet').write_bytes(NOT_PARQUET)
  (out / '_errors' / 'errors-run-0-00000.parquet').write_bytes(b'')
  damaged = [out / 'labels-run-0-00001.parquet', out / 'labels-zzz.parquet',
             out / '_errors' / 'errors-run-0-00000.parquet']
  return out, {str(path): path.read_bytes() for path in damaged}


def test_every_reader_of_a_part_names_it_and_the_cause(damaged_dir):
  out, _ = damaged_dir
  truncated = str(out / 'labels-run-0-00001.parquet')
  readers = {
      'footer': lambda: parquet_rows(truncated),
      'table': lambda: read_parquet(truncated, ['uri']),
      'part rows': lambda: results.part_rows([truncated]),
      'schema': lambda: results.holds_embeddings([truncated]),
      'batches': lambda: list(results.read_batches([truncated], ['uri'])),
      'row': lambda: results.read_row(truncated, 0, ['uri']),
      "resume's selection": lambda: list(select._rows_of_part(truncated, '/')),
  }
  for reader, read in readers.items():
    with pytest.raises(DamagedPartError) as raised:
      read()
    message = str(raised.value)
    assert message.startswith(f'{truncated} cannot be read as Parquet (truncated, or not a '
                              f'Parquet file): {MAGIC}'), reader
    assert f'--output {out} --resume` moves it to {out / "_damaged"}/' in message, reader
    assert '\n' not in message, reader
    # What the query commands, relabel and train-head catch, each in one line.
    assert isinstance(raised.value, results.UnreadablePartError)

  errors_part = str(out / '_errors' / 'errors-run-0-00000.parquet')
  with pytest.raises(DamagedPartError, match=f'--output {out} --resume'):
    read_parquet(errors_part, ['error'])


def test_a_whole_footer_over_damaged_data_is_named_too(tmp_path):
  """--resume reads footers only: such a part is left for the user to move, and said so."""
  buffer = io.BytesIO()
  pq.write_table(labels_table(0, 500), buffer, compression='zstd')
  data = bytearray(buffer.getvalue())
  data[100:2000] = bytes(range(256)) * 7 + bytes(108)  # pages, not the footer
  part = tmp_path / 'labels-0.parquet'
  part.write_bytes(bytes(data))
  assert parquet_rows(str(part)) == 500
  for read in (lambda: read_parquet(str(part)),
               lambda: list(select._rows_of_part(str(part), '/'))):
    with pytest.raises(DamagedPartError) as raised:
      read()
    assert not raised.value.in_footer
    assert str(raised.value).startswith(f'{part} cannot be read as Parquet (its footer is '
                                        'whole, its data damaged): ')
    assert f'Move it out of {tmp_path}' in str(raised.value)


def test_a_failing_filesystem_is_not_a_damaged_part(tmp_path):
  """pyarrow passes on the file object's own exception: the part is not to blame."""
  part = tmp_path / 'labels-0.parquet'
  pq.write_table(labels_table(0, 2), part)
  for error in (ConnectionResetError('connection reset by peer'), OSError('gone'),
                BeamIOError('the bucket did not answer')):

    class Failing(io.BytesIO):
      def read(self, *args, error=error):
        raise error

    with pytest.raises(type(error)) as raised, damage_named(str(part)):
      pq.ParquetFile(Failing(part.read_bytes()))
    assert raised.value is error


def test_resume_moves_damaged_parts_aside_and_keeps_them(damaged_dir, capsys):
  out, damaged = damaged_dir
  whole = {path: path.read_bytes() for path in (out / 'labels-run-0-00000.parquet',
                                                out / 'labels-run-0-00002.parquet')}
  earlier = out / '_damaged' / 'labels-zzz.parquet.damaged'  # set aside by an earlier run
  earlier.parent.mkdir()
  earlier.write_bytes(b'an earlier one')

  moved = prepare_output_dir(str(out), resume=True)

  assert [move['part'] for move in moved] == sorted(damaged)
  printed = capsys.readouterr().err.splitlines()
  assert len(printed) == 3
  for move, line in zip(moved, printed):
    assert line.startswith(f"label-images: set aside {move['part']}: it cannot be read as "
                           'Parquet (truncated, or not a Parquet file): ')
    assert f"moved to {move['moved_to']};" in line and move['cause'].rstrip('.') in line
    assert os.path.dirname(move['moved_to']) == str(out / '_damaged')
    assert move['moved_to'].endswith('.damaged')
    assert not os.path.exists(move['part'])
    with open(move['moved_to'], 'rb') as f:
      assert f.read() == damaged[move['part']]  # kept as it was
  causes = {os.path.basename(move['part']): move['cause'] for move in moved}
  assert causes['errors-run-0-00000.parquet'] == 'Parquet file size is 0 bytes'
  assert causes['labels-run-0-00001.parquet'].startswith(MAGIC)
  # The name was taken: the earlier one stays, the new one gets a tag.
  assert earlier.read_bytes() == b'an earlier one'
  zzz = next(move['moved_to'] for move in moved if move['part'].endswith('zzz.parquet'))
  assert zzz != str(earlier) and zzz.startswith(str(out / '_damaged' / 'labels-zzz.parquet.'))
  assert all(path.read_bytes() == data for path, data in whole.items())

  # Readers of the dataset pass _damaged/ by.
  assert len(pd.read_parquet(out)) == 4
  query = f"SELECT count(*) FROM read_parquet('{out}/*.parquet')"
  assert duckdb.connect().execute(query).fetchone() == (4,)
  assert prepare_output_dir(str(out), resume=True) == []


def test_a_footer_that_cannot_be_fetched_moves_nothing(damaged_dir, monkeypatch):
  out, damaged = damaged_dir

  def unreachable(path):
    raise BeamIOError('the bucket did not answer')

  monkeypatch.setattr(output_dir, 'footer_damage', unreachable)
  with pytest.raises(OutputExistsError, match='cannot read .* to check it: the bucket did not'):
    prepare_output_dir(str(out), resume=True)
  assert all(os.path.exists(path) for path in damaged)
  assert not (out / '_damaged').exists()


def test_overwrite_deletes_damaged_parts_with_the_others(damaged_dir):
  out, damaged = damaged_dir
  assert prepare_output_dir(str(out), overwrite=True) == []
  assert not any(os.path.exists(path) for path in damaged)
  assert not list(out.glob('labels-*.parquet')) and not (out / '_damaged').exists()


def test_a_damaged_duplicates_file_says_how_to_write_it_again(damaged_dir):
  out, _ = damaged_dir
  write_bytes(str(out / '_duplicates' / 'duplicates.parquet'), NOT_PARQUET)
  with pytest.raises(DamagedPartError,
                     match=f'duplicates.parquet cannot be read as Parquet .*{MAGIC}.* '
                     f'`label-images duplicates {out}` writes it again'):
    duplicates.duplicates_record(str(out))


def uris_of(output):
  labels = [row['uri'] for row in read_output(output, 'labels', LABELS_SCHEMA)]
  errors = [row['uri'] for row in read_output(output, 'errors', ERRORS_SCHEMA)]
  return labels, errors


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('label-images:')]


def test_resume_sets_damaged_parts_aside_and_relabels_their_uris(model_dir, tmp_path, capsys):
  """The acceptance test of issue 21, item 4, through the command line."""
  images = tmp_path / 'images'
  images.mkdir()
  for name in ALL_PHOTOS:
    shutil.copy(os.path.join(PHOTOS_DIR, name), images / name)
  (images / 'broken.jpg').write_bytes(b'<html>not an image</html>')
  output = tmp_path / 'out'
  args = ['--input', images, '--output', output, '--rows_per_file', 2, *model_args(model_dir)]
  labelled = label_images(*args)
  assert labelled.returncode == 0, labelled.stderr
  labels, errors = uris_of(output)
  every_uri = sorted(labels + errors)
  assert len(every_uri) == len(ALL_PHOTOS) + 1 and errors

  parts = sorted(output.glob('labels-*.parquet'))
  assert len(parts) >= 2, parts
  truncated, errors_part = parts[0], next((output / '_errors').glob('errors-*.parquet'))
  not_parquet = output / 'labels-zzz.parquet'
  truncate(truncated)
  truncate(errors_part)
  not_parquet.write_bytes(NOT_PARQUET)
  damaged = {path: path.read_bytes() for path in (truncated, errors_part, not_parquet)}

  refused = label_images('report', output)
  assert refused.returncode == 2, refused.stderr
  assert 'Traceback' not in refused.stderr
  [line] = error_lines(refused.stderr)
  assert f'{truncated} cannot be read as Parquet (truncated, or not a Parquet file): ' \
         f'{MAGIC}' in line
  assert f'--output {output} --resume` moves it to {output / "_damaged"}/' in line
  # similar and duplicates, as the command line runs them (in this process: quicker).
  for command, argv in ((duplicates.main, [str(output)]),
                        (similar.main, [str(output), '--uri', every_uri[0]])):
    assert run.run_query(command, argv) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert f'{truncated} cannot be read as Parquet' in line and '--resume' in line

  resumed = label_images(*args, '--resume')
  assert resumed.returncode == 0, resumed.stderr
  said = resumed.stdout + resumed.stderr
  assert 'Traceback' not in said
  kept = sorted((output / '_damaged').iterdir())
  assert len(kept) == 3
  for path, data in damaged.items():
    assert not path.exists()
    moved_to = output / '_damaged' / f'{path.name}.damaged'
    assert moved_to.read_bytes() == data
    assert f'set aside {path}: it cannot be read as Parquet' in said
    assert f'moved to {moved_to};' in said
  labels, errors = uris_of(output)
  assert sorted(labels + errors) == every_uri  # each URI exactly once
  assert read_manifest(output)['totals']['uris'] == len(every_uri)

  reported = label_images('report', output)
  assert reported.returncode == 0, reported.stderr


def test_damaged_derived_files_are_built_again_or_named_with_their_command(tmp_path):
  """The index, a cache, is built again; the report names a damaged duplicates file with the
  command that writes it again."""
  out = tmp_path / 'out'
  out.mkdir()
  for number in range(2):
    pq.write_table(full_labels_table(number * 4, 4), out / f'labels-{number}.parquet')
  assert index_for(str(out)).images == 8
  write_bytes(str(out / '_index' / 'rows.parquet'), NOT_PARQUET)
  assert index_for(str(out)).images == 8
  assert pq.read_table(out / '_index' / 'rows.parquet').num_rows == 8

  write_bytes(str(out / '_duplicates' / 'duplicates.parquet'), NOT_PARQUET)
  with pytest.raises(DamagedPartError,
                     match=f'duplicates.parquet cannot be read as Parquet .*'
                     f'`label-images duplicates {out}` writes it again'):
    html_report.render(str(out))
