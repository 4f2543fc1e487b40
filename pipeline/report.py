"""The end-of-run report: the summary printed, and OUTPUT_DIR/manifest.json."""

import collections
import datetime
import json
import platform
from importlib import metadata

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.output_dir import MANIFEST
from transforms.metrics import NAMESPACE
from transforms.schema import ERRORS, LABELS

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


def build_manifest(args, pipeline_options, totals, distributions, started_at, finished_at):
  labelled, errors = totals.get(LABELS, 0), totals.get(ERRORS, 0)
  seconds = (finished_at - started_at).total_seconds()
  return {
      'input': args.input,
      'output': args.output,
      'model_handle': args.model_handle,
      'feature_handle': args.feature_handle,
      'runner': pipeline_options.view_as(StandardOptions).runner or 'DirectRunner',
      'resumed': bool(args.resume),
      'started_at': started_at.isoformat(),
      'finished_at': finished_at.isoformat(),
      'wall_seconds': round(seconds, 3),
      'images_per_second': round(labelled / seconds, 2) if seconds > 0 else None,
      'counts': {
          'uris_listed': totals.get('uris_listed', 0),
          'blank_entries': totals.get('blank_entries', 0),
          'duplicate_uris': totals.get('duplicate_uris', 0),
          'already_done': totals.get('already_done', 0),
          'uris_to_label': totals.get('uris_to_label', 0),
          'labelled': labelled,
          'errors': errors,
          'unaccounted': totals.get('uris_to_label', 0) - labelled - errors,
          'read_retries': totals.get('read_retries', 0),
      },
      'errors_by_kind': {name.split('.', 1)[1]: n for name, n in sorted(totals.items())
                         if name.startswith(f'{ERRORS}.')},
      'distributions': distributions,
      'versions': {'python': platform.python_version(),
                   **{package: _version(package) for package in _VERSIONED_PACKAGES}},
  }


def write_manifest(output_dir, manifest):
  path = FileSystems.join(output_dir, MANIFEST)
  with FileSystems.create(path) as f:
    f.write(json.dumps(manifest, indent=2).encode('utf-8'))
  return path


def error_fraction(manifest):
  counts = manifest['counts']
  processed = counts['labelled'] + counts['errors']
  return counts['errors'] / processed if processed else 0.0


def summary(manifest):
  counts = manifest['counts']
  lines = [f"label-images: {counts['labelled']} images labelled, {counts['errors']} errors "
           f"(of {counts['uris_to_label']} URIs to label) in {manifest['wall_seconds']:.1f} s "
           f"({manifest['images_per_second'] or 0:.1f} images/s)"]
  if manifest['errors_by_kind']:
    lines.append('  errors by kind: ' + ', '.join(
        f'{kind} {n}' for kind, n in manifest['errors_by_kind'].items()))
  lines.append(f"  skipped: {counts['duplicate_uris']} duplicate URIs, "
               f"{counts['blank_entries']} blank entries, "
               f"{counts['already_done']} already in the output")
  timings = _timings(manifest['distributions'])
  if timings:
    lines.append('  ' + timings)
  if counts['unaccounted']:
    lines.append(f"  WARNING: {counts['unaccounted']} URIs have neither a label nor an error row")
  output = manifest['output']
  lines.append(f'  output: {output}/labels-*.parquet, {output}/errors-*.parquet, '
               f'{output}/{MANIFEST}')
  return '\n'.join(lines)


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
