"""Expanding the --input argument into the distinct image URIs to label.

INPUT is one of:
  - a glob of image files, local or on any Beam filesystem (gs://bucket/photos/**.jpg);
  - a .txt file with one URI per line (blank lines ignored);
  - a .csv file with a header row that has a `uri` column;
  - a .parquet file (or glob of them) with a `uri` column.
"""

import csv
import io

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadFromParquet

URI_COLUMN = 'uri'


def input_format(input_spec):
  lower = input_spec.lower()
  for suffix, kind in (('.txt', 'text'), ('.csv', 'csv'), ('.parquet', 'parquet')):
    if lower.endswith(suffix):
      return kind
  return 'glob'


def read_csv_uris(path):
  """Yields the `uri` column of a CSV file with a header row."""
  with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as raw:
    reader = csv.DictReader(io.TextIOWrapper(raw, encoding='utf-8-sig', newline=''))
    if URI_COLUMN not in (reader.fieldnames or []):
      raise ValueError(f'{path} has no {URI_COLUMN!r} column in its header: {reader.fieldnames}')
    for record in reader:
      yield record[URI_COLUMN]


class ListImageUris(beam.PTransform):
  """PBegin -> the distinct, non-blank image URIs named by INPUT."""

  def __init__(self, input_spec):
    super().__init__()
    self._input_spec = input_spec

  def expand(self, pbegin):
    kind = input_format(self._input_spec)
    if kind == 'glob':
      uris = (pbegin
              | 'Match' >> fileio.MatchFiles(self._input_spec)
              | 'Path' >> beam.Map(lambda metadata: metadata.path))
    elif kind == 'text':
      uris = pbegin | 'ReadLines' >> beam.io.ReadFromText(self._input_spec, validate=False)
    elif kind == 'csv':
      uris = (pbegin
              | 'CsvPath' >> beam.Create([self._input_spec])
              | 'ReadCsv' >> beam.FlatMap(read_csv_uris))
    else:
      uris = (pbegin
              | 'ReadParquet' >> ReadFromParquet(
                  self._input_spec, columns=[URI_COLUMN], validate=False)
              | 'Column' >> beam.Map(lambda record: record[URI_COLUMN]))
    return (uris
            | 'Strip' >> beam.Map(lambda uri: (uri or '').strip())
            | 'SkipBlank' >> beam.Filter(bool)
            | 'Distinct' >> beam.Distinct())
