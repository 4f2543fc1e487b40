"""Expanding the --input argument into the distinct image URIs to label.

INPUT is one of:
  - a glob of image files, local or on any Beam filesystem (gs://bucket/photos/**.jpg);
  - a folder: every file under it, at any depth, but hidden ones (a local directory, or a
    URI ending in '/': gs://bucket/photos/);
  - a .txt file with one URI per line (blank lines ignored);
  - a .csv or .tsv file with a header row that has a `uri` column (in any case);
  - a .parquet file with a `uri` column (in any case) of strings or UTF-8 bytes.

Local paths, given or listed, are stored in one form (read.canonical_uri): absolute against
the driver's current directory, normalised. Other URIs are kept as given.
"""

import csv
import io
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.fileio import EmptyMatchTreatment

from transforms import metrics
from transforms.files import matching_paths, open_file
from transforms.read import canonical_uri, local_path

URI_COLUMN = 'uri'
LIST_FORMATS = {'.txt': 'text', '.csv': 'csv', '.tsv': 'tsv', '.parquet': 'parquet'}
*_OTHER_SUFFIXES, _LAST_SUFFIX = LIST_FORMATS
LIST_SUFFIXES = f'{", ".join(_OTHER_SUFFIXES)} or {_LAST_SUFFIX}'  # for messages
_DELIMITERS = {'csv': ',', 'tsv': '\t'}
FOLDER, GLOB = 'folder', 'glob'


def list_format(path):
  """'text', 'csv', 'tsv' or 'parquet' for a list of URIs, told by its name; else None."""
  lower = path.lower()
  return next((kind for suffix, kind in LIST_FORMATS.items() if lower.endswith(suffix)), None)


def input_format(input_spec):
  """FOLDER, a list's format, or GLOB (which one image's own path is too)."""
  path = local_path(input_spec)
  if input_spec.endswith('/') or (path is not None and os.path.isdir(path)):
    return FOLDER
  return list_format(input_spec) or GLOB


def match_pattern(input_spec, kind):
  """The glob that lists a GLOB or FOLDER input's files."""
  return input_spec.rstrip('/') + '/**' if kind == FOLDER else input_spec


def is_folder_image(path, folder):
  """Whether a file that the folder's match_pattern matched is to be labelled: not hidden (its
  name or a folder's on its way starts with '.', as .DS_Store, .git/), nor the empty object
  that stands for a folder in a bucket (a name ending in '/')."""
  under_folder = path[len(folder.rstrip('/')) + 1:]
  return not path.endswith('/') and not any(
      name.startswith('.') for name in under_folder.split('/'))


def _text(raw):
  return io.TextIOWrapper(raw, encoding='utf-8-sig', newline='')


def _uri_column(path, names):
  """The name of the list's uri column, in whatever case it is written."""
  if URI_COLUMN in names:
    return URI_COLUMN
  found = [name for name in names if name.strip().lower() == URI_COLUMN]
  if len(found) != 1:
    what = f'several {URI_COLUMN!r} columns' if found else f'no {URI_COLUMN!r} column'
    raise ValueError(f'{path} has {what}; its columns are {list(names)}')
  return found[0]


def _parquet_uri_column(path, schema):
  name = _uri_column(path, schema.names)
  column_type = schema.field(name).type
  value_type = column_type.value_type if pa.types.is_dictionary(column_type) else column_type
  if not any(is_type(value_type) for is_type in (pa.types.is_string, pa.types.is_large_string,
                                                 pa.types.is_binary, pa.types.is_large_binary)):
    raise ValueError(f'{path}: its {name!r} column holds {column_type}, not strings')
  return name


def check_list(path):
  """Raises ValueError, in one line naming the list, where it has no uri column to read;
  reads its header or schema only. A missing file raises OSError."""
  kind = list_format(path)
  if kind == 'text':
    return
  with open_file(path) as raw:
    try:
      header = (pq.ParquetFile(raw).schema_arrow if kind == 'parquet'
                else next(csv.reader(_text(raw), delimiter=_DELIMITERS[kind]), []))
    except (ValueError, csv.Error) as e:  # not Parquet at all, or not UTF-8 text
      raise ValueError(f'{path} cannot be read as a {kind} list: {e}') from e
  (_parquet_uri_column if kind == 'parquet' else _uri_column)(path, header)


def read_listed_uris(path):
  """Yields the entries of a .txt, .csv, .tsv or .parquet list, as written; a missing file
  raises."""
  kind = list_format(path)
  with open_file(path) as raw:
    if kind == 'parquet':
      listing = pq.ParquetFile(raw)
      column = _parquet_uri_column(path, listing.schema_arrow)
      for batch in listing.iter_batches(columns=[column], use_threads=False):
        yield from batch.column(0).cast(pa.string()).to_pylist()
      return
    text = _text(raw)
    if kind == 'text':
      yield from text
      return
    reader = csv.DictReader(text, delimiter=_DELIMITERS[kind])
    column = _uri_column(path, reader.fieldnames or [])
    for record in reader:
      yield record[column]


def listed_uri(entry, base_dir):
  """The URI stored for an entry of a listing, relative paths taken from base_dir; '' for a
  blank entry."""
  entry = (entry or '').strip()
  return canonical_uri(entry, base_dir) if entry else ''


def list_input_uris(input_spec):
  """The non-blank URIs named by INPUT, read here rather than in a pipeline."""
  base_dir = os.getcwd()
  input_spec = canonical_uri(input_spec, base_dir)
  kind = input_format(input_spec)
  if kind in (GLOB, FOLDER):
    entries = [path for path in matching_paths(match_pattern(input_spec, kind))
               if kind == GLOB or is_folder_image(path, input_spec)]
  else:
    entries = read_listed_uris(input_spec)
  return [uri for uri in (listed_uri(entry, base_dir) for entry in entries) if uri]


class ListImageUris(beam.PTransform):
  """PBegin -> the non-blank image URIs named by INPUT, duplicates included.

  Counters: uris_listed (non-blank entries), blank_entries.
  """

  def __init__(self, input_spec):
    super().__init__()
    # Built in the driver: relative paths are the user's, never a worker's directory.
    self._base_dir = os.getcwd()
    self._input_spec = canonical_uri(input_spec, self._base_dir)

  def expand(self, pbegin):
    kind = input_format(self._input_spec)
    if kind in (GLOB, FOLDER):
      uris = (pbegin
              | 'Match' >> fileio.MatchFiles(match_pattern(self._input_spec, kind),
                                             empty_match_treatment=EmptyMatchTreatment.DISALLOW)
              | 'Path' >> beam.Map(lambda metadata: metadata.path))
      if kind == FOLDER:
        uris = uris | 'SkipHidden' >> beam.Filter(is_folder_image, self._input_spec)
    else:
      uris = (pbegin
              | 'ListFile' >> beam.Create([self._input_spec])
              | 'ReadList' >> beam.FlatMap(read_listed_uris))
    return uris | 'SkipBlank' >> beam.ParDo(_StripAndCount(self._base_dir))


class _StripAndCount(beam.DoFn):
  """Entries -> the URIs stored for them (listed_uri); blank ones are counted, not passed."""

  def __init__(self, base_dir):
    self._base_dir = base_dir
    self._listed = metrics.counter('uris_listed')
    self._blank = metrics.counter('blank_entries')

  def process(self, entry):
    uri = listed_uri(entry, self._base_dir)
    if uri:
      self._listed.inc()
      metrics.PROCESS_TALLY.add('uris_listed')
      yield uri
    else:
      self._blank.inc()
