"""Model outputs to rows: softmax, top-k, label names."""

import numpy as np

from transforms.decode import DecodedImage
from transforms.inference import ModelOutput
from transforms.model_spec import LOGITS, PROBABILITIES
from transforms.rows import RowSettings, label_row, softmax


def test_softmax_is_stable_and_normalised():
  probabilities = softmax(np.array([1000.0, 1000.0, -1000.0], np.float32))
  assert np.allclose(probabilities, [0.5, 0.5, 0.0])


def test_label_row_holds_top_k_in_descending_order():
  logits = np.zeros(1001, np.float32)
  logits[[7, 3, 500]] = [5.0, 4.0, 3.0]
  names = [f'class {i}' for i in range(1001)]
  image = DecodedImage('gs://b/a.jpg', np.zeros((224, 224, 3), np.uint8), 640, 480)
  row = label_row(image, ModelOutput(logits, np.ones(1280, np.float32)),
                  RowSettings(3, 'M', names, LOGITS))
  assert row['label_index'] == 7 and row['label'] == 'class 7'
  assert row['top_k_labels'] == ['class 7', 'class 3', 'class 500']
  assert row['top_k_scores'][0] == row['score'] > row['top_k_scores'][1] > row['top_k_scores'][2]
  assert (row['width'], row['height'], row['model']) == (640, 480, 'M')


def test_probabilities_are_kept_as_the_model_gives_them_never_softmaxed_again():
  probabilities = np.array([0.1, 0.7, 0.2], np.float32)
  image = DecodedImage('a.jpg', np.zeros((4, 4, 3), np.uint8), 4, 4)
  row = label_row(image, ModelOutput(probabilities, None),
                  RowSettings(5, 'M', ('a', 'b', 'c'), PROBABILITIES))
  assert row['top_k_labels'] == ['b', 'c', 'a']
  assert np.allclose(row['top_k_scores'], [0.7, 0.2, 0.1])
  assert 'embedding' not in row  # a classifier without an embedding


def test_below_the_minimum_score_a_row_is_none_of_the_classes_with_its_scores_kept():
  image = DecodedImage('a.jpg', np.zeros((4, 4, 3), np.uint8), 4, 4)
  output = ModelOutput(np.array([0.3, 0.45, 0.25], np.float32), None)
  settings = RowSettings(2, 'M', ('a', 'b', 'c'), PROBABILITIES, min_score=0.5)
  row = label_row(image, output, settings)
  assert row['label'] is None and row['label_index'] is None
  assert row['top_k_labels'] == ['b', 'a'] and np.isclose(row['score'], 0.45)
  kept = label_row(image, output, settings._replace(min_score=0.45))
  assert kept['label'] == 'b' and kept['label_index'] == 1
