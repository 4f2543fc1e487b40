"""The int8 engine: the fp32 LiteRT function quantized once, on the user's own images.

Post-training quantization (TensorFlow's converter with a representative dataset) turns
weights and activations into int8; LiteRT runs it on XNNPACK, about twice as fast as fp32
on CPUs with VNNI. Its labels differ from the published model's on a few percent of
images, so it is never the default, and it is calibrated once, centrally, by
`label-images stage-model --int8_calibration`: calibrating on whatever images a worker saw
first would make labels depend on the run. The calibration images are a deterministic
sample (by a hash of each URI, whatever the listing order), preprocessed exactly as the
pipeline does; agreement with fp32 is measured on a held-out sample and saved beside the
model as int8.json.
"""

import hashlib
import json

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.files import exists, read_bytes

INT8_MODEL = 'int8.tflite'
INT8_FIGURES = 'int8.json'
CALIBRATION_IMAGES = 64
HOLDOUT_IMAGES = 200


def int8_paths(model_handle):
  """(int8 model, its figures) beside the classification module `model_handle`."""
  parent = FileSystems.split(model_handle.rstrip('/'))[0]
  return FileSystems.join(parent, INT8_MODEL), FileSystems.join(parent, INT8_FIGURES)


def split_sample(uris, calibration=CALIBRATION_IMAGES, holdout=HOLDOUT_IMAGES):
  """(calibration URIs, held-out URIs): the first of the distinct URIs ordered by a hash of
  each, so the sample depends on the set of images only."""
  ordered = sorted(set(uris), key=lambda uri: hashlib.sha256(uri.encode('utf-8')).digest())
  return ordered[:calibration], ordered[calibration:calibration + holdout]


def agreement(reference, candidate, pixels, batch_size=32):
  """How closely `candidate` follows `reference` on `pixels`: the share of equal top-1
  labels and the cosine similarity of the embeddings (least and median; None for a model
  without an embedding)."""
  same_label, cosines = [], []
  for start in range(0, len(pixels), batch_size):
    batch = pixels[start:start + batch_size]
    (scores, embeddings), (scores_q, embeddings_q) = reference.predict(batch), \
        candidate.predict(batch)
    same_label.append(scores.argmax(1) == scores_q.argmax(1))
    if embeddings is not None:
      cosines.append(np.sum(embeddings * embeddings_q, 1) / (
          np.linalg.norm(embeddings, axis=1) * np.linalg.norm(embeddings_q, axis=1)))
  cosines = np.concatenate(cosines) if cosines else None
  return {'images': int(len(pixels)),
          'labels_agree': round(float(np.mean(np.concatenate(same_label))), 4),
          'embedding_cosine_min': None if cosines is None else round(float(cosines.min()), 4),
          'embedding_cosine_median': (None if cosines is None
                                      else round(float(np.median(cosines)), 4))}


def require_int8(model_handle):
  """Raises FileNotFoundError, with the command that makes it, where no int8 model is staged
  beside `model_handle`."""
  model_path = int8_paths(model_handle)[0]
  if not exists(model_path):
    raise FileNotFoundError(
        f'--engine litert_int8 needs {model_path}, the int8 model calibrated on your images: '
        f'make it with label-images stage-model --source MODEL_DIR --dest '
        f'{FileSystems.split(model_path)[0]} --int8_calibration IMAGES')


def load_int8(model_handle):
  """(flatbuffer, figures with its sha256) of the int8 model staged beside `model_handle`."""
  require_int8(model_handle)
  model_path, figures_path = int8_paths(model_handle)
  flatbuffer = read_bytes(model_path)
  figures = json.loads(read_bytes(figures_path)) if exists(figures_path) else {}
  figures['sha256'] = hashlib.sha256(flatbuffer).hexdigest()
  return flatbuffer, figures
