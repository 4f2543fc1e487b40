"""The pipeline's own options, parsed the Beam way beside every standard Beam option,
and checked before a pipeline is built."""

import argparse
import difflib
import os
import re

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.console import VERBOSE_HELP
from pipeline.dry_run import no_gcs_access
from transforms.decode import DEFAULT_MAX_PIXELS, decode_image
from transforms.failures import ImageError
from transforms.files import exists
from transforms.http_read import DEFAULT_CONNECTIONS_PER_HOST, DEFAULT_TIMEOUT_S
from transforms.inference import DEFAULT_BATCH_SIZE
from transforms.inputs import (FOLDER, GLOB, LIST_SUFFIXES, ListError, check_list,
                               input_format, is_folder_image, match_pattern)
from transforms.engines import PRECISIONS, engine_named, engine_names
from transforms.engines.choice import AUTO, DEFAULT_ENGINE
from transforms.model_store import SAVED_MODEL, is_saved_model_dir, local_model_dir
from transforms.read import (DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_READ_ATTEMPTS, canonical_uri,
                             local_path, permanent_kind, read_image_bytes)
from transforms.write import DEFAULT_ROWS_PER_FILE

TFHUB_MOBILENET_V2 = 'https://tfhub.dev/google/tf2-preview/mobilenet_v2'
DEFAULT_MODEL_HANDLE = f'{TFHUB_MOBILENET_V2}/classification/4'
DEFAULT_FEATURE_HANDLE = f'{TFHUB_MOBILENET_V2}/feature_vector/4'
REQUIRED = ('input', 'output')
# A local run uses every core: worker threads share one model, and one decodes while
# another's batch runs. Flags given on the command line come later and win.
LOCAL_DEFAULTS = ['--direct_num_workers=0', '--direct_running_mode=multi_threading']
_FALSE = ('false', '0', 'no', '')


def _switch(value):
  return value.lower() not in _FALSE


def verbose_requested(argv):
  """Whether any command's argv asks for --verbose, read before the libraries load."""
  return any(arg == '--verbose' or (arg.startswith('--verbose=') and _switch(arg[10:]))
             for arg in argv)


