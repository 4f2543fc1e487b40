"""Choosing the runner: DirectRunner runs locally on FnApiRunner, other runners as named."""

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, SetupOptions
from apache_beam.options.pipeline_options import StandardOptions, TestOptions
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.portability.portable_runner import JobServiceHandle

from pipeline import gcs_emulator


def is_local(pipeline_options):
  return pipeline_options.view_as(StandardOptions).runner in (None, 'DirectRunner')


def runs_on_dataflow(pipeline_options):
  return 'Dataflow' in (pipeline_options.view_as(StandardOptions).runner or '')


def runs_in_this_process(pipeline_options):
  """Whether the workers run in this process, as threads."""
  running_mode = pipeline_options.view_as(DirectOptions).direct_running_mode
  return is_local(pipeline_options) and running_mode != 'multi_processing'


def dry_run_problems(pipeline_options):
  """Beam meets a dry run whose temp and staging locations are both unusable by creating a
  default bucket, over the network; say so at once instead."""
  if not pipeline_options.view_as(TestOptions).dry_run or is_local(pipeline_options):
    return []
  from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner  # pylint: disable=import-outside-toplevel
  validator = PipelineOptionsValidator(pipeline_options, DataflowRunner())
  cloud = pipeline_options.view_as(GoogleCloudOptions)
  errors = [validator.validate_gcs_path(cloud, name) for name in ('temp_location',
                                                                  'staging_location')]
  if all(errors):
    return [f'a dry run needs a usable --temp_location (gs://BUCKET/PATH): {errors[0][0]}']
  return []


def create_runner(pipeline_options):
  """Returns the runner for beam.Pipeline, or None for the one --runner names.

  DirectRunner would first try the Prism runner, whose binary it downloads from the
  network; FnApiRunner is the DirectRunner's own engine for batch pipelines and stays
  local. Its workers get the pipeline options as DirectRunner's do, so that worker
  processes (--direct_running_mode multi_processing) see them too.
  """
  if gcs_emulator.use_anonymous_credentials_for_emulator():
    setup = pipeline_options.view_as(SetupOptions)
    setup.beam_plugins = (setup.beam_plugins or []) + [gcs_emulator.__name__]
  if not is_local(pipeline_options):
    return None
  flush_data_at_element_boundaries_only()
  encoded_options = JobServiceHandle.encode_pipeline_options(pipeline_options.get_all_options())
  return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded_options)))


def flush_data_at_element_boundaries_only():
  """Turns off the data plane's flush on a timer, which loses or splits elements.

  FnApiRunner gives its in-process workers data streams that a timer thread flushes once a
  second (TimeBasedBufferingClosableOutputStream, apache_beam/runners/worker/data_plane.py).
  That thread sends and clears the buffer while the worker thread may be halfway through
  encoding an element into it, without a lock between them: the bytes the worker writes
  between the timer's read and clear are lost, and an element cut in two reaches the runner
  in two messages, each decoded on its own. The runner then fails ("Invalid
  PaneInfoEncoding", "Unknown type tag") or, when the cut happens to decode, drops or
  garbles elements silently. It takes a worker emitting fast for over a second into one
  stream, as listing a million URIs does. With no time limit the streams flush only when
  they hold 10 MB, from the worker's own thread, between elements (as on Dataflow and in
  the in_memory and multi_processing modes). tests/beam_repro/ reproduces it in plain Beam.
  """
  worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def new_pipeline(pipeline_options):
  """A beam.Pipeline on the runner the options name. ValueError, for the user, where the
  options cannot run: a dry run the runner cannot do, or Beam's own checks of them (e.g. an
  invalid project ID)."""
  problems = dry_run_problems(pipeline_options)
  if problems:
    raise ValueError('\n'.join(problems))
  return beam.Pipeline(runner=create_runner(pipeline_options), options=pipeline_options)
