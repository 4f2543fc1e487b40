"""label-images train-head: a classifier of the user's own classes on a frozen feature extractor.

  label-images train-head --examples EXAMPLES --output HEAD_DIR [--embeddings OUTPUT_DIR]
                          [--feature_handle H] [--image_size N] [--overwrite]

EXAMPLES is a .csv, .tsv or .parquet file with a `uri` and a `label` column (in any case;
other columns are ignored): one example image a row, its class any UTF-8 text. Relative
paths are taken from the current directory, as --input lists are.

The feature extractor is the model that made OUTPUT_DIR's embeddings, as its identity records
it (checked by content), else --feature_handle (default: the default model's feature-vector
twin). Examples already labelled in OUTPUT_DIR take their stored embedding; the others are
read, decoded and embedded here as a run would (the directory's engine, else LiteRT). Those
that cannot be read or decoded are listed and left out.

The head is multinomial logistic regression on the raw embeddings: L2-regularised, classes
weighted to balance, the regularisation C chosen from a grid by the log loss of stratified
5-fold cross-validation. Its cross-validated precision, recall, confusion and accuracy are
printed and written to HEAD_DIR/evaluation.json, with a suggested --min_score.

HEAD_DIR (transforms/head.py) is a model the main command takes alone (--model_handle
HEAD_DIR): one SavedModel, the feature extractor inside, returning the new classes' logits
and the usual embedding; and what `label-images relabel` applies to stored embeddings.

Exit 2, in one line, for what cannot work: a missing or unreadable examples file, no uri or
label column, an empty label, fewer than MIN_EXAMPLES_PER_CLASS usable examples in a class,
a feature extractor other than the one that made OUTPUT_DIR's embeddings.
"""

import argparse
import concurrent.futures
import csv
import datetime
import io
import json
import math
import os
import shlex
import sys
import tempfile
import warnings
from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.console import add_verbose_flag, plural, shortened, status
from pipeline.identity import model_fingerprint
from pipeline.models import described
from pipeline.options import DEFAULT_FEATURE_HANDLE
from pipeline.output_dir import MANIFEST
from transforms import head as head_files
from transforms.decode import decode_image
from transforms.describe import ModelShapeError, load_saved_model
from transforms.failures import ImageError
from transforms.labels import builtin_labels
from transforms.files import delete_paths, exists, matching_paths, read_bytes, write_bytes
from transforms.engines.choice import AUTO, load_engine
from transforms.model_spec import CLASSIFIER, LOGITS, ONE_MODEL, PAIR, ModelSpec, recorded_spec
from transforms.read import canonical_uri, read_image_bytes

FORMAT = 1
# Every class needs this many usable examples: one per fold of the cross-validation, and
# then some.
FOLDS = 5
MIN_EXAMPLES_PER_CLASS = 5
# The inverse regularisation strengths tried, on raw embeddings (README, "Your own labels").
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
MAX_ITERATIONS = 2000
SEED = 0
# The suggested --min_score keeps this share of the correctly classified examples' labels
# (their cross-validated top score).
KEPT_CORRECT = 0.95
MIN_SCORE_RULE = (
    'the largest multiple of 0.01 at or below the 5th percentile of the cross-validated top '
    'score of the correctly classified examples: about 95% of images like them keep a label')
EXAMPLE_COLUMNS = ('uri', 'label')
_DELIMITERS = {'.csv': ',', '.tsv': '\t'}
READ_THREADS = 8
EMBED_BATCH = 32
LISTED_FAILURES = 5  # unreadable examples named on the screen; all are in head.json


class TrainHeadError(ValueError):
  """What the command cannot work with: exit 2, in one line."""


# The examples --------------------------------------------------------------------------------


class Examples(NamedTuple):
  uris: list  # as the output stores them (read.canonical_uri)
  labels: list
  path: str
  written: list  # the uris as the file writes them (a directory from before paths were
  # made canonical stores them so)


def _example_columns(path, names):
  """{'uri': name, 'label': name} in the file's own case; TrainHeadError naming what it has."""
  found = {}
  for wanted in EXAMPLE_COLUMNS:
    matches = [name for name in names if str(name).strip().lower() == wanted]
    if len(matches) == 1:
      found[wanted] = matches[0]
    elif len(matches) > 1:
      raise TrainHeadError(f'--examples {path} has several {wanted!r} columns: {matches}')
  missing = [wanted for wanted in EXAMPLE_COLUMNS if wanted not in found]
  if missing:
    has = ', '.join(map(str, names)) if names else 'none'
    raise TrainHeadError(
        f'--examples {path} has no {" and no ".join(repr(m) for m in missing)} column; its '
        f'columns are: {has}. It needs a "uri" column (the image) and a "label" column (its '
        'class)')
  return found


