"""label-images relabel: a head applied to the stored embeddings of an output directory.

The source directories are synthetic (tests/fixtures/synthetic_embeddings.py, 64-wide
embeddings, a manifest whose identity records the feature extractor's content hash), and
the heads are written here as train-head writes the files relabel reads (labels.txt,
head.npz, head.json), without the SavedModel, which relabel does not need. Most runs are in
this process (DirectRunner); one goes through the command line.
"""

import collections
import glob
import json
import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import duplicates, html_report, relabel, run, similar
from pipeline.output_dir import MANIFEST, REPORT_FILE
from synthetic_embeddings import image_vectors, write_vectors
from test_cli import label_images
from transforms import relabel as relabel_transforms
from transforms.head import LABELS_FILE, RECORD_FILE, WEIGHTS_FILE
from transforms.model_spec import CLASSIFIER, LOGITS, ONE_MODEL, PAIR, ModelSpec
from transforms.rows import RowSettings, label_row
from transforms.schema import ERRORS, ERRORS_SCHEMA, LABELS, labels_schema, part_glob

WIDTH = 64
CLASSES = ('cat', 'dog', 'fox', 'owl', 'yak', 'emu')
FEATURE_FILES = 'sha256:' + 'f' * 64
SPEC = ModelSpec((299, 299), 1000, LOGITS, WIDTH, PAIR)
PART_ROWS = (70, 50, 0, 30)  # an empty part too
ERROR_ROWS = {'not_found': 3, 'not_an_image': 2}


def write_source(directory, part_rows=PART_ROWS, width=WIDTH, spec=SPEC, model='synthetic',
                 identity=None):
  """A labels part of each of `part_rows` rows, an errors part per kind of ERROR_ROWS and a
  manifest whose identity records the feature extractor's files; returns the URIs of the
  labels rows."""
  os.makedirs(directory, exist_ok=True)
  vectors = image_vectors(sum(part_rows), seed=3, width=width)
  uris, start = [], 0
  for number, rows in enumerate(part_rows):
    # Local paths that do not exist: the report finds no thumbnail at once.
    part_uris = [f'{directory}/photos/{start + row:05d}.jpg' for row in range(rows)]
    if rows:
      write_vectors(str(directory), vectors[start:start + rows], part_uris, first_part=number)
    else:
      pq.write_table(labels_schema(width).empty_table(),
                     os.path.join(directory, f'labels-synthetic-0-{number:05d}.parquet'))
    uris += part_uris
    start += rows
  if model != 'synthetic':  # the last part's rows of another model
    path = sorted(glob.glob(os.path.join(directory, part_glob(LABELS))))[-1]
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index('model'), 'model',
                                    pa.array([model] * table.num_rows)), path)
  os.makedirs(os.path.join(directory, '_errors'), exist_ok=True)
  for number, (kind, rows) in enumerate(sorted(ERROR_ROWS.items())):
    errors = [{'uri': f'{directory}/photos/broken-{kind}-{row}.jpg', 'stage': 'read', 'error': kind,
               'message': 'no such object'} for row in range(rows)]
    pq.write_table(pa.Table.from_pylist(errors, schema=ERRORS_SCHEMA),
                   os.path.join(directory, '_errors', f'errors-synthetic-0-{number:05d}.parquet'))
  identity = identity or {
      'model_handle': '/models/classification', 'feature_handle': '/models/feature_vector',
      'model_files': 'sha256:' + 'c' * 64, 'feature_files': FEATURE_FILES,
      'model': spec.to_dict(), 'engine': 'litert', 'precision': 'fp32',
      'preprocessing': {'central_crop_fraction': 0.875, 'size': 299, 'resize': 'bilinear'}}
  with open(os.path.join(directory, MANIFEST), 'w', encoding='utf-8') as f:
    json.dump({'output': str(directory), 'identity': identity,
               'runs': [{'run_id': 'synthetic', 'status': 'completed'}]}, f)
  return uris


