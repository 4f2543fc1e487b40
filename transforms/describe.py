"""Reading a ModelSpec off the SavedModels themselves, once, in the driver.

The input size comes from the signature (or --image_size, for a model that takes any size);
the class count, the embedding width and whether scores are logits or probabilities come
from the outputs of one probe batch. Which output is which, for one model with two, is told
by the label count where it settles it, else by the outputs' names.
"""

import numpy as np

from transforms.model_spec import (CLASSIFIER, LOGITS, ONE_MODEL, PAIR, PROBABILITIES,
                                   ModelSpec)
from transforms.model_store import local_model_dir
from transforms.quiet import import_tensorflow

SERVING_SIGNATURE = 'serving_default'
_CLASS_WORDS = ('logit', 'prob', 'score', 'class', 'predict')
_EMBEDDING_WORDS = ('embed', 'feature', 'pool', 'vector')
# Probabilities sum to 1 up to float32 rounding over thousands of classes.
_SUM_TOLERANCE = 1e-3


class ModelShapeError(ValueError):
  """A model the pipeline cannot run, with what was found and what is expected."""


def load_saved_model(handle):
  return import_tensorflow().saved_model.load(local_model_dir(handle))


def entry_point(loaded):
  """(function of float images -> the model's outputs, the TensorSpec of its image input):
  the serving signature where the model has one (as Keras exports), else the module's own
  __call__ (as TF Hub modules have)."""
  tf = import_tensorflow()
  signature = getattr(loaded, 'signatures', {}).get(SERVING_SIGNATURE)
  if signature is not None:
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
      raise ModelShapeError(f'its serving signature takes {len(inputs)} inputs '
                            f'({", ".join(sorted(inputs))}); expected one: the images')
    (name, spec), = inputs.items()
    return (lambda images: signature(**{name: images})), spec
  for concrete in getattr(getattr(loaded, '__call__', None), 'concrete_functions', ()):
    args = concrete.structured_input_signature[0]
    if args and isinstance(args[0], tf.TensorSpec):
      return loaded, args[0]
  raise ModelShapeError('it has neither a serving signature nor a __call__ function')


def named_outputs(outputs):
  """The model's outputs as {name: array}: a dict as it is, one tensor as 'output'."""
  if isinstance(outputs, dict):
    return {name: np.asarray(value) for name, value in outputs.items()}
  if isinstance(outputs, (list, tuple)):
    return {f'output_{i}': np.asarray(value) for i, value in enumerate(outputs)}
  return {'output': np.asarray(outputs)}


def image_size(spec, requested):
  """(height, width) of the images a model with input `spec` takes."""
  shape = spec.shape
  if shape.rank != 4 or shape[-1] != 3 or not spec.dtype.is_floating:
    raise ModelShapeError(f'its input is {spec.dtype.name} {shape}; expected float images '
                          '[batch, height, width, 3] with RGB in [0, 1]')
  fixed = (shape[1], shape[2])
  if None not in fixed:
    if requested and tuple(requested) != fixed:
      raise ModelShapeError(f'it takes {fixed[0]}x{fixed[1]} images; --image_size is only '
                            'for models that take any size')
    return fixed
  if not requested:
    raise ModelShapeError('it takes images of any size: pass --image_size (e.g. 224)')
  return tuple(requested)


def probe_pixels(size):
  """A fixed batch of uint8 pixels at `size`: noise and a smooth gradient, enough to
  exercise every output."""
  height, width = size
  noise = np.random.default_rng(0).integers(0, 256, (1, height, width, 3))
  rows, columns = np.linspace(0, 255, height), np.linspace(0, 255, width)
  gradient = np.stack(np.broadcast_arrays(rows[:, None], columns[None, :],
                                          rows[::-1, None]), -1)
  return np.concatenate([noise, gradient[None]]).astype(np.uint8)


def _probe_outputs(function, size):
  tf = import_tensorflow()
  images = tf.constant(probe_pixels(size), tf.float32) / 255.0
  outputs = named_outputs(function(images))
  return {name: value for name, value in outputs.items() if value.ndim == 2}


