"""The model a run labels with, read once by the driver before the pipeline is built: its
description (size, classes, scores, embedding) and its class names, checked together.

Reading the description loads the model in TensorFlow; it is kept on local disk beside the
LiteRT conversions, keyed by the models' files and what else it depends on, so a later run
of the same model starts without TensorFlow.
"""

import hashlib
import json
import os
from typing import NamedTuple

from transforms.describe import ModelShapeError, describe
from transforms.files import write_bytes
from transforms.labels import Labels, LabelsError, builtin_labels, given_labels
from transforms.model_spec import ModelSpec
from transforms.model_store import cache_root, hash_model_files, local_model_dir


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
    spec = described(args.model_handle, args.feature_handle, requested_size,
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


def described(model_handle, feature_handle, requested_size, label_count):
  """describe(...), read from the local cache where this model was described before."""
  digest = hashlib.sha256(json.dumps(
      [ModelSpec._fields, requested_size, label_count]).encode())
  for handle in filter(None, (model_handle, feature_handle)):
    hash_model_files(digest, local_model_dir(handle)).update(b'\1')
  path = os.path.join(cache_root(), 'descriptions', digest.hexdigest()[:32] + '.json')
  try:
    with open(path, 'rb') as f:
      return ModelSpec.from_dict(json.load(f))
  except (OSError, ValueError, TypeError):
    pass
  spec = describe(model_handle, feature_handle, requested_size, label_count)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_bytes(path, json.dumps(spec.to_dict()).encode())
  return spec
