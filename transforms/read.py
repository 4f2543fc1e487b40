"""Reading an image's bytes from any Beam filesystem (local paths, gs://, s3://, azfs://)
or over http(s) (http_read.py).

Transient failures (HTTP 408, 429 and 5xx, timeouts, dropped connections) are retried
with exponential backoff and full jitter, waiting at least what a Retry-After header asks
(up to the longest backoff); permanent ones (not found, forbidden, an unsupported URI,
a redirect loop) fail at once.
"""

import os
import random
import re
import sys
import time
import urllib.parse
from typing import Callable, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms import metrics
from transforms.failures import FAILURES, Failure, ImageError
from transforms.files import open_file
from transforms.http_read import HttpSettings, TooManyRedirects, is_http, read_url

DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_READ_ATTEMPTS = 6

_PERMANENT_KINDS = {
    'NotFound': 'not_found',
    'FileNotFoundError': 'not_found',
    'Forbidden': 'permission_denied',
    'Unauthorized': 'permission_denied',
    'PermissionError': 'permission_denied',
    'IsADirectoryError': 'is_a_directory',
    'NotADirectoryError': 'not_found',
    'ResourceNotFoundError': 'not_found',  # Azure
    'ClientAuthenticationError': 'permission_denied',  # Azure
    TooManyRedirects.__name__: 'too_many_redirects',
}
_PERMANENT_STATUSES = {404: 'not_found', 410: 'not_found', 401: 'permission_denied',
                       403: 'permission_denied'}
# Transport errors of requests / urllib3 / http.client, matched by name: they share no base.
_TRANSIENT_NAMES = {'Timeout', 'ReadTimeout', 'ConnectTimeout', 'ConnectionError',
                    'ChunkedEncodingError', 'ProtocolError', 'IncompleteRead',
                    'RemoteDisconnected', 'TransportError', 'ReadTimeoutError',
                    'ConnectTimeoutError', 'NewConnectionError', 'ServiceRequestError',
                    'ServiceResponseError'}


class RetryPolicy(NamedTuple):
  max_attempts: int = DEFAULT_MAX_READ_ATTEMPTS
  base_delay_s: float = 1.0
  max_delay_s: float = 30.0
  sleep: Callable[[float], None] = time.sleep

  def delay(self, attempt):
    """Full jitter: uniform in [0, min(max, base * 2^attempt))."""
    return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** attempt))


def _causes(exc):
  seen = []
  while exc is not None and exc not in seen:
    seen.append(exc)
    exc = exc.__cause__ or exc.__context__
  return seen


def _status(exc):
  """The HTTP status an error carries: google.api_core's, Beam's S3 client's and ours on
  .code, Azure's on .status_code."""
  for name in ('code', 'status_code'):
    status = getattr(exc, name, None)
    if isinstance(status, int) and 100 <= status < 600:
      return status
  return None


def is_transient(exc):
  for cause in _causes(exc):
    status = _status(cause)
    if status is not None and (status in (408, 429) or status >= 500):
      return True
    if isinstance(cause, (ConnectionError, TimeoutError)):
      return True
    if type(cause).__name__ in _TRANSIENT_NAMES:
      return True
  return False


def permanent_kind(exc):
  for cause in _causes(exc):
    kind = _PERMANENT_KINDS.get(type(cause).__name__) or _PERMANENT_STATUSES.get(
        _status(cause))
    if kind:
      return kind
    if isinstance(cause, ValueError) and 'Unable to get filesystem' in str(cause):
      return 'invalid_uri'
  return 'read_failed'


# The characters of a file name's bytes that a file:// URI keeps as they are: RFC 3986's
# unreserved ones (which quote() never encodes) and the other characters a path may hold.
_URI_PATH_SAFE = "/!$&'()*+,;=:@"
# The characters that keep a local path from being stored as it is: C0 controls and DEL.
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')
# A list's entry that is not UTF-8 and names no local file (it has a scheme): stored as its
# bytes' repr, b'gs://...', which no other stored URI is (each is absolute, or has a scheme).
_UNDECODABLE = re.compile(r"""b(['"])[a-zA-Z][-a-zA-Z0-9+.]*://.*\1""", re.DOTALL)


def is_plain_safe(path):
  """Whether a local path is stored as it is: valid UTF-8 (no byte of another encoding,
  which Python holds as a lone surrogate), no control character (C0 or DEL: a newline, a
  tab), no trailing whitespace (a list's entries are stripped)."""
  try:
    path.encode('utf-8')
  except UnicodeEncodeError:
    return False
  return not _CONTROL.search(path) and path == path.rstrip()


def file_uri(path):
  """The RFC 8089 file:// URI of an absolute local path, percent-encoded from the name's
  bytes (os.fsencode) in uppercase hex: file:///photos/caf%E9.jpg."""
  return 'file://' + urllib.parse.quote(os.fsencode(path), safe=_URI_PATH_SAFE)


