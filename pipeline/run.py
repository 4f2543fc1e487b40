"""The label-images command line: python -m pipeline.run, or label-images.

  label-images --input INPUT --output OUTPUT_DIR [--model_handle H] [--feature_handle H]
               [--top_k 5] [any standard Beam option: --runner, --direct_num_workers, ...]
  label-images stage-model --source HANDLE --dest gs://BUCKET/PATH
  label-images train-head --examples EXAMPLES --output HEAD_DIR [--embeddings OUTPUT_DIR]
  label-images relabel OUTPUT_DIR --model_handle HEAD_DIR --output NEW_DIR [--min_score S]
  label-images report OUTPUT_DIR [--html PATH]
  label-images similar OUTPUT_DIR (--uri URI | --image PATH_OR_URI) [--k 10] [--json]
  label-images duplicates OUTPUT_DIR [--threshold 0.90]
"""

import argparse
import contextlib
import datetime
import importlib
import os
import secrets
import select
import sys
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

from pipeline import duplicates, html_report, report, results, similar, stopping
from pipeline.build import build_pipeline
from pipeline.console import (log_to_file, quiet_native_logs, start_logging, status,
                              stderr_to_log)
from pipeline.dry_run import (dry_run_model, job_description, model_checks,
                              worker_location_problems)
from pipeline.engine_setting import EngineSettingError, settle_engine
from pipeline.failure_summary import summary_lines
from pipeline.identity import differences, directory_identity, staged_int8
from pipeline.lease import STALE_AFTER_S, LeaseError, take_lease
from pipeline.models import ChosenModel, ModelError, choose_model
from pipeline.options import model_handle_problems, parse_args, verbose_requested
from pipeline.output_dir import (LayoutError, OutputExistsError, out_of_date_lines,
                                 prepare_output_dir)
from pipeline.progress import ProgressDisplay
from pipeline.runner import (is_local, new_pipeline, runs_in_this_process,
                             runs_on_dataflow)
from pipeline.stopping import Interrupted, stop_on_signals
from transforms.failures import ImageError
from transforms.metrics import PROCESS_TALLY

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TOO_MANY_ERRORS = 3
EXIT_INCOMPLETE = 4
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE, as the shell's own tools are


class UsageError(Exception):
  pass


def new_run_id(started_at):
  """Names this run's output parts: when it started, and a random tag."""
  return f'{started_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}'


def build(args, pipeline_options, run_id, model):
  """The pipeline for the ChosenModel `model`, built on its runner but not run."""
  try:
    pipeline = new_pipeline(pipeline_options)
  except ValueError as e:
    raise UsageError(str(e)) from e
  build_pipeline(pipeline, args, run_id, model)
  return pipeline


def dry_run(args, pipeline_options):
  """Builds the job and checks what its workers will need, without submitting or running
  it."""
  problems, unchecked = ([], []) if is_local(pipeline_options) else model_checks(args)
  if problems:
    raise UsageError('\n'.join(problems))
  model = dry_run_model(args, unchecked)
  pipeline = build(args, pipeline_options, new_run_id(report.now()), model)
  if is_local(pipeline_options):  # the local runner has no dry run of its own
    print('label-images: dry run: built the pipeline; nothing was run')
    return
  print(job_description(args, pipeline_options, pipeline.run().job, unchecked))


def run(argv, log_path=None):
  try:
    return _run(argv, log_path)
  except (OutputExistsError, LayoutError, ModelError, UsageError, LeaseError,
          results.UnreadablePartError, EngineSettingError) as e:
    print(f'label-images: {e}', file=sys.stderr)
    return EXIT_USAGE


