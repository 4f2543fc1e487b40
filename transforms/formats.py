"""Image formats beyond Pillow's own: HEIC/HEIF (iPhone photos) and JPEG XL, through Pillow
plugins registered once per process, and the container checks that tell a truncated file
of these formats from a broken one.

The plugins are optional (`pip install 'label-images[formats]'`): their wheels bundle codecs
under the GPL (see README, "Formats"). Where one is missing, an image of its format fails
with a message naming the package to install, rather than as "not an image".
"""

import importlib
from typing import NamedTuple

# ISO base media file format brands of HEIF images (AVIF is Pillow's own).
_HEIF_BRANDS = {b'heic', b'heix', b'heim', b'heis', b'hevc', b'hevx', b'mif1', b'msf1'}
_JXL_CODESTREAM = b'\xff\x0a'
_JXL_CONTAINER = b'\x00\x00\x00\x0cJXL \r\n\x87\n'


class Plugin(NamedTuple):
  format: str
  package: str  # on PyPI
  module: str


PLUGINS = (Plugin('HEIF', 'pillow-heif', 'pillow_heif'),
           Plugin('JPEG XL', 'pillow-jxl-plugin', 'pillow_jxl'))
_missing = None  # {format: package} of the plugins that could not be imported


def register_plugins():
  """Registers every installed plugin with Pillow, once; returns {format: package} of those
  missing."""
  global _missing  # pylint: disable=global-statement
  if _missing is None:
    missing = {}
    for plugin in PLUGINS:
      try:
        module = importlib.import_module(plugin.module)
      except ImportError:
        missing[plugin.format] = plugin.package
        continue
      if plugin.module == 'pillow_heif':
        module.register_heif_opener()  # pillow_jxl registers itself when imported
    _missing = missing
  return _missing


def sniff(data):
  """'HEIF' or 'JPEG XL' where the bytes are one, else None."""
  if data[4:8] == b'ftyp' and data[8:12] in _HEIF_BRANDS:
    return 'HEIF'
  if data.startswith(_JXL_CODESTREAM) or data.startswith(_JXL_CONTAINER):
    return 'JPEG XL'
  return None


def missing_package(data):
  """The package that would decode these bytes, where it is not installed."""
  return register_plugins().get(sniff(data))


def iso_boxes_end_early(data):
  """Whether an ISO-BMFF file (HEIF, a JPEG XL container) declares a box longer than what is
  left of the file."""
  offset = 0
  while offset + 8 <= len(data):
    size = int.from_bytes(data[offset:offset + 4], 'big')
    if size == 1 and offset + 16 <= len(data):  # a 64-bit size follows the box type
      size = int.from_bytes(data[offset + 8:offset + 16], 'big')
    elif size == 0:  # the box runs to the end of the file
      return False
    if size < 8:
      return False  # not a box structure: leave the verdict to the decoder
    offset += size
  return offset > len(data)
