"""HEIC/HEIF, JPEG XL and camera RAW: recognised by content, and a worker without the
library says which package it lacks."""

import io
import os
import subprocess
import sys

import pillow_heif
import pytest
from PIL import Image

from conftest import MODEL_SIZE, PHOTOS_DIR, ROOT
from corpus import write_dng
from transforms import camera_raw, formats
from transforms.decode import decode_image
from transforms.failures import ImageError


def encoded(fmt, **params):
  with Image.open(os.path.join(PHOTOS_DIR, 'parrot.jpg')) as photo:
    buffer = io.BytesIO()
    photo.convert('RGB').save(buffer, fmt, quality=90, **params)
  return buffer.getvalue()


@pytest.mark.parametrize('fmt, name', [('HEIF', 'HEIF'), ('JXL', 'JPEG XL')])
def test_formats_are_recognised_by_content(fmt, name):
  data = encoded(fmt)
  assert formats.sniff(data) == name
  pixels, width, height = decode_image(data, MODEL_SIZE)
  assert pixels.shape == (224, 224, 3) and (width, height) == (512, 929)


def test_the_primary_image_of_a_heif_with_two_is_decoded():
  data = encoded('HEIF', save_all=True, append_images=[Image.new('RGB', (64, 64))])
  assert len(pillow_heif.open_heif(io.BytesIO(data))) == 2
  _, width, height = decode_image(data, MODEL_SIZE)
  assert (width, height) == (512, 929)


@pytest.mark.parametrize('fmt', ['HEIF', 'JXL'])
def test_the_pixel_limit_holds_before_decoding(fmt):
  with pytest.raises(ImageError) as raised:
    decode_image(encoded(fmt), MODEL_SIZE, max_pixels=1000)
  assert raised.value.error == 'too_many_pixels'


def decoded_without(module, path):
  """(error kind, message) of decoding the file at `path` in a fresh interpreter where
  `module` cannot be imported."""
  code = (f'import sys; sys.modules[{module!r}] = None\n'
          'from transforms.decode import decode_image\n'
          'from transforms.failures import ImageError\n'
          f'try:\n  decode_image(open({str(path)!r}, "rb").read(), (224, 224))\n'
          'except ImageError as e:\n  print(e.error); print(e.message)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2, result.stderr
  return tuple(lines)


@pytest.mark.parametrize('module, package', [('pillow_heif', 'pillow-heif'),
                                             ('pillow_jxl', 'pillow-jxl-plugin')])
def test_a_missing_plugin_is_named(module, package, tmp_path):
  fmt = 'HEIF' if module == 'pillow_heif' else 'JXL'
  image = tmp_path / 'image'
  image.write_bytes(encoded(fmt))
  kind, message = decoded_without(module, image)
  assert kind == 'unsupported_format'
  assert package in message


@pytest.mark.parametrize('size, preview, used', [
    ((512, 929), True, 'preview'), ((512, 929), False, 'developed'),
    ((256, 171), True, 'developed'),  # a preview too small to label from
])
def test_camera_raw_uses_a_large_enough_preview_else_develops(tmp_path, size, preview, used):
  with Image.open(os.path.join(PHOTOS_DIR, 'parrot.jpg')) as photo:
    rgb = photo.convert('RGB').resize(size)
  data = open(write_dng(tmp_path / 'photo.dng', rgb, preview), 'rb').read()
  assert camera_raw.is_camera_raw(data)
  image, how = camera_raw.open_camera_raw(data, max_pixels=10**8)
  assert how == used and image.size == size
  pixels, width, height = decode_image(data, MODEL_SIZE)
  assert pixels.shape == (224, 224, 3) and (width, height) == size


def test_a_plain_tiff_is_not_camera_raw(tmp_path):
  buffer = io.BytesIO()
  Image.new('RGB', (64, 64)).save(buffer, 'TIFF')
  assert not camera_raw.is_camera_raw(buffer.getvalue())


def test_camera_raw_without_rawpy_names_it(tmp_path):
  with Image.open(os.path.join(PHOTOS_DIR, 'parrot.jpg')) as photo:
    path = write_dng(tmp_path / 'photo.dng', photo.convert('RGB'), preview=False)
  kind, message = decoded_without('rawpy', path)
  assert kind == 'unsupported_format' and 'rawpy' in message