def _cell_text(value):
  if value is None:
    return ''
  if isinstance(value, bytes):
    return value.decode('utf-8')
  return str(value)


def _read_table(path):
  """(column names, rows as lists of cell values) of a CSV, TSV or Parquet examples file."""
  try:
    data = read_bytes(path)
  except Exception as e:  # pylint: disable=broad-except
    if not exists(path):
      raise TrainHeadError(f'--examples {path}: no such file') from e
    raise TrainHeadError(f'--examples {path} cannot be read: {type(e).__name__}: {e}') from e
  lower = path.lower()
  if lower.endswith('.parquet') or data[:4] == b'PAR1':
    try:
      table = pq.read_table(io.BytesIO(data), use_threads=False)
    except (pa.ArrowException, ValueError) as e:
      raise TrainHeadError(f'--examples {path} cannot be read as Parquet: {e}') from e
    return table.column_names, table
  delimiter = next((d for suffix, d in _DELIMITERS.items() if lower.endswith(suffix)), ',')
  try:
    rows = list(csv.reader(io.StringIO(data.decode('utf-8-sig'), newline=''),
                           delimiter=delimiter))
  except (UnicodeDecodeError, csv.Error) as e:
    raise TrainHeadError(f'--examples {path} is not a UTF-8 CSV file: {e}') from e
  return (rows[0] if rows else []), rows[1:]


def read_examples(path, base_dir=None):
  """The Examples of a .csv, .tsv or .parquet file with uri and label columns."""
  base_dir = base_dir or os.getcwd()
  names, rows = _read_table(path)
  columns = _example_columns(path, names)
  if isinstance(rows, pa.Table):
    uris = [_cell_text(v) for v in rows.column(columns['uri']).to_pylist()]
    labels = [_cell_text(v) for v in rows.column(columns['label']).to_pylist()]
    first_line = 1  # row numbers, from 1
    where = 'row'
  else:
    uri_at, label_at = names.index(columns['uri']), names.index(columns['label'])
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    uris = [row[uri_at] if uri_at < len(row) else '' for row in rows]
    labels = [row[label_at] if label_at < len(row) else '' for row in rows]
    first_line = 2  # lines of the file, after its header
    where = 'line'
  examples, written = {}, {}
  for number, (uri, label) in enumerate(zip(uris, labels), start=first_line):
    uri, label = uri.strip(), label.strip()
    if not uri:
      raise TrainHeadError(f'--examples {path}, {where} {number}: the uri is empty')
    if not label:
      raise TrainHeadError(f'--examples {path}, {where} {number} ({uri}): the label is empty')
    if len(label.splitlines()) != 1:
      raise TrainHeadError(f'--examples {path}, {where} {number} ({uri}): the label '
                           f'{label!r} breaks the line; class names are one line each')
    stored = canonical_uri(uri, base_dir)
    if examples.get(stored, label) != label:
      raise TrainHeadError(f'--examples {path}, {where} {number}: {uri} is labelled both '
                           f'{examples[stored]!r} and {label!r}')
    examples[stored] = label
    written.setdefault(stored, uri)
  if not examples:
    raise TrainHeadError(f'--examples {path} holds no examples')
  return Examples(list(examples), list(examples.values()), path, list(written.values()))


def class_counts(labels):
  counts = {}
  for label in labels:
    counts[label] = counts.get(label, 0) + 1
  return dict(sorted(counts.items()))


def require_enough(labels, left_out=None):
  """TrainHeadError naming the classes with fewer than MIN_EXAMPLES_PER_CLASS examples, or
  where there are fewer than two classes."""
  counts = class_counts(labels)
  few = {label: count for label, count in counts.items() if count < MIN_EXAMPLES_PER_CLASS}
  lost = class_counts(left_out or [])
  if few:
    named = ', '.join(
        f'{label!r} has {count}' + (f' ({lost[label]} more could not be read)'
                                    if lost.get(label) else '')
        for label, count in few.items())
    raise TrainHeadError(
        f'too few examples: {named}; train-head needs at least {MIN_EXAMPLES_PER_CLASS} '
        f'usable examples of each class ({FOLDS}-fold cross-validation). Add examples, or '
        'leave the class out')
  if len(counts) < 2:
    only = next(iter(counts), None)
    raise TrainHeadError(f'the examples name one class only ({only!r}): a classifier needs '
                         'at least two')
  return counts


