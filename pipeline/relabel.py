"""label-images relabel: a head of your own classes applied to every stored embedding.

  label-images relabel OUTPUT_DIR --model_handle HEAD_DIR --output NEW_DIR [--min_score S]
                       [--top_k K] [--rows_per_file N] [--overwrite] [any Beam option]

A Beam pipeline over OUTPUT_DIR's labels parts (transforms/relabel.py): no image is read or
decoded. NEW_DIR gets the same schema, the label, score and top-k of the head (the
embedding, URI, width and height carried over, the `model` column naming HEAD_DIR), the
source's error rows copied, and the labelling command's guarantees: every row once, a
commit step that keeps only what successful bundles wrote, rows counted from the parts'
footers and checked against the source's, and a _manifest.json whose identity names the
head and the source directory. It runs where the labelling command runs: DirectRunner here,
Dataflow with --runner DataflowRunner and its options.

Refused with exit status 2 before any work: a head whose feature extractor is not the model
that made the stored embeddings (by the content hashes recorded in head.json and in
OUTPUT_DIR's manifest), a head of another embedding width, a directory of several models'
rows or without embeddings, and NEW_DIR that is OUTPUT_DIR or already holds results (unless
--overwrite). Exit status 4 where NEW_DIR's rows do not add up to OUTPUT_DIR's.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import logging
import os
import platform
import secrets
import sys
from importlib import metadata
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

from pipeline import report, results, stopping
from pipeline.dry_run import job_lines
from pipeline.console import (VERBOSE_HELP, log_to_file, plural, start_logging, status,
                              stderr_to_log)
from pipeline.failure_summary import summary_lines
from pipeline.options import (LOCAL_DEFAULTS, LabelImagesOptions, normalize_dry_run,
                              refuse_unknown_options, stray_values)
from pipeline.lease import LeaseError, holding_lease
from pipeline.output_dir import MANIFEST, LayoutError, OutputExistsError, prepare_output_dir
from pipeline.runner import (is_local, new_pipeline, runs_in_this_process,
                             runs_on_dataflow)
from pipeline.stopping import Interrupted, stop_on_signals
from transforms.files import parquet_file, parquet_rows
from transforms.head import LABELS_FILE, RECORD_FILE, WEIGHTS_FILE, load_head
from transforms.metrics import PROCESS_TALLY
from transforms.model_spec import CLASSIFIER, LOGITS, ONE_MODEL, PAIR, ModelSpec, recorded_spec
from transforms.model_store import bucket_files, hash_model_files, listing_digest
from transforms.relabel import (ROWS_READ, RelabelSettings, build_relabel_pipeline,
                                require_head_shape)
from transforms.rows import NONE_OF_THE_CLASSES
from transforms.schema import EMBEDDING, ERRORS, LABELS, part_glob

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 4
DEFAULT_TOP_K = 5  # the labelling command's, for a source without a labels row to tell
_FOOTER_READERS = 16
_WORKER_SCHEMES = ('gs://', 's3://', 'azfs://')
_VERSIONED_PACKAGES = ('label-images', 'apache-beam', 'pyarrow', 'numpy')
_FALSE = ('false', '0', 'no', '')


class RelabelRefused(Exception):
  """What makes relabelling impossible or wrong, found before any work: exit status 2."""


# The source directory --------------------------------------------------------------------


class Source(NamedTuple):
  """What the driver read of OUTPUT_DIR before anything runs."""
  output_dir: str
  identity: dict
  label_paths: list
  error_paths: list
  label_rows: int
  error_rows: int
  embedding_width: int
  models: tuple  # the distinct values of the `model` column
  top_k: int  # the length of the stored top-k lists


class _PartFacts(NamedTuple):
  rows: int
  has_embedding: bool
  width: object  # int; None where a tool rewrote the embeddings as plain lists
  models: frozenset


def _label_part_facts(path):
  """One labels part, from its footer and its `model` column (a few bytes per row: the
  embeddings are not read)."""
  try:
    with parquet_file(path) as parquet:  # DamagedPartError where it is not Parquet
      schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
      missing = [name for name in ('uri', 'model', 'top_k_labels') if name not in schema.names]
      if missing:
        raise RelabelRefused(f'{path} does not hold what label-images writes: no column '
                             f'{", ".join(missing)}')
      if EMBEDDING not in schema.names:
        return _PartFacts(rows, False, None, frozenset())
      embedding_type = schema.field(EMBEDDING).type
      width = embedding_type.list_size if pa.types.is_fixed_size_list(embedding_type) else None
      models = (pc.unique(parquet.read(columns=['model'], use_threads=False).column('model'))
                .to_pylist() if rows else [])
      return _PartFacts(rows, True, width, frozenset(models))
  except (pa.ArrowException, OSError, BeamIOError) as e:
    raise RelabelRefused(f'cannot read {path} as a labels part: {e}') from e


def _first_row(path, column):
  """The first row's value of `column` in a part that has rows."""
  with parquet_file(path) as parquet:
    group = next(number for number in range(parquet.num_row_groups)
                 if parquet.metadata.row_group(number).num_rows)
    return parquet.read_row_group(group, columns=[column], use_threads=False).column(0)[0]


