"""duplicates and similar against brute force, on synthetic outputs with the edge cases:
exact copies (many of one embedding among them), embeddings with NaN or inf and all-zero
ones, a URI in two parts, --threshold 1.0, --k far above the images, inverted lists that
k-means left empty. Brute force compares every pair in float64: a pair is two images whose
cosine is at or above the threshold (identical embeddings: 1.0), a group the images linked
through a chain of pairs."""

import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse
import scipy.sparse.csgraph

from pipeline import duplicates, embedding_index, results, similar
from pipeline.output_dir import DUPLICATES_FILE, INDEX_DIR
from pipeline.run import run_query
from synthetic_embeddings import image_vectors, write_vectors

TOLERANCE = 1e-6  # what the commands allow a cosine below the threshold


def quiet(*_, **__):
  pass


def brute_force(uris, vectors, threshold):
  """{uri: (its group's URIs, the cosine of its nearest other image)} of every image with
  a near-duplicate. Each URI counts once, by its first row; rows whose embedding has NaN or
  inf, or is all zero, are left out."""
  first_row = {}
  for row, uri in enumerate(uris):
    first_row.setdefault(uri, row)
  raw = np.asarray(vectors, np.float64)[list(first_row.values())]
  norms = np.linalg.norm(raw, axis=1)
  kept = np.isfinite(norms) & (norms > 0)
  kept_uris = np.array(list(first_row))[kept]
  raw, norms = raw[kept], norms[kept]
  unit = raw / norms[:, None]
  cosines = np.minimum(unit @ unit.T, 1.0)
  _, embedding = np.unique(raw, axis=0, return_inverse=True)
  cosines[embedding[:, None] == embedding[None, :]] = 1.0
  np.fill_diagonal(cosines, -np.inf)
  pairs = cosines >= threshold - TOLERANCE
  _, component = scipy.sparse.csgraph.connected_components(
      scipy.sparse.csr_matrix(pairs), directed=False)
  paired = np.flatnonzero(pairs.any(axis=1))
  members = {c: frozenset(kept_uris[paired[component[paired] == c]])
             for c in np.unique(component[paired])}
  return {kept_uris[i]: (members[component[i]], cosines[i].max()) for i in paired}


def found_by_duplicates(output, threshold):
  """{uri: (its group's URIs, cosine, nearest uri)} from `duplicates`."""
  table, _ = duplicates.find_duplicates(output, threshold)
  rows = table.to_pylist()
  members = {}
  for row in rows:
    members.setdefault(row['group'], []).append(row['uri'])
  group = {number: frozenset(uris) for number, uris in members.items()}
  return {row['uri']: (group[row['group']], row['cosine'], row['nearest_uri']) for row in rows}


def _cosines(uris, vectors):
  """The float64 cosine of two URIs' embeddings (of their first rows): 1.0 where identical."""
  row = {}
  for number, uri in enumerate(uris):
    row.setdefault(uri, number)
  vectors = np.asarray(vectors, np.float64)

  def cosine(a, b):
    va, vb = vectors[row[a]], vectors[row[b]]
    if np.array_equal(va, vb):
      return 1.0
    return min(1.0, va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))
  return cosine


def assert_as_brute_force(output, uris, vectors, threshold, cosine_error=1e-5):
  expected = brute_force(uris, vectors, threshold)
  found = found_by_duplicates(output, threshold)
  assert set(found) == set(expected)
  assert {group for group, _, _ in found.values()} == {group for group, _ in expected.values()}
  cosine_of = _cosines(uris, vectors)
  for uri, (group, cosine, nearest_uri) in found.items():
    assert nearest_uri in group and nearest_uri != uri
    assert cosine == pytest.approx(expected[uri][1], abs=cosine_error)
    assert cosine_of(uri, nearest_uri) == pytest.approx(expected[uri][1], abs=cosine_error)


def _near_copies(rng, sources, strength):
  noisy = sources + rng.normal(0, 1, sources.shape).astype(np.float32) * strength
  return np.maximum(noisy, 0).astype(np.float32)


