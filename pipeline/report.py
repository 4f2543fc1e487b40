"""The end-of-run report: the summary printed, and OUTPUT_DIR/_manifest.json."""

import collections
import concurrent.futures
import datetime
import json
import platform
from importlib import metadata

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.console import plural
from pipeline.output_dir import MANIFEST
from pipeline.results import part_paths, read_manifest
from transforms.files import DAMAGED_FOLDER, read_parquet, write_bytes
from transforms.metrics import IMAGES_BY_ENGINE, NAMESPACE
from transforms.rows import NONE_OF_THE_CLASSES
from transforms.schema import ERRORS, LABELS, part_glob

_PART_READERS = 16
_VERSIONED_PACKAGES = ('label-images', 'apache-beam', 'tensorflow', 'tensorflow-hub', 'pyarrow',
                       'pillow')


def _value(metric):
  return metric.committed if metric.committed is not None else metric.attempted


def read_metrics(result):
  """({counter: total}, {distribution: {count, mean, min, max}}) in the pipeline's namespace,
  summed over steps."""
  query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
  totals = collections.Counter()
  for counter in query['counters']:
    totals[counter.key.metric.name] += _value(counter) or 0
  merged = {}
  for distribution in query['distributions']:
    value = _value(distribution)
    if value is None or not value.count:
      continue
    name = distribution.key.metric.name
    count, total, low, high = merged.get(name, (0, 0, value.min, value.max))
    merged[name] = (count + value.count, total + value.sum, min(low, value.min),
                    max(high, value.max))
  distributions = {name: {'count': count, 'mean': round(total / count, 3), 'min': low,
                          'max': high} for name, (count, total, low, high) in merged.items()}
  return dict(totals), distributions


def _version(package):
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def _by_kind(totals, prefix):
  """{kind: n} of the counters named PREFIX.KIND."""
  return {name.split('.', 1)[1]: n for name, n in sorted(totals.items())
          if name.startswith(f'{prefix}.')}


def build_manifest(args, pipeline_options, model, run_id, totals, distributions, started_at,
                   finished_at, status='completed', set_aside=(), engine_choice=None,
                   int8_model=None):
  """This run's entry in the manifest; `model` is the ChosenModel it labelled with,
  `set_aside` the damaged parts it moved aside before it started, `engine_choice` what
  --engine auto measured where the driver chose, `int8_model` what stage-model recorded of the
  int8 models a run at int8 used."""
  labelled, errors = totals.get(LABELS, 0), totals.get(ERRORS, 0)
  seconds = (finished_at - started_at).total_seconds()
  counts = {name: totals.get(name, 0) for name in (
      'uris_listed', 'blank_entries', 'duplicate_uris', 'already_done', 'uris_to_label')}
  counts.update({
      'labelled': labelled,
      'errors': errors,
      'unaccounted': unaccounted(totals),
      'read_retries': totals.get('read_retries', 0),
      'parts': totals.get('parts', 0),
      'orphan_parts_deleted': totals.get('orphan_parts_deleted', 0),
      'redundant_rows_removed': totals.get('redundant_rows', 0),
      NONE_OF_THE_CLASSES: totals.get(NONE_OF_THE_CLASSES, 0),
  })
  problems = accounting_problems(totals) if status == 'completed' else [status]
  return {
      'run_id': run_id,
      'status': status,
      'input': args.input,
      'output': args.output,
      'model_handle': args.model_handle,
      'feature_handle': args.feature_handle,
      'model_description': model.spec.describe(),
      'labels': model.labels.source,
      'min_score': args.min_score,
      'engine': args.engine,
      'precision': args.precision,
      'engine_choice': engine_choice.to_dict() if engine_choice else None,
      'images_by_engine': _by_kind(totals, IMAGES_BY_ENGINE),
      # The int8 model's hash and its measured agreement with fp32, from stage-model.
      'int8_model': int8_model,
      'runner': pipeline_options.view_as(StandardOptions).runner or 'DirectRunner',
      'resumed': bool(args.resume),
      'started_at': started_at.isoformat(),
      'finished_at': finished_at.isoformat(),
      'wall_seconds': round(seconds, 3),
      'images_per_second': round(labelled / seconds, 2) if seconds > 0 else None,
      'counts': counts,
      'accounting': {'complete': not problems, 'problems': problems},
      'damaged_parts_set_aside': list(set_aside),
      'errors_by_kind': _by_kind(totals, ERRORS),
      'distributions': distributions,
      'versions': {'python': platform.python_version(),
                   **{package: _version(package) for package in _VERSIONED_PACKAGES}},
  }


