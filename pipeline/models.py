"""The model a run labels with, read once by the driver before the pipeline is built: its
description (size, classes, scores, embedding) and its class names, checked together."""

from typing import NamedTuple

from transforms.describe import ModelShapeError, describe
from transforms.labels import Labels, LabelsError, builtin_labels, given_labels
from transforms.model_spec import ModelSpec
from transforms.model_store import local_model_dir


class ModelError(ValueError):
  """A model, or labels, the run cannot use: exit 2 before any work."""


class ChosenModel(NamedTuple):
  spec: ModelSpec
  labels: Labels


def choose_model(args):
  """The ChosenModel of the run's --model_handle, --feature_handle, --labels and
  --image_size; ModelError says what was found and what is expected."""
  try:
    labels = given_labels(args.labels, local_model_dir(args.model_handle))
    requested_size = (args.image_size, args.image_size) if args.image_size else None
    spec = describe(args.model_handle, args.feature_handle, requested_size,
                    len(labels.names) if labels else None)
  except (ModelShapeError, LabelsError) as e:
    raise ModelError(str(e)) from e
  if labels is None:
    labels = builtin_labels(spec.classes)
    if labels is None:
      raise ModelError(
          f'--model_handle {args.model_handle} has {spec.classes:,} classes and ships no '
          'labels.txt: pass --labels FILE, one name per line (or a CSV/TSV with id and name '
          'columns)')
  if len(labels.names) != spec.classes:
    raise ModelError(
        f'{labels.source} holds {len(labels.names):,} label names, but the model '
        f'{args.model_handle} has {spec.classes:,} classes.\n'
        '  Pass the labels file that belongs to this model (--labels), one name per class, in '
        'the order of its scores.')
  return ChosenModel(spec, labels)
