"""One writer per output directory: the lease on OUTPUT_DIR/_lease.json.

A command that writes into an output directory (a labelling run, relabel) takes the lease
before its first write there and gives it back at its end; a second one is refused before
any work, naming the holder. How it is held depends on where the directory is:

- local: an exclusive flock on _lease.json, which the kernel gives back when the holder's
  process ends, however it ends (SIGKILL included). The file names its holder; the holder
  removes it as it gives the lease back. One that a killed holder left is unlocked: the
  next run takes it.
- gs://, s3://, azfs://: the object exists while it is held. It is created only where absent
  (GCS ifGenerationMatch=0; S3 and Azure If-None-Match: *), and rewritten or deleted only
  where it is still the version its holder wrote (the generation; If-Match on the ETag), so
  that of two runs racing for it exactly one wins. The holder rewrites it every RENEW_S
  seconds (a heartbeat, from the driver, for as long as it waits for its job); a lease not
  renewed for STALE_AFTER_S, or whose holder ran on this host in a process that is gone, is
  taken over by the next run, with a line saying so.
- any other filesystem: no lease (Beam exposes no conditional write there); a line says so.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

LEASE_FILE = '_lease.json'
RENEW_S = 30
STALE_AFTER_S = 300


class LeaseError(Exception):
  """The lease cannot be taken: its store failed, or (LeaseHeld) another run holds it."""


class LeaseHeld(LeaseError):
  """Another live run holds the lease."""


class _Conflict(Exception):
  """A conditional write found another version than the one it was conditioned on."""


class Holder(NamedTuple):
  """Who holds a lease, as its file records it."""
  run_id: str
  host: str
  pid: int
  started_at: str
  heartbeat_at: str
  # Whether the job runs in the holder's process (the local runner): then that process's end
  # is the job's. A remote job may outlive its driver.
  job_in_process: bool

  @classmethod
  def parse(cls, data):
    """The holder recorded in a lease file's bytes; None where they are not one (empty, or
    written halfway by a holder that has just taken a local lease)."""
    try:
      return cls(**{name: json.loads(data)[name] for name in cls._fields})
    except (ValueError, KeyError, TypeError):
      return None

  def to_bytes(self):
    return json.dumps(self._asdict(), indent=2).encode('utf-8')

  def describe(self):
    return (f'run {self.run_id} (host {self.host}, pid {self.pid}, started {self.started_at}, '
            f'last heard from {self.heartbeat_at})')

  def silent_for_s(self, now):
    return (now - datetime.datetime.fromisoformat(self.heartbeat_at)).total_seconds()

  def is_dead(self, now):
    """Whether the holder can be taken for gone: it has not renewed the lease for
    STALE_AFTER_S, or it ran on this host in a process that no longer exists."""
    return self.silent_for_s(now) > STALE_AFTER_S or (
        self.job_in_process and self.host == socket.gethostname()
        and not _process_exists(self.pid))


def _process_exists(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def _now():
  return datetime.datetime.now(datetime.timezone.utc)


def _this_holder(run_id, started_at, job_in_process):
  return Holder(run_id, socket.gethostname(), os.getpid(), started_at.isoformat(),
                _now().isoformat(), job_in_process)


def lease_path(output_dir):
  return FileSystems.join(output_dir, LEASE_FILE)


def _filesystem_options():
  """The options the driver gave Beam's filesystems (FileSystems.set_options): the same
  credentials and endpoints reach the lease's store."""
  return FileSystems._pipeline_options or PipelineOptions()  # pylint: disable=protected-access


@contextlib.contextmanager
def holding_lease(output_dir, run_id, started_at, job_in_process):
  """Holds the lease on output_dir for the duration of the block; LeaseHeld, before the
  block runs, where another live run holds it."""
  lease = take_lease(output_dir, run_id, started_at, job_in_process)
  try:
    yield lease
  finally:
    lease.release()


