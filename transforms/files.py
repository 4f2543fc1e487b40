"""Listing, reading, writing and deleting files on any Beam filesystem, byte for byte.

Every write goes through a temporary name beside its file ('.NAME-TAG.tmp'), renamed into
place once complete: a reader never sees half a file, and a failed write leaves at most a
temporary file, which the next run into the directory deletes."""

import contextlib
import uuid

import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems


def file_name(path):
  return FileSystems.split(path)[1]


def matching_paths(pattern):
  """The paths matching a glob, none where its directory does not exist; a listing that
  fails raises BeamIOError (the step that asked is retried, rather than seeing nothing)."""
  return [metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list]


def exists(path):
  """Whether a file exists, found by listing what starts with its name: Beam's Azure
  filesystem raises on a missing blob where it should answer False, in exists() and in a
  match of the exact name alike."""
  name = file_name(path)
  return any(file_name(found) == name for found in matching_paths(path + '*'))


def delete_paths(paths):
  """Deletes what exists of `paths`: a retried step finds some already gone."""
  for path in paths:
    try:
      FileSystems.delete([path])
    except BeamIOError:
      if exists(path):
        raise


def open_file(path):
  """For reading, as stored: a name ending in .gz must not be inflated behind our back."""
  return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path):
  with open_file(path) as f:
    return f.read()


def temp_path_for(path):
  directory, name = FileSystems.split(path)
  return FileSystems.join(directory, f'.{name}-{uuid.uuid4().hex[:8]}.tmp')


@contextlib.contextmanager
def created_atomically(path):
  """A writable file that appears at `path` complete, or not at all."""
  temp_path = temp_path_for(path)
  try:
    with FileSystems.create(temp_path) as f:
      yield f
  except BaseException:
    delete_paths([temp_path])
    raise
  FileSystems.rename([temp_path], [path])


def write_bytes(path, data):
  with created_atomically(path) as f:
    f.write(data)


def read_parquet(path, columns=None):
  # One thread: pyarrow's reader threads calling back into a Python file object can still be
  # running when the interpreter exits, which then aborts ("terminate called ...").
  with open_file(path) as f:
    return pq.read_table(f, columns=columns, use_threads=False)


def parquet_rows(path):
  """The row count in a Parquet file's footer."""
  with open_file(path) as f:
    return pq.ParquetFile(f).metadata.num_rows
