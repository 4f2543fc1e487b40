"""The command line end to end, on DirectRunner, as a user runs it."""

import glob
import os
import subprocess
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ALL_PHOTOS, MODEL_SIZE, PHOTOS_DIR, REFERENCE_LABELS, ROOT, last_run
from synthetic_embeddings import write_output
from transforms.decode import decode_image
from transforms.schema import ERRORS, part_glob

# The output's schemas, as README documents them: written out here, not taken from the code.
LABELS_SCHEMA = pa.schema([
    pa.field('uri', pa.string(), nullable=False),
    pa.field('label', pa.string(), nullable=False),
    pa.field('label_index', pa.int32(), nullable=False),
    pa.field('score', pa.float32(), nullable=False),
    pa.field('top_k_labels', pa.list_(pa.string()), nullable=False),
    pa.field('top_k_scores', pa.list_(pa.float32()), nullable=False),
    pa.field('embedding', pa.list_(pa.float32(), 1280), nullable=False),
    pa.field('width', pa.int32(), nullable=False),
    pa.field('height', pa.int32(), nullable=False),
    pa.field('model', pa.string(), nullable=False),
])
ERRORS_SCHEMA = pa.schema([
    pa.field('uri', pa.string(), nullable=False),
    pa.field('stage', pa.string(), nullable=False),
    pa.field('error', pa.string(), nullable=False),
    pa.field('message', pa.string(), nullable=False),
])


def label_images(*args, env=None):
  """Runs `label-images ARGS` in a fresh process; returns the CompletedProcess."""
  return subprocess.run(
      [sys.executable, '-m', 'pipeline.run', *map(str, args)], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=600)


def model_args(model_dir):
  return ['--model_handle', model_dir / 'classification',
          '--feature_handle', model_dir / 'feature_vector']


def read_output(output_dir, kind, schema):
  paths = glob.glob(os.path.join(str(output_dir), part_glob(kind)))
  tables = [pq.read_table(path) for path in paths]
  for table in tables:
    assert table.schema.equals(schema)
  return [row for table in tables for row in table.to_pylist()]


def check_labels(rows, uri_of):
  by_name = {os.path.basename(uri_of(row['uri'])): row for row in rows}
  assert sorted(by_name) == ALL_PHOTOS
  for name, index in REFERENCE_LABELS.items():
    assert by_name[name]['label_index'] == index, name
  for row in rows:
    embedding = np.asarray(row['embedding'])
    assert embedding.shape == (1280,) and np.all(np.isfinite(embedding))
    assert row['top_k_labels'][0] == row['label'] and len(row['top_k_labels']) == 5
    assert row['top_k_scores'] == sorted(row['top_k_scores'], reverse=True)
    assert row['top_k_scores'][0] == pytest.approx(row['score'])


def test_scores_are_the_softmax_of_the_models_logits(model_dir, image_model, tmp_path):
  output = tmp_path / 'out'
  # fp32: the figures of TensorFlow's own float32 to within float32's rounding.
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                        '--precision', 'fp32', *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  rows = read_output(output, 'labels', LABELS_SCHEMA)
  pixels = []
  for row in rows:
    with open(row['uri'], 'rb') as f:
      pixels.append(decode_image(f.read(), MODEL_SIZE)[0])
  logits, embeddings = image_model.predict(np.stack(pixels))
  exponentials = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
  probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
  for row, expected, embedding in zip(rows, probabilities, embeddings):
    np.testing.assert_allclose(row['top_k_scores'], np.sort(expected)[::-1][:5], atol=2e-3)
    assert row['score'] == pytest.approx(expected.max(), abs=2e-3)
    np.testing.assert_allclose(row['embedding'], embedding, rtol=1e-3, atol=1e-3)


def test_labels_the_shared_photos(model_dir, tmp_path):
  output = tmp_path / 'out'
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert '9 images labelled, 0 errors' in result.stdout
  assert 'ms/image' in result.stdout and 'ms per batch' in result.stdout
  manifest = last_run(output)
  assert manifest['counts']['labelled'] == 9
  for metric in ('decode_ms', 'image_bytes', 'inference_batch_latency_micro_secs',
                 'inference_request_batch_size'):
    assert manifest['distributions'][metric]['count'] > 0, metric

  rows = read_output(output, 'labels', LABELS_SCHEMA)
  check_labels(rows, lambda uri: uri)
  assert {row['model'] for row in rows} == {str(model_dir / 'classification')}
  assert not glob.glob(str(output / part_glob(ERRORS)))
  # Nothing left behind but the committed parts and the manifest.
  assert all(name.startswith('labels-') for name in os.listdir(output) if name != '_manifest.json')

  database = duckdb.connect()
  count, width = database.execute(
      f"SELECT count(*), min(len(embedding)) FROM read_parquet('{output}/labels-*.parquet')"
  ).fetchone()
  assert (count, width) == (9, 1280)
  frame = database.execute(f"SELECT label, score FROM read_parquet('{output}/*.parquet')").df()
  assert len(frame) == 9


