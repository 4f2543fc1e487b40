"""setup.py as Beam's --setup_file, and the local runner and its defaults."""

import subprocess
import sys
import tarfile

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, SetupOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from conftest import ROOT
from pipeline.options import parse_args
from pipeline.runner import create_runner


def test_setup_file_builds_an_sdist_with_both_packages(tmp_path):
  # Beam's stager runs exactly this for --setup_file.
  subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path)], cwd=ROOT,
                 check=True, capture_output=True)
  (archive,) = tmp_path.glob('label-images-*.tar.gz')
  names = tarfile.open(archive).getnames()
  for module in ('pipeline/run.py', 'pipeline/build.py', 'transforms/model.py',
                 'transforms/write.py'):
    assert any(name.endswith(module) for name in names), module


def test_direct_runner_runs_locally_without_prism():
  for argv in ([], ['--runner', 'DirectRunner']):
    assert isinstance(create_runner(PipelineOptions(argv)), FnApiRunner)
  assert create_runner(PipelineOptions(['--runner', 'DataflowRunner'])) is None


def test_workers_import_the_emulator_plugin_only_with_an_emulator(monkeypatch):
  monkeypatch.delenv('STORAGE_EMULATOR_HOST', raising=False)
  options = PipelineOptions([])
  create_runner(options)
  assert not options.view_as(SetupOptions).beam_plugins
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', 'http://127.0.0.1:1')
  create_runner(options)
  assert options.view_as(SetupOptions).beam_plugins == ['pipeline.gcs_emulator']


def test_a_local_run_uses_every_core_unless_told_otherwise(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('a.jpg\n')
  models = ['--model_handle', 'gs://b/c', '--feature_handle', 'gs://b/f']
  _, options = parse_args(['--input', str(listing), '--output', str(tmp_path), *models])
  direct = options.view_as(DirectOptions)
  assert (direct.direct_num_workers, direct.direct_running_mode) == (0, 'multi_threading')
  _, options = parse_args(['--input', str(listing), '--output', str(tmp_path), *models,
                           '--direct_num_workers', '1', '--direct_running_mode', 'in_memory'])
  direct = options.view_as(DirectOptions)
  assert (direct.direct_num_workers, direct.direct_running_mode) == (1, 'in_memory')
