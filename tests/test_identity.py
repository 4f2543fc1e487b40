"""One output directory is one dataset: --resume refuses rows made another way, and the
manifest describes the whole directory, every run included."""

import os
import shutil

import numpy as np
import pytest

from conftest import PHOTOS_DIR, read_manifest
from pipeline import duplicates, results
from synthetic_embeddings import write_output
from test_cli import label_images, model_args
from test_near_duplicates import _output_of


@pytest.fixture
def labelled(model_dir, tmp_path):
  images = tmp_path / 'images'
  images.mkdir()
  for name in ('parrot.jpg', 'bird.bmp'):
    os.symlink(os.path.join(PHOTOS_DIR, name), images / name)
  output = tmp_path / 'out'
  assert label_images('--input', images / '*', '--output', output, '--engine', 'litert',
                      *model_args(model_dir)).returncode == 0
  return images, output


@pytest.mark.parametrize('change, differs', [
    (['--engine', 'tf'], 'engine: litert -> tf'),
    (['--engine', 'litert', 'ANOTHER_MODEL'], 'model_handle: '),
])
def test_resume_with_anything_made_differently_is_refused_before_any_work(
    model_dir, labelled, tmp_path, change, differs):
  images, output = labelled
  shutil.copy(os.path.join(PHOTOS_DIR, 'hot_dog.jpg'), images / 'hot_dog.jpg')
  other_model = tmp_path / 'other_model'
  shutil.copytree(model_dir, other_model)
  handles = model_args(other_model if 'ANOTHER_MODEL' in change else model_dir)
  change = [arg for arg in change if arg != 'ANOTHER_MODEL']
  before = sorted(os.listdir(output))
  result = label_images('--input', images / '*', '--output', output, *handles, *change,
                        '--resume')
  assert result.returncode == 2
  assert differs in result.stderr
  assert '--overwrite' in result.stderr and 'another directory' in result.stderr
  assert sorted(os.listdir(output)) == before

  same = label_images('--input', images / '*', '--output', output, *model_args(model_dir),
                      '--resume')
  assert same.returncode == 0, same.stderr
  assert '1 image labelled' in same.stdout


def test_the_manifest_describes_the_whole_directory(model_dir, labelled):
  images, output = labelled
  shutil.copy(os.path.join(PHOTOS_DIR, 'hot_dog.jpg'), images / 'hot_dog.jpg')
  (images / 'broken.jpg').write_bytes(b'not an image')
  assert label_images('--input', images / '*', '--output', output, *model_args(model_dir),
                      '--resume').returncode == 0
  manifest = read_manifest(output)
  assert manifest['totals'] == {'uris': 4, 'distinct_uris': 4, 'labelled': 3, 'errors': 1,
                                'errors_by_kind': {'not_an_image': 1}}
  assert [run['status'] for run in manifest['runs']] == ['completed', 'completed']
  assert [run['counts']['labelled'] for run in manifest['runs']] == [2, 1]
  identity = manifest['identity']
  assert identity['engine'] == 'litert' and identity['precision'] == 'fp32'
  assert identity['model_files'].startswith('sha256:')
  assert identity['preprocessing'] == {'central_crop_fraction': 0.875, 'size': 224,
                                       'resize': 'bilinear'}
  assert not [name for name in os.listdir(output) if name.endswith('.tmp')]


def test_near_duplicates_refuse_rows_of_several_models(tmp_path):
  output = _output_of(tmp_path, np.eye(1280)[:3])
  write_output(output, 10, 2)  # more parts, of another model: 'synthetic'
  with pytest.raises(results.MixedOriginError, match='several models'):
    duplicates.find_duplicates(output)
