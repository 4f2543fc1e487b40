"""Plain JPEGs straight through libjpeg-turbo (simplejpeg): scaled in the DCT domain while
decoding, into a numpy array, with no Pillow image in between."""

import io
import math
from typing import NamedTuple

import numpy as np
import simplejpeg
from PIL import Image

# Denominators of the scales decoded: libjpeg-turbo has SIMD code for 1/8, 1/4, 1/2 and 1;
# 3/8, 5/8, 3/4 and 7/8 go through plain C and measured slower than the next of these above
# them (a 500x375 JPEG at 3/4 or 7/8 takes 1.4x and 1.7x its whole decode).
DCT_SCALES = (8, 4, 2, 1)
_PLAIN_COLORSPACES = ('YCbCr', 'Gray')
_ORIENTATION = 0x0112
# numpy's view of each EXIF orientation's transposition (Pillow's ImageOps.exif_transpose).
_UPRIGHT = {
    1: lambda pixels: pixels,
    2: lambda pixels: pixels[:, ::-1],
    3: lambda pixels: pixels[::-1, ::-1],
    4: lambda pixels: pixels[::-1],
    5: lambda pixels: pixels.transpose(1, 0, 2),
    6: lambda pixels: np.rot90(pixels, -1),
    7: lambda pixels: pixels[::-1, ::-1].transpose(1, 0, 2),
    8: lambda pixels: np.rot90(pixels, 1),
}


class PlainJpeg(NamedTuple):
  width: int  # as stored, before the orientation
  height: int
  orientation: int  # EXIF, 1 to 8

  @property
  def turned(self):
    return self.orientation >= 5


def plain_jpeg(data):
  """The PlainJpeg of an 8-bit YCbCr or grayscale JPEG with an ordinary orientation, or None
  for anything else (other formats, CMYK, unreadable headers or EXIF), which Pillow decodes."""
  if data[:3] != b'\xff\xd8\xff':
    return None
  try:
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    orientation = (Image.open(io.BytesIO(data)).getexif().get(_ORIENTATION, 1)
                   if _may_hold_orientation(data) else 1)
  except Exception:  # pylint: disable=broad-except
    return None
  if colorspace not in _PLAIN_COLORSPACES or orientation not in _UPRIGHT:
    return None
  return PlainJpeg(width, height, orientation)


def _may_hold_orientation(data):
  """Whether an APP1 segment (EXIF or XMP, where Pillow looks for the orientation) comes before
  the first scan, or the markers are not plain enough to tell. Most web images hold neither,
  and walking the markers costs a tenth of Pillow's parse of them."""
  offset = 2
  while offset + 4 <= len(data) and data[offset] == 0xFF:
    marker = data[offset + 1]
    if marker == 0xDA:  # start of scan
      return False
    if marker == 0xE1 or not 0xC0 <= marker <= 0xFE or 0xD0 <= marker <= 0xD9:
      return True  # APP1, or fill bytes or a marker without a length where none belongs
    offset += 2 + int.from_bytes(data[offset + 2:offset + 4], 'big')
  return True


def dct_scale(width, height, min_width, min_height):
  """The largest denominator in DCT_SCALES that keeps both decoded sides at least this long."""
  for scale in DCT_SCALES:
    if math.ceil(width / scale) >= min_width and math.ceil(height / scale) >= min_height:
      return scale
  return 1


def decode(data, jpeg, scale):
  """RGB uint8 pixels [height, width, 3] as stored, decoded at 1/scale. Raises ValueError where
  libjpeg-turbo finds anything wrong, even what it could recover from."""
  if scale == 1:
    return simplejpeg.decode_jpeg(data, 'RGB', strict=True)
  return simplejpeg.decode_jpeg(data, 'RGB', min_width=math.ceil(jpeg.width / scale),
                                min_height=math.ceil(jpeg.height / scale), strict=True)


def upright(pixels, orientation):
  """pixels [height, width, channels] as stored, turned as EXIF `orientation` says."""
  return np.ascontiguousarray(_UPRIGHT[orientation](pixels))
