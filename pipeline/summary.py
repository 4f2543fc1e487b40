"""The end-of-run summary, from the pipeline's counters."""

from apache_beam.metrics.metric import MetricsFilter


def counters(result):
  """{name: value} of the pipeline's counters in the 'label_images' namespace."""
  query = result.metrics().query(MetricsFilter().with_namespace('label_images'))
  totals = {}
  for counter in query['counters']:
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
  return totals


def summary(totals, output, seconds):
  labelled, errors = totals.get('labels', 0), totals.get('errors', 0)
  lines = [f'label-images: {labelled} images labelled, {errors} errors in {seconds:.1f} s '
           f'({labelled / max(seconds, 1e-9):.1f} images/s)']
  kinds = sorted((name.split('.', 1)[1], n) for name, n in totals.items()
                 if name.startswith('errors.'))
  if kinds:
    lines.append('  errors by kind: ' + ', '.join(f'{kind} {n}' for kind, n in kinds))
  lines.append(f'  output: {output}/labels-*.parquet, {output}/errors-*.parquet')
  return '\n'.join(lines)
