"""A live progress line on stderr for local runs: done, failed, images/s, ETA.

It reads the process-wide tallies the workers keep (transforms/metrics.py), so it shows
progress only where the workers run in this process (DirectRunner's in-memory and
multi-threaded modes). On a terminal it rewrites one line twice a second; otherwise it
prints a line a minute, so that logs are not flooded.
"""

import sys
import threading
import time

from transforms.metrics import PROCESS_TALLY
from transforms.schema import ERRORS, LABELS

TERMINAL_INTERVAL_S = 0.5
LOG_INTERVAL_S = 60.0


def progress_line(tally, seconds):
  done, failed = tally.get(LABELS, 0), tally.get(ERRORS, 0)
  finished, total = done + failed, tally.get('uris_to_label', 0)
  rate = finished / seconds if seconds > 0 else 0.0
  line = f'{done} labelled, {failed} failed'
  if total:
    line += f' of {total}'
  line += f', {rate:.1f} images/s'
  if total and rate > 0 and finished < total:
    line += f', ETA {_duration((total - finished) / rate)}'
  return line


def _duration(seconds):
  minutes, seconds = divmod(int(seconds + 0.5), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


class ProgressDisplay:
  """Use as a context manager around a local run."""

  def __init__(self, stream=sys.stderr, tally=PROCESS_TALLY):
    self._stream = stream
    self._tally = tally
    self._interactive = stream.isatty()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._started = None
    self._baseline = {}

  def __enter__(self):
    self._started = time.monotonic()
    self._baseline = self._tally.snapshot()
    self._thread.start()
    return self

  def __exit__(self, *exc_info):
    self._stop.set()
    self._thread.join()
    if self._interactive:
      self._stream.write('\n')
      self._stream.flush()

  def _current(self):
    now = self._tally.snapshot()
    return {name: count - self._baseline.get(name, 0) for name, count in now.items()}

  def _loop(self):
    interval = TERMINAL_INTERVAL_S if self._interactive else LOG_INTERVAL_S
    while not self._stop.wait(interval):
      line = progress_line(self._current(), time.monotonic() - self._started)
      if self._interactive:
        self._stream.write(f'\r\x1b[K{line}')
      else:
        self._stream.write(f'label-images: {line}\n')
      self._stream.flush()
