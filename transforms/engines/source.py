"""What the engines build a model from, each piece made once per process and on demand:
the model on TensorFlow, its float TFLite flatbuffer (cached on local disk), the int8 model
staged beside it, and the record of engines that already passed their check on it."""

import hashlib
import json
import os
from importlib import metadata

from transforms.files import write_bytes
from transforms.int8 import load_int8
from transforms.model_store import cache_root, hash_model_files, local_model_dir


class ModelSource:
  """The model `spec` describes, from its handles."""

  def __init__(self, spec, model_handle, feature_handle):
    self.spec = spec
    self.model_handle = model_handle
    self.feature_handle = feature_handle
    self._tf_model = None
    self._digest = None
    self._int8 = None

  def tf_model(self):
    if self._tf_model is None:
      from transforms.model import load_image_model  # pylint: disable=import-outside-toplevel
      self._tf_model = load_image_model(self.spec, self.model_handle, self.feature_handle)
    return self._tf_model

  def digest(self):
    """A hash of the description, the models' files and TensorFlow's version: everything
    the float flatbuffer is made from."""
    if self._digest is None:
      digest = hashlib.sha256(json.dumps(self.spec.to_dict(), sort_keys=True).encode())
      digest.update(f'tensorflow=={metadata.version("tensorflow")};'.encode())
      for handle in (self.model_handle, self.feature_handle):
        if handle:
          hash_model_files(digest, local_model_dir(handle)).update(b'\1')
      self._digest = digest.hexdigest()[:32]
    return self._digest

  def cache_path(self, name):
    return os.path.join(cache_root(), 'engines', name)

  def fp32_tflite_path(self):
    """The model as a float32 TFLite file on local disk, converted by TensorFlow's converter
    the first time and kept."""
    path = self.cache_path(f'{self.digest()}.tflite')
    if not os.path.exists(path):
      from transforms.engines.litert import convert_to_tflite  # pylint: disable=import-outside-toplevel
      os.makedirs(os.path.dirname(path), exist_ok=True)
      write_bytes(path, convert_to_tflite(self.tf_model()))  # readers see all of it or nothing
    return path

  def int8(self):
    """(flatbuffer, figures) of the int8 model stage-model wrote beside the classifier."""
    if self._int8 is None:
      self._int8 = load_int8(self.model_handle)
    return self._int8
