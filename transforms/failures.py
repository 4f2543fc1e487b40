"""Failures as values: a stage that cannot handle an image emits a Failure instead of raising."""

from typing import NamedTuple

# The tagged output every stage routes its failures to.
FAILURES = 'failures'


class Failure(NamedTuple):
  uri: str
  stage: str  # where it failed: list, read, decode, inference
  error: str  # a stable kind, e.g. not_found, empty, not_an_image
  message: str  # for people


class ImageError(Exception):
  """Raised by a stage's pure core; the Beam wrapper turns it into a Failure."""

  def __init__(self, error, message):
    super().__init__(message)
    self.error = error
    self.message = message
