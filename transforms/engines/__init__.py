"""The engines that run a model, found by name: each is one module in this package that
registers itself with one line, `register(Engine(...))`.

An engine's model maps uint8 pixels [n, height, width, 3] to (scores [n, classes],
embeddings [n, width] or None), float32. Every engine but TensorFlow's is checked against
TensorFlow on a probe batch when it loads, within the tolerance of its precision
(checks.py); `--engine auto` times the engines a run allows and keeps the fastest
(choice.py).
"""

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

PRECISIONS = ('fp32', 'bf16', 'int8')


class EngineUnavailable(Exception):
  """The engine cannot run here: a package, a CPU feature or a staged model is missing."""


@dataclass(frozen=True)
class Engine:
  name: str
  precision: str  # one of PRECISIONS
  # (ModelSource) -> model with predict(pixels); raises EngineUnavailable where it cannot run.
  load: Callable
  # Whether `--engine auto` times it. TensorFlow, the reference, is slower to start and
  # never faster here; it stays the fallback.
  in_auto: bool = True
  # The engine's own library and version, part of what a passed check is remembered by.
  version: Optional[Callable[[], str]] = None
  # () -> why this machine cannot run it (no such package or CPU feature), or None: asked
  # before a run starts, without loading the model.
  missing: Callable[[], Optional[str]] = lambda: None
  # For an engine whose model stage-model makes (int8): (model_handle) -> that model's
  # fidelity measured on the user's own images (labels_agree, embedding_cosine_min, ...), or
  # FileNotFoundError, saying how to make it, where it is not staged beside model_handle.
  staged_figures: Optional[Callable[[str], Optional[dict]]] = None


_REGISTERED = {}


def register(engine):
  if engine.precision not in PRECISIONS:
    raise ValueError(f'engine {engine.name}: precision {engine.precision!r} is not one of '
                     f'{PRECISIONS}')
  _REGISTERED[engine.name] = engine


def engine_named(name):
  try:
    return _REGISTERED[name]
  except KeyError:
    raise ValueError(f'no engine named {name!r}; the engines are '
                     f'{", ".join(engine_names())}') from None


def engine_names():
  return tuple(_REGISTERED)


def registered_engines():
  return tuple(_REGISTERED.values())


for _module in ('tf', 'litert', 'litert_int8', 'openvino', 'openvino_int8'):
  importlib.import_module(f'{__name__}.{_module}')
