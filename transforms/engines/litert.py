"""litert: the model converted to TFLite and run by LiteRT on XNNPACK, in float32.

TensorFlow's own converter turns the TF engine's predict function (uint8 pixels in,
class scores and embedding out, head fused) into a TFLite flatbuffer, once per model and
TensorFlow version (ModelSource keeps it on local disk); the LiteRT interpreter runs it on
the XNNPACK delegate, on every core.
"""

import contextlib
import hashlib
import os
import threading
from importlib import metadata

from transforms.engines import Engine, register
from transforms.engines.outputs import checked_pixels, output_positions
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


class LiteRtModel:
  """uint8 pixels [n, height, width, 3] -> (scores [n, classes], embeddings [n, width] or
  None), float32, for the model `spec` describes.

  One interpreter per process, shared by its threads: it already runs every core, so
  calls take turns.
  """

  def __init__(self, tflite_model, spec, num_threads=None, fingerprint=None):
    """`fingerprint`: what the model is remembered by, a hash of `tflite_model` where None."""
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    self._interpreter = Interpreter(model_content=tflite_model,
                                    num_threads=num_threads or os.cpu_count())
    self.fingerprint = fingerprint or hashlib.sha256(tflite_model).hexdigest()[:32]
    self._input = self._interpreter.get_input_details()[0]['index']
    outputs = self._interpreter.get_output_details()
    positions = output_positions([output['shape'][-1] for output in outputs], spec)
    self._outputs = [None if position is None else outputs[position]['index']
                     for position in positions]
    self._spec = spec
    self._batch_size = None
    self._lock = threading.Lock()

  def predict(self, pixels):
    pixels = checked_pixels(pixels, self._spec)
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


def _load(source):
  with open(source.fp32_tflite_path(), 'rb') as f:
    return LiteRtModel(f.read(), source.spec, fingerprint=source.digest())


def litert_version():
  return f'ai-edge-litert=={metadata.version("ai-edge-litert")}'


register(Engine('litert', 'fp32', _load, version=litert_version))