def write_head(directory, width=WIDTH, classes=CLASSES, files=FEATURE_FILES, seed=0,
               kernel=None, bias=None):
  """The files of a HEAD_DIR that relabel reads, as train-head writes them; returns the
  kernel and bias."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  # Scaled so that the softmax spreads: some rows sure, others not.
  kernel = (rng.normal(0, 4, (width, len(classes))).astype(np.float32) if kernel is None
            else kernel)
  bias = rng.normal(0, 0.5, len(classes)).astype(np.float32) if bias is None else bias
  np.savez(os.path.join(directory, WEIGHTS_FILE), kernel=kernel, bias=bias)
  with open(os.path.join(directory, LABELS_FILE), 'w', encoding='utf-8') as f:
    f.write('\n'.join(classes) + '\n')
  record = {'feature_extractor': {'model_handle': '/models/classification',
                                  'feature_handle': '/models/feature_vector', 'files': files,
                                  'spec': SPEC.to_dict()},
            'suggested_min_score': 0.5}
  with open(os.path.join(directory, RECORD_FILE), 'w', encoding='utf-8') as f:
    json.dump(record, f)
  return kernel, bias


@pytest.fixture
def source(tmp_path):
  directory = tmp_path / 'source'
  return directory, write_source(directory)


@pytest.fixture
def head(tmp_path):
  directory = tmp_path / 'head'
  return directory, write_head(directory)


def relabel_here(*args):
  """`label-images relabel ARGS` in this process; returns the exit status."""
  return relabel.main([str(arg) for arg in args])


def read_rows(directory, kind=LABELS):
  paths = sorted(glob.glob(os.path.join(str(directory), part_glob(kind))))
  return [pq.read_table(path) for path in paths]


def manifest(directory):
  with open(os.path.join(directory, MANIFEST), encoding='utf-8') as f:
    return json.load(f)


def expected_rows(source_dir, kernel, bias, top_k, min_score=None):
  """{uri: row}: label_row (the labelling pipeline's own) on each stored embedding."""
  settings = RowSettings(top_k, 'H', CLASSES, LOGITS, min_score)
  expected = {}
  for table in read_rows(source_dir):
    for row in table.to_pylist():
      embedding = np.asarray(row['embedding'], np.float32)
      output = type('Output', (), {'scores': embedding @ kernel + bias, 'embedding': None})
      image = type('Image', (), {'uri': row['uri'], 'width': row['width'],
                                 'height': row['height']})
      expected[row['uri']] = (label_row(image, output, settings), row)
  return expected


def test_every_row_once_with_the_heads_labels_and_the_rest_carried_over(source, head, tmp_path,
                                                                       capsys):
  (source_dir, uris), (head_dir, (kernel, bias)) = source, head
  new_dir = tmp_path / 'new'
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir,
                      '--top_k', 3) == 0

  tables = read_rows(new_dir)
  assert len(tables) == 3  # one per source part that has rows
  for table in tables:
    assert table.schema.equals(labels_schema(WIDTH))  # label required: no --min_score
  for path in glob.glob(os.path.join(str(new_dir), part_glob(LABELS))):
    assert pq.ParquetFile(path).num_row_groups == 1
  rows = [row for table in tables for row in table.to_pylist()]
  assert sorted(row['uri'] for row in rows) == sorted(uris)
  expected = expected_rows(source_dir, kernel, bias, top_k=3)
  labels_seen = set()
  for row in rows:
    want, stored = expected[row['uri']]
    assert row['label'] == want['label'] and row['label_index'] == want['label_index']
    assert row['top_k_labels'] == want['top_k_labels']
    np.testing.assert_allclose(row['top_k_scores'], want['top_k_scores'], atol=1e-6)
    assert abs(row['score'] - want['score']) < 1e-6 and row['score'] == row['top_k_scores'][0]
    assert row['model'] == str(head_dir)
    for name in ('embedding', 'width', 'height'):
      assert row[name] == stored[name]
    labels_seen.add(row['label'])
  assert len(labels_seen) > 2  # the head spreads the rows over its classes

  # A direct numpy computation agrees too, to 1e-6 (the probabilities of every class).
  embeddings = np.stack([np.asarray(expected[row['uri']][1]['embedding'], np.float32)
                         for row in rows])
  logits = embeddings.astype(np.float64) @ kernel.astype(np.float64) + bias
  direct = np.exp(logits - logits.max(axis=1, keepdims=True))
  direct /= direct.sum(axis=1, keepdims=True)
  np.testing.assert_allclose([row['score'] for row in rows], direct.max(axis=1), atol=1e-6)
  assert [row['label_index'] for row in rows] == list(direct.argmax(axis=1))

  errors = [row for table in read_rows(new_dir, ERRORS) for row in table.to_pylist()]
  source_errors = [row for table in read_rows(source_dir, ERRORS) for row in table.to_pylist()]
  assert sorted(errors, key=str) == sorted(source_errors, key=str)

  recorded = manifest(new_dir)
  run = recorded['runs'][-1]
  assert run['status'] == 'completed' and run['accounting'] == {'complete': True,
                                                                'problems': []}
  assert run['counts']['labelled'] == len(uris) and run['counts']['errors'] == 5
  assert run['counts']['rows_read'] == len(uris) and run['counts']['orphan_parts_deleted'] == 0
  assert run['errors_by_kind'] == ERROR_ROWS
  identity = recorded['identity']
  assert identity['relabelled_from'] == str(source_dir)
  assert identity['source_identity'] == manifest(source_dir)['identity']
  assert identity['model_handle'] == str(head_dir)
  assert identity['model_files'].startswith('sha256:')
  assert identity['feature_files'] == FEATURE_FILES
  assert identity['model'] == ModelSpec((299, 299), len(CLASSES), LOGITS, WIDTH, ONE_MODEL,
                                        'logits', 'embedding').to_dict()
  assert identity['min_score'] is None
  assert recorded['totals'] == {'uris': len(uris) + 5, 'distinct_uris': len(uris) + 5,
                                'labelled': len(uris), 'errors': 5, 'errors_by_kind': ERROR_ROWS}

  out = capsys.readouterr().out
  assert f'label-images: relabelled {len(uris)} rows with {head_dir} (6 classes), 5 errors ' \
         'carried over' in out
  assert 'rows/s' in out and 'errors by kind: not_an_image 2, not_found 3' in out
  assert f'output (5 parts): {new_dir}/labels-*.parquet, {new_dir}/_errors/errors-*.parquet' in out
  assert 'every row has a label; for an open set (none of the classes below a score), ' \
         'head.json suggests --min_score 0.5' in out


