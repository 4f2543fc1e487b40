"""The engines: each registered one against TensorFlow, the remembered checks, the fallback,
and --engine auto's choice within the precision allowed."""

import json
import logging
import os

import numpy as np
import pytest

from conftest import PHOTOS_DIR, REFERENCE_LABELS, environment, last_run, photo_pixels
from test_cli import label_images, model_args
from transforms.decode import DecodedImage
from transforms.engines import EngineUnavailable, engine_names, litert
from transforms.engines.checks import TOLERANCES, cosines
from transforms.engines.choice import choose_engine, load_engine
from transforms.engines.openvino import CPU_MASK_VARIABLE, cpu_has_bf16
from transforms.engines.source import ModelSource
from transforms.inference import ImageModelHandler

# Per precision: the least share of the photos' reference labels kept, and the least cosine
# of an embedding with TensorFlow's.
PHOTO_FIDELITY = {'fp32': (1.0, 0.9999), 'bf16': (0.85, 0.99), 'int8': (0.75, 0.9)}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
  """An empty cache: conversions and checks made in this test only."""
  monkeypatch.setenv('LABEL_IMAGES_CACHE_DIR', str(tmp_path / 'cache'))
  return tmp_path / 'cache'


@pytest.fixture(scope='module')
def staged_models(tmp_path_factory, model_dir, user_images):
  """The fixture models staged with an int8 twin calibrated on a user's images."""
  dest = tmp_path_factory.mktemp('staged') / 'models'
  result = label_images('stage-model', '--source', model_dir, '--dest', dest,
                        '--int8_calibration', user_images, '--int8_images', 40,
                        '--int8_holdout', 40)
  assert result.returncode == 0, result.stderr[-3000:]
  return dest


def bf16_here():
  import openvino  # pylint: disable=import-outside-toplevel
  return cpu_has_bf16(openvino.Core())


@pytest.mark.parametrize('name', [name for name in engine_names() if name != 'tf'])
def test_every_engine_matches_tensorflow_within_its_precision(name, staged_models, model_spec,
                                                              image_model, fresh_cache):
  handles = str(staged_models / 'classification'), str(staged_models / 'feature_vector')
  if name == 'openvino_bf16' and not bf16_here():
    with pytest.raises(EngineUnavailable, match='neither AMX nor AVX512-BF16'):
      load_engine(model_spec, *handles, name)
    return
  engine = load_engine(model_spec, *handles, name)
  assert engine.name == name, 'fell back to TensorFlow'
  names, pixels = photo_pixels()
  scores, embeddings = engine.predict(pixels)
  tf_scores, tf_embeddings = image_model.predict(pixels)
  least_labels, least_cosine = PHOTO_FIDELITY[engine.precision]
  kept = np.mean([scores[i].argmax() == REFERENCE_LABELS[n] for i, n in enumerate(names)])
  assert kept >= least_labels, dict(zip(names, scores.argmax(1).tolist()))
  assert cosines(embeddings, tf_embeddings).min() >= least_cosine
  error = np.max(np.abs(scores - tf_scores)) / np.max(np.abs(tf_scores))
  assert error <= TOLERANCES[engine.precision].max_relative_error


def test_a_passed_check_is_remembered_and_reused_without_tensorflow(model_dir, model_spec,
                                                                    fresh_cache, monkeypatch):
  handles = model_spec, str(model_dir / 'classification'), str(model_dir / 'feature_vector')
  for name in ('litert', 'openvino_fp32'):
    assert load_engine(*handles, name).name == name
  records = sorted(path.name.split('-')[0] for path in (fresh_cache / 'engines' / 'checked')
                   .iterdir())
  assert records == ['litert', 'openvino_fp32']

  def no_tensorflow(self):
    raise AssertionError('TensorFlow was loaded')
  monkeypatch.setattr(ModelSource, 'tf_model', no_tensorflow)
  for name in ('litert', 'openvino_fp32'):
    assert load_engine(*handles, name).name == name


def test_a_failed_conversion_falls_back_to_tensorflow(model_dir, model_spec, fresh_cache,
                                                       monkeypatch, caplog):
  def broken_converter(tf_model):
    raise RuntimeError('converter crashed')
  monkeypatch.setattr(litert, 'convert_to_tflite', broken_converter)
  with caplog.at_level(logging.WARNING):
    engine = load_engine(model_spec, str(model_dir / 'classification'),
                         str(model_dir / 'feature_vector'), 'litert')
  assert engine.name == 'tf'
  assert ('The litert engine is unavailable (RuntimeError: converter crashed): running on '
          'TensorFlow.') in caplog.text


def test_an_engine_that_disagrees_falls_back_to_tensorflow_every_time(
    model_dir, model_spec, fresh_cache, monkeypatch, caplog):
  class OffByOne(litert.LiteRtModel):
    def predict(self, pixels):
      scores, embeddings = super().predict(pixels)
      return scores + 1.0, embeddings
  monkeypatch.setattr(litert, 'LiteRtModel', OffByOne)
  handles = model_spec, str(model_dir / 'classification'), str(model_dir / 'feature_vector')
  for _ in range(2):  # the second time from the remembered check
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      engine = load_engine(*handles, 'litert')
    assert engine.name == 'tf'
    assert 'The litert engine differs from TensorFlow on the probe batch' in caplog.text


