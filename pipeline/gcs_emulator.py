"""Anonymous GCS access when STORAGE_EMULATOR_HOST points at a storage emulator.

Beam looks up Google credentials once per process before its first GCS call; with
no credentials to find (offline, or against an emulator) it retries for about 30 s
before going on anonymously. An emulator takes no credentials, so where
STORAGE_EMULATOR_HOST is set the lookup is settled as anonymous at once; the
google-cloud-storage client then sends every request to the emulator.

Imported at worker start-up as a Beam plugin (--beam_plugins), and by the driver.
"""

import os

from apache_beam.internal.gcp import auth

EMULATOR_ENV = 'STORAGE_EMULATOR_HOST'


def use_anonymous_credentials_for_emulator():
  if not os.environ.get(EMULATOR_ENV):
    return False
  # pylint: disable=protected-access
  with auth._Credentials._credentials_lock:
    auth._Credentials._credentials = None
    auth._Credentials._credentials_init = True
  return True


def forget_credentials():
  """Lets Beam look credentials up again (after the emulator is gone)."""
  with auth._Credentials._credentials_lock:  # pylint: disable=protected-access
    auth._Credentials._credentials_init = False  # pylint: disable=protected-access


use_anonymous_credentials_for_emulator()
