"""label-images report: one self-contained HTML page about an output directory.

  label-images report OUTPUT_DIR [--html PATH] [--low_confidence 0.5]

The run (from the manifest), the labels and how sure the model was, examples of the most
common labels, the least confident images, the errors by kind and, once `label-images
duplicates` has run, the near-duplicate groups. Plots are SVG drawn by matplotlib and
thumbnails are inlined JPEGs: the file opens offline, with no script at all.
"""

import argparse
import datetime
import html
import io

from apache_beam.io.filesystems import FileSystems

from pipeline import label_stats, results
from pipeline.console import add_verbose_flag, status
from pipeline.output_dir import REPORT_FILE
from pipeline.thumbnails import thumbnails
from transforms.files import write_bytes

TOP_LABELS = 30
LABELS_WITH_EXAMPLES = 10
DEFAULT_LOW_CONFIDENCE = 0.5

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0;
       background: #f6f7f9; color: #1d2330; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 36px 0 12px; border-bottom: 1px solid #d9dde5;
     padding-bottom: 6px; }
.muted { color: #5d6678; font-size: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 16px; }
.card { background: white; border-radius: 8px; padding: 12px 16px; min-width: 130px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card b { display: block; font-size: 22px; }
.card span { color: #5d6678; font-size: 13px; }
.plot { background: white; border-radius: 8px; padding: 8px; margin: 8px 0;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.plot svg { width: 100%; height: auto; }
.strip { display: flex; gap: 8px; flex-wrap: wrap; margin: 4px 0 16px; }
figure { margin: 0; width: 120px; font-size: 12px; }
figure img, .missing { width: 120px; height: 120px; object-fit: cover; border-radius: 6px;
                       background: #dfe3ea; display: block; }
.missing { display: flex; align-items: center; justify-content: center; color: #5d6678; }
figcaption { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; background: white; font-size: 14px; }
td, th { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eceef2;
         vertical-align: top; }
td img, td .missing { width: 72px; height: 72px; }
code { font-size: 12px; word-break: break-all; }
dl.versions { display: grid; grid-template-columns: max-content auto; gap: 2px 16px;
              font-size: 13px; }
dl.versions dd { margin: 0; }
"""


def _svg(figure):
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  buffer = io.StringIO()
  figure.savefig(buffer, format='svg', bbox_inches='tight')
  plt.close(figure)
  svg = buffer.getvalue()
  return svg[svg.index('<svg'):]  # inline: without the XML prolog and DOCTYPE


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  plt.rcParams.update({'font.size': 10, 'axes.spines.top': False,
                       'axes.spines.right': False, 'svg.fonttype': 'path'})
  return plt


def label_plot(label_counts):
  plt = _pyplot()
  top = label_counts.most_common(TOP_LABELS)
  other = sum(label_counts.values()) - sum(count for _, count in top)
  names = [name for name, _ in top] + (['(all other labels)'] if other else [])
  counts = [count for _, count in top] + ([other] if other else [])
  figure, axes = plt.subplots(figsize=(10, 0.26 * len(names) + 0.8))
  bars = axes.barh(range(len(names)), counts, color=['#3b6fd4'] * len(top) + ['#a8b3c7'])
  axes.set_yticks(range(len(names)), [name[:40] for name in names])
  axes.invert_yaxis()
  axes.bar_label(bars, [f'{count:,}' for count in counts], padding=3, fontsize=8)
  axes.set_xlabel('images')
  return _svg(figure)


def score_plot(histogram, low_confidence):
  plt = _pyplot()
  figure, axes = plt.subplots(figsize=(10, 2.8))
  edges = label_stats.SCORE_BINS
  axes.bar(edges[:-1], histogram, width=edges[1] - edges[0], align='edge',
           color=['#d9822b' if edge < low_confidence else '#3b6fd4' for edge in edges[:-1]])
  axes.axvline(low_confidence, color='#1d2330', linestyle='--', linewidth=1)
  axes.set_xlim(0, 1)
  axes.set_xlabel('score of the top label (softmax probability)')
  axes.set_ylabel('images')
  return _svg(figure)


def _images(count):
  return f'{count:,} image' + ('' if count == 1 else 's')


def _e(value):
  return html.escape(str(value))


def _image(uri, pictures, caption=None):
  data = pictures.get(uri)
  picture = (f'<img src="{data}" alt="{_e(uri)}">' if data
             else '<div class="missing">unavailable</div>')
  if caption is None:
    return picture
  return f'<figure title="{_e(uri)}">{picture}<figcaption>{_e(caption)}</figcaption></figure>'


def _run_section(manifest, stats, errors):
  cards = [('images labelled', f'{stats.images:,}'), ('errors', f'{errors.errors:,}'),
           ('distinct labels', f'{len(stats.label_counts):,}')]
  details = ''
  if manifest and manifest.get('runs'):
    last, identity = manifest['runs'][-1], manifest.get('identity') or {}
    rate = last.get('images_per_second')
    cards += [('runs', f"{len(manifest['runs']):,}"),
              ('images/s (last run)', f'{rate:,.1f}' if rate else 'n/a'),
              ('engine', f"{identity.get('engine', 'n/a')} ({identity.get('precision', '?')})"),
              ('runner', last.get('runner', 'n/a'))]
    versions = ''.join(f'<dt>{_e(name)}</dt><dd>{_e(version)}</dd>'
                       for name, version in last.get('versions', {}).items())
    details = (f'<p class="muted">Last run {_e(last.get("run_id"))} '
               f'({_e(last.get("status"))}): {_e(last.get("started_at", "")[:19])} to '
               f'{_e((last.get("finished_at") or "")[:19])} UTC, {_e(last.get("wall_seconds"))} s. '
               f'Model <code>{_e(identity.get("model_handle"))}</code>, embedding <code>'
               f'{_e(identity.get("feature_handle"))}</code>.</p>'
               f'<dl class="versions">{versions}</dl>')
  card_html = ''.join(f'<div class="card"><b>{_e(value)}</b><span>{_e(name)}</span></div>'
                      for name, value in cards)
  return f'<div class="cards">{card_html}</div>{details}'


def _examples_section(stats, pictures):
  rows = []
  for label, count in stats.label_counts.most_common(LABELS_WITH_EXAMPLES):
    strip = ''.join(_image(uri, pictures, f'{score:.2f}')
                    for score, uri in stats.examples[label])
    rows.append(f'<h3>{_e(label)} <span class="muted">{_images(count)}</span></h3>'
                f'<div class="strip">{strip}</div>')
  return ''.join(rows)


def _least_confident_section(stats, pictures):
  rows = ''.join(
      f'<tr><td>{_image(row["uri"], pictures)}</td><td><code>{_e(row["uri"])}</code></td><td>'
      + '<br>'.join(f'{_e(label)} ({score:.2f})' for label, score in
                    zip(row['top_k_labels'][:3], row['top_k_scores'][:3]))
      + '</td></tr>' for row in stats.least_confident)
  return f'<table><tr><th></th><th>image</th><th>top 3</th></tr>{rows}</table>'


def _errors_section(errors):
  if not errors.errors:
    return '<p>No image failed.</p>'
  rows = ''.join(
      f'<tr><td>{_e(stage)}</td><td>{_e(error)}</td><td>{count:,}</td><td>'
      + '<br>'.join(f'<code>{_e(uri)}</code>: {_e(message)}'
                    for uri, message in errors.examples[(stage, error)])
      + '</td></tr>' for (stage, error), count in errors.by_kind.most_common())
  return ('<table><tr><th>stage</th><th>kind</th><th>images</th><th>examples</th></tr>'
          f'{rows}</table>')


def _duplicates_section(duplicates, pictures):
  if duplicates is None:
    return ('<p class="muted">Not computed: run <code>label-images duplicates OUTPUT_DIR'
            '</code>, then this report again.</p>')
  images, groups, members = duplicates
  if not images:
    return '<p>No near-duplicates.</p>'
  strips = ''.join(
      f'<h3>Group of {len(uris)}{"+" if len(uris) == 6 else ""}</h3><div class="strip">'
      + ''.join(_image(uri, pictures, uri.rsplit('/', 1)[-1]) for uri in uris) + '</div>'
      for uris in members)
  return (f'<p>{_images(images)} in {groups:,} group{"" if groups == 1 else "s"}; the largest:</p>'
          f'{strips}')


def render(output_dir, low_confidence=DEFAULT_LOW_CONFIDENCE):
  """The page, as a string."""
  manifest = results.read_manifest(output_dir)
  status('aggregating labels')
  stats = label_stats.label_stats(output_dir, low_confidence)
  errors = label_stats.error_stats(output_dir)
  duplicates = label_stats.duplicate_groups(output_dir)
  shown = ([uri for label, _ in stats.label_counts.most_common(LABELS_WITH_EXAMPLES)
            for _, uri in stats.examples[label]]
           + [row['uri'] for row in stats.least_confident]
           + [uri for uris in (duplicates[2] if duplicates else []) for uri in uris])
  status(f'reading {len(set(shown))} thumbnails')
  pictures = thumbnails(shown)
  share = stats.below_threshold / stats.images
  generated = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>label-images report: {_e(output_dir)}</title><style>{_STYLE}</style></head>
<body><main>
<h1>label-images report</h1>
<p class="muted"><code>{_e(output_dir)}</code>, generated {generated}</p>
<section id="run"><h2>The run</h2>{_run_section(manifest, stats, errors)}</section>
<section id="labels"><h2>Labels</h2>
<p>The {min(TOP_LABELS, len(stats.label_counts))} most common top labels of
{stats.images:,} images.</p>
<div class="plot">{label_plot(stats.label_counts)}</div></section>
<section id="confidence"><h2>Confidence</h2>
<p><b>{share:.1%}</b> of images ({stats.below_threshold:,}) have a top score below
{low_confidence:g}: the model is unsure what they show.</p>
<div class="plot">{score_plot(stats.score_histogram, low_confidence)}</div></section>
<section id="examples"><h2>Examples of the most common labels</h2>
<p class="muted">The most confident images of each label, with their score.</p>
{_examples_section(stats, pictures)}</section>
<section id="least-confident"><h2>The least confident images</h2>
{_least_confident_section(stats, pictures)}</section>
<section id="errors"><h2>Errors</h2>{_errors_section(errors)}</section>
<section id="duplicates"><h2>Near-duplicates</h2>{_duplicates_section(duplicates, pictures)}
</section>
</main></body></html>
"""


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='label-images report',
      description='Write one self-contained HTML page about an output directory.')
  parser.add_argument('output_dir', help='A directory label-images wrote (local or gs://).')
  parser.add_argument('--html', help=f'Where to write the page. Default: OUTPUT_DIR/{REPORT_FILE}')
  parser.add_argument(
      '--low_confidence', type=float, default=DEFAULT_LOW_CONFIDENCE,
      help='Top scores below this count as unsure. Default: %(default)s')
  add_verbose_flag(parser)
  return results.parse_with_filesystem_options(parser, argv)


def main(argv):
  args = parse_args(argv)
  page = render(args.output_dir, args.low_confidence)
  path = args.html or FileSystems.join(args.output_dir, REPORT_FILE)
  write_bytes(path, page.encode('utf-8'))
  print(f'label-images: wrote {path}')
  return 0
