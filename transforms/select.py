"""Choosing the URIs to label: each distinct URI once, less those the output already holds.

One grouping by URI both collapses duplicates and, when resuming, leaves out every URI
that already has a row in OUTPUT_DIR's labels-*.parquet or errors-*.parquet. The same
grouping finds URIs with a row in more than one part, which a crashed job can leave (a
bundle that failed after writing a part, then retried, wrote its rows again): one copy
is kept and the parts holding the others are rewritten without them.
"""

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.fileio import EmptyMatchTreatment

from transforms import metrics
from transforms.inputs import read_listed_uris
from transforms.schema import OUTPUT_PREFIXES
from transforms.write import remove_rows

# The tagged output of (part file name, URI) for rows that another part also holds.
REDUNDANT = 'redundant'


def output_part_patterns(output_dir):
  return [FileSystems.join(output_dir, f'{prefix}-*.parquet') for prefix in OUTPUT_PREFIXES]


def _uris_with_part(path):
  part = FileSystems.split(path)[1]
  return ((uri, part) for uri in read_listed_uris(path))


class _KeepNew(beam.DoFn):

  def __init__(self):
    self._to_label = metrics.counter('uris_to_label')
    self._duplicates = metrics.counter('duplicate_uris')
    self._already_done = metrics.counter('already_done')
    self._redundant = metrics.counter('redundant_rows')

  def process(self, grouped):
    uri, sources = grouped
    for part in sorted(set(sources['done']))[1:]:
      self._redundant.inc()
      yield beam.pvalue.TaggedOutput(REDUNDANT, (part, uri))
    listed = len(sources['listed'])
    if not listed:
      return
    self._duplicates.inc(listed - 1)
    metrics.PROCESS_TALLY.add('duplicate_uris', listed - 1)
    if sources['done']:
      self._already_done.inc()
      metrics.PROCESS_TALLY.add('already_done')
      return
    self._to_label.inc()
    metrics.PROCESS_TALLY.add('uris_to_label')
    yield uri


class SelectUrisToLabel(beam.PTransform):
  """URIs (with duplicates) -> the distinct URIs still to label, and REDUNDANT copies.

  With resume_from=OUTPUT_DIR, URIs that have a row in its parts are left out.
  Counters: uris_to_label, duplicate_uris, already_done, redundant_rows.
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
            | 'ReadDone' >> beam.FlatMap(lambda metadata: _uris_with_part(metadata.path)))
    return ({'listed': listed, 'done': done}
            | 'GroupByUri' >> beam.CoGroupByKey()
            | 'KeepNew' >> beam.ParDo(_KeepNew()).with_outputs(REDUNDANT, main='uris'))


class _RemoveRows(beam.DoFn):

  def __init__(self, output_dir, run_id):
    self._output_dir = output_dir
    self._run_id = run_id

  def process(self, part_and_uris):
    part, uris = part_and_uris
    committed = remove_rows(FileSystems.join(self._output_dir, part), set(uris), self._run_id)
    if committed:
      yield committed


class RemoveRedundantRows(beam.PTransform):
  """REDUNDANT (part file name, URI) pairs -> CommittedParts of the rewritten parts."""

  def __init__(self, output_dir, run_id):
    super().__init__()
    self._output_dir = output_dir
    self._run_id = run_id

  def expand(self, redundant):
    return (redundant
            | 'GroupByPart' >> beam.GroupByKey()
            | 'Rewrite' >> beam.ParDo(_RemoveRows(self._output_dir, self._run_id)))
