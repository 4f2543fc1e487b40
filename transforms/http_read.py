"""Reading images over http:// and https://, politely.

One urllib3 pool per worker process and setting, shared by its threads: connections are
kept alive and reused, and at most `connections_per_host` are open to any one host at a
time (a thread wanting another waits for one to be free), so a run does not hammer a
server. Redirects are followed up to MAX_REDIRECTS; the body is read in chunks and given up
as soon as it passes the byte limit, whatever Content-Length claimed (or if there was none).
Errors come back as exceptions that read.py classifies like any filesystem's: an HTTP
status on `.code`, the server's Retry-After on `.retry_after`.
"""

import email.utils
import threading
import time
import urllib.parse
from importlib import metadata
from typing import NamedTuple

import urllib3

HTTP_SCHEMES = ('http', 'https')
MAX_REDIRECTS = 5
DEFAULT_CONNECTIONS_PER_HOST = 4
DEFAULT_TIMEOUT_S = 30.0
_CHUNK_BYTES = 256 * 1024


def _user_agent():
  try:
    version = metadata.version('label-images')
  except metadata.PackageNotFoundError:
    version = 'dev'
  return f'label-images/{version} (batch image labelling; urllib3/{urllib3.__version__})'


class HttpSettings(NamedTuple):
  connections_per_host: int = DEFAULT_CONNECTIONS_PER_HOST
  timeout_s: float = DEFAULT_TIMEOUT_S  # to connect, and between two chunks of the body


class HttpStatusError(Exception):
  """A response with a status other than 2xx or a redirect."""

  def __init__(self, url, status, retry_after=None):
    super().__init__(f'HTTP {status} from {url}')
    self.code = status
    self.retry_after = retry_after


class TooManyRedirects(Exception):
  pass


def is_http(uri):
  return urllib.parse.urlsplit(uri).scheme.lower() in HTTP_SCHEMES


_pools = {}
_pools_lock = threading.Lock()


def _pool(settings):
  with _pools_lock:
    if settings not in _pools:
      _pools[settings] = urllib3.PoolManager(
          num_pools=256, maxsize=settings.connections_per_host, block=True,
          timeout=urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s),
          retries=False, headers={'User-Agent': _user_agent()})
    return _pools[settings]


def retry_after_seconds(value, now=time.time):
  """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
  if not value:
    return None
  value = value.strip()
  if value.isdigit():
    return float(value)
  try:
    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now())
  except (TypeError, ValueError):
    return None


def _read_body(response, max_bytes):
  chunks, size = [], 0
  while size <= max_bytes:
    chunk = response.read(min(_CHUNK_BYTES, max_bytes + 1 - size))
    if not chunk:
      break
    chunks.append(chunk)
    size += len(chunk)
  return b''.join(chunks)


def read_url(url, max_bytes, settings=HttpSettings()):
  """The body of `url`, at most max_bytes + 1 bytes of it."""
  pool = _pool(settings)
  for _ in range(MAX_REDIRECTS + 1):
    response = pool.request('GET', url, preload_content=False, redirect=False)
    read_to_the_end = False
    try:
      if response.status in (301, 302, 303, 307, 308) and response.headers.get('Location'):
        url = urllib.parse.urljoin(url, response.headers['Location'])
        continue
      if not 200 <= response.status < 300:
        raise HttpStatusError(url, response.status,
                              retry_after_seconds(response.headers.get('Retry-After')))
      body = _read_body(response, max_bytes)
      read_to_the_end = len(body) <= max_bytes
      return body
    finally:
      if not read_to_the_end:
        response.close()  # what is left unread (an endless body, say) is not drained
      response.release_conn()  # frees this host's slot in the pool
  raise TooManyRedirects(f'more than {MAX_REDIRECTS} redirects, the last to {url}')
