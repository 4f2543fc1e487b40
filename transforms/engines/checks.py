"""How closely an engine follows TensorFlow: checked on the probe batch when it loads, within
a tolerance stated per precision, and remembered on local disk once passed (so later
processes load it without TensorFlow). And the fidelity bar a reduced precision must meet
for `--engine auto` to pick it without being asked."""

import json
import os
from typing import NamedTuple, Optional

import numpy as np

from transforms.describe import probe_pixels
from transforms.files import write_bytes


class Tolerance(NamedTuple):
  # Largest difference of any output, relative to that output's largest magnitude.
  max_relative_error: float
  # Least cosine similarity of an embedding with TensorFlow's (None: not checked).
  embedding_cosine_min: Optional[float] = None


# fp32: the same network computed in a different order differs by ~1e-5 of the outputs'
# scale. bf16 keeps 8 bits of mantissa: ~1e-2 of the scores' scale on photos, up to ~0.12 on
# the probe's noise image; embeddings stay within cos 0.99.
# int8: calibrated on photos, it clips the probe's noise image (cos ~0.75 there, ~0.95 on
# photos), so the probe only catches a broken conversion (cosines near 0); its fidelity on
# real images is measured when it is staged (int8.json).
TOLERANCES = {
    'fp32': Tolerance(1e-3),
    'bf16': Tolerance(0.25, embedding_cosine_min=0.99),
    'int8': Tolerance(2.0, embedding_cosine_min=0.5),
}

# What a reduced precision must show for --engine auto to pick it when the user did not ask
# for one (README, "Engines"): the same top label as fp32 for 97% of images, and every
# embedding within cos >= 0.99 of fp32's, so nearest neighbours and trained heads hardly move.
FIDELITY_BAR = {'labels_agree': 0.97, 'embedding_cosine_min': 0.99}


class EngineDisagrees(Exception):
  """An engine's outputs on the probe batch are outside its precision's tolerance."""


def cosines(embeddings, reference):
  return np.sum(embeddings * reference, 1) / (
      np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1))


def probe_figures(model, reference, spec):
  """How `model` differs from `reference` on the probe batch."""
  pixels = probe_pixels(spec.image_size)
  (scores, embeddings), (expected_scores, expected_embeddings) = (
      model.predict(pixels), reference.predict(pixels))
  pairs = [(scores, expected_scores)] + (
      [(embeddings, expected_embeddings)] if expected_embeddings is not None else [])
  return {
      'max_relative_error': max(
          float(np.max(np.abs(output - expected))) / max(1.0, float(np.max(np.abs(expected))))
          for output, expected in pairs),
      'labels_agree': float(np.mean(scores.argmax(1) == expected_scores.argmax(1))),
      'embedding_cosine_min': (None if expected_embeddings is None
                               else float(cosines(embeddings, expected_embeddings).min())),
  }


def within(figures, tolerance):
  return figures['max_relative_error'] <= tolerance.max_relative_error and (
      tolerance.embedding_cosine_min is None or figures['embedding_cosine_min'] is None
      or figures['embedding_cosine_min'] >= tolerance.embedding_cosine_min)


def meets_bar(figures, on_probe=False):
  """Whether measured figures (labels_agree, embedding_cosine_min) meet FIDELITY_BAR. On the
  probe batch only the embedding counts: the top label of its noise image is a coin toss."""
  return all(figures.get(key) is None or figures[key] >= bar
             for key, bar in FIDELITY_BAR.items()
             if not (on_probe and key == 'labels_agree'))


def _record_path(source, engine, model):
  version = engine.version() if engine.version else ''
  return source.cache_path(os.path.join(
      'checked', f'{engine.name}-{model.fingerprint}-{version}.json'))


def checked_figures(source, engine, model):
  """The model's figures on the probe batch against TensorFlow, or EngineDisagrees where they
  are outside the tolerance of the engine's precision. Measured once per model and engine
  version (loading TensorFlow) and remembered, passed or not."""
  path = _record_path(source, engine, model)
  try:
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
  except (OSError, ValueError):
    record = _measure(source, engine, model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_bytes(path, json.dumps(record).encode('utf-8'))
  if record['disagrees']:
    raise EngineDisagrees(record['disagrees'])
  return record['figures']


def _measure(source, engine, model):
  figures = probe_figures(model, source.tf_model(), source.spec)
  tolerance = TOLERANCES[engine.precision]
  disagrees = None if within(figures, tolerance) else (
      f'differs from TensorFlow on the probe batch by {figures["max_relative_error"]:.3g} '
      f'(relative; {engine.precision} allows {tolerance.max_relative_error:g})'
      + ('' if figures['embedding_cosine_min'] is None else
         f', embedding cosine least {figures["embedding_cosine_min"]:.4f}'))
  return {'figures': figures, 'disagrees': disagrees}
