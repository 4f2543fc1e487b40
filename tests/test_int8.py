"""The int8 engines: quantized once by stage-model on the user's images, then run by name."""

import json
import os

from conftest import PHOTOS_DIR, REFERENCE_LABELS, last_run
from test_cli import LABELS_SCHEMA, label_images, read_output
from transforms.int8 import split_sample


def test_the_sample_depends_on_the_set_of_images_not_their_order():
  uris = [f'gs://b/{i}.jpg' for i in range(100)]
  calibration, holdout = split_sample(uris, 10, 20)
  assert (calibration, holdout) == split_sample(list(reversed(uris)) + uris[:5], 10, 20)
  assert len(calibration) == 10 and len(holdout) == 20 and not set(calibration) & set(holdout)


def test_both_staged_int8_models_label_the_photos_and_the_manifest_says_how_well(
    model_dir, user_images, gcs_bucket, tmp_path):
  bucket, bucket_uri = gcs_bucket
  staged = label_images('stage-model', '--source', model_dir, '--dest', f'{bucket_uri}/models',
                        '--int8_calibration', user_images, '--int8_images', 60,
                        '--int8_holdout', 30)
  assert staged.returncode == 0, staged.stderr[-3000:]
  assert 'NNCF failed' not in staged.stderr
  assert (f'OpenVINO int8 model (NNCF) -> {bucket_uri}/models/openvino_int8.xml'
          in staged.stdout)
  for name in ('int8.tflite', 'openvino_int8.xml', 'openvino_int8.bin'):
    blob = bucket.get_blob(f'models/{name}')
    assert blob is not None and blob.size > 0, name
  figures = json.loads(bucket.blob('models/int8.json').download_as_bytes())
  assert figures['calibration_images'] == 60
  openvino = figures['openvino']
  assert len(openvino['sha256']) == 64
  for holdout in (figures['holdout'], openvino['holdout']):
    assert holdout['images'] == 30
    assert holdout['labels_agree'] >= 0.8
    assert holdout['embedding_cosine_median'] >= 0.95
  # NNCF's model follows fp32 at least about as closely as TensorFlow's converter's.
  assert (openvino['holdout']['embedding_cosine_min']
          >= figures['holdout']['embedding_cosine_min'] - 0.02)

  for engine in ('litert_int8', 'openvino_int8'):
    output = tmp_path / engine
    result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', output,
                          '--engine', engine,
                          '--model_handle', f'{bucket_uri}/models/classification',
                          '--feature_handle', f'{bucket_uri}/models/feature_vector')
    assert result.returncode == 0, result.stderr[-3000:]
    labels = {os.path.basename(row['uri']): row['label_index']
              for row in read_output(output, 'labels', LABELS_SCHEMA)}
    agree = sum(labels[name] == index for name, index in REFERENCE_LABELS.items())
    assert agree >= len(REFERENCE_LABELS) - 1, labels
    manifest = last_run(output)
    assert manifest['engine'] == engine and manifest['precision'] == 'int8'
    assert set(manifest['images_by_engine']) == {engine}, 'fell back to TensorFlow'
    assert manifest['int8_model']['holdout'] == figures['holdout']
    assert manifest['int8_model']['openvino'] == openvino
    assert len(manifest['int8_model']['sha256']) == 64


def test_litert_int8_without_a_staged_model_says_how_to_make_one(model_dir, tmp_path):
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        '--engine', 'litert_int8',
                        '--model_handle', model_dir / 'classification',
                        '--feature_handle', model_dir / 'feature_vector')
  assert result.returncode == 2
  assert f'needs {model_dir / "int8.tflite"}' in result.stderr
  assert 'label-images stage-model' in result.stderr and '--int8_calibration' in result.stderr
