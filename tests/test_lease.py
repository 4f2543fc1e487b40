"""One writer per output directory: two runs into one directory, a holder killed, the lease on
every kind of store (local flock, the GCS emulator, moto's S3, Azurite)."""

import datetime
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import boto3
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from azure.storage.blob import BlobServiceClient

from conftest import AZURITE_ACCOUNT, PHOTOS_DIR, ROOT
from http_server import ImageServer
from pipeline import lease, report, results
from test_cli import label_images, model_args
from transforms.files import exists, read_bytes, write_bytes

COPIES = 12  # of each photo
# Photos served after SLOW_S seconds each, one connection at a time: the run holding the
# lease is still running when the test kills it, however fast the machine.
SLOW_PHOTOS = 3


@pytest.fixture(scope='module')
def photo_list(tmp_path_factory, shared_fixtures):
  """A .txt list of COPIES copies of each photo and SLOW_PHOTOS slow http URIs; yields it and
  the number of URIs."""
  folder = tmp_path_factory.mktemp('copies')
  uris = []
  for name in sorted(os.listdir(PHOTOS_DIR)):
    data = open(os.path.join(PHOTOS_DIR, name), 'rb').read()
    for copy in range(COPIES):
      (folder / f'{copy:02d}-{name}').write_bytes(data)
      uris.append(str(folder / f'{copy:02d}-{name}'))
  server = ImageServer(PHOTOS_DIR).start()
  slow = sorted(os.listdir(PHOTOS_DIR))[:SLOW_PHOTOS]
  uris += [f'{server.base_url}/slow/{name}' for name in slow]
  listing = folder / 'uris.txt'
  listing.write_text('\n'.join(uris) + '\n')
  yield listing, len(uris)
  server.shutdown()


def _start(args, env=None):
  return subprocess.Popen([sys.executable, '-m', 'pipeline.run', *map(str, args)], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)


def _rows_and_distinct_uris(output):
  uris = [uri for batch in results.read_batches(
      [path for paths in results.finished_parts(output).values() for path in paths], ['uri'])
          for uri in batch.column('uri').to_pylist()]
  return len(uris), len(set(uris))


def _wait_for_holder(output, process, deadline_s=300):
  """Waits until `process` holds the lease on output (and has written into it)."""
  deadline = time.monotonic() + deadline_s
  while True:
    held, holder = lease.held_by(output)
    if held and holder and holder.pid == process.pid and results.part_paths(output):
      return
    assert process.poll() is None, process.communicate()
    assert time.monotonic() < deadline
    time.sleep(0.1)


def _two_runs_then_a_kill_then_resume(args, output, uri_count, env=None):
  """Two runs started together into one directory: one labels, the other is refused at once.
  The one labelling is killed with SIGKILL partway; a --resume run takes over and finishes:
  every URI once. Returns the stderr of the run that took over."""
  first, second = _start(args, env), _start(args + ['--resume'], env)
  started = time.monotonic()
  refused = None
  while refused is None:
    refused = next((p for p in (first, second) if p.poll() is not None), None)
    time.sleep(0.05)
  out, err = refused.communicate()
  assert refused.returncode == 2, err
  assert f'{output} is being written by run ' in err and 'Traceback' not in err
  assert len(err.strip().splitlines()) == 1
  holder = second if refused is first else first
  assert holder.poll() is None, 'both runs ended: neither was refused while the other ran'
  # Refused at once: before the holder has got far, in about one start-up's time.
  assert time.monotonic() - started < 120
  _wait_for_holder(output, holder)
  os.killpg(holder.pid, signal.SIGKILL)
  holder.wait()

  resumed = label_images(*args, '--resume', env=env)
  assert resumed.returncode == 0, resumed.stderr
  rows, distinct = _rows_and_distinct_uris(output)
  assert rows == distinct == uri_count
  manifest = results.read_manifest(output)
  assert manifest['totals']['uris'] == manifest['totals']['distinct_uris'] == rows
  return resumed.stderr


def _args(photo_list, output, model_dir):
  return ['--input', photo_list[0], '--output', output, '--rows_per_file', 5,
          '--http_connections_per_host', 1, *model_args(model_dir)]


def test_one_writer_locally_and_a_killed_one_gives_the_directory_back(
    photo_list, model_dir, tmp_path):
  output = str(tmp_path / 'out')
  _two_runs_then_a_kill_then_resume(_args(photo_list, output, model_dir), output, photo_list[1])
  assert lease.held_by(output) == (False, None)


