"""Loading the TF Hub modules, the fused head, its probe check, and the model handler."""

import argparse
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from conftest import MODEL_SIZE, REFERENCE_LABELS, photo_pixels
from pipeline import models
from transforms.decode import DecodedImage
from transforms.engines.choice import RunningEngine
from transforms.failures import Failure
from transforms.describe import describe, probe_pixels
from transforms.inference import ImageModelHandler, ModelOutput
from transforms.model import ImageModel, find_head, load_image_model


class TinyModule(tf.train.Checkpoint):
  """A small stand-in with the shapes of MobileNet V2's outputs and head."""

  def __init__(self, classify, head_matches=True, listed_variables=True):
    super().__init__()
    rng = np.random.default_rng(1)
    self.projection = tf.Variable(rng.normal(size=(3, 1280)).astype(np.float32))
    self.kernel = tf.Variable(rng.normal(size=(1280, 1001)).astype(np.float32) * 0.01)
    self.bias = tf.Variable(rng.normal(size=(1001,)).astype(np.float32))
    if listed_variables:
      self.variables = [self.projection, self.kernel, self.bias]
    self._classify = classify
    self._head_matches = head_matches

  @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
  def __call__(self, images):
    embedding = tf.nn.relu(tf.matmul(tf.reduce_mean(images, [1, 2]), self.projection))
    if not self._classify:
      return embedding
    logits = tf.matmul(embedding, self.kernel) + self.bias
    return logits if self._head_matches else tf.nn.relu(logits) * 2.0


def save_tiny(directory, head_matches=True, listed_variables=True):
  """(spec, classification handle, feature-vector handle) of a tiny TF Hub-style pair."""
  for name, classify in (('classification', True), ('feature_vector', False)):
    module = TinyModule(classify, head_matches, listed_variables)
    tf.saved_model.save(module, str(directory / name))
  handles = str(directory / 'classification'), str(directory / 'feature_vector')
  return (describe(*handles), *handles)


def test_fixture_modules_have_the_tf_hub_layout(model_dir):
  classifier = hub.load(str(model_dir / 'classification'))
  assert len(classifier.trainable_variables) == len(classifier.variables) > 100
  names = {v.name: tuple(v.shape) for v in classifier.variables}
  assert names['MobilenetV2/Logits/Conv2d_1c_1x1/weights:0'] == (1, 1, 1280, 1001)
  assert names['MobilenetV2/Logits/Conv2d_1c_1x1/biases:0'] == (1001,)
  layer = hub.KerasLayer(str(model_dir / 'feature_vector'))
  assert tuple(layer(np.zeros((2, 224, 224, 3), np.float32)).shape) == (2, 1280)


def test_the_description_is_read_from_the_modules(model_spec):
  assert model_spec.to_dict() == {
      'image_size': [224, 224], 'classes': 1001, 'scores': 'logits', 'embedding_width': 1280,
      'form': 'pair', 'class_output': None, 'embedding_output': None}


def test_one_forward_pass_matches_the_classifier(model_dir, model_spec, image_model):
  assert image_model.one_pass
  classifier = tf.saved_model.load(str(model_dir / 'classification'))
  head = find_head(classifier, model_spec)
  assert head[0].shape == (1280, 1001) and head[1].shape == (1001,)
  pixels = probe_pixels(MODEL_SIZE)
  logits, embeddings = image_model.predict(pixels)
  reference = classifier(pixels.astype(np.float32) / 255.0).numpy()
  assert embeddings.shape == (2, 1280)
  assert np.max(np.abs(logits - reference)) < 1e-3


def module_calls(image_model):
  """The module invocations in the compiled forward function: one call op each."""
  graph = image_model.predict_function.get_concrete_function().graph
  return [op for op in graph.get_operations()
          if op.type in ('StatefulPartitionedCall', 'PartitionedCall')]


