"""label-images stage-model: copy the two TF Hub modules to GCS once, for workers to load.

  label-images stage-model --source HANDLE --dest gs://BUCKET/PATH [--feature_source HANDLE]

Thousands of workers loading from a bucket in their own region start faster, and more
reliably, than each downloading from tfhub.dev. HANDLE is resolved once, through TF Hub's
cache for a URL. It is either the classification module's handle (the feature-vector
module's is then the same with 'classification' replaced by 'feature_vector', as on
tfhub.dev) or a directory holding classification/ and feature_vector/.
"""

import argparse
import os
import shutil
import sys

from apache_beam.io.filesystems import FileSystems

from pipeline.options import DEFAULT_MODEL_HANDLE
from transforms.model_store import local_model_dir

MODULES = ('classification', 'feature_vector')


def source_handles(source, feature_source=None):
  """(classification handle, feature-vector handle) for --source and --feature_source."""
  if '://' not in source and all(
      os.path.isdir(os.path.join(source, module)) for module in MODULES):
    return tuple(os.path.join(source, module) for module in MODULES)
  if feature_source:
    return source, feature_source
  if 'classification' not in source:
    raise ValueError(f'cannot tell the feature-vector module of {source}: pass --feature_source')
  return source, source.replace('classification', 'feature_vector')


def copy_tree(local_dir, dest):
  """Copies every file under local_dir to dest (any Beam filesystem); returns the count."""
  count = 0
  for root, _, files in os.walk(local_dir):
    for name in files:
      path = os.path.join(root, name)
      target = FileSystems.join(dest, *os.path.relpath(path, local_dir).split(os.sep))
      with open(path, 'rb') as src, FileSystems.create(target) as dst:
        shutil.copyfileobj(src, dst, length=8 * 1024 * 1024)
      count += 1
  return count


def stage(source, dest, feature_source=None):
  """Returns the staged (model_handle, feature_handle)."""
  staged = []
  for module, handle in zip(MODULES, source_handles(source, feature_source)):
    local_dir = local_model_dir(handle)
    target = FileSystems.join(dest, module)
    files = copy_tree(local_dir, target)
    print(f'staged {handle} -> {target} ({files} files)')
    staged.append(target)
  return tuple(staged)


def main(argv):
  parser = argparse.ArgumentParser(
      prog='label-images stage-model',
      description='Copies the classification and feature-vector modules of a TF Hub model to '
      'GCS (or any Beam filesystem) once, for workers to load from there.')
  parser.add_argument('--source', default=DEFAULT_MODEL_HANDLE,
                      help='TF Hub handle of the classification module, or a directory with '
                      'classification/ and feature_vector/. Default: %(default)s')
  parser.add_argument('--feature_source',
                      help="the feature-vector module's handle, where it is not the source's "
                      "with 'classification' replaced by 'feature_vector'")
  parser.add_argument('--dest', required=True,
                      help='where to copy them: DEST/classification and DEST/feature_vector')
  args = parser.parse_args(argv)
  try:
    model_handle, feature_handle = stage(args.source, args.dest, args.feature_source)
  except (ValueError, FileNotFoundError) as e:
    parser.error(str(e))
  print(f'label-images ... --model_handle {model_handle} --feature_handle {feature_handle}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
