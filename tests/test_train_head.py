"""label-images train-head: a head of the user's classes trained on the fixture pair's
embeddings of augmented copies of the shared photos, from --feature_handle alone and from a
directory the main command labelled; HEAD_DIR read back as a model the product runs (its
logits those of head.npz on its own embedding); what cannot work is exit 2 in one line."""

import contextlib
import csv
import io
import json
import os
import types

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import PHOTOS_DIR
from pipeline import run

# Three classes, one named with spaces and beyond ASCII.
SUNFLOWER = 'fleur jaune 🌻'
CLASS_PHOTOS = {'bird': ('bird.bmp', 'parrot.jpg'), 'cat': ('cat.bmp', 'cat_720p.jpg'),
                SUNFLOWER: ('sunflower.bmp',)}
PER_CLASS = 6
# Embeddings of one engine against another (relative to their largest element) and logits.
TOLERANCE = 1e-4


def train_head_main(*args):
  from pipeline.train_head import main  # pylint: disable=import-outside-toplevel
  return main([str(arg) for arg in args])


def augmented(image, i):
  """The i-th copy of a photo: cropped somewhere else, scaled, every other one mirrored."""
  width, height = image.size
  fraction = 0.6 + 0.1 * (i % 4)
  crop_width, crop_height = int(width * fraction), int(height * fraction)
  left = (width - crop_width) * (i * 37 % 11) // 10
  top = (height - crop_height) * (i * 53 % 7) // 6
  copy = image.crop((left, top, left + crop_width, top + crop_height))
  copy = ImageOps.mirror(copy) if i % 2 else copy
  scale = (2 + i % 3) / 4
  return copy.resize((max(64, int(crop_width * scale)), max(64, int(crop_height * scale))))


def write_examples(path, rows, columns=('uri', 'label')):
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    writer.writerows(rows)
  return path


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
  """[(path, label)]: PER_CLASS augmented copies of each class's photos, as JPEGs."""
  directory = tmp_path_factory.mktemp('examples')
  rows = []
  for label, names in CLASS_PHOTOS.items():
    photos = [Image.open(os.path.join(PHOTOS_DIR, name)).convert('RGB') for name in names]
    for i in range(PER_CLASS):
      path = directory / f'{len(rows):02d}.jpg'
      augmented(photos[i % len(photos)], i).save(path, quality=90)
      rows.append((str(path), label))
  return rows


@pytest.fixture(scope='module')
def from_handle(model_dir, examples, tmp_path_factory):
  """HEAD_DIR trained from --feature_handle, with an unreadable and a missing example more;
  (head_dir, exit status, stdout)."""
  directory = tmp_path_factory.mktemp('from_handle')
  broken = directory / 'broken.jpg'
  broken.write_bytes(b'not an image')
  csv_path = write_examples(directory / 'examples.csv', [
      *examples, (broken, 'cat'), (directory / 'missing.jpg', 'bird')])
  head_dir = directory / 'head'
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    status = train_head_main('--examples', csv_path, '--output', head_dir,
                             '--feature_handle', model_dir / 'feature_vector')
  return head_dir, status, out.getvalue()


@pytest.fixture(scope='module')
def labelled(model_dir, examples, tmp_path_factory):
  """OUTPUT_DIR: all the examples but the last of each class, labelled by the main command
  (the one run of it here)."""
  directory = tmp_path_factory.mktemp('labelled')
  kept = [row for i, row in enumerate(examples) if i % PER_CLASS != PER_CLASS - 1]
  listing = write_examples(directory / 'input.csv', kept)
  output = directory / 'out'
  # In this process, where TensorFlow and Beam are loaded already: as a user runs it.
  status = run.main([str(arg) for arg in ('--input', listing, '--output', output, '--model_handle',
                                          model_dir / 'classification', '--feature_handle',
                                          model_dir / 'feature_vector')])
  assert status == 0
  return output


@pytest.fixture(scope='module')
def from_directory(labelled, examples, tmp_path_factory):
  """HEAD_DIR trained from --embeddings OUTPUT_DIR; (head_dir, exit status, stdout, csv)."""
  directory = tmp_path_factory.mktemp('from_directory')
  csv_path = write_examples(directory / 'examples.csv', examples)
  head_dir = directory / 'head'
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    status = train_head_main('--examples', csv_path, '--output', head_dir,
                             '--embeddings', labelled)
  return head_dir, status, out.getvalue(), csv_path