def _scores_kind(scores):
  is_distribution = (np.all(scores >= 0) and
                     np.allclose(scores.sum(axis=1), 1.0, atol=_SUM_TOLERANCE))
  return PROBABILITIES if is_distribution else LOGITS


def _shapes(outputs):
  return ', '.join(f'{name} [batch, {value.shape[1]}]' for name, value in outputs.items()) \
      or 'no [batch, n] output'


def _has_word(name, words):
  return any(word in name.lower() for word in words)


def _tell_apart(outputs, label_count):
  """(class output name, embedding output name) of a model with two outputs."""
  names = list(outputs)
  if label_count:
    by_width = [name for name in names if outputs[name].shape[1] == label_count]
    if len(by_width) == 1:
      return by_width[0], next(name for name in names if name != by_width[0])
  by_name = [name for name in names if _has_word(name, _CLASS_WORDS)
             and not _has_word(name, _EMBEDDING_WORDS)]
  if len(by_name) == 1:
    return by_name[0], next(name for name in names if name != by_name[0])
  raise ModelShapeError(
      f'it returns {_shapes(outputs)}: cannot tell the class scores from the embedding. '
      'Name the outputs (e.g. "probabilities" and "embedding"), or pass --labels with one '
      'name per class')


def _describe_one(handle, flag, requested_size):
  """(entry function, image size) of one SavedModel; ModelShapeError names the flag."""
  try:
    loaded = load_saved_model(handle)
  except FileNotFoundError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).strip().splitlines()[-1] if str(e).strip() else ''
    raise ModelShapeError(f'{flag} {handle} cannot be loaded as a SavedModel '
                          f'({type(e).__name__}: {reason[:200]})') from e
  try:
    function, spec = entry_point(loaded)
    return function, image_size(spec, requested_size)
  except ModelShapeError as e:
    raise ModelShapeError(f'{flag} {handle}: {e}') from e


def describe(model_handle, feature_handle=None, requested_size=None, label_count=None):
  """The ModelSpec of the classifier at `model_handle`, with the embedding of its twin
  `feature_handle`, or of its own second output, or none."""
  classify, size = _describe_one(model_handle, '--model_handle', requested_size)
  outputs = _probe_outputs(classify, size)
  if feature_handle:
    if len(outputs) != 1:
      raise ModelShapeError(
          f'--model_handle {model_handle} returns {_shapes(outputs)}; with --feature_handle '
          'it must return the class scores alone')
    embed, feature_size = _describe_one(feature_handle, '--feature_handle', size)
    embeddings = _probe_outputs(embed, feature_size)
    if feature_size != size or len(embeddings) != 1:
      raise ModelShapeError(
          f'--feature_handle {feature_handle} takes {feature_size[0]}x{feature_size[1]} images '
          f'and returns {_shapes(embeddings)}; expected {size[0]}x{size[1]} images, as '
          '--model_handle takes, and one embedding [batch, width]')
    (scores,) = outputs.values()
    return ModelSpec(size, scores.shape[1], _scores_kind(scores),
                     next(iter(embeddings.values())).shape[1], PAIR)
  if len(outputs) == 1:
    (scores,) = outputs.values()
    return ModelSpec(size, scores.shape[1], _scores_kind(scores), None, CLASSIFIER)
  if len(outputs) == 2:
    try:
      class_output, embedding_output = _tell_apart(outputs, label_count)
    except ModelShapeError as e:
      raise ModelShapeError(f'--model_handle {model_handle}: {e}') from e
    scores = outputs[class_output]
    return ModelSpec(size, scores.shape[1], _scores_kind(scores),
                     outputs[embedding_output].shape[1], ONE_MODEL, class_output,
                     embedding_output)
  raise ModelShapeError(
      f'--model_handle {model_handle} returns {_shapes(outputs)}; expected class scores '
      '[batch, classes], and optionally an embedding [batch, width] as a second output or '
      'from a --feature_handle twin')