def _in_parallel(function, paths):
  with concurrent.futures.ThreadPoolExecutor(_FOOTER_READERS) as pool:
    return list(pool.map(function, paths))


def read_source(output_dir):
  """The Source of OUTPUT_DIR; RelabelRefused where it cannot be relabelled."""
  parts = results.finished_parts(output_dir)
  manifest = results.read_manifest(output_dir) or {}
  identity = manifest.get('identity')
  if not identity:
    raise RelabelRefused(
        f'{output_dir} has no {MANIFEST} recording the model that made its embeddings: '
        'relabel cannot check that the head was trained on the same feature extractor')
  if recorded_spec(identity).form == CLASSIFIER:
    raise RelabelRefused(
        f'{output_dir} was labelled by a model of class scores only '
        f'({identity.get("model_handle")}): it holds no embeddings to relabel')
  if not parts[LABELS]:
    raise RelabelRefused(f'{output_dir} holds no labels-*.parquet: every image failed, there '
                         'is no embedding to relabel')
  facts = _in_parallel(_label_part_facts, parts[LABELS])
  if not all(fact.has_embedding for fact in facts):
    raise RelabelRefused(f'{output_dir} holds no embeddings (its labels parts have no '
                         f'{EMBEDDING} column): there is nothing to relabel')
  for number, fact in enumerate(facts):
    if fact.width is None and fact.rows:  # plain lists: the first one's length tells
      facts[number] = fact._replace(width=len(_first_row(parts[LABELS][number], EMBEDDING)))
  widths = {fact.width for fact in facts if fact.width is not None}
  if len(widths) > 1:
    listed = ', '.join(f'{width:,}' for width in sorted(widths))
    raise RelabelRefused(f'{output_dir} holds embeddings of several widths ({listed}): rows of '
                         'several models. Relabel one model\'s rows at a time.')
  models = sorted(set().union(*(fact.models for fact in facts)))
  if len(models) > 1:
    raise RelabelRefused(
        f'{output_dir} holds rows of several models ({", ".join(models)}): one head cannot '
        'apply to all of their embeddings. Label into one directory per model.')
  with_rows = [path for path, fact in zip(parts[LABELS], facts) if fact.rows]
  top_k = len(_first_row(with_rows[0], 'top_k_labels')) if with_rows else DEFAULT_TOP_K
  return Source(output_dir, identity, parts[LABELS], parts[ERRORS],
                sum(fact.rows for fact in facts), sum(_in_parallel(parquet_rows, parts[ERRORS])),
                widths.pop() if widths else None, tuple(models), top_k)


def extractor_files(identity):
  """The content hash of the model that made a directory's embeddings, as its identity
  records it: the feature-vector twin's files for a pair (and for a directory written before
  descriptions were recorded: the MobileNet V2 pair), the one model's files for one model,
  the original extractor's for a relabelled directory. None where it is not recorded."""
  if 'relabelled_from' in identity:
    return identity.get('feature_files')
  form = recorded_spec(identity).form
  if form == PAIR:
    return identity.get('feature_files')
  if form == ONE_MODEL:
    return identity.get('model_files')
  return None