def test_one_writer_on_gcs_and_a_killed_one_is_taken_over(photo_list, model_dir, gcs_bucket):
  _, bucket_uri = gcs_bucket
  output = f'{bucket_uri}/out'
  took_over = _two_runs_then_a_kill_then_resume(_args(photo_list, output, model_dir), output,
                                                photo_list[1])
  assert f'took over {output} from run ' in took_over
  assert not exists(lease.lease_path(output))  # given back at the end


def _empty_location(kind, request, tmp_path, monkeypatch):
  """An empty output location of a kind, with Beam's filesystems set to reach it."""
  if kind == 'local':
    return str(tmp_path / 'out')
  if kind == 'gs':
    return request.getfixturevalue('gcs_bucket')[1] + '/out'
  if kind == 's3':
    endpoint = request.getfixturevalue('s3_server')
    bucket = f'leases-{secrets.token_hex(4)}'
    boto3.client('s3', endpoint_url=endpoint).create_bucket(Bucket=bucket)
    FileSystems.set_options(PipelineOptions(['--s3_endpoint_url', endpoint]))
    return f's3://{bucket}/out'
  connection = request.getfixturevalue('azurite')
  monkeypatch.setenv('AZURE_STORAGE_CONNECTION_STRING', connection)
  container = f'leases-{secrets.token_hex(4)}'
  BlobServiceClient.from_connection_string(connection).create_container(container)
  FileSystems.set_options(PipelineOptions([]))
  return f'azfs://{AZURITE_ACCOUNT}/{container}/out'


@pytest.fixture(params=['local', 'gs', 's3', 'azfs'])
def output_dir(request, tmp_path, monkeypatch):
  return _empty_location(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=['gs', 's3', 'azfs'])
def object_store_dir(request, tmp_path, monkeypatch):
  """Where a lease is an object with a heartbeat (a local one is a lock the kernel gives
  back)."""
  return _empty_location(request.param, request, tmp_path, monkeypatch)


def _take(output_dir, run_id='r1'):
  return lease.take_lease(output_dir, run_id, report.now(), job_in_process=True)


def test_a_held_directory_is_refused_and_free_again_once_given_back(output_dir):
  first = _take(output_dir)
  with pytest.raises(lease.LeaseHeld, match=r'is being written by run r1 \(host '):
    _take(output_dir, 'r2')
  held, holder = lease.held_by(output_dir)
  assert held and holder.run_id == 'r1' and holder.pid == os.getpid()
  assert 'still being written by run r1' in lease.still_written_warning(output_dir)
  first.release()
  assert lease.held_by(output_dir) == (False, None)
  assert lease.still_written_warning(output_dir) is None
  _take(output_dir, 'r3').release()


def _write_lease(output_dir, **changes):
  """A lease file as a holder that is gone would have left it."""
  holder = lease.Holder('gone', 'another-host', 1, '2026-01-01T00:00:00+00:00',
                        report.now().isoformat(), True)._replace(**changes)
  write_bytes(lease.lease_path(output_dir), holder.to_bytes())


def test_a_lease_without_heartbeat_is_taken_over_and_a_fresh_one_is_not(object_store_dir,
                                                                        capsys):
  output_dir = object_store_dir
  _write_lease(output_dir)
  with pytest.raises(lease.LeaseHeld, match='run gone'):
    _take(output_dir)
  silent = report.now() - datetime.timedelta(seconds=lease.STALE_AFTER_S + 1)
  _write_lease(output_dir, heartbeat_at=silent.isoformat())
  taken = _take(output_dir)
  assert f'took over {output_dir} from run gone' in capsys.readouterr().err
  assert lease.held_by(output_dir)[1].run_id == 'r1'
  taken.release()
  assert not exists(lease.lease_path(output_dir))


def _soon(condition, within_s=20):
  deadline = time.monotonic() + within_s
  while not condition():
    assert time.monotonic() < deadline
    time.sleep(0.05)


