"""Exact at scale, with default options: a million listed URIs and a glob over 100,000 files.

Each run is repeated: the multi-threaded local runner once lost or garbled elements only
some of the time at this size (tests/beam_repro/fnapi_timed_flush.py).
"""

import glob
import os

import sys

import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from conftest import ROOT, last_run
from pipeline.options import LOCAL_DEFAULTS
from pipeline.runner import create_runner
from test_cli import label_images, model_args
from transforms.schema import ERRORS, part_glob

sys.path.insert(0, os.path.join(ROOT, 'tests', 'beam_repro'))
import fnapi_timed_flush  # pylint: disable=wrong-import-position

LISTED_URIS = 1_000_000
DUPLICATES = 1_000
GLOBBED_FILES = 100_000
REPEATS = 3


@pytest.fixture(scope='module')
def missing_files_list(tmp_path_factory):
  directory = tmp_path_factory.mktemp('million')
  uris = [str(directory / 'nowhere' / f'{i % 997:03d}' / f'image-{i:07d}.jpg')
          for i in range(LISTED_URIS)]
  listing = directory / 'list.txt'
  listing.write_text('\n'.join(uris + uris[:DUPLICATES]) + '\n')
  return listing, uris


@pytest.fixture(scope='module')
def empty_files(tmp_path_factory):
  directory = tmp_path_factory.mktemp('empty')
  for i in range(GLOBBED_FILES):
    (directory / f'{i:06d}.jpg').touch()
  return directory


def error_rows(output):
  """{uri: error kind} of every error row, and how many rows there were."""
  tables = [pq.read_table(path, columns=['uri', 'error'])
            for path in glob.glob(str(output / part_glob(ERRORS)))]
  rows = [row for table in tables for row in zip(table.column('uri').to_pylist(),
                                                  table.column('error').to_pylist())]
  return dict(rows), len(rows)


def run_and_check(args, output, expected_uris, kind):
  result = label_images(*args, '--output', output, '--overwrite')
  assert result.returncode == 0, result.stderr[-3000:]
  errors, rows = error_rows(output)
  assert rows == len(errors) == len(expected_uris)
  assert errors.keys() == set(expected_uris)
  assert set(errors.values()) == {kind}
  assert not glob.glob(str(output / 'labels-*.parquet'))
  manifest = last_run(output)
  assert manifest['accounting'] == {'complete': True, 'problems': []}
  return manifest['counts']


@pytest.mark.parametrize('attempt', range(REPEATS))
def test_a_million_listed_missing_files_end_as_one_error_row_each(
    attempt, missing_files_list, model_dir, tmp_path):
  del attempt
  listing, uris = missing_files_list
  counts = run_and_check(['--input', listing, *model_args(model_dir)], tmp_path / 'out', uris,
                         'not_found')
  assert (counts['uris_listed'], counts['duplicate_uris'], counts['errors']) == (
      LISTED_URIS + DUPLICATES, DUPLICATES, LISTED_URIS)


@pytest.mark.parametrize('attempt', range(REPEATS))
def test_a_glob_over_100000_empty_files_ends_as_one_error_row_each(
    attempt, empty_files, model_dir, tmp_path):
  del attempt
  expected = [os.path.join(str(empty_files), name) for name in os.listdir(empty_files)]
  counts = run_and_check(['--input', empty_files / '*.jpg', *model_args(model_dir)],
                         tmp_path / 'out', expected, 'empty')
  assert counts['errors'] == GLOBBED_FILES


def test_the_local_runner_groups_where_stock_fnapi_runner_loses_elements(tmp_path):
  """Stock FnApiRunner, multi-threaded, loses or garbles elements of this CoGroupByKey of a
  million lines in nearly every run; the runner the command builds must not."""
  options = PipelineOptions(LOCAL_DEFAULTS)
  lines = fnapi_timed_flush.write_lines(str(tmp_path), LISTED_URIS)
  assert fnapi_timed_flush.grouped_count(create_runner(options), options, lines,
                                         cogroup=True) == LISTED_URIS
