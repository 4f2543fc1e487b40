"""MobileNet V2 from TF Hub: logits and embedding from one forward pass.

The feature-vector module gives the 1280-wide embedding; the classification module
is the same network plus a 1280 -> 1001 head. Applying that head (found among the
classification module's variables) to the embedding gives both outputs for the
price of one pass. A probe batch checks at load time that this reproduces the
classification module's own logits; where it does not (another model, another
head layout), both modules run, with a warning.
"""

import logging

import numpy as np

from transforms.decode import IMAGE_SIZE
from transforms.labels import NUM_CLASSES
from transforms.model_store import local_model_dir

EMBEDDING_SIZE = 1280
# Float32 results of the same network computed in a different order differ by ~1e-5.
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
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self.fused = head is not None
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

    self._predict = predict

  def predict(self, pixels):
    logits, embeddings = self._predict(pixels)
    return logits.numpy(), embeddings.numpy()


def load_image_model(model_handle, feature_handle):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  classifier = tf.saved_model.load(local_model_dir(model_handle))
  feature_extractor = tf.saved_model.load(local_model_dir(feature_handle))
  head = find_head(classifier)
  if head is None:
    _LOGGER.warning('No single 1280x1001 head among the variables of %s: running both '
                    'modules, two forward passes per image.', model_handle)
    return ImageModel(classifier, feature_extractor, None)
  fused = ImageModel(classifier, feature_extractor, head)
  pixels = probe_pixels()
  fused_logits, _ = fused.predict(pixels)
  reference_logits = classifier(tf.cast(pixels, tf.float32) / 255.0).numpy()
  error = float(np.max(np.abs(fused_logits - reference_logits)))
  if error > PROBE_TOLERANCE * max(1.0, float(np.max(np.abs(reference_logits)))):
    _LOGGER.warning('The head of %s applied to the embedding of %s differs from the '
                    'classifier by %.3g on the probe batch: running both modules, two '
                    'forward passes per image.', model_handle, feature_handle, error)
    return ImageModel(classifier, feature_extractor, None)
  _LOGGER.info('One forward pass per image: head applied to the embedding (probe error %.2g).',
               error)
  return fused
