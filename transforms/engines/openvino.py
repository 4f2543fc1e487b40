"""openvino_fp32 and openvino_bf16: the float TFLite model (the one litert runs) read by
OpenVINO's CPU plugin, in float32 or in bfloat16.

bf16 runs on AMX tiles (Sapphire Rapids and later Xeons) or AVX512-BF16 instructions; on a
CPU with neither OpenVINO would quietly compute in float32, so the engine says it is
unavailable there. OpenVINO's own default on such CPUs is bf16: the fp32 engine asks for
float32 explicitly.
"""

import hashlib
import os
import threading
from importlib import metadata

from transforms.engines import Engine, EngineUnavailable, register
from transforms.engines.outputs import checked_pixels, output_positions

# Capabilities to treat this CPU as lacking (comma-separated, e.g. "bf16"): how a test, or
# a user reproducing another machine's choice, sees what a CPU without them would do.
CPU_MASK_VARIABLE = 'LABEL_IMAGES_CPU_MASK'
_HINTS = {'fp32': 'f32', 'bf16': 'bf16'}


def masked_capabilities():
  return {name.strip().lower() for name in os.environ.get(CPU_MASK_VARIABLE, '').split(',')
          if name.strip()}


def openvino_core():
  import openvino  # pylint: disable=import-outside-toplevel
  return openvino.Core()


def missing_for(precision):
  """Why OpenVINO cannot compute in `precision` here, or None."""
  try:
    core = openvino_core()
  except ImportError as e:
    return f'openvino is not installed ({e})'
  if precision == 'bf16' and not cpu_has_bf16(core):
    return 'this CPU has neither AMX nor AVX512-BF16' + (
        f' (masked by {CPU_MASK_VARIABLE})' if masked_capabilities() else '')
  return None


def cpu_has_bf16(core):
  """Whether the CPU computes in bfloat16 natively, as OpenVINO's CPU plugin reports it."""
  return ('bf16' not in masked_capabilities()
          and 'BF16' in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))


class OpenVinoModel:
  """uint8 pixels -> (scores, embeddings or None), float32, compiled once per batch size
  (a static shape plans its memory once); calls take turns, each runs every core."""

  def __init__(self, core, model_path, spec, precision, fingerprint=None):
    """`model_path`: a file OpenVINO reads, the float TFLite model or an IR (its .bin beside
    it); `precision`: the arithmetic of its float layers, 'fp32' or 'bf16'; `fingerprint`:
    what the model is remembered by, a hash of the file where None."""
    self._core = core
    self._path = model_path
    self._spec = spec
    self._config = {'INFERENCE_PRECISION_HINT': _HINTS[precision],
                    'PERFORMANCE_HINT': 'LATENCY'}
    if fingerprint is None:
      with open(model_path, 'rb') as f:
        fingerprint = hashlib.sha256(f.read()).hexdigest()[:32]
    self.fingerprint = fingerprint
    widths = [output.get_partial_shape()[-1].get_length()
              for output in core.read_model(model_path).outputs]
    self._positions = output_positions(widths, spec)
    self._requests = {}
    self._lock = threading.Lock()

  def _request(self, batch_size):
    if batch_size not in self._requests:
      model = self._core.read_model(self._path)
      model.reshape([batch_size, *self._spec.image_size, 3])
      compiled = self._core.compile_model(model, 'CPU', self._config)
      self._requests[batch_size] = compiled.create_infer_request()
    return self._requests[batch_size]

  def predict(self, pixels):
    pixels = checked_pixels(pixels, self._spec)
    with self._lock:
      request = self._request(pixels.shape[0])
      request.infer({0: pixels})
      return tuple(None if position is None else request.get_output_tensor(position).data.copy()
                   for position in self._positions)


def _loader(precision):
  def load(source):
    why = missing_for(precision)
    if why:
      raise EngineUnavailable(why)
    # The float file is named by the source's digest: no need to hash it again.
    return OpenVinoModel(openvino_core(), source.fp32_tflite_path(), source.spec, precision,
                         fingerprint=source.digest())
  return load


def openvino_version():
  return f'openvino=={metadata.version("openvino")}'


for _precision in ('fp32', 'bf16'):
  register(Engine(f'openvino_{_precision}', _precision, _loader(_precision),
                  version=openvino_version,
                  missing=lambda precision=_precision: missing_for(precision)))