# The feature extractor -----------------------------------------------------------------------


class Extractor(NamedTuple):
  """The model whose embeddings the head is trained on, and how to run it."""
  model_handle: Optional[str]  # as recorded (a pair's classifier, or the one model)
  feature_handle: Optional[str]  # a pair's feature-vector twin
  spec: object  # ModelSpec recorded in head.json: the source directory's, or (from
  # --feature_handle) the extractor's own description; a feature-vector module alone reads
  # as form 'pair' with 0 classes (the embedding a pair's twin gives)
  files: str  # the content hash, as a directory identity records it
  saved_model: str  # the handle of the SavedModel that gives the embedding
  embedding_output: Optional[str]  # its output name; None: its only output
  engine: str  # for examples not in the directory
  image_size: tuple
  width: int
  engine_spec: object = None  # what load_engine runs, where it is not `spec`
  # The directory's; fp32 for a model alone: a head trained on embeddings of one precision.
  precision: str = 'fp32'

  def embed_model(self):
    """An engine's model of uint8 pixels -> (scores, embeddings), and which of the two is
    the embedding."""
    if self.engine_spec is not None:  # a feature-vector module alone: its one output
      return load_engine(self.engine_spec, self.saved_model, None, self.engine,
                         self.precision), 0
    return load_engine(self.spec, self.model_handle, self.feature_handle, self.engine,
                       self.precision), 1

  def describe(self):
    handle = self.feature_handle or self.model_handle
    height, width = self.image_size
    return f'{handle} ({height}x{width} pixels, {self.width:,}-wide embedding)'


def _fingerprint_like(handle, recorded):
  """The handle's content hash now, of the kind `recorded` is."""
  return model_fingerprint(handle, local=str(recorded).startswith('sha256:'))


def _short(files):
  return f'{files[:19]}…' if files and len(files) > 20 else str(files)


def extractor_of_directory(output_dir, feature_flag):
  """The Extractor that made OUTPUT_DIR's embeddings, checked to be the same model now."""
  manifest = results.read_manifest(output_dir)
  identity = (manifest or {}).get('identity')
  if not identity:
    raise TrainHeadError(
        f'--embeddings {output_dir} has no {MANIFEST} naming the model that made its '
        'embeddings: label images into it first, or train from --feature_handle alone')
  spec = recorded_spec(identity)
  if spec.form == CLASSIFIER or not spec.embedding_width:
    raise TrainHeadError(
        f'--embeddings {output_dir}: its model ({identity.get("model_handle")}) gives class '
        'scores only, no embedding to train a head on; label with a model that has one (a '
        'feature-vector twin, --feature_handle)')
  relabelled = 'relabelled_from' in identity
  if spec.form == PAIR and not relabelled:
    handle, output, key = identity.get('feature_handle'), None, 'feature_files'
  else:  # one model's own embedding output (a head's, for a relabelled directory)
    handle, output, key = identity.get('model_handle'), spec.embedding_output, 'model_files'
  if not handle:
    raise TrainHeadError(f'--embeddings {output_dir}: its {MANIFEST} names no model handle')
  recorded_files = identity.get(key)
  files = identity.get('feature_files') if relabelled else recorded_files
  if feature_flag and feature_flag != handle:
    flag_files = _fingerprint_like(feature_flag, recorded_files)
    if flag_files != recorded_files:
      raise TrainHeadError(
          f'--feature_handle {feature_flag} is not the feature extractor that made the '
          f'embeddings of {output_dir} ({handle}, {_short(recorded_files)}; this one is '
          f'{_short(flag_files)}): leave --feature_handle out to train on that one, or '
          'leave --embeddings out to train on this one')
  current = _fingerprint_like(handle, recorded_files)
  if recorded_files and current != recorded_files:
    raise TrainHeadError(
        f'the model at {handle} is not the one that made the embeddings of {output_dir}: its '
        f'files have changed ({_short(recorded_files)} then, {_short(current)} now); a head '
        'on those embeddings would not fit the model it ships with. Relabel the directory '
        'with the model as it is now, or restore that model')
  return Extractor(identity.get('model_handle'), identity.get('feature_handle'), spec,
                   files or current, handle, output, identity.get('engine') or AUTO,
                   tuple(spec.image_size), spec.embedding_width,
                   precision=identity.get('precision') or 'fp32')


