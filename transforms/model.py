"""The model on TensorFlow: uint8 pixels in, class scores and embedding out, in one pass.

For a TF Hub classification module and its feature-vector twin, the classifier is the
feature extractor plus a dense head; applying that head (found among the classifier's
variables by its shape) to the embedding gives both outputs for the price of one pass. A
probe batch checks at load time that this reproduces the classifier's own scores; where it
does not, both modules run, with a warning. One SavedModel with two outputs runs once; a
classifier without an embedding gives scores alone.

That TensorFlow model is one of three engines; the default is the same function
converted to TFLite and run by LiteRT on XNNPACK (litert_engine.py), and litert_int8 runs
that function quantized to int8 once, by stage-model, on the user's images (int8.py).
"""

import logging

import numpy as np

from transforms.describe import entry_point, load_saved_model, probe_pixels
from transforms.int8 import load_int8
from transforms.litert_engine import LiteRtModel, TfliteCache, convert_to_tflite
from transforms.model_spec import CLASSIFIER, ONE_MODEL
from transforms.model_store import local_model_dir
from transforms.quiet import import_tensorflow

ENGINES = ('litert', 'litert_int8', 'tf')
DEFAULT_ENGINE = 'litert'
# Float32 results of the same network computed in a different order differ by ~1e-5,
# relative to the outputs' scale.
PROBE_TOLERANCE = 1e-3

_LOGGER = logging.getLogger(__name__)


def find_head(classifier, spec):
  """(kernel [width, classes], bias [classes]) from the module's variables, or None."""
  width, classes = spec.embedding_width, spec.classes
  variables = getattr(classifier, 'variables', ())  # TF Hub modules list them; plain ones may not
  kernels = [v for v in variables
             if v.shape.num_elements() == width * classes and v.shape[-2:] == (width, classes)]
  biases = [v for v in variables if v.shape == (classes,)]
  if len(kernels) != 1 or len(biases) != 1:
    return None
  return np.reshape(kernels[0].numpy(), (width, classes)), biases[0].numpy()


def _only_output(function):
  """A model function returning one output, as a tensor, whatever structure holds it."""
  def call(images):
    outputs = function(images)
    if isinstance(outputs, dict):
      (outputs,) = outputs.values()
    elif isinstance(outputs, (list, tuple)):
      (outputs,) = outputs
    return outputs
  return call


class ImageModel:
  """uint8 pixels [n, height, width, 3] -> (scores [n, classes], embeddings [n, width] or
  None), float32; scores as the model returns them (logits or probabilities)."""

  def __init__(self, spec, forward, trackable, one_pass=True):
    tf = import_tensorflow()
    self.spec = spec
    self.one_pass = one_pass  # False where two modules each run their own pass
    # What holds the variables predict_function reads, for TensorFlow's converter.
    self.trackable = trackable

    @tf.function(input_signature=[tf.TensorSpec([None, *spec.image_size, 3], tf.uint8)])
    def predict(pixels):
      return forward(tf.cast(pixels, tf.float32) / 255.0)

    self.predict_function = predict

  def predict(self, pixels):
    outputs = [output.numpy() for output in self.predict_function(pixels)]
    return outputs[0], (outputs[1] if len(outputs) > 1 else None)


def _probe_error(model, reference):
  """Largest difference of any output on the probe batch, relative to its scale."""
  pixels = probe_pixels(reference.spec.image_size)
  return max(
      float(np.max(np.abs(output - expected))) / max(1.0, float(np.max(np.abs(expected))))
      for output, expected in zip(model.predict(pixels), reference.predict(pixels))
      if expected is not None)


def load_engine(spec, model_handle, feature_handle, engine=DEFAULT_ENGINE):
  """The model described by `spec` on `engine`: 'litert' (TFLite on XNNPACK, checked
  against TensorFlow on a probe batch, TensorFlow where the check fails), 'litert_int8' (the
  int8 model staged beside the classification module) or 'tf'.

  A conversion that passed its check is cached on local disk, keyed by the models' files,
  the description and the versions of TensorFlow and LiteRT, so later worker processes load
  it without TensorFlow.
  """
  if engine == 'tf':
    return load_image_model(spec, model_handle, feature_handle)
  if engine == 'litert_int8':
    return LiteRtModel(load_int8(model_handle)[0], spec)
  handles = [handle for handle in (model_handle, feature_handle) if handle]
  cache = TfliteCache(spec, *(local_model_dir(handle) for handle in handles))
  cached = cache.load()
  if cached is not None:
    return LiteRtModel(cached, spec)
  tf_model = load_image_model(spec, model_handle, feature_handle)
  try:
    tflite_model = convert_to_tflite(tf_model)
    fast = LiteRtModel(tflite_model, spec)
    error = _probe_error(fast, tf_model)
  except Exception as e:  # pylint: disable=broad-except
    _LOGGER.warning('The LiteRT engine is unavailable (%s: %s): running on TensorFlow.',
                    type(e).__name__, e)
    return tf_model
  if error > PROBE_TOLERANCE:
    _LOGGER.warning('The LiteRT engine differs from TensorFlow by %.3g on the probe batch: '
                    'running on TensorFlow.', error)
    return tf_model
  cache.store(tflite_model)
  return fast


def load_image_model(spec, model_handle, feature_handle):
  """The model on TensorFlow, one forward pass per image where the models allow."""
  tf = import_tensorflow()
  classifier = load_saved_model(model_handle)
  classify = entry_point(classifier)[0]
  if spec.form == CLASSIFIER:
    scores = _only_output(classify)
    return ImageModel(spec, lambda images: (scores(images),),
                      tf.train.Checkpoint(classifier=classifier))
  if spec.form == ONE_MODEL:
    def both_outputs(images):
      outputs = classify(images)
      return outputs[spec.class_output], outputs[spec.embedding_output]
    return ImageModel(spec, both_outputs, tf.train.Checkpoint(classifier=classifier))
  return _pair_model(spec, classifier, model_handle, feature_handle)


def _pair_model(spec, classifier, model_handle, feature_handle):
  """A classification module and its feature-vector twin: fused where the head is found."""
  tf = import_tensorflow()
  feature_extractor = load_saved_model(feature_handle)
  scores = _only_output(entry_point(classifier)[0])
  embed = _only_output(entry_point(feature_extractor)[0])
  trackable = tf.train.Checkpoint(classifier=classifier, feature_extractor=feature_extractor)
  both_modules = ImageModel(spec, lambda images: (scores(images), embed(images)), trackable,
                            one_pass=False)
  head = find_head(classifier, spec)
  if head is None:
    _LOGGER.warning('No single %dx%d head among the variables of %s: running both modules, '
                    'two forward passes per image.', spec.embedding_width, spec.classes,
                    model_handle)
    return both_modules
  kernel, bias = (tf.constant(a, tf.float32) for a in head)

  def fused_forward(images):
    embeddings = embed(images)
    return tf.matmul(embeddings, kernel) + bias, embeddings

  fused = ImageModel(spec, fused_forward, trackable)
  error = _probe_error(fused, both_modules)
  if error > PROBE_TOLERANCE:
    _LOGGER.warning('The head of %s applied to the embedding of %s differs from the '
                    'classifier by %.3g on the probe batch: running both modules, two '
                    'forward passes per image.', model_handle, feature_handle, error)
    return both_modules
  return fused