def _run(argv, log_path):
  args, pipeline_options = parse_args(argv)
  # The driver reads the output directory before any pipeline exists (which would set them).
  FileSystems.set_options(pipeline_options)
  unreachable = worker_location_problems(args) if runs_on_dataflow(pipeline_options) else []
  if unreachable:
    raise UsageError('\n'.join(unreachable))
  if pipeline_options.view_as(TestOptions).dry_run:
    dry_run(args, pipeline_options)
    return 0
  local = is_local(pipeline_options)
  problems = model_handle_problems(args, local)
  if problems:
    raise UsageError('\n'.join(problems))
  started_at = report.now()
  run_id = new_run_id(started_at)
  # Before the model is read: a second run into the directory is refused at once.
  lease = take_lease(args.output, run_id, started_at, runs_in_this_process(pipeline_options))
  try:
    return _run_holding_lease(argv, args, pipeline_options, local, run_id, started_at, lease,
                              log_path)
  finally:
    lease.release()


def _run_holding_lease(argv, args, pipeline_options, local, run_id, started_at, lease,
                       log_path):
  """The run, from its first write into the output directory, which this process alone
  writes to until the lease is given back."""
  model = choose_model(args)
  set_aside = prepare_output_dir(args.output, resume=args.resume, overwrite=args.overwrite)
  recorded = (results.read_manifest(args.output) or {}).get('identity') if args.resume else None
  engine_choice = settle_engine(args, local, model.spec, recorded)
  if engine_choice:
    status(f'label-images: engine: {engine_choice.describe()}')
  try:
    int8_model = staged_int8(args)
  except FileNotFoundError as e:
    raise UsageError(str(e)) from e
  identity = directory_identity(args, local, model, int8_model)
  if recorded:
    require_same_identity(args.output, recorded, identity)
  this = _ThisRun(argv, args, pipeline_options, run_id, started_at, model, identity, lease,
                  set_aside, log_path, engine_choice, int8_model)
  # Recorded before the first part: a directory always says what produced its rows.
  _record(this, {}, {}, 'running')
  result = None
  try:
    with stop_on_signals(), (ProgressDisplay() if runs_in_this_process(pipeline_options)
                             else contextlib.nullcontext()), stderr_to_log(log_path, args.verbose):
      result = build(args, pipeline_options, this.run_id, model).run()
      result.wait_until_finish()
  except Interrupted as stop:
    _stop(stop, this, result)
  except Exception as failure:  # pylint: disable=broad-except
    return _failed(failure, this)
  manifest, directory_totals = _record(this, *report.read_metrics(result), 'completed')
  print(report.summary(manifest, directory_totals))
  if (manifest['counts']['parts'] or manifest['counts']['redundant_rows_removed']
      or this.set_aside):
    for line in out_of_date_lines(args.output):
      print(line)
  if lease.lost:
    print(f'label-images: {lease.lost}: check the directory (`label-images report '
          f'{args.output}`), then go on with --resume.', file=sys.stderr)
    return EXIT_INCOMPLETE
  problems = manifest['accounting']['problems']
  if problems:
    print('label-images: the output does not account for every input URI: '
          + '; '.join(problems) + '. Rerun with --resume: it labels what is missing and '
          'removes extra copies.', file=sys.stderr)
    return EXIT_INCOMPLETE
  fraction = report.error_fraction(manifest)
  if args.max_error_fraction is not None and fraction > args.max_error_fraction:
    counts = manifest['counts']
    print(f"label-images: {counts['errors']} of {counts['labelled'] + counts['errors']} images "
          f'failed ({fraction:.2%}), above --max_error_fraction {args.max_error_fraction:g}',
          file=sys.stderr)
    return EXIT_TOO_MANY_ERRORS
  return 0


# The commands that make or apply models, each a module with main(argv) -> exit status.
_MODEL_COMMANDS = {'stage-model': 'pipeline.stage_model', 'train-head': 'pipeline.train_head',
                   'relabel': 'pipeline.relabel'}
# The commands that answer questions about a finished output directory.
_QUERY_COMMANDS = {'report': html_report.main, 'similar': similar.main,
                   'duplicates': duplicates.main}


def run_query(command, argv):
  try:
    return command(argv)
  except (results.NoResultsError, results.MixedOriginError, results.UnreadablePartError,
          LayoutError, similar.QueryError) as e:
    print(f'label-images: {e}', file=sys.stderr)
  except ImageError as e:
    print(f'label-images: cannot embed the image: {e.error}: {e.message}', file=sys.stderr)
  return EXIT_USAGE


