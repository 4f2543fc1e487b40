"""Decoding and preprocessing: every common encoding to 224x224 RGB uint8."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from conftest import MODEL_SIZE, PHOTOS_DIR, unavailable
from transforms import decode
from transforms.decode import central_crop_box, decode_image
from transforms.failures import ImageError


def encode(image, fmt, **params):
  buffer = io.BytesIO()
  image.save(buffer, fmt, **params)
  return buffer.getvalue()


def gradient_image(width=64, height=48):
  x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
  y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
  return Image.fromarray(np.stack([x, y, 255 - x], -1), 'RGB')


def test_central_crop_keeps_87_5_percent_around_the_centre():
  assert central_crop_box(800, 400) == (50.0, 25.0, 750.0, 375.0)


@pytest.mark.parametrize('mode', ['RGB', 'L', 'RGBA', 'LA', 'P', 'CMYK', '1'])
def test_every_mode_becomes_rgb_uint8(mode):
  pixels, width, height = decode_image(encode(gradient_image().convert(mode), 'TIFF'), MODEL_SIZE)
  assert pixels.shape == (*MODEL_SIZE, 3) and pixels.dtype == np.uint8
  assert (width, height) == (64, 48)


def test_16_bit_grayscale_is_scaled_not_clipped():
  gray = np.full((32, 32), 40000, dtype=np.uint16)
  pixels, _, _ = decode_image(encode(Image.fromarray(gray), 'PNG'), MODEL_SIZE)
  assert np.all(pixels == 40000 >> 8)


def test_exif_orientation_is_applied():
  image = gradient_image(64, 48)
  exif = Image.Exif()
  exif[0x0112] = 6  # stored rotated: display turned 90 degrees clockwise
  pixels, width, height = decode_image(encode(image, 'JPEG', exif=exif, quality=95), MODEL_SIZE)
  upright, _, _ = decode_image(encode(image.transpose(Image.Transpose.ROTATE_270), 'JPEG',
                                      quality=95), MODEL_SIZE)
  assert (width, height) == (48, 64)
  assert np.abs(pixels.astype(int) - upright.astype(int)).mean() < 3


def test_first_frame_of_an_animation():
  frames = [Image.new('RGB', (20, 20), color) for color in ((255, 0, 0), (0, 0, 255))]
  data = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])
  pixels, _, _ = decode_image(data, MODEL_SIZE)
  assert tuple(pixels[112, 112]) == (255, 0, 0)


def test_matches_a_plain_resize_of_the_photo():
  path = os.path.join(PHOTOS_DIR, 'parrot.jpg')
  if not os.path.exists(path):
    unavailable('the shared photos are absent')
  with open(path, 'rb') as f:
    pixels, width, height = decode_image(f.read(), MODEL_SIZE)
  image = Image.open(path).convert('RGB')
  expected = image.crop((32, 58, 480, 871)).resize(MODEL_SIZE, Image.BILINEAR)
  assert (width, height) == (512, 929)
  assert np.abs(pixels.astype(int) - np.asarray(expected, int)).mean() < 2


@pytest.mark.parametrize('data, error', [
    (b'<html><body>404</body></html>', 'not_an_image'),
    (os.urandom(2048), 'not_an_image'),
    (encode(gradient_image(), 'JPEG')[:300], 'truncated'),
])
def test_broken_bytes_raise_image_error(data, error):
  with pytest.raises(ImageError) as raised:
    decode_image(data, MODEL_SIZE)
  assert raised.value.error == error


def test_too_many_pixels_is_refused_before_decoding():
  data = encode(Image.new('L', (3000, 2000)), 'PNG')
  with pytest.raises(ImageError) as raised:
    decode_image(data, MODEL_SIZE, max_pixels=1_000_000)
  assert raised.value.error == 'too_many_pixels'
  assert '3000x2000' in raised.value.message


@pytest.mark.parametrize('fmt, params', [
    ('JPEG', {}), ('JPEG', {'progressive': True}), ('PNG', {}), ('GIF', {}), ('WEBP', {}),
    ('BMP', {}), ('TIFF', {}), ('TIFF', {'compression': 'tiff_lzw'}),
])
@pytest.mark.parametrize('kept', [0.05, 0.5, 0.9])
def test_every_format_cut_short_is_truncated(fmt, params, kept):
  data = encode(gradient_image(256, 192), fmt, **params)
  with pytest.raises(ImageError) as raised:
    decode_image(data[:int(len(data) * kept)], MODEL_SIZE)
  assert raised.value.error == 'truncated'


@pytest.mark.parametrize('image, fmt, params', [
    (Image.fromarray(np.linspace(0, 255, 64 * 48, dtype=np.float32).reshape(48, 64)), 'TIFF', {}),
    (Image.fromarray(np.arange(64 * 48, dtype=np.int32).reshape(48, 64) * 20), 'TIFF', {}),
    (gradient_image().convert('CMYK'), 'TIFF', {}),
    (gradient_image().convert('1'), 'PNG', {}),
    (gradient_image().convert('LA'), 'PNG', {}),
    (gradient_image(), 'ICO', {'sizes': [(64, 48)]}),
    (gradient_image(), 'PNG', {'save_all': True, 'append_images': [gradient_image().rotate(90)]}),
    (gradient_image(), 'WEBP', {'save_all': True, 'append_images': [gradient_image().rotate(90)]}),
    (gradient_image(), 'TIFF', {'save_all': True, 'append_images': [gradient_image().rotate(90)]}),
    (gradient_image().convert('RGBA'), 'WEBP', {'lossless': True}),
])
def test_less_common_modes_and_containers_decode(image, fmt, params):
  pixels, width, height = decode_image(encode(image, fmt, **params), MODEL_SIZE)
  assert pixels.shape == (*MODEL_SIZE, 3)
  assert (width, height) == image.size


def test_a_malformed_exif_block_keeps_the_image():
  data = bytearray(encode(gradient_image(), 'JPEG', exif=b'Exif\x00\x00II*\x00\xff\xff\xff\xff'))
  pixels, width, height = decode_image(bytes(data), MODEL_SIZE)
  assert (width, height) == (64, 48) and pixels.std() > 10


@pytest.mark.parametrize('orientation, upright_size', [(1, (3000, 2000)), (6, (2000, 3000))])
def test_a_large_jpeg_decodes_at_reduced_scale_to_nearly_the_same_pixels(
    monkeypatch, orientation, upright_size):
  exif = Image.Exif()
  exif[0x0112] = orientation
  data = encode(gradient_image(3000, 2000), 'JPEG', quality=90, exif=exif)
  pixels, width, height = decode_image(data, MODEL_SIZE)
  monkeypatch.setattr(decode, 'draft_min_side', lambda size: 10 ** 6)  # no reduction
  full_pixels, full_width, full_height = decode.decode_with_pillow(data, MODEL_SIZE)
  assert (width, height) == (full_width, full_height) == upright_size
  assert np.abs(pixels.astype(int) - full_pixels.astype(int)).mean() < 2