def head_extractor(head):
  """head.json's record of the feature extractor the head was trained on."""
  extractor = head.record.get('feature_extractor')
  return extractor if isinstance(extractor, dict) else {}


def require_same_extractor(source, head, head_dir):
  """RelabelRefused where the head was not trained on the model that made the embeddings."""
  stored = extractor_files(source.identity)
  if not stored:
    raise RelabelRefused(
        f'the {MANIFEST} of {source.output_dir} records no content hash of the model that made '
        'its embeddings (an identity without "feature_files"/"model_files"): relabel cannot '
        'check that the head was trained on it')
  trained_on = head_extractor(head).get('files')
  if not trained_on:
    raise RelabelRefused(
        f'{head_dir}/{RECORD_FILE} records no content hash of its feature extractor '
        '(feature_extractor.files): relabel cannot check that it was trained on the model that '
        f'made the embeddings of {source.output_dir}')
  if trained_on != stored:
    handles = ', '.join(filter(None, (head_extractor(head).get('model_handle'),
                                      head_extractor(head).get('feature_handle'))))
    made_by = ', '.join(filter(None, (source.identity.get('model_handle'),
                                      source.identity.get('feature_handle'))))
    raise RelabelRefused(
        f'the head {head_dir} was trained on embeddings of another feature extractor '
        f'({handles or "?"}: {trained_on}) than the one that made those of {source.output_dir} '
        f'({made_by or "?"}: {stored}). Train a head on this directory\'s embeddings, or relabel '
        'a directory labelled with its extractor.')


def require_head_fits(source, head, head_dir):
  try:
    require_head_shape(head, source.embedding_width)
  except ValueError as e:
    raise RelabelRefused(f'{head_dir} cannot relabel {source.output_dir}: {e}') from e


def read_head(head_dir):
  try:
    return load_head(head_dir)
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise RelabelRefused(
        f'--model_handle {head_dir} is not a head that relabel can read ({WEIGHTS_FILE}, '
        f'{LABELS_FILE} and {RECORD_FILE}, as label-images train-head writes them): '
        f'{reason}') from e


# The identity and the manifest -----------------------------------------------------------


def head_fingerprint(head_dir):
  """A hash of HEAD_DIR's files, as pipeline.identity.model_fingerprint makes it for a local
  model; of its listing (paths, sizes, times) on a bucket."""
  if '://' not in head_dir:
    return 'sha256:' + hash_model_files(hashlib.sha256(), head_dir).hexdigest()
  return 'listing-sha256:' + listing_digest(bucket_files(head_dir)[1])


def relabelled_identity(args, source, head):
  """NEW_DIR's identity: the head (its files, classes, labels), the model that made the
  embeddings (carried from the source) and the source directory."""
  extractor_spec = head_extractor(head).get('spec') or {}
  image_size = tuple(extractor_spec.get('image_size')
                     or recorded_spec(source.identity).image_size)
  spec = ModelSpec(image_size, len(head.labels), LOGITS, source.embedding_width, ONE_MODEL,
                   class_output='logits', embedding_output='embedding')
  identity = source.identity
  return {
      'relabelled_from': source.output_dir,
      'source_identity': identity,
      'model_handle': args.model_handle,
      'feature_handle': None,
      'model_files': head_fingerprint(args.model_handle),
      'feature_files': extractor_files(identity),
      'model': spec.to_dict(),
      # How the embeddings were made: by the source's engine, precision and preprocessing.
      'engine': identity.get('engine'),
      'precision': identity.get('precision'),
      'int8_model_sha256': identity.get('int8_model_sha256'),
      'preprocessing': identity.get('preprocessing'),
      'labels': 'sha256:' + hashlib.sha256('\n'.join(head.labels).encode()).hexdigest(),
      'min_score': args.min_score,
  }


