"""Nothing lost: a corpus of every common encoding and every broken input, through the CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import PHOTOS_DIR, ROOT, last_run
from corpus import MAX_IMAGE_BYTES, build_corpus
from measure import run_measured
from test_cli import LABELS_SCHEMA, model_args, read_output
from transforms.schema import ERRORS_SCHEMA


def peak_memory_mb(*args):
  """Runs label-images to completion; returns its peak resident memory in MB."""
  measured = run_measured([sys.executable, '-m', 'pipeline.run', *map(str, args)], cwd=ROOT)
  assert measured.exit_code == 0, measured.output
  return measured.peak_rss_mb


@pytest.fixture(scope='module')
def corpus(tmp_path_factory, shared_fixtures):
  return build_corpus(tmp_path_factory.mktemp('corpus'), PHOTOS_DIR)


@pytest.fixture(scope='module')
def corpus_run(corpus, model_dir, tmp_path_factory):
  listing, _ = corpus
  output = tmp_path_factory.mktemp('corpus_out')
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.run', '--input', listing, '--output', str(output),
       '--max_image_bytes', str(MAX_IMAGE_BYTES), *map(str, model_args(model_dir))],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  return result, output


def test_the_run_completes(corpus_run):
  result, _ = corpus_run
  assert result.returncode == 0, result.stderr


def test_every_uri_is_accounted_for_exactly_once(corpus, corpus_run):
  _, expected = corpus
  _, output = corpus_run
  labels = read_output(output, 'labels', LABELS_SCHEMA)
  errors = read_output(output, 'errors', ERRORS_SCHEMA)
  uris = [row['uri'] for row in labels + errors]
  assert sorted(uris) == sorted(expected)


def test_every_valid_image_is_labelled_as_its_jpeg_twin(corpus, corpus_run):
  _, expected = corpus
  _, output = corpus_run
  labels = {row['uri']: row for row in read_output(output, 'labels', LABELS_SCHEMA)}
  must_label = [uri for uri, outcome in expected.items() if outcome[0] != 'error']
  assert sorted(set(must_label) - set(labels)) == []
  mismatches = {
      os.path.basename(uri): (labels[uri]['label'], labels[outcome[1]]['label'])
      for uri, outcome in expected.items()
      if outcome[0] == 'twin' and labels[uri]['label_index'] != labels[outcome[1]]['label_index']
  }
  assert mismatches == {}


def test_exif_rotated_photos_come_out_upright(corpus, corpus_run):
  """A JPEG and a HEIC stored turned, with an EXIF orientation: embedded like the upright."""
  _, expected = corpus
  _, output = corpus_run
  labels = {row['uri']: row for row in read_output(output, 'labels', LABELS_SCHEMA)}
  rotated = [uri for uri in expected if 'exif-rotated' in uri]
  assert {os.path.splitext(uri)[1] for uri in rotated} == {'.jpg', '.heic'}
  for uri in rotated:
    embedding = np.asarray(labels[uri]['embedding'])
    upright = np.asarray(labels[expected[uri][1]]['embedding'])
    cosine = embedding @ upright / np.linalg.norm(embedding) / np.linalg.norm(upright)
    assert cosine > 0.95, (os.path.basename(uri), cosine)


def test_every_broken_input_is_an_error_of_its_kind(corpus, corpus_run):
  _, expected = corpus
  _, output = corpus_run
  errors = {row['uri']: row for row in read_output(output, 'errors', ERRORS_SCHEMA)}
  assert {uri: ('error', row['stage'], row['error']) for uri, row in errors.items()} == {
      uri: outcome for uri, outcome in expected.items() if outcome[0] == 'error'}
  assert all(row['message'] for row in errors.values())


def test_the_manifest_counts_everything(corpus, corpus_run):
  _, expected = corpus
  result, output = corpus_run
  manifest = last_run(output)
  counts = manifest['counts']
  errors = sum(outcome[0] == 'error' for outcome in expected.values())
  assert counts['uris_to_label'] == len(expected)
  assert (counts['labelled'], counts['errors'], counts['unaccounted']) == (
      len(expected) - errors, errors, 0)
  assert (counts['duplicate_uris'], counts['blank_entries']) == (5, 2)
  assert manifest['errors_by_kind']['not_an_image'] == 4
  assert set(manifest['versions']) >= {'label-images', 'apache-beam', 'tensorflow'}
  assert manifest['finished_at'] > manifest['started_at']
  assert 'errors by kind:' in result.stdout and 'not_an_image 4' in result.stdout


def test_a_decompression_bomb_does_not_raise_peak_memory(corpus, model_dir, tmp_path):
  _, expected = corpus
  bomb = next(uri for uri, outcome in expected.items() if outcome[1:] == ('decode', 'too_many_pixels'))
  photo = os.path.join(PHOTOS_DIR, 'parrot.jpg')
  peaks = {}
  for name, uris in (('photo', [photo]), ('photo_and_bomb', [photo, bomb])):
    listing = tmp_path / f'{name}.txt'
    listing.write_text('\n'.join(uris))
    peaks[name] = peak_memory_mb('--input', listing, '--output', tmp_path / name,
                                 *model_args(model_dir))
  # Decoding the bomb would take 900 MB; the run's own variation is a few tens of MB.
  assert 100 < peaks['photo'] and peaks['photo_and_bomb'] < peaks['photo'] + 100, peaks


def test_too_many_errors_fails_the_run_with_the_counts(corpus, model_dir, tmp_path):
  listing, expected = corpus
  errors = sum(outcome[0] == 'error' for outcome in expected.values())
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.run', '--input', listing, '--output', str(tmp_path),
       '--max_image_bytes', str(MAX_IMAGE_BYTES), '--max_error_fraction', '0.01',
       *map(str, model_args(model_dir))],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 3
  assert f'{errors} of {len(expected)} images failed' in result.stderr
  assert 'above --max_error_fraction 0.01' in result.stderr