def test_an_engine_isolates_a_bad_image_in_a_batch(model_dir, model_spec):
  engine = load_engine(model_spec, str(model_dir / 'classification'),
                       str(model_dir / 'feature_vector'), 'openvino_fp32')
  with pytest.raises(ValueError, match='expected pixels of shape'):
    engine.predict(np.zeros((1, 224, 100, 3), np.uint8))
  good = DecodedImage('good.jpg', np.zeros((224, 224, 3), np.uint8), 1, 1)
  bad = DecodedImage('bad.jpg', np.zeros((224, 100, 3), np.uint8), 1, 1)
  results = ImageModelHandler(model_spec, 'M', 'F').run_inference([good, bad, good], engine)
  assert [type(r.inference).__name__ for r in results] == ['ModelOutput', 'Failure', 'ModelOutput']


def source_of(models_dir, spec):
  return ModelSource(spec, str(models_dir / 'classification'), str(models_dir / 'feature_vector'))


def test_auto_keeps_the_fastest_engine_it_timed_and_says_why(staged_models, model_spec):
  running = choose_engine(source_of(staged_models, model_spec))
  choice = running.choice
  assert running.name == choice.engine == max(choice.images_per_s, key=choice.images_per_s.get)
  assert {'litert', 'openvino_fp32'} <= set(choice.images_per_s)
  assert 'tf' not in choice.images_per_s and 'tf' not in choice.passed_over
  # The staged int8 model agrees with fp32 on fewer than 97% of its held-out images.
  assert 'litert_int8' not in choice.images_per_s
  assert 'below the fidelity bar on the staging images' in choice.passed_over['litert_int8']
  assert running.precision == ('bf16' if running.name == 'openvino_bf16' else 'fp32')


def test_fp32_never_picks_a_reduced_precision(staged_models, model_spec):
  running = choose_engine(source_of(staged_models, model_spec), 'fp32')
  assert running.precision == 'fp32' and running.name in ('litert', 'openvino_fp32')
  assert set(running.choice.images_per_s) == {'litert', 'openvino_fp32'}


def test_int8_when_asked_even_below_the_bar(staged_models, model_spec):
  running = choose_engine(source_of(staged_models, model_spec), 'int8')
  assert running.precision == 'int8'
  assert set(running.choice.images_per_s) == {'litert_int8', 'openvino_int8'}


def test_without_bf16_auto_picks_fp32_and_bf16_is_refused(model_dir, model_spec, monkeypatch):
  monkeypatch.setenv(CPU_MASK_VARIABLE, 'bf16')
  running = choose_engine(source_of(model_dir, model_spec))
  assert running.precision == 'fp32'
  assert 'masked by' in running.choice.passed_over['openvino_bf16']
  with pytest.raises(EngineUnavailable, match='no bf16 engine can run here'):
    choose_engine(source_of(model_dir, model_spec), 'bf16')


def test_the_run_records_what_auto_chose_and_resume_keeps_it(model_dir, tmp_path):
  output = tmp_path / 'out'
  photos = os.path.join(PHOTOS_DIR, '*')
  first = label_images('--input', photos, '--output', output, *model_args(model_dir))
  assert first.returncode == 0, first.stderr[-3000:]
  manifest = json.loads((output / '_manifest.json').read_text())
  run = manifest['runs'][-1]
  chosen = run['engine_choice']['engine']
  assert (manifest['identity']['engine'], manifest['identity']['precision']) == (
      chosen, run['engine_choice']['precision'])
  assert run['images_by_engine'] == {chosen: 9}
  assert f'label-images: engine: {chosen} (' in first.stderr
  assert f'  engine: {chosen} (9 images)' in first.stdout

  with environment(**{CPU_MASK_VARIABLE: 'bf16'}):  # whatever another probe would pick
    resumed = label_images('--input', photos, '--output', output, '--resume',
                           *model_args(model_dir))
  if chosen == 'openvino_bf16':  # the directory's bf16 cannot be continued without bf16
    assert resumed.returncode == 2
    assert 'was labelled with openvino_bf16, which cannot run here' in resumed.stderr
  else:
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert last_run(output)['engine'] == chosen and last_run(output)['engine_choice'] is None


def test_a_directory_of_one_engine_is_resumed_on_it(model_dir, tmp_path):
  output = tmp_path / 'out'
  photos = os.path.join(PHOTOS_DIR, '*')
  first = label_images('--input', photos, '--output', output, '--engine', 'litert',
                       *model_args(model_dir))
  assert first.returncode == 0, first.stderr[-3000:]
  resumed = label_images('--input', photos, '--output', output, '--resume',
                         *model_args(model_dir))
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert last_run(output)['engine'] == 'litert' and last_run(output)['precision'] == 'fp32'
  refused = label_images('--input', photos, '--output', output, '--resume', '--precision',
                         'bf16', *model_args(model_dir))
  assert refused.returncode == 2


def test_precision_bf16_without_bf16_is_one_line_and_exit_2(model_dir, tmp_path):
  with environment(**{CPU_MASK_VARIABLE: 'bf16'}):
    result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output',
                          tmp_path / 'out', '--precision', 'bf16', *model_args(model_dir))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      'label-images: --precision bf16: no bf16 engine can run here: openvino_bf16: this CPU '
      'has neither AMX nor AVX512-BF16')


def test_an_engine_of_another_precision_is_a_usage_error(model_dir, tmp_path):
  result = label_images('--input', os.path.join(PHOTOS_DIR, '*'), '--output', tmp_path / 'out',
                        '--engine', 'litert', '--precision', 'bf16', *model_args(model_dir))
  assert result.returncode == 2
  assert '--engine litert computes in fp32, not bf16' in result.stderr
