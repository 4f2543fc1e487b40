"""Decoding image bytes into the network's input: RGB uint8 pixels at the model's size.

Preprocessing follows how TF Hub's image classifiers were evaluated: RGB, an 87.5% central
crop, a bilinear resize to the (height, width) the model takes. Pixels stay uint8 between
stages (4x smaller than float); the model scales them to [0, 1].
"""

import io
import time
import warnings
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from PIL import Image, ImageOps

from transforms import camera_raw, formats, metrics
from transforms.failures import FAILURES, Failure, ImageError

CENTRAL_FRACTION = 0.875
# Pillow's own decompression-bomb threshold.
DEFAULT_MAX_PIXELS = 89_478_485
# decode_image checks the pixel count itself, against a limit the user sets; Pillow's global
# check (which refuses at twice its threshold) would otherwise cap that limit.
Image.MAX_IMAGE_PIXELS = None
_SIXTEEN_BIT_GRAY_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')
formats.register_plugins()


class DecodedImage(NamedTuple):
  uri: str
  pixels: np.ndarray  # uint8 [height, width, 3], the model's size
  width: int  # of the original image, upright
  height: int


def _to_rgb(image):
  if image.mode in _SIXTEEN_BIT_GRAY_MODES:
    # convert('RGB') would clip 16-bit values at 255 instead of scaling them.
    gray = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
    return Image.fromarray(gray.astype(np.uint8), 'L').convert('RGB')
  if image.mode == 'RGB':
    return image
  # Covers L, LA, P (palette, with or without transparency), RGBA, CMYK, YCbCr, 1:
  # alpha is dropped, as TensorFlow's decoders do with channels=3.
  return image.convert('RGB')


def _upright(image):
  """Applies the EXIF orientation; loads the first frame of an animation."""
  try:
    return ImageOps.exif_transpose(image)
  except OSError:
    raise  # the pixels themselves are broken (truncated, corrupt)
  except Exception:  # pylint: disable=broad-except
    # A malformed EXIF block does not make the pixels unusable.
    image.load()
    return image


def central_crop_box(width, height, fraction=CENTRAL_FRACTION):
  crop_width, crop_height = width * fraction, height * fraction
  left, top = (width - crop_width) / 2, (height - crop_height) / 2
  return left, top, left + crop_width, top + crop_height


def draft_min_side(size):
  """JPEGs are decoded at a reduced scale only while both sides stay at least this long,
  twice what the central crop resized to `size` (height, width) needs."""
  return 2 * round(max(size) / CENTRAL_FRACTION)


def decode_image(image_bytes, size, max_pixels=DEFAULT_MAX_PIXELS):
  """Returns (pixels [height, width, 3] for `size` (height, width), the image's width, its
  height); raises ImageError for anything undecodable."""
  try:
    return _decode(image_bytes, size, max_pixels)
  except ImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if 'truncated' in str(e).lower() or ends_early(image_bytes):
      raise ImageError('truncated', f'the image data ends early ({type(e).__name__}: {e})') from e
    if isinstance(e, Image.UnidentifiedImageError):
      package = formats.missing_package(image_bytes)
      if package:
        raise ImageError('unsupported_format',
                         f'a {formats.sniff(image_bytes)} image: install {package} on the workers '
                         "(pip install 'label-images[formats]')") from e
      raise ImageError('not_an_image',
                       'the bytes are not an image format Pillow can read') from e
    raise ImageError('decode_failed', f'{type(e).__name__}: {e}') from e


def ends_early(data):
  """Whether a file in a known container format stops before its own structure says it ends."""
  if data[:4] == b'RIFF' and len(data) >= 8:  # WebP: the header holds the file's length
    return int.from_bytes(data[4:8], 'little') + 8 > len(data)
  if data[:4] in (b'II*\0', b'MM\0*') and len(data) >= 8:  # TIFF: where the first directory is
    return int.from_bytes(data[4:8], 'little' if data[:2] == b'II' else 'big') >= len(data)
  if data[:8] == b'\x89PNG\r\n\x1a\n':
    return b'IEND' not in data[-12:]
  if data[:3] == b'GIF':
    return not data.endswith(b';')
  if data[:2] == b'\xff\xd8':  # JPEG
    return b'\xff\xd9' not in data[-64:]
  if data[4:8] == b'ftyp' or formats.sniff(data) == 'JPEG XL':  # HEIF, AVIF, JPEG XL boxes
    return formats.iso_boxes_end_early(data)
  return False


def open_upright(image_bytes, max_pixels=DEFAULT_MAX_PIXELS, min_side=None):
  """(the image as upright RGB, its full upright (width, height)). A JPEG is decoded at a
  reduced scale while both its sides stay at least min_side."""
  if camera_raw.is_camera_raw(image_bytes):
    image = _upright(camera_raw.open_camera_raw(image_bytes, max_pixels)[0])
    return _to_rgb(image), image.size
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)
    image = Image.open(io.BytesIO(image_bytes))
  # Refuse before decoding: the header's size is known before any pixel is allocated.
  if image.width * image.height > max_pixels:
    raise ImageError(
        'too_many_pixels',
        f'{image.width}x{image.height} is above the limit of {max_pixels} pixels')
  full_size = image.size
  if image.format == 'JPEG' and min_side:
    # Decode a large JPEG at 1/2, 1/4 or 1/8 scale in the DCT domain: several times faster
    # and smaller.
    image.draft('RGB', (min_side, min_side))
  decoded_size = image.size
  image = _upright(image)
  turned = image.size != decoded_size
  return _to_rgb(image), full_size[::-1] if turned else full_size


def _decode(image_bytes, size, max_pixels):
  # Drafting stops at draft_min_side, so the crop is still resized down by 2x or more.
  image, (width, height) = open_upright(image_bytes, max_pixels, draft_min_side(size))
  height_out, width_out = size
  resized = image.resize(
      (width_out, height_out), Image.BILINEAR, box=central_crop_box(*image.size))
  return np.asarray(resized, dtype=np.uint8), width, height


class DecodeImages(beam.DoFn):
  """(uri, image_bytes) -> DecodedImage; undecodable images go to the FAILURES output."""

  def __init__(self, size, max_pixels=DEFAULT_MAX_PIXELS):
    self._size = size
    self._max_pixels = max_pixels
    self._decode_ms = metrics.distribution('decode_ms')

  def process(self, element):
    uri, image_bytes = element
    started = time.perf_counter()
    try:
      pixels, width, height = decode_image(image_bytes, self._size, self._max_pixels)
    except ImageError as e:
      yield beam.pvalue.TaggedOutput(FAILURES, Failure(uri, 'decode', e.error, e.message))
      return
    self._decode_ms.update(int((time.perf_counter() - started) * 1000))
    yield DecodedImage(uri, pixels, width, height)