def write_edge_cases(directory, distinct=1_000, seed=0):
  """Two parts of edge cases; returns (uris, embeddings) of every row, in part order, and
  {kind: uris} of the planted ones."""
  rng = np.random.default_rng(seed)
  images = image_vectors(distinct, seed)
  copied = rng.choice(np.arange(100, distinct), distinct // 2)  # some several times
  bad = np.zeros((5, images.shape[1]), np.float32)
  bad[0, 3], bad[1, 7], bad[2, 0] = np.nan, np.inf, -np.inf  # 3 and 4: all zero
  vectors = np.concatenate([
      images, images[copied],
      _near_copies(rng, images[:50], 0.01),  # cosine 0.92-0.99 with their source
      _near_copies(rng, images[50:60], 0.0005),  # ~0.99997: near, but not exact, copies
      bad])
  order = rng.permutation(len(vectors))
  vectors = vectors[order]
  uris = [f'gs://photos/{row:05d}.jpg' for row in range(len(vectors))]
  uri_of = [uris[row] for row in np.argsort(order)]  # by row before the shuffle
  near = len(images) + len(copied)
  planted = {'near_copy': uri_of[near:near + 50], 'nearly_identical': uri_of[near + 50:-5],
             'nan_or_inf': uri_of[-5:-2], 'all_zero': uri_of[-2:]}
  write_vectors(directory, vectors, uris)
  # A second part, as after a crash: rows of URIs the first holds (the last with another
  # embedding: the first row counts), new images, and one at ~0.995 from a repeated image.
  repeated = uri_of[60:65]
  repeated_rows = [uris.index(uri) for uri in repeated]
  second = np.concatenate([vectors[repeated_rows], image_vectors(20, seed + 1),
                           _near_copies(rng, vectors[repeated_rows[:1]], 0.0028)])
  second[4] = _near_copies(rng, second[4:5], 0.02)[0]
  second_uris = repeated + [f'gs://photos/new-{row:02d}.jpg' for row in range(21)]
  write_vectors(directory, second, second_uris, first_part=1)
  planted.update(repeated=repeated, near_repeated=second_uris[-1:])
  return uris + second_uris, np.concatenate([vectors, second]), planted


@pytest.fixture(name='edge_cases_written', scope='module')
def fixture_edge_cases_written(tmp_path_factory):
  output = tmp_path_factory.mktemp('edge_cases')
  uris, vectors, planted = write_edge_cases(str(output))
  return str(output), uris, vectors, planted


@pytest.fixture(name='edge_cases')
def fixture_edge_cases(edge_cases_written):
  """(output, uris, embeddings, {kind: uris}), without the index an earlier test saved
  (exact or not, as EXACT_LIMIT was then)."""
  shutil.rmtree(os.path.join(edge_cases_written[0], INDEX_DIR), ignore_errors=True)
  return edge_cases_written


@pytest.fixture(name='inverted_file')
def fixture_inverted_file(monkeypatch):
  """The inverted-file index, above a few hundred images rather than 50,000."""
  monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 500)


@pytest.mark.parametrize('threshold', [duplicates.DEFAULT_THRESHOLD, 0.95, 1.0])
def test_duplicates_are_brute_forces_groups(edge_cases, threshold):
  output, uris, vectors, _ = edge_cases
  assert_as_brute_force(output, uris, vectors, threshold)


@pytest.mark.usefixtures('inverted_file')
def test_duplicates_by_the_inverted_file_are_brute_forces_groups(edge_cases):
  output, uris, vectors, _ = edge_cases
  # Its cosines carry an error of ~0.005: no pair of the edge cases is that near 0.9.
  assert_as_brute_force(output, uris, vectors, duplicates.DEFAULT_THRESHOLD, cosine_error=0.01)
  assert not embedding_index.load_index(output).exact


@pytest.mark.usefixtures('inverted_file')
def test_half_exact_copies_by_the_inverted_file(tmp_path):
  images = image_vectors(2_000, seed=3)
  vectors = np.concatenate([images, images])
  uris = write_vectors(str(tmp_path), vectors)
  assert_as_brute_force(str(tmp_path), uris, vectors, duplicates.DEFAULT_THRESHOLD,
                        cosine_error=0.01)
  assert embedding_index.load_index(str(tmp_path)).size == 2_000