def extractor_of_handle(handle, image_size=None):
  """The Extractor of a feature-vector module (its one output is the embedding) or of one
  SavedModel with an embedding output."""
  requested = (image_size, image_size) if image_size else None
  try:
    spec = described(handle, None, requested, None)
  except ModelShapeError as e:
    reason = str(e).removeprefix(f'--model_handle {handle}: ')
    raise TrainHeadError(f'--feature_handle {handle}: {reason}') from e
  except OSError as e:  # no model there
    raise TrainHeadError(f'--feature_handle {handle}: {e}') from e
  files = model_fingerprint(handle, local=True)
  if spec.form == ONE_MODEL:
    return Extractor(handle, None, spec, files, handle, spec.embedding_output,
                     AUTO, tuple(spec.image_size), spec.embedding_width)
  # One output, the embedding: described as a classifier's scores, of `classes` values, and
  # run as such.
  if builtin_labels(spec.classes) is not None:
    status(f'warning: the one output of --feature_handle {handle} is {spec.classes:,} wide, '
           "as ImageNet's class scores are: is it a classifier rather than its "
           'feature-vector twin?')
  recorded = ModelSpec(tuple(spec.image_size), 0, LOGITS, spec.classes, PAIR)
  return Extractor(None, handle, recorded, files, handle, None, AUTO,
                   tuple(spec.image_size), spec.classes, engine_spec=spec)


# The embeddings ------------------------------------------------------------------------------


def stored_embeddings(output_dir, uris, written=()):
  """{index into uris: embedding} of the examples OUTPUT_DIR has a row of, by the URI as
  it stores it (or, from before paths were made canonical, as `written`)."""
  wanted = {uri: i for i, uri in enumerate(written)}
  wanted.update((uri, i) for i, uri in enumerate(uris))
  value_set = pa.array(list(wanted), pa.string())
  try:
    paths = results.label_parts(output_dir)
  except results.NoResultsError:
    return {}
  found = {}
  for path in paths:
    matches = []  # (row in the part, example index)
    offset = 0
    for batch in results.read_batches([path], ['uri']):
      column = batch.column(0)
      hits = pc.indices_nonzero(pc.is_in(column, value_set=value_set)).to_pylist()
      matches += [(offset + row, wanted[column[row].as_py()]) for row in hits]
      offset += batch.num_rows
    matches = [(row, index) for row, index in matches if index not in found]
    if not matches:
      continue
    rows = dict(matches)
    offset = 0
    for batch in results.read_batches([path], ['embedding']):
      take = [row for row in rows if offset <= row < offset + batch.num_rows]
      if take:
        values = batch.column(0).take(pa.array([row - offset for row in take]))
        vectors = values.flatten().to_numpy(zero_copy_only=False).reshape(len(take), -1)
        for row, vector in zip(take, vectors):
          found.setdefault(rows[row], vector.astype(np.float32))
      offset += batch.num_rows
  return found


def _pixels(uri, size):
  try:
    return decode_image(read_image_bytes(uri), size)[0], None
  except ImageError as e:
    return None, f'{e.error}: {e.message}'


def computed_embeddings(extractor, uris, progress=status):
  """({index into uris: embedding}, [(uri, why)] of those that could not be read or
  decoded), each read, decoded and embedded as a run of the extractor does."""
  found, failed = {}, []
  if not uris:
    return found, failed
  progress(f'embedding {plural(len(uris), "example")} with {extractor.describe()} on '
           f'{extractor.engine} ({extractor.precision})')
  model, which = extractor.embed_model()
  with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
    for start in range(0, len(uris), EMBED_BATCH):
      chunk = list(range(start, min(start + EMBED_BATCH, len(uris))))
      decoded = list(pool.map(lambda i: _pixels(uris[i], extractor.image_size), chunk))
      good = [(i, pixels) for i, (pixels, _) in zip(chunk, decoded) if pixels is not None]
      failed += [(uris[i], why) for i, (_, why) in zip(chunk, decoded) if why]
      if good:
        vectors = model.predict(np.stack([pixels for _, pixels in good]))[which]
        found.update((i, vector.astype(np.float32)) for (i, _), vector in zip(good, vectors))
      progress(f'embedded {start + len(chunk):,} of {len(uris):,}', transient=True)
  return found, failed


class Embeddings(NamedTuple):
  vectors: np.ndarray  # float32 [n, width]
  labels: list  # of the n
  uris: list
  from_directory: int
  computed: int
  left_out: list  # [(uri, label, why)]


