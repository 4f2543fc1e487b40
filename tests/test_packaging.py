"""setup.py as Beam's --setup_file, and the local runner choice."""

import subprocess
import sys
import tarfile

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from conftest import ROOT
from pipeline.run import configure_runner


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
    options = PipelineOptions(argv)
    configure_runner(options)
    assert options.view_as(StandardOptions).runner == 'FnApiRunner'
  options = PipelineOptions(['--runner', 'DataflowRunner'])
  configure_runner(options)
  assert options.view_as(StandardOptions).runner == 'DataflowRunner'
