"""Expanding the --input argument into the distinct image URIs to label.

INPUT is one of:
  - a glob of image files, local or on any Beam filesystem (gs://bucket/photos/**.jpg);
  - a .txt file with one URI per line (blank lines ignored);
  - a .csv file with a header row that has a `uri` column;
  - a .parquet file with a `uri` column.
"""

import csv
import io

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.fileio import EmptyMatchTreatment

from transforms import metrics
from transforms.files import matching_paths, open_file

URI_COLUMN = 'uri'


def input_format(input_spec):
  lower = input_spec.lower()
  for suffix, kind in (('.txt', 'text'), ('.csv', 'csv'), ('.parquet', 'parquet')):
    if lower.endswith(suffix):
      return kind
  return 'glob'


def read_listed_uris(path):
  """Yields the URIs listed in a .txt, .csv or .parquet file; a missing file raises."""
  kind = input_format(path)
  with open_file(path) as raw:
    if kind == 'parquet':
      listing = pq.ParquetFile(raw)
      _check_uri_column(path, listing.schema_arrow.names)
      for batch in listing.iter_batches(columns=[URI_COLUMN]):
        yield from batch.column(0).to_pylist()
      return
    text = io.TextIOWrapper(raw, encoding='utf-8-sig', newline='')
    if kind == 'text':
      yield from text
      return
    reader = csv.DictReader(text)
    _check_uri_column(path, reader.fieldnames or [])
    for record in reader:
      yield record[URI_COLUMN]


def list_input_uris(input_spec):
  """The non-blank URIs named by INPUT, read here rather than in a pipeline."""
  if input_format(input_spec) == 'glob':
    return matching_paths(input_spec)
  return [uri.strip() for uri in read_listed_uris(input_spec) if uri and uri.strip()]


def _check_uri_column(path, names):
  if URI_COLUMN not in names:
    raise ValueError(f'{path} has no {URI_COLUMN!r} column; its columns are {list(names)}')


class ListImageUris(beam.PTransform):
  """PBegin -> the non-blank image URIs named by INPUT, duplicates included.

  Counters: uris_listed (non-blank entries), blank_entries.
  """

  def __init__(self, input_spec):
    super().__init__()
    self._input_spec = input_spec

  def expand(self, pbegin):
    if input_format(self._input_spec) == 'glob':
      uris = (pbegin
              | 'Match' >> fileio.MatchFiles(
                  self._input_spec, empty_match_treatment=EmptyMatchTreatment.DISALLOW)
              | 'Path' >> beam.Map(lambda metadata: metadata.path))
    else:
      uris = (pbegin
              | 'ListFile' >> beam.Create([self._input_spec])
              | 'ReadList' >> beam.FlatMap(read_listed_uris))
    return uris | 'SkipBlank' >> beam.ParDo(_StripAndCount())


class _StripAndCount(beam.DoFn):

  def __init__(self):
    self._listed = metrics.counter('uris_listed')
    self._blank = metrics.counter('blank_entries')

  def process(self, uri):
    uri = (uri or '').strip()
    if uri:
      self._listed.inc()
      metrics.PROCESS_TALLY.add('uris_listed')
      yield uri
    else:
      self._blank.inc()