def test_a_list_with_duplicates_blanks_and_broken_files(model_dir, tmp_path):
  broken = tmp_path / 'broken.jpg'
  broken.write_bytes(b'<html>not an image</html>')
  empty = tmp_path / 'empty.png'
  empty.write_bytes(b'')
  missing = tmp_path / 'missing.jpg'
  photo = os.path.join(PHOTOS_DIR, 'parrot.jpg')
  listing = tmp_path / 'list.txt'
  listing.write_text('\n'.join([photo, '', photo, f'  {broken}  ', str(empty), str(missing),
                                '   ', str(broken)]) + '\n')
  output = tmp_path / 'out'

  result = label_images('--input', listing, '--output', output, '--top_k', 3,
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert '1 image labelled, 3 errors (of 4 URIs to label)' in result.stdout

  labels = read_output(output, 'labels', LABELS_SCHEMA)
  assert [(row['uri'], row['label_index'], len(row['top_k_scores'])) for row in labels] == [
      (photo, 89, 3)]
  errors = {row['uri']: row for row in read_output(output, 'errors', ERRORS_SCHEMA)}
  assert {uri: (row['stage'], row['error']) for uri, row in errors.items()} == {
      str(broken): ('decode', 'not_an_image'),
      str(empty): ('read', 'empty'),
      str(missing): ('read', 'not_found'),
  }
  assert all(row['message'] for row in errors.values())


def test_gcs_input_and_output(model_dir, gcs_bucket, tmp_path):
  bucket, bucket_uri = gcs_bucket
  for name in ALL_PHOTOS:
    bucket.blob(f'photos/{name}').upload_from_filename(os.path.join(PHOTOS_DIR, name))
  env = dict(os.environ)

  result = label_images('--input', f'{bucket_uri}/photos/*', '--output', f'{bucket_uri}/out',
                        *model_args(model_dir), env=env)
  assert result.returncode == 0, result.stderr
  assert '9 images labelled, 0 errors' in result.stdout

  parts = [blob for blob in bucket.list_blobs(prefix='out/') if blob.name != 'out/_manifest.json']
  assert parts and all(blob.name.startswith('out/labels-') for blob in parts)
  assert bucket.blob('out/_manifest.json').exists()
  local = tmp_path / 'downloaded'
  local.mkdir()
  for blob in parts:
    blob.download_to_filename(str(local / os.path.basename(blob.name)))
  rows = read_output(local, 'labels', LABELS_SCHEMA)
  check_labels(rows, lambda uri: uri)
  assert all(row['uri'].startswith(f'{bucket_uri}/photos/') for row in rows)


def test_gcs_from_worker_processes_without_credential_lookups(model_dir, gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  bucket.blob('photos/parrot.jpg').upload_from_filename(os.path.join(PHOTOS_DIR, 'parrot.jpg'))
  result = label_images('--input', f'{bucket_uri}/photos/*', '--output', f'{bucket_uri}/out',
                        '--direct_running_mode', 'multi_processing', '--direct_num_workers', 2,
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  assert '1 image labelled, 0 errors' in result.stdout
  # Each worker process would otherwise retry Google's credential lookup for ~30 s.
  assert '_get_credentials_with_retrys' not in result.stderr


def test_help_lists_the_options():
  result = label_images('--help')
  assert result.returncode == 0
  for flag in ('--input', '--output', '--model_handle', '--feature_handle', '--top_k'):
    assert flag in result.stdout


@pytest.mark.parametrize('args, message', [
    (['--output', 'out'], 'required: --input'),
    (['--input', 'x/*', '--output', 'out', '--top_k', '0'], '--top_k must be at least 1'),
    (['--input', '/no/such/list.txt', '--output', 'out'], 'no such file: /no/such/list.txt'),
    (['--input', '/no/such/*.jpg', '--output', 'out'], 'no files match /no/such/*.jpg'),
    (['--input', 'a.jpg', 'b.jpg', 'c.jpg', '--output', 'out'], 'unexpected arguments: b.jpg c.jpg'),
    (['--input', 'README.md', '--output', 'setup.py'], '--output: setup.py is a file'),
    (['--input', 'README.md', '--output', 'out[1]'], '--output must not contain *, ? or ['),
])
def test_bad_arguments_are_refused_clearly(args, message):
  result = label_images(*args)
  assert result.returncode == 2
  assert message in result.stderr


def test_a_model_handle_without_a_saved_model_is_refused(tmp_path):
  (tmp_path / 'photo.jpg').write_bytes(b'x')
  result = label_images('--input', tmp_path / '*.jpg', '--output', tmp_path / 'out',
                        '--model_handle', tmp_path, '--feature_handle', tmp_path)
  assert result.returncode == 2
  assert f'--model_handle: {tmp_path} is not a SavedModel directory' in result.stderr


@pytest.mark.parametrize('command', [
    ['--input', os.path.join(PHOTOS_DIR, '*'), '--output', 'OUT', '--top-k', '3',
     '--max_error_fractoin', '0.0'],
    ['report', 'OUT', '--low-confidence', '0.3'],
    ['similar', 'OUT', '--uri', 'x.jpg', '--kk', '3'],
    ['duplicates', 'OUT', '--treshold', '0.8'],
    ['stage-model', '--dest', 'OUT', '--int8_imagse', '3'],
])
def test_a_mistyped_option_is_refused_before_any_work_with_the_nearest_one(command, tmp_path):
  output = tmp_path / 'out'
  result = label_images(*[str(output) if arg == 'OUT' else arg for arg in command])
  assert result.returncode == 2, result.stderr
  last_line = result.stderr.strip().splitlines()[-1]
  assert 'unrecognized option' in last_line and '(did you mean --' in last_line, last_line
  assert not output.exists()


def test_both_mistyped_options_are_named():
  result = label_images('--input', 'x', '--output', 'y', '--top-k', '3',
                        '--max_error_fractoin', '0.0', '--runnr', 'DirectRunner')
  assert result.returncode == 2
  assert ('unrecognized options: --top-k (did you mean --top_k?), --max_error_fractoin (did '
          'you mean --max_error_fraction?), --runnr (did you mean --runner?)') in result.stderr


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
  """`label-images similar ... | head -1`: the reader closes the pipe after one line, with
  more than a pipe's buffer still to come."""
  write_output(str(tmp_path), 3000, 0)
  uri = pq.read_table(next(tmp_path.glob('labels-*.parquet'))).column('uri')[0].as_py()
  process = subprocess.Popen(
      [sys.executable, '-m', 'pipeline.run', 'similar', tmp_path, '--uri', uri, '--k', '2000'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert process.stdout.readline()
  process.stdout.close()
  stderr = process.stderr.read()
  process.wait(timeout=120)
  assert 'Traceback' not in stderr and 'BrokenPipeError' not in stderr, stderr
  assert process.returncode == 141


def test_the_help_names_every_command_and_the_dry_run():
  result = label_images('--help')
  for command in ('stage-model', 'report OUTPUT_DIR', 'similar OUTPUT_DIR', 'duplicates OUTPUT_DIR',
                  '--dry_run'):
    assert command in result.stdout


def test_below_min_score_rows_are_none_of_the_classes_and_every_command_reads_them(
    model_dir, tmp_path):
  output = tmp_path / 'out'
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                        *model_args(model_dir), '--min_score', 0.5)
  assert result.returncode == 0, result.stderr
  assert 'none of the classes (top score below --min_score 0.5): 1 image' in result.stdout
  nullable = pa.schema([field.with_nullable(field.name in ('label', 'label_index'))
                        for field in LABELS_SCHEMA])
  rows = {os.path.basename(row['uri']): row for row in read_output(output, 'labels', nullable)}
  # face.jpg is ambiguous (no label above 0.11): its scores are kept, its label is none.
  assert rows['face.jpg']['label'] is None and rows['face.jpg']['label_index'] is None
  assert rows['face.jpg']['top_k_labels'] and rows['face.jpg']['score'] < 0.5
  assert all(row['label'] for name, row in rows.items() if name != 'face.jpg')
  manifest = last_run(output)
  assert manifest['counts']['none_of_the_classes'] == 1
  report = label_images('report', output, '--html', tmp_path / 'report.html')
  assert report.returncode == 0, report.stderr
  assert '(none of the classes)' in (tmp_path / 'report.html').read_text()
  similar = label_images('similar', output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp'))
  assert similar.returncode == 0 and '(none of the classes)' in similar.stdout, similar.stderr