def gather_embeddings(examples, extractor, output_dir=None, progress=status):
  """The examples' embeddings: stored in OUTPUT_DIR where it has them, else computed."""
  found = (stored_embeddings(output_dir, examples.uris, examples.written) if output_dir
           else {})
  from_directory = len(found)
  missing = [i for i in range(len(examples.uris)) if i not in found]
  computed, failed = computed_embeddings(extractor, [examples.uris[i] for i in missing],
                                         progress)
  found.update((missing[j], vector) for j, vector in computed.items())
  why_failed = dict(failed)
  left_out = [(examples.uris[i], examples.labels[i], why_failed.get(examples.uris[i]))
              for i in missing if i not in found or not np.all(np.isfinite(found[i]))]
  left_out = [(uri, label, why or 'its embedding holds NaN or inf')
              for uri, label, why in left_out]
  kept = [i for i in range(len(examples.uris))
          if i in found and np.all(np.isfinite(found[i]))]
  widths = {len(found[i]) for i in kept}
  if len(widths) > 1 or (widths and widths != {extractor.width}):
    raise TrainHeadError(
        f'the embeddings are {", ".join(map(str, sorted(widths)))} wide; the feature '
        f'extractor gives {extractor.width:,}: --embeddings {output_dir} holds rows of '
        'another model')
  vectors = (np.stack([found[i] for i in kept]) if kept
             else np.zeros((0, extractor.width), np.float32))
  return Embeddings(vectors, [examples.labels[i] for i in kept],
                    [examples.uris[i] for i in kept], from_directory,
                    len([i for i in computed if np.all(np.isfinite(computed[i]))]), left_out)


# The classifier ------------------------------------------------------------------------------


class TrainedHead(NamedTuple):
  classes: list
  kernel: np.ndarray  # float32 [width, classes]
  bias: np.ndarray  # float32 [classes]
  c: float
  grid_log_loss: dict  # {C: cross-validated log loss}
  probabilities: np.ndarray  # cross-validated, [n, classes], with the chosen C
  targets: np.ndarray  # class index of each example


def _classifier(c):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  # L2 is the default penalty; lbfgs optimises the multinomial loss for 3 classes or more.
  return LogisticRegression(C=c, class_weight='balanced', solver='lbfgs',
                            max_iter=MAX_ITERATIONS)


def _balanced_weights(targets, classes):
  counts = np.bincount(targets, minlength=classes)
  return (len(targets) / (classes * counts))[targets]


def _cross_validated(c, vectors, targets, folds):
  from sklearn.model_selection import cross_val_predict  # pylint: disable=import-outside-toplevel
  return cross_val_predict(_classifier(c), vectors, targets, cv=folds, method='predict_proba')


def _head_of(model, classes):
  """(kernel [width, classes], bias [classes]) whose softmax is the model's predict_proba:
  a binary model's one logit is split evenly between its two classes."""
  coef = np.asarray(model.coef_, np.float64)
  intercept = np.asarray(model.intercept_, np.float64)
  if classes == 2 and coef.shape[0] == 1:
    coef = np.concatenate([-coef / 2, coef / 2])
    intercept = np.concatenate([-intercept / 2, intercept / 2])
  return coef.T.astype(np.float32), intercept.astype(np.float32)


def train(vectors, labels, grid=C_GRID, progress=status):
  """The TrainedHead of labels on vectors: C chosen by the class-balanced log loss of
  stratified FOLDS-fold cross-validation."""
  # pylint: disable=import-outside-toplevel
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.metrics import log_loss
  from sklearn.model_selection import StratifiedKFold
  from threadpoolctl import threadpool_limits
  classes = sorted(set(labels))
  targets = np.array([classes.index(label) for label in labels])
  x = np.asarray(vectors, np.float64)
  folds = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
  weights = _balanced_weights(targets, len(classes))
  losses, predictions = {}, {}
  # One BLAS thread: these problems are small, and threads contending for busy cores made
  # each fit ten times slower (README, "Your own labels").
  with threadpool_limits(limits=1, user_api='blas'), warnings.catch_warnings():
    warnings.simplefilter('ignore', ConvergenceWarning)
    for c in grid:
      progress(f'cross-validating C = {c:g}', transient=True)
      predictions[c] = _cross_validated(c, x, targets, folds)
      losses[c] = float(log_loss(targets, predictions[c], sample_weight=weights,
                                 labels=range(len(classes))))
    best = min(grid, key=lambda c: (losses[c], -c))
    model = _classifier(best).fit(x, targets)
  kernel, bias = _head_of(model, len(classes))
  return TrainedHead(classes, kernel, bias, best, losses, predictions[best], targets)