def test_below_min_score_a_row_is_none_of_the_classes_and_counted(source, head, tmp_path,
                                                                 capsys):
  (source_dir, uris), (head_dir, (kernel, bias)) = source, head
  new_dir = tmp_path / 'new'
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir,
                      '--min_score', 0.9, '--rows_per_file', 40) == 0

  tables = read_rows(new_dir)
  assert sorted(table.num_rows for table in tables) == [10, 30, 30, 40, 40]
  for table in tables:
    assert table.schema.equals(labels_schema(WIDTH, open_set=True))
  rows = [row for table in tables for row in table.to_pylist()]
  expected = expected_rows(source_dir, kernel, bias, top_k=1, min_score=0.9)
  none = 0
  for row in rows:
    want, _ = expected[row['uri']]
    assert (row['label'], row['label_index']) == (want['label'], want['label_index'])
    assert len(row['top_k_labels']) == 1  # as many as the source keeps
    if row['label'] is None:
      none += 1
      assert row['label_index'] is None and row['score'] < 0.9 and row['top_k_labels']
  assert 0 < none < len(rows)
  counts = manifest(new_dir)['runs'][-1]['counts']
  assert counts['none_of_the_classes'] == none and counts['labelled'] == len(uris)
  assert manifest(new_dir)['identity']['min_score'] == 0.9
  assert (f'none of the classes (top score below --min_score 0.9): {none} rows'
          in capsys.readouterr().out)


