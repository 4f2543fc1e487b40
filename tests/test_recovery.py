"""Reruns and crashes: refusing, overwriting, and resuming after SIGKILL."""

import os
import pty
import random
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import PHOTOS_DIR, ROOT, last_run, read_manifest
from corpus import CONFIDENT_PHOTOS
from test_cli import LABELS_SCHEMA, label_images, model_args, read_output
from transforms.schema import ERRORS_SCHEMA

IMAGES = 300


@pytest.fixture(scope='module')
def many_images(tmp_path_factory, shared_fixtures):
  """A list of IMAGES small JPEGs cut from the shared photos, plus two broken files."""
  directory = tmp_path_factory.mktemp('many')
  rng = random.Random(0)
  photos = [Image.open(os.path.join(PHOTOS_DIR, name)).convert('RGB')
            for name in CONFIDENT_PHOTOS]
  uris = []
  for i in range(IMAGES):
    photo = rng.choice(photos)
    left, top = rng.randint(0, 60), rng.randint(0, 60)
    path = directory / f'{i:04d}.jpg'
    photo.crop((left, top, left + 400, top + 300)).save(path, quality=85)
    uris.append(str(path))
  (directory / 'broken.jpg').write_bytes(b'not an image')
  uris += [str(directory / 'broken.jpg'), str(directory / 'missing.jpg')]
  listing = directory / 'list.txt'
  listing.write_text('\n'.join(uris))
  return listing, uris


def output_uris(output):
  rows = read_output(output, 'labels', LABELS_SCHEMA) + read_output(output, 'errors',
                                                                    ERRORS_SCHEMA)
  return [row['uri'] for row in rows]


def test_killed_then_resumed_holds_each_uri_exactly_once(many_images, model_dir, tmp_path):
  listing, uris = many_images
  output = tmp_path / 'out'
  args = ['--input', listing, '--output', output, '--rows_per_file', 10, *model_args(model_dir)]
  process = subprocess.Popen([sys.executable, '-m', 'pipeline.run', *map(str, args)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
  deadline = time.monotonic() + 300
  while len(list(output.glob('labels-*.parquet'))) < 3 and process.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  done_before = output_uris(output)
  assert 0 < len(done_before) < len(uris), 'the run was not killed partway'

  refused = label_images(*args)
  assert refused.returncode == 2 and '--resume' in refused.stderr

  resumed = label_images(*args, '--resume')
  assert resumed.returncode == 0, resumed.stderr
  assert f'{len(done_before)} already in the output' in resumed.stdout
  assert sorted(output_uris(output)) == sorted(uris)
  assert not list(output.glob('.*.tmp'))
  manifest = read_manifest(output)
  assert [run['status'] for run in manifest['runs']] == ['interrupted', 'completed']
  assert manifest['totals']['uris'] == len(uris) == len(output_uris(output))
  assert manifest['totals']['errors'] == 2

  again = label_images(*args, '--resume')
  assert again.returncode == 0, again.stderr
  assert '0 images labelled, 0 errors (of 0 URIs to label)' in again.stdout
  assert sorted(output_uris(output)) == sorted(uris)


def test_overwrite_replaces_earlier_results(model_dir, tmp_path, shared_fixtures):
  output = tmp_path / 'out'
  first = label_images('--input', os.path.join(PHOTOS_DIR, 'parrot.jpg'), '--output', output,
                       *model_args(model_dir))
  assert first.returncode == 0, first.stderr
  (output / '.labels-0123.tmp').write_bytes(b'left by a killed run')
  second = label_images('--input', os.path.join(PHOTOS_DIR, 'bird.bmp'), '--output', output,
                        '--overwrite', *model_args(model_dir))
  assert second.returncode == 0, second.stderr
  assert output_uris(output) == [os.path.join(PHOTOS_DIR, 'bird.bmp')]
  assert sorted(os.listdir(output)) == ['_manifest.json'] + sorted(
      name for name in os.listdir(output) if name.startswith('labels-'))
  assert not list(output.glob('.*.tmp'))


@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_cleanly_and_the_printed_command_finishes_it(
    many_images, model_dir, tmp_path, signum, status):
  listing, uris = many_images
  output = tmp_path / 'out'
  args = ['--input', listing, '--output', output, '--rows_per_file', 10, *model_args(model_dir)]
  process = subprocess.Popen([sys.executable, '-m', 'pipeline.run', *map(str, args)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while not list(output.glob('labels-*.parquet')) and process.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  signalled = time.monotonic()
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == status, stderr
  assert time.monotonic() - signalled < 15
  name = signal.Signals(signum).name
  assert f'interrupted by {name}' in stderr and 'Traceback' not in stderr
  assert not list(output.glob('.*.tmp'))
  manifest = last_run(output)
  assert manifest['status'] == f'interrupted by {name}'
  done_before = output_uris(output)
  assert 0 < len(done_before) < len(uris), 'the run was not stopped partway'
  assert manifest['counts']['labelled'] + manifest['counts']['errors'] == len(done_before)

  command = stderr.split('To label the rest: ', 1)[1].splitlines()[0]
  words = shlex.split(command)
  assert words[0] == 'label-images' and words[-1] == '--resume'
  resumed = label_images(*words[1:])
  assert resumed.returncode == 0, resumed.stderr
  assert sorted(output_uris(output)) == sorted(uris)


def test_a_stop_commits_the_rows_labelled_so_far(many_images, model_dir, tmp_path):
  """Rows gathered below --rows_per_file are written as parts when the run stops, not
  dropped: the progress line on a terminal said how many were labelled."""
  listing, uris = many_images
  output = tmp_path / 'out'
  args = ['--input', listing, '--output', output, '--rows_per_file', 100_000,
          *model_args(model_dir)]
  terminal, terminal_end = pty.openpty()  # the progress line is kept on a terminal only
  process = subprocess.Popen([sys.executable, '-m', 'pipeline.run', *map(str, args)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=terminal_end)
  os.close(terminal_end)
  seen, labelled = b'', 0
  deadline = time.monotonic() + 300
  while labelled < 20:
    assert time.monotonic() < deadline and process.poll() is None, seen[-2000:]
    seen += os.read(terminal, 4096)
    counts = re.findall(rb'(\d+) labelled, \d+ failed of', seen)
    labelled = int(counts[-1]) if counts else 0
  process.send_signal(signal.SIGINT)
  while True:
    try:
      chunk = os.read(terminal, 4096)
    except OSError:  # the terminal closes with the process
      break
    if not chunk:
      break
    seen += chunk
  process.wait(timeout=60)
  os.close(terminal)
  assert process.returncode == 130, seen[-2000:]
  committed = len(read_output(output, 'labels', LABELS_SCHEMA))
  assert labelled <= committed < len(uris)
  message = seen.decode(errors='replace')
  assert f'{committed} labels' in message and 'of this run are committed' in message
  assert last_run(output)['counts']['labelled'] == committed
