"""Label names ship with the package and match the model's order."""

import pytest

from conftest import LABELS_FILE
from transforms.labels import imagenet_label_names


def test_label_names_match_the_reference_file(shared_fixtures):
  with open(LABELS_FILE, encoding='utf-8') as f:
    reference = [line.rstrip('\n') for line in f]
  assert list(imagenet_label_names()) == reference


def test_background_first_then_1000_classes():
  names = imagenet_label_names()
  assert len(names) == 1001 and names[0] == 'background'
  assert names[935] == 'hotdog, hot dog, red hot'
  assert len(set(names)) == pytest.approx(1001, abs=2)  # 'crane' and 'maillot' repeat in WordNet