def suggested_min_score(probabilities, targets):
  """MIN_SCORE_RULE; None where no example was classified correctly."""
  top = probabilities.max(axis=1)
  correct = top[probabilities.argmax(axis=1) == targets]
  if not len(correct):
    return None
  # Rounding first: 0.62 is not 0.61 for being 61.99999... hundredths in binary.
  return math.floor(round(float(np.percentile(correct, 100 * (1 - KEPT_CORRECT))) * 100, 6)) / 100


def evaluation(trained):
  """evaluation.json: cross-validated per-class precision, recall, support, the confusion
  table and the accuracy, with the chosen C."""
  # pylint: disable=import-outside-toplevel
  from sklearn.metrics import (balanced_accuracy_score, confusion_matrix,
                               precision_recall_fscore_support)
  targets, probabilities = trained.targets, trained.probabilities
  predicted = probabilities.argmax(axis=1)
  indices = list(range(len(trained.classes)))
  precision, recall, f1, support = precision_recall_fscore_support(
      targets, predicted, labels=indices, zero_division=0)
  min_score = suggested_min_score(probabilities, targets)
  top = probabilities.max(axis=1)
  correct = predicted == targets
  below = top < min_score if min_score is not None else np.zeros(len(top), bool)
  return {
      'format': FORMAT,
      'method': f'stratified {FOLDS}-fold cross-validation (shuffled, seed {SEED}) with the '
                'chosen C: each example classified by a head trained without it',
      'examples': int(len(targets)),
      'classes': list(trained.classes),
      'per_class': [{'class': name, 'precision': round(float(p), 4),
                     'recall': round(float(r), 4), 'f1': round(float(f), 4),
                     'support': int(s)}
                    for name, p, r, f, s in zip(trained.classes, precision, recall, f1,
                                                support)],
      'confusion': {'rows': 'true class', 'columns': 'predicted class',
                    'classes': list(trained.classes),
                    'counts': confusion_matrix(targets, predicted, labels=indices).tolist()},
      'accuracy': round(float(np.mean(correct)), 4),
      'balanced_accuracy': round(float(balanced_accuracy_score(targets, predicted)), 4),
      'correct': int(np.sum(correct)),
      'regularisation': regularisation(trained),
      'suggested_min_score': min_score,
      'min_score_rule': MIN_SCORE_RULE,
      'below_suggested_min_score': {
          'correct': int(np.sum(below & correct)), 'wrong': int(np.sum(below & ~correct))},
  }


def regularisation(trained):
  return {
      'model': 'multinomial logistic regression on the raw embeddings, L2 penalty, classes '
               'weighted to balance (scikit-learn LogisticRegression, lbfgs)',
      'C': trained.c,
      'grid': {f'{c:g}': round(loss, 5) for c, loss in trained.grid_log_loss.items()},
      'chosen_by': f'the smallest class-balanced log loss of stratified {FOLDS}-fold '
                   'cross-validation',
  }


# HEAD_DIR ------------------------------------------------------------------------------------


def _existing_files(head_dir):
  try:
    return matching_paths(FileSystems.join(head_dir, '**'))
  except Exception:  # pylint: disable=broad-except
    return []


def check_head_dir(head_dir, overwrite):
  """The files HEAD_DIR holds, for --overwrite to replace; TrainHeadError where it holds
  files and there is no --overwrite, or they are not a head's."""
  existing = _existing_files(head_dir)
  if not existing:
    return []
  if not overwrite:
    raise TrainHeadError(
        f'--output {head_dir} already holds files: pass a new or empty directory, or '
        '--overwrite to replace the head it holds')
  if not exists(FileSystems.join(head_dir, head_files.RECORD_FILE)):
    raise TrainHeadError(
        f'--output {head_dir} holds files but no {head_files.RECORD_FILE}: --overwrite only '
        'replaces a head train-head wrote; pass a new or empty directory')
  return existing


def _copy_tree(local_dir, dest):
  from pipeline.stage_model import copy_tree  # pylint: disable=import-outside-toplevel
  return copy_tree(local_dir, dest)


