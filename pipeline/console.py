"""What the commands print besides their results: status lines on stderr, and silence from
the native libraries' start-up logging unless --verbose."""

import os
import sys

# TensorFlow's C++ logging (oneDNN notices, "failed call to cuInit", converter lines), gRPC's
# and absl's: read from the environment when the libraries load, so set before any import.
_QUIET_ENVIRONMENT = {
    'TF_CPP_MIN_LOG_LEVEL': '3',
    'GRPC_VERBOSITY': 'ERROR',
    'GLOG_minloglevel': '3',
}

VERBOSE_HELP = ("Also show the native libraries' logging (TensorFlow, LiteRT, gRPC), hidden by "
                'default.')


def add_verbose_flag(parser):
  parser.add_argument('--verbose', action='store_true', help=VERBOSE_HELP)


def quiet_native_logs(verbose):
  """Hides the libraries' start-up noise, unless verbose or the user set the variables."""
  if verbose:
    return
  for name, value in _QUIET_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


def status(message, transient=False):
  """A line on stderr; a transient one is overwritten by the next on a terminal, and not
  printed at all elsewhere (logs get the lines that last)."""
  if transient:
    if sys.stderr.isatty():
      print(f'\r\033[K{message}', end='', file=sys.stderr, flush=True)
    return
  if sys.stderr.isatty():
    print('\r\033[K', end='', file=sys.stderr)
  print(message, file=sys.stderr, flush=True)
