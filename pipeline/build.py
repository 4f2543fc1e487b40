"""The wiring: input URIs -> bytes -> pixels -> model outputs -> rows -> Parquet."""

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from transforms.decode import DecodeImages
from transforms.failures import FAILURES
from transforms.inference import MobileNetHandler
from transforms.inputs import ListImageUris
from transforms.read import ReadImageBytes
from transforms.rows import ToRows
from transforms.schema import ERRORS, ERRORS_SCHEMA, LABELS, LABELS_SCHEMA
from transforms.select import SelectUrisToLabel
from transforms.write import WriteParquetParts


def build_pipeline(pipeline, options):
  """Adds the labelling steps for LabelImagesOptions `options` to `pipeline`."""
  uris = (pipeline
          | 'ListUris' >> ListImageUris(options.input)
          | 'SelectUris' >> SelectUrisToLabel(options.output if options.resume else None))
  read = uris | 'Read' >> beam.ParDo(ReadImageBytes(
      options.max_image_bytes, options.max_read_attempts)).with_outputs(FAILURES, main='images')
  decoded = read.images | 'Decode' >> beam.ParDo(
      DecodeImages(options.max_image_pixels)).with_outputs(FAILURES, main='images')
  handler = MobileNetHandler(
      options.model_handle, options.feature_handle, options.batch_size, options.engine)
  predictions = decoded.images | 'Inference' >> RunInference(handler)
  rows = predictions | 'ToRows' >> beam.ParDo(
      ToRows(options.top_k, options.model_handle)).with_outputs(FAILURES, main='labels')

  _ = rows.labels | 'WriteLabels' >> beam.ParDo(WriteParquetParts(
      options.output, LABELS, LABELS_SCHEMA, options.rows_per_file))
  failures = ((read[FAILURES], decoded[FAILURES], rows[FAILURES])
              | 'AllFailures' >> beam.Flatten()
              | 'FailureRows' >> beam.Map(lambda failure: failure._asdict()))
  _ = failures | 'WriteErrors' >> beam.ParDo(WriteParquetParts(
      options.output, ERRORS, ERRORS_SCHEMA, options.rows_per_file, count_column='error'))
