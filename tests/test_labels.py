"""Label names: built in for ImageNet, else from a file or the model's own labels.txt."""

import pytest

from conftest import LABELS_FILE
from transforms.labels import (LabelsError, builtin_labels, given_labels, imagenet_label_names,
                               read_labels)


def test_label_names_match_the_reference_file(shared_fixtures):
  with open(LABELS_FILE, encoding='utf-8') as f:
    reference = [line.rstrip('\n') for line in f]
  assert list(imagenet_label_names()) == reference


def test_background_first_then_1000_classes():
  names = imagenet_label_names()
  assert len(names) == 1001 and names[0] == 'background'
  assert names[935] == 'hotdog, hot dog, red hot'
  assert len(set(names)) == pytest.approx(1001, abs=2)  # 'crane' and 'maillot' repeat in WordNet


def test_builtin_names_follow_the_class_count():
  assert builtin_labels(1001).names[0] == 'background'
  assert builtin_labels(1000).names == imagenet_label_names()[1:]
  assert builtin_labels(5) is None


def test_a_tf_hub_label_map_csv_is_read_by_its_index_column(tmp_path):
  path = tmp_path / 'map.csv'
  path.write_text('id,name\n1,"Parus major, great tit"\n0,background\n2,robin\n')
  assert read_labels(str(path)).names == ('background', 'Parus major, great tit', 'robin')
  tsv = tmp_path / 'map.tsv'
  tsv.write_text('name\tid\nzero\t0\none\t1\n')
  assert read_labels(str(tsv)).names == ('zero', 'one')


@pytest.mark.parametrize('text, message', [
    ('id,name\n0,a\n2,c\n', 'missing: 1'),
    ('id,name\n0,a\n0,b\n', 'index 0 appears twice'),
    ('a,b\n0,x\n', 'must name an index column'),
    ('id,name\nx,a\n', 'line 2'),
])
def test_a_broken_label_map_is_refused_saying_where(tmp_path, text, message):
  path = tmp_path / 'map.csv'
  path.write_text(text)
  with pytest.raises(LabelsError, match=message):
    read_labels(str(path))


def test_one_name_per_line_and_the_models_own_labels_txt(tmp_path):
  (tmp_path / 'assets').mkdir()
  (tmp_path / 'assets' / 'labels.txt').write_text('cat\ndog\n\n')
  shipped = given_labels(None, str(tmp_path))
  assert shipped.names == ('cat', 'dog') and shipped.source.endswith('labels.txt')
  flag = tmp_path / 'mine.txt'
  flag.write_text('a\nb\nc\n')
  assert given_labels(str(flag), str(tmp_path)).names == ('a', 'b', 'c')
  assert given_labels(None, str(tmp_path / 'assets' / '..' / 'nothing')) is None
