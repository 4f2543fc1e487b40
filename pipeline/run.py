"""The label-images command line: python -m pipeline.run, or label-images.

  label-images --input INPUT --output OUTPUT_DIR [--model_handle H] [--feature_handle H]
               [--top_k 5] [any standard Beam option: --runner, --direct_num_workers, ...]
"""

import argparse
import logging
import os
import sys
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.build import build_pipeline
from pipeline.options import REQUIRED, LabelImagesOptions
from pipeline.runner import create_runner
from transforms.inputs import input_format
from transforms.labels import NUM_CLASSES


def parse_args(argv):
  """Returns (our options as a namespace, PipelineOptions of the whole command line)."""
  parser = argparse.ArgumentParser(
      prog='label-images',
      description='Label images with the TF Hub MobileNet V2 ImageNet classifier on Apache '
      'Beam; writes labels, scores and embeddings to Parquet.',
      epilog='Every standard Beam option (--runner, --direct_num_workers, --project, '
      '--region, --temp_location, ...) is passed through to the pipeline.')
  LabelImagesOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  args, others = parser.parse_known_args(argv)
  stray = stray_values(others)
  if stray:
    parser.error(f'unexpected arguments: {" ".join(stray[:3])}{" ..." if len(stray) > 3 else ""} '
                 "(quote a glob so that the shell does not expand it: --input 'photos/*.jpg')")
  missing = [f'--{name}' for name in REQUIRED if not getattr(args, name)]
  if missing:
    parser.error(f'the following arguments are required: {", ".join(missing)}')
  if not 1 <= args.top_k <= NUM_CLASSES:
    parser.error(f'--top_k must be between 1 and {NUM_CLASSES}')
  for name in ('batch_size', 'rows_per_file', 'max_image_bytes', 'max_image_pixels'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1')
  for problem in local_path_problems(args):
    parser.error(problem)
  return args, PipelineOptions(argv)


def stray_values(others):
  """Values that follow no --flag: most often a glob the shell expanded into many paths."""
  stray, previous = [], ''
  for token in others:
    if not token.startswith('-') and (not previous.startswith('--') or '=' in previous):
      stray.append(token)
    previous = token
  return stray


def local_path_problems(args):
  """Mistakes in local paths, caught before the pipeline starts. Remote paths are left to
  the workers: the driver may have no access to them (e.g. building a Dataflow job)."""
  problems = []
  if '://' not in args.input:
    if input_format(args.input) != 'glob':
      if not os.path.isfile(args.input):
        problems.append(f'--input: no such file: {args.input}')
    elif not _matches_any(args.input):
      problems.append(f'--input: no files match {args.input}')
  for flag in ('model_handle', 'feature_handle'):
    handle = getattr(args, flag)
    if '://' not in handle and not os.path.isfile(os.path.join(handle, 'saved_model.pb')):
      problems.append(f'--{flag}: {handle} is not a SavedModel directory (no saved_model.pb)')
  return problems


def _matches_any(pattern):
  try:
    return bool(FileSystems.match([pattern])[0].metadata_list)
  except BeamIOError:
    return False


def counters(result):
  """{name: value} of the pipeline's counters in the 'label_images' namespace."""
  query = result.metrics().query(MetricsFilter().with_namespace('label_images'))
  totals = {}
  for counter in query['counters']:
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
  return totals


def summary(totals, output, seconds):
  labelled, errors = totals.get('labels', 0), totals.get('errors', 0)
  lines = [f'label-images: {labelled} images labelled, {errors} errors in {seconds:.1f} s '
           f'({labelled / max(seconds, 1e-9):.1f} images/s)']
  kinds = sorted((name.split('.', 1)[1], n) for name, n in totals.items()
                 if name.startswith('errors.'))
  if kinds:
    lines.append('  errors by kind: ' + ', '.join(f'{kind} {n}' for kind, n in kinds))
  lines.append(f'  output: {output}/labels-*.parquet, {output}/errors-*.parquet')
  return '\n'.join(lines)


def run(argv):
  args, pipeline_options = parse_args(argv)
  started = time.monotonic()
  pipeline = beam.Pipeline(runner=create_runner(pipeline_options), options=pipeline_options)
  build_pipeline(pipeline, args)
  result = pipeline.run()
  result.wait_until_finish()
  print(summary(counters(result), args.output, time.monotonic() - started))
  return 0


class _DropBeamResourceWarning(logging.Filter):
  """RunInference warns on every model load that it can't read memory usage: Beam imports
  `resource` together with a module that needs PyTorch, so without PyTorch it gives up."""

  def filter(self, record):
    return 'Resource module is not available' not in record.getMessage()


def main(argv=None):
  logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
  for handler in logging.getLogger().handlers:
    handler.addFilter(_DropBeamResourceWarning())
  return run(sys.argv[1:] if argv is None else argv)


if __name__ == '__main__':
  sys.exit(main())