def test_threshold_one_groups_exactly_the_exact_copies(edge_cases):
  output, uris, vectors, planted = edge_cases
  found = found_by_duplicates(output, 1.0)
  cosine_of = _cosines(uris, vectors)
  assert found and all(cosine == 1.0 for _, cosine, _ in found.values())
  assert all(cosine_of(uri, nearest) == 1.0 for uri, (_, _, nearest) in found.items())
  assert not set(found) & set(planted['near_copy'] + planted['nearly_identical'])


def test_identical_embeddings_are_indexed_once(tmp_path):
  """20,000 images of one embedding among 22,000: one vector, one group of 20,000."""
  vectors = np.concatenate([np.repeat(image_vectors(1, seed=5), 20_000, axis=0),
                            image_vectors(2_000, seed=6)])
  uris = write_vectors(str(tmp_path), vectors)
  index = embedding_index.index_for(str(tmp_path), progress=quiet)
  assert (index.size, index.indexed_images) == (2_001, 22_000)
  found = found_by_duplicates(str(tmp_path), duplicates.DEFAULT_THRESHOLD)
  assert set(found) == set(uris[:20_000])
  assert {group for group, _, _ in found.values()} == {frozenset(uris[:20_000])}
  assert {cosine for _, cosine, _ in found.values()} == {1.0}
  answers = similar.most_similar(str(tmp_path), k=5, uri=uris[0])
  assert [answer['similarity'] for answer in answers] == [1.0] * 5
  assert {answer['uri'] for answer in answers} < set(uris[1:20_000])


def test_many_copies_of_a_few_embeddings_above_the_exact_limit(tmp_path):
  """50,001 images, 20 embeddings 500 times each (one-hot, far from the others): an
  inverted list that k-means left empty crashed the search."""
  axes = np.eye(image_vectors(1).shape[1], dtype=np.float32)[:20]
  vectors = np.concatenate([np.repeat(axes, 500, axis=0), image_vectors(40_001, seed=7)])
  uris = write_vectors(str(tmp_path), vectors)
  found = found_by_duplicates(str(tmp_path), duplicates.DEFAULT_THRESHOLD)
  assert not embedding_index.load_index(str(tmp_path)).exact
  planted = {frozenset(uris[start:start + 500]) for start in range(0, 10_000, 500)}
  assert {group for group, _, _ in found.values()} == planted
  assert {cosine for _, cosine, _ in found.values()} == {1.0}


@pytest.mark.usefixtures('inverted_file')
def test_an_empty_inverted_list(tmp_path, monkeypatch):
  """k-means trained on directions no image has: their lists stay empty."""
  images = image_vectors(2_000, seed=8)
  vectors = np.concatenate([images, images[:100]])
  uris = write_vectors(str(tmp_path), vectors)
  sample = embedding_index._training_sample  # pylint: disable=protected-access

  def sample_with_directions_no_image_has(*args):
    drawn = sample(*args)
    return np.concatenate([drawn, -drawn[:400]])
  monkeypatch.setattr(embedding_index, '_training_sample', sample_with_directions_no_image_has)
  index = embedding_index.build_index(str(tmp_path), progress=quiet)
  assert any(len(index.list_rows(number)) == 0 for number in range(index.list_count))
  assert_as_brute_force(str(tmp_path), uris, vectors, duplicates.DEFAULT_THRESHOLD,
                        cosine_error=0.01)


@pytest.mark.parametrize('exact', [True, False])
def test_left_out_embeddings_are_counted_not_indexed(edge_cases, monkeypatch, capsys, exact):
  output, _, _, planted = edge_cases
  if not exact:
    monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 500)
  assert duplicates.main([output]) == 0
  assert embedding_index.load_index(output).exact == exact
  printed = capsys.readouterr().out
  assert '5 images left out: 3 with NaN/inf in their embedding, 2 all-zero' in printed
  assert '5 rows repeat the URI of an earlier row' in printed
  left_out = set(planted['nan_or_inf'] + planted['all_zero'])
  grouped = set(pq.read_table(os.path.join(output, DUPLICATES_FILE)).column('uri').to_pylist())
  assert not grouped & left_out


@pytest.mark.parametrize('kind,message', [('nan_or_inf', 'NaN or inf'),
                                          ('all_zero', 'all zero')])
