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

Beside it, from the same calibration pixels, NNCF's post-training quantization of the float
TFLite model for OpenVINO (openvino_int8.xml and .bin, for --engine openvino_int8): a mixed
preset (symmetric weights, asymmetric activations), bias correction in full, and the first
convolution, which sees raw pixels, left in float; it follows fp32 more closely than
TensorFlow's converter does. Its own figures are int8.json's `openvino` entry.
"""

import contextlib
import hashlib
import io
import json
import os
import tempfile

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.files import exists, read_bytes

INT8_MODEL = 'int8.tflite'
INT8_FIGURES = 'int8.json'
OPENVINO_INT8_MODEL = 'openvino_int8.xml'  # its weights in openvino_int8.bin beside it
CALIBRATION_IMAGES = 64
HOLDOUT_IMAGES = 200


def int8_paths(model_handle):
  """(int8 model, its figures) beside the classification module `model_handle`."""
  parent = FileSystems.split(model_handle.rstrip('/'))[0]
  return FileSystems.join(parent, INT8_MODEL), FileSystems.join(parent, INT8_FIGURES)


def openvino_int8_paths(model_handle):
  """(IR, its weights) of the OpenVINO int8 model beside the classification module."""
  parent = FileSystems.split(model_handle.rstrip('/'))[0]
  xml = FileSystems.join(parent, OPENVINO_INT8_MODEL)
  return xml, xml[:-len('.xml')] + '.bin'


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
  _require_staged(int8_paths(model_handle)[0], 'litert_int8', 'int8 model')


def _require_staged(path, engine, what):
  if not exists(path):
    raise FileNotFoundError(
        f'--engine {engine} needs {path}, the {what} calibrated on your images: make it with '
        f'label-images stage-model --source MODEL_DIR --dest {FileSystems.split(path)[0]} '
        '--int8_calibration IMAGES')


def load_int8(model_handle):
  """(flatbuffer, figures with its sha256) of the int8 model staged beside `model_handle`."""
  require_int8(model_handle)
  model_path, figures_path = int8_paths(model_handle)
  flatbuffer = read_bytes(model_path)
  figures = json.loads(read_bytes(figures_path)) if exists(figures_path) else {}
  figures['sha256'] = hashlib.sha256(flatbuffer).hexdigest()
  return flatbuffer, figures


def int8_figures(model_handle):
  """int8.json beside `model_handle`, or {} where none is staged."""
  figures_path = int8_paths(model_handle)[1]
  return json.loads(read_bytes(figures_path)) if exists(figures_path) else {}


def ir_sha256(xml, weights):
  return hashlib.sha256(hashlib.sha256(xml).digest() + hashlib.sha256(weights).digest()
                        ).hexdigest()


def require_openvino_int8(model_handle):
  """Raises FileNotFoundError, with the command that makes it, where no OpenVINO int8 model
  is staged beside `model_handle`."""
  _require_staged(openvino_int8_paths(model_handle)[0], 'openvino_int8',
                  'OpenVINO int8 model')


def load_openvino_int8(model_handle):
  """(IR bytes, weights bytes, sha256 of both) of the OpenVINO int8 model staged beside
  `model_handle`; FileNotFoundError where there is none."""
  require_openvino_int8(model_handle)
  xml_path, weights_path = openvino_int8_paths(model_handle)
  xml, weights = read_bytes(xml_path), read_bytes(weights_path)
  return xml, weights, ir_sha256(xml, weights)


def quantize_openvino(fp32_flatbuffer, calibration):
  """(IR bytes, weights bytes): the float TFLite model `fp32_flatbuffer` quantized to int8 by
  NNCF on `calibration` (uint8 pixels [n, height, width, 3]), its first convolution kept in
  float."""
  # pylint: disable=import-outside-toplevel
  import logging

  import nncf
  import openvino
  from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                     OverflowFix)
  nncf.set_log_level(logging.ERROR)
  with tempfile.TemporaryDirectory() as directory, \
      contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
    tflite_path = os.path.join(directory, 'fp32.tflite')
    with open(tflite_path, 'wb') as f:
      f.write(fp32_flatbuffer)
    model = openvino.Core().read_model(tflite_path)
    first_convolution = next((op.get_friendly_name() for op in model.get_ordered_ops()
                              if op.get_type_name() == 'Convolution'), None)
    quantized = nncf.quantize(
        model, nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))]),
        subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED,
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=[first_convolution] if first_convolution else []),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE))
    xml_path = os.path.join(directory, OPENVINO_INT8_MODEL)
    openvino.save_model(quantized, xml_path)
    with open(xml_path, 'rb') as xml, open(xml_path[:-len('.xml')] + '.bin', 'rb') as weights:
      return xml.read(), weights.read()
