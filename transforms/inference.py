"""RunInference's model handler: batches of DecodedImage -> class scores and embeddings.

RunInference loads the model once per worker process and shares it between the
process's threads, batches elements, and reports load and inference metrics.
"""

from typing import NamedTuple, Optional

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from transforms import metrics
from transforms.failures import Failure
from transforms.engines.choice import DEFAULT_ENGINE, load_engine

DEFAULT_BATCH_SIZE = 32


class ModelOutput(NamedTuple):
  scores: np.ndarray  # float32 [classes]: logits or probabilities, as the model returns them
  embedding: Optional[np.ndarray]  # float32 [width]; None for a model without one


class ImageModelHandler(ModelHandler):
  """Holds only the handles and the description: it is pickled to every worker, which loads
  the model itself."""

  def __init__(self, spec, model_handle, feature_handle, batch_size=DEFAULT_BATCH_SIZE,
               engine=DEFAULT_ENGINE, precision=None):
    # Fixed batches: the engines re-plan their memory whenever the batch size changes.
    super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
    self.spec = spec
    self.model_handle = model_handle
    self.feature_handle = feature_handle
    self.engine = engine  # a registered name, or 'auto': chosen by a timed probe here
    self.precision = precision
    self.batch_size = batch_size

  def load_model(self):
    return load_engine(self.spec, self.model_handle, self.feature_handle, self.engine,
                       self.precision, self.batch_size)

  def run_inference(self, batch, model, inference_args=None):
    """Yields PredictionResult(DecodedImage, ModelOutput or Failure), one per image.

    A batch that fails is retried image by image, so only the culprit fails.
    """
    # Which engine labelled how many images, as each worker chose it.
    metrics.counter(f'{metrics.IMAGES_BY_ENGINE}.{model.name}').inc(len(batch))
    try:
      outputs = _predict(model, batch)
    except Exception:  # pylint: disable=broad-except
      outputs = [_predict_one(model, image) for image in batch]
    return [PredictionResult(image, output) for image, output in zip(batch, outputs)]

  def get_num_bytes(self, batch):
    return sum(image.pixels.nbytes for image in batch)

  def get_metrics_namespace(self):
    return metrics.NAMESPACE


def _predict(model, batch):
  scores, embeddings = model.predict(np.stack([image.pixels for image in batch]))
  if embeddings is None:
    return [ModelOutput(row, None) for row in scores]
  return [ModelOutput(*output) for output in zip(scores, embeddings)]


def _predict_one(model, image):
  try:
    return _predict(model, [image])[0]
  except Exception as e:  # pylint: disable=broad-except
    return Failure(image.uri, 'inference', 'inference_failed', f'{type(e).__name__}: {e}')
