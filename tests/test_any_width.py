"""report, similar and duplicates follow the data: the embedding width and the model of an
output directory come from its parts and manifest, whatever model labelled it; a directory
of a model without an embedding gets a report, and a clear refusal from the commands that
compare embeddings."""

import json

import numpy as np
import pytest

from pipeline import duplicates, embedding_index, similar
from pipeline.output_dir import REPORT_FILE
from synthetic_embeddings import (image_vectors, write_classifier_output, write_manifest,
                                  write_output, write_vectors)
from test_cli import label_images
from transforms.model_spec import CLASSIFIER, LOGITS, PAIR, ModelSpec

SOURCES = 5  # images with a planted near-copy, the last SOURCES rows


def spec_of(width):
  return ModelSpec((299, 299), 1000, LOGITS, width, PAIR if width else CLASSIFIER)


def photos(directory, count, first=0):
  """URIs of images that are not there (any longer): the report's thumbnails of them are
  placeholders, at once."""
  return [str(directory / 'photos' / f'{row}.jpg') for row in range(first, first + count)]


def output_of_width(directory, width, images=200):
  """An output directory of `images` rows of `width`-wide embeddings, the last SOURCES of
  them near-copies of the first; its manifest records a model of that width. Returns the
  URIs."""
  vectors = image_vectors(images - SOURCES, seed=1, width=width)
  copies = 0.97 * vectors[:SOURCES] + 0.03 * vectors[SOURCES:2 * SOURCES]
  uris = photos(directory, images)
  write_vectors(str(directory), np.concatenate([vectors, copies]), uris)
  write_manifest(str(directory), spec_of(width), '/models/classification',
                 '/models/feature_vector')
  return uris


def refused(output, message):
  """Asserts that similar and duplicates refuse output with message, as a usage error."""
  for args in (['similar', output, '--uri', photos(output, 1)[0]], ['duplicates', output]):
    result = label_images(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and 'Traceback' not in result.stderr, result.stderr


@pytest.mark.parametrize('width', [2048, 64])
def test_similar_duplicates_and_report_at_any_width(tmp_path, width):
  uris = output_of_width(tmp_path, width)
  copies = dict(zip(uris[-SOURCES:], uris[:SOURCES]))

  result = label_images('similar', tmp_path, '--uri', uris[-1], '--k', '3', '--json')
  assert result.returncode == 0, result.stderr
  answers = json.loads(result.stdout)
  assert answers[0]['uri'] == copies[uris[-1]] and answers[0]['similarity'] > 0.99

  result = label_images('duplicates', tmp_path)
  assert result.returncode == 0, result.stderr
  assert f'of {len(uris)} images have a near-duplicate' in result.stdout
  group = {row['uri']: row['group'] for row in duplicates.find_duplicates(str(tmp_path))[0]
           .to_pylist()}
  assert all(group[copy] == group[source] for copy, source in copies.items())

  result = label_images('report', tmp_path)
  assert result.returncode == 0, result.stderr
  page = (tmp_path / REPORT_FILE).read_text()
  assert f'299x299 pixels, 1,000 classes (logits), {width:,}-wide embedding' in page
  assert 'embedding <code>/models/feature_vector</code>' in page
  assert 'Group of 2 images' in page


def test_the_inverted_file_at_another_width(tmp_path, monkeypatch):
  """Above EXACT_LIMIT: the k-means lists and 8-bit codes are as wide as the embeddings."""
  planted = write_output(str(tmp_path), 3_000, 50, width=64)
  monkeypatch.setattr(embedding_index, 'EXACT_LIMIT', 1_000)
  table, index = duplicates.find_duplicates(str(tmp_path))
  assert not index.exact and index.width == 64
  group = {row['uri']: row['group'] for row in table.to_pylist()}
  recalled = [copy for copy, source in planted.items()
              if copy in group and group[copy] == group.get(source)]
  assert len(recalled) >= 0.95 * len(planted)


def test_a_directory_without_embeddings_has_a_report_and_no_comparisons(tmp_path):
  write_classifier_output(str(tmp_path), photos(tmp_path, 20))
  write_manifest(str(tmp_path), spec_of(None), '/models/classifier')
  refused(tmp_path, f'{tmp_path} holds no embeddings: its model (/models/classifier) gives '
          'class scores only; similar and duplicates need a model with an embedding '
          '(a feature-vector twin, --feature_handle)')

  result = label_images('report', tmp_path)
  assert result.returncode == 0, result.stderr
  page = (tmp_path / REPORT_FILE).read_text()
  assert ('Model <code>/models/classifier</code>: 299x299 pixels, 1,000 classes (logits), '
          'no embedding.') in page
  assert 'None to find: the model gives class scores only' in page
  assert 'embedding <code>None' not in page


def test_parts_of_two_widths_are_refused(tmp_path):
  write_vectors(str(tmp_path), image_vectors(10, width=64), photos(tmp_path, 10))
  write_vectors(str(tmp_path), image_vectors(10, width=2048), photos(tmp_path, 10, first=10),
                first_part=1)
  refused(tmp_path, 'labels-synthetic-0-00001.parquet holds 2,048-wide embeddings, the parts '
          'before it 64-wide: rows of two models, which cannot be compared')
  assert label_images('report', tmp_path).returncode == 0


class _RecordingEngine:
  """An engine whose embedding of any image is `embedding`; records what it was given."""

  def __init__(self, embedding):
    self.embedding = embedding
    self.loaded_with, self.pixels = None, None

  def load(self, *args):
    self.loaded_with = args
    return self

  def predict(self, pixels):
    self.pixels = pixels
    return np.zeros((len(pixels), 1000), np.float32), self.embedding[None]


def test_similar_embeds_an_image_at_the_recorded_size_with_the_recorded_model(
    tmp_path, monkeypatch, shared_fixtures):
  uris = output_of_width(tmp_path, 64)
  row = 100  # of an image without a copy
  engine = _RecordingEngine(image_vectors(len(uris) - SOURCES, seed=1, width=64)[row])
  monkeypatch.setattr(similar, 'load_engine', engine.load)
  image = f'{shared_fixtures}/images/parrot.jpg'
  answers = similar.most_similar(str(tmp_path), k=1, image=image, progress=lambda *_, **__: None)
  assert engine.loaded_with == (spec_of(64), '/models/classification', '/models/feature_vector',
                                'litert', 'fp32')
  assert engine.pixels.shape == (1, 299, 299, 3) and engine.pixels.dtype == np.uint8
  assert answers[0]['uri'] == uris[row] and answers[0]['similarity'] == pytest.approx(1)

  # An embedding of another width than the output's: not the model that labelled it.
  engine.embedding = image_vectors(1, width=32)[0]
  with pytest.raises(similar.QueryError, match='is 32 wide, those of the output 64'):
    similar.most_similar(str(tmp_path), k=1, image=image, progress=lambda *_, **__: None)