def read_json(path):
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def test_a_head_from_the_feature_handle_is_evaluated_and_written(from_handle, model_dir):
  from pipeline.identity import model_fingerprint  # pylint: disable=import-outside-toplevel
  head_dir, status, out = from_handle
  assert status == 0, out
  assert {'saved_model.pb', 'variables', 'labels.txt', 'head.npz', 'head.json',
          'evaluation.json'} <= set(os.listdir(head_dir))
  classes = sorted(CLASS_PHOTOS)
  assert (head_dir / 'labels.txt').read_text(encoding='utf-8').splitlines() == classes

  evaluation = read_json(head_dir / 'evaluation.json')
  assert evaluation['classes'] == classes
  assert [row['class'] for row in evaluation['per_class']] == classes
  assert [row['support'] for row in evaluation['per_class']] == [PER_CLASS] * 3
  counts = np.array(evaluation['confusion']['counts'])
  assert counts.shape == (3, 3) and counts.sum() == 3 * PER_CLASS
  assert evaluation['accuracy'] == pytest.approx(np.trace(counts) / counts.sum(), abs=1e-4)
  for i, row in enumerate(evaluation['per_class']):
    assert row['recall'] == pytest.approx(counts[i, i] / counts[i].sum(), abs=1e-4)
    if counts[:, i].sum():
      assert row['precision'] == pytest.approx(counts[i, i] / counts[:, i].sum(), abs=1e-4)
  # Copies of the same few photos: the classes are told apart.
  assert evaluation['accuracy'] >= 0.9
  assert evaluation['regularisation']['C'] in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)

  record = read_json(head_dir / 'head.json')
  assert record['format'] == 1 and record['classes'] == classes
  assert record['embedding_width'] == 1280
  extractor = record['feature_extractor']
  assert extractor['feature_handle'] == str(model_dir / 'feature_vector')
  assert extractor['files'] == model_fingerprint(str(model_dir / 'feature_vector'), local=True)
  assert extractor['spec']['image_size'] == [224, 224]
  assert extractor['spec']['embedding_width'] == 1280
  assert 0 < record['suggested_min_score'] <= 1
  assert record['suggested_min_score'] == evaluation['suggested_min_score']
  assert record['example_counts']['used'] == 3 * PER_CLASS
  assert record['example_counts']['computed'] == 3 * PER_CLASS
  assert sorted(os.path.basename(row['uri']) for row in record['left_out']) == [
      'broken.jpg', 'missing.jpg']

  assert 'left out, unreadable: 2 examples' in out
  assert f'{SUNFLOWER}' in out and 'precision' in out and 'recall' in out
  assert f"suggested --min_score {record['suggested_min_score']:.2f}" in out
  assert f'label-images relabel OUTPUT_DIR --model_handle {head_dir}' in out
  assert f'label-images --input IMAGES --output NEW_DIR --model_handle {head_dir}' in out


def test_head_dir_is_one_model_whose_logits_are_head_npz_on_its_embedding(
    from_handle, model_dir, examples):
  # pylint: disable=import-outside-toplevel
  from pipeline.models import choose_model
  from transforms.decode import decode_image
  from transforms.describe import load_saved_model
  from transforms.head import head_logits, load_head
  from transforms.engines.choice import load_engine
  head_dir = str(from_handle[0])
  model = choose_model(types.SimpleNamespace(model_handle=head_dir, feature_handle=None,
                                             labels=None, image_size=None))
  spec = model.spec
  assert (spec.form, spec.scores, spec.classes, spec.embedding_width) == (
      'one_model', 'logits', 3, 1280)
  assert (spec.class_output, spec.embedding_output) == ('logits', 'embedding')
  assert list(model.labels.names) == sorted(CLASS_PHOTOS)

  head = load_head(head_dir)
  pixels = np.stack([decode_image(open(path, 'rb').read(), (224, 224))[0]
                     for path, _ in examples[::4]])
  reference = load_saved_model(str(model_dir / 'feature_vector'))(
      pixels.astype(np.float32) / 255).numpy()
  for engine in ('tf', 'litert', 'openvino_fp32'):
    logits, embeddings = load_engine(spec, head_dir, None, engine).predict(pixels)
    np.testing.assert_allclose(logits, head_logits(head, embeddings), atol=TOLERANCE, rtol=0,
                               err_msg=engine)
    np.testing.assert_allclose(embeddings, reference, rtol=0,
                               atol=TOLERANCE * np.abs(reference).max(), err_msg=engine)
    # Each logit is the class labels.txt names in its place: the examples it was trained on
    # are told apart.
    assert [head.labels[i] for i in logits.argmax(axis=1)] == [
        label for _, label in examples[::4]], engine


