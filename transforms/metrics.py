"""The pipeline's metrics: Beam counters and distributions in one namespace (shown in the
Dataflow UI and the end-of-run summary), and process-wide tallies that let a local run
show live progress while Beam's own metrics are only read at the end."""

import collections
import threading

from apache_beam.metrics import Metrics

NAMESPACE = 'label_images'
IMAGES_BY_ENGINE = 'images_by_engine'


def counter(name):
  return Metrics.counter(NAMESPACE, name)


def distribution(name):
  return Metrics.distribution(NAMESPACE, name)


class Tally:

  def __init__(self):
    self._lock = threading.Lock()
    self._counts = collections.Counter()

  def add(self, name, count=1):
    with self._lock:
      self._counts[name] += count

  def snapshot(self):
    with self._lock:
      return dict(self._counts)


# Shared by every worker thread of this process; a remote worker's stays unread.
PROCESS_TALLY = Tally()
