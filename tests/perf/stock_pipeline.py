"""The stock approach, for the benchmark to compare against.

It follows Beam's own TF Hub image-classification example: per-element PIL open and
resize to float pixels, RunInference on DirectRunner's engine with a handler that calls
the TF SavedModel (Beam's own TensorFlow handler cannot load TF Hub models under Keras
3), top label written as text.

Usage: python tests/perf/stock_pipeline.py --input DIR --model DIR/classification --output DIR
"""

import argparse
import glob
import os

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult
from apache_beam.ml.inference.base import RunInference
from PIL import Image


def read_image(path):
  with FileSystems.open(path) as f:
    image = Image.open(f).convert('RGB').resize((224, 224))
  return path, np.asarray(image, dtype=np.float32) / 255.0


class HubClassifierHandler(ModelHandler):

  def __init__(self, model_handle):
    super().__init__()
    self._model_handle = model_handle

  def load_model(self):
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
    return hub.load(self._model_handle)

  def run_inference(self, batch, model, inference_args=None):
    logits = model(np.stack(batch)).numpy()
    return [PredictionResult(example, output) for example, output in zip(batch, logits)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--input', required=True)
  parser.add_argument('--model', required=True)
  parser.add_argument('--output', required=True)
  args = parser.parse_args()
  paths = sorted(glob.glob(os.path.join(args.input, '*.jpg')))
  with beam.Pipeline(runner='FnApiRunner') as pipeline:
    _ = (pipeline
         | beam.Create(paths)
         | beam.Map(read_image)
         | RunInference(KeyedModelHandler(HubClassifierHandler(args.model)))
         | beam.MapTuple(lambda path, result: f'{path},{int(np.argmax(result.inference))}')
         | beam.io.WriteToText(os.path.join(args.output, 'predictions')))


if __name__ == '__main__':
  main()
