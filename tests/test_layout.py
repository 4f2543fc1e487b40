"""The output directory as dataset readers see it: labels-*.parquet is the dataset, and
everything else (errors, manifest, index, duplicates, report) is kept out of their way;
--overwrite removes what was derived from the old rows; a directory of the old layout is
taken over."""

import os
import shutil

import duckdb
import pandas as pd
import pytest

from conftest import PHOTOS_DIR
from pipeline.output_dir import adopt_legacy_layout, prepare_output_dir
from test_cli import LABELS_SCHEMA, label_images, model_args

PHOTOS = sorted(os.listdir(PHOTOS_DIR))


def files_under(directory):
  return sorted(str(path.relative_to(directory)) for path in directory.rglob('*')
                if path.is_file())


@pytest.fixture(scope='module')
def finished(model_dir, tmp_path_factory):
  """The photos and a broken file, labelled, with an index, duplicates and a report;
  returns (output dir, the labelling command's stdout)."""
  work = tmp_path_factory.mktemp('layout')
  (work / 'broken.jpg').write_text('not an image')
  listing = work / 'uris.txt'
  listing.write_text('\n'.join([os.path.join(PHOTOS_DIR, name) for name in PHOTOS]
                               + [str(work / 'broken.jpg')]))
  output = work / 'out'
  result = label_images('--input', listing, '--output', output, *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  for command in ('duplicates', 'report'):
    derived = label_images(command, output)
    assert derived.returncode == 0, derived.stderr
  return output, result.stdout


def test_pandas_duckdb_and_pyarrow_read_the_directory_as_the_labels(finished):
  output, _ = finished
  assert {'_errors', '_manifest.json', '_index', '_duplicates', '_report.html'} <= set(
      os.listdir(output))
  labels = pd.read_parquet(output)
  assert len(labels) == len(PHOTOS) and list(labels.columns) == LABELS_SCHEMA.names
  rows = duckdb.connect().execute(
      f"SELECT count(*), count(DISTINCT uri) FROM read_parquet('{output}/*.parquet')")
  assert rows.fetchone() == (len(PHOTOS), len(PHOTOS))


def test_every_file_the_summary_names_can_be_read(finished):
  output, stdout = finished
  named = stdout.split('output: ', 1)[1].splitlines()[0].split(', ')
  assert named == [f'{output}/labels-*.parquet', f'{output}/_errors/errors-*.parquet',
                   f'{output}/_manifest.json']
  for pattern in named[:2]:
    query = f"SELECT count(*) FROM read_parquet('{pattern}')"
    assert duckdb.connect().execute(query).fetchone()[0] > 0


def test_a_summary_names_no_errors_files_where_there_are_none(model_dir, tmp_path):
  output = tmp_path / 'out'
  result = label_images('--input', os.path.join(PHOTOS_DIR, PHOTOS[0]), '--output', output,
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert f'output: {output}/labels-*.parquet, {output}/_manifest.json\n' in result.stdout


def test_overwrite_removes_what_was_derived_from_the_old_rows(finished, model_dir, tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(finished[0], output)
  result = label_images('--input', os.path.join(PHOTOS_DIR, PHOTOS[0]), '--output', output,
                        '--overwrite', *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert [name for name in files_under(output) if not name.startswith('labels-')] == [
      '_manifest.json']


def test_a_directory_of_the_old_layout_is_renamed_and_resumed_without_relabelling(
    finished, model_dir, tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(finished[0], output)
  old_names = {'_manifest.json': 'manifest.json', '_report.html': 'report.html',
               '_index': 'index', '_duplicates/duplicates.parquet': 'duplicates.parquet'}
  old_names.update({f'_errors/{name}': name for name in os.listdir(output / '_errors')})
  for name, old in old_names.items():
    os.rename(output / name, output / old)
  listing = finished[0].parent / 'uris.txt'
  result = label_images('--input', listing, '--output', output, '--resume',
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert f'{len(PHOTOS) + 1} already in the output' in result.stdout
  names = os.listdir(output)
  assert not {'manifest.json', 'duplicates.parquet', 'report.html'} & set(names)
  assert not [name for name in names if name.startswith('errors-')]
  assert {'_manifest.json', '_duplicates', '_errors', '_report.html'} <= set(names)
  assert os.listdir(output / '_errors') and os.listdir(output / '_duplicates')
  assert not files_under(output / 'index')


def test_a_run_that_adds_rows_says_which_derived_files_are_out_of_date(finished, model_dir,
                                                                      tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(finished[0], output)
  listing = tmp_path / 'more.txt'
  listing.write_text(str(tmp_path / 'gone.jpg'))
  result = label_images('--input', listing, '--output', output, '--resume',
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert ('out of date: _duplicates/duplicates.parquet, _report.html (built from the parts '
          f'before this run); refresh with: label-images duplicates {output}; label-images '
          f'report {output}') in result.stdout
  nothing_new = label_images('--input', listing, '--output', output, '--resume',
                             *model_args(model_dir))
  assert nothing_new.returncode == 0 and 'out of date' not in nothing_new.stdout


def test_a_folder_that_holds_no_results_keeps_its_own_files(tmp_path):
  """Only a directory of ours is taken over: a user's report.html or manifest.json beside
  no parts is left as it is, even by --overwrite."""
  (tmp_path / 'report.html').write_text('mine')
  (tmp_path / 'manifest.json').write_text('{"mine": true}')
  (tmp_path / 'index').mkdir()
  (tmp_path / 'index' / 'rows.parquet').write_text('mine')
  assert adopt_legacy_layout(str(tmp_path)) == []
  prepare_output_dir(str(tmp_path), overwrite=True)
  assert files_under(tmp_path) == ['index/rows.parquet', 'manifest.json', 'report.html']
