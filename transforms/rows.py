"""Turning model outputs into output rows: softmax (of logits only), top-k, label names."""

import apache_beam as beam
import numpy as np

from transforms.failures import FAILURES, Failure
from transforms.model_spec import LOGITS


def softmax(logits):
  shifted = np.exp(logits.astype(np.float64) - np.max(logits))
  return shifted / shifted.sum()


def label_row(image, output, top_k, model_handle, label_names, scores_kind):
  """One row of labels_schema for a DecodedImage and its ModelOutput; `scores_kind` says
  whether the model's scores are logits (a softmax makes them probabilities) or already
  probabilities."""
  probabilities = (softmax(output.scores) if scores_kind == LOGITS
                   else output.scores.astype(np.float64))
  top = np.argsort(-probabilities, kind='stable')[:top_k]
  top_scores = probabilities[top].astype(np.float32)
  row = {
      'uri': image.uri,
      'label': label_names[top[0]],
      'label_index': int(top[0]),
      'score': float(top_scores[0]),
      'top_k_labels': [label_names[i] for i in top],
      'top_k_scores': top_scores.tolist(),
      'width': image.width,
      'height': image.height,
      'model': model_handle,
  }
  if output.embedding is not None:
    row['embedding'] = output.embedding
  return row


class ToRows(beam.DoFn):
  """PredictionResult -> label row; an inference Failure goes to the FAILURES output."""

  def __init__(self, top_k, model_handle, label_names, scores_kind):
    self._top_k = top_k
    self._model_handle = model_handle
    self._label_names = label_names
    self._scores_kind = scores_kind

  def process(self, prediction):
    if isinstance(prediction.inference, Failure):
      yield beam.pvalue.TaggedOutput(FAILURES, prediction.inference)
      return
    yield label_row(prediction.example, prediction.inference, self._top_k,
                    self._model_handle, self._label_names, self._scores_kind)
