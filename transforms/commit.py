"""The run's last step, after every part is written: keep what successful bundles committed.

A runner that retries a failed bundle (Dataflow retries a work item up to four times in
batch) may have let the failed attempt write parts before it failed. Those parts hold
rows that the successful attempt wrote again, perhaps split differently. Only the
CommittedParts of successful bundles reach this step, so every other part of this run is
an orphan: it is deleted, with this run's temporary files. The rows are then counted
from the kept parts' own Parquet footers, so the run's totals describe the files on disk.

Counters: labels, errors (rows in kept parts), errors.KIND, parts, orphan_parts_deleted,
parts_missing (committed, yet gone: never expected; the run's accounting reports it).
"""

import collections
import concurrent.futures

import apache_beam as beam

from transforms import metrics
from transforms.files import delete_paths, file_name, matching_paths, parquet_rows
from transforms.schema import ERRORS, ROW_KINDS, kind_of_part
from transforms.write import run_part_pattern, run_temp_paths

_FOOTER_READERS = 16


class _Finalize(beam.DoFn):

  def __init__(self, output_dir, run_id):
    self._output_dir = output_dir
    self._run_id = run_id

  def process(self, committed_parts):
    # Parts are matched by file name: the listing may spell the directory differently.
    on_disk = {file_name(path): path for kind in ROW_KINDS
               for path in matching_paths(run_part_pattern(self._output_dir, kind,
                                                           self._run_id))}
    committed = {file_name(part.path): part for part in committed_parts}
    orphans = sorted(path for name, path in on_disk.items() if name not in committed)
    delete_paths(orphans + run_temp_paths(self._output_dir, self._run_id))
    metrics.counter('orphan_parts_deleted').inc(len(orphans))
    metrics.counter('parts_missing').inc(len(committed.keys() - on_disk.keys()))

    new_parts = {name: part for name, part in committed.items()
                 if part.new_rows and name in on_disk}
    with concurrent.futures.ThreadPoolExecutor(_FOOTER_READERS) as pool:
      rows = dict(zip(new_parts, pool.map(parquet_rows, [on_disk[name] for name in new_parts])))
    rows_by_kind, error_kinds = collections.Counter(), collections.Counter()
    for name, part in new_parts.items():
      rows_by_kind[kind_of_part(name)] += rows[name]
      error_kinds.update(part.counts)
    for kind in ROW_KINDS:
      metrics.counter(kind).inc(rows_by_kind[kind])
    for error_kind, count in error_kinds.items():
      metrics.counter(f'{ERRORS}.{error_kind}').inc(count)
    metrics.counter('parts').inc(len(new_parts))


class FinalizeRun(beam.PTransform):
  """CommittedParts of every writer -> (after all of them) orphans deleted, rows counted."""

  def __init__(self, output_dir, run_id):
    super().__init__()
    self._output_dir = output_dir
    self._run_id = run_id

  def expand(self, committed_parts):
    return (committed_parts
            | 'AllCommitted' >> beam.combiners.ToList()
            | 'KeepCommitted' >> beam.ParDo(_Finalize(self._output_dir, self._run_id)))