def take_lease(output_dir, run_id, started_at, job_in_process):
  """The lease on output_dir, taken for this run (whose job runs in this process, or on a
  remote runner); LeaseHeld where another live run holds it. Give it back with .release()."""
  path = lease_path(output_dir)
  holder = _this_holder(run_id, started_at, job_in_process)
  scheme = FileSystems.get_scheme(path)
  if scheme is None:
    return _LocalLease.take(path, holder)
  store = _OBJECT_STORES.get(scheme)
  if store is None:
    print(f'label-images: no lease on {output_dir}: {scheme}:// offers no conditional write; '
          'make sure no other run writes there at the same time', file=sys.stderr)
    return _NoLease()
  return _ObjectLease.take(store(path, _filesystem_options()), holder, output_dir)


def held_by(output_dir):
  """(whether a live run holds the lease on output_dir, its Holder where it is recorded)."""
  path = lease_path(output_dir)
  scheme = FileSystems.get_scheme(path)
  if scheme is None:
    return _LocalLease.held_by(path)
  store = _OBJECT_STORES.get(scheme)
  found = store(path, _filesystem_options()).read() if store else None
  if found is None:
    return False, None
  holder = Holder.parse(found[0])
  return holder is None or not holder.is_dead(_now()), holder


def _who(holder):
  return holder.describe() if holder else 'another run (it has just started)'


def held_message(output_dir, holder):
  """The refusal of a second writer, and how to go on."""
  return (f'{output_dir} is being written by {_who(holder)}. Wait for that run to end, or '
          'write into another directory; a run that died gives the directory back by itself '
          f'(at once locally, after {STALE_AFTER_S // 60} minutes without a heartbeat on object '
          'stores).')


def still_written_warning(output_dir):
  """For the commands that read a directory: a line where a run is still writing it."""
  held, holder = held_by(output_dir)
  if not held:
    return None
  return (f'label-images: warning: {output_dir} is still being written by {_who(holder)}: '
          'what follows describes the rows committed so far')


class _NoLease:

  lost = None

  def release(self):
    pass


# flock's answers on a filesystem that offers no locks (some network mounts).
_NO_LOCKS = (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL)
# How long a local run tries for the lock before it is refused: a reader checking whether
# the directory is being written holds it shared for a moment.
_LOCAL_PATIENCE_S = 2.0


class _LocalLease:
  """An exclusive flock on the lease file, held by an open descriptor of this process."""

  lost = None  # the kernel never takes a lock from a live process

  def __init__(self, fd, path, made_folder):
    self._fd = fd
    self._path = path
    self._made_folder = made_folder  # removed at the end where the run wrote nothing there

  @classmethod
  def take(cls, path, holder):
    folder = os.path.dirname(path) or '.'
    made_folder = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    while True:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        _lock_within(fd, _LOCAL_PATIENCE_S)
      except BlockingIOError:
        os.close(fd)
        raise LeaseHeld(held_message(os.path.dirname(path), cls.held_by(path)[1])) from None
      except OSError as e:
        os.close(fd)
        if e.errno not in _NO_LOCKS:
          raise
        print(f'label-images: no lease on {os.path.dirname(path)}: its filesystem offers no '
              'locks; make sure no other run writes there at the same time', file=sys.stderr)
        return _NoLease()
      if _names_same_file(fd, path):
        break
      os.close(fd)  # its holder removed it as it gave it back: take the one there now
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.to_bytes(), 0)
    return cls(fd, path, made_folder)

  @staticmethod
  def _locked_descriptor(path):
    """An open descriptor of path where another process holds its lock, else None."""
    try:
      fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
      return None
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return fd
    except OSError:  # no locks on this filesystem: nothing to tell
      pass
    os.close(fd)
    return None

  @classmethod
  def held_by(cls, path):
    fd = cls._locked_descriptor(path)
    if fd is None:
      return False, None
    with os.fdopen(fd, 'rb') as f:
      return True, Holder.parse(f.read())

  def release(self):
    if self._fd is None:
      return
    try:
      # While locked: a run that opened it meanwhile finds it gone (_names_same_file).
      if _names_same_file(self._fd, self._path):
        os.unlink(self._path)
    except OSError as e:
      print(f'label-images: warning: could not remove {self._path}: {e}', file=sys.stderr)
    finally:
      os.close(self._fd)  # which unlocks it
      self._fd = None
    if self._made_folder:  # a run refused before its first write leaves no folder behind
      with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(self._path))


