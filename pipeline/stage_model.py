"""label-images stage-model: copy the model to GCS once, for workers to load.

  label-images stage-model --source HANDLE --dest gs://BUCKET/PATH [--feature_source HANDLE]
                           [--labels FILE] [--image_size N]
                           [--int8_calibration IMAGES [--int8_images 64] [--int8_holdout 200]]

Thousands of workers loading from a bucket in their own region start faster, and more
reliably, than each downloading from tfhub.dev. HANDLE is resolved once, through TF Hub's
cache for a URL. It is a TF Hub classification module's handle (the feature-vector
module's is then the same with 'classification' replaced by 'feature_vector', as on
tfhub.dev), a directory holding classification/ and feature_vector/, or one SavedModel
directory of the user's own (staged alone, as DEST/classification). --labels is copied
beside them.

With --int8_calibration (a glob or list of the user's images, as --input takes), it also
quantizes the model to int8 on a deterministic sample of them and writes DEST/int8.tflite
and DEST/int8.json (its agreement with fp32 on held-out images), for --engine litert_int8;
and, quantized by NNCF on the same images, DEST/openvino_int8.xml and .bin for --engine
openvino_int8 (its own agreement in int8.json's `openvino` entry).
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile

import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipeline.console import add_verbose_flag, plural
from pipeline.models import ModelError, choose_model
from pipeline.results import parse_with_filesystem_options
from pipeline.options import DEFAULT_MODEL_HANDLE
from transforms import int8
from transforms.decode import decode_image
from transforms.engines.litert import LiteRtModel, convert_to_tflite
from transforms.engines.openvino import OpenVinoModel, cpu_has_bf16
from transforms.failures import ImageError
from transforms.files import created_atomically, delete_paths, read_bytes, write_bytes
from transforms.inputs import list_input_uris
from transforms.model import load_image_model
from transforms.model_store import is_saved_model_dir, local_model_dir
from transforms.quiet import native_stderr_hidden
from transforms.read import local_path, read_image_bytes

MODULES = ('classification', 'feature_vector')


def source_handles(source, feature_source=None):
  """(classification handle, feature-vector handle or None) for --source and
  --feature_source."""
  if '://' not in source and all(
      os.path.isdir(os.path.join(source, module)) for module in MODULES):
    return tuple(os.path.join(source, module) for module in MODULES)
  if feature_source:
    return source, feature_source
  if '://' not in source and is_saved_model_dir(source):
    return source, None  # one model of the user's own: its embedding, if any, is its own
  if 'classification' not in source:
    raise ValueError(f'cannot tell the feature-vector module of {source}: pass --feature_source')
  return source, source.replace('classification', 'feature_vector')


def copy_tree(local_dir, dest):
  """Copies every file under local_dir to dest (any Beam filesystem), each under a
  temporary name renamed into place once whole; returns the count."""
  count = 0
  for root, _, files in os.walk(local_dir):
    for name in files:
      path = os.path.join(root, name)
      target = FileSystems.join(dest, *os.path.relpath(path, local_dir).split(os.sep))
      with open(path, 'rb') as src, created_atomically(target) as dst:
        shutil.copyfileobj(src, dst, length=8 * 1024 * 1024)
      count += 1
  return count


def needs_copy(local_dir, target):
  """False where `target` is `local_dir` itself: the model is staged in place. Raises
  ValueError where one holds the other: copying would write into its own source."""
  source, dest = os.path.realpath(local_dir), local_path(target)
  if dest is None:
    return True
  dest = os.path.realpath(dest)
  if source == dest:
    return False
  if os.path.commonpath([source, dest]) in (source, dest):
    raise ValueError(f'--dest {target} and the model at {local_dir} hold one another: copying '
                     'would write over the source. Pass a --dest outside it, or the directory '
                     'that holds classification/ and feature_vector/ to stage in place.')
  return True


def stage(handles, dest):
  """Copies the modules to DEST/classification and DEST/feature_vector, except where
  they are there already; returns the staged (model_handle, feature_handle or None)."""
  handles = [handle for handle in handles if handle]
  local_dirs = [local_model_dir(handle) for handle in handles]
  targets = [FileSystems.join(dest, module) for module in MODULES[:len(handles)]]
  copies = [needs_copy(local_dir, target) for local_dir, target in zip(local_dirs, targets)]
  for handle, local_dir, target, copy in zip(handles, local_dirs, targets, copies):
    if copy:
      print(f'staged {handle} -> {target} ({copy_tree(local_dir, target)} files)')
    else:
      print(f'{target} is already in place: nothing copied')
  return targets[0], (targets[1] if len(targets) > 1 else None)


def stage_labels(labels, dest):
  """Copies the --labels file to DEST, keeping its name; returns where it is now."""
  target = FileSystems.join(dest, FileSystems.split(labels)[1])
  if target != labels:
    write_bytes(target, read_bytes(labels))
    print(f'staged {labels} -> {target}')
  return target


def decoded_pixels(uris, size):
  """The images of `uris` preprocessed as the pipeline does; those that fail are skipped."""
  pixels = []
  for uri in uris:
    try:
      pixels.append(decode_image(read_image_bytes(uri), size)[0])
    except ImageError:
      continue
  return np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.uint8)


def calibration_sample(calibration_input, calibration_images, holdout_images):
  """(calibration URIs, held-out URIs) of --int8_calibration; raises ValueError where it
  names no image, before anything is copied."""
  try:
    uris = list_input_uris(calibration_input)
  except (OSError, ValueError) as e:
    raise ValueError(f'--int8_calibration {calibration_input}: {e}') from e
  if not uris:
    raise ValueError(f'--int8_calibration: no image matches {calibration_input}')
  return int8.split_sample(uris, calibration_images, holdout_images)


def stage_int8(model, handles, dest, sample, calibration_input):
  """Quantizes the ChosenModel `model` on the user's images; writes DEST/int8.tflite,
  DEST/openvino_int8.xml and .bin (where NNCF can make them) and DEST/int8.json, and returns
  the figures."""
  spec = model.spec
  calibration, holdout = (decoded_pixels(uris, spec.image_size) for uris in sample)
  if not len(calibration):
    raise ValueError(f'--int8_calibration: no image of {calibration_input} could be decoded')
  tf_model = load_image_model(spec, *handles)
  with native_stderr_hidden():  # the converter's own logging
    quantized = convert_to_tflite(tf_model, calibration)
    fp32 = convert_to_tflite(tf_model)
  reference = LiteRtModel(fp32, spec) if len(holdout) else None
  openvino, openvino_failure = None, None
  try:
    openvino = stage_openvino_int8(fp32, calibration, holdout, spec, reference)
  except Exception as e:  # pylint: disable=broad-except
    openvino_failure = ': '.join([type(e).__name__] + str(e).strip().splitlines()[:1])
  figures = {
      'created_at': datetime.datetime.now(datetime.timezone.utc).isoformat(),
      'model_handle': handles[0], 'feature_handle': handles[1],
      'calibration_input': calibration_input, 'calibration_images': int(len(calibration)),
      'holdout': (int8.agreement(reference, LiteRtModel(quantized, spec), holdout)
                  if len(holdout) else None),
      'openvino': openvino and openvino['figures'],
  }
  classification = FileSystems.join(dest, MODULES[0])
  model_path, figures_path = int8.int8_paths(classification)
  ir_paths = int8.openvino_int8_paths(classification)
  write_bytes(model_path, quantized)
  if openvino:
    write_bytes(ir_paths[1], openvino['weights'])  # the weights first: the IR names them
    write_bytes(ir_paths[0], openvino['xml'])
  else:  # not one from an earlier staging, beside figures that are not its own
    delete_paths(ir_paths)
  write_bytes(figures_path, json.dumps(figures, indent=2).encode('utf-8'))
  print(f'int8 model -> {model_path}, calibrated on {plural(len(calibration), "image")}')
  print('  ' + holdout_line(figures['holdout']))
  if openvino:
    print(f'OpenVINO int8 model (NNCF) -> {ir_paths[0]}')
    print('  ' + holdout_line(openvino['figures']['holdout']))
  else:
    print(f'warning: no OpenVINO int8 model staged (for --engine openvino_int8): NNCF failed '
          f'({openvino_failure})', file=sys.stderr)
  return figures


def stage_openvino_int8(fp32, calibration, holdout, spec, reference):
  """{'xml', 'weights': the IR NNCF made of the float flatbuffer `fp32` on the calibration
  pixels, 'figures': its sha256 and its agreement with `reference` (fp32) on the held-out
  pixels, run as --engine openvino_int8 runs it here}."""
  with native_stderr_hidden():
    xml, weights = int8.quantize_openvino(fp32, calibration)
  figures = {'sha256': int8.ir_sha256(xml, weights), 'holdout': None}
  if len(holdout):
    import openvino  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as directory:
      path = os.path.join(directory, int8.OPENVINO_INT8_MODEL)
      with open(path[:-len('.xml')] + '.bin', 'wb') as f:
        f.write(weights)
      with open(path, 'wb') as f:
        f.write(xml)
      core = openvino.Core()
      figures['holdout'] = int8.agreement(
          reference, OpenVinoModel(core, path, spec, 'bf16' if cpu_has_bf16(core) else 'fp32'),
          holdout)
  return {'xml': xml, 'weights': weights, 'figures': figures}


def holdout_line(holdout):
  """How an int8 model agrees with fp32 on the held-out images, for people."""
  if not holdout:
    return ('no image was left to measure its agreement with fp32: give --int8_calibration '
            'more images than --int8_images')
  line = (f"on {plural(holdout['images'], 'held-out image')}: the same top label as fp32 for "
          f"{holdout['labels_agree']:.1%}")
  if holdout.get('embedding_cosine_min') is None:
    return line
  return (f"{line}; embedding cosine with fp32 least {holdout['embedding_cosine_min']:.3f}, "
          f"median {holdout['embedding_cosine_median']:.3f}")


def main(argv):
  parser = argparse.ArgumentParser(
      prog='label-images stage-model',
      description='Copies a model (a TF Hub classification module and its feature-vector '
      'twin, or one SavedModel of your own) and its labels to GCS (or any Beam filesystem) '
      'once, for workers to load from there.')
  parser.add_argument('--source', default=DEFAULT_MODEL_HANDLE,
                      help='TF Hub handle of the classification module, a directory with '
                      'classification/ and feature_vector/, or one SavedModel directory. '
                      'Default: %(default)s')
  parser.add_argument('--feature_source',
                      help="the feature-vector module's handle, where it is not the source's "
                      "with 'classification' replaced by 'feature_vector'")
  parser.add_argument('--dest', required=True,
                      help='where to copy them: DEST/classification and DEST/feature_vector')
  parser.add_argument('--labels',
                      help='the class names file to copy beside them, as label-images '
                      '--labels takes it')
  parser.add_argument('--image_size', type=int,
                      help='for a model that takes any size: the size to calibrate int8 at, '
                      'as label-images --image_size')
  parser.add_argument('--int8_calibration',
                      help='also quantize the model to int8 (for --engine litert_int8 and '
                      'openvino_int8), '
                      'calibrated on a sample of these images: a glob or a .txt/.csv/.parquet '
                      'list, as --input takes')
  parser.add_argument('--int8_images', type=int, default=int8.CALIBRATION_IMAGES,
                      help='images to calibrate on. Default: %(default)s')
  parser.add_argument('--int8_holdout', type=int, default=int8.HOLDOUT_IMAGES,
                      help='other images to measure agreement with fp32 on. '
                      'Default: %(default)s')
  add_verbose_flag(parser)
  args = parse_with_filesystem_options(parser, argv)
  try:
    handles = source_handles(args.source, args.feature_source)
    sample = (calibration_sample(args.int8_calibration, args.int8_images, args.int8_holdout)
              if args.int8_calibration else None)
    model = choose_model(argparse.Namespace(
        model_handle=handles[0], feature_handle=handles[1], labels=args.labels,
        image_size=args.image_size)) if sample else None
    staged = {'--model_handle': None, '--feature_handle': None, '--labels': None}
    staged['--model_handle'], staged['--feature_handle'] = stage(handles, args.dest)
    if args.labels:
      staged['--labels'] = stage_labels(args.labels, args.dest)
    if sample:
      stage_int8(model, handles, args.dest, sample, args.int8_calibration)
  except (ModelError, ValueError, FileNotFoundError) as e:
    parser.error(str(e))
  print('label-images ... ' + ' '.join(f'{flag} {value}' for flag, value in staged.items()
                                       if value))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
