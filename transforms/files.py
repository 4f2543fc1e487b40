"""Listing, reading and deleting the output's files on any Beam filesystem."""

import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems


def matching_paths(pattern):
  """The paths matching a glob, none where its directory does not exist; a listing that
  fails raises BeamIOError (the step that asked is retried, rather than seeing nothing)."""
  return [metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list]


def delete_paths(paths):
  """Deletes what exists of `paths`: a retried step finds some already gone."""
  for path in paths:
    try:
      FileSystems.delete([path])
    except BeamIOError:
      if FileSystems.exists(path):
        raise


def read_parquet(path, columns=None):
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    return pq.read_table(f, columns=columns)


def parquet_rows(path):
  """The row count in a Parquet file's footer."""
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    return pq.ParquetFile(f).metadata.num_rows
