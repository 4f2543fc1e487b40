"""Images over http(s), from a loopback server that misbehaves on purpose."""

import glob
import os
import time

import pyarrow.parquet as pq
import pytest

from conftest import PHOTOS_DIR, REFERENCE_LABELS, last_run
from http_server import ImageServer
from test_cli import label_images, model_args
from transforms import read
from transforms.failures import ImageError
from transforms.http_read import HttpSettings, retry_after_seconds
from transforms.schema import ERRORS, part_glob

FAST = HttpSettings(connections_per_host=2, timeout_s=1.0)
LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope='module')
def server():
  image_server = ImageServer(PHOTOS_DIR).start()
  yield image_server
  image_server.shutdown()


def read_over_http(server, path, waits=None):
  retry = read.RetryPolicy(max_attempts=3, base_delay_s=0.05,
                           sleep=(waits.append if waits is not None else time.sleep))
  return read.read_image_bytes(f'{server.base_url}/{path}', LIMIT, retry, http=FAST)


def photo_bytes(name):
  with open(os.path.join(PHOTOS_DIR, name), 'rb') as f:
    return f.read()


@pytest.mark.parametrize('path', ['photos/parrot.jpg', 'redirect/parrot.jpg',
                                  'flaky/parrot.jpg', 'photos/parrot.jpg?size=large'])
def test_images_are_read_through_redirects_and_passing_failures(server, path):
  assert read_over_http(server, path) == photo_bytes('parrot.jpg')


@pytest.mark.parametrize('path, kind', [
    ('missing', 'not_found'), ('gone', 'not_found'), ('secret', 'permission_denied'),
    ('login', 'permission_denied'), ('loop', 'too_many_redirects'), ('down', 'unavailable'),
    ('slow/parrot.jpg', 'unavailable'), ('short/parrot.jpg', 'unavailable'),
    ('endless', 'too_large'),
])
def test_each_misbehaviour_ends_in_its_error_kind_in_bounded_time(server, path, kind):
  started = time.monotonic()
  with pytest.raises(ImageError) as raised:
    read_over_http(server, path)
  assert raised.value.error == kind, raised.value.message
  # Three attempts of at most a 1 s timeout each, and short backoffs.
  assert time.monotonic() - started < 6


def test_retry_after_is_honoured(server):
  waits = []
  assert read_over_http(server, 'busy/bird.bmp', waits) == photo_bytes('bird.bmp')
  assert len(waits) == 1 and waits[0] >= 1.0


def test_a_body_longer_than_its_content_length_is_cut_there(server):
  data = photo_bytes('cat.bmp')
  assert read_over_http(server, 'overlong/cat.bmp') == data[:len(data) // 2]


def test_requests_say_who_is_asking(server):
  read_over_http(server, 'photos/bird.bmp')
  assert server.requests[-1][1].startswith('label-images/')


def test_retry_after_dates():
  assert retry_after_seconds('7') == 7.0
  assert retry_after_seconds('Wed, 21 Oct 2015 07:28:00 GMT', now=lambda: 1445412470.0) == 10.0
  assert retry_after_seconds('soon') is None and retry_after_seconds(None) is None


def test_the_cli_labels_https_urls_and_reports_the_broken_ones(model_dir, tmp_path):
  server = ImageServer(PHOTOS_DIR)
  certificate = server.use_tls(str(tmp_path))
  server.start()
  base = server.base_url
  assert base.startswith('https://')
  good = {f'{base}/photos/{name}': index for name, index in REFERENCE_LABELS.items()}
  good[f'{base}/redirect/parrot.jpg'] = REFERENCE_LABELS['parrot.jpg']
  good[f'{base}/busy/bird.bmp'] = REFERENCE_LABELS['bird.bmp']
  broken = {f'{base}/missing': ('read', 'not_found'),
            f'{base}/secret': ('read', 'permission_denied'),
            f'{base}/loop': ('read', 'too_many_redirects'),
            f'{base}/down': ('read', 'unavailable'),
            f'{base}/slow/cat.bmp': ('read', 'unavailable'),
            f'{base}/endless': ('read', 'too_large'),
            f'{base}/overlong/hot_dog.jpg': ('decode', 'truncated'),
            f'{base}/page.html': ('decode', 'not_an_image')}
  listing = tmp_path / 'urls.txt'
  listing.write_text('\n'.join([*good, *broken]) + '\n')
  env = dict(os.environ, SSL_CERT_FILE=certificate)
  started = time.monotonic()
  result = label_images('--input', listing, '--output', tmp_path / 'out',
                        '--max_read_attempts', '2', '--http_timeout_s', '1',
                        '--max_image_bytes', str(LIMIT), *model_args(model_dir), env=env)
  assert result.returncode == 0, result.stderr
  assert time.monotonic() - started < 120
  labels = pq.ParquetDataset(glob.glob(str(tmp_path / 'out' / 'labels-*.parquet'))).read()
  assert dict(zip(labels['uri'].to_pylist(), labels['label_index'].to_pylist())) == good
  errors = pq.ParquetDataset(glob.glob(str(tmp_path / 'out' / part_glob(ERRORS)))).read()
  assert {row['uri']: (row['stage'], row['error']) for row in errors.to_pylist()} == broken
  # The project's own retries, counted: one each for busy, down and slow; and
  # --max_read_attempts counts every request, the first one included.
  manifest = last_run(tmp_path / 'out')
  assert manifest['counts']['read_retries'] == 3
  assert [path for path, _ in server.requests].count('/down') == 2
  server.shutdown()


def test_a_thousand_urls_on_one_host_keep_to_the_connection_limit(model_dir, tmp_path):
  server = ImageServer(PHOTOS_DIR).start()
  listing = tmp_path / 'urls.txt'
  listing.write_text(''.join(f'{server.base_url}/photos/bird.bmp?copy={i}\n'
                             for i in range(1000)))
  result = label_images('--input', listing, '--output', tmp_path / 'out',
                        '--http_connections_per_host', '2', '--direct_num_workers', '6',
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert '1,000 images labelled, 0 errors' in result.stdout
  assert len(server.requests) == 1000
  assert server.most_open_connections == 2
  server.shutdown()
