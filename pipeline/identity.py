"""What produced an output directory's rows: the models (by content) and their description,
the engine and its precision, the preprocessing and the label set. A directory holds the rows of one identity:
embeddings of two models, or of fp32 and int8, cannot be compared with each other."""

import hashlib

from transforms import decode
from transforms.int8 import load_int8
from transforms.model_store import bucket_files, hash_model_files, listing_digest, local_model_dir


def model_fingerprint(handle, local):
  """A hash of the model's files; where the driver has no copy (a remote run with a URL
  handle) the handle itself stands for them."""
  if '://' not in handle or local:
    return 'sha256:' + hash_model_files(hashlib.sha256(), local_model_dir(handle)).hexdigest()
  if handle.startswith('gs://'):
    return 'listing-sha256:' + listing_digest(bucket_files(handle)[1])
  return 'handle:' + handle


def staged_int8(args):
  """What stage-model recorded of the int8 models beside --model_handle (their hashes and
  figures), for a run at int8; None for any other run. FileNotFoundError, saying how to make
  them, where none is staged."""
  return load_int8(args.model_handle)[1] if args.precision == 'int8' else None


def int8_model_sha256(engine, int8_model):
  """The hash of the int8 model `engine` runs (the TFLite one for auto: both are staged
  together)."""
  if not int8_model:
    return None
  if engine == 'openvino_int8':
    return (int8_model.get('openvino') or {}).get('sha256')
  return int8_model.get('sha256')


def directory_identity(args, local, model, int8_model=None):
  """The identity of rows labelled with `args` (whose engine and precision are settled) and
  the ChosenModel `model`."""
  height, width = model.spec.image_size
  return {
      'model_handle': args.model_handle,
      'feature_handle': args.feature_handle,
      'model_files': model_fingerprint(args.model_handle, local),
      'feature_files': (model_fingerprint(args.feature_handle, local) if args.feature_handle
                        else None),
      'model': model.spec.to_dict(),
      'engine': args.engine,
      'precision': args.precision,
      'int8_model_sha256': int8_model_sha256(args.engine, int8_model),
      'preprocessing': {'central_crop_fraction': decode.CENTRAL_FRACTION,
                        'size': height if height == width else [height, width],
                        'resize': 'bilinear'},
      'labels': 'sha256:' + hashlib.sha256('\n'.join(model.labels.names).encode()).hexdigest(),
      'min_score': args.min_score,
  }


def differences(recorded, current):
  """The keys whose values differ, as 'key: recorded -> current'. A key an older version did
  not record yet is not a difference."""
  return [f'{key}: {recorded.get(key)} -> {current.get(key)}'
          for key in sorted(recorded) if recorded.get(key) != current.get(key)]
