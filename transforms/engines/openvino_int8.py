"""openvino_int8: the int8 model `stage-model --int8_calibration` made with NNCF on the
user's own images (int8.py, an OpenVINO IR beside the classifier), run by OpenVINO's CPU
plugin; the layers left in float (the first convolution) in bfloat16 where the CPU has it."""

import os

from transforms.engines import Engine, EngineUnavailable, register
from transforms.engines.openvino import (OpenVinoModel, cpu_has_bf16, missing_for,
                                         openvino_core, openvino_version)
from transforms.files import write_bytes
from transforms.int8 import int8_figures, load_openvino_int8, require_openvino_int8


def _load(source):
  why = missing_for('fp32')
  if why:
    raise EngineUnavailable(why)
  try:
    xml, weights, sha256 = load_openvino_int8(source.model_handle)
  except FileNotFoundError as e:
    raise EngineUnavailable(str(e)) from e
  # OpenVINO reads an IR from local files: kept on local disk by the hash of both.
  path = source.cache_path(os.path.join('openvino_int8', f'{sha256[:32]}.xml'))
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_bytes(path[:-len('.xml')] + '.bin', weights)  # the weights first: the IR names them
    write_bytes(path, xml)
  core = openvino_core()
  return OpenVinoModel(core, path, source.spec, 'bf16' if cpu_has_bf16(core) else 'fp32',
                       fingerprint=sha256[:32])


def _staged_figures(model_handle):
  require_openvino_int8(model_handle)
  return (int8_figures(model_handle).get('openvino') or {}).get('holdout')


register(Engine('openvino_int8', 'int8', _load, version=openvino_version,
                missing=lambda: missing_for('fp32'), staged_figures=_staged_figures))