def _version(package):
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def accounting_problems(source, totals):
  """NEW_DIR's rows against OUTPUT_DIR's, each broken invariant a sentence with its numbers."""
  problems = []
  for kind, expected in ((LABELS, source.label_rows), (ERRORS, source.error_rows)):
    got = totals.get(kind, 0)
    if got != expected:
      short_by = expected - got
      problems.append(f'{source.output_dir} holds {expected:,} {kind} rows but the new parts '
                      f'hold {got:,}: ' + (f'{short_by:,} missing' if short_by > 0
                                           else f'{-short_by:,} too many'))
  if totals.get('parts_missing', 0):
    problems.append(f"{totals['parts_missing']:,} parts that writers committed are gone from "
                    'the output')
  return problems


class _ThisRun(NamedTuple):
  argv: list
  args: argparse.Namespace
  options: PipelineOptions
  source: Source
  head: object
  settings: RelabelSettings
  run_id: str
  started_at: datetime.datetime
  identity: dict
  lease: object  # lease.holding_lease's, given back before a stopped run exits
  log_path: str


def run_entry(this, totals, status_text):
  """This run's entry in NEW_DIR's manifest: the keys the labelling command's entries have
  that apply (the report reads images_per_second, runner, versions), and the relabelling's
  own counts."""
  finished_at = report.now()
  seconds = (finished_at - this.started_at).total_seconds()
  labelled, errors = totals.get(LABELS, 0), totals.get(ERRORS, 0)
  problems = (accounting_problems(this.source, totals) if status_text == 'completed'
              else [status_text])
  rate = round(labelled / seconds, 2) if seconds > 0 else None
  return {
      'run_id': this.run_id,
      'command': 'relabel',
      'status': status_text,
      'input': this.source.output_dir,
      'output': this.args.output,
      'model_handle': this.args.model_handle,
      'feature_handle': None,
      'model_description': recorded_spec(this.identity).describe(),
      'labels': f'{this.args.model_handle}/{LABELS_FILE}',
      'min_score': this.args.min_score,
      'top_k': this.settings.top_k,
      'engine': this.identity.get('engine'),
      'runner': this.options.view_as(StandardOptions).runner or 'DirectRunner',
      'resumed': False,
      'started_at': this.started_at.isoformat(),
      'finished_at': finished_at.isoformat(),
      'wall_seconds': round(seconds, 3),
      'images_per_second': rate,
      'rows_per_second': rate,
      'counts': {
          'source_labelled': this.source.label_rows,
          'source_errors': this.source.error_rows,
          'source_parts': len(this.source.label_paths) + len(this.source.error_paths),
          'rows_read': totals.get(ROWS_READ, 0),
          'labelled': labelled,
          'errors': errors,
          'unaccounted': this.source.label_rows + this.source.error_rows - labelled - errors,
          'parts': totals.get('parts', 0),
          'orphan_parts_deleted': totals.get('orphan_parts_deleted', 0),
          'parts_missing': totals.get('parts_missing', 0),
          NONE_OF_THE_CLASSES: totals.get(NONE_OF_THE_CLASSES, 0),
      },
      'accounting': {'complete': not problems, 'problems': problems},
      'errors_by_kind': {name.split('.', 1)[1]: n for name, n in sorted(totals.items())
                         if name.startswith(f'{ERRORS}.')},
      'distributions': {},
      'versions': {'python': platform.python_version(),
                   **{package: _version(package) for package in _VERSIONED_PACKAGES}},
  }


def _record(this, totals, status_text):
  entry = run_entry(this, totals, status_text)
  return entry, report.write_manifest(this.args.output, entry, this.identity)['totals']


