"""Listing, reading, writing and deleting files on any Beam filesystem, byte for byte.

Every write goes through a temporary name beside its file ('.NAME-TAG.tmp'), renamed into
place once complete: a reader never sees half a file, and a failed write leaves at most a
temporary file, which the next run into the directory deletes.

Every Parquet file is read through parquet_file (or read_parquet and parquet_rows, which use
it): a file that pyarrow cannot read as Parquet (a part truncated by a partial copy, another
file under a part's name) raises DamagedPartError, one line naming the file and the cause,
rather than pyarrow's error without the file's name."""

import contextlib
import re
import traceback
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

# Where --resume moves the parts it cannot read, as NAME.damaged: a folder that readers of the
# dataset pass by (its name starts with '_'), and a name no part glob matches.
DAMAGED_FOLDER = '_damaged'
DAMAGED_SUFFIX = '.damaged'
# The file names of the output's parts (transforms/schema.py): labels-*.parquet in OUTPUT_DIR,
# errors-*.parquet in OUTPUT_DIR/_errors.
_PART_NAME = re.compile(r'^(labels|errors)-.*\.parquet$')
# What DamagedPartError says of a file, after its name.
DAMAGED = 'cannot be read as Parquet (truncated, or not a Parquet file)'
DAMAGED_DATA = 'cannot be read as Parquet (its footer is whole, its data damaged)'


class UnreadablePartError(Exception):
  """A part that does not hold what label-images writes, named in the message: one that
  cannot be read as Parquet at all (DamagedPartError), or whose values do not fit the output's
  types (pipeline/results.py: a null URI, a missing column, embeddings of another width)."""


class DamagedPartError(UnreadablePartError):
  """A file that pyarrow cannot read as Parquet: truncated (a partial copy), another file
  under a part's name, or (in_footer False) a whole footer over damaged data. `path` names
  it, `cause` is pyarrow's word; for a part, the message ends with what to do about it, and
  `advice` (when given) replaces that."""

  def __init__(self, path, cause, in_footer=True, advice=None):
    self.path, self.cause, self.in_footer = path, cause, in_footer
    self.advice = _advice(path, in_footer) if advice is None else advice
    what = DAMAGED if in_footer else DAMAGED_DATA
    message = f'{path} {what}: {cause}'
    super().__init__(f'{message.rstrip(".")}. {self.advice}' if self.advice else message)

  def __reduce__(self):  # rebuilt from its fields, not from the message, where it is pickled
    return type(self), (self.path, self.cause, self.in_footer, self.advice)


def output_dir_of_part(path):
  """The output directory a part is in (an errors part is in its _errors folder); None for a
  file not named like a part."""
  folder, name = FileSystems.split(path)
  if not _PART_NAME.match(name):
    return None
  parent, folder_name = FileSystems.split(folder)
  return parent if name.startswith('errors-') and folder_name == '_errors' else folder


def _advice(path, in_footer):
  output_dir = output_dir_of_part(path)
  if output_dir is None:
    return ''
  damaged = FileSystems.join(output_dir, DAMAGED_FOLDER)
  if in_footer:
    return (f'`label-images --input ... --output {output_dir} --resume` moves it to '
            f'{damaged}/ and labels the images it held again')
  return (f'Move it out of {output_dir} (to {damaged}/, say): then '
          f'`label-images --input ... --output {output_dir} --resume` labels the images it '
          'held again')


def _damage(error):
  """pyarrow's word that a file is not whole Parquet; None for any other failure, such as
  one of the filesystem under it (pyarrow raises a Python file object's own exception as it
  is), which is not the file's fault."""
  if isinstance(error, pa.ArrowInvalid) or (
      type(error) is OSError and error.errno is None and _raised_by_pyarrow(error)):
    return ' '.join(str(error).split()) or type(error).__name__
  return None


def _raised_by_pyarrow(error):
  """Whether pyarrow made the exception from its own status (a Parquet reader's IOError:
  undecodable thrift, a page that does not decompress), not passed on a Python one. The
  errno a system call's failure carries (EIO, ESTALE on a network mount) tells those apart
  where the file object is written in C and leaves no frame of its own."""
  frames = traceback.extract_tb(error.__traceback__)
  return bool(frames) and frames[-1].filename.endswith('error.pxi')


@contextlib.contextmanager
def damage_named(path, in_footer=True):
  """Within it, pyarrow's failure to read `path` as Parquet raises DamagedPartError naming it;
  any other exception passes as it is. in_footer: whether what is read within is the footer;
  None where it may be either (a reader that opens the file and reads its data): the footer
  is then read again, once it failed, to tell."""
  try:
    yield
  except (pa.ArrowInvalid, OSError) as e:
    cause = _damage(e)
    if cause is None:
      raise
    if in_footer is None:
      in_footer = footer_damage(path) is not None
    raise DamagedPartError(path, cause, in_footer) from e


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


@contextlib.contextmanager
def parquet_file(path):
  """A Parquet file opened for reading, as a pyarrow ParquetFile: how every reader of the
  output opens a part. pyarrow's failure to read it, at its footer (on opening) or later in
  its data, raises DamagedPartError naming it."""
  with open_file(path) as f:
    with damage_named(path):
      parquet = pq.ParquetFile(f)
    with damage_named(path, in_footer=False):
      yield parquet


def read_parquet(path, columns=None):
  """The table of a Parquet file (of `columns`); UnreadablePartError where it lacks one."""
  with parquet_file(path) as parquet:
    missing = [name for name in columns or [] if name not in parquet.schema_arrow.names]
    if missing:
      raise UnreadablePartError(f'{path} does not hold what label-images writes: no column '
                                f'{", ".join(missing)}')
    # One thread: pyarrow's reader threads calling back into a Python file object can still
    # be running when the interpreter exits, which then aborts ("terminate called ...").
    return parquet.read(columns=columns, use_threads=False)


def parquet_rows(path):
  """The row count in a Parquet file's footer; DamagedPartError where it has none to read."""
  with parquet_file(path) as parquet:
    return parquet.metadata.num_rows


def footer_damage(path):
  """pyarrow's word on why a Parquet file's footer cannot be read, or None where it can."""
  try:
    parquet_rows(path)
  except DamagedPartError as e:
    return e.cause
  return None
