"""What an output directory holds, aggregated with pyarrow a batch of rows at a time, so
that memory depends on the number of distinct labels, never on the number of images."""

import collections
from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.duplicates import duplicates_record
from pipeline.output_dir import DUPLICATES_FILE
from transforms.files import exists, read_parquet

SCORE_BINS = np.linspace(0.0, 1.0, 51)
_LABEL_COLUMNS = ['uri', 'label', 'score', 'top_k_labels', 'top_k_scores']
# How the report shows rows below --min_score, whose label is null.
NONE_LABEL = '(none of the classes)'


class LabelStats(NamedTuple):
  images: int
  label_counts: collections.Counter  # label -> images
  score_histogram: np.ndarray  # images per SCORE_BINS interval
  below_threshold: int  # images scored under the low-confidence threshold
  examples: dict  # label -> [(score, uri)], most confident first
  least_confident: list  # rows of _LABEL_COLUMNS, least confident first


class ErrorStats(NamedTuple):
  errors: int
  by_kind: collections.Counter  # (stage, error) -> rows
  examples: dict  # (stage, error) -> [(uri, message)]


class DuplicateGroups(NamedTuple):
  images: int  # images with a near-duplicate
  groups: int
  largest: list  # (size, [uri of its first members]) of the largest groups, largest first
  threshold: Optional[float]  # the cosine from which images were paired, where recorded
  parts: Optional[dict]  # {labels part file name: rows} it was built from, where recorded


def _merge_examples(examples, batch, per_label):
  ranked = pa.Table.from_batches([batch]).select(['label', 'score', 'uri'])
  ranked = ranked.take(pc.sort_indices(ranked, [('score', 'descending')]))
  grouped = ranked.group_by('label', use_threads=False).aggregate(
      [('score', 'list'), ('uri', 'list')])
  for label, scores, uris in zip(*(grouped.column(name).to_pylist() for name in (
      'label', 'score_list', 'uri_list'))):
    merged = examples.get(label, []) + list(zip(scores[:per_label], uris[:per_label]))
    examples[label] = sorted(merged, key=lambda example: -example[0])[:per_label]


def _least_confident(kept, batch, count):
  candidates = pa.Table.from_batches([batch])
  if kept is not None:
    candidates = pa.concat_tables([kept, candidates])
  return pc.take(candidates, pc.select_k_unstable(
      candidates, count, sort_keys=[('score', 'ascending')]))


def _none_named(batch):
  """The batch with the null labels of an open-set run (--min_score) named NONE_LABEL."""
  column = batch.schema.get_field_index('label')
  named = pc.fill_null(batch.column(column), NONE_LABEL)
  return pa.RecordBatch.from_arrays(
      [named if i == column else batch.column(i) for i in range(batch.num_columns)],
      schema=batch.schema.set(column, batch.schema.field(column).with_nullable(False)))


def label_stats(label_paths, low_confidence, per_label=6, least=24):
  """LabelStats over these labels parts."""
  images, below, counts = 0, 0, collections.Counter()
  histogram = np.zeros(len(SCORE_BINS) - 1, np.int64)
  examples, kept = {}, None
  for batch in results.read_batches(label_paths, _LABEL_COLUMNS):
    batch = _none_named(batch)
    images += len(batch)
    labels = pc.value_counts(batch.column('label'))
    counts.update(dict(zip(labels.field('values').to_pylist(),
                           labels.field('counts').to_pylist())))
    scores = batch.column('score').to_numpy()
    histogram += np.histogram(scores, SCORE_BINS)[0]
    below += int(np.count_nonzero(scores < low_confidence))
    _merge_examples(examples, batch, per_label)
    kept = _least_confident(kept, batch, least)
  least_rows = [] if kept is None else kept.sort_by([('score', 'ascending')]).to_pylist()
  return LabelStats(images, counts, histogram, below, examples, least_rows)


def error_stats(error_paths, per_kind=3):
  """ErrorStats over these errors parts."""
  by_kind, examples = collections.Counter(), collections.defaultdict(list)
  for batch in results.read_batches(error_paths, ['uri', 'stage', 'error', 'message']):
    for row in batch.to_pylist():
      kind = (row['stage'], row['error'])
      by_kind[kind] += 1
      if len(examples[kind]) < per_kind:
        examples[kind].append((row['uri'], row['message']))
  return ErrorStats(sum(by_kind.values()), by_kind, dict(examples))


def duplicate_groups(output_dir, groups=8, per_group=6):
  """DuplicateGroups of OUTPUT_DIR/_duplicates/duplicates.parquet, or None where `label-images
  duplicates` has not been run."""
  path = FileSystems.join(output_dir, DUPLICATES_FILE)
  if not exists(path):
    return None
  table = read_parquet(path, columns=['group', 'uri'])
  sizes = pc.value_counts(table.column('group'))
  counts = sizes.field('counts').to_numpy()
  largest = []
  for position in np.argsort(-counts, kind='stable')[:groups]:
    members = table.filter(pc.equal(table.column('group'), sizes.field('values')[position]))
    first_uris = members.column('uri').slice(0, per_group).to_pylist()
    largest.append((int(counts[position]), first_uris))
  threshold, parts = duplicates_record(output_dir) or (None, None)
  return DuplicateGroups(len(table), len(sizes), largest, threshold, parts)
