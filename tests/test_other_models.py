"""Models besides MobileNet V2, through the command line: a 299-pixel TF Hub pair with 1,000
classes and a label-map CSV, a pair with a 2,048-wide embedding, a pair that takes any size
(run with --image_size), a user's Keras model (one SavedModel: softmax probabilities and an
embedding) and a classifier without an embedding. Every row's scores and embedding are the
model's own TensorFlow outputs on the same pixels; labels come from the model's file; what
cannot work is exit 2 before any work. The models are built by fixtures/other_models.py.
"""

import glob
import json
import os
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ALL_PHOTOS, PHOTOS_DIR, read_manifest
from test_cli import label_images
from transforms.decode import decode_image

PHOTOS = os.path.join(PHOTOS_DIR, '*')
# fp32 engines against the model run by TensorFlow: probabilities (absolute) and embeddings
# (relative to their largest element).
SCORE_TOLERANCE = 1e-4
EMBEDDING_TOLERANCE = 1e-4
IMAGE_MODELS = ('inception', 'resnet', 'any_size', 'user', 'classifier')
WITH_EMBEDDINGS = ('inception', 'resnet', 'any_size', 'user')
RUNS = [(name, 'litert') for name in IMAGE_MODELS] + [('inception', 'tf'), ('user', 'tf')]
COLUMNS = ['uri', 'label', 'label_index', 'score', 'top_k_labels', 'top_k_scores', 'embedding',
           'width', 'height', 'model']


def builders():
  import other_models  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
  return other_models


@pytest.fixture(scope='module')
def other_models(model_dir, tmp_path_factory):
  """{name: BuiltModel} for the image models, and 'not_image': a SavedModel directory."""
  return builders().build_all(str(tmp_path_factory.mktemp('other_models')),
                              str(model_dir / 'feature_vector'), PHOTOS_DIR)


@pytest.fixture(scope='module')
def labelled(other_models, tmp_path_factory):
  """labelled(name, engine) -> the output directory of the photos labelled by that model,
  with every class kept in top_k; each is run once for the module."""
  outputs = {}

  def run(name, engine='litert'):
    if (name, engine) not in outputs:
      model = other_models[name]
      output = tmp_path_factory.mktemp(f'{name}-{engine}') / 'out'
      result = label_images('--input', PHOTOS, '--output', output, *model.cli_args(),
                            '--engine', engine, '--top_k', model.classes)
      outputs[name, engine] = (output, result)
    output, result = outputs[name, engine]
    assert result.returncode == 0, result.stderr
    return output

  return run


def label_paths(output):
  return glob.glob(os.path.join(str(output), 'labels-*.parquet'))


def read_rows(output, model):
  """The labels rows, checking each part's columns and the embedding's type."""
  rows = []
  for path in label_paths(output):
    table = pq.read_table(path)
    if model.embedding_width:
      assert table.schema.names == COLUMNS
      assert table.schema.field('embedding').type == pa.list_(pa.float32(),
                                                              model.embedding_width)
    else:
      assert table.schema.names == [name for name in COLUMNS if name != 'embedding']
    rows.extend(table.to_pylist())
  return rows


def class_names(model):
  if model.label_names is not None:
    return list(model.label_names)
  from transforms.labels import imagenet_label_names  # pylint: disable=import-outside-toplevel
  return list(imagenet_label_names())


@pytest.mark.parametrize('name, engine', RUNS)
def test_every_row_holds_the_models_own_outputs(other_models, labelled, name, engine):
  model = other_models[name]
  output = labelled(name, engine)
  rows = read_rows(output, model)
  assert sorted(os.path.basename(row['uri']) for row in rows) == ALL_PHOTOS
  assert {row['model'] for row in rows} == {model.model_handle}

  decoded = []
  for row in rows:
    with open(row['uri'], 'rb') as f:
      decoded.append(decode_image(f.read(), size=model.image_size))
  pixels = np.stack([pixels for pixels, _, _ in decoded])
  assert pixels.shape == (len(rows), *model.image_size, 3)
  probabilities, embeddings = builders().reference_outputs(model, pixels)
  assert (embeddings is None) == (model.embedding_width is None)

  names = class_names(model)
  assert len(names) == model.classes
  for i, (row, expected, (_, width, height)) in enumerate(zip(rows, probabilities, decoded)):
    where = os.path.basename(row['uri'])
    assert (row['width'], row['height']) == (width, height), where
    index = row['label_index']
    assert 0 <= index < model.classes and row['label'] == names[index], where
    assert expected[index] >= expected.max() - SCORE_TOLERANCE, where
    assert row['score'] == pytest.approx(expected[index], abs=SCORE_TOLERANCE), where
    # --top_k is the class count: every class, by score.
    assert len(row['top_k_scores']) == len(row['top_k_labels']) == model.classes, where
    assert row['top_k_scores'] == sorted(row['top_k_scores'], reverse=True), where
    np.testing.assert_allclose(row['top_k_scores'], np.sort(expected)[::-1],
                               atol=SCORE_TOLERANCE, rtol=0, err_msg=where)
    assert sorted(row['top_k_labels']) == sorted(names), where
    # Each name stands where its class's score is (ImageNet has names given to two classes).
    for label, score in zip(row['top_k_labels'], row['top_k_scores']):
      classes = [j for j, n in enumerate(names) if n == label]
      assert min(abs(expected[j] - score) for j in classes) <= SCORE_TOLERANCE, (where, label)
    if embeddings is not None:
      scale = float(np.max(np.abs(embeddings[i])))
      np.testing.assert_allclose(row['embedding'], embeddings[i], rtol=EMBEDDING_TOLERANCE,
                                 atol=EMBEDDING_TOLERANCE * scale, err_msg=where)


