"""The fast engine: the loaded model converted to TFLite and run by LiteRT on XNNPACK.

TensorFlow's own converter turns the TF engine's predict function (uint8 pixels in,
class scores and embedding out, head fused) into a TFLite flatbuffer at worker start-up; the
LiteRT interpreter runs it in float32 on the XNNPACK delegate, on every core. The result
is checked against TensorFlow on a probe batch before it is used.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from importlib import metadata

import numpy as np

from transforms.model_store import cache_root, hash_model_files
from transforms.quiet import import_tensorflow, native_stderr_hidden


def convert_to_tflite(tf_model, calibration_pixels=None):
  """The TF engine's predict function (uint8 pixels in, float scores and embedding out) as a
  TFLite flatbuffer with the same inputs and outputs: float32, or, given calibration
  pixels, with weights and activations quantized to int8 on them."""
  tf = import_tensorflow()
  concrete = tf_model.predict_function.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf_model.trackable)
  if calibration_pixels is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in calibration_pixels)
  return converter.convert()


class TfliteCache:
  """Converted models on local disk, named by a hash of everything the conversion read."""

  def __init__(self, spec, *model_dirs):
    self.root = os.path.join(cache_root(), 'litert')
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for package in ('tensorflow', 'ai-edge-litert'):
      digest.update(f'{package}=={metadata.version(package)};'.encode())
    for model_dir in model_dirs:
      hash_model_files(digest, model_dir).update(b'\1')
    self.path = os.path.join(self.root, digest.hexdigest()[:32] + '.tflite')

  def load(self):
    try:
      with open(self.path, 'rb') as f:
        return f.read()
    except FileNotFoundError:
      return None

  def store(self, tflite_model):
    os.makedirs(self.root, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=self.root, suffix='.partial', delete=False) as f:
      f.write(tflite_model)
    os.replace(f.name, self.path)  # atomic: readers see all of it or nothing


class LiteRtModel:
  """uint8 pixels [n, height, width, 3] -> (scores [n, classes], embeddings [n, width] or
  None), float32, for the model `spec` describes.

  One interpreter per process, shared by its threads: it already runs every core, so
  calls take turns.
  """

  def __init__(self, tflite_model, spec, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    self._interpreter = Interpreter(model_content=tflite_model,
                                    num_threads=num_threads or os.cpu_count())
    self._input = self._interpreter.get_input_details()[0]['index']
    self._outputs = _output_indices(self._interpreter.get_output_details(), spec)
    self._pixels_shape = (*spec.image_size, 3)
    self._batch_size = None
    self._lock = threading.Lock()

  def predict(self, pixels):
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 4 or pixels.shape[1:] != self._pixels_shape:
      raise ValueError(f'expected pixels of shape [n, {", ".join(map(str, self._pixels_shape))}], '
                       f'got {pixels.shape}')
    with self._lock:
      if pixels.shape[0] != self._batch_size:
        self._interpreter.resize_tensor_input(self._input, pixels.shape)
        # The first allocation creates the XNNPACK delegate, which announces itself.
        with native_stderr_hidden() if self._batch_size is None else contextlib.nullcontext():
          self._interpreter.allocate_tensors()
        self._batch_size = pixels.shape[0]
      self._interpreter.set_tensor(self._input, pixels)
      self._interpreter.invoke()
      scores, embeddings = (None if index is None else self._interpreter.get_tensor(index)
                            for index in self._outputs)
      return scores, embeddings


def _output_indices(outputs, spec):
  """(scores tensor index, embedding tensor index or None), told apart by their widths."""
  widths = [output['shape'][-1] for output in outputs]
  if not spec.embedding_width:
    if len(outputs) != 1:
      raise ValueError(f'expected one output, the scores; the model has {len(outputs)}')
    return outputs[0]['index'], None
  if spec.embedding_width == spec.classes or sorted(widths) != sorted(
      [spec.classes, spec.embedding_width]):
    raise ValueError(f'cannot tell the scores from the embedding among outputs of widths '
                     f'{widths} (classes: {spec.classes}, embedding: {spec.embedding_width})')
  by_width = {output['shape'][-1]: output['index'] for output in outputs}
  return by_width[spec.classes], by_width[spec.embedding_width]