def summary(entry, totals, head):
  """What the run did, in a few lines, like the labelling command's summary."""
  counts = entry['counts']
  lines = [f"label-images: relabelled {plural(counts['labelled'], 'row')} with "
           f"{entry['model_handle']} ({plural(len(head.labels), 'class', 'classes')}), "
           f"{plural(counts['errors'], 'error')} carried over, in {entry['wall_seconds']:.1f} s "
           f"({entry['rows_per_second'] or 0:,.0f} rows/s)"]
  if entry['errors_by_kind']:
    lines.append(report.errors_by_kind_line(entry['errors_by_kind']))
  lines.append(f"  from: {entry['input']} ({plural(counts['source_labelled'], 'row')}, "
               f"{plural(counts['source_errors'], 'error')}); top {entry['top_k']} kept")
  if entry.get('min_score') is not None:
    lines.append(f"  none of the classes (top score below --min_score {entry['min_score']:g}): "
                 f"{plural(counts[NONE_OF_THE_CLASSES], 'row')}")
  elif isinstance(head.record.get('suggested_min_score'), (int, float)):
    lines.append(f"  every row has a label; for an open set (none of the classes below a score), "
                 f"{RECORD_FILE} suggests --min_score {head.record['suggested_min_score']:g}")
  for problem in entry['accounting']['problems']:
    lines.append(f'  INCOMPLETE: {problem}')
  held = [part_glob(kind) for kind, rows in ((LABELS, totals['labelled']),
                                             (ERRORS, totals['errors'])) if rows]
  lines.append(f"  output ({plural(counts['parts'], 'part')}): " + ', '.join(
      FileSystems.join(entry['output'], name) for name in held + [MANIFEST]))
  return '\n'.join(lines)


# The command line ------------------------------------------------------------------------


def _switch(value):
  return value.lower() not in _FALSE


def _option_strings(parser):
  return {option for action in parser._actions  # pylint: disable=protected-access
          for option in action.option_strings}


def _labelling_only_options(parser):
  """The labelling command's own options that relabel does not take (--input, --engine, ...):
  Beam's parser knows them, so they would otherwise pass silently."""
  labelling = argparse.ArgumentParser(add_help=False)
  LabelImagesOptions._add_argparse_args(labelling)  # pylint: disable=protected-access
  return _option_strings(labelling) - _option_strings(parser)


def build_parser():
  parser = argparse.ArgumentParser(
      prog='label-images relabel', allow_abbrev=False,
      description='Apply a head of your own classes (label-images train-head) to the '
      'embeddings stored in OUTPUT_DIR, without reading an image: a new output directory with '
      'the same columns, the head\'s labels and scores, everything else carried over. Every '
      'standard Beam option (--runner, --project, --region, --temp_location, ...) is passed '
      'to the pipeline; --dry_run builds it without running it.')
  parser.add_argument('output_dir', metavar='OUTPUT_DIR', help='A directory label-images wrote, with embeddings '
                      '(local, gs://, s3:// or azfs://).')
  parser.add_argument('--model_handle', required=True, metavar='HEAD_DIR',
                      help='The head: a directory label-images train-head wrote.')
  parser.add_argument('--output', required=True, metavar='NEW_DIR',
                      help='The new directory: new, empty, or replaced with --overwrite.')
  parser.add_argument(
      '--min_score', type=float, metavar='S',
      help='Open set: a row whose top score is below this gets a null label and label_index '
      '(none of the classes; scores kept). head.json suggests a value. Default: every row '
      'gets its top class')
  parser.add_argument('--top_k', type=int, metavar='K',
                      help='Labels and scores kept per row. Default: as many as OUTPUT_DIR '
                      'keeps (at most the head\'s classes)')
  parser.add_argument('--rows_per_file', type=int, metavar='N',
                      help='Rows per Parquet part. Default: one part per part of OUTPUT_DIR')
  parser.add_argument('--overwrite', type=_switch, nargs='?', const=True, default=False,
                      help='Delete the results already in NEW_DIR first.')
  parser.add_argument('--verbose', type=_switch, nargs='?', const=True, default=False,
                      help=VERBOSE_HELP)
  return parser


def same_location(first, second):
  """Whether two directories are one: local paths compared resolved."""
  if '://' in first or '://' in second:
    return first.rstrip('/') == second.rstrip('/')
  return os.path.realpath(first) == os.path.realpath(second)