@pytest.mark.parametrize('name', IMAGE_MODELS)
def test_the_manifest_describes_the_model(other_models, labelled, name):
  model = other_models[name]
  described = read_manifest(labelled(name))['identity']['model']
  assert described['image_size'] == list(model.image_size)
  assert described['classes'] == model.classes
  assert described['scores'] == model.scores
  assert described['embedding_width'] == model.embedding_width
  assert described['form'] == model.form
  if model.form == 'one_model':
    assert described['class_output'] == model.class_output
    assert described['embedding_output'] == model.embedding_output


@pytest.mark.parametrize('name', WITH_EMBEDDINGS)
def test_report_similar_and_duplicates_run(other_models, labelled, name):
  output = labelled(name)
  names = set(class_names(other_models[name]))
  result = label_images('report', output)
  assert result.returncode == 0, result.stderr
  result = label_images('similar', output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp'),
                        '--k', '3', '--json')
  assert result.returncode == 0, result.stderr
  answers = json.loads(result.stdout)
  assert len(answers) == 3 and all(answer['label'] in names for answer in answers)
  result = label_images('duplicates', output)
  assert result.returncode == 0, result.stderr


def test_a_classifier_without_an_embedding_has_a_report_but_no_neighbours(labelled):
  output = labelled('classifier')
  result = label_images('report', output)
  assert result.returncode == 0, result.stderr
  for args in (['similar', output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp')],
               ['duplicates', output]):
    result = label_images(*args)
    assert result.returncode == 2, (args[0], result.stderr)
    assert 'embedding' in result.stderr and 'Traceback' not in result.stderr, args[0]


def refused(args, output):
  """Runs label-images ARGS into output; asserts exit 2 with no labels written. Returns stderr."""
  result = label_images('--input', PHOTOS, '--output', output, *args)
  assert result.returncode == 2, result.stderr
  assert 'Traceback' not in result.stderr
  assert not label_paths(output)
  return result.stderr


def test_a_labels_file_of_another_count_is_refused_before_any_work(other_models, tmp_path):
  model = other_models['inception']
  labels = tmp_path / 'labels.txt'
  labels.write_text(''.join(f'name {i}\n' for i in range(998)))
  args = [arg if arg != model.labels_file else str(labels) for arg in model.cli_args()]
  assert str(labels) in args
  message = refused(args, tmp_path / 'out')
  assert '998' in message and re.search(r'\b1,?000\b', message), message


def test_a_model_without_an_image_input_is_refused_before_any_work(other_models, tmp_path):
  message = refused(['--model_handle', other_models['not_image']], tmp_path / 'out')
  assert 'image' in message.lower(), message


def test_resume_with_another_model_is_refused_before_any_work(other_models, labelled, tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(labelled('classifier'), output)
  before = sorted(os.listdir(output))
  result = label_images('--input', PHOTOS, '--output', output,
                        *other_models['any_size'].cli_args(), '--resume')
  assert result.returncode == 2, result.stderr
  assert 'Traceback' not in result.stderr and '--overwrite' in result.stderr
  assert sorted(os.listdir(output)) == before


def test_stage_model_copies_the_labels_and_quantizes_any_size_and_width(other_models, labelled,
                                                                         tmp_path):
  model = other_models['inception']  # 299 pixels, a 64-wide embedding, a label map
  dest = tmp_path / 'staged'
  staged = label_images('stage-model', '--source', os.path.dirname(model.model_handle),
                        '--dest', dest, '--labels', model.labels_file,
                        '--int8_calibration', PHOTOS, '--int8_images', 5, '--int8_holdout', 4)
  assert staged.returncode == 0, staged.stderr
  assert f'--labels {dest / "labels.csv"}' in staged.stdout
  figures = json.loads((dest / 'int8.json').read_text())['holdout']
  result = label_images('--input', PHOTOS, '--output', tmp_path / 'out', '--engine', 'litert_int8',
                        '--model_handle', dest / 'classification',
                        '--feature_handle', dest / 'feature_vector',
                        '--labels', dest / 'labels.csv', '--top_k', 3)
  assert result.returncode == 0, result.stderr
  int8_rows = {row['uri']: row for row in read_rows(tmp_path / 'out', model)}
  fp32_rows = {row['uri']: row for row in read_rows(labelled('inception'), model)}
  assert set(int8_rows) == set(fp32_rows) and len(int8_rows) == len(ALL_PHOTOS)
  same_label = np.mean([int8_rows[uri]['label'] == fp32_rows[uri]['label'] for uri in fp32_rows])
  cosines = [np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) for a, b in (
      (np.asarray(int8_rows[uri]['embedding']), np.asarray(fp32_rows[uri]['embedding']))
      for uri in fp32_rows)]
  # As close to fp32 as stage-model measured on the images it held out, give or take a photo.
  assert same_label >= figures['labels_agree'] - 2 / len(ALL_PHOTOS)
  assert min(cosines) >= figures['embedding_cosine_min'] - 0.05