def test_similar_refuses_an_image_left_out(edge_cases, capsys, kind, message):
  output, _, _, planted = edge_cases
  for uri in planted[kind]:
    assert run_query(similar.main, [output, '--uri', uri]) == 2
    printed = capsys.readouterr()
    assert message in printed.err and uri in printed.err and not printed.out


@pytest.mark.parametrize('exact', [True, False])
def test_similar_is_brute_forces_nearest(edge_cases, monkeypatch, exact):
  output, uris, vectors, planted = edge_cases
  if not exact:
    monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 500)
  cosine_of = _cosines(uris, vectors)
  left_out = set(planted['nan_or_inf'] + planted['all_zero'])
  candidates = sorted(set(uris) - left_out)
  queries = planted['near_copy'][:3] + planted['repeated'][:3] + candidates[:4]
  for query in queries:
    answers = similar.most_similar(output, k=8, uri=query)
    expected = sorted((cosine_of(query, uri) for uri in candidates if uri != query),
                      reverse=True)[:8]
    assert len({answer['uri'] for answer in answers}) == len(answers) == 8
    assert not {answer['uri'] for answer in answers} & (left_out | {query})
    error = 1e-4 if exact else 0.01  # the inverted file's 8-bit codes: ~0.005
    assert [answer['similarity'] for answer in answers] == pytest.approx(expected, abs=error)
    assert all(cosine_of(query, answer['uri']) == pytest.approx(answer['similarity'], abs=error)
               for answer in answers)
  assert embedding_index.load_index(output).exact == exact


def test_a_uri_in_two_parts_counts_once(edge_cases):
  output, _, _, planted = edge_cases
  found = found_by_duplicates(output, duplicates.DEFAULT_THRESHOLD)
  assert all(nearest != uri for uri, (_, _, nearest) in found.items())
  # The first repeated URI has a new image at ~0.995 beside it, in the second part.
  answers = similar.most_similar(output, k=1, uri=planted['repeated'][0])
  assert [answer['uri'] for answer in answers] == planted['near_repeated']
  assert answers[0]['similarity'] == pytest.approx(0.995, abs=0.005)
  assert found[planted['near_repeated'][0]][2] == planted['repeated'][0]


def test_k_is_capped_at_the_images(edge_cases):
  output, uris, _, planted = edge_cases
  answers = similar.most_similar(output, k=100_000, uri=planted['repeated'][0])
  indexed = len(set(uris)) - 5
  assert len(answers) == len({answer['uri'] for answer in answers}) == indexed - 1


@pytest.mark.parametrize('args,message', [
    (['--k', '0'], '--k'), (['--k', '-3'], '--k'), (['--k', '4000000000'], '--k'),
    (['--threshold', '0'], '--threshold'), (['--threshold', '-0.5'], '--threshold'),
    (['--threshold', '1.5'], '--threshold'), (['--threshold', 'nan'], '--threshold'),
])
def test_absurd_k_and_thresholds_are_refused(edge_cases, capsys, args, message):
  output, _, _, planted = edge_cases
  command = similar.main if args[0] == '--k' else duplicates.main
  query = ['--uri', planted['repeated'][0]] if command is similar.main else []
  with pytest.raises(SystemExit) as exit_info:
    command([output, *query, *args])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err


def test_the_duplicates_file_records_what_it_was_built_from(tmp_path):
  vectors = image_vectors(200, seed=9)
  write_vectors(str(tmp_path), np.concatenate([vectors, vectors[:10]]))
  assert duplicates.duplicates_record(str(tmp_path)) is None
  duplicates.find_duplicates(str(tmp_path), 0.95)
  parts = results.part_rows(results.label_parts(str(tmp_path)))
  assert duplicates.duplicates_record(str(tmp_path)) == (0.95, parts)
  assert parts == embedding_index.load_index(str(tmp_path)).parts == {
      'labels-synthetic-0-00000.parquet': 210}
  # A part more: the record tells that the file is stale.
  write_vectors(str(tmp_path), vectors[:3], ['gs://more/0.jpg', 'gs://more/1.jpg',
                                             'gs://more/2.jpg'], first_part=1)
  _, recorded_parts = duplicates.duplicates_record(str(tmp_path))
  assert recorded_parts != results.part_rows(results.label_parts(str(tmp_path)))
