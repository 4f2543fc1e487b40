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


# Writing HEAD_DIR (label-images train-head) --------------------------------------------------

SAVED_MODEL_INPUT = 'images'


def _embedding_output(outputs, output_name):
  """The embedding among a model's outputs: `output_name` of a dict, else the only one."""
  if output_name is not None:
    return outputs[output_name]
  if isinstance(outputs, dict):
    (outputs,) = outputs.values()
  elif isinstance(outputs, (list, tuple)):
    (outputs,) = outputs
  return outputs


def save_head_model(local_dir, extractor, embedding_output, image_size, kernel, bias):
  """Writes HEAD_DIR's SavedModel to the local directory `local_dir`: the loaded feature
  extractor SavedModel `extractor` (its only output, or its output `embedding_output`, is the
  embedding) with the head's `kernel` [width, classes] and `bias` [classes] as variables. Its
  serving_default signature takes float32 images [batch, height, width, 3] (RGB in [0, 1], at
  image_size) and returns {'logits': embedding @ kernel + bias, 'embedding': embedding}."""
  from transforms.describe import entry_point  # pylint: disable=import-outside-toplevel
  from transforms.quiet import import_tensorflow  # pylint: disable=import-outside-toplevel
  tf = import_tensorflow()
  embed = entry_point(extractor)[0]
  module = tf.Module()
  module.feature_extractor = extractor  # tracked: its variables are saved with the head
  module.kernel = tf.Variable(np.asarray(kernel, np.float32), name='kernel', trainable=False)
  module.bias = tf.Variable(np.asarray(bias, np.float32), name='bias', trainable=False)

  @tf.function(input_signature=[tf.TensorSpec([None, *image_size, 3], tf.float32,
                                              name=SAVED_MODEL_INPUT)])
  def serve(images):
    embedding = tf.cast(_embedding_output(embed(images), embedding_output), tf.float32)
    logits = tf.matmul(embedding, module.kernel) + module.bias
    return {SAVED_MODEL_OUTPUTS[0]: logits, SAVED_MODEL_OUTPUTS[1]: embedding}

  module.serve = serve
  tf.saved_model.save(module, local_dir, signatures={'serving_default': serve})


def weights_bytes(kernel, bias):
  """head.npz's bytes: `kernel` and `bias`, float32."""
  buffer = io.BytesIO()
  np.savez(buffer, kernel=np.asarray(kernel, np.float32), bias=np.asarray(bias, np.float32))
  return buffer.getvalue()


def labels_bytes(labels):
  """labels.txt's bytes: one class name a line, as the product's labels reader reads them."""
  return ''.join(f'{label}\n' for label in labels).encode('utf-8')