def test_the_vectorised_head_is_the_rows_label_row(head):
  """head_columns on a batch equals label_row on each row: softmax, ties, top-k, min."""
  head_dir, (kernel, _) = head
  # No bias: the rows of zero embeddings tie every class, which a stable sort orders by index.
  loaded = relabel_transforms.load_head(str(head_dir))._replace(bias=np.zeros(6, np.float32))
  embeddings = image_vectors(200, seed=5, width=WIDTH)
  embeddings[:3] = 0
  embeddings[3] *= 1000  # logits in the thousands: each row's softmax shifts by its own max
  columns, none = relabel_transforms.head_columns(loaded, embeddings, 4, 0.6)
  settings = RowSettings(4, 'H', CLASSES, LOGITS, 0.6)
  got_none = 0
  for row, embedding in enumerate(embeddings):
    output = type('Output', (), {'scores': embedding @ kernel, 'embedding': None})
    want = label_row(type('Image', (), {'uri': '', 'width': 1, 'height': 1}), output,
                     settings)
    assert columns['label'][row].as_py() == want['label']
    assert columns['label_index'][row].as_py() == want['label_index']
    assert columns['top_k_labels'][row].as_py() == want['top_k_labels']
    np.testing.assert_allclose(columns['top_k_scores'][row].as_py(), want['top_k_scores'],
                               atol=1e-6)
    np.testing.assert_allclose(columns['score'][row].as_py(), want['score'], atol=1e-6)
    got_none += want['label'] is None
  assert none == got_none and 0 < none < len(embeddings)
  assert columns['top_k_labels'][0].as_py() == ['cat', 'dog', 'fox', 'owl']
  assert columns['top_k_scores'][0].as_py() == [np.float32(1 / 6)] * 4
  assert columns['label'][0].as_py() is None  # 1/6 is below 0.6


def refused(capsys, *args):
  """Asserts relabel refuses, with status 2 and one line; returns the line."""
  assert relabel_here(*args) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('label-images: ') and 'Traceback' not in err
  return err


def test_refusals_before_any_work(source, head, tmp_path, capsys):
  (source_dir, _), (head_dir, _) = source, head
  new_dir = tmp_path / 'new'

  other = tmp_path / 'other-head'
  write_head(other, files='sha256:' + '0' * 64)
  err = refused(capsys, source_dir, '--model_handle', other, '--output', new_dir)
  assert 'was trained on embeddings of another feature extractor' in err
  assert FEATURE_FILES in err and '0' * 64 in err

  narrow = tmp_path / 'narrow-head'
  write_head(narrow, width=32)
  err = refused(capsys, source_dir, '--model_handle', narrow, '--output', new_dir)
  assert 'the head takes 32-wide embeddings, the parts hold 64-wide ones' in err

  err = refused(capsys, source_dir, '--model_handle', head_dir, '--output', source_dir)
  assert 'is OUTPUT_DIR itself' in err
  err = refused(capsys, source_dir, '--model_handle', head_dir, '--output',
                f'{source_dir}/../source/')
  assert 'is OUTPUT_DIR itself' in err

  mixed = tmp_path / 'mixed'
  write_source(mixed, part_rows=(10, 10), model='/models/another')
  err = refused(capsys, mixed, '--model_handle', head_dir, '--output', new_dir)
  assert 'holds rows of several models (/models/another, synthetic)' in err

  classifier = tmp_path / 'classifier'
  write_source(classifier, part_rows=(5,), spec=SPEC._replace(form=CLASSIFIER))
  err = refused(capsys, classifier, '--model_handle', head_dir, '--output', new_dir)
  assert 'holds no embeddings to relabel' in err

  unrecorded = tmp_path / 'unrecorded'
  write_source(unrecorded, part_rows=(5,), identity={'model_handle': '/m'})
  err = refused(capsys, unrecorded, '--model_handle', head_dir, '--output', new_dir)
  assert 'records no content hash of the model that made its embeddings' in err

  err = refused(capsys, source_dir, '--model_handle', tmp_path / 'nothing', '--output', new_dir)
  assert 'is not a head that relabel can read' in err

  assert not new_dir.exists()

  # A NEW_DIR with results: refused, then replaced with --overwrite.
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir) == 0
  capsys.readouterr()
  err = refused(capsys, source_dir, '--model_handle', head_dir, '--output', new_dir)
  assert 'already holds' in err and '--overwrite' in err
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir,
                      '--overwrite') == 0
  assert len(manifest(new_dir)['runs']) == 1