def parse_args(argv):
  """(our options, PipelineOptions of the Beam options among argv)."""
  parser = build_parser()
  labelling_only = _labelling_only_options(parser)
  for token in argv:
    if token == '--':
      break
    if token.split('=', 1)[0] in labelling_only:
      parser.error(f'{token.split("=", 1)[0]} is an option of the labelling command, not of '
                   'relabel: no image is read')
  refuse_unknown_options(parser, argv)
  args, beam_args = parser.parse_known_args(argv)
  stray = stray_values(beam_args)
  if stray:
    parser.error(f'unexpected arguments: {" ".join(stray[:3])}')
  if args.min_score is not None and not 0 <= args.min_score <= 1:
    parser.error('--min_score must be between 0 and 1')
  for name in ('top_k', 'rows_per_file'):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1')
  if any(char in args.output for char in '*?['):
    parser.error('--output must not contain *, ? or [: the output\'s parts are found by '
                 'patterns under it')
  args.output = args.output.rstrip('/') or '/'
  args.output_dir = args.output_dir.rstrip('/') or '/'
  args.model_handle = args.model_handle.rstrip('/') or '/'
  if '://' not in args.output and os.path.isfile(args.output):
    parser.exit(EXIT_USAGE, f'{parser.prog}: error: --output: {args.output} is a file, not a '
                'directory\n')
  return args, PipelineOptions(LOCAL_DEFAULTS + normalize_dry_run(beam_args))


def worker_location_problems(args):
  """Locations a remote job's workers cannot reach: paths on this machine."""
  return [f'{name} {value} is a path on this machine: the workers of a remote job cannot '
          'reach it. Copy it to a bucket (gs://...) and pass that'
          for name, value in (('OUTPUT_DIR', args.output_dir),
                               ('--model_handle', args.model_handle), ('--output', args.output))
          if not value.startswith(_WORKER_SCHEMES)]


def settings_for(args, source):
  return RelabelSettings(args.model_handle, source.embedding_width,
                         args.top_k or source.top_k, args.min_score, args.rows_per_file)


def build(pipeline_options, source, new_dir, run_id, settings):
  """The relabelling pipeline on its runner, built but not run."""
  try:
    pipeline = new_pipeline(pipeline_options)
  except ValueError as e:
    raise RelabelRefused(str(e)) from e
  build_relabel_pipeline(pipeline, source.label_paths + source.error_paths, new_dir, run_id,
                         settings)
  return pipeline


def job_description(args, pipeline_options, job, source, settings):
  """A few lines on the job a remote dry run built."""
  return '\n'.join(job_lines(pipeline_options, job) + [
      f'  relabel {source.output_dir} ({plural(source.label_rows, "row")} in '
      f'{plural(len(source.label_paths), "part")}, {plural(source.error_rows, "error")}) with '
      f'{args.model_handle}, top {settings.top_k} -> {args.output}',
  ])


def new_run_id(started_at):
  return f'{started_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}'


def _log_path(verbose):
  """The log file the command line opened (pipeline.run starts logging), or a new one."""
  for handler in logging.getLogger().handlers:
    if isinstance(handler, logging.FileHandler):
      return handler.baseFilename
  return start_logging(verbose)


def main(argv):
  """label-images relabel ARGV; returns the exit status."""
  try:
    return _run(argv)
  except (RelabelRefused, OutputExistsError, LayoutError, LeaseError, results.NoResultsError,
          results.MixedOriginError, results.UnreadablePartError) as e:
    print(f'label-images: {e}', file=sys.stderr)
    return EXIT_USAGE


