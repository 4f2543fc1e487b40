"""Silence from the native libraries' INFO logging where the user asked for it.

TensorFlow logs through absl before absl is initialised (oneDNN notices, "Could not find
cuda drivers"), and LiteRT through its own logger: both write to stderr whatever
TF_CPP_MIN_LOG_LEVEL says. Where that variable asks for quiet (the command line sets it
unless --verbose), stderr goes to /dev/null while they load.
"""

import contextlib
import os
import sys


def quiet_requested():
  return os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0') not in ('', '0')


@contextlib.contextmanager
def native_stderr_hidden():
  if not quiet_requested():
    yield
    return
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def import_tensorflow():
  with native_stderr_hidden():
    import tensorflow  # pylint: disable=import-outside-toplevel
  return tensorflow
