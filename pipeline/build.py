"""The wiring: input URIs -> bytes -> pixels -> model outputs -> rows -> Parquet parts,
then the run's commit: the parts successful bundles wrote are kept and counted."""

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from transforms.commit import FinalizeRun
from transforms.decode import DecodeImages
from transforms.failures import FAILURES
from transforms.inference import ImageModelHandler
from transforms.inputs import ListImageUris
from transforms.http_read import HttpSettings
from transforms.read import ReadImageBytes
from transforms.rows import RowSettings, ToRows
from transforms.schema import ERRORS, ERRORS_SCHEMA, LABELS, labels_schema
from transforms.select import REDUNDANT, RemoveRedundantRows, SelectUrisToLabel
from transforms.write import WriteParquetParts


def build_pipeline(pipeline, options, run_id, model):
  """Adds the labelling steps for LabelImagesOptions `options` and the model the driver
  read (a models.ChosenModel) to `pipeline`; every part it writes is named after `run_id`."""
  spec = model.spec
  selected = (pipeline
              | 'ListUris' >> ListImageUris(options.input)
              | 'SelectUris' >> SelectUrisToLabel(options.output if options.resume else None))
  read = selected.uris | 'Read' >> beam.ParDo(ReadImageBytes(
      options.max_image_bytes, options.max_read_attempts,
      HttpSettings(options.http_connections_per_host, options.http_timeout_s))).with_outputs(
          FAILURES, main='images')
  decoded = read.images | 'Decode' >> beam.ParDo(
      DecodeImages(spec.image_size, options.max_image_pixels)).with_outputs(
          FAILURES, main='images')
  handler = ImageModelHandler(
      spec, options.model_handle, options.feature_handle, options.batch_size, options.engine,
      options.precision)
  predictions = decoded.images | 'Inference' >> RunInference(handler)
  rows = predictions | 'ToRows' >> beam.ParDo(
      ToRows(RowSettings(options.top_k, options.model_handle, model.labels.names, spec.scores,
                         options.min_score))).with_outputs(FAILURES, main='labels')

  label_parts = rows.labels | 'WriteLabels' >> beam.ParDo(WriteParquetParts(
      options.output, LABELS,
      labels_schema(spec.embedding_width, open_set=options.min_score is not None), run_id,
      options.rows_per_file))
  # One errors writer per stage that fails images: FnApiRunner materializes every Flatten
  # of several inputs, so one writer behind a Flatten would only start after the last
  # image, holding every error row in memory until then.
  error_parts = [
      failures
      | f'{stage}ErrorRows' >> beam.Map(lambda failure: failure._asdict())
      | f'Write{stage}Errors' >> beam.ParDo(WriteParquetParts(
          options.output, ERRORS, ERRORS_SCHEMA, run_id, options.rows_per_file,
          count_column='error'))
      for stage, failures in (('Read', read[FAILURES]), ('Decode', decoded[FAILURES]),
                              ('Inference', rows[FAILURES]))]
  rewritten_parts = selected[REDUNDANT] | 'RemoveRedundantRows' >> RemoveRedundantRows(
      options.output, run_id)
  _ = ((label_parts, *error_parts, rewritten_parts)
       | 'AllParts' >> beam.Flatten()
       | 'Commit' >> FinalizeRun(options.output, run_id))
