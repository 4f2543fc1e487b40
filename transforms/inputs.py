"""Expanding the --input argument into the distinct image URIs to label.

INPUT is one of:
  - a glob of image files, local or on any Beam filesystem (gs://bucket/photos/**.jpg);
  - a folder: every file under it, at any depth, but hidden ones (a local directory, or a
    URI ending in '/': gs://bucket/photos/);
  - a .txt file with one URI per line (blank lines ignored);
  - a .csv or .tsv file with a header row that has a `uri` column (in any case);
  - a .parquet file with a `uri` column (in any case) of strings or UTF-8 bytes.

Local paths, given or listed, are stored in one form (read.canonical_uri): absolute against
the driver's current directory, normalised; a name that is not plain-safe (not UTF-8, a
control character, trailing whitespace) as its percent-encoded file:// URI. A listed path is
turned into that form in the step that lists it: Beam carries strings as UTF-8, which a
local name need not be. Other URIs are kept as given.

A list's entry that is not UTF-8 (a Parquet column of bytes, or a text list written in another
encoding) names a local file by its bytes where it is a local path; any other becomes an entry
that the read step refuses as invalid_uri (read.undecodable_entry), never a failed job.
"""

import csv
import glob
import io
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from transforms import metrics
from transforms.files import matching_paths, open_file
from transforms.read import beam_path, canonical_uri, local_path, undecodable_entry

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
  return list_format(input_spec if path is None else path) or GLOB


def match_pattern(input_spec, kind):
  """The glob, as Beam's filesystems take it, that lists a GLOB or FOLDER input's files. A
  local folder, or a local file given as a glob, is taken as named: `*`, `?` and `[` in its
  name are escaped."""
  path = local_path(input_spec)
  if path is None:
    return input_spec.rstrip('/') + '/**' if kind == FOLDER else input_spec
  if kind == FOLDER:
    return glob.escape(path.rstrip('/')) + '/**'
  return glob.escape(path) if os.path.isfile(path) else path


def is_folder_image(uri, folder):
  """Whether a file that the folder's match_pattern matched is to be labelled: not hidden (its
  name or a folder's on its way starts with '.', as .DS_Store, .git/), nor the empty object
  that stands for a folder in a bucket (a name ending in '/'). Either may be a stored URI or
  a path as listed."""
  path, folder = beam_path(uri), beam_path(folder)
  under_folder = path[len(folder.rstrip('/')) + 1:]
  return not path.endswith('/') and not any(
      name.startswith('.') for name in under_folder.split('/'))


def _text(raw, errors='strict'):
  """A list's text. read_listed_uris reads it with errors='surrogateescape': bytes that are
  not UTF-8 are kept, as Python keeps a file name's (os.fsdecode); check_list strictly."""
  return io.TextIOWrapper(raw, encoding='utf-8-sig', errors=errors, newline='')


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


class ListError(ValueError):
  """A list that is not of its format, or has no uri column to read."""


def check_list(path):
  """Raises ListError, in one line naming the list, where it is not of the format its name
  says or has no uri column to read; reads its header or schema only. A list that cannot be
  opened raises what its filesystem raises (OSError for a missing local file)."""
  kind = list_format(local_path(path) or path)
  if kind == 'text':
    return
  with open_file(beam_path(path)) as raw:
    try:
      header = (pq.ParquetFile(raw).schema_arrow if kind == 'parquet'
                else next(csv.reader(_text(raw), delimiter=_DELIMITERS[kind]), []))
    except (ValueError, csv.Error) as e:  # not Parquet at all, or not UTF-8 text
      raise ListError(f'{path} cannot be read as a {kind} list: {e}') from e
  try:
    (_parquet_uri_column if kind == 'parquet' else _uri_column)(path, header)
  except ValueError as e:
    raise ListError(str(e)) from None


