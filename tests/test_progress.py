"""The live progress display of local runs."""

import io
import time

from pipeline import progress
from pipeline.progress import ProgressDisplay, progress_line
from transforms.metrics import Tally


def test_while_listing_it_says_so():
  assert progress_line({'uris_listed': 53000}, 0.0) == 'listing URIs: 53000 so far'


def test_the_total_is_what_is_left_to_label_once_selection_began():
  tally = {'uris_listed': 500, 'duplicate_uris': 60, 'already_done': 40, 'uris_to_label': 120,
           'labels': 90, 'errors': 10}
  assert progress_line(tally, 10.0) == '90 labelled, 10 failed of 400, 10.0 images/s, ETA 0m30s'
  assert progress_line({'uris_listed': 50400, 'uris_to_label': 9000, 'labels': 7200},
                       3600.0).endswith('ETA 6h00m')
  finished = {'uris_listed': 5, 'uris_to_label': 5, 'labels': 5}
  assert progress_line(finished, 1.0) == '5 labelled, 0 failed of 5, 5.0 images/s'


class FakeTerminal(io.StringIO):

  def isatty(self):
    return True


def test_a_terminal_gets_one_rewritten_line_and_the_rate_counts_from_selection(monkeypatch):
  monkeypatch.setattr(progress, 'TERMINAL_INTERVAL_S', 0.01)
  tally, stream = Tally(), FakeTerminal()
  tally.add('labels', 3)  # from an earlier run in this process: not counted
  with ProgressDisplay(stream, tally):
    tally.add('uris_listed', 10)
    time.sleep(0.3)  # listing takes a while: not part of the labelling rate
    tally.add('uris_to_label', 10)
    time.sleep(0.05)
    tally.add('labels', 4)
    time.sleep(0.1)
  output = stream.getvalue()
  assert '\r\x1b[Klisting URIs: 10 so far' in output
  last = output.rstrip('\n').split('\r\x1b[K')[-1]
  assert last.startswith('4 labelled, 0 failed of 10, ')
  assert float(last.split(', ')[2].split()[0]) > 4 / 0.3  # faster than if counted from start
  assert output.endswith('\n') and output.count('\n') == 1


def test_logs_get_a_line_a_minute_at_most(monkeypatch):
  monkeypatch.setattr(progress, 'TERMINAL_INTERVAL_S', 0.01)
  stream = io.StringIO()
  with ProgressDisplay(stream, Tally()):
    time.sleep(0.1)
  assert stream.getvalue() == ''
