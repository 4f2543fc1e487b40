"""label-images report: one self-contained HTML page about an output directory.

  label-images report OUTPUT_DIR [--html PATH] [--low_confidence 0.5]

The run (from the manifest), the labels and how sure the model was, examples of the most
common labels, the least confident images, the errors by kind and, once `label-images
duplicates` has run, the near-duplicate groups (or a note that they are out of date, where
they were found among other parts than the output holds now). An output where every image
failed gets the run and its errors. Plots are SVG drawn by matplotlib and thumbnails are
inlined JPEGs: the file opens offline, with no script at all.
"""

import argparse
import datetime
import html
import io
import shlex
import sys

from apache_beam.io.filesystems import FileSystems

from pipeline import label_stats, results
from pipeline.console import add_verbose_flag, plural, shortened, status
from pipeline.duplicates import damaged_duplicates_refreshed
from pipeline.output_dir import REPORT_FILE
from pipeline.report import directory_totals, repeated_uri_problems
from pipeline.thumbnails import thumbnails
from transforms.files import write_bytes
from transforms.model_spec import recorded_spec
from transforms.schema import ERRORS, LABELS

TOP_LABELS = 30
LABEL_CHARS = 40  # of a label's name beside its bar
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
.problem { background: #fdecea; color: #8a1c12; border-radius: 6px; padding: 8px 12px; }
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
.missing { display: flex; align-items: center; justify-content: center; color: #5d6678;
           font-size: 13px; }
figcaption { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; background: white; font-size: 14px; }
td, th { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eceef2;
         vertical-align: top; }
td img, td .missing { width: 72px; height: 72px; }
td .missing { font-size: 11px; }
code { font-size: 12px; overflow-wrap: anywhere; }
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


def _count_axis(plt, axis):
  """Ticks at whole numbers only: there is no half an image."""
  axis.set_major_locator(plt.MaxNLocator(integer=True))


def _with_titles(svg, titles):
  """The SVG with a <title> child, SVG's tooltip (its elements take no title attribute), in
  each group of titles, {group id: text}."""
  for gid, title in titles.items():
    svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{_e(title)}</title>', 1)
  return svg


def _name_ticks(axes, names):
  """Labels the bars with names, shortened where long; returns {group id: name} of the
  shortened ones, for _with_titles."""
  ticks = axes.set_yticks(range(len(names)), [shortened(name, LABEL_CHARS) for name in names])
  titles = {}
  for number, (tick, name) in enumerate(zip(ticks, names)):
    if tick.label1.get_text() != name:
      tick.label1.set_gid(f'label-tick-{number}')
      titles[f'label-tick-{number}'] = name
  return titles


def label_plot(label_counts):
  plt = _pyplot()
  top = label_counts.most_common(TOP_LABELS)
  other = sum(label_counts.values()) - sum(count for _, count in top)
  names = [name for name, _ in top] + (['(all other labels)'] if other else [])
  counts = [count for _, count in top] + ([other] if other else [])
  figure, axes = plt.subplots(figsize=(10, 0.26 * len(names) + 0.8))
  bars = axes.barh(range(len(names)), counts, color=['#3b6fd4'] * len(top) + ['#a8b3c7'])
  titles = _name_ticks(axes, names)
  axes.invert_yaxis()
  axes.bar_label(bars, [f'{count:,}' for count in counts], padding=3, fontsize=8)
  axes.set_xlabel('images')
  _count_axis(plt, axes.xaxis)
  return _with_titles(_svg(figure), titles)


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
  _count_axis(plt, axes.yaxis)
  return _svg(figure)


def _images(count):
  return plural(count, 'image')


def _e(value):
  return html.escape(str(value))


def _uri(uri):
  """The URI as code that wraps after a slash rather than inside a name."""
  return '<code>' + '/<wbr>'.join(_e(part) for part in uri.split('/')) + '</code>'


def _image(uri, pictures, caption=None):
  data = pictures.get(uri)
  picture = (f'<img src="{data}" alt="{_e(uri)}">' if data
             else '<div class="missing">unavailable</div>')
  if caption is None:
    return picture
  return f'<figure title="{_e(uri)}">{picture}<figcaption>{_e(caption)}</figcaption></figure>'


def _card(value, name):
  return f'<div class="card"><b>{_e(value)}</b><span>{_e(name)}</span></div>'


def _count_card(count, noun, after=''):
  """A card of `count` nouns: '1 / image labelled', '2 / images labelled'."""
  number, nouns = plural(count, noun).split(' ', 1)
  return _card(number, nouns + after)


def _run_section(manifest, stats, errors):
  cards = [_count_card(stats.images, 'image', ' labelled'), _count_card(errors.errors, 'error'),
           _count_card(len(stats.label_counts), 'distinct label')]
  details = ''
  if manifest and manifest.get('runs'):
    last, identity = manifest['runs'][-1], manifest.get('identity') or {}
    rate = last.get('images_per_second')
    cards += [_count_card(len(manifest['runs']), 'run'),
              _card(f'{rate:,.1f}' if rate else 'n/a', 'images/s (last run)'),
              _card(f"{identity.get('engine', 'n/a')} ({identity.get('precision', '?')})",
                    'engine'),
              _card(last.get('runner', 'n/a'), 'runner')]
    versions = ''.join(f'<dt>{_e(name)}</dt><dd>{_e(version)}</dd>'
                       for name, version in last.get('versions', {}).items())
    details = (f'<p class="muted">Last run {_e(last.get("run_id"))} '
               f'({_e(last.get("status"))}): {_e(last.get("started_at", "")[:19])} to '
               f'{_e((last.get("finished_at") or "")[:19])} UTC, {_e(last.get("wall_seconds"))} s. '
               f'{_model_line(identity)}</p><dl class="versions">{versions}</dl>')
  return f'<div class="cards">{"".join(cards)}</div>{details}'


def _model_line(identity):
  """'Model <handle>, embedding <handle>: 224x224 pixels, ...': the embedding's handle only
  where a second model gives it."""
  model, feature = identity.get('model_handle'), identity.get('feature_handle')
  embedding = (f', embedding <code>{_e(feature)}</code>' if feature and feature != model
               else '')
  return (f'Model <code>{_e(model)}</code>{embedding}: '
          f'{_e(recorded_spec(identity).describe())}.')


def _built_from(parts, stats, errors, generated):
  """What the page was computed from, and when."""
  return (f'built from {plural(stats.images, "label row")} in '
          f'{plural(len(parts[LABELS]), "part")} and {plural(errors.errors, "error row")} in '
          f'{plural(len(parts[ERRORS]), "part")}, at {generated}')


def _labels_section(stats):
  distinct = len(stats.label_counts)
  shown = (f'; the {TOP_LABELS} most common, and all others together'
           if distinct > TOP_LABELS else '')
  return (f'<p>{plural(distinct, "distinct top label")} over {_images(stats.images)}{shown}.'
          f'</p><div class="plot">{label_plot(stats.label_counts)}</div>')


def _confidence_section(stats, low_confidence):
  below, one = stats.below_threshold, stats.below_threshold == 1
  return (f'<p><b>{_images(below)}</b> of {stats.images:,} '
          f'({below / stats.images:.1%}) {"has" if one else "have"} a top score below '
          f'{low_confidence:g}: the model is unsure what {"it shows" if one else "they show"}.'
          f'</p><div class="plot">{score_plot(stats.score_histogram, low_confidence)}</div>')


def _examples_section(stats, pictures):
  rows = []
  for label, count in stats.label_counts.most_common(LABELS_WITH_EXAMPLES):
    strip = ''.join(_image(uri, pictures, f'{score:.2f}')
                    for score, uri in stats.examples[label])
    rows.append(f'<h3>{_e(label)} <span class="muted">{_images(count)}</span></h3>'
                f'<div class="strip">{strip}</div>')
  return ('<p class="muted">The most confident images of each label, with their score.</p>'
          + ''.join(rows))


def _least_confident_section(stats, pictures):
  rows = ''.join(
      f'<tr><td>{_image(row["uri"], pictures)}</td><td>{_uri(row["uri"])}</td><td>'
      + '<br>'.join(f'{_e(label)} ({score:.2f})' for label, score in
                    zip(row['top_k_labels'][:3], row['top_k_scores'][:3]))
      + '</td></tr>' for row in stats.least_confident)
  return f'<table><tr><th></th><th>image</th><th>top 3</th></tr>{rows}</table>'


def _no_labels_section(errors):
  why = ' Every image failed: the errors below say why.' if errors.errors else ''
  return f'<p>No image was labelled.{why}</p>'


def _errors_section(errors):
  if not errors.errors:
    return '<p>No image failed.</p>'
  rows = ''.join(
      f'<tr><td>{_e(stage)}</td><td>{_e(error)}</td><td>{count:,}</td><td>'
      + '<br>'.join(f'{_uri(uri)}: {_e(message)}'
                    for uri, message in errors.examples[(stage, error)])
      + '</td></tr>' for (stage, error), count in errors.by_kind.most_common())
  return ('<table><tr><th>stage</th><th>kind</th><th>images</th><th>examples</th></tr>'
          f'{rows}</table>')


def _is_current(duplicates, label_paths):
  """Whether the duplicates were found among the labels parts there are now; a file of an
  earlier version, which does not say, is not."""
  return duplicates.parts == results.part_rows(label_paths)


def _group(size, uris, pictures):
  shown = '' if size == len(uris) else f' <span class="muted">({len(uris)} shown)</span>'
  strip = ''.join(_image(uri, pictures, uri.rsplit('/', 1)[-1]) for uri in uris)
  return f'<h3>Group of {_images(size)}{shown}</h3><div class="strip">{strip}</div>'


_NO_EMBEDDINGS = ('<p class="muted">None to find: the model gives class scores only, no '
                  'embeddings to compare.</p>')


def _duplicates_section(output_dir, duplicates, current, parts_now, pictures):
  """current: whether duplicates were found among the parts there are now, parts_now."""
  refresh = f'<code>label-images duplicates {_e(shlex.quote(output_dir))}</code>'
  if duplicates is None:
    return f'<p class="muted">Not computed: run {refresh}, then this report again.</p>'
  if not current:
    built_from = (f'built from {plural(len(duplicates.parts), "part")}' if duplicates.parts
                  else 'made by an earlier version, which did not record its parts')
    return (f'<p>The near-duplicates are out of date: {built_from}, the output now has '
            f'{parts_now:,}; refresh with: {refresh}</p>')
  threshold = ('' if duplicates.threshold is None
               else f' (cosine {duplicates.threshold:g} or above)')
  if not duplicates.images:
    return f'<p>No near-duplicates{threshold}.</p>'
  groups = ''.join(_group(size, uris, pictures) for size, uris in duplicates.largest)
  which = '; the largest' if duplicates.groups > len(duplicates.largest) else ''
  return (f'<p>{_images(duplicates.images)} in {plural(duplicates.groups, "group")}'
          f'{threshold}{which}:</p>{groups}')


def _shown_uris(stats, groups):
  """The images the page shows a thumbnail of; groups: [(size, uris)] of near-duplicates."""
  return ([uri for label, _ in stats.label_counts.most_common(LABELS_WITH_EXAMPLES)
           for _, uri in stats.examples[label]]
          + [row['uri'] for row in stats.least_confident]
          + [uri for _, uris in groups for uri in uris])


def _sections(output_dir, low_confidence, parts, stats, errors):
  """[(id, heading, html)] of the page below the run."""
  if not stats.images:
    return [('labels', 'Labels', _no_labels_section(errors)),
            ('errors', 'Errors', _errors_section(errors))]
  with damaged_duplicates_refreshed(output_dir):
    duplicates = label_stats.duplicate_groups(output_dir)
  current = duplicates is not None and _is_current(duplicates, parts[LABELS])
  uris = _shown_uris(stats, duplicates.largest if current else [])
  status(f'reading {len(set(uris))} thumbnails')
  pictures = thumbnails(uris)
  near_duplicates = (
      _duplicates_section(output_dir, duplicates, current, len(parts[LABELS]), pictures)
      if results.holds_embeddings(parts[LABELS]) else _NO_EMBEDDINGS)
  return [
      ('labels', 'Labels', _labels_section(stats)),
      ('confidence', 'Confidence', _confidence_section(stats, low_confidence)),
      ('examples', 'Examples of the most common labels', _examples_section(stats, pictures)),
      ('least-confident', 'The least confident images',
       _least_confident_section(stats, pictures)),
      ('errors', 'Errors', _errors_section(errors)),
      ('duplicates', 'Near-duplicates', near_duplicates),
  ]


def render(output_dir, low_confidence=DEFAULT_LOW_CONFIDENCE, problems=None):
  """The page, as a string; `problems`, the directory's repeated_problems where known."""
  parts = results.finished_parts(output_dir)
  manifest = results.read_manifest(output_dir)
  status('aggregating labels')
  stats = label_stats.label_stats(parts[LABELS], low_confidence)
  errors = label_stats.error_stats(parts[ERRORS])
  problems = repeated_problems(output_dir) if problems is None else problems
  sections = ''.join(f'<section id="{section}"><h2>{heading}</h2>{body}</section>\n'
                     for section, heading, body in _sections(output_dir, low_confidence,
                                                             parts, stats, errors))
  generated = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>label-images report: {_e(output_dir)}</title><style>{_STYLE}</style></head>
<body><main>
<h1>label-images report</h1>
<p class="muted"><code>{_e(output_dir)}</code>: {_built_from(parts, stats, errors, generated)}</p>
{''.join(f'<p class="problem">INCOMPLETE: {_e(problem)}</p>' for problem in problems)}
<section id="run"><h2>The run</h2>{_run_section(manifest, stats, errors)}</section>
{sections}</main></body></html>
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


def repeated_problems(output_dir):
  """The directory's own accounting (one row per URI) as sentences, with what mends it."""
  return [f'{problem}; `label-images ... --output {output_dir} --resume` removes the extra '
          'copies' for problem in repeated_uri_problems(directory_totals(output_dir))]


def main(argv):
  args = parse_args(argv)
  problems = repeated_problems(args.output_dir)
  for problem in problems:
    print(f'label-images: INCOMPLETE: {problem}', file=sys.stderr)
  page = render(args.output_dir, args.low_confidence, problems)
  path = args.html or FileSystems.join(args.output_dir, REPORT_FILE)
  write_bytes(path, page.encode('utf-8'))
  print(f'label-images: wrote {path}')
  return 0
