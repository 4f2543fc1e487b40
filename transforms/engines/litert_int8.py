"""litert_int8: the int8 model `stage-model --int8_calibration` made on the user's own
images (int8.py), run by LiteRT on XNNPACK."""

from transforms.engines import Engine, EngineUnavailable, register
from transforms.engines.litert import LiteRtModel, litert_version
from transforms.int8 import int8_figures, int8_paths, require_int8


def _load(source):
  try:
    flatbuffer, _ = source.int8()
  except FileNotFoundError as e:
    raise EngineUnavailable(f'no int8 model is staged at {int8_paths(source.model_handle)[0]} '
                            '(label-images stage-model --int8_calibration)') from e
  return LiteRtModel(flatbuffer, source.spec)


def _staged_figures(model_handle):
  require_int8(model_handle)
  return int8_figures(model_handle).get('holdout')


register(Engine('litert_int8', 'int8', _load, version=litert_version,
                staged_figures=_staged_figures))
