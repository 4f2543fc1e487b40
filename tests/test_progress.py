"""The live progress display of local runs."""

import io
import time

from pipeline import progress
from pipeline.progress import ProgressDisplay, progress_line
from transforms.metrics import Tally


def test_progress_line_gives_rate_and_eta():
  assert progress_line({'labels': 90, 'errors': 10, 'uris_to_label': 400}, 10.0) == (
      '90 labelled, 10 failed of 400, 10.0 images/s, ETA 0m30s')
  assert progress_line({'labels': 5}, 0.0) == '5 labelled, 0 failed, 0.0 images/s'
  assert progress_line({'labels': 7200, 'uris_to_label': 50400}, 3600.0).endswith('ETA 6h00m')


class FakeTerminal(io.StringIO):

  def isatty(self):
    return True


def test_a_terminal_gets_one_rewritten_line(monkeypatch):
  monkeypatch.setattr(progress, 'TERMINAL_INTERVAL_S', 0.01)
  tally, stream = Tally(), FakeTerminal()
  tally.add('labels', 3)  # from an earlier run in this process: not counted
  with ProgressDisplay(stream, tally):
    tally.add('uris_to_label', 10)
    tally.add('labels', 4)
    time.sleep(0.1)
  output = stream.getvalue()
  assert '\r\x1b[K4 labelled, 0 failed of 10' in output
  assert output.endswith('\n') and output.count('\n') == 1


def test_logs_get_a_line_a_minute_at_most(monkeypatch):
  stream = io.StringIO()
  with ProgressDisplay(stream, Tally()):
    time.sleep(0.1)
  assert stream.getvalue() == ''
