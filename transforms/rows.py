"""Turning model outputs into output rows: softmax (of logits only), top-k, label names."""

from typing import NamedTuple, Optional

import apache_beam as beam
import numpy as np

from transforms import metrics
from transforms.failures import FAILURES, Failure
from transforms.model_spec import LOGITS

# The counter of rows whose top score is below --min_score: none of the classes.
NONE_OF_THE_CLASSES = 'none_of_the_classes'


class RowSettings(NamedTuple):
  top_k: int
  model_handle: str  # the `model` column
  label_names: tuple  # in the order of the model's scores
  scores_kind: str  # LOGITS (a softmax makes them probabilities) or PROBABILITIES
  min_score: Optional[float] = None  # below it, a row's label is null: none of the classes


def softmax(logits):
  shifted = np.exp(logits.astype(np.float64) - np.max(logits))
  return shifted / shifted.sum()


def label_row(image, output, settings):
  """One row of labels_schema for a DecodedImage and its ModelOutput, by RowSettings."""
  probabilities = (softmax(output.scores) if settings.scores_kind == LOGITS
                   else output.scores.astype(np.float64))
  top = np.argsort(-probabilities, kind='stable')[:settings.top_k]
  top_scores = probabilities[top].astype(np.float32)
  names = settings.label_names
  labelled = settings.min_score is None or top_scores[0] >= settings.min_score
  row = {
      'uri': image.uri,
      'label': names[top[0]] if labelled else None,
      'label_index': int(top[0]) if labelled else None,
      'score': float(top_scores[0]),
      'top_k_labels': [names[i] for i in top],
      'top_k_scores': top_scores.tolist(),
      'width': image.width,
      'height': image.height,
      'model': settings.model_handle,
  }
  if output.embedding is not None:
    row['embedding'] = output.embedding
  return row


class ToRows(beam.DoFn):
  """PredictionResult -> label row; an inference Failure goes to the FAILURES output."""

  def __init__(self, settings):
    self._settings = settings
    self._none_of_the_classes = metrics.counter(NONE_OF_THE_CLASSES)

  def process(self, prediction):
    if isinstance(prediction.inference, Failure):
      yield beam.pvalue.TaggedOutput(FAILURES, prediction.inference)
      return
    row = label_row(prediction.example, prediction.inference, self._settings)
    if row['label'] is None:
      self._none_of_the_classes.inc()
    yield row
