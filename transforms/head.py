"""A head of the user's own classes on a frozen feature extractor: the files of HEAD_DIR, and
applying the head to stored embeddings.

HEAD_DIR, as `label-images train-head` writes it, is a model the main command takes alone
(--model_handle HEAD_DIR) and what `label-images relabel` applies to stored embeddings:

  saved_model.pb, variables/  one SavedModel, the feature extractor inside: its serving
                              signature takes float RGB images in [0, 1] and returns
                              {'logits': [batch, classes], 'embedding': [batch, width]}
  labels.txt                  the class names, one per line, in the order of the logits
  head.npz                    `kernel` [width, classes] and `bias` [classes], float32: the
                              same head as the SavedModel's, for relabel, without TensorFlow
  head.json                   what it was trained on: the feature extractor (its handles,
                              description and the content hash of its files, as a directory
                              identity records them), the suggested --min_score, the
                              regularisation chosen, the examples
  evaluation.json             cross-validated precision, recall, support, confusion, accuracy
"""

import io
import json
from typing import NamedTuple

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.files import read_bytes

SAVED_MODEL_OUTPUTS = ('logits', 'embedding')
LABELS_FILE = 'labels.txt'
WEIGHTS_FILE = 'head.npz'
RECORD_FILE = 'head.json'
EVALUATION_FILE = 'evaluation.json'


class Head(NamedTuple):
  kernel: np.ndarray  # float32 [width, classes]
  bias: np.ndarray  # float32 [classes]
  labels: tuple  # class names, in the order of the logits
  record: dict  # head.json


def load_head(head_dir):
  """The Head in HEAD_DIR, on any filesystem the pipeline reads."""
  weights = np.load(io.BytesIO(read_bytes(FileSystems.join(head_dir, WEIGHTS_FILE))))
  labels = read_bytes(FileSystems.join(head_dir, LABELS_FILE)).decode('utf-8').splitlines()
  record = json.loads(read_bytes(FileSystems.join(head_dir, RECORD_FILE)))
  return Head(weights['kernel'].astype(np.float32), weights['bias'].astype(np.float32),
              tuple(labels), record)


def head_logits(head, embeddings):
  """The head's logits [n, classes] for float32 embeddings [n, width]."""
  return np.asarray(embeddings, np.float32) @ head.kernel + head.bias
