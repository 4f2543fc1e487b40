"""Plain Beam 2.77: FnApiRunner's multi-threaded mode loses or garbles elements.

  python tests/beam_repro/fnapi_timed_flush.py [--lines 1000000] [--cogroup] [--route_around]

Counts a million distinct lines through a GroupByKey (or a CoGroupByKey against an empty
input) on FnApiRunner with --direct_running_mode multi_threading, as DirectRunner runs a
batch pipeline. Exit status: 0 when the count is exact, 1 when elements were lost, 2 when
the runner failed ("Invalid PaneInfoEncoding", "Unknown type tag", MemoryError). It fails
only some of the time for GroupByKey (about 1 run in 6 here), nearly always for the
CoGroupByKey; loop it: for i in 1 2 3 4 5 6; do python ... || echo FAILED; done

The cause: each data stream of the in-process worker is flushed once a second by a timer
thread (TimeBasedBufferingClosableOutputStream in apache_beam/runners/worker/data_plane.py)
that reads and clears the buffer while the worker thread is encoding elements into it,
with no lock shared between them. Bytes written between the timer's read and clear are
lost, and an element cut in two arrives in two messages that are decoded separately.
--route_around sets the time limit to 0, as pipeline/runner.py does, and is exact.
When this exits 0 without --route_around on a newer Beam, the route-around can go.
"""

import argparse
import os
import resource
import sys
import tempfile
import typing

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.portability.portable_runner import JobServiceHandle

# A garbled element can decode as a billion windows; fail with MemoryError instead.
MEMORY_CAP = 10 << 30


def read_lines(path: str) -> typing.Iterable[str]:  # typed: the keys get StrUtf8Coder
  with open(path, encoding='ascii') as f:
    for line in f:
      yield line.rstrip('\n')


def write_lines(directory, count):
  path = os.path.join(directory, 'lines.txt')
  with open(path, 'w', encoding='ascii') as f:
    f.writelines(f'line-{i:09d}\n' for i in range(count))
  return path


def grouped_count(runner, options, lines, cogroup=False):
  """How many distinct lines of the file `lines` came out of the grouping."""
  counted = os.path.join(os.path.dirname(lines), 'count')
  with beam.Pipeline(runner=runner, options=options) as pipeline:
    keyed = (pipeline | beam.Create([lines]) | beam.FlatMap(read_lines)
             | beam.Map(lambda line: (line, None)))
    if cogroup:
      empty = pipeline | 'Empty' >> beam.Create([]) | 'KeyEmpty' >> beam.Map(lambda x: (x, 0))
      grouped = {'lines': keyed, 'empty': empty} | beam.CoGroupByKey()
    else:
      grouped = keyed | beam.GroupByKey()
    _ = (grouped | beam.combiners.Count.Globally()
         | beam.Map(lambda count: open(counted, 'w', encoding='ascii').write(str(count))))
  with open(counted, encoding='ascii') as f:
    return int(f.read())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--lines', type=int, default=1_000_000)
  parser.add_argument('--cogroup', action='store_true')
  parser.add_argument('--route_around', action='store_true')
  args = parser.parse_args()
  resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
  if args.route_around:
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
  options = PipelineOptions(['--direct_running_mode=multi_threading', '--direct_num_workers=0'])
  runner = fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=JobServiceHandle.
                                           encode_pipeline_options(options.get_all_options()))))
  lines = write_lines(tempfile.mkdtemp(), args.lines)
  try:
    count = grouped_count(runner, options, lines, args.cogroup)
  except Exception as e:  # pylint: disable=broad-except
    print(f'runner failed: {type(e).__name__}: {str(e).splitlines()[-1][:300]}')
    return 2
  print(f'{count} of {args.lines} lines grouped')
  return 0 if count == args.lines else 1


if __name__ == '__main__':
  sys.exit(main())