def test_a_head_from_a_labelled_directory_takes_its_embeddings(
    from_directory, labelled, examples):
  from pipeline.train_head import computed_embeddings, extractor_of_directory, stored_embeddings  # pylint: disable=import-outside-toplevel
  from conftest import read_manifest  # pylint: disable=import-outside-toplevel
  head_dir, status, out, _ = from_directory
  assert status == 0, out
  identity = read_manifest(labelled)['identity']
  record = read_json(head_dir / 'head.json')
  extractor = record['feature_extractor']
  assert extractor['files'] == identity['feature_files']
  assert extractor['spec'] == identity['model']
  assert extractor['feature_handle'] == identity['feature_handle']
  assert record['embeddings'] == str(labelled)
  counts = record['example_counts']
  assert (counts['from_directory'], counts['computed'], counts['left_out']) == (
      3 * (PER_CLASS - 1), 3, 0)
  assert f'label-images relabel {labelled} --model_handle {head_dir}' in out

  # An example embedded here is the row the run stored for it.
  uris = [path for path, _ in examples[:2]]
  stored = stored_embeddings(str(labelled), uris)
  computed, failed = computed_embeddings(extractor_of_directory(str(labelled), None), uris,
                                         progress=lambda *a, **k: None)
  assert sorted(stored) == sorted(computed) == [0, 1] and not failed
  for i in stored:
    np.testing.assert_allclose(computed[i], stored[i], rtol=0,
                               atol=TOLERANCE * np.abs(stored[i]).max())


def _one_line_exit_2(capsys, *args):
  status = train_head_main(*args)
  err = capsys.readouterr().err
  assert status == 2, err
  assert 'Traceback' not in err
  lines = [line for line in err.splitlines() if line.startswith('label-images train-head:')]
  assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
  return lines[0]


def test_what_cannot_work_is_exit_2_in_one_line(capsys, tmp_path, examples, model_dir):
  head_dir = tmp_path / 'head'
  line = _one_line_exit_2(capsys, '--examples', tmp_path / 'none.csv', '--output', head_dir)
  assert 'none.csv: no such file' in line

  columns = write_examples(tmp_path / 'columns.csv', examples, columns=('path', 'class'))
  line = _one_line_exit_2(capsys, '--examples', columns, '--output', head_dir)
  assert "no 'uri' and no 'label' column" in line and 'path, class' in line

  empty = write_examples(tmp_path / 'empty.csv', [*examples, (examples[0][0] + 'x', ' ')])
  line = _one_line_exit_2(capsys, '--examples', empty, '--output', head_dir)
  assert f'line {len(examples) + 2}' in line and 'the label is empty' in line

  few = write_examples(tmp_path / 'few.csv', [row for row in examples
                                              if row[1] != 'cat'] + examples[6:10])
  line = _one_line_exit_2(capsys, '--examples', few, '--output', head_dir)
  assert "'cat' has 4" in line and 'at least 5' in line

  csv_path = write_examples(tmp_path / 'examples.csv', examples)
  unlabelled = tmp_path / 'unlabelled'
  unlabelled.mkdir()
  line = _one_line_exit_2(capsys, '--examples', csv_path, '--output', head_dir,
                          '--embeddings', unlabelled)
  assert 'no _manifest.json' in line

  scores_only = tmp_path / 'scores_only'
  scores_only.mkdir()
  (scores_only / '_manifest.json').write_text(json.dumps({'identity': {
      'model_handle': 'my_classifier', 'model': {
          'image_size': [224, 224], 'classes': 5, 'scores': 'logits', 'embedding_width': None,
          'form': 'classifier', 'class_output': None, 'embedding_output': None}}}))
  line = _one_line_exit_2(capsys, '--examples', csv_path, '--output', head_dir,
                          '--embeddings', scores_only)
  assert '(my_classifier) gives class scores only' in line

  assert not head_dir.exists()


def test_a_class_left_with_too_few_readable_examples_is_exit_2(capsys, tmp_path, examples,
                                                               model_dir):
  rows = [row for row in examples if row[1] != 'cat'] + examples[6:10]
  rows.append((tmp_path / 'gone.jpg', 'cat'))
  line = _one_line_exit_2(capsys, '--examples', write_examples(tmp_path / 'ex.csv', rows),
                          '--output', tmp_path / 'head', '--feature_handle',
                          model_dir / 'feature_vector')
  assert "'cat' has 4 (1 more could not be read)" in line