class _ThisRun(NamedTuple):
  argv: list
  args: argparse.Namespace
  options: PipelineOptions
  run_id: str
  started_at: datetime.datetime
  model: ChosenModel
  identity: dict
  lease: object  # lease.take_lease's, given back before a stopped run exits
  set_aside: list  # the damaged parts moved aside before the run: {part, moved_to, cause}
  log_path: str
  engine_choice: object  # EngineChoice where this process timed the engines, else None
  int8_model: dict  # identity.staged_int8's


def require_same_identity(output_dir, recorded, identity):
  """--resume adds rows only where they would be comparable with those already there."""
  changed = differences(recorded, identity)
  if changed:
    raise UsageError(
        f'{output_dir} holds rows made differently: ' + '; '.join(changed) + '. Resuming would '
        'mix them. Pass --overwrite to replace its results, or label into another directory.')


def _record(this, totals, distributions, status):
  """This run's entry in the directory's manifest; returns the entry and the directory's
  totals."""
  run = report.build_manifest(this.args, this.options, this.model, this.run_id, totals,
                              distributions, this.started_at, report.now(), status=status,
                              set_aside=this.set_aside, engine_choice=this.engine_choice,
                              int8_model=this.int8_model)
  return run, report.write_manifest(this.args.output, run, this.identity)['totals']



def _failed(failure, this):
  """After the pipeline failed: the whole story to the log, the gist to the screen."""
  log_to_file('the run failed', failure)
  lines = [f'label-images: full tracebacks: {this.log_path}']
  if runs_in_this_process(this.options):
    rows, committed = stopping.commit_after_stop(this.args.output, this.run_id)
    _record(this, {**PROCESS_TALLY.snapshot(), **rows}, {}, 'failed')
    lines.append(f'  committed before it failed: {committed} in {this.args.output}; once '
                 f'fixed, go on with: {stopping.resume_command(this.argv)}')
  print('\n'.join(lines + summary_lines(failure)), file=sys.stderr)
  return EXIT_FAILED


def _stop(stop, this, result):
  """After the first SIGINT or SIGTERM: says what stands and how to go on, then exits."""
  if not is_local(this.options):
    print(f'label-images: {stop}: stopped waiting; '
          f'{stopping.remote_job_message(result, this.options)}. Its lease on '
          f'{this.args.output} lapses {STALE_AFTER_S // 60} minutes from now: let the job end '
          'before another run writes there.', file=sys.stderr)
    stopping.exit_now(stop.exit_status)
  rows, committed = stopping.commit_after_stop(this.args.output, this.run_id)
  _record(this, {**PROCESS_TALLY.snapshot(), **rows}, {}, f'interrupted by {stop}')
  this.lease.release()
  print(f'label-images: interrupted by {stop}: {committed} of this run are committed in '
        f'{this.args.output}.\n  To label the rest: {stopping.resume_command(this.argv)}',
        file=sys.stderr)
  stopping.exit_now(stop.exit_status)


def main(argv=None):
  try:
    return _main(sys.argv[1:] if argv is None else argv)
  except BrokenPipeError:
    if not _stdout_is_gone():
      raise  # another connection broke: not the reader of our output
    # The reader went away (`| head`): nothing more is printed, the interpreter included.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _stdout_is_gone():
  """Whether the reader of standard output has closed it (the pipe reports an error)."""
  poller = select.poll()
  poller.register(sys.stdout.fileno(), select.POLLOUT)
  return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def _main(argv):
  verbose = verbose_requested(argv)
  log_path = start_logging(verbose)
  quiet_native_logs(verbose)
  if argv[:1] and argv[0] in _MODEL_COMMANDS:
    return importlib.import_module(_MODEL_COMMANDS[argv[0]]).main(argv[1:])
  if argv[:1] and argv[0] in _QUERY_COMMANDS:
    return run_query(_QUERY_COMMANDS[argv[0]], argv[1:])
  return run(argv, log_path)


if __name__ == '__main__':
  sys.exit(main())