class LabelImagesOptions(PipelineOptions):
  """No option is argparse-required: Beam parses every options class wherever it builds a
  PipelineOptions, so required ones are checked by the command line instead."""

  @classmethod
  def _add_argparse_args(cls, parser):
    parser.add_argument(
        '--input',
        help='Images to label: a glob (local or gs://, e.g. gs://bucket/photos/**.jpg), '
        'a .txt file with one URI per line, or a .csv / .parquet file with a "uri" column.')
    parser.add_argument(
        '--output', help='Directory (local, gs://, s3:// or azfs://) for labels-*.parquet, '
        '_errors/errors-*.parquet and _manifest.json.')
    parser.add_argument(
        '--model_handle', default=DEFAULT_MODEL_HANDLE,
        help='The image classifier: a TF Hub handle (a tfhub.dev or Kaggle URL), a gs:// '
        'path or a local SavedModel directory, taking float RGB images in [0, 1] and returning '
        'class scores (logits or probabilities), and optionally an embedding as a second, '
        'named output. Default: %(default)s')
    parser.add_argument(
        '--feature_handle',
        help='The classifier\'s feature-vector twin (TF Hub\'s layout), which gives the '
        'embedding. Default: the default model\'s twin, '
        f'{DEFAULT_FEATURE_HANDLE}, with the default --model_handle; none otherwise')
    parser.add_argument(
        '--min_score', type=float,
        help='Open set: a row whose top score is below this has a null label and label_index '
        '(none of the classes; scores kept). label-images train-head suggests a value. '
        'Default: every row gets its top class')
    parser.add_argument(
        '--image_size', type=int,
        help='Height and width, in pixels, for a model that takes images of any size; '
        'a model of one size is fed that size')
    parser.add_argument(
        '--top_k', type=int, default=5, help='How many labels and scores to keep per image.')
    parser.add_argument(
        '--engine', choices=(AUTO, *engine_names()), default=DEFAULT_ENGINE,
        help='auto: the fastest, on a timed probe of a few batches, of the engines that run '
        'the precision allowed (--precision), each checked against TensorFlow; litert: '
        'TFLite on XNNPACK, fp32; openvino_fp32, openvino_bf16: OpenVINO, bf16 only on CPUs '
        'with AMX or AVX512-BF16; litert_int8: the int8 model that "label-images stage-model '
        '--int8_calibration" wrote beside the classification module; tf: TensorFlow. A local '
        'run chooses once, before it starts; on a remote runner each worker chooses at start '
        'among engines of one precision. --resume keeps the directory\'s engine. '
        'Default: %(default)s')
    parser.add_argument(
        '--precision', choices=PRECISIONS,
        help='The arithmetic --engine auto may choose: fp32 never picks a reduced precision. '
        'Default: the fastest whose fidelity meets the bar (top-1 agreement with fp32 >= 97%%, '
        'embedding cosine >= 0.99; README, "Engines"), on a local runner; fp32 on a remote '
        'one, whose workers\' CPU this machine cannot time')
    parser.add_argument(
        '--batch_size', type=int, default=DEFAULT_BATCH_SIZE,
        help='Images per forward pass. Default: %(default)s')
    parser.add_argument(
        '--rows_per_file', type=int, default=DEFAULT_ROWS_PER_FILE,
        help='Rows per Parquet part (one row group each). Default: %(default)s')
    parser.add_argument(
        '--max_image_bytes', type=int, default=DEFAULT_MAX_IMAGE_BYTES,
        help='Larger files are refused as too_large. Default: %(default)s')
    parser.add_argument(
        '--max_image_pixels', type=int, default=DEFAULT_MAX_PIXELS,
        help='Images declaring more pixels are refused before decoding, as too_many_pixels. '
        'Default: %(default)s')
    parser.add_argument(
        '--max_read_attempts', type=int, default=DEFAULT_MAX_READ_ATTEMPTS,
        help='Attempts to read a file through transient failures (HTTP 429/5xx, timeouts, '
        'dropped connections), with exponential backoff. Default: %(default)s')
    parser.add_argument(
        '--http_connections_per_host', type=int, default=DEFAULT_CONNECTIONS_PER_HOST,
        help='For http(s) images: the most connections each worker process opens to one host '
        'at a time. Default: %(default)s')
    parser.add_argument(
        '--http_timeout_s', type=float, default=DEFAULT_TIMEOUT_S,
        help='For http(s) images: seconds to wait for a connection, and for each chunk of a '
        'response, before the read counts as failed (and is retried). Default: %(default)s')
    # Switches also take a value (--resume=true), as Flex Templates pass every parameter.
    parser.add_argument(
        '--resume', type=_switch, nargs='?', const=True, default=False,
        help='Label only the URIs that have no row in OUTPUT_DIR yet, adding new files.')
    parser.add_argument(
        '--overwrite', type=_switch, nargs='?', const=True, default=False,
        help='Delete the results already in OUTPUT_DIR first.')
    parser.add_argument(
        '--verbose', type=_switch, nargs='?', const=True, default=False,
        help=VERBOSE_HELP)
    parser.add_argument(
        '--max_error_fraction', type=float, default=None,
        help='Exit with status 3 when more than this fraction of the images labelled in this '
        'run failed (e.g. 0.01). By default per-image errors never fail the run.')


COMMANDS_HELP = """\
Every standard Beam option (--runner, --direct_num_workers, --project, --region,
--temp_location, ...) is passed through to the pipeline. --dry_run builds the job (and,
for Dataflow, checks what its workers need and describes it) without running it.

Other commands (each takes --help):
  label-images stage-model --dest DIR     copy the model where workers load it; int8
  label-images train-head --examples CSV --output HEAD_DIR
                                          a head of your own classes on the embeddings
  label-images relabel OUTPUT_DIR --model_handle HEAD_DIR --output NEW_DIR
                                          your classes on every stored embedding
  label-images report OUTPUT_DIR          an HTML page about a finished output directory
  label-images similar OUTPUT_DIR --uri URI | --image PATH
                                          the most similar images, by embedding
  label-images duplicates OUTPUT_DIR      groups of near-duplicate images
"""