def write_head_dir(head_dir, extractor, trained, record, evaluated):
  """HEAD_DIR's files, the SavedModel first and head.json last."""
  with tempfile.TemporaryDirectory(prefix='train-head-') as local:
    saved_model = os.path.join(local, 'saved_model')
    head_files.save_head_model(saved_model, load_saved_model(extractor.saved_model),
                               extractor.embedding_output, extractor.image_size,
                               trained.kernel, trained.bias)
    _copy_tree(saved_model, head_dir)
  write_bytes(FileSystems.join(head_dir, head_files.LABELS_FILE),
              head_files.labels_bytes(trained.classes))
  write_bytes(FileSystems.join(head_dir, head_files.WEIGHTS_FILE),
              head_files.weights_bytes(trained.kernel, trained.bias))
  write_bytes(FileSystems.join(head_dir, head_files.EVALUATION_FILE),
              json.dumps(evaluated, indent=2, ensure_ascii=False).encode('utf-8'))
  write_bytes(FileSystems.join(head_dir, head_files.RECORD_FILE),
              json.dumps(record, indent=2, ensure_ascii=False).encode('utf-8'))


def head_record(args, extractor, trained, evaluated, embeddings):
  """head.json."""
  return {
      'format': FORMAT,
      'classes': list(trained.classes),
      'embedding_width': int(trained.kernel.shape[0]),
      'logits': 'embedding @ kernel + bias (head.npz), on the raw embedding; the scores are '
                'their softmax',
      'feature_extractor': {
          'model_handle': extractor.model_handle,
          'feature_handle': extractor.feature_handle,
          'spec': extractor.spec.to_dict(),
          'files': extractor.files,
          'saved_model': extractor.saved_model,
          'embedding_output': extractor.embedding_output,
          'engine': extractor.engine,
          'precision': extractor.precision,
      },
      'suggested_min_score': evaluated['suggested_min_score'],
      'min_score_rule': MIN_SCORE_RULE,
      'regularisation': evaluated['regularisation'],
      'accuracy': evaluated['accuracy'],
      'examples': canonical_uri(args.examples, os.getcwd()),
      'embeddings': args.embeddings,
      'example_counts': {
          'used': len(embeddings.labels), 'from_directory': embeddings.from_directory,
          'computed': embeddings.computed, 'left_out': len(embeddings.left_out),
          'per_class': class_counts(embeddings.labels)},
      'left_out': [{'uri': uri, 'label': label, 'why': why}
                   for uri, label, why in embeddings.left_out],
      'created_at': datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }


# What is printed -----------------------------------------------------------------------------


def _table(header, rows):
  widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
  lines = []
  for row in [header, *rows]:
    cells = [str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
             for i, (cell, width) in enumerate(zip(row, widths))]
    lines.append('  ' + '  '.join(cells).rstrip())
  return lines


def report_lines(args, extractor, embeddings, evaluated):
  """What train-head prints: the figures, the suggested --min_score, the next commands."""
  names = [shortened(name, 30) for name in evaluated['classes']]
  sources = f'{embeddings.computed:,} embedded here'
  if args.embeddings:
    sources = f'{embeddings.from_directory:,} embeddings from {args.embeddings}, {sources}'
  lines = [f'feature extractor: {extractor.describe()}',
           f'examples: {plural(len(embeddings.labels), "image")} of '
           f'{plural(len(names), "class", "classes")} ({sources})']
  if embeddings.left_out:
    lines.append(f'left out, unreadable: {plural(len(embeddings.left_out), "example")}')
    lines += [f'  {uri} ({label}): {why}'
              for uri, label, why in embeddings.left_out[:LISTED_FAILURES]]
    if len(embeddings.left_out) > LISTED_FAILURES:
      lines.append(f'  ... and {len(embeddings.left_out) - LISTED_FAILURES:,} more '
                   f'(head.json lists them all)')
  regular = evaluated['regularisation']
  lines += ['', f'{FOLDS}-fold cross-validation, C = {regular["C"]:g} (of '
            f'{", ".join(regular["grid"])}, by log loss):']
  lines += _table(['class', 'precision', 'recall', 'support'],
                  [[name, f'{row["precision"]:.2f}', f'{row["recall"]:.2f}', row['support']]
                   for name, row in zip(names, evaluated['per_class'])])
  lines.append(f'  accuracy {evaluated["accuracy"]:.2%} ({evaluated["correct"]:,} of '
               f'{evaluated["examples"]:,}), balanced {evaluated["balanced_accuracy"]:.2%}')
  lines += ['', 'confusion (rows: true class; columns: predicted, in the same order):']
  counts = evaluated['confusion']['counts']
  lines += _table(['', *[str(i + 1) for i in range(len(names))]],
                  [[f'{i + 1} {name}', *row] for i, (name, row) in enumerate(zip(names, counts))])
  min_score = evaluated['suggested_min_score']
  below = evaluated['below_suggested_min_score']
  wrong = evaluated['examples'] - evaluated['correct']
  if min_score is None:
    lines += ['', 'no --min_score to suggest: no example was classified correctly']
  else:
    caught = (f'{below["wrong"]:,} of the {wrong:,} misclassified' if wrong
              else 'no misclassified example')
    lines += ['', f'suggested --min_score {min_score:.2f}: 95% of the correctly classified '
              f'examples scored at least that in cross-validation; below it: {caught}, '
              f'{below["correct"]:,} of the {evaluated["correct"]:,} correct']
  head_dir = shlex.quote(args.output)
  flag = f' --min_score {min_score:.2f}' if min_score is not None else ''
  source = shlex.quote(args.embeddings) if args.embeddings else 'OUTPUT_DIR'
  lines += ['', f'wrote {args.output}: the SavedModel (feature extractor inside), '
            f'{head_files.LABELS_FILE}, {head_files.WEIGHTS_FILE}, {head_files.RECORD_FILE}, '
            f'{head_files.EVALUATION_FILE}',
            'next:',
            f'  label-images relabel {source} --model_handle {head_dir} --output NEW_DIR{flag}',
            f'  label-images --input IMAGES --output NEW_DIR --model_handle {head_dir}{flag}']
  return lines


