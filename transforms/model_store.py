"""Resolving a TF Hub handle to a local SavedModel directory.

Handles are what TF Hub accepts: a tfhub.dev or Kaggle URL (downloaded once into TF
Hub's cache, TFHUB_CACHE_DIR), a local directory, or a gs:// path. A gs:// model is
copied to local disk through Beam's filesystem, the same google-cloud-storage client
the images are read with, so it works wherever the data path works (including a
storage emulator), once per content: into $LABEL_IMAGES_CACHE_DIR, by default
label-images-models under the system's temporary directory.
"""

import hashlib
import os
import shutil
import tempfile
import threading

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.quiet import import_tensorflow

CACHE_DIR_VARIABLE = 'LABEL_IMAGES_CACHE_DIR'
SAVED_MODEL = 'saved_model.pb'
_copy_lock = threading.Lock()


def local_model_dir(handle):
  if handle.startswith('gs://'):
    return _copy_to_local_cache(handle)
  if '://' in handle:
    import_tensorflow()  # quietly, before tensorflow_hub imports it
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
    return hub.resolve(handle)
  if not os.path.isdir(handle):
    raise FileNotFoundError(f'model handle {handle!r} is neither a URL nor a local directory')
  if not is_saved_model_dir(handle):
    raise FileNotFoundError(f'{handle} holds no SavedModel ({SAVED_MODEL})')
  return handle


def cache_root():
  """Where models copied from buckets, and their LiteRT conversions, are kept."""
  return os.environ.get(CACHE_DIR_VARIABLE) or os.path.join(tempfile.gettempdir(),
                                                            'label-images-models')


def hash_model_files(digest, model_dir):
  """Feeds every file under model_dir, by its relative path and content, to a hashlib digest."""
  for root, dirs, files in os.walk(model_dir):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      digest.update(os.path.relpath(path, model_dir).encode() + b'\0')
      with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
          digest.update(chunk)
  return digest


def is_saved_model_dir(path):
  return os.path.isfile(os.path.join(path, SAVED_MODEL))


def bucket_files(handle):
  """(the handle as a prefix ending in /, the metadata of every file under it)."""
  prefix = handle.rstrip('/') + '/'
  return prefix, FileSystems.match([prefix + '**'])[0].metadata_list


def listing_digest(files):
  """A hash of what a bucket holds now: each file's path, size and time. A model replaced
  at the same path hashes differently."""
  digest = hashlib.sha256()
  for f in sorted(files, key=lambda f: f.path):
    digest.update(f'{f.path}\0{f.size_in_bytes}\0{f.last_updated_in_seconds}\0'.encode())
  return digest.hexdigest()


def _copy_to_local_cache(handle):
  root = cache_root()
  with _copy_lock:
    prefix, files = bucket_files(handle)
    if not any(f.path.endswith('/' + SAVED_MODEL) for f in files):
      raise FileNotFoundError(f'no {SAVED_MODEL} under {handle}')
    target = os.path.join(root, listing_digest(files)[:20])
    if os.path.isdir(target):
      return target
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix='.partial-')
    for f in files:
      local_path = os.path.join(staging, f.path[len(prefix):])
      os.makedirs(os.path.dirname(local_path), exist_ok=True)
      with FileSystems.open(f.path, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
          open(local_path, 'wb') as dst:
        shutil.copyfileobj(src, dst, length=8 * 1024 * 1024)
    try:
      os.rename(staging, target)  # atomic: another process may have finished first
    except OSError:
      shutil.rmtree(staging, ignore_errors=True)
  return target
