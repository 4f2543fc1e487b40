"""Building the Dataflow job offline, with --dry_run: no network, no credentials."""

import os
import shutil
import subprocess
import sys

import pytest
from apache_beam.runners.dataflow.internal import apiclient

from conftest import ROOT, unavailable
from pipeline.models import ChosenModel
from pipeline.options import normalize_dry_run, parse_args
from pipeline.run import build
from transforms.labels import builtin_labels
from transforms.model_spec import LOGITS, PAIR, ModelSpec

GPU_SERVICE_OPTIONS = 'worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver'
DATAFLOW_ARGS = [
    '--runner', 'DataflowRunner', '--dry_run', '--project', 'my-project',
    '--region', 'us-central1', '--temp_location', 'gs://my-bucket/tmp',
    '--input', 'gs://my-bucket/images/*.jpg', '--output', 'gs://my-bucket/out',
    '--model_handle', 'gs://my-bucket/models/classification',
    '--feature_handle', 'gs://my-bucket/models/feature_vector',
    '--sdk_container_image', 'us-docker.pkg.dev/my-project/images/label-images:gpu',
    '--dataflow_service_options', GPU_SERVICE_OPTIONS,
    '--machine_type', 'g2-standard-4', '--max_num_workers', '20',
    '--experiments', 'no_use_multiple_sdk_containers',
]
STEPS = {'ListUris', 'SelectUris', 'Read', 'Decode', 'Inference', 'ToRows', 'WriteLabels',
         'WriteReadErrors', 'WriteDecodeErrors', 'WriteInferenceErrors', 'RemoveRedundantRows',
         'AllParts', 'Commit'}


def test_the_job_holds_the_steps_and_the_worker_options():
  args, options = parse_args(DATAFLOW_ARGS)
  model = ChosenModel(ModelSpec((224, 224), 1001, LOGITS, 1280, PAIR), builtin_labels(1001))
  job = build(args, options, 'run', model).run().job
  top_level = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
  assert STEPS <= top_level
  images = [env.payload for env in job.proto_pipeline.components.environments.values()]
  assert any(b'label-images:gpu' in payload for payload in images)
  # The request Dataflow would get, built from the job offline.
  environment = apiclient.Environment(
      [], job.options, '8', 'gs://my-bucket/tmp/pipeline.pb', job.proto_pipeline).proto
  assert list(environment.service_options) == [GPU_SERVICE_OPTIONS]
  assert 'no_use_multiple_sdk_containers' in environment.experiments
  (pool,) = environment.worker_pools
  assert pool.machine_type == 'g2-standard-4'
  assert [c.container_image for c in pool.sdk_harness_container_images] == [
      'us-docker.pkg.dev/my-project/images/label-images:gpu']


def test_the_cli_builds_the_job_without_a_network():
  if not shutil.which('unshare'):
    unavailable('needs unshare(1) for a network-less run')
  # As a user's machine is: no storage emulator (the tests' own may be set by now).
  env = {name: value for name, value in os.environ.items() if name != 'STORAGE_EMULATOR_HOST'}
  result = subprocess.run(['unshare', '-n', sys.executable, '-m', 'pipeline.run', *DATAFLOW_ARGS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  if 'unshare failed' in result.stderr:
    unavailable(f'unshare -n is not permitted here: {result.stderr.strip()}')
  assert result.returncode == 0, result.stderr
  assert 'dry run: built job' in result.stdout and 'nothing was submitted' in result.stdout
  assert 'steps (16): ListUris, SelectUris, Read, Decode, Inference' in result.stdout
  assert ('workers: up to 20 x g2-standard-4, image '
          'us-docker.pkg.dev/my-project/images/label-images:gpu') in result.stdout
  assert 'engine: auto (fp32), batches of 32' in result.stdout
  assert 'not checked from here (no access): --model_handle' in result.stdout


def dataflow_args(**replaced):
  args = list(DATAFLOW_ARGS)
  for flag, value in replaced.items():
    args[args.index(f'--{flag}') + 1] = str(value)
  return args


def test_a_dataflow_job_with_paths_only_this_machine_has_is_refused(model_dir, tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('gs://my-bucket/a.jpg\n')
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.run',
       *dataflow_args(input=listing, output=tmp_path / 'out',
                      model_handle=model_dir / 'classification')],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  for flag in ('--input', '--output', '--model_handle'):
    assert f'{flag} ' in result.stderr and 'is a path on this machine' in result.stderr
  assert '--feature_handle' not in result.stderr
  assert not (tmp_path / 'out').exists()


def test_a_dataflow_dry_run_looks_for_the_int8_model_its_workers_need(model_dir, gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  for module in ('classification', 'feature_vector'):  # no int8.tflite beside them
    for path in (model_dir / module).rglob('*'):
      if path.is_file():
        bucket.blob(f'models/{path.relative_to(model_dir)}').upload_from_filename(path)
  handles = {'model_handle': f'{bucket_uri}/models/classification',
             'feature_handle': f'{bucket_uri}/models/feature_vector'}
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.run',
       *dataflow_args(input=f'{bucket_uri}/images/*.jpg', **handles), '--engine', 'litert_int8'],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  assert f'--engine litert_int8 needs {bucket_uri}/models/int8.tflite' in result.stderr
  assert f'--input: nothing matches {bucket_uri}/images/*.jpg' in result.stderr

  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.run',
       *dataflow_args(model_handle=f'{bucket_uri}/nothing/classification',
                      feature_handle=handles['feature_handle'])],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  assert f'{bucket_uri}/nothing/classification holds no saved_model.pb' in result.stderr


@pytest.mark.parametrize('argv, expected', [
    (['--dry_run', '--project', 'p'], ['--dry_run=True', '--project', 'p']),
    (['--x', '--dry_run'], ['--x', '--dry_run=True']),
    (['--dry_run=False'], []),
    (['--dry_run=true'], ['--dry_run=true']),
])
def test_a_bare_dry_run_is_true_and_false_is_false(argv, expected):
  assert normalize_dry_run(argv) == expected


@pytest.mark.parametrize('replace, message', [
    (('gs://my-bucket/tmp', 'gs://B/tmp'), 'a dry run needs a usable --temp_location'),
    (('my-project', 'P'), 'Invalid Project ID (P)'),
])
def test_unusable_cloud_options_fail_at_once_and_clearly(replace, message):
  args = [arg.replace(*replace) if arg == replace[0] else arg for arg in DATAFLOW_ARGS]
  result = subprocess.run([sys.executable, '-m', 'pipeline.run', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert message in result.stderr


def test_a_local_dry_run_builds_without_running(tmp_path):
  listing = tmp_path / 'list.txt'
  listing.write_text('/nowhere/a.jpg\n')
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.run', '--dry_run', '--input', str(listing),
       '--output', str(tmp_path / 'out'), '--model_handle', 'gs://b/m/c',
       '--feature_handle', 'gs://b/m/f'], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert 'nothing was run' in result.stdout
  assert not (tmp_path / 'out').exists()
