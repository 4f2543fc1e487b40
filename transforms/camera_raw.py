"""Camera RAW files (DNG, CR2/CR3, NEF, ARW, ...), told by their content and read through
LibRaw (rawpy, in the `formats` extra): the embedded preview where it is large enough to
label (fast, and what the camera showed), else the raw data developed."""

import io
import struct

import numpy as np
from PIL import Image

from transforms.failures import ImageError

RAWPY = 'rawpy'
# A preview with a shorter side below this is a thumbnail, and the raw data is developed:
# the model's 224-pixel crop is 87.5% of the short side.
MIN_PREVIEW_SIDE = 256
_DNG_VERSION_TAG = 50706
_TIFF_MAKES = (b'NIKON', b'SONY', b'Canon', b'PENTAX', b'FUJIFILM', b'OLYMPUS', b'Panasonic',
               b'LEICA', b'Hasselblad', b'Phase One')


def _tiff_ifd0_tags(data):
  """The tag numbers of a TIFF file's first directory, or () where it is not TIFF."""
  if data[:4] == b'II*\0':
    order = '<'
  elif data[:4] == b'MM\0*':
    order = '>'
  else:
    return ()
  try:
    offset = struct.unpack(order + 'I', data[4:8])[0]
    count = struct.unpack(order + 'H', data[offset:offset + 2])[0]
    return tuple(struct.unpack(order + 'H', data[offset + 2 + 12 * i:offset + 4 + 12 * i])[0]
                 for i in range(count))
  except struct.error:
    return ()


def is_camera_raw(data):
  """DNG (a TIFF with DNGVersion), Canon CR3, and the TIFF-based RAWs of the big makers."""
  if data[4:12] == b'ftypcrx ':
    return True
  tags = _tiff_ifd0_tags(data)
  if _DNG_VERSION_TAG in tags:
    return True
  # CR2 says 'CR' after the header; NEF, ARW, PEF, ... name their maker early on.
  return bool(tags) and (data[8:10] == b'CR' or any(make in data[:4096] for make in _TIFF_MAKES))


def _rawpy():
  try:
    import rawpy  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImageError('unsupported_format',
                     "a camera RAW image: install rawpy on the workers "
                     "(pip install 'label-images[formats]')") from e
  return rawpy


def _preview(raw, rawpy):
  """The embedded preview as a PIL image, or None where there is none big enough."""
  try:
    thumb = raw.extract_thumb()
  except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
    return None
  if thumb.format == rawpy.ThumbFormat.JPEG:
    preview = Image.open(io.BytesIO(thumb.data))
  else:
    preview = Image.fromarray(np.asarray(thumb.data))
  return preview if min(preview.size) >= MIN_PREVIEW_SIDE else None


def open_camera_raw(data, max_pixels):
  """(image as PIL, 'preview' or 'developed') of a camera RAW file; raises ImageError."""
  rawpy = _rawpy()
  try:
    with rawpy.imread(io.BytesIO(data)) as raw:
      width, height = raw.sizes.raw_width, raw.sizes.raw_height
      if width * height > max_pixels:
        raise ImageError('too_many_pixels',
                         f'{width}x{height} is above the limit of {max_pixels} pixels')
      preview = _preview(raw, rawpy)
      if preview is not None:
        return preview, 'preview'
      return Image.fromarray(raw.postprocess(use_camera_wb=True, output_bps=8)), 'developed'
  except ImageError:
    raise
  except rawpy.LibRawIOError as e:
    raise ImageError('truncated', f'the camera RAW data ends early ({e})') from e
  except Exception as e:  # pylint: disable=broad-except
    raise ImageError('decode_failed',
                     f'a camera RAW image with no usable preview that LibRaw could not develop '
                     f'({type(e).__name__}: {e})') from e
