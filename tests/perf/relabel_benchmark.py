"""Throughput and memory of `label-images relabel` on a synthetic output directory.

  python tests/perf/relabel_benchmark.py [--rows 1000000] [--classes 10] [--json PATH]

Builds once, cached under the temporary directory, a source directory of N labels rows as
the labelling pipeline writes them (zstd Parquet parts of --rows_per_part rows, one row
group each; 1,280-wide float32 embeddings imitating MobileNet V2's: non-negative, clustered;
a top-5 of 1,001 ImageNet-like names), an errors part, and a manifest recording the feature
extractor's content hash; and a head of --classes classes trained on that extractor (random
weights: the arithmetic is the same). The N/10 directory is the first tenth of the N one's
parts, hard-linked.

Then runs the whole command, `python -m pipeline.run relabel SOURCE --model_handle HEAD
--output NEW` with its defaults (DirectRunner, every core), as a subprocess at N/10 and at N
(after a small warm-up run, so that every run finds the source in the page cache), and
reports for each: rows/s of the whole process (start-up included), rows/s of the pipeline
alone (the manifest's, from start to commit), peak RSS (the process's VmHWM), CPU cores used;
and between the two: the marginal rows/s and the memory each further row costs,
rss_kb_per_row = (peak RSS at N - peak RSS at N/10) / (0.9 N).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures'))

from measure import run_measured  # pylint: disable=wrong-import-position
from pipeline.output_dir import MANIFEST  # pylint: disable=wrong-import-position
from transforms.head import (LABELS_FILE, RECORD_FILE,  # pylint: disable=wrong-import-position
                             WEIGHTS_FILE)
from transforms.model_spec import LOGITS, PAIR, ModelSpec  # pylint: disable=wrong-import-position
from transforms.schema import ERRORS_SCHEMA, labels_schema  # pylint: disable=wrong-import-position

CACHE = os.path.join(tempfile.gettempdir(), 'label-images-relabel-benchmark')
WIDTH = 1280
SOURCE_CLASSES = 1001
SOURCE_TOP_K = 5
PROTOTYPES = 1000
FEATURE_FILES = 'sha256:' + '5' * 64  # the extractor's content hash, in both records
SPEC = ModelSpec((224, 224), SOURCE_CLASSES, LOGITS, WIDTH, PAIR)
WARM_UP_ROWS = 2000
MAIN_PIPELINE_IMAGES_PER_S = (20, 35)  # the labelling command on this 2-core machine


def _embeddings(rng, prototypes, count):
  """Non-negative, clustered, of length 1: as synthetic_embeddings makes them, faster."""
  classes = rng.integers(0, len(prototypes), count)
  vectors = prototypes[classes] * 0.8 + rng.standard_normal((count, WIDTH), np.float32) * 0.7
  np.maximum(vectors, 0, out=vectors)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  return vectors


def _labels_part(path, first_row, vectors, rng, names):
  """One part of labels rows, as the pipeline writes it: zstd, one row group."""
  count = len(vectors)
  top = rng.integers(0, SOURCE_CLASSES, (count, SOURCE_TOP_K)).astype(np.int32)
  scores = np.sort(rng.random((count, SOURCE_TOP_K), np.float32), axis=1)[:, ::-1] / 2
  offsets = pa.array(np.arange(0, count * SOURCE_TOP_K + 1, SOURCE_TOP_K, dtype=np.int32))
  columns = {
      'uri': pa.array([f'gs://photos/{first_row + row:09d}.jpg' for row in range(count)]),
      'label': names.take(pa.array(top[:, 0])),
      'label_index': pa.array(top[:, 0]),
      'score': pa.array(np.ascontiguousarray(scores[:, 0])),
      'top_k_labels': pa.ListArray.from_arrays(offsets, names.take(pa.array(top.ravel()))),
      'top_k_scores': pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(
          scores).ravel())),
      'embedding': pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), WIDTH),
      'width': pa.array(np.full(count, 640, np.int32)),
      'height': pa.array(np.full(count, 480, np.int32)),
      'model': pa.repeat(pa.scalar('/models/classification'), count),
  }
  schema = labels_schema(WIDTH)
  table = pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)
  pq.write_table(table, path, compression='zstd', row_group_size=count)


def _manifest(directory, rows):
  identity = {'model_handle': '/models/classification', 'feature_handle': '/models/feature_vector',
              'model_files': 'sha256:' + '4' * 64, 'feature_files': FEATURE_FILES,
              'model': SPEC.to_dict(), 'engine': 'litert', 'precision': 'fp32',
              'preprocessing': {'central_crop_fraction': 0.875, 'size': 224,
                                'resize': 'bilinear'}}
  with open(os.path.join(directory, MANIFEST), 'w', encoding='utf-8') as f:
    json.dump({'output': directory, 'identity': identity,
               'runs': [{'run_id': 'synthetic', 'status': 'completed', 'rows': rows}]}, f)


def _errors_part(directory):
  os.makedirs(os.path.join(directory, '_errors'), exist_ok=True)
  errors = [{'uri': f'gs://photos/broken-{row}.jpg', 'stage': 'decode', 'error': 'not_an_image',
             'message': 'cannot identify image file'} for row in range(100)]
  pq.write_table(pa.Table.from_pylist(errors, schema=ERRORS_SCHEMA),
                 os.path.join(directory, '_errors', 'errors-synthetic-0-00000.parquet'),
                 compression='zstd')


def _part_paths(directory):
  return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                if name.startswith('labels-') and name.endswith('.parquet'))


def make_source(rows, rows_per_part):
  """The cached source directory of `rows` labels rows (and 100 error rows)."""
  directory = os.path.join(CACHE, f'source-{rows}-{rows_per_part}')
  done = os.path.join(directory, '.complete')
  if os.path.exists(done):
    return directory
  shutil.rmtree(directory, ignore_errors=True)
  os.makedirs(directory)
  rng = np.random.default_rng(rows)
  prototypes = np.maximum(rng.standard_normal((PROTOTYPES, WIDTH), np.float32), 0)
  names = pa.array([f'class {index}' for index in range(SOURCE_CLASSES)])
  for number, start in enumerate(range(0, rows, rows_per_part)):
    count = min(rows_per_part, rows - start)
    _labels_part(os.path.join(directory, f'labels-synthetic-0-{number:05d}.parquet'), start,
                 _embeddings(rng, prototypes, count), rng, names)
    if number % 50 == 0:
      print(f'  wrote {start + count:,} of {rows:,} rows', file=sys.stderr, flush=True)
  _errors_part(directory)
  _manifest(directory, rows)
  open(done, 'w', encoding='utf-8').close()
  return directory


def linked_source(source, rows, rows_per_part):
  """A directory of the first `rows` rows of `source`: its parts hard-linked."""
  directory = os.path.join(CACHE, f'{os.path.basename(source)}-first-{rows}')
  shutil.rmtree(directory, ignore_errors=True)
  os.makedirs(os.path.join(directory, '_errors'))
  for path in _part_paths(source)[:max(1, rows // rows_per_part)]:
    os.link(path, os.path.join(directory, os.path.basename(path)))
  for name in os.listdir(os.path.join(source, '_errors')):
    os.link(os.path.join(source, '_errors', name), os.path.join(directory, '_errors', name))
  _manifest(directory, rows)
  return directory


def make_head(classes):
  directory = os.path.join(CACHE, f'head-{classes}')
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(classes)
  np.savez(os.path.join(directory, WEIGHTS_FILE),
           kernel=rng.normal(0, 4, (WIDTH, classes)).astype(np.float32),
           bias=rng.normal(0, 0.5, classes).astype(np.float32))
  with open(os.path.join(directory, LABELS_FILE), 'w', encoding='utf-8') as f:
    f.write(''.join(f'my class {index}\n' for index in range(classes)))
  with open(os.path.join(directory, RECORD_FILE), 'w', encoding='utf-8') as f:
    json.dump({'feature_extractor': {'model_handle': '/models/classification',
                                     'feature_handle': '/models/feature_vector',
                                     'files': FEATURE_FILES, 'spec': SPEC.to_dict()},
               'suggested_min_score': 0.5}, f)
  return directory


def relabel(source, head, output, extra=()):
  """The whole command, measured; returns (Measured, the run's manifest entry)."""
  measured = run_measured([sys.executable, '-m', 'pipeline.run', 'relabel', source,
                           '--model_handle', head, '--output', output, '--overwrite', *extra],
                          cwd=ROOT)
  if measured.exit_code != 0:
    raise SystemExit(f'relabel failed ({measured.exit_code}):\n{measured.output[-4000:]}')
  with open(os.path.join(output, MANIFEST), encoding='utf-8') as f:
    return measured, json.load(f)['runs'][-1]


def cpu_flags():
  try:
    with open('/proc/cpuinfo', encoding='ascii') as f:
      flags = next(line for line in f if line.startswith('flags')).split(':', 1)[1].split()
  except (OSError, StopIteration):
    return []
  return sorted(flag for flag in flags if flag.startswith(('avx2', 'avx512', 'amx')))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rows', type=int, default=1_000_000)
  parser.add_argument('--rows_per_part', type=int, default=2000)
  parser.add_argument('--classes', type=int, default=10)
  parser.add_argument('--min_score', type=float, help='Passed to relabel (open set).')
  parser.add_argument('--json', help='Also write the figures here.')
  parser.add_argument('--keep_outputs', action='store_true',
                      help='Keep the relabelled directories (by default deleted after each run).')
  args = parser.parse_args()

  print(f'building (or reusing) {args.rows:,} rows under {CACHE}', file=sys.stderr)
  largest = make_source(args.rows, args.rows_per_part)
  head = make_head(args.classes)
  extra = ['--min_score', str(args.min_score)] if args.min_score is not None else []
  out_dir = os.path.join(CACHE, 'outputs')
  relabel(linked_source(largest, WARM_UP_ROWS, args.rows_per_part), head,
          os.path.join(out_dir, 'warm-up'), extra)
  runs = {}
  for rows in (args.rows // 10, args.rows):
    source = largest if rows == args.rows else linked_source(largest, rows, args.rows_per_part)
    output = os.path.join(out_dir, f'relabelled-{rows}')
    measured, entry = relabel(source, head, output, extra)
    assert entry['counts']['labelled'] == rows and entry['accounting']['complete'], entry
    runs[rows] = {'seconds': round(measured.seconds, 1),
                  'rows_per_s': round(rows / measured.seconds),
                  'pipeline_rows_per_s': round(entry['rows_per_second']),
                  'peak_rss_mb': round(measured.peak_rss_mb),
                  'cpu_cores': round(measured.cpu_cores, 2),
                  'parts': entry['counts']['parts'],
                  'none_of_the_classes': entry['counts']['none_of_the_classes']}
    if not args.keep_outputs:
      shutil.rmtree(output, ignore_errors=True)
  small, large = sorted(runs)
  marginal = (large - small) / (runs[large]['seconds'] - runs[small]['seconds'])
  report = {
      'rows': {str(rows): run for rows, run in runs.items()},
      'marginal_rows_per_s': round(marginal),
      'rss_kb_per_row': round((runs[large]['peak_rss_mb'] - runs[small]['peak_rss_mb']) * 1024
                              / (large - small), 5),
      'target_rows_per_s': 20 * MAIN_PIPELINE_IMAGES_PER_S[1],
      'main_pipeline_images_per_s': list(MAIN_PIPELINE_IMAGES_PER_S),
      'classes': args.classes, 'embedding_width': WIDTH, 'rows_per_part': args.rows_per_part,
      'cpu_count': os.cpu_count(), 'cpu_flags': cpu_flags(),
  }
  print(f"{'rows':>9} {'seconds':>8} {'rows/s':>8} {'pipeline rows/s':>16} {'peak RSS MB':>12} "
        f"{'CPU cores':>10}")
  for rows, run in runs.items():
    print(f"{rows:>9,} {run['seconds']:>8.1f} {run['rows_per_s']:>8,} "
          f"{run['pipeline_rows_per_s']:>16,} {run['peak_rss_mb']:>12,} {run['cpu_cores']:>10}")
  print(f"marginal rows/s: {report['marginal_rows_per_s']:,}; rss_kb_per_row: "
        f"{report['rss_kb_per_row']}; target >= {report['target_rows_per_s']:,} rows/s "
        f"(20 x the labelling command's {MAIN_PIPELINE_IMAGES_PER_S[1]} images/s); "
        f"CPU flags: {' '.join(report['cpu_flags']) or 'none of avx2/avx512/amx'}")
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)


if __name__ == '__main__':
  main()
