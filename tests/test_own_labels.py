"""Your own labels, end to end through the command line: label a collection, train a head on
examples of it, then label held-out images both ways: relabel the stored embeddings, and run
the main command with HEAD_DIR on the images. Both must be right, and agree."""

import csv
import os

import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import PHOTOS_DIR
from test_cli import label_images, model_args
from test_train_head import CLASS_PHOTOS, augmented

TRAIN_COPIES = 8
HELD_OUT_COPIES = 4  # of each class, cropped, scaled and mirrored otherwise


def rows_by_uri(output_dir):
  rows = {}
  for path in sorted(output_dir.glob('labels-*.parquet')):
    for row in pq.read_table(path, columns=['uri', 'label', 'score', 'top_k_labels',
                                            'top_k_scores']).to_pylist():
      rows[row['uri']] = row
  return rows


@pytest.fixture(scope='module')
def collection(model_dir, tmp_path_factory):
  """(OUTPUT_DIR labelled by the fixture pair, examples CSV, {held-out path: class})."""
  directory = tmp_path_factory.mktemp('collection')
  images = directory / 'images'
  images.mkdir()
  examples, held_out = [], {}
  for label, names in CLASS_PHOTOS.items():
    photos = [Image.open(os.path.join(PHOTOS_DIR, name)).convert('RGB') for name in names]
    for i in range(TRAIN_COPIES + HELD_OUT_COPIES):
      path = images / f'{len(examples) + len(held_out):03d}.jpg'
      augmented(photos[i % len(photos)], i + 100).save(path, quality=90)
      if i < TRAIN_COPIES:
        examples.append((str(path), label))
      else:
        held_out[str(path)] = label
  with open(directory / 'examples.csv', 'w', newline='', encoding='utf-8') as f:
    csv.writer(f).writerows([('uri', 'label'), *examples])
  output = directory / 'out'
  # fp32 here and below: the head as a model then computes as relabel does, to float32's
  # rounding (in bf16 the head's own matmul would round too).
  result = label_images('--input', images, '--output', output, '--precision', 'fp32',
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  return output, directory / 'examples.csv', held_out


@pytest.fixture(scope='module')
def head_dir(collection, tmp_path_factory):
  output, examples, _ = collection
  head = tmp_path_factory.mktemp('head') / 'head'
  result = label_images('train-head', '--examples', examples, '--embeddings', output,
                        '--output', head)
  assert result.returncode == 0, result.stderr
  assert 'accuracy' in result.stdout
  return head


def test_relabel_and_the_head_as_a_model_label_held_out_copies_right_and_alike(
    collection, head_dir, tmp_path):
  output, _, held_out = collection
  relabelled = tmp_path / 'relabelled'
  result = label_images('relabel', output, '--model_handle', head_dir, '--output', relabelled)
  assert result.returncode == 0, result.stderr
  by_relabel = rows_by_uri(relabelled)
  assert len(by_relabel) == len(rows_by_uri(output))  # every row of the collection, once

  listing = tmp_path / 'held_out.txt'
  listing.write_text('\n'.join(held_out) + '\n')
  direct = tmp_path / 'direct'
  result = label_images('--input', listing, '--output', direct, '--model_handle', head_dir,
                        '--precision', 'fp32')
  assert result.returncode == 0, result.stderr
  by_model = rows_by_uri(direct)
  assert set(by_model) == set(held_out)

  right = sum(by_relabel[uri]['label'] == label for uri, label in held_out.items())
  assert right / len(held_out) >= 0.9, {uri: by_relabel[uri]['label'] for uri in held_out}
  for uri in held_out:
    assert by_model[uri]['top_k_labels'] == by_relabel[uri]['top_k_labels'], uri
    assert by_model[uri]['top_k_scores'] == pytest.approx(by_relabel[uri]['top_k_scores'],
                                                          abs=1e-5), uri
