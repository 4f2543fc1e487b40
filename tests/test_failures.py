"""Failures a user meets, through the command line: a model that cannot be had is refused
before anything runs; a pipeline that fails says what broke in a few lines."""

import os
import shutil

from conftest import PHOTOS_DIR, free_port
from test_cli import label_images, model_args


def test_an_unreachable_model_url_is_refused_before_anything_runs(tmp_path):
  base = f'http://127.0.0.1:{free_port()}/google/mobilenet_v2'  # nothing listens there
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        '--model_handle', f'{base}/classification/4',
                        '--feature_handle', f'{base}/feature_vector/4')
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert 1 <= len(lines) <= 5, result.stderr
  assert f'--model_handle {base}/classification/4 cannot be loaded' in result.stderr
  assert 'Connection refused' in result.stderr and 'stage-model' in result.stderr
  assert not (tmp_path / 'out').exists()


def test_a_missing_model_directory_is_refused_in_one_line(tmp_path):
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        '--model_handle', tmp_path / 'nowhere')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f'label-images: error: --model_handle: {tmp_path / "nowhere"} is not a SavedModel '
      'directory (no saved_model.pb)']


def test_a_model_that_cannot_be_loaded_is_refused_by_the_driver_in_one_line(
    model_dir, tmp_path):
  broken = tmp_path / 'broken_model'
  shutil.copytree(model_dir, broken)
  (broken / 'classification' / 'saved_model.pb').write_bytes(b'not a SavedModel')
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        *model_args(broken))
  assert result.returncode == 2, result.stderr
  (line,) = result.stderr.strip().splitlines()
  assert 'cannot be loaded as a SavedModel' in line and 'Error parsing' in line, line
  assert not (tmp_path / 'out').exists() or not list((tmp_path / 'out').glob('labels-*'))


def test_a_failure_in_the_workers_is_told_in_a_few_lines_ending_with_its_cause(
    model_dir, tmp_path):
  # The driver reads the model; the int8 model only the workers load.
  broken = tmp_path / 'broken_model'
  shutil.copytree(model_dir, broken)
  (broken / 'int8.tflite').write_bytes(b'not a TFLite model')
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        *model_args(broken), '--engine', 'litert_int8')
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) <= 10, result.stderr
  assert "failed in step 'Inference/BeamML_RunInference'" in result.stderr
  assert lines[-1].strip().startswith('ValueError'), lines[-1]
  assert '--resume' in result.stderr
  log_path = lines[0].split('full tracebacks: ', 1)[1]
  with open(log_path, encoding='utf-8') as log:
    logged = log.read()
  assert 'Traceback (most recent call last)' in logged and 'ValueError' in logged

  verbose = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output',
                         tmp_path / 'out2', '--verbose', *model_args(broken),
                         '--engine', 'litert_int8')
  assert verbose.returncode == 1 and 'Traceback (most recent call last)' in verbose.stderr
