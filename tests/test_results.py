"""Reading an output directory back (pipeline/results.py) whatever rewrote its parts: the
schemas a round trip through pandas, DuckDB, Spark or Polars leaves behind."""

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import results
from synthetic_embeddings import WIDTH
from transforms.schema import ERRORS_SCHEMA, labels_schema

COLUMNS = ['uri', 'label', 'score', 'top_k_labels', 'top_k_scores', 'embedding']


def labels_table(first, count, width=WIDTH):
  rng = np.random.default_rng(first)
  uris = [f'/photos/{row}.jpg' for row in range(first, first + count)]
  return pa.table({
      'uri': uris, 'label': ['cat'] * count,
      'label_index': pa.array([1] * count, pa.int32()),
      'score': pa.array(rng.uniform(size=count), pa.float32()),
      'top_k_labels': [['cat', 'dog']] * count,
      'top_k_scores': pa.array([[0.6, 0.4]] * count, pa.list_(pa.float32())),
      'embedding': pa.FixedSizeListArray.from_arrays(
          pa.array(rng.uniform(size=count * width), pa.float32()), width),
      'width': pa.array([64] * count, pa.int32()), 'height': pa.array([48] * count, pa.int32()),
      'model': ['m'] * count,
  }, schema=labels_schema(width))


def as_spark_writes(table):
  """Every field nullable, strings and lists large, the embedding a plain list, the label
  dictionary-encoded."""
  types = {'uri': pa.large_string(), 'label': pa.large_string(),
           'top_k_labels': pa.large_list(pa.large_string()),
           'top_k_scores': pa.large_list(pa.float32()), 'embedding': pa.list_(pa.float32()),
           'model': pa.large_string()}
  table = table.cast(pa.schema([pa.field(field.name, types.get(field.name, field.type))
                                for field in table.schema]))
  return table.set_column(1, 'label', table.column('label').dictionary_encode())


def write_rewritten_parts(directory, width=WIDTH):
  """Parts of 4 rows each as pandas, DuckDB, Spark and the pipeline write them, and empty
  parts from pandas and DuckDB; returns every row, in part order."""
  tables = [labels_table(first, 4, width) for first in range(0, 16, 4)]
  frame = tables[0].to_pandas()
  frame['label'] = frame['label'].astype('category')
  frame.to_parquet(directory / 'labels-0-pandas.parquet')
  connection = duckdb.connect()
  connection.register('rows', tables[1])
  connection.execute(f"COPY rows TO '{directory / 'labels-1-duckdb.parquet'}' (FORMAT parquet)")
  connection.execute(f"COPY (SELECT * FROM rows LIMIT 0) TO "
                     f"'{directory / 'labels-1-duckdb-empty.parquet'}' (FORMAT parquet)")
  pq.write_table(as_spark_writes(tables[2]), directory / 'labels-2-spark.parquet')
  pq.write_table(tables[3], directory / 'labels-3-pipeline.parquet')
  tables[0].slice(0, 0).to_pandas().to_parquet(directory / 'labels-4-pandas-empty.parquet')
  return pa.concat_tables(tables)


@pytest.mark.parametrize('width', [WIDTH, 64, 2048])
def test_batches_of_rewritten_parts_have_the_outputs_types(tmp_path, width):
  """At the width the parts hold, told by rows where a tool rewrote the embedding as a
  plain list."""
  expected = write_rewritten_parts(tmp_path, width)
  schema = labels_schema(width)
  rewritten = [path.name for path in tmp_path.iterdir()
               if not pq.read_schema(path).remove_metadata().equals(schema)]
  assert len(rewritten) == 5, rewritten

  batches = list(results.read_batches(results.label_parts(str(tmp_path)), COLUMNS))
  # Read as an open-set run (--min_score) writes them: label and label_index may be null.
  read_as = labels_schema(width, open_set=True)
  wanted = pa.schema([read_as.field(name) for name in COLUMNS])
  assert all(batch.schema.equals(wanted) for batch in batches)
  table = pa.Table.from_batches(batches)  # what failed: "Schema at index 1 was different"
  assert table.to_pylist() == expected.select(COLUMNS).to_pylist()


def test_errors_parts_rewritten_by_pandas_read_as_the_pipeline_writes_them(tmp_path):
  rows = {'uri': ['/a.jpg', '/b.jpg'], 'stage': ['read', 'decode'],
          'error': ['not_found', 'truncated'], 'message': ['gone', 'cut short']}
  errors_dir = tmp_path / '_errors'
  errors_dir.mkdir()
  pa.table(rows).to_pandas().astype('category').to_parquet(errors_dir / 'errors-0.parquet')
  pq.write_table(pa.table(rows, schema=ERRORS_SCHEMA), errors_dir / 'errors-1.parquet')
  batches = list(results.read_batches(results.error_parts(str(tmp_path)), list(rows)))
  assert all(batch.schema.equals(ERRORS_SCHEMA) for batch in batches)
  assert pa.Table.from_batches(batches).to_pydict() == {
      name: values * 2 for name, values in rows.items()}


def test_a_part_with_a_missing_uri_is_refused_by_name(tmp_path):
  table = as_spark_writes(labels_table(0, 2))
  table = table.set_column(0, 'uri', pa.array(['/a.jpg', None], pa.large_string()))
  pq.write_table(table, tmp_path / 'labels-0.parquet')
  with pytest.raises(results.UnreadablePartError, match='labels-0.parquet'):
    list(results.read_batches(results.label_parts(str(tmp_path)), COLUMNS))


def test_parts_of_two_widths_are_refused_by_name(tmp_path):
  """Whichever way the second part stores its embeddings."""
  pq.write_table(labels_table(0, 2, 64), tmp_path / 'labels-0.parquet')
  for second in (labels_table(2, 2, 2048), as_spark_writes(labels_table(2, 2, 2048))):
    pq.write_table(second, tmp_path / 'labels-1.parquet')
    with pytest.raises(results.UnreadablePartError,
                       match='labels-1.parquet holds 2,048-wide embeddings, the parts before '
                       'it 64-wide'):
      list(results.read_batches(results.label_parts(str(tmp_path)), COLUMNS))
  # Columns without the embedding read as before.
  assert len(list(results.read_batches(results.label_parts(str(tmp_path)), ['uri']))) == 2


def test_a_plain_list_of_embeddings_of_two_lengths_is_refused(tmp_path):
  table = as_spark_writes(labels_table(0, 2, 64))
  embeddings = pa.array([[0.5] * 64, [0.5] * 63], pa.list_(pa.float32()))
  pq.write_table(table.set_column(table.schema.get_field_index('embedding'), 'embedding',
                                  embeddings), tmp_path / 'labels-0.parquet')
  with pytest.raises(results.UnreadablePartError,
                     match='labels-0.parquet holds embeddings of 63 to 64 values'):
    list(results.read_batches(results.label_parts(str(tmp_path)), COLUMNS))


def test_a_part_without_a_column_others_have_is_refused_by_name(tmp_path):
  pq.write_table(labels_table(0, 2), tmp_path / 'labels-0.parquet')
  pq.write_table(labels_table(2, 2).drop_columns(['embedding']), tmp_path / 'labels-1.parquet')
  with pytest.raises(results.UnreadablePartError, match='labels-1.parquet .* no column embedding'):
    list(results.read_batches(results.label_parts(str(tmp_path)), COLUMNS))
