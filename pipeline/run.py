"""The label-images command line: python -m pipeline.run, or label-images.

  label-images --input INPUT --output OUTPUT_DIR [--model_handle H] [--feature_handle H]
               [--top_k 5] [any standard Beam option: --runner, --direct_num_workers, ...]
"""

import logging
import sys
import time

import apache_beam as beam

from pipeline.build import build_pipeline
from pipeline.options import parse_args
from pipeline.runner import create_runner
from pipeline.summary import counters, summary


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
