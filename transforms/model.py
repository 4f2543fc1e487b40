"""The model on TensorFlow: uint8 pixels in, class scores and embedding out, in one pass.

For a TF Hub classification module and its feature-vector twin, the classifier is the
feature extractor plus a dense head; applying that head (found among the classifier's
variables by its shape) to the embedding gives both outputs for the price of one pass. A
probe batch checks at load time that this reproduces the classifier's own scores; where it
does not, both modules run, with a warning. One SavedModel with two outputs runs once; a
classifier without an embedding gives scores alone.

That TensorFlow model is the `tf` engine, the reference the others (transforms/engines/)
are converted from and checked against.
"""

import logging

import numpy as np

from transforms.describe import entry_point, load_saved_model
from transforms.engines.checks import TOLERANCES, probe_figures
from transforms.model_spec import CLASSIFIER, ONE_MODEL
from transforms.quiet import import_tensorflow

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
  error = probe_figures(fused, both_modules, spec)['max_relative_error']
  if error > TOLERANCES['fp32'].max_relative_error:
    _LOGGER.warning('The head of %s applied to the embedding of %s differs from the '
                    'classifier by %.3g on the probe batch: running both modules, two '
                    'forward passes per image.', model_handle, feature_handle, error)
    return both_modules
  return fused