def _run(argv):
  args, pipeline_options = parse_args(argv)
  log_path = _log_path(args.verbose)
  FileSystems.set_options(pipeline_options)  # the driver reads OUTPUT_DIR and HEAD_DIR
  if runs_on_dataflow(pipeline_options):
    problems = worker_location_problems(args)
    if problems:
      raise RelabelRefused('\n'.join(problems))
  if same_location(args.output_dir, args.output):
    raise RelabelRefused(f'--output {args.output} is OUTPUT_DIR itself: relabel writes a new '
                         'directory and leaves the source as it is; pass another --output')
  head = read_head(args.model_handle)
  source = read_source(args.output_dir)
  require_head_fits(source, head, args.model_handle)
  require_same_extractor(source, head, args.model_handle)
  settings = settings_for(args, source)
  if pipeline_options.view_as(TestOptions).dry_run:
    pipeline = build(pipeline_options, source, args.output, new_run_id(report.now()), settings)
    if is_local(pipeline_options):
      print('label-images: dry run: built the pipeline; nothing was run')
    else:
      print(job_description(args, pipeline_options, pipeline.run().job, source, settings))
    return 0
  started_at = report.now()
  run_id = new_run_id(started_at)
  with holding_lease(args.output, run_id, started_at,
                     runs_in_this_process(pipeline_options)) as lease:
    return _relabel(_ThisRun(argv, args, pipeline_options, source, head, settings, run_id,
                             started_at, relabelled_identity(args, source, head), lease,
                             log_path))


def _relabel(this):
  """The run, from its first write into NEW_DIR, which this process alone writes to."""
  args, source, head = this.args, this.source, this.head
  prepare_output_dir(args.output, overwrite=args.overwrite)
  _record(this, {}, 'running')  # before the first part: NEW_DIR says what made its rows
  status(f'label-images: relabelling {plural(source.label_rows, "row")} in '
         f'{plural(len(source.label_paths), "part")} of {source.output_dir} with '
         f'{args.model_handle} ({plural(len(head.labels), "class", "classes")})')
  result, console = None, sys.stderr
  try:
    with stop_on_signals(), stderr_to_log(this.log_path, args.verbose):
      try:
        result = build(this.options, source, args.output, this.run_id, this.settings).run()
        result.wait_until_finish()
      except Interrupted as stop:
        # Still inside: what the workers print as they stop goes to the log.
        _stop(stop, this, result, console)
  except RelabelRefused:
    raise
  except Exception as failure:  # pylint: disable=broad-except
    return _failed(failure, this)
  entry, totals = _record(this, report.read_metrics(result)[0], 'completed')
  print(summary(entry, totals, head))
  if this.lease.lost:
    print(f'label-images: {this.lease.lost}: relabel again with --overwrite.', file=sys.stderr)
    return EXIT_INCOMPLETE
  problems = entry['accounting']['problems']
  if problems:
    print(f'label-images: {args.output} does not account for every row of '
          f'{args.output_dir}: ' + '; '.join(problems) + '. Relabel again with --overwrite.',
          file=sys.stderr)
    return EXIT_INCOMPLETE
  return 0



def _failed(failure, this):
  log_to_file('the run failed', failure)
  lines = [f'label-images: full tracebacks: {this.log_path}']
  if runs_in_this_process(this.options):
    rows, committed = stopping.commit_after_stop(this.args.output, this.run_id)
    _record(this, {**PROCESS_TALLY.snapshot(), **rows}, 'failed')
    lines.append(f'  written before it failed: {committed} in {this.args.output}; once '
                 'fixed, relabel again with --overwrite')
  print('\n'.join(lines + summary_lines(failure)), file=sys.stderr)
  return EXIT_FAILED


def _stop(stop, this, result, console):
  """After the first SIGINT or SIGTERM: says what stands (on `console`), then exits."""
  if not is_local(this.options):
    print(f'label-images: {stop}: stopped waiting; '
          f'{stopping.remote_job_message(result, this.options)}', file=console)
    console.flush()
    stopping.exit_now(stop.exit_status)
  rows, committed = stopping.commit_after_stop(this.args.output, this.run_id)
  _record(this, {**PROCESS_TALLY.snapshot(), **rows}, f'interrupted by {stop}')
  this.lease.release()
  print(f'label-images: interrupted by {stop}: {committed} of this run are in '
        f'{this.args.output}; relabel again with --overwrite to finish.', file=console)
  console.flush()
  stopping.exit_now(stop.exit_status)
