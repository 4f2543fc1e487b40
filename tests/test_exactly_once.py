"""Each URI exactly once on a runner that retries bundles, and no silent loss anywhere.

These run the command in this process, so that a fault can be injected into the real
writer: Beam's BundleBasedDirectRunner runs its bundles on threads of this process and
retries a failed bundle up to four times, as Dataflow retries a failed work item.
"""

import collections
import os
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import PHOTOS_DIR, REFERENCE_LABELS, last_run
from pipeline import run
from test_cli import model_args
from test_recovery import output_uris
from transforms import select, write
from transforms.schema import LABELS
from transforms.write import WriteParquetParts

RETRYING_RUNNER = ['--runner', 'BundleBasedDirectRunner']


@pytest.fixture
def listing(tmp_path, shared_fixtures):
  """Eight photos and two missing files; with --rows_per_file 2 each bundle writes parts."""
  uris = [os.path.join(PHOTOS_DIR, name) for name in sorted(REFERENCE_LABELS)]
  uris += [str(tmp_path / 'missing-1.jpg'), str(tmp_path / 'missing-2.jpg')]
  path = tmp_path / 'list.txt'
  path.write_text('\n'.join(uris) + '\n')
  return path, uris


def label_images_here(*args):
  """Runs the command in this process; returns its exit status."""
  return run.main([str(arg) for arg in args])


def fail_label_writes(monkeypatch, times):
  """Makes the labels writer raise right after it commits a part, `times` times in all."""
  write, lock, failed = WriteParquetParts._write, threading.Lock(), []  # pylint: disable=protected-access

  def write_then_fail(writer):
    committed = write(writer)
    with lock:
      if writer._kind == LABELS and len(failed) < times:  # pylint: disable=protected-access
        failed.append(committed.path)
        raise RuntimeError('injected: the bundle fails after writing a part')
    return committed

  monkeypatch.setattr(WriteParquetParts, '_write', write_then_fail)
  return failed


def manifest_counts(output):
  return last_run(output)['counts']


def assert_each_uri_once(output, uris):
  found = output_uris(output)
  assert sorted(found) == sorted(uris), collections.Counter(found).most_common(3)
  files = [os.path.relpath(os.path.join(folder, name), output)
           for folder, _, names in os.walk(output) for name in names]
  assert [name for name in files if not name.endswith('.parquet')] == ['_manifest.json']


def test_a_retried_bundle_leaves_no_duplicate_and_no_orphan(listing, model_dir, tmp_path,
                                                            monkeypatch):
  path, uris = listing
  output = tmp_path / 'out'
  failed = fail_label_writes(monkeypatch, times=2)
  status = label_images_here('--input', path, '--output', output, '--rows_per_file', 2,
                             *RETRYING_RUNNER, *model_args(model_dir))
  assert status == 0
  assert len(failed) == 2 and not any(os.path.exists(part) for part in failed)
  assert_each_uri_once(output, uris)
  counts = manifest_counts(output)
  assert counts['orphan_parts_deleted'] == 2
  assert (counts['labelled'], counts['errors'], counts['unaccounted']) == (8, 2, 0)


def test_resume_after_a_job_that_failed_mid_retries_holds_each_uri_once(
    listing, model_dir, tmp_path, monkeypatch, capsys):
  path, uris = listing
  output = tmp_path / 'out'
  args = ['--input', path, '--output', output, '--rows_per_file', 2, *model_args(model_dir)]
  failed = fail_label_writes(monkeypatch, times=1000)
  assert label_images_here(*args, *RETRYING_RUNNER) == 1
  assert 'injected' in capsys.readouterr().err.strip().splitlines()[-1]
  # Every attempt of a labels bundle wrote its first part again under its own name.
  assert len(failed) >= 4 and all(os.path.exists(part) for part in failed)
  duplicated = len(output_uris(output)) - len(set(output_uris(output)))
  assert duplicated >= 3
  monkeypatch.undo()

  assert label_images_here(*args, '--resume') == 0
  assert_each_uri_once(output, uris)
  counts = manifest_counts(output)
  assert counts['redundant_rows_removed'] == duplicated
  assert counts['unaccounted'] == 0


def test_resume_rewrites_a_part_whose_rows_are_partly_copies(listing, model_dir, tmp_path):
  """A failed attempt's part holding rows of a successful part and one row nowhere else:
  the copies go, the rest is kept in a rewritten part that the commit step keeps."""
  path, uris = listing
  output = tmp_path / 'out'
  args = ['--input', path, '--output', output, *model_args(model_dir)]
  assert label_images_here(*args, '--rows_per_file', 3) == 0
  kept_part = sorted(output.glob('labels-*.parquet'))[0]
  rows = pq.read_table(kept_part)
  only_copy = rows.slice(0, 1).set_column(0, rows.schema.field('uri'),
                                          pa.array(['/elsewhere/only-here.jpg']))
  failed_attempt = output / 'labels-failed-zzzz-00000.parquet'
  pq.write_table(pa.concat_tables([rows.slice(0, 2), only_copy]), failed_attempt)
  path.write_text(path.read_text() + '/elsewhere/only-here.jpg\n')

  assert label_images_here(*args, '--resume') == 0
  assert_each_uri_once(output, uris + ['/elsewhere/only-here.jpg'])
  assert not failed_attempt.exists()
  counts = manifest_counts(output)
  assert (counts['redundant_rows_removed'], counts['already_done']) == (2, len(uris) + 1)


def drop_before_selection(monkeypatch):
  """Loses every photo in .bmp between listing and selection, as FnApiRunner's
  multi-threaded data plane did: listed, never selected."""
  pack = select._PackByShard.process  # pylint: disable=protected-access

  def process(dofn, uri):
    if not uri.endswith('.bmp'):
      yield from pack(dofn, uri)

  monkeypatch.setattr(select._PackByShard, 'process', process)  # pylint: disable=protected-access


def drop_in_writer(monkeypatch):
  """Writes each labels part one row short while reporting it whole."""
  rows_to_table = write.rows_to_table

  def short_table(rows, schema):
    return rows_to_table(rows[:-1] if schema.names[1] == 'label' else rows, schema)

  monkeypatch.setattr(write, 'rows_to_table', short_table)


def lose_a_part(monkeypatch):
  """Deletes each labels part right after its writer reported it committed."""
  write_part = WriteParquetParts._write  # pylint: disable=protected-access

  def write_then_lose(writer):
    committed = write_part(writer)
    if writer._kind == LABELS:  # pylint: disable=protected-access
      os.remove(committed.path)
    return committed

  monkeypatch.setattr(WriteParquetParts, '_write', write_then_lose)


@pytest.mark.parametrize('drop, problem', [
    (drop_before_selection, 'came out of the selection step'),
    (drop_in_writer, 'the output parts hold'),
    (lose_a_part, 'parts that writers committed are gone'),
])
def test_an_output_short_of_its_input_exits_4_and_says_how_many(
    drop, problem, listing, model_dir, tmp_path, monkeypatch, capsys):
  path, uris = listing
  output = tmp_path / 'out'
  drop(monkeypatch)
  status = label_images_here('--input', path, '--output', output, '--rows_per_file', 100,
                             *model_args(model_dir))
  assert status == run.EXIT_INCOMPLETE
  missing = len(uris) - len(output_uris(output))
  assert missing >= (5 if drop is drop_before_selection else 1)
  message = capsys.readouterr().err
  assert f'{missing} missing' in message and problem in message
  manifest = last_run(output)
  assert manifest['accounting']['complete'] is False
  assert manifest['counts']['unaccounted'] == missing
