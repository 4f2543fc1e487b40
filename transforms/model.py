"""MobileNet V2 from TF Hub: logits and embedding from one forward pass.

The feature-vector module gives the 1280-wide embedding; the classification module
is the same network plus a 1280 -> 1001 head. Applying that head (found among the
classification module's variables) to the embedding gives both outputs for the
price of one pass. A probe batch checks at load time that this reproduces the
classification module's own logits; where it does not (another model, another
head layout), both modules run, with a warning.

That TensorFlow model is one of three engines; the default is the same function
converted to TFLite and run by LiteRT on XNNPACK (litert_engine.py), and litert_int8 runs
that function quantized to int8 once, by stage-model, on the user's images (int8.py).
"""

import logging

import numpy as np

from transforms.decode import IMAGE_SIZE
from transforms.int8 import load_int8
from transforms.labels import NUM_CLASSES
from transforms.litert_engine import LiteRtModel, TfliteCache, convert_to_tflite
from transforms.model_store import local_model_dir
from transforms.quiet import import_tensorflow

ENGINES = ('litert', 'litert_int8', 'tf')
DEFAULT_ENGINE = 'litert'
EMBEDDING_SIZE = 1280
# Float32 results of the same network computed in a different order differ by ~1e-5,
# relative to the outputs' scale.
PROBE_TOLERANCE = 1e-3

_LOGGER = logging.getLogger(__name__)


def find_head(classifier):
  """Returns (kernel [1280, 1001], bias [1001]) from the module's variables, or None."""
  variables = getattr(classifier, 'variables', ())  # TF Hub modules list them; plain ones may not
  kernels = [v for v in variables
             if v.shape.num_elements() == EMBEDDING_SIZE * NUM_CLASSES
             and v.shape[-2:] == (EMBEDDING_SIZE, NUM_CLASSES)]
  biases = [v for v in variables if v.shape == (NUM_CLASSES,)]
  if len(kernels) != 1 or len(biases) != 1:
    return None
  return np.reshape(kernels[0].numpy(), (EMBEDDING_SIZE, NUM_CLASSES)), biases[0].numpy()


def probe_pixels():
  """A fixed batch: noise and a smooth gradient, enough to exercise every logit."""
  noise = np.random.default_rng(0).integers(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE, 3))
  ramp = np.linspace(0, 255, IMAGE_SIZE)
  gradient = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], ramp[::-1, None]), -1)
  return np.concatenate([noise, gradient[None]]).astype(np.uint8)


class ImageModel:
  """uint8 pixels [n, 224, 224, 3] -> (logits [n, 1001], embeddings [n, 1280]), float32."""

  def __init__(self, classifier, feature_extractor, head):
    tf = import_tensorflow()
    self.fused = head is not None
    # What holds the variables predict_function reads, for TensorFlow's converter.
    self.trackable = tf.train.Checkpoint(
        classifier=classifier, feature_extractor=feature_extractor)
    if self.fused:
      kernel, bias = (tf.constant(a, tf.float32) for a in head)

      def forward(images):
        embeddings = feature_extractor(images)
        return tf.matmul(embeddings, kernel) + bias, embeddings
    else:

      def forward(images):
        return classifier(images), feature_extractor(images)

    @tf.function(input_signature=[
        tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8)])
    def predict(pixels):
      return forward(tf.cast(pixels, tf.float32) / 255.0)

    self.predict_function = predict

  def predict(self, pixels):
    logits, embeddings = self.predict_function(pixels)
    return logits.numpy(), embeddings.numpy()


def _probe_error(model, reference):
  """Largest difference of either output on the probe batch, relative to its scale."""
  pixels = probe_pixels()
  return max(
      float(np.max(np.abs(output - expected))) / max(1.0, float(np.max(np.abs(expected))))
      for output, expected in zip(model.predict(pixels), reference.predict(pixels)))


def load_engine(model_handle, feature_handle, engine=DEFAULT_ENGINE):
  """The model on `engine`: 'litert' (TFLite on XNNPACK, checked against TensorFlow on a
  probe batch, TensorFlow where the check fails), 'litert_int8' (the int8 model staged
  beside the classification module) or 'tf'.

  A conversion that passed its check is cached on local disk, keyed by the models' files
  and the versions of TensorFlow and LiteRT, so later worker processes load it without
  TensorFlow.
  """
  if engine == 'tf':
    return load_image_model(model_handle, feature_handle)
  if engine == 'litert_int8':
    return LiteRtModel(load_int8(model_handle)[0])
  cache = TfliteCache(local_model_dir(model_handle), local_model_dir(feature_handle))
  cached = cache.load()
  if cached is not None:
    return LiteRtModel(cached)
  tf_model = load_image_model(model_handle, feature_handle)
  try:
    tflite_model = convert_to_tflite(tf_model)
    fast = LiteRtModel(tflite_model)
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


def load_image_model(model_handle, feature_handle):
  """The model on TensorFlow, one forward pass per image where the head allows."""
  tf = import_tensorflow()
  classifier = tf.saved_model.load(local_model_dir(model_handle))
  feature_extractor = tf.saved_model.load(local_model_dir(feature_handle))
  both_modules = ImageModel(classifier, feature_extractor, None)
  head = find_head(classifier)
  if head is None:
    _LOGGER.warning('No single 1280x1001 head among the variables of %s: running both '
                    'modules, two forward passes per image.', model_handle)
    return both_modules
  fused = ImageModel(classifier, feature_extractor, head)
  error = _probe_error(fused, both_modules)
  if error > PROBE_TOLERANCE:
    _LOGGER.warning('The head of %s applied to the embedding of %s differs from the '
                    'classifier by %.3g on the probe batch: running both modules, two '
                    'forward passes per image.', model_handle, feature_handle, error)
    return both_modules
  return fused
