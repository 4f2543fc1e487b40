"""Stopping on Ctrl-C (SIGINT) and SIGTERM, as terminals and schedulers expect.

The first signal interrupts the driver wherever it is waiting. A local run then writes the
rows its writers hold as parts, lets the parts being written finish (no new one starts),
deletes its temporary files, records
itself as interrupted in the manifest and says how to continue; a remote job keeps running
and the message says how to cancel it. A second signal exits at once. The exit status is
128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
"""

import contextlib
import os
import shlex
import signal
import sys

from apache_beam.options.pipeline_options import GoogleCloudOptions

from transforms.files import delete_paths, matching_paths, parquet_rows
from transforms.schema import ERRORS, LABELS, ROW_KINDS
from transforms.write import PART_WRITES, run_part_pattern, run_temp_paths, write_held_rows

SIGNALS = (signal.SIGINT, signal.SIGTERM)
WRITES_GRACE_S = 10.0


class Interrupted(BaseException):
  """Raised in the driver's thread by the first SIGINT or SIGTERM."""

  def __init__(self, signum):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum

  @property
  def exit_status(self):
    return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals():
  stopping = []

  def handle(signum, _frame):
    if stopping:
      os._exit(128 + signum)  # pylint: disable=protected-access
    stopping.append(signum)
    raise Interrupted(signum)

  previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def resume_command(argv):
  """The command line that continues this run: the same, with --resume instead of
  --overwrite."""
  kept = [arg for arg in argv if arg.split('=', 1)[0] not in ('--overwrite', '--resume')]
  return shlex.join(['label-images', *kept, '--resume'])


def committed_rows(output_dir, run_id):
  """{kind: rows} in the parts this run has written so far."""
  return {kind: sum(parquet_rows(path) for path in matching_paths(
      run_part_pattern(output_dir, kind, run_id))) for kind in ROW_KINDS}


def commit_after_stop(output_dir, run_id):
  """After a local run stopped or failed: lets writes finish, then counts what is kept.
  Returns ({kind: rows}, the same for people)."""
  stop_local_run(output_dir, run_id)
  rows = committed_rows(output_dir, run_id)
  return rows, f'{rows[LABELS]:,} labels rows and {rows[ERRORS]:,} error rows'


def stop_local_run(output_dir, run_id):
  """Writes the rows the writers hold as parts, lets the parts being written finish, then
  deletes this run's temporary files."""
  write_held_rows()
  PART_WRITES.close(WRITES_GRACE_S)
  delete_paths(run_temp_paths(output_dir, run_id))


def remote_job_message(result, pipeline_options):
  """What to say when the driver stops waiting for a job that goes on."""
  job_id = getattr(result, 'job_id', lambda: None)() if result is not None else None
  if job_id is None:
    return 'the job was being submitted: check the runner for it'
  region = pipeline_options.view_as(GoogleCloudOptions).region
  cancel = f'gcloud dataflow jobs cancel {job_id}' + (f' --region {region}' if region else '')
  return f'job {job_id} keeps running; to cancel it: {cancel}'


def exit_now(status):
  """Exits without waiting for the runner's threads, which a stopped run leaves behind."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access