def test_the_holder_renews_its_lease_and_a_taker_in_between_wins(object_store_dir,
                                                                  monkeypatch):
  output_dir = object_store_dir
  monkeypatch.setattr(lease, 'RENEW_S', 0.2)
  taken = _take(output_dir)
  first_beat = lease.held_by(output_dir)[1].heartbeat_at
  _soon(lambda: lease.held_by(output_dir)[1].heartbeat_at > first_beat)
  assert taken.lost is None
  # Another run took it while this one was taken for dead: the next renewal fails, the run
  # knows (it exits 4), and giving back leaves the other run's lease alone.
  _write_lease(output_dir, run_id='other')
  _soon(lambda: taken.lost is not None)
  assert 'lost the lease on' in taken.lost and 'run other' in taken.lost
  taken.release()
  assert lease.held_by(output_dir)[1].run_id == 'other'


def test_a_lease_this_run_already_wrote_is_its_own(object_store_dir):
  """A create whose answer was lost and that the store's client retried finds the run's own
  lease: the run goes on, rather than being refused by itself."""
  holder = lease.Holder('r1', socket.gethostname(), os.getpid(), report.now().isoformat(),
                        report.now().isoformat(), True)
  write_bytes(lease.lease_path(object_store_dir), holder.to_bytes())
  _take(object_store_dir, 'r1').release()
  assert lease.held_by(object_store_dir) == (False, None)


def test_a_missing_bucket_is_not_taken_for_a_holder(object_store_dir):
  scheme, rest = object_store_dir.split('://')
  if scheme == 'azfs':
    account, _, _ = rest.split('/', 2)
    missing = f'azfs://{account}/no-such-container/out'
  else:
    missing = f'{scheme}://no-such-bucket-{secrets.token_hex(3)}/out'
  with pytest.raises(lease.LeaseError, match='cannot take the lease on') as refused:
    _take(missing)
  assert not isinstance(refused.value, lease.LeaseHeld)


def test_a_local_lease_file_names_its_holder_and_goes_with_it(tmp_path):
  output = str(tmp_path / 'out')
  taken = _take(output)
  recorded = json.loads(read_bytes(lease.lease_path(output)))
  assert recorded['run_id'] == 'r1' and recorded['pid'] == os.getpid()
  taken.release()
  assert not os.path.exists(output)  # made for the lease, and nothing else written there
  os.makedirs(output)
  _take(output).release()
  assert os.listdir(output) == []
  # One that a killed holder left, unlocked, is taken.
  with open(lease.lease_path(output), 'wb') as f:
    f.write(json.dumps(recorded).encode())
  _take(output, 'r2').release()


def test_report_of_a_directory_being_written_warns(model_dir, tmp_path):
  output = tmp_path / 'out'
  labelled = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                          *model_args(model_dir))
  assert labelled.returncode == 0, labelled.stderr
  taken = _take(str(output), 'still-running')
  try:
    shown = label_images('report', output)
  finally:
    taken.release()
  assert shown.returncode == 0, shown.stderr
  assert 'warning: ' in shown.stderr and 'still being written by run still-running' in (
      shown.stderr)


def test_rows_outnumbering_uris_are_an_accounting_problem(model_dir, tmp_path):
  output = tmp_path / 'out'
  labelled = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                          *model_args(model_dir))
  assert labelled.returncode == 0, labelled.stderr
  part = results.part_paths(str(output))[0]
  copied = os.path.join(str(output), 'labels-copied-in.parquet')
  pq.write_table(pq.read_table(part), copied)
  rows = pq.read_metadata(copied).num_rows
  totals = report.directory_totals(str(output))
  assert totals['uris'] == totals['distinct_uris'] + rows
  assert report.repeated_uri_problems(totals) == [
      f"the parts hold {totals['uris']:,} rows for {totals['distinct_uris']:,} distinct URIs: "
      f'{rows:,} rows repeat a URI']
  shown = label_images('report', output)
  assert f'{rows:,} rows repeat a URI' in shown.stdout + shown.stderr


def test_each_store_writes_the_lease_only_on_its_condition(object_store_dir):
  """What makes two racing runs end with one holder: create only where absent, rewrite and
  delete only the version read, answered by the store itself."""
  path = lease.lease_path(object_store_dir)
  # pylint: disable=protected-access
  store = lease._OBJECT_STORES[FileSystems.get_scheme(path)](path, lease._filesystem_options())
  first = store.create(b'first')
  with pytest.raises(lease._Conflict):
    store.create(b'second')
  second = store.replace(b'second', first)
  with pytest.raises(lease._Conflict):
    store.replace(b'third', first)
  store.delete(first)  # a stale version: the lease stays
  assert store.read() == (b'second', second)
  store.delete(second)
  assert store.read() is None
