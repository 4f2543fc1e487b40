"""Choosing the runner: DirectRunner runs locally on FnApiRunner, other runners as named."""

from apache_beam.options.pipeline_options import DirectOptions, SetupOptions, StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle

from pipeline import gcs_emulator


def is_local(pipeline_options):
  return pipeline_options.view_as(StandardOptions).runner in (None, 'DirectRunner')


def runs_in_this_process(pipeline_options):
  """Whether the workers run in this process, as threads."""
  running_mode = pipeline_options.view_as(DirectOptions).direct_running_mode
  return is_local(pipeline_options) and running_mode != 'multi_processing'


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
  encoded_options = JobServiceHandle.encode_pipeline_options(pipeline_options.get_all_options())
  return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded_options)))
