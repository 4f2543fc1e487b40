"""Transient GCS failures end to end: a proxy in front of the emulator fails reads at first."""

import http.client
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import PHOTOS_DIR
from test_cli import label_images, model_args


class FlakyProxy(ThreadingHTTPServer):
  """Forwards to the emulator, but answers the first `failures` requests for each object's
  metadata or media with 503 or 429, as an overloaded GCS does. (The emulator's media links
  point at the emulator itself, so a read fails here when it opens the object.)"""

  daemon_threads = True

  def __init__(self, upstream, failures):
    super().__init__(('127.0.0.1', 0), _ProxyHandler)
    self.upstream = urllib.parse.urlparse(upstream)
    self.failures = failures
    self.downloads = {}
    self.failed = 0
    self.lock = threading.Lock()

  @property
  def url(self):
    return f'http://127.0.0.1:{self.server_address[1]}'

  def should_fail(self, method, path):
    if method != 'GET' or '/o/' not in path:
      return False
    with self.lock:
      seen = self.downloads[path] = self.downloads.get(path, 0) + 1
      if seen <= self.failures:
        self.failed += 1
        return True
    return False


class _ProxyHandler(BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def _forward(self):
    if self.server.should_fail(self.command, self.path):
      status = 503 if self.server.failed % 2 else 429
      self.send_response(status)
      self.send_header('Content-Length', '0')
      self.end_headers()
      return
    body = self.rfile.read(int(self.headers.get('Content-Length', 0) or 0))
    upstream = http.client.HTTPConnection(self.server.upstream.hostname,
                                          self.server.upstream.port, timeout=30)
    headers = {k: v for k, v in self.headers.items() if k.lower() != 'host'}
    upstream.request(self.command, self.path, body=body, headers=headers)
    response = upstream.getresponse()
    data = response.read()
    self.send_response(response.status)
    for key, value in response.getheaders():
      if key.lower() not in ('transfer-encoding', 'connection', 'content-length'):
        self.send_header(key, value)
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)
    upstream.close()

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@pytest.fixture
def flaky_proxy(gcs_emulator):
  proxy = FlakyProxy(gcs_emulator, failures=2)
  thread = threading.Thread(target=proxy.serve_forever, daemon=True)
  thread.start()
  yield proxy
  proxy.shutdown()


def test_transient_read_failures_are_retried_end_to_end(model_dir, gcs_bucket, flaky_proxy):
  bucket, bucket_uri = gcs_bucket
  names = ['parrot.jpg', 'bird.bmp', 'hot_dog.jpg']
  for name in names:
    bucket.blob(f'photos/{name}').upload_from_filename(os.path.join(PHOTOS_DIR, name))
  bucket.blob('photos/empty.jpg').upload_from_string(b'')
  listing = '\n'.join([f'{bucket_uri}/photos/{name}' for name in names + ['empty.jpg']]
                      + [f'{bucket_uri}/photos/missing.jpg'])
  bucket.blob('list.txt').upload_from_string(listing)

  env = dict(os.environ, STORAGE_EMULATOR_HOST=flaky_proxy.url)
  result = label_images('--input', f'{bucket_uri}/list.txt', '--output', f'{bucket_uri}/out',
                        *model_args(model_dir), env=env)
  assert result.returncode == 0, result.stderr
  assert '3 images labelled, 2 errors' in result.stdout
  assert 'empty 1, not_found 1' in result.stdout
  assert flaky_proxy.failed >= 2 * len(names)
