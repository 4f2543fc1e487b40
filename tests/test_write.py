"""Parquet parts: explicit schema, one row group, atomic and idempotent."""

import numpy as np
import pyarrow.parquet as pq

from transforms.schema import ERRORS_SCHEMA, LABELS_SCHEMA
from transforms.write import part_name, rows_to_table, write_part


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


def test_part_name_depends_only_on_the_uris():
  rows = label_rows(4)
  assert part_name('labels', rows) == part_name('labels', rows[::-1])
  assert part_name('labels', rows) != part_name('labels', rows[:3])


def test_write_part_is_one_compressed_row_group_and_rewrites_in_place(tmp_path):
  rows = label_rows(5)
  path = write_part(str(tmp_path), 'labels', rows, LABELS_SCHEMA)
  assert write_part(str(tmp_path), 'labels', rows, LABELS_SCHEMA) == path
  assert [p.name for p in tmp_path.iterdir()] == [part_name('labels', rows)]
  metadata = pq.read_metadata(path)
  assert (metadata.num_rows, metadata.num_row_groups) == (5, 1)
  assert metadata.row_group(0).column(0).compression == 'ZSTD'


def test_errors_schema():
  rows = [{'uri': 'a', 'stage': 'read', 'error': 'not_found', 'message': 'gone'}]
  assert rows_to_table(rows, ERRORS_SCHEMA).to_pylist() == rows
