"""Decoding image bytes into the network's input: RGB uint8 pixels at the model's size.

Preprocessing follows how TF Hub's image classifiers were evaluated: RGB, an 87.5% central
crop, a bilinear resize to the (height, width) the model takes. Pixels stay uint8 between
stages (4x smaller than float); the model scales them to [0, 1].

Plain JPEGs, most of what a run reads, take a faster path (tests/perf/decode_rates.py) with
the same pixels within the tolerance tests/test_decode_parity.py holds it to: libjpeg-turbo
(simplejpeg) scales them in the DCT domain while decoding, and the crop and resize run
Pillow's bilinear filter in SIMD (cykooz-resizer). Everything else goes through Pillow, as
decode_with_pillow.
"""

import contextlib
import io
import math
import time
import warnings
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from cykooz_resizer import (CropBox, FilterType, ImageData, PixelType, ResizeAlg, ResizeOptions,
                            Resizer)
from PIL import Image, ImageOps

from transforms import camera_raw, formats, jpeg, metrics
from transforms.failures import FAILURES, Failure, ImageError

CENTRAL_FRACTION = 0.875
# A plain JPEG is decoded at the smallest DCT scale whose central crop stays this many times
# the model's size; the Pillow path keeps twice, for the resize to filter. From 1.25 up, the
# pixels measured within 0.85 levels on average (p99 6) of the Pillow path's on sharp photos;
# just above 1 the resize hardly filters the 1/8-scale blocks and they drift to 1.5 (p99 12).
# A 3 MB 4032x3024 photo for 224x224 is then decoded at 1/8 instead of 1/4, in 0.87 of the
# time: Huffman decoding, the same at every scale, is most of it.
DCT_MARGIN = 1.25
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
  """The Pillow path decodes JPEGs at a reduced scale only while both sides stay at least this
  long, twice what the central crop resized to `size` (height, width) needs."""
  return 2 * round(max(size) / CENTRAL_FRACTION)


def decode_image(image_bytes, size, max_pixels=DEFAULT_MAX_PIXELS):
  """Returns (pixels [height, width, 3] for `size` (height, width), the image's width, its
  height); raises ImageError for anything undecodable."""
  with _image_errors(image_bytes):
    decoded = _decode_plain_jpeg(image_bytes, size, max_pixels)
    if decoded is None:
      decoded = _decode_with_pillow(image_bytes, size, max_pixels)
    return decoded


def decode_with_pillow(image_bytes, size, max_pixels=DEFAULT_MAX_PIXELS):
  """decode_image through Pillow alone: the path of every format but plain JPEGs, the one those
  took before, and the reference their libjpeg-turbo path is held to."""
  with _image_errors(image_bytes):
    return _decode_with_pillow(image_bytes, size, max_pixels)


@contextlib.contextmanager
def _image_errors(image_bytes):
  """Turns whatever decoding raises into an ImageError of a stable kind."""
  try:
    yield
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
  _refuse_too_many_pixels(image.width, image.height, max_pixels)
  full_size = image.size
  if image.format == 'JPEG' and min_side:
    # Decode a large JPEG at 1/2, 1/4 or 1/8 scale in the DCT domain: several times faster
    # and smaller.
    image.draft('RGB', (min_side, min_side))
  decoded_size = image.size
  image = _upright(image)
  turned = image.size != decoded_size
  return _to_rgb(image), full_size[::-1] if turned else full_size


def _refuse_too_many_pixels(width, height, max_pixels):
  # Called before decoding: the header's size is known before any pixel is allocated.
  if width * height > max_pixels:
    raise ImageError('too_many_pixels',
                     f'{width}x{height} is above the limit of {max_pixels} pixels')


def _decode_with_pillow(image_bytes, size, max_pixels):
  # Drafting stops at draft_min_side, so the crop is still resized down by 2x or more.
  image, (width, height) = open_upright(image_bytes, max_pixels, draft_min_side(size))
  height_out, width_out = size
  resized = image.resize(
      (width_out, height_out), Image.BILINEAR, box=central_crop_box(*image.size))
  return np.asarray(resized, dtype=np.uint8), width, height


def _decode_plain_jpeg(image_bytes, size, max_pixels):
  """decode_image's result through libjpeg-turbo, or None where Pillow is to decode: anything
  but a plain JPEG, or one libjpeg-turbo finds fault with (Pillow then decodes it, or raises,
  as it always did)."""
  plain = jpeg.plain_jpeg(image_bytes)
  if plain is None:
    return None
  _refuse_too_many_pixels(plain.width, plain.height, max_pixels)
  scale = jpeg.dct_scale(plain.width, plain.height, *_min_decoded_size(size, plain.turned))
  try:
    pixels = jpeg.decode(image_bytes, plain, scale)
  except ValueError:
    return None
  # Cropped and resized as stored, then turned: the box is central, so the order is the same.
  resized = _resize_crop(pixels, _pillow_path_box(plain, scale, size),
                         size[::-1] if plain.turned else size)
  width, height = (plain.height, plain.width) if plain.turned else (plain.width, plain.height)
  return jpeg.upright(resized, plain.orientation), width, height


def _min_decoded_size(size, turned):
  """(width, height), as stored, that keeps the central crop DCT_MARGIN times `size`."""
  height, width = (math.ceil(side * DCT_MARGIN / CENTRAL_FRACTION) for side in size)
  return (height, width) if turned else (width, height)


def _pillow_path_box(plain, scale, size):
  """The central crop box on pixels decoded at 1/scale as stored, where the Pillow path puts
  it. That path crops the image Pillow drafted at its own scale, whose sides are rounded up to
  whole pixels, so its box sits off the exact centre by a fraction of a pixel; on a sharp
  photo whose sides the scale does not divide, the exact centre measured up to 2.6 levels
  away on average, the shared one within DCT_MARGIN's figures."""
  draft = _pillow_draft_scale(plain.width, plain.height, draft_min_side(size))
  box = central_crop_box(math.ceil(plain.width / draft), math.ceil(plain.height / draft))
  return tuple(side * draft / scale for side in box)


def _pillow_draft_scale(width, height, min_side):
  """The reduction JpegImageFile.draft picks for (min_side, min_side)."""
  most = min(width // min_side, height // min_side)
  return max((scale for scale in jpeg.DCT_SCALES if scale <= most), default=1)


def _resize_crop(pixels, box, size):
  """Pillow's resize to `size` with BILINEAR and box=box, on numpy pixels: cykooz-resizer runs
  the same filter in SIMD, within 1 level of Pillow's rounding."""
  height, width = pixels.shape[:2]
  left, top, right, bottom = box
  height_out, width_out = size
  source = ImageData(width, height, PixelType.U8x3, pixels.tobytes())
  resized = ImageData(width_out, height_out, PixelType.U8x3)
  options = ResizeOptions(ResizeAlg.convolution(FilterType.bilinear),
                          crop_box=CropBox(left, top, right - left, bottom - top))
  # A Resizer of its own: one shared by the worker's threads would let one resize at a time.
  Resizer().resize(source, resized, options)
  return np.frombuffer(resized.get_buffer(), np.uint8).reshape(height_out, width_out, 3)


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