def test_one_forward_pass_runs_one_module_once(model_dir, model_spec, image_model):
  assert len(module_calls(image_model)) == 1
  classifier, features = (tf.saved_model.load(str(model_dir / name))
                          for name in ('classification', 'feature_vector'))
  both = ImageModel(model_spec, lambda images: (classifier(images), features(images)),
                    tf.train.Checkpoint(classifier=classifier, features=features))
  assert len(module_calls(both)) == 2  # what the count sees when both modules run


def test_labels_the_photos_as_the_reference(image_model, shared_fixtures):
  names, pixels = photo_pixels()
  logits, _ = image_model.predict(pixels)
  assert dict(zip(names, logits.argmax(1).tolist())) == REFERENCE_LABELS


def test_falls_back_to_both_modules_when_the_head_does_not_match(tmp_path, caplog):
  spec, classification, feature_vector = save_tiny(tmp_path, head_matches=False)
  with caplog.at_level(logging.WARNING):
    model = load_image_model(spec, classification, feature_vector)
  assert not model.one_pass
  assert 'two forward passes' in caplog.text
  pixels = probe_pixels(MODEL_SIZE)
  logits, _ = model.predict(pixels)
  reference = tf.saved_model.load(classification)(pixels.astype(np.float32) / 255.0).numpy()
  assert np.allclose(logits, reference, atol=1e-5)


def test_fuses_a_matching_head_of_another_model(tmp_path):
  assert load_image_model(*save_tiny(tmp_path)).one_pass


def test_runs_both_modules_when_no_head_is_listed(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    assert not load_image_model(*save_tiny(tmp_path, listed_variables=False)).one_pass
  assert 'No single 1280x1001 head' in caplog.text


def test_loads_models_from_gcs(model_dir, model_spec, gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  for root, _, files in os.walk(model_dir):
    for name in files:
      local = os.path.join(root, name)
      bucket.blob('models/' + os.path.relpath(local, model_dir)).upload_from_filename(local)
  model = load_image_model(model_spec, f'{bucket_uri}/models/classification',
                           f'{bucket_uri}/models/feature_vector/')
  assert model.one_pass
  logits, _ = model.predict(probe_pixels(MODEL_SIZE))
  assert logits.shape == (2, 1001)


def test_a_missing_local_model_fails_clearly(tmp_path, model_spec):
  with pytest.raises(FileNotFoundError, match='neither a URL nor a local directory'):
    load_image_model(model_spec, str(tmp_path / 'nothing'), str(tmp_path / 'nothing'))


def test_a_failing_batch_is_retried_image_by_image(model_spec, image_model):
  good = DecodedImage('good.jpg', np.zeros((224, 224, 3), np.uint8), 1, 1)
  bad = DecodedImage('bad.jpg', np.zeros((224, 100, 3), np.uint8), 1, 1)
  handler = ImageModelHandler(model_spec, 'M', 'F')
  results = handler.run_inference([good, bad, good], RunningEngine('tf', 'fp32', image_model))
  assert [r.example.uri for r in results] == ['good.jpg', 'bad.jpg', 'good.jpg']
  assert isinstance(results[0].inference, ModelOutput)
  assert isinstance(results[2].inference, ModelOutput)
  failure = results[1].inference
  assert isinstance(failure, Failure)
  assert (failure.uri, failure.stage, failure.error) == ('bad.jpg', 'inference', 'inference_failed')


@pytest.fixture
def tflite_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('LABEL_IMAGES_CACHE_DIR', str(tmp_path))


def test_a_model_is_described_once_then_read_from_the_cache(model_dir, tflite_cache,
                                                            monkeypatch):
  args = argparse.Namespace(model_handle=str(model_dir / 'classification'),
                            feature_handle=str(model_dir / 'feature_vector'), labels=None,
                            image_size=None)
  first = models.choose_model(args)
  assert first.labels.background_first and len(first.labels.names) == 1001

  def no_tensorflow(*args):
    raise AssertionError('the model was loaded again')
  monkeypatch.setattr(models, 'describe', no_tensorflow)
  assert models.choose_model(args) == first