def _lock_within(fd, patience_s):
  """An exclusive flock on fd, tried for patience_s; BlockingIOError where still held."""
  deadline = time.monotonic() + patience_s
  while True:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return
    except BlockingIOError:
      if time.monotonic() > deadline:
        raise
      time.sleep(0.1)


def _names_same_file(fd, path):
  try:
    return os.path.samestat(os.fstat(fd), os.stat(path))
  except FileNotFoundError:
    return False


class _ObjectLease:
  """A lease object on a store with conditional writes, renewed by a heartbeat thread."""

  def __init__(self, store, holder, token, output_dir):
    self._store = store
    self._holder = holder
    self._token = token
    self._output_dir = output_dir
    self._stop = threading.Event()
    self.lost = None  # once another run took the lease: a line that says so
    self._heartbeat = threading.Thread(target=self._renew, name='lease-heartbeat', daemon=True)
    self._heartbeat.start()

  @classmethod
  def take(cls, store, holder, output_dir):
    try:
      return cls._take(store, holder, output_dir)
    except (LeaseHeld, _Conflict):
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise LeaseError(f'cannot take the lease on {output_dir}: {" ".join(str(e).split())}'
                       ) from e

  @classmethod
  def _take(cls, store, holder, output_dir):
    for _ in range(3):  # each conflict means another run moved first: look again
      found = store.read()
      try:
        if found is None:
          return cls(store, holder, store.create(holder.to_bytes()), output_dir)
        data, token = found
        earlier = Holder.parse(data)
        if _is_ours(earlier, holder):  # a write of ours that the store answered twice
          return cls(store, holder, token, output_dir)
        now = _now()
        if earlier is not None and not earlier.is_dead(now):
          raise LeaseHeld(held_message(output_dir, earlier))
        lease = cls(store, holder, store.replace(holder.to_bytes(), token), output_dir)
        print(f'label-images: took over {output_dir} from '
              f'{earlier.describe() if earlier else "an unreadable lease"}, silent for '
              f'{earlier.silent_for_s(now) if earlier else 0:.0f} s', file=sys.stderr)
        return lease
      except _Conflict:
        continue
    found = store.read()
    raise LeaseHeld(held_message(output_dir, Holder.parse(found[0]) if found else None))

  def _renew(self):
    while not self._stop.wait(RENEW_S):
      beat = self._holder._replace(heartbeat_at=_now().isoformat())
      try:
        self._token = self._store.replace(beat.to_bytes(), self._token)
      except _Conflict:
        found = self._store.read()
        holder = Holder.parse(found[0]) if found else None
        if _is_ours(holder, self._holder):  # our own write, retried by the store's client
          self._token = found[1]
          continue
        self.lost = (f'lost the lease on {self._output_dir} to {_who(holder)}: this run was '
                     f'taken for dead (no heartbeat for {STALE_AFTER_S} s), and another may '
                     'have written there since')
        print(f'label-images: warning: {self.lost}', file=sys.stderr)
        return
      except Exception as e:  # pylint: disable=broad-except
        # A store that fails a moment is tried again at the next beat.
        print(f'label-images: warning: could not renew the lease on {self._output_dir}: {e}',
              file=sys.stderr)

  def release(self):
    self._stop.set()
    self._heartbeat.join()
    if self.lost is not None:
      return
    try:
      self._store.delete(self._token)
    except Exception as e:  # pylint: disable=broad-except
      print(f'label-images: warning: could not give back the lease on {self._output_dir} '
            f'({e}): it lapses {STALE_AFTER_S // 60} minutes from now', file=sys.stderr)


def _is_ours(recorded, holder):
  return recorded is not None and (recorded.run_id, recorded.host, recorded.pid) == (
      holder.run_id, holder.host, holder.pid)