def unaccounted(totals):
  """Distinct listed URIs, not already in the output, that have no row in a kept part."""
  return (totals.get('uris_listed', 0) - totals.get('duplicate_uris', 0)
          - totals.get('already_done', 0) - totals.get(LABELS, 0) - totals.get(ERRORS, 0))


def accounting_problems(totals):
  """The run's invariants, checked end to end; each broken one as a sentence with its numbers.

  Every URI listed must reach the selection step (to label, a duplicate, or already done),
  and every URI to label must end as exactly one row in a part the run kept; the rows are
  counted from the kept parts' footers, not from the steps that made them.
  """
  listed, to_label, duplicates, done, labelled, errors, missing_parts = (
      totals.get(name, 0) for name in ('uris_listed', 'uris_to_label', 'duplicate_uris',
                                       'already_done', LABELS, ERRORS, 'parts_missing'))
  problems = []
  selected = to_label + duplicates + done
  if selected != listed:
    problems.append(
        f'{listed} URIs were listed but {selected} came out of the selection step '
        f'({to_label} to label, {duplicates} duplicates, {done} already in the output): '
        f'{_difference(listed - selected)}')
  if labelled + errors != to_label:
    problems.append(
        f'{to_label} URIs were to be labelled but the output parts hold {labelled + errors} '
        f'rows for them ({labelled} labels, {errors} errors): '
        f'{_difference(to_label - labelled - errors)}')
  if missing_parts:
    problems.append(f'{missing_parts} parts that writers committed are gone from the output')
  return problems


def _difference(short_by):
  return f'{short_by} missing' if short_by > 0 else f'{-short_by} too many'


def directory_totals(output_dir):
  """Rows in the directory's parts now (labels, errors by kind) and the distinct URIs they
  hold: a URI with rows in two parts counts once. The parts are read a few at a time: on a
  bucket each is a round trip."""
  with concurrent.futures.ThreadPoolExecutor(_PART_READERS) as pool:
    labels = list(pool.map(lambda path: read_parquet(path, ['uri']),
                           part_paths(output_dir, LABELS)))
    errors = list(pool.map(lambda path: read_parquet(path, ['uri', 'error']),
                           part_paths(output_dir, ERRORS)))
  errors_by_kind = collections.Counter()
  for table in errors:
    errors_by_kind.update(table.column('error').to_pylist())
  uris = [chunk.cast(pa.large_string()) for table in labels + errors
          for chunk in table.column('uri').chunks]
  labelled = sum(table.num_rows for table in labels)
  error_rows = sum(table.num_rows for table in errors)
  return {'uris': labelled + error_rows,
          'distinct_uris': pc.count_distinct(pa.chunked_array(uris, pa.large_string())).as_py(),
          'labelled': labelled, 'errors': error_rows,
          'errors_by_kind': dict(sorted(errors_by_kind.items()))}


def repeated_uri_problems(totals):
  """The directory's own accounting: one row per URI. Rows outnumber URIs where two runs
  wrote into it at once, or a part was copied in from elsewhere."""
  rows, distinct = totals['uris'], totals.get('distinct_uris', totals['uris'])
  if rows <= distinct:
    return []
  return [f'the parts hold {rows:,} rows for {distinct:,} distinct URIs: {rows - distinct:,} '
          'rows repeat a URI']


