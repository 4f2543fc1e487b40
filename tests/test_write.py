"""Parquet parts: explicit schema, one row group, atomic; rows removed from a part safely."""

import numpy as np
import pyarrow.parquet as pq

from transforms.schema import ERRORS_SCHEMA, labels_schema
from transforms.write import CommittedPart, part_name, remove_rows, rows_to_table, write_table

LABELS_SCHEMA = labels_schema(1280)


def label_rows(count):
  return [{
      'uri': f'/images/{i}.jpg', 'label': 'tench, Tinca tinca', 'label_index': 1,
      'score': 0.5, 'top_k_labels': ['tench, Tinca tinca'], 'top_k_scores': [0.5],
      'embedding': np.full(1280, i, np.float32), 'width': 10, 'height': 20, 'model': 'M',
  } for i in range(count)]


def test_rows_to_table_uses_the_schema():
  table = rows_to_table(label_rows(3), LABELS_SCHEMA)
  assert table.schema.equals(LABELS_SCHEMA)
  assert table.column('embedding').to_pylist()[2] == [2.0] * 1280


def test_part_names_carry_run_and_attempt():
  assert part_name('labels', 'RUN', 'ATTEMPT', 7) == 'labels-RUN-ATTEMPT-00007.parquet'


def test_write_table_is_one_compressed_row_group_with_no_temporary_left(tmp_path):
  path = write_table(str(tmp_path), 'labels-r-a-00000.parquet',
                     rows_to_table(label_rows(5), LABELS_SCHEMA))
  assert [p.name for p in tmp_path.iterdir()] == ['labels-r-a-00000.parquet']
  metadata = pq.read_metadata(path)
  assert (metadata.num_rows, metadata.num_row_groups) == (5, 1)
  assert metadata.row_group(0).column(0).compression == 'ZSTD'


def test_remove_rows_rewrites_the_part_without_them(tmp_path):
  old = write_table(str(tmp_path), 'labels-old-a-00000.parquet',
                    rows_to_table(label_rows(4), LABELS_SCHEMA))
  committed = remove_rows(old, {'/images/1.jpg', '/images/3.jpg'}, 'new')
  assert isinstance(committed, CommittedPart) and not committed.new_rows
  assert [p.name for p in tmp_path.iterdir()] == [committed.path.split('/')[-1]]
  assert committed.path.split('/')[-1].startswith('labels-new-dedup')
  table = pq.read_table(committed.path)
  assert table.schema.equals(LABELS_SCHEMA)
  assert table.column('uri').to_pylist() == ['/images/0.jpg', '/images/2.jpg']
  # A retried rewrite, whose first attempt had already deleted the old part, finds its output.
  assert remove_rows(old, {'/images/1.jpg', '/images/3.jpg'}, 'new') == committed


def test_remove_rows_deletes_a_part_left_empty(tmp_path):
  old = write_table(str(tmp_path), 'errors-old-a-00000.parquet', rows_to_table(
      [{'uri': 'a', 'stage': 'read', 'error': 'not_found', 'message': 'gone'}], ERRORS_SCHEMA))
  assert remove_rows(old, {'a'}, 'new') is None
  assert not list(tmp_path.iterdir())


def test_errors_schema():
  rows = [{'uri': 'a', 'stage': 'read', 'error': 'not_found', 'message': 'gone'}]
  assert rows_to_table(rows, ERRORS_SCHEMA).to_pylist() == rows
