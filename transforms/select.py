"""Choosing the URIs to label: each distinct URI once, less those the output already holds.

One grouping by URI both collapses duplicates and, when resuming, leaves out every URI
that already has a row in OUTPUT_DIR's labels-*.parquet or errors-*.parquet.
"""

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.fileio import EmptyMatchTreatment

from transforms import metrics
from transforms.inputs import read_listed_uris
from transforms.schema import ERRORS, LABELS

OUTPUT_PREFIXES = (LABELS, ERRORS)


def output_part_patterns(output_dir):
  return [FileSystems.join(output_dir, f'{prefix}-*.parquet') for prefix in OUTPUT_PREFIXES]


class _KeepNew(beam.DoFn):

  def __init__(self):
    self._to_label = metrics.counter('uris_to_label')
    self._duplicates = metrics.counter('duplicate_uris')
    self._already_done = metrics.counter('already_done')

  def process(self, grouped):
    uri, sources = grouped
    listed = len(sources['listed'])
    if not listed:
      return
    self._duplicates.inc(listed - 1)
    if sources['done']:
      self._already_done.inc()
      return
    self._to_label.inc()
    metrics.PROCESS_TALLY.add('uris_to_label')
    yield uri


class SelectUrisToLabel(beam.PTransform):
  """URIs (with duplicates) -> the distinct URIs still to label.

  With resume_from=OUTPUT_DIR, URIs that have a row in its parts are left out.
  Counters: uris_to_label, duplicate_uris, already_done.
  """

  def __init__(self, resume_from=None):
    super().__init__()
    self._resume_from = resume_from

  def expand(self, uris):
    listed = uris | 'KeyListed' >> beam.Map(lambda uri: (uri, None))
    patterns = output_part_patterns(self._resume_from) if self._resume_from else []
    done = (uris.pipeline
            | 'DonePatterns' >> beam.Create(patterns).with_output_types(str)
            | 'MatchDone' >> fileio.MatchAll(EmptyMatchTreatment.ALLOW)
            | 'ReadDone' >> beam.FlatMap(lambda metadata: read_listed_uris(metadata.path))
            | 'KeyDone' >> beam.Map(lambda uri: (uri, None)))
    return ({'listed': listed, 'done': done}
            | 'GroupByUri' >> beam.CoGroupByKey()
            | 'KeepNew' >> beam.ParDo(_KeepNew()))
