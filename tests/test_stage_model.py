"""label-images stage-model: TF Hub modules copied to GCS, then loaded from there by workers."""

import json
import os
import shutil

import pytest

from conftest import PHOTOS_DIR, REFERENCE_LABELS
from pipeline.stage_model import source_handles
from test_cli import LABELS_SCHEMA, label_images, read_output

TFHUB = 'https://tfhub.dev/google/tf2-preview/mobilenet_v2'


def test_stages_the_fixture_model_and_the_pipeline_loads_it_from_gcs(model_dir, gcs_bucket,
                                                                     tmp_path):
  bucket, bucket_uri = gcs_bucket
  staged = label_images('stage-model', '--source', model_dir, '--dest', f'{bucket_uri}/models')
  assert staged.returncode == 0, staged.stderr
  assert f'--model_handle {bucket_uri}/models/classification' in staged.stdout
  assert bucket.blob('models/feature_vector/saved_model.pb').exists()

  photos = ['parrot.jpg', 'bird.bmp']
  listing = tmp_path / 'list.txt'
  listing.write_text('\n'.join(os.path.join(PHOTOS_DIR, name) for name in photos))
  result = label_images('--input', listing, '--output', tmp_path / 'out',
                        '--model_handle', f'{bucket_uri}/models/classification',
                        '--feature_handle', f'{bucket_uri}/models/feature_vector')
  assert result.returncode == 0, result.stderr
  labels = {os.path.basename(row['uri']): row['label_index']
            for row in read_output(tmp_path / 'out', 'labels', LABELS_SCHEMA)}
  assert labels == {name: REFERENCE_LABELS[name] for name in photos}


def test_help():
  result = label_images('stage-model', '--help')
  assert result.returncode == 0 and '--source' in result.stdout and '--dest' in result.stdout


def test_a_source_without_a_model_is_refused(tmp_path):
  result = label_images('stage-model', '--source', tmp_path / 'classification',
                        '--dest', tmp_path / 'dest')
  assert result.returncode == 2 and 'neither a URL nor a local directory' in result.stderr


@pytest.mark.parametrize('source, feature_source, expected', [
    (f'{TFHUB}/classification/4', None, (f'{TFHUB}/classification/4', f'{TFHUB}/feature_vector/4')),
    ('gs://b/m/classification', 'gs://b/other', ('gs://b/m/classification', 'gs://b/other')),
])
def test_source_handles(source, feature_source, expected):
  assert source_handles(source, feature_source) == expected


def test_a_source_that_names_no_classification_module_needs_feature_source():
  with pytest.raises(ValueError, match='--feature_source'):
    source_handles('gs://b/my-model')


def copy_of_models(model_dir, tmp_path):
  models = tmp_path / 'models'
  shutil.copytree(model_dir, models, ignore=shutil.ignore_patterns('int8.*', 'openvino_int8.*'))
  return models, {path: path.read_bytes() for path in models.rglob('*') if path.is_file()}


def test_staging_into_its_own_source_leaves_every_file_as_it_was(model_dir, tmp_path):
  models, before = copy_of_models(model_dir, tmp_path)
  staged = label_images('stage-model', '--source', models, '--dest', models)
  assert staged.returncode == 0, staged.stderr
  assert 'nothing copied' in staged.stdout
  assert {path: path.read_bytes() for path in models.rglob('*') if path.is_file()} == before


def test_a_destination_inside_its_source_is_refused_and_writes_nothing(model_dir, tmp_path):
  models, before = copy_of_models(model_dir, tmp_path)
  staged = label_images('stage-model', '--source', models,
                        '--dest', models / 'classification' / 'copy')
  assert staged.returncode == 2 and 'would write over the source' in staged.stderr
  assert {path: path.read_bytes() for path in models.rglob('*') if path.is_file()} == before


def test_a_calibration_glob_that_matches_nothing_is_refused_before_copying(model_dir, tmp_path):
  staged = label_images('stage-model', '--source', model_dir, '--dest', tmp_path / 'dest',
                        '--int8_calibration', tmp_path / 'nothing' / '*.jpg')
  assert staged.returncode == 2 and 'no image matches' in staged.stderr
  assert not (tmp_path / 'dest').exists()


def test_where_nncf_fails_the_tflite_int8_model_is_staged_anyway(model_dir, tmp_path,
                                                                 monkeypatch, capsys):
  from pipeline import stage_model  # pylint: disable=import-outside-toplevel
  from transforms import int8  # pylint: disable=import-outside-toplevel

  def no_nncf(*_):
    raise ImportError("No module named 'nncf'")
  monkeypatch.setattr(int8, 'quantize_openvino', no_nncf)
  dest = tmp_path / 'models'
  dest.mkdir()
  for name in ('openvino_int8.xml', 'openvino_int8.bin'):  # from an earlier staging
    (dest / name).write_text('stale')
  assert stage_model.main(['--source', str(model_dir), '--dest', str(dest),
                           '--int8_calibration', os.path.join(PHOTOS_DIR, '*'),
                           '--int8_images', '4', '--int8_holdout', '4']) == 0
  printed = capsys.readouterr()
  assert "NNCF failed (ImportError: No module named 'nncf')" in printed.err
  assert 'int8 model -> ' in printed.out and 'OpenVINO' not in printed.out
  figures = json.loads((dest / 'int8.json').read_text())
  assert figures['holdout']['images'] == 4 and figures['openvino'] is None
  assert (dest / 'int8.tflite').stat().st_size
  assert not (dest / 'openvino_int8.xml').exists() and not (dest / 'openvino_int8.bin').exists()