def test_another_feature_extractor_than_the_directorys_is_exit_2(capsys, tmp_path,
                                                                 from_directory, labelled,
                                                                 model_dir):
  csv_path = from_directory[3]
  line = _one_line_exit_2(capsys, '--examples', csv_path, '--output', labelled / 'head',
                          '--embeddings', labelled, '--feature_handle',
                          model_dir / 'classification')
  assert f'--feature_handle {model_dir / "classification"} is not the feature extractor' in line

  line = _one_line_exit_2(capsys, '--examples', csv_path, '--output', from_directory[0],
                          '--embeddings', labelled)
  assert 'already holds files' in line

  # The directory's feature extractor is not the model at its handle any more.
  changed = tmp_path / 'changed'
  changed.mkdir()
  manifest = read_json(labelled / '_manifest.json')
  manifest['identity']['feature_files'] = 'sha256:' + '0' * 64
  (changed / '_manifest.json').write_text(json.dumps(manifest))
  line = _one_line_exit_2(capsys, '--examples', csv_path, '--output', tmp_path / 'head',
                          '--embeddings', changed)
  assert f'the model at {model_dir / "feature_vector"} is not the one' in line
  assert 'its files have changed' in line


def test_a_binary_head_scores_as_the_classifier_does():
  """Two classes: scikit-learn's one logit, split over two, gives its probabilities."""
  from pipeline.train_head import suggested_min_score, train  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  vectors = np.concatenate([rng.normal(0, 1, (12, 8)), rng.normal(0.8, 1, (8, 8))])
  labels = ['no'] * 12 + ['yes'] * 8
  trained = train(vectors.astype(np.float32), labels, progress=lambda *a, **k: None)
  assert trained.classes == ['no', 'yes'] and trained.kernel.shape == (8, 2)
  logits = vectors @ trained.kernel + trained.bias
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  fitted = LogisticRegression(C=trained.c, class_weight='balanced', max_iter=2000).fit(
      vectors, labels)
  np.testing.assert_allclose(probabilities, fitted.predict_proba(vectors), atol=1e-5)

  top = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
  assert suggested_min_score(top, np.array([0, 1, 0, 0])) == 0.62  # 5th pct of .9 .8 .6


def test_the_evaluation_counts_true_classes_in_rows():
  # pylint: disable=import-outside-toplevel
  from pipeline.train_head import TrainedHead, evaluation
  probabilities = np.array([[.9, .1, 0], [.6, .4, 0], [.3, .7, 0], [.8, .2, 0],
                            [0, .1, .9], [0, .45, .55]])
  targets = np.array([0, 0, 1, 1, 2, 2])
  evaluated = evaluation(TrainedHead(['a', 'b', 'c'], None, None, 1.0, {1.0: 0.3},
                                     probabilities, targets))
  assert evaluated['confusion']['counts'] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
  a, b, c = evaluated['per_class']
  assert (a['precision'], a['recall'], a['support']) == (pytest.approx(2 / 3, abs=1e-4), 1, 2)
  assert (b['precision'], b['recall'], b['support']) == (1, 0.5, 2)
  assert (c['precision'], c['recall']) == (1, 1)
  assert evaluated['accuracy'] == pytest.approx(5 / 6, abs=1e-4) and evaluated['correct'] == 5
  # Correct tops .9 .6 .7 .9 .55: the 5th percentile is .56; below it one correct, none wrong.
  assert evaluated['suggested_min_score'] == 0.56
  assert evaluated['below_suggested_min_score'] == {'correct': 1, 'wrong': 0}


def test_examples_are_read_as_the_main_commands_lists_are(tmp_path):
  # pylint: disable=import-outside-toplevel
  import pyarrow as pa
  import pyarrow.parquet as pq
  from pipeline.train_head import TrainHeadError, read_examples
  path = str(tmp_path / 'examples.parquet')
  pq.write_table(pa.table({'URI': ['a.jpg', ' /x/b.jpg', 'gs://b/c.jpg', 'a.jpg'],
                           'Label ': ['un', 'deux', 'trois ', 'un'], 'other': [1, 2, 3, 4]}),
                 path)
  examples = read_examples(path, base_dir='/photos')
  assert examples.uris == ['/photos/a.jpg', '/x/b.jpg', 'gs://b/c.jpg']
  assert examples.labels == ['un', 'deux', 'trois']

  pq.write_table(pa.table({'uri': ['a.jpg', './a.jpg'], 'label': ['un', 'deux']}), path)
  with pytest.raises(TrainHeadError, match="row 2: ./a.jpg is labelled both 'un' and 'deux'"):
    read_examples(path, base_dir='/photos')