def test_a_one_model_source_is_checked_against_its_model_files(tmp_path, capsys):
  spec = SPEC._replace(form=ONE_MODEL, class_output='logits', embedding_output='embedding')
  source_dir = tmp_path / 'source'
  write_source(source_dir, part_rows=(8,), spec=spec, identity={
      'model_handle': '/models/mine', 'model_files': 'sha256:' + '1' * 64,
      'feature_files': None, 'model': spec.to_dict(), 'engine': 'tf', 'precision': 'fp32'})
  write_head(tmp_path / 'head', files='sha256:' + '1' * 64)
  write_head(tmp_path / 'pair-head')  # trained on FEATURE_FILES
  assert relabel_here(source_dir, '--model_handle', tmp_path / 'head', '--output',
                      tmp_path / 'new') == 0
  capsys.readouterr()
  err = refused(capsys, source_dir, '--model_handle', tmp_path / 'pair-head', '--output',
                tmp_path / 'new2')
  assert 'another feature extractor' in err
  # A relabelled directory is checked against the extractor that made its embeddings.
  assert relabel_here(tmp_path / 'new', '--model_handle', tmp_path / 'head', '--output',
                      tmp_path / 'again') == 0
  assert manifest(tmp_path / 'again')['identity']['feature_files'] == 'sha256:' + '1' * 64


def test_parts_a_tool_rewrote_are_read_in_the_outputs_types(source, head, tmp_path):
  """Parts rewritten by pandas or DuckDB: plain-list embeddings (whose width only the values
  tell), large strings."""
  (source_dir, uris), (head_dir, _) = source, head
  stored = {}
  for path in glob.glob(os.path.join(str(source_dir), part_glob(LABELS))):
    table = pq.read_table(path)
    stored.update(zip(table.column('uri').to_pylist(), table.column('embedding').to_pylist()))
    types = {'embedding': pa.list_(pa.float32()), 'uri': pa.large_string()}
    pq.write_table(pa.table({name: table.column(name).cast(
        types.get(name, table.schema.field(name).type)) for name in table.column_names}), path)
  new_dir = tmp_path / 'new'
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir) == 0
  tables = read_rows(new_dir)
  assert all(table.schema.equals(labels_schema(WIDTH)) for table in tables)
  rows = {row['uri']: row['embedding'] for table in tables for row in table.to_pylist()}
  assert rows == stored and sorted(rows) == sorted(uris)


def test_a_retried_bundle_leaves_each_row_once(source, head, tmp_path, monkeypatch):
  """On a runner that retries failed bundles, as Dataflow does: the parts of the failed
  attempts are deleted by the commit step."""
  (source_dir, uris), (head_dir, _) = source, head
  write = relabel_transforms.RelabelParts._write  # pylint: disable=protected-access
  lock, failed = threading.Lock(), []

  def write_then_fail(self, table):
    committed = write(self, table)
    with lock:
      if len(failed) < 2:
        failed.append(committed.path)
        raise RuntimeError('injected: the bundle fails after writing a part')
    return committed

  monkeypatch.setattr(relabel_transforms.RelabelParts, '_write', write_then_fail)
  new_dir = tmp_path / 'new'
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir,
                      '--runner', 'BundleBasedDirectRunner') == 0
  assert len(failed) == 2 and not any(os.path.exists(path) for path in failed)
  rows = [uri for table in read_rows(new_dir) for uri in table.column('uri').to_pylist()]
  assert sorted(rows) == sorted(uris)
  counts = manifest(new_dir)['runs'][-1]['counts']
  assert counts['labelled'] == len(uris) and counts['errors'] == 5
  assert counts['orphan_parts_deleted'] == 2


def test_rows_that_do_not_add_up_exit_4(source, head, tmp_path, monkeypatch, capsys):
  (source_dir, uris), (head_dir, _) = source, head
  relabelled = relabel_transforms.relabelled_table

  def dropping_a_row(*args, **kwargs):
    table, none = relabelled(*args, **kwargs)
    return table.slice(1), none

  monkeypatch.setattr(relabel_transforms, 'relabelled_table', dropping_a_row)
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output',
                      tmp_path / 'new') == 4
  captured = capsys.readouterr()
  assert (f'{source_dir} holds {len(uris)} labels rows but the new parts hold '
          f'{len(uris) - 3}: 3 missing') in captured.err
  assert 'INCOMPLETE' in captured.out


