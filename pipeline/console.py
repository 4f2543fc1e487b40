"""What the commands print besides their results: status lines on stderr; the warnings of
this program's own modules on the console and everything else in a log file; silence from
the native libraries' start-up logging. --verbose puts everyone's warnings on the console
and lets the native libraries speak."""

import contextlib
import datetime
import io
import logging
import os
import sys
import tempfile

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


def plural(count, noun, nouns=None):
  """'1 image', '0 images', '1,000 images'."""
  return f'{count:,} ' + (noun if count == 1 else nouns or noun + 's')


def shortened(text, chars):
  """`text`, or its first characters and an ellipsis where it is longer than `chars`."""
  return text if len(text) <= chars else text[:chars - 1].rstrip(' ,') + '…'


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


LOG_DIR = os.path.join(tempfile.gettempdir(), 'label-images', 'logs')
_OWN_MODULES = ('pipeline', 'transforms')


class _OnConsole(logging.Filter):
  """Without --verbose: this program's own warnings only, not Beam's worker tracebacks."""

  def __init__(self, verbose):
    super().__init__()
    self._verbose = verbose

  def filter(self, record):
    if getattr(record, 'file_only', False):
      return False
    # RunInference warns on every model load that it can't read memory usage: Beam imports
    # `resource` together with a module that needs PyTorch, so without PyTorch it gives up.
    if 'Resource module is not available' in record.getMessage():
      return False
    return self._verbose or record.name.split('.')[0] in _OWN_MODULES


def start_logging(verbose):
  """Logs everything at INFO and above to a new file under LOG_DIR (created when the first
  record comes); returns its path."""
  path = os.path.join(LOG_DIR, f'{datetime.datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}.log')
  os.makedirs(LOG_DIR, exist_ok=True)
  to_file = logging.FileHandler(path, delay=True, encoding='utf-8')
  to_file.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  to_console = logging.StreamHandler()
  to_console.setLevel(logging.WARNING)
  to_console.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
  to_console.addFilter(_OnConsole(verbose))
  root = logging.getLogger()
  root.handlers = [to_file, to_console]
  root.setLevel(logging.INFO)
  return path


def log_to_file(message, failure):
  """The full traceback of `failure`, to the log file only."""
  logging.getLogger(__name__).error(message, exc_info=failure, extra={'file_only': True})


class _AppendToFile(io.TextIOBase):
  """A text stream that appends to a file, opened at the first write."""

  def __init__(self, path):
    super().__init__()
    self._path = path
    self._file = None

  def write(self, text):
    if self._file is None:
      self._file = open(self._path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    return self._file.write(text)

  def flush(self):
    if self._file is not None:
      self._file.flush()


@contextlib.contextmanager
def stderr_to_log(log_path, verbose):
  """While the pipeline runs, what is printed to sys.stderr goes to the log file: Beam's
  workers print every failed bundle's traceback there. This program's own lines (progress,
  logged warnings) hold the real stderr from before."""
  if verbose:
    yield
    return
  console, sys.stderr = sys.stderr, _AppendToFile(log_path)
  try:
    yield
  finally:
    # Left open: a thread of the runner may still hold it, and write later.
    sys.stderr.flush()
    sys.stderr = console
