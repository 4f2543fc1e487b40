"""Turning model outputs into output rows: softmax, top-k, label names."""

import apache_beam as beam
import numpy as np

from transforms.failures import FAILURES, Failure
from transforms.labels import imagenet_label_names


def softmax(logits):
  shifted = np.exp(logits.astype(np.float64) - np.max(logits))
  return shifted / shifted.sum()


def label_row(image, output, top_k, model_handle, label_names):
  """One row of LABELS_SCHEMA for a DecodedImage and its ModelOutput."""
  probabilities = softmax(output.logits)
  top = np.argsort(-probabilities, kind='stable')[:top_k]
  top_scores = probabilities[top].astype(np.float32)
  return {
      'uri': image.uri,
      'label': label_names[top[0]],
      'label_index': int(top[0]),
      'score': float(top_scores[0]),
      'top_k_labels': [label_names[i] for i in top],
      'top_k_scores': top_scores.tolist(),
      'embedding': output.embedding,
      'width': image.width,
      'height': image.height,
      'model': model_handle,
  }


class ToRows(beam.DoFn):
  """PredictionResult -> label row; an inference Failure goes to the FAILURES output."""

  def __init__(self, top_k, model_handle):
    self._top_k = top_k
    self._model_handle = model_handle
    self._label_names = None

  def setup(self):
    self._label_names = imagenet_label_names()

  def process(self, prediction):
    if isinstance(prediction.inference, Failure):
      yield beam.pvalue.TaggedOutput(FAILURES, prediction.inference)
      return
    yield label_row(prediction.example, prediction.inference, self._top_k,
                    self._model_handle, self._label_names)
