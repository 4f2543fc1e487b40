"""The near-duplicate search and its index, in process, on synthetic embeddings: the
inverted-file path that outputs above EXACT_LIMIT images take, on a few thousand."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import duplicates, embedding_index, similar
from pipeline.output_dir import DUPLICATES_FILE, INDEX_DIR
from synthetic_embeddings import WIDTH, write_output
from transforms.schema import labels_schema

IMAGES, PLANTED = 6_000, 100


@pytest.fixture(scope='module')
def synthetic_output(tmp_path_factory):
  output = tmp_path_factory.mktemp('synthetic')
  return output, write_output(str(output), IMAGES, PLANTED)


def groups_found(output):
  rows = pq.read_table(output / DUPLICATES_FILE).to_pylist()
  return {row['uri']: row['group'] for row in rows}, rows


@pytest.mark.parametrize('exact_limit', [10_000, 1_000])
def test_planted_copies_are_found_exactly_or_by_the_inverted_file(
    synthetic_output, monkeypatch, exact_limit):
  output, planted = synthetic_output
  monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', exact_limit)
  for stale in (output / INDEX_DIR).glob('*'):
    stale.unlink()
  _, index = duplicates.find_duplicates(str(output))
  assert index.indexed_images == index.size == IMAGES
  assert embedding_index.load_index(str(output)).exact == (exact_limit > IMAGES)
  group, rows = groups_found(output)
  recalled = [copy for copy, source in planted.items()
              if copy in group and group[copy] == group.get(source)]
  assert len(recalled) >= 0.95 * PLANTED
  assert set(group) <= set(planted) | set(planted.values())  # nothing unrelated
  assert len(set(group.values())) == len(group) // 2
  partner = {**planted, **{source: copy for copy, source in planted.items()}}
  for row in rows:
    assert row['nearest_uri'] == partner[row['uri']]
    assert duplicates.DEFAULT_THRESHOLD <= row['cosine'] <= 1


def test_pairs_split_between_two_lists_are_found(tmp_path, monkeypatch):
  """Many small lists, so that some planted pairs straddle a boundary between two."""
  planted = write_output(str(tmp_path), IMAGES, 300)
  monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 1_000)
  monkeypatch.setattr(embedding_index, 'centroid_count', lambda rows: 512)
  index = embedding_index.build_index(str(tmp_path), progress=lambda *_, **__: None)
  list_of = np.empty(index.size, np.int64)
  for number in range(index.list_count):
    list_of[index.list_rows(number)] = number
  vector = dict(zip(index.uris.to_pylist(), index.vector_of))
  split = [(vector[copy], vector[source]) for copy, source in planted.items()
           if list_of[vector[copy]] != list_of[vector[source]]]
  assert split
  pairs = duplicates.find_pairs(index, duplicates.DEFAULT_THRESHOLD,
                                progress=lambda *_, **__: None)
  assert all(pairs.groups.root(a) == pairs.groups.root(b) for a, b in split)


def test_similar_over_the_inverted_file_finds_the_source_of_a_copy(
    synthetic_output, monkeypatch):
  output, planted = synthetic_output
  monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 1_000)
  for stale in (output / INDEX_DIR).glob('*'):
    stale.unlink()
  for copy, source in list(planted.items())[:10]:
    answers = similar.most_similar(str(output), k=3, uri=copy)
    assert answers[0]['uri'] == source
    assert all(answer['uri'] != copy for answer in answers)


def _output_of(tmp_path, vectors):
  vectors = np.asarray(vectors, np.float32)
  count, width = vectors.shape
  table = pa.table({
      'uri': [f'/photos/{i}.jpg' for i in range(count)], 'label': ['x'] * count,
      'label_index': pa.array([1] * count, pa.int32()),
      'score': pa.array([0.5] * count, pa.float32()),
      'top_k_labels': [['x']] * count, 'top_k_scores': pa.array([[0.5]] * count,
                                                                pa.list_(pa.float32())),
      'embedding': pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), width),
      'width': pa.array([1] * count, pa.int32()), 'height': pa.array([1] * count, pa.int32()),
      'model': ['m'] * count,
  }, schema=labels_schema(width))
  pq.write_table(table, tmp_path / 'labels-run-0-00000.parquet')
  return str(tmp_path)


@pytest.mark.parametrize('width', [WIDTH, 3])
def test_a_chain_of_pairs_is_one_group(tmp_path, width):
  """a~b and b~c above the threshold, a~c below it: still one group of three."""
  axes = np.eye(width)
  angle = np.arccos(0.95)
  a = axes[0]
  b = np.cos(angle) * axes[0] + np.sin(angle) * axes[1]
  c = np.cos(2 * angle) * axes[0] + np.sin(2 * angle) * axes[1]
  far = axes[2]
  assert a @ c < duplicates.DEFAULT_THRESHOLD
  output = _output_of(tmp_path, [a, far, c, b * 3.0])  # length does not matter
  table, _ = duplicates.find_duplicates(output)
  rows = {row['uri']: row for row in table.to_pylist()}
  assert set(rows) == {'/photos/0.jpg', '/photos/2.jpg', '/photos/3.jpg'}
  assert {row['group'] for row in rows.values()} == {0}
  assert rows['/photos/0.jpg']['nearest_uri'] == '/photos/3.jpg'
  assert rows['/photos/3.jpg']['cosine'] == pytest.approx(0.95, abs=1e-5)


def test_codes_decode_as_faiss_decodes_them(synthetic_output, monkeypatch):
  output, _ = synthetic_output
  monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 1_000)
  index = embedding_index.build_index(str(output), progress=lambda *_, **__: None)
  codes = index.list_codes(0)[:64].copy()
  np.testing.assert_allclose(index.decode(codes), index._ivf.sq.decode(codes), rtol=1e-6,  # pylint: disable=protected-access
                             atol=1e-7)
