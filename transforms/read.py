"""Reading an image's bytes from any Beam filesystem (local paths, gs://, ...)."""

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.failures import FAILURES, Failure, ImageError

DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024
_NOT_FOUND_TYPES = ('NotFound', 'FileNotFoundError')
_PERMISSION_TYPES = ('Forbidden', 'PermissionError', 'Unauthorized')


def _error_kind(exc):
  names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
  if names & set(_NOT_FOUND_TYPES):
    return 'not_found'
  if names & set(_PERMISSION_TYPES):
    return 'permission_denied'
  if 'IsADirectoryError' in names:
    return 'is_a_directory'
  return 'read_failed'


def read_image_bytes(uri, max_bytes=DEFAULT_MAX_IMAGE_BYTES):
  """Returns the file's bytes, reading at most max_bytes + 1 of them; raises ImageError."""
  try:
    # UNCOMPRESSED: a name ending in .gz or .bz2 must not be inflated behind our back.
    with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      image_bytes = f.read(max_bytes + 1)
  except Exception as e:  # pylint: disable=broad-except
    raise ImageError(_error_kind(e), f'{type(e).__name__}: {e}') from e
  if not image_bytes:
    raise ImageError('empty', 'the file has zero bytes')
  if len(image_bytes) > max_bytes:
    raise ImageError('too_large', f'the file is larger than the limit of {max_bytes} bytes')
  return image_bytes


class ReadImageBytes(beam.DoFn):
  """uri -> (uri, image_bytes); unreadable files go to the FAILURES output."""

  def __init__(self, max_bytes=DEFAULT_MAX_IMAGE_BYTES):
    self._max_bytes = max_bytes
    self._bytes_read = Metrics.distribution('label_images', 'image_bytes')

  def process(self, uri):
    try:
      image_bytes = read_image_bytes(uri, self._max_bytes)
    except ImageError as e:
      yield beam.pvalue.TaggedOutput(FAILURES, Failure(uri, 'read', e.error, e.message))
      return
    self._bytes_read.update(len(image_bytes))
    yield uri, image_bytes