def read_listed_uris(path, base_dir=None):
  """Yields the entries of a .txt, .csv, .tsv or .parquet list, as written, but those that are
  not UTF-8: one that is a local path as its stored URI (relative to base_dir, by default the
  current directory), any other as undecodable_entry. A missing file raises."""
  kind = list_format(local_path(path) or path)
  with open_file(beam_path(path)) as raw:
    if kind == 'parquet':
      listing = pq.ParquetFile(raw)
      column = _parquet_uri_column(path, listing.schema_arrow)
      for batch in listing.iter_batches(columns=[column], use_threads=False):
        yield from _parquet_entries(batch.column(0), base_dir)
      return
    text = _text(raw, errors='surrogateescape')
    if kind == 'text':
      entries = text
    else:
      reader = csv.DictReader(text, delimiter=_DELIMITERS[kind])
      column = _uri_column(path, reader.fieldnames or [])
      entries = (record[column] for record in reader)
    for entry in entries:
      yield _decoded_entry(entry, base_dir) if _is_undecoded(entry) else entry


def _parquet_entries(column, base_dir):
  """A Parquet batch's entries as text; bytes are UTF-8 but where _decoded_entry says."""
  try:
    return column.cast(pa.string()).to_pylist()
  except pa.ArrowInvalid:  # a value of a binary column is not UTF-8: each on its own
    return [_decoded_entry(value, base_dir) if isinstance(value, bytes) else value
            for value in column.to_pylist()]


def _is_undecoded(entry):
  """Whether text read with errors='surrogateescape' holds a byte that is not UTF-8."""
  try:
    entry.encode('utf-8')
  except UnicodeEncodeError:
    return True
  return False


def _decoded_entry(raw, base_dir):
  """A list entry given as bytes (or as text holding stray bytes as surrogates): as text
  where it is UTF-8; else, where it is a local path, that file's stored URI, which holds its
  bytes; else undecodable_entry."""
  if isinstance(raw, bytes):
    try:
      return raw.decode('utf-8')
    except UnicodeDecodeError:
      pass
  entry = (os.fsdecode(raw) if isinstance(raw, bytes) else raw).strip()
  if local_path(entry) is None:
    return undecodable_entry(entry)
  return canonical_uri(entry, os.getcwd() if base_dir is None else base_dir)


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
    entries = read_listed_uris(input_spec, base_dir)
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
      # The stored URI of each file, made in the step that lists it: Beam carries strings as
      # UTF-8, which a local name need not be.
      uris = (pbegin
              | 'Match' >> _MatchFiles(self._input_spec, kind)
              | 'Path' >> beam.Map(_stored_uri, self._base_dir))
      if kind == FOLDER:
        uris = uris | 'SkipHidden' >> beam.Filter(is_folder_image, self._input_spec)
    else:
      uris = (pbegin
              | 'ListFile' >> beam.Create([self._input_spec])
              | 'ReadList' >> beam.FlatMap(read_listed_uris, self._base_dir))
    return uris | 'SkipBlank' >> beam.ParDo(_StripAndCount(self._base_dir))


def _stored_uri(metadata, base_dir):
  return canonical_uri(metadata.path, base_dir)


class _MatchFiles(beam.PTransform):
  """fileio.MatchFiles of a GLOB or FOLDER input's match_pattern, an empty match failing.
  The pipeline holds the input as stored (UTF-8 text); the pattern, which may hold a local
  name's bytes that are not UTF-8, is made from it in the step that matches: Beam carries
  every string between steps as UTF-8."""

  def __init__(self, input_spec, kind):
    super().__init__()
    self._input_spec = input_spec
    self._kind = kind

  def expand(self, pbegin):
    return (pbegin
            | beam.Create([self._input_spec])
            | beam.FlatMap(_matching_files, self._kind))


def _matching_files(input_spec, kind):
  """The FileMetadata of every file that INPUT's match_pattern matches; raises where none."""
  pattern = match_pattern(input_spec, kind)
  matched = FileSystems.match([pattern])[0].metadata_list
  if not matched:
    raise BeamIOError(f'Empty match for pattern {input_spec}. Disallowed.')
  return matched


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