# The command ---------------------------------------------------------------------------------


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='label-images train-head',
      description='Trains a classifier of your own classes on the embeddings of a feature '
      'extractor, cross-validates it, and writes HEAD_DIR: a model label-images takes '
      '(--model_handle HEAD_DIR) and relabel applies.')
  parser.add_argument('--examples', required=True,
                      help='a .csv, .tsv or .parquet file with a "uri" column (the image: a '
                      'path, relative to the current directory, or a URI) and a "label" '
                      'column (its class, any text)')
  parser.add_argument('--output', required=True, metavar='HEAD_DIR',
                      help='the directory to write the head to (local, gs://, s3://, ...)')
  parser.add_argument('--embeddings', metavar='OUTPUT_DIR',
                      help='a directory label-images wrote: its embeddings of the examples are '
                      'used, and its model is the feature extractor')
  parser.add_argument('--feature_handle',
                      help='the feature extractor, without --embeddings: a feature-vector '
                      'SavedModel (its one output), or one SavedModel with an embedding '
                      f'output. Default: {DEFAULT_FEATURE_HANDLE}')
  parser.add_argument('--image_size', type=int,
                      help='for a feature extractor that takes images of any size: the size '
                      'to run it at, as label-images --image_size')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the head HEAD_DIR holds')
  add_verbose_flag(parser)
  return parser, results.parse_with_filesystem_options(parser, argv)


def train_head(args, progress=status):
  """Does the work of the command; returns the lines to print. TrainHeadError for what
  cannot work."""
  examples = read_examples(args.examples)
  require_enough(examples.labels)
  check_head_dir(args.output, args.overwrite)  # before any work
  try:
    if args.embeddings:
      extractor = extractor_of_directory(args.embeddings, args.feature_handle)
    else:
      extractor = extractor_of_handle(args.feature_handle or DEFAULT_FEATURE_HANDLE,
                                      args.image_size)
    embeddings = gather_embeddings(examples, extractor, args.embeddings, progress)
  except (results.UnreadablePartError, results.MixedOriginError) as e:
    raise TrainHeadError(f'--embeddings {args.embeddings}: {e}') from e
  except OSError as e:  # a model handle that names no model
    raise TrainHeadError(str(e)) from e
  require_enough(embeddings.labels, [label for _, label, _ in embeddings.left_out])
  progress(f'training on {plural(len(embeddings.labels), "example")}: {FOLDS}-fold '
           f'cross-validation over {len(C_GRID)} values of C')
  trained = train(embeddings.vectors, embeddings.labels, progress=progress)
  evaluated = evaluation(trained)
  record = head_record(args, extractor, trained, evaluated, embeddings)
  delete_paths(check_head_dir(args.output, args.overwrite))
  progress(f'writing {args.output}')
  write_head_dir(args.output, extractor, trained, record, evaluated)
  return report_lines(args, extractor, embeddings, evaluated)


def main(argv):
  _, args = parse_args(argv)
  try:
    lines = train_head(args)
  except TrainHeadError as e:
    print(f'label-images train-head: {e}', file=sys.stderr)
    return 2
  print('\n'.join(lines))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