class _GcsStore:
  """gs://: preconditions on the object's generation (0: only where absent)."""

  def __init__(self, path, options):
    from apache_beam.io.gcp.gcsio import GcsIO, parse_gcs_path  # pylint: disable=import-outside-toplevel
    from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
    bucket, name = parse_gcs_path(path)
    self._bucket = GcsIO(pipeline_options=options).client.bucket(bucket)
    self._name = name
    self._changed = exceptions.PreconditionFailed
    self._changed_or_gone = (exceptions.PreconditionFailed, exceptions.NotFound)

  def read(self):
    blob = self._bucket.get_blob(self._name)
    if blob is None:
      return None
    generation = blob.generation
    try:
      return blob.download_as_bytes(if_generation_match=generation), generation
    except self._changed_or_gone:  # rewritten or deleted since: read it again
      return self.read()

  def _write(self, data, generation, conflicts):
    blob = self._bucket.blob(self._name)
    try:
      blob.upload_from_string(data, if_generation_match=generation)
    except conflicts as e:
      raise _Conflict() from e
    return blob.generation

  def create(self, data):
    return self._write(data, 0, self._changed)  # a missing bucket is no conflict: it raises

  def replace(self, data, token):
    return self._write(data, token, self._changed_or_gone)

  def delete(self, token):
    with contextlib.suppress(*self._changed_or_gone):
      self._bucket.blob(self._name).delete(if_generation_match=token)


class _S3Store:
  """s3://: PutObject with If-None-Match: * or If-Match: ETag; DeleteObject with If-Match."""

  def __init__(self, path, options):
    from apache_beam.io.aws.s3io import S3IO, parse_s3_path  # pylint: disable=import-outside-toplevel
    self._bucket, self._key = parse_s3_path(path)
    self._client = S3IO(options=options).client.client

  @staticmethod
  def _is_conflict(error):
    return error.response.get('Error', {}).get('Code') in (
        'PreconditionFailed', 'ConditionalRequestConflict', 'NoSuchKey', '412', '409', '404')

  def _call(self, method, **kwargs):
    from botocore.exceptions import ClientError  # pylint: disable=import-outside-toplevel
    try:
      return getattr(self._client, method)(Bucket=self._bucket, Key=self._key, **kwargs)
    except ClientError as e:
      if self._is_conflict(e):
        raise _Conflict() from e
      raise

  def read(self):
    try:
      response = self._call('get_object')
    except _Conflict:
      return None
    return response['Body'].read(), response['ETag']

  def create(self, data):
    return self._call('put_object', Body=data, IfNoneMatch='*')['ETag']

  def replace(self, data, token):
    return self._call('put_object', Body=data, IfMatch=token)['ETag']

  def delete(self, token):
    with contextlib.suppress(_Conflict):
      self._call('delete_object', IfMatch=token)


class _AzureStore:
  """azfs://: If-None-Match: * to create, If-Match on the ETag to rewrite or delete."""

  def __init__(self, path, options):
    from apache_beam.io.azure.blobstorageio import BlobStorageIO, parse_azfs_path  # pylint: disable=import-outside-toplevel
    container, blob = parse_azfs_path(path)
    self._blob = BlobStorageIO(pipeline_options=options).client.get_blob_client(container, blob)

  def read(self):
    from azure.core.exceptions import ResourceNotFoundError  # pylint: disable=import-outside-toplevel
    try:
      download = self._blob.download_blob()
      return download.readall(), download.properties.etag
    except ResourceNotFoundError:
      return None

  def _upload(self, data, conflicts, **conditions):
    try:
      return self._blob.upload_blob(data, **conditions)['etag']
    except conflicts as e:
      raise _Conflict() from e

  def create(self, data):
    from azure.core.exceptions import ResourceExistsError  # pylint: disable=import-outside-toplevel
    # A missing container is no conflict: it raises.
    return self._upload(data, ResourceExistsError, overwrite=False)

  def replace(self, data, token):
    from azure.core import MatchConditions  # pylint: disable=import-outside-toplevel
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError  # pylint: disable=import-outside-toplevel
    return self._upload(data, (ResourceModifiedError, ResourceNotFoundError), overwrite=True,
                        etag=token, match_condition=MatchConditions.IfNotModified)

  def delete(self, token):
    from azure.core import MatchConditions  # pylint: disable=import-outside-toplevel
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError  # pylint: disable=import-outside-toplevel
    with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
      self._blob.delete_blob(etag=token, match_condition=MatchConditions.IfNotModified)


_OBJECT_STORES = {'gs': _GcsStore, 's3': _S3Store, 'azfs': _AzureStore}
