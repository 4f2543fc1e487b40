"""Choosing the URIs to label: each distinct URI once, less those the output already holds.

One grouping both collapses duplicates and, when resuming, leaves out every URI that
already has a row in OUTPUT_DIR's labels-*.parquet or _errors/errors-*.parquet. The same
grouping finds URIs with a row in more than one part, which a crashed job can leave (a bundle that
failed after writing a part, then retried, wrote its rows again): one copy is kept and the
parts holding the others are rewritten without them.

URIs are matched in their canonical form (read.canonical_uri). Rows written before local paths
were stored absolute may hold relative ones: they are taken as relative to the current
directory of the resuming run, so listing the same files again relabels none of them.

The grouping is by shard of the URI, not by URI, and each step upstream packs a bundle's
URIs per shard into one compressed blob: the grouping then holds a few bytes per URI
instead of a keyed Python object per URI, which on the local runner all sit in memory.
"""

import collections
import os
import pickle
import zlib

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.fileio import EmptyMatchTreatment
from apache_beam.transforms.window import GlobalWindows

from transforms import metrics
from transforms.files import damage_named, file_name
from transforms.inputs import read_listed_uris
from transforms.read import canonical_uri
from transforms.schema import LABELS, ROW_KINDS, kind_of_part, part_glob, parts_dir
from transforms.write import remove_rows

# The tagged output of (part file name, URI) for rows that another part also holds.
REDUNDANT = 'redundant'
SHARDS = 1024
# URIs a packing step holds before it emits its packs: about 10 MB.
PACK_LIMIT = 100_000
_LISTED, _DONE = 'listed', 'done'


def output_part_patterns(output_dir):
  return [FileSystems.join(output_dir, part_glob(kind)) for kind in ROW_KINDS]


def shard_of(uri):
  return zlib.crc32(uri.encode('utf-8', 'surrogatepass')) % SHARDS


def _rows_of_part(path, base_dir):
  """(canonical URI, (part file name, URI as the row holds it)) for each row of a part;
  DamagedPartError, naming it, where it cannot be read as Parquet (--resume sets such parts
  aside before the pipeline starts: output_dir.prepare_output_dir)."""
  part = file_name(path)
  with damage_named(path, in_footer=None):
    for uri in read_listed_uris(path):
      yield canonical_uri(uri, base_dir), (part, uri)


def _copies_in_keeping_order(uri, rows):
  """The (part, URI as held) copies of one URI's row, the one to keep first: a label outlives
  an error (the retry of a failed attempt may have met a transient error that the attempt did
  not), then a canonical spelling an old relative one."""
  return sorted(rows, key=lambda row: (not row[0].startswith(LABELS), row[1] != uri, row))


def _unpack(blob):
  return pickle.loads(zlib.decompress(blob))


class _PackByShard(beam.DoFn):
  """URIs (listed) or (URI, row) pairs (done) -> (shard, (source, compressed list))."""

  def __init__(self, source):
    self._source = source
    self._packs = None
    self._held = 0

  def start_bundle(self):
    self._packs, self._held = collections.defaultdict(list), 0

  def process(self, element):
    uri = element if self._source == _LISTED else element[0]
    self._packs[shard_of(uri)].append(element)
    self._held += 1
    if self._held >= PACK_LIMIT:
      yield from self._emit()

  def finish_bundle(self):
    for shard_and_pack in self._emit():
      yield GlobalWindows.windowed_value(shard_and_pack)

  def _emit(self):
    packs, self._packs, self._held = self._packs, collections.defaultdict(list), 0
    for shard, elements in packs.items():
      yield shard, (self._source, zlib.compress(pickle.dumps(elements, protocol=5), 1))


class _SelectInShard(beam.DoFn):

  def __init__(self):
    self._counters = {name: metrics.counter(name) for name in (
        'uris_to_label', 'duplicate_uris', 'already_done', 'redundant_rows')}

  def process(self, shard_and_packs):
    listed, done = collections.Counter(), collections.defaultdict(set)
    for source, blob in shard_and_packs[1]:
      if source == _LISTED:
        listed.update(_unpack(blob))
      else:
        for uri, row in _unpack(blob):
          done[uri].add(row)
    redundant = [row for uri, rows in done.items()
                 for row in _copies_in_keeping_order(uri, rows)[1:]]
    to_label = [uri for uri in listed if uri not in done]
    # Counted once everything is computed, so that a bundle failing midway counts nothing.
    counts = {'duplicate_uris': sum(listed.values()) - len(listed),
              'already_done': len(listed) - len(to_label), 'uris_to_label': len(to_label)}
    for name, count in counts.items():
      self._counters[name].inc(count)
      metrics.PROCESS_TALLY.add(name, count)
    self._counters['redundant_rows'].inc(len(redundant))
    for part_and_uri in redundant:
      yield beam.pvalue.TaggedOutput(REDUNDANT, part_and_uri)
    yield from to_label


class SelectUrisToLabel(beam.PTransform):
  """URIs (with duplicates) -> the distinct URIs still to label, and REDUNDANT copies.

  With resume_from=OUTPUT_DIR, URIs that have a row in its parts are left out.
  Counters: uris_to_label, duplicate_uris, already_done, redundant_rows.
  """

  def __init__(self, resume_from=None):
    super().__init__()
    self._resume_from = resume_from
    self._base_dir = os.getcwd()  # the driver's: rows of old relative paths are taken from it

  def expand(self, uris):
    listed = uris | 'PackListed' >> beam.ParDo(_PackByShard(_LISTED))
    patterns = output_part_patterns(self._resume_from) if self._resume_from else []
    done = (uris.pipeline
            | 'DonePatterns' >> beam.Create(patterns).with_output_types(str)
            | 'MatchDone' >> fileio.MatchAll(EmptyMatchTreatment.ALLOW)
            | 'ReadDone' >> beam.FlatMap(
                lambda metadata, base_dir: _rows_of_part(metadata.path, base_dir),
                self._base_dir)
            | 'PackDone' >> beam.ParDo(_PackByShard(_DONE)))
    return ((listed, done)
            | 'BothSources' >> beam.Flatten()
            | 'GroupByShard' >> beam.GroupByKey()
            | 'SelectInShard' >> beam.ParDo(_SelectInShard()).with_outputs(REDUNDANT,
                                                                           main='uris'))


class _RemoveRows(beam.DoFn):

  def __init__(self, output_dir, run_id):
    self._output_dir = output_dir
    self._run_id = run_id

  def process(self, part_and_uris):
    part, uris = part_and_uris
    part_path = FileSystems.join(parts_dir(self._output_dir, kind_of_part(part)), part)
    committed = remove_rows(part_path, set(uris), self._run_id)
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
