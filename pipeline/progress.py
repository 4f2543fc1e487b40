"""A live progress line on stderr for local runs: URIs listed so far, then done, failed,
of how many, images/s and ETA.

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


def selected(tally):
  """URIs through the selection step. None pass it until every URI has been listed: it
  groups them all by URI first."""
  return sum(tally.get(name, 0) for name in ('uris_to_label', 'duplicate_uris', 'already_done'))


def progress_line(tally, seconds_labelling):
  """The line for `tally`, `seconds_labelling` after the first URI passed selection.

  The total is the URIs listed less the duplicates and those already in the output: exact
  once selection has seen every URI, and never too low before.
  """
  if not selected(tally):
    return f"listing URIs: {tally.get('uris_listed', 0)} so far"
  done, failed = tally.get(LABELS, 0), tally.get(ERRORS, 0)
  finished = done + failed
  total = (tally.get('uris_listed', 0) - tally.get('duplicate_uris', 0)
           - tally.get('already_done', 0))
  rate = finished / seconds_labelling if seconds_labelling > 0 else 0.0
  line = f'{done} labelled, {failed} failed of {total}, {rate:.1f} images/s'
  if rate > 0 and finished < total:
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
    self._labelling_since = None
    self._baseline = {}

  def __enter__(self):
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
    # Polled often, so that the rate counts from when labelling began; printed less often
    # where the output is a log.
    print_interval = TERMINAL_INTERVAL_S if self._interactive else LOG_INTERVAL_S
    printed_at = time.monotonic()
    while not self._stop.wait(TERMINAL_INTERVAL_S):
      tally, now = self._current(), time.monotonic()
      if self._labelling_since is None and selected(tally):
        self._labelling_since = now
      if now - printed_at < print_interval:
        continue
      printed_at = now
      labelling = now - self._labelling_since if self._labelling_since is not None else 0.0
      line = progress_line(tally, labelling)
      if self._interactive:
        self._stream.write(f'\r\x1b[K{line}')
      else:
        self._stream.write(f'label-images: {line}\n')
      self._stream.flush()