def parse_args(argv):
  """Returns (our options as a namespace, PipelineOptions of the whole command line)."""
  parser = argparse.ArgumentParser(
      prog='label-images', allow_abbrev=False,
      description='Label images with an image classifier (by default the TF Hub MobileNet V2 '
      'ImageNet classifier) on Apache Beam; writes labels, scores and embeddings to Parquet.',
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=COMMANDS_HELP)
  LabelImagesOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  # Not among LabelImagesOptions: Beam's Google Cloud options own --labels (Dataflow job
  # labels, key=value), and every options class shares one parser.
  parser.add_argument(
      '--labels', action='append', default=[],
      help='The class names, in the order of the scores: a file with one name per line, or '
      'a .csv/.tsv label map with id and name columns; local or on any storage the input '
      'may be. Default: labels.txt shipped in the SavedModel (or its assets/), else the '
      'built-in ImageNet names for 1,001 or 1,000 classes. (A key=value is a Dataflow job '
      'label, as Beam takes it; so is --label key=value.)')
  refuse_unknown_options(parser, argv)
  args, others = parser.parse_known_args(argv)
  label_files = [value for value in args.labels if not is_job_label(value)]
  if len(label_files) > 1:
    parser.error(f'--labels is given {len(label_files)} files; pass one')
  args.labels = label_files[0] if label_files else None
  stray = stray_values(others)
  if stray:
    parser.error(f'unexpected arguments: {" ".join(stray[:3])}{" ..." if len(stray) > 3 else ""} '
                 "(quote a glob so that the shell does not expand it: --input 'photos/*.jpg')")
  missing = [f'--{name}' for name in REQUIRED if not getattr(args, name)]
  if missing:
    parser.error(f'the following arguments are required: {", ".join(missing)}')
  if args.feature_handle is None and args.model_handle == DEFAULT_MODEL_HANDLE:
    args.feature_handle = DEFAULT_FEATURE_HANDLE
  if args.min_score is not None and not 0 <= args.min_score <= 1:
    parser.error('--min_score must be between 0 and 1')
  if args.image_size is not None and args.image_size < 1:
    parser.error('--image_size must be at least 1')
  for name in ('top_k', 'batch_size', 'rows_per_file', 'max_image_bytes', 'max_image_pixels',
               'max_read_attempts', 'http_connections_per_host'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1')
  if any(char in args.output for char in '*?['):
    parser.error('--output must not contain *, ? or [: the output\'s parts are found by '
                 'patterns under it')
  args.output = args.output.rstrip('/') or '/'
  if args.resume and args.overwrite:
    parser.error('--resume and --overwrite exclude each other')
  if args.engine != AUTO and args.precision and args.precision != engine_named(
      args.engine).precision:
    parser.error(f'--engine {args.engine} computes in {engine_named(args.engine).precision}, '
                 f'not {args.precision}: leave --precision out, or use --engine auto')
  if args.http_timeout_s <= 0:
    parser.error('--http_timeout_s must be above 0')
  if args.max_error_fraction is not None and not 0 <= args.max_error_fraction <= 1:
    parser.error('--max_error_fraction must be between 0 and 1')
  argv = stored_input(args, argv)
  pipeline_options = PipelineOptions(LOCAL_DEFAULTS + normalize_dry_run(
      without_option(argv, '--labels', label_files)))
  problems = local_path_problems(args, pipeline_options)
  if problems:  # wrong paths, not wrong usage: the message alone, without the usage block
    parser.exit(2, ''.join(f'{parser.prog}: error: {problem}\n' for problem in problems))
  return args, pipeline_options


def is_job_label(value):
  """Whether a --labels value is a Dataflow job label (key=value, or a JSON object of them),
  as Beam takes it, rather than a file of class names."""
  return value.lstrip().startswith('{') or re.fullmatch(r'[\w-]+=[\w-]*', value) is not None


def without_option(argv, flag, values):
  """argv without `flag` given any of `values` (as --flag value or --flag=value)."""
  kept, skip = [], False
  for i, token in enumerate(argv):
    if skip:
      skip = False
    elif token == flag and i + 1 < len(argv) and argv[i + 1] in values:
      skip = True
    elif not (token.startswith(flag + '=') and token.split('=', 1)[1] in values):
      kept.append(token)
  return kept


def refuse_unknown_options(parser, argv):
  """Exits with status 2 where argv holds a --flag that neither `parser` nor any Beam
  option knows, with the nearest known one: Beam itself only logs that it drops them."""
  known = _option_strings(parser) | _option_strings(_beam_parser())
  unknown = []
  for token in argv:
    if token == '--':
      break
    name = token.split('=', 1)[0]
    if token.startswith('--') and name not in known:
      nearest = difflib.get_close_matches(name, known, n=1)
      unknown.append(name + (f' (did you mean {nearest[0]}?)' if nearest else ''))
  if unknown:
    parser.error('unrecognized option' + ('s' if len(unknown) > 1 else '') + ': '
                 + ', '.join(unknown))


def _beam_parser():
  """A parser of every Beam option (standard, Google Cloud, AWS, Azure, ...)."""
  parser = _BeamArgumentParser(allow_abbrev=False)
  for options_class in {str(cls): cls for cls in PipelineOptions.__subclasses__()}.values():
    options_class._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser


def _option_strings(parser):
  return {option for action in parser._actions  # pylint: disable=protected-access
          for option in action.option_strings}


def normalize_dry_run(argv):
  """Beam's --dry_run takes a value and counts any value, 'False' too, as true. Here a bare
  --dry_run means true, and --dry_run=false (or 0, no) means false."""
  normalized = []
  for i, token in enumerate(argv):
    if token == '--dry_run' and (i + 1 == len(argv) or argv[i + 1].startswith('-')):
      normalized.append('--dry_run=True')
    elif token.startswith('--dry_run=') and token.split('=', 1)[1].lower() in _FALSE:
      continue
    else:
      normalized.append(token)
  return normalized


def stray_values(others):
  """Values that follow no --flag: most often a glob the shell expanded into many paths."""
  stray, previous = [], ''
  for token in others:
    if not token.startswith('-') and (not previous.startswith('--') or '=' in previous):
      stray.append(token)
    previous = token
  return stray


def stored_input(args, argv):
  """argv, and args.input, with a local --input that is not UTF-8 (a name's bytes, as the
  shell passes them) given as its stored file:// URI (read.canonical_uri): the options travel
  with the job as UTF-8 text."""
  try:
    args.input.encode('utf-8')
    return argv
  except UnicodeEncodeError:
    pass
  given, args.input = args.input, canonical_uri(args.input, os.getcwd())
  return [f'--input={args.input}' if token == f'--input={given}' else
          args.input if token == given and i and argv[i - 1] == '--input' else token
          for i, token in enumerate(argv)]


def local_path_problems(args, pipeline_options=None):
  """Mistakes in local paths, caught before the pipeline starts, and in a --input list
  wherever it is. Other remote paths are left to the workers: the driver may have no access
  to them (e.g. building a Dataflow job)."""
  problems = []
  input_problem = (_undecodable_input_problem(args) or local_input_problem(args)
                   or remote_list_problem(args, pipeline_options))
  if input_problem:
    problems.append(input_problem)
  if '://' not in args.output and os.path.exists(args.output) and not os.path.isdir(args.output):
    problems.append(f'--output: {args.output} is a file, not a directory')
  for flag in ('model_handle', 'feature_handle'):
    handle = getattr(args, flag)
    if handle and '://' not in handle and not is_saved_model_dir(handle):
      problems.append(f'--{flag}: {handle} is not a SavedModel directory (no {SAVED_MODEL})')
  staged = staged_model_problem(args)
  if staged:
    problems.append(staged)
  return problems


def staged_model_problem(args):
  """Where the named --engine runs a model stage-model makes (int8) and none is beside
  --model_handle: how to make it. Remote handles are left to the workers."""
  if args.engine == AUTO or '://' in args.model_handle:
    return None
  engine = engine_named(args.engine)
  try:
    if engine.staged_figures:
      engine.staged_figures(args.model_handle)
  except FileNotFoundError as e:
    return str(e)
  return None


def _undecodable_input_problem(args):
  """A --input that stored_input could not make UTF-8: a URI other than a local path."""
  try:
    args.input.encode('utf-8')
  except UnicodeEncodeError:
    return (f'--input: {args.input!r} is not UTF-8 text: only a local path may name files by '
            'bytes of another encoding')
  return None


def local_input_problem(args):
  """What is wrong with a local --input (a plain path or file://), or None."""
  if local_path(args.input) is None:
    return None
  uri = canonical_uri(args.input, os.getcwd())  # the stored form: file:// for an odd name
  path = local_path(uri)
  kind = input_format(uri)
  if kind == FOLDER:
    if not _holds_files(path):
      return f'--input: the folder {args.input} holds no files (hidden ones are skipped)'
    if _is_under(args.output, path):
      return (f'--output {args.output} is inside the --input folder {args.input}: its results '
              'would be labelled as images; write them elsewhere')
  elif kind != GLOB:
    if not os.path.isfile(path):
      return f'--input: no such file: {args.input}'
    try:
      check_list(uri)
    except (OSError, ValueError) as e:
      return f'--input: {e}'
  elif os.path.isfile(path):
    if _holds_no_image(uri, args):
      return (f'--input: {args.input} is neither an image nor a list of URIs: a list is a '
              f'{LIST_SUFFIXES} file')
  elif not _matches_any(match_pattern(uri, kind)):
    return f'--input: no files match {args.input}'
  return None


def remote_list_problem(args, pipeline_options=None):
  """What is wrong with a --input list that is not local (gs://, s3://, azfs://), read here
  through Beam's filesystems (with the command's options) as the workers read it: missing,
  not of its format, or without a uri column; or None. A list this machine cannot read (no
  credentials, no network: a Dataflow job built from elsewhere) is left to the workers, as a
  dry run leaves it."""
  if local_path(args.input) is not None or input_format(args.input) in (FOLDER, GLOB):
    return None
  if args.input.startswith('gs://') and no_gcs_access():
    return None
  if pipeline_options is not None:
    FileSystems.set_options(pipeline_options)
  try:
    check_list(args.input)
  except ListError as e:
    return f'--input: {e}'
  except Exception as e:  # pylint: disable=broad-except
    if permanent_kind(e) == 'not_found':
      return f'--input: no such file: {args.input}'
  return None


def _is_under(output, folder):
  if local_path(output) is None:
    return False
  output_path = local_path(canonical_uri(output, os.getcwd()))
  return os.path.commonpath([output_path, folder]) == folder


def _holds_files(folder):
  return any(is_folder_image(os.path.join(directory, name), folder)
             for directory, _, names in os.walk(folder) for name in names)


def _holds_no_image(path, args):
  """Whether the pipeline would find no image in this one file (nor a read error to report):
  decided as it decides, by the content."""
  try:
    # Any size will do: only whether it decodes matters.
    decode_image(read_image_bytes(path, args.max_image_bytes), (8, 8), args.max_image_pixels)
  except ImageError as e:
    return e.error == 'not_an_image'
  return False


def model_handle_problems(args, local):
  """Resolves the model handles in the driver, before anything runs. A local run downloads
  a URL handle now, once, into the cache its workers load from; a remote run checks that a
  gs:// handle holds a SavedModel. Local directories are checked with the other paths."""
  problems = []
  for flag in ('model_handle', 'feature_handle'):
    handle = getattr(args, flag)
    if not handle or '://' not in handle:
      continue
    try:
      if local:
        local_model_dir(handle)
      elif handle.startswith('gs://') and not exists(FileSystems.join(handle, SAVED_MODEL)):
        raise FileNotFoundError(f'no {SAVED_MODEL} there')
    except Exception as e:  # pylint: disable=broad-except
      reason = getattr(e, 'reason', None) or e  # URLError holds the socket's error
      problems.append(
          f'--{flag} {handle} cannot be loaded ({type(e).__name__}: {reason}). Pass a local '
          f'SavedModel directory, or copy the model where workers reach it, once: '
          f'label-images stage-model --source {handle} --dest DIR')
  return problems


def _matches_any(pattern):
  try:
    return bool(FileSystems.match([pattern])[0].metadata_list)
  except BeamIOError:
    return False