def write_manifest(output_dir, run, identity):
  """OUTPUT_DIR/_manifest.json, about the whole directory: what produced its rows, the rows
  its parts hold now, and every run that wrote there (this one's entry replaced by `run`,
  whose accounting gains the directory's repeated URIs, if any). Written under a temporary
  name and renamed, so a reader never sees half of it."""
  earlier = read_manifest(output_dir) or {}
  runs = [entry for entry in earlier.get('runs', []) if entry.get('run_id') != run['run_id']]
  for entry in runs:
    if entry.get('status') == 'running':  # it ended without a word: killed
      entry['status'] = 'interrupted'
  totals = directory_totals(output_dir)
  repeated = repeated_uri_problems(totals)
  if repeated:
    run['accounting'] = {'complete': False,
                         'problems': run['accounting']['problems'] + repeated}
  manifest = {
      'output': output_dir,
      'identity': identity,
      'totals': totals,
      'runs': runs + [run],
  }
  write_bytes(FileSystems.join(output_dir, MANIFEST),
              json.dumps(manifest, indent=2).encode('utf-8'))
  return manifest


def error_fraction(manifest):
  counts = manifest['counts']
  processed = counts['labelled'] + counts['errors']
  return counts['errors'] / processed if processed else 0.0


def summary(manifest, totals):
  """What the run did, in a few lines; `totals` (the directory's) tell which files it holds."""
  counts = manifest['counts']
  lines = [f"label-images: {plural(counts['labelled'], 'image')} labelled, "
           f"{plural(counts['errors'], 'error')} (of {plural(counts['uris_to_label'], 'URI')} "
           f"to label) in {manifest['wall_seconds']:.1f} s "
           f"({manifest['images_per_second'] or 0:.1f} images/s)"]
  if manifest['errors_by_kind']:
    lines.append(errors_by_kind_line(manifest['errors_by_kind']))
  lines.append(f"  skipped: {plural(counts['duplicate_uris'], 'duplicate URI')}, "
               f"{plural(counts['blank_entries'], 'blank entry', 'blank entries')}, "
               f"{counts['already_done']:,} already in the output")
  lines.append(f"  model: {manifest['model_description']}; labels: {manifest['labels']}")
  by_engine = manifest.get('images_by_engine')
  if by_engine:
    lines.append('  engine: ' + ', '.join(f'{name} ({n:,} images)'
                                          for name, n in by_engine.items())
                 + f" at {manifest.get('precision')}")
  if manifest.get('min_score') is not None:
    lines.append(f"  none of the classes (top score below --min_score {manifest['min_score']:g}): "
                 f"{plural(counts[NONE_OF_THE_CLASSES], 'image')}")
  timings = _timings(manifest['distributions'])
  if timings:
    lines.append('  ' + timings)
  moved = manifest.get('damaged_parts_set_aside') or []
  if moved:
    lines.append(f"  set aside: {plural(len(moved), 'damaged part')} (cannot be read as "
                 f"Parquet), kept in {FileSystems.join(manifest['output'], DAMAGED_FOLDER)}/; "
                 'the images they held were labelled again')
  for problem in manifest['accounting']['problems']:
    lines.append(f'  INCOMPLETE: {problem}')
  held = [part_glob(kind) for kind, rows in ((LABELS, totals['labelled']),
                                             (ERRORS, totals['errors'])) if rows]
  lines.append('  output: ' + ', '.join(FileSystems.join(manifest['output'], name)
                                        for name in held + [MANIFEST]))
  return '\n'.join(lines)


def errors_by_kind_line(errors_by_kind):
  """'  errors by kind: not_found 3, truncated 1', for a summary."""
  return '  errors by kind: ' + ', '.join(f'{kind} {n:,}' for kind, n in errors_by_kind.items())


def _timings(distributions):
  parts = []
  if 'decode_ms' in distributions:
    parts.append(f"decode {distributions['decode_ms']['mean']:.1f} ms/image")
  latency = distributions.get('inference_batch_latency_micro_secs')
  batch = distributions.get('inference_request_batch_size')
  if latency and batch:
    parts.append(f"inference {latency['mean'] / 1000:.0f} ms per batch of "
                 f"{batch['mean']:.1f} images")
  if 'image_bytes' in distributions:
    parts.append(f"{distributions['image_bytes']['mean'] / 1024:.0f} KB read per image")
  return ', '.join(parts)


def now():
  return datetime.datetime.now(datetime.timezone.utc)