def query(command, *args):
  """`label-images report|similar|duplicates ARGS` in this process; returns the exit status."""
  commands = {'report': html_report.main, 'similar': similar.main,
              'duplicates': duplicates.main}
  return run.run_query(commands[command], [str(arg) for arg in args])


def test_the_command_line_and_the_commands_after_it(source, head, tmp_path, capsys):
  """Through the command line; then report, similar and duplicates on the new directory."""
  (source_dir, uris), (head_dir, _) = source, head
  new_dir = tmp_path / 'new'
  with pytest.raises(SystemExit) as exit_status:
    relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir, '--engine', 'tf')
  assert exit_status.value.code == 2
  assert ('label-images relabel: error: --engine is an option of the labelling command, not of '
          'relabel') in capsys.readouterr().err

  result = label_images('relabel', source_dir, '--model_handle', head_dir, '--output', new_dir,
                        '--direct_num_workers', 2)
  assert result.returncode == 0, result.stderr
  assert f'relabelled {len(uris)} rows' in result.stdout

  assert query('report', new_dir) == 0
  page = (new_dir / REPORT_FILE).read_text()
  assert (f'Model <code>{head_dir}</code>: 299x299 pixels, 6 classes (logits), 64-wide '
          'embedding.') in page
  labels = collections.Counter(label for table in read_rows(new_dir)
                               for label in table.column('label').to_pylist())
  assert f'<h3>{labels.most_common(1)[0][0]} <span' in page  # its examples
  capsys.readouterr()
  assert query('similar', new_dir, '--uri', uris[0], '--k', '3', '--json') == 0
  answers = json.loads(capsys.readouterr().out)
  assert len(answers) == 3 and uris[0] not in [answer['uri'] for answer in answers]
  assert query('duplicates', new_dir) == 0
  assert 'no near-duplicates among 150 images' in capsys.readouterr().out


def test_the_commands_after_an_open_set_relabel(source, head, tmp_path, capsys):
  (source_dir, uris), (head_dir, _) = source, head
  new_dir = tmp_path / 'new'
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', new_dir,
                      '--min_score', 0.9) == 0
  none = manifest(new_dir)['runs'][-1]['counts']['none_of_the_classes']
  assert none
  capsys.readouterr()
  assert query('similar', new_dir, '--uri', uris[0], '--k', '3', '--json') == 0
  assert len(json.loads(capsys.readouterr().out)) == 3
  assert query('duplicates', new_dir) == 0
  assert query('report', new_dir) == 0
  assert '(none of the classes)' in (new_dir / REPORT_FILE).read_text()


def test_the_dataflow_job_is_built_offline(source, head, tmp_path):
  """The job a Dataflow run would submit, built with --dry_run from a source the driver has
  read: its steps, and the workers' options."""
  (source_dir, _), (head_dir, _) = source, head
  args, options = relabel.parse_args([
      'gs://bucket/out', '--model_handle', 'gs://bucket/head', '--output', 'gs://bucket/new',
      '--runner', 'DataflowRunner', '--dry_run', '--project', 'my-project',
      '--region', 'us-central1', '--temp_location', 'gs://bucket/tmp',
      '--machine_type', 'n2-standard-8', '--max_num_workers', '10'])
  assert relabel.worker_location_problems(args) == []
  assert relabel_here(source_dir, '--model_handle', head_dir, '--output', tmp_path / 'new',
                      '--dry_run') == 0
  assert not (tmp_path / 'new').exists()
  source = relabel.read_source(str(source_dir))
  settings = relabel.settings_for(args, source)
  job = relabel.build(options, source, args.output, 'run', settings).run().job
  names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
  assert {'Relabel/SourceParts', 'Relabel/Spread', 'Relabel/Relabel',
          'Relabel/Commit'} <= names
  description = relabel.job_description(args, options, job, source, settings)
  assert 'workers: up to 10 x n2-standard-8' in description
  assert 'relabel' in description and '150 rows in 4 parts, 5 errors' in description

  args, _ = relabel.parse_args([str(source_dir), '--model_handle', str(head_dir), '--output',
                                'gs://bucket/new', '--runner', 'DataflowRunner'])
  assert [problem.split(' is ')[0] for problem in relabel.worker_location_problems(args)] == [
      f'OUTPUT_DIR {source_dir}', f'--model_handle {head_dir}']
