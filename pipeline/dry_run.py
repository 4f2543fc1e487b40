"""--dry_run: the job is built and checked as a real run would be, and described; nothing
is submitted or run.

A remote job's workers read the input and the models and write the output themselves, so
each of those must be a location they reach (gs://, s3://, azfs://, http(s)://), not a path
on this machine; the input, the models and the int8 model an int8 --engine needs are
looked for where the driver can reach the storage (where it cannot, without network or credentials,
the description says what was left unchecked).
"""

import os

import google.auth
import google.auth.exceptions
from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

from pipeline import gcs_emulator
from pipeline.engine_setting import remote_precision
from pipeline.models import ChosenModel, ModelError, choose_model
from transforms.engines import engine_named
from transforms.engines.choice import AUTO
from transforms.files import exists, matching_paths
from transforms.inputs import FOLDER, GLOB, input_format, match_pattern
from transforms.labels import builtin_labels
from transforms.model_spec import recorded_spec
from transforms.model_store import SAVED_MODEL

_WORKER_SCHEMES = ('gs://', 's3://', 'azfs://', 'http://', 'https://')
_LOCATIONS = ('input', 'output', 'model_handle', 'feature_handle')


def worker_location_problems(args):
  """Locations of a remote job that only this machine can reach."""
  return [f'--{flag} {getattr(args, flag)} is a path on this machine: the workers of a remote '
          'job cannot reach it. Copy it to a bucket (gs://...) and pass that'
          for flag in _LOCATIONS
          if getattr(args, flag) and not getattr(args, flag).startswith(_WORKER_SCHEMES)]


def dry_run_model(args, unchecked):
  """The model read as a run reads it; where this machine cannot reach it, the job is built
  for the default model's shape, and `unchecked` says so."""
  if any(note.startswith('--model_handle') for note in unchecked):
    spec = recorded_spec({})
    unchecked.append('the model\'s size, classes and embedding (the job is built for '
                     f'{spec.describe()})')
    return ChosenModel(spec, builtin_labels(spec.classes))
  try:
    return choose_model(args)
  except ModelError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    unchecked.append(f'--model_handle ({type(e).__name__}: {str(e).splitlines()[0][:120]})')
    return dry_run_model(args, unchecked)


def model_checks(args):
  """(problems, unchecked): what is missing of the models a remote job's workers load, and
  what could not be looked for from here."""
  checks = {f'--{flag}': (lambda handle=getattr(args, flag): _require_saved_model(handle))
            for flag in ('model_handle', 'feature_handle')
            if (getattr(args, flag) or '').startswith('gs://')}
  staged_figures = args.engine != AUTO and engine_named(args.engine).staged_figures
  if staged_figures:
    checks[f'--engine {args.engine}'] = lambda: staged_figures(args.model_handle)
  if args.input.startswith('gs://'):
    checks['--input'] = lambda: _require_input(args.input)
  problems, unchecked = [], []
  no_access = no_gcs_access()
  if no_access:
    return problems, [f'{name} ({no_access})' for name in checks]
  for name, check in checks.items():
    try:
      check()
    except FileNotFoundError as e:
      problems.append(f'{name}: {e}')
    except Exception as e:  # pylint: disable=broad-except
      unchecked.append(f'{name} ({type(e).__name__}: {str(e).splitlines()[0][:120]})')
  return problems, unchecked


def no_gcs_access():
  """Why the driver cannot read gs:// (no credentials), or None. Asked once, quickly:
  Beam's own lookup retries for minutes where there are none."""
  if os.environ.get(gcs_emulator.EMULATOR_ENV):
    return None
  try:
    google.auth.default()
  except google.auth.exceptions.DefaultCredentialsError:
    return 'no Google Cloud credentials here'
  return None


def _require_input(input_spec):
  kind = input_format(input_spec)
  pattern = input_spec if kind not in (GLOB, FOLDER) else match_pattern(input_spec, kind)
  if not matching_paths(pattern):
    raise FileNotFoundError(f'nothing matches {input_spec}')


def _require_saved_model(handle):
  if not exists(f'{handle.rstrip("/")}/{SAVED_MODEL}'):
    raise FileNotFoundError(f'{handle} holds no {SAVED_MODEL}')


def job_lines(pipeline_options, job):
  """The first lines of a dry run's description of any job: its name, steps and workers."""
  pipeline = job.proto_pipeline
  root = pipeline.components.transforms[pipeline.root_transform_ids[0]]
  steps = [pipeline.components.transforms[step].unique_name for step in root.subtransforms]
  cloud = pipeline_options.view_as(GoogleCloudOptions)
  workers = pipeline_options.view_as(WorkerOptions)
  count = (f'up to {workers.max_num_workers}' if workers.max_num_workers
           else str(workers.num_workers or 'autoscaled'))
  return [
      f'label-images: dry run: built job {job.proto.name} for project {cloud.project}, region '
      f'{cloud.region}; nothing was submitted',
      f'  steps ({len(steps)}): {", ".join(steps)}',
      f'  workers: {count} x {workers.machine_type or "the default machine type"}, image '
      f'{workers.sdk_container_image or "the default"}',
  ]


def job_description(args, pipeline_options, job, unchecked):
  """A few lines on the job built: its steps, workers, image, engine and locations."""
  lines = job_lines(pipeline_options, job) + [
      f'  engine: {args.engine} ({remote_precision(args)}), batches of {args.batch_size}; '
      f'models {", ".join(filter(None, (args.model_handle, args.feature_handle)))}',
      f'  input {args.input} -> output {args.output}',
  ]
  if unchecked:
    lines.append('  not checked from here (no access): ' + '; '.join(unchecked))
  return '\n'.join(lines)