def undecodable_entry(raw):
  """What a list's entry that is not UTF-8 (bytes, or text holding its stray bytes as
  surrogates) and is not a local path is stored as: its bytes, as Python writes them."""
  return repr(raw if isinstance(raw, bytes) else os.fsencode(raw))


def is_undecodable_entry(uri):
  return _UNDECODABLE.fullmatch(uri) is not None


def local_path(uri):
  """The local path that `uri` names, a plain path or a file:// URI; None for any other URI.
  A file:// URI is percent-decoded to the name's exact bytes (RFC 8089), so a name that is
  not UTF-8 comes back as os.listdir gives it; a plain path is never decoded (100%.jpg)."""
  if uri[:5].lower() == 'file:':
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ('', 'localhost'):
      return None
    return urllib.parse.unquote(parts.path, encoding=sys.getfilesystemencoding(),
                                errors=sys.getfilesystemencodeerrors())
  if is_undecodable_entry(uri):
    return None
  return uri if FileSystems.get_scheme(uri) is None else None


def beam_path(uri):
  """The path Beam's filesystems take for `uri`: they know no file:// URIs."""
  path = local_path(uri)
  return uri if path is None else path


def canonical_uri(uri, base_dir):
  """The one spelling of `uri` that the output stores and resumes match: a local path (plain
  or file://) made absolute against base_dir and normalised, its symlinks kept (they are the
  user's names), stored as a plain path where is_plain_safe, else as its file:// URI; any
  other URI as given. Idempotent."""
  path = local_path(uri)
  if path is None:
    return uri
  absolute = os.path.normpath(path if os.path.isabs(path) else os.path.join(base_dir, path))
  # normpath keeps a leading '//', which POSIX leaves to the system: on Linux it is '/'.
  if absolute.startswith('//'):
    absolute = '/' + absolute.lstrip('/')
  return absolute if is_plain_safe(absolute) else file_uri(absolute)


def retry_after(exc):
  """Seconds the server asked to wait before trying again, or 0."""
  return max([getattr(cause, 'retry_after', None) or 0 for cause in _causes(exc)])


def _read_once(uri, max_bytes, http):
  if is_http(uri):
    return read_url(uri, max_bytes, http)
  with open_file(beam_path(uri)) as f:
    return f.read(max_bytes + 1)


def read_image_bytes(uri, max_bytes=DEFAULT_MAX_IMAGE_BYTES, retry=RetryPolicy(),
                     on_retry=lambda: None, http=HttpSettings()):
  """Returns the file's bytes, reading at most max_bytes + 1 of them; raises ImageError."""
  if is_undecodable_entry(uri):
    raise ImageError('invalid_uri', 'the list gives this entry in bytes that are not UTF-8: '
                     'only a local path may name a file by its bytes; any other URI must be '
                     'UTF-8 text')
  for attempt in range(retry.max_attempts):
    try:
      image_bytes = _read_once(uri, max_bytes, http)
      break
    except Exception as e:  # pylint: disable=broad-except
      message = f'{type(e).__name__}: {e}'
      if not is_transient(e):
        raise ImageError(permanent_kind(e), message) from e
      if attempt + 1 == retry.max_attempts:
        raise ImageError('unavailable',
                         f'still failing after {retry.max_attempts} attempts: {message}') from e
      on_retry()
      retry.sleep(min(retry.max_delay_s, max(retry.delay(attempt), retry_after(e))))
  if not image_bytes:
    raise ImageError('empty', 'the file has zero bytes')
  if len(image_bytes) > max_bytes:
    raise ImageError('too_large', f'the file is larger than the limit of {max_bytes} bytes')
  return image_bytes


class ReadImageBytes(beam.DoFn):
  """uri -> (uri, image_bytes); unreadable files go to the FAILURES output."""

  def __init__(self, max_bytes=DEFAULT_MAX_IMAGE_BYTES, max_attempts=DEFAULT_MAX_READ_ATTEMPTS,
               http=HttpSettings()):
    self._max_bytes = max_bytes
    self._retry = RetryPolicy(max_attempts=max_attempts)
    self._http = http
    self._images_read = metrics.counter('images_read')
    self._bytes_read = metrics.distribution('image_bytes')
    self._retries = metrics.counter('read_retries')

  def process(self, uri):
    try:
      image_bytes = read_image_bytes(uri, self._max_bytes, self._retry, self._retries.inc,
                                     self._http)
    except ImageError as e:
      yield beam.pvalue.TaggedOutput(FAILURES, Failure(uri, 'read', e.error, e.message))
      return
    self._images_read.inc()
    self._bytes_read.update(len(image_bytes))
    yield uri, image_bytes
