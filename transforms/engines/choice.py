"""Loading an engine by name, and `--engine auto`: a short timed probe at worker start that
keeps the fastest engine among those the run's precision allows."""

import dataclasses
import logging
import time
from typing import NamedTuple, Optional

import numpy as np

from transforms.describe import probe_pixels
from transforms.engines import EngineUnavailable, engine_named, registered_engines
from transforms.engines.checks import EngineDisagrees, checked_figures, meets_bar
from transforms.engines.source import ModelSource

AUTO = 'auto'
DEFAULT_ENGINE = AUTO
REFERENCE = 'tf'
# The probe times each engine for at least this long after a warm-up batch, and at most
# PROBE_BATCHES batches: a few engines in a couple of seconds.
PROBE_SECONDS = 0.3
PROBE_BATCHES = 3

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunningEngine:
  """A loaded engine: its model, and what it is. (Not a tuple: Beam keeps a weak reference
  to the model it shares between a worker's threads.)"""
  name: str
  precision: str
  model: object
  # For --engine auto: what was measured and why this engine.
  choice: Optional['EngineChoice'] = None

  def predict(self, pixels):
    return self.model.predict(pixels)


class EngineChoice(NamedTuple):
  engine: str
  precision: str
  images_per_s: dict  # engine name -> probe rate, for the engines timed
  passed_over: dict  # engine name -> why it was not timed

  def to_dict(self):
    return {'engine': self.engine, 'precision': self.precision,
            'probe_images_per_s': {name: round(rate, 1)
                                   for name, rate in self.images_per_s.items()},
            'passed_over': self.passed_over}

  def describe(self):
    """One line, for people."""
    rates = ', '.join(f'{name} {rate:.0f}' for name, rate in sorted(
        self.images_per_s.items(), key=lambda item: -item[1]))
    line = f'{self.engine} ({self.precision}), the fastest on a timed probe (images/s: {rates})'
    if self.passed_over:
      line += '; passed over: ' + '; '.join(f'{name}: {why}'
                                            for name, why in self.passed_over.items())
    return line


def load_engine(spec, model_handle, feature_handle, engine=DEFAULT_ENGINE, precision=None,
                batch_size=32):
  """The model `spec` describes, on `engine` (a registered name, or 'auto' to choose among
  those of `precision`, any precision meeting the fidelity bar where None), as a
  RunningEngine.

  A named fp32 engine that fails to load or to match TensorFlow falls back to TensorFlow
  with a warning; one of a reduced precision raises, as does one that cannot run here at
  all (EngineUnavailable: no such CPU feature, no staged int8 model).
  """
  source = ModelSource(spec, model_handle, feature_handle)
  if engine == AUTO:
    return choose_engine(source, precision, batch_size)
  return _named(source, engine_named(engine))


def _named(source, engine):
  """A named engine; an fp32 one that fails falls back to TensorFlow (fp32 too), while one of
  a reduced precision raises: the rows of a directory are of one precision."""
  try:
    return RunningEngine(engine.name, engine.precision, _load_checked(source, engine)[0])
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, EngineUnavailable) or engine.precision != engine_named(REFERENCE).precision:
      raise
    reason = str(e) if isinstance(e, EngineDisagrees) else (
        f'is unavailable ({type(e).__name__}: {e})')
  _LOGGER.warning('The %s engine %s: running on TensorFlow.', engine.name, reason)
  return _reference(source)


def _reference(source):
  reference = engine_named(REFERENCE)
  return RunningEngine(reference.name, reference.precision, source.tf_model())


def _load_checked(source, engine):
  """(model, its figures against TensorFlow on the probe batch; None for TensorFlow)."""
  model = engine.load(source)
  if engine.name == REFERENCE:
    return model, None
  return model, checked_figures(source, engine, model)


def probe_rate(model, spec, batch_size):
  """Images/s of `model` on batches of `batch_size` probe images, after one warm-up batch."""
  probe = probe_pixels(spec.image_size)
  pixels = np.resize(probe, (batch_size, *probe.shape[1:]))
  model.predict(pixels)
  batches, started = 0, time.perf_counter()
  while batches < PROBE_BATCHES and (not batches
                                     or time.perf_counter() - started < PROBE_SECONDS):
    model.predict(pixels)
    batches += 1
  return batches * batch_size / (time.perf_counter() - started)


def _staged_figures(source, engine):
  """The engine's fidelity measured on the user's own images when it was staged, if any."""
  if engine.staged_figures is None:
    return None
  try:
    return engine.staged_figures(source.model_handle)
  except FileNotFoundError:
    return None


def choose_engine(source, precision=None, batch_size=32):
  """The fastest engine on a timed probe among those of `precision` (where None: fp32, and a
  reduced precision whose figures on the probe and at staging meet the fidelity bar), as a
  RunningEngine whose `choice` says what was measured. TensorFlow where none loads."""
  rates, passed_over, fastest = {}, {}, None
  for engine in registered_engines():
    if not engine.in_auto or (precision and engine.precision != precision):
      continue
    # A reduced precision the user did not ask for must meet the bar: at staging, checked
    # before the model is loaded at all, then on the probe.
    held_to_bar = not precision and engine.precision != 'fp32'
    staged = _staged_figures(source, engine) if held_to_bar else None
    if staged and not meets_bar(staged):
      passed_over[engine.name] = (
          f"below the fidelity bar on the staging images: the same top label for "
          f"{staged['labels_agree']:.1%}, embedding cosine least "
          f"{staged.get('embedding_cosine_min')}")
      continue
    try:
      model, figures = _load_checked(source, engine)
    except (EngineUnavailable, EngineDisagrees) as e:
      passed_over[engine.name] = str(e)
      continue
    except Exception as e:  # pylint: disable=broad-except
      passed_over[engine.name] = f'{type(e).__name__}: {e}'
      continue
    if held_to_bar and not meets_bar(figures, on_probe=True):
      passed_over[engine.name] = (f"below the fidelity bar on the probe: embedding cosine "
                                  f"least {figures['embedding_cosine_min']:.4f}")
      continue
    rates[engine.name] = probe_rate(model, source.spec, batch_size)
    if fastest is None or rates[engine.name] > rates[fastest.name]:
      fastest = RunningEngine(engine.name, engine.precision, model)
  if fastest is None:
    if precision and precision != 'fp32':
      raise EngineUnavailable(f'no {precision} engine can run here: ' + '; '.join(
          f'{name}: {why}' for name, why in passed_over.items()))
    _LOGGER.warning('No engine passed its check (%s): running on TensorFlow.', passed_over)
    fastest = _reference(source)
  choice = EngineChoice(fastest.name, fastest.precision, rates, passed_over)
  _LOGGER.info('engine: %s', choice.describe())
  return dataclasses.replace(fastest, choice=choice)
