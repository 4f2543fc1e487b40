"""decode_image against the Pillow path plain JPEGs took before (decode_with_pillow): the same
sizes, the same error kinds, and pixels within the tolerance below on the shared photos and on
every encoding the tests use.

The tolerance, per image, over |decode_image - decode_with_pillow| in levels (0-255) of every
channel of every pixel:
- where both decode at the same DCT scale (for 224x224, every JPEG whose short side is under
  639 pixels; every other format): at most 1 level anywhere, the two resizers rounding the
  same bilinear filter apart (measured: mean 0.2 on 300 500x375 JPEGs);
- where the libjpeg-turbo path decodes at a smaller DCT scale (large JPEGs): mean <= 1.5
  levels and 99th percentile <= 8 levels. Measured: 12 4032x3024 camera-like photos for
  224x224, mean 0.6 at most, p99 3; sharp photos at every size from 1.25x to 2x what 1/8
  scale needs, mean 0.85 at most, p99 6; a 3000x2000 photo for 160x240, which the Pillow path
  decodes two scales larger, mean 1.0, p99 5.
"""

import io
import os

import numpy as np
import pytest
from PIL import Image

from conftest import MODEL_SIZE, PHOTOS_DIR, unavailable
from transforms import decode
from transforms.decode import decode_image, decode_with_pillow
from transforms.failures import ImageError

SAME_SCALE_MAX = 1
SMALLER_SCALE_MEAN, SMALLER_SCALE_P99 = 1.5, 8
ORIENTATION = 0x0112


def photo_bytes(name):
  path = os.path.join(PHOTOS_DIR, name)
  if not os.path.exists(path):
    unavailable('the shared photos are absent')
  with open(path, 'rb') as f:
    return f.read()


def photo(name='parrot.jpg'):
  with Image.open(io.BytesIO(photo_bytes(name))) as image:
    return image.convert('RGB')


def encode(image, fmt='JPEG', orientation=None, **params):
  if orientation:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    params['exif'] = exif
  buffer = io.BytesIO()
  image.save(buffer, fmt, **params)
  return buffer.getvalue()


def camera_like(image, size, seed=0):
  """image upscaled to `size` with sensor-like noise, so its JPEG holds a photo's detail."""
  pixels = np.asarray(image.resize(size, Image.BICUBIC), np.float32)
  noise = np.random.default_rng(seed).standard_normal(pixels.shape, np.float32) * 5
  return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def differences(data, size=MODEL_SIZE):
  """|decode_image - decode_with_pillow| of data, having checked that both give one size."""
  pixels, width, height = decode_image(data, size)
  reference, reference_width, reference_height = decode_with_pillow(data, size)
  assert (width, height) == (reference_width, reference_height)
  assert pixels.shape == reference.shape == (*size, 3) and pixels.dtype == np.uint8
  return np.abs(pixels.astype(int) - reference.astype(int))


def assert_same_scale(data, size=MODEL_SIZE):
  assert differences(data, size).max() <= SAME_SCALE_MAX


def assert_smaller_scale(data, size=MODEL_SIZE):
  difference = differences(data, size)
  assert difference.mean() <= SMALLER_SCALE_MEAN, difference.mean()
  assert np.percentile(difference, 99) <= SMALLER_SCALE_P99, np.percentile(difference, 99)


@pytest.mark.parametrize('name', ['bird.bmp', 'cat.bmp', 'dragonfly.bmp', 'face.jpg',
                                  'grace_hopper.bmp', 'hot_dog.jpg', 'parrot.jpg',
                                  'sunflower.bmp'])
def test_the_shared_photos(name):
  assert_same_scale(photo_bytes(name))


def test_a_720p_photo_decoded_at_half_scale():
  assert_smaller_scale(photo_bytes('cat_720p.jpg'))


@pytest.mark.parametrize('params', [
    {'quality': 90}, {'quality': 92, 'subsampling': '4:4:4'},
    {'quality': 92, 'subsampling': '4:2:2'}, {'quality': 75, 'subsampling': '4:2:0'},
    {'quality': 92, 'progressive': True}, {'quality': 95, 'optimize': True},
], ids=str)
@pytest.mark.parametrize('name', ['parrot.jpg', 'grace_hopper.bmp'])
def test_jpeg_encodings(name, params):
  assert_same_scale(encode(photo(name), **params))


@pytest.mark.parametrize('mode', ['L', 'CMYK'])
def test_grayscale_and_cmyk_jpegs(mode):
  assert_same_scale(encode(photo().convert(mode), quality=92))


@pytest.mark.parametrize('orientation', range(1, 9))
@pytest.mark.parametrize('size', [MODEL_SIZE, (160, 240)], ids=str)
def test_every_exif_orientation(orientation, size):
  assert_same_scale(encode(photo('hot_dog.jpg'), orientation=orientation, quality=92), size)


def test_an_orientation_in_xmp_alone():
  xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
         b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
         b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
  data = encode(photo('hot_dog.jpg'), quality=92, xmp=xmp)
  assert decode_image(data, MODEL_SIZE)[1:] == (384, 512)
  assert_same_scale(data)


def refuse_pillow(*args):
  raise AssertionError('decoded through Pillow')


@pytest.mark.parametrize('mode, params', [
    ('RGB', {}), ('RGB', {'progressive': True}), ('RGB', {'orientation': 6}), ('L', {}),
], ids=str)
def test_plain_jpegs_take_the_libjpeg_turbo_path(monkeypatch, mode, params):
  data = encode(photo().convert(mode), quality=90, **params)
  monkeypatch.setattr(decode, '_decode_with_pillow', refuse_pillow)
  decode_image(data, MODEL_SIZE)


def test_cmyk_jpegs_take_the_pillow_path(monkeypatch):
  data = encode(photo().convert('CMYK'), quality=90)
  monkeypatch.setattr(decode, '_decode_with_pillow', refuse_pillow)
  with pytest.raises(ImageError, match='decoded through Pillow'):
    decode_image(data, MODEL_SIZE)


@pytest.mark.parametrize('fmt, params', [
    ('PNG', {}), ('WEBP', {'quality': 90}), ('GIF', {}), ('BMP', {}), ('TIFF', {}),
    ('TIFF', {'compression': 'jpeg'}),
])
def test_other_formats_take_the_pillow_path(fmt, params):
  data = encode(photo('hot_dog.jpg'), fmt, **params)
  assert np.array_equal(decode_image(data, MODEL_SIZE)[0], decode_with_pillow(data, MODEL_SIZE)[0])


@pytest.mark.parametrize('size, orientation', [
    ((4032, 3024), 1), ((4032, 3024), 6),  # a phone's 12 MP photo
    ((4000, 3000), 8), ((3000, 2000), 1),
    ((3701, 2777), 3), ((4001, 3001), 6),  # sides that no scale divides
])
def test_large_jpegs_decoded_at_a_smaller_scale(size, orientation):
  data = encode(camera_like(photo(), size), orientation=orientation, quality=92)
  assert_smaller_scale(data)
  assert_smaller_scale(data, (160, 240))


def test_a_large_gradient_at_a_smaller_scale():
  x = np.linspace(0, 255, 3000, dtype=np.uint8)[None, :].repeat(2000, 0)
  y = np.linspace(0, 255, 2000, dtype=np.uint8)[:, None].repeat(3000, 1)
  gradient = Image.fromarray(np.stack([x, y, 255 - x], -1), 'RGB')
  assert_smaller_scale(encode(gradient, orientation=6, quality=90))


def _middle(data):
  return len(data) // 2


GARBAGE = np.random.default_rng(0).bytes(100)
# JPEGs damaged in the ways files are.
DAMAGE = {
    **{f'cut at {kept:.0%}': lambda data, kept=kept: data[:int(len(data) * kept)]
       for kept in (0.01, 0.1, 0.5, 0.99)},
    'cut in the header': lambda data: data[:data.index(b'\xff\xda')],
    'no end marker': lambda data: data[:-2],
    'zeroed middle': lambda data: data[:_middle(data)] + bytes(512) + data[_middle(data) + 512:],
    'garbage in the scan': lambda data: (data[:_middle(data)] + GARBAGE[:64]
                                         + data[_middle(data) + 64:]),
    'bytes before a marker': lambda data: data[:-2] + b'\x00\x01\x02' + data[-2:],
    '12-bit': lambda data: (data[:data.index(b'\xff\xc0') + 4] + b'\x0c'
                            + data[data.index(b'\xff\xc0') + 5:]),
    'trailing garbage': lambda data: data + GARBAGE,
}


@pytest.mark.parametrize('damage', DAMAGE)
def test_broken_jpegs_fail_or_decode_as_before(damage):
  data = DAMAGE[damage](encode(photo('hot_dog.jpg'), quality=90))
  try:
    reference = decode_with_pillow(data, MODEL_SIZE)
  except ImageError as expected:
    with pytest.raises(ImageError) as raised:
      decode_image(data, MODEL_SIZE)
    assert raised.value.error == expected.error
    return
  decoded = decode_image(data, MODEL_SIZE)
  assert decoded[1:] == reference[1:]
  assert np.abs(decoded[0].astype(int) - reference[0].astype(int)).max() <= SAME_SCALE_MAX


def test_the_pixel_limit_is_told_alike():
  data = encode(photo(), quality=90)
  messages = []
  for decoder in (decode_image, decode_with_pillow):
    with pytest.raises(ImageError) as raised:
      decoder(data, MODEL_SIZE, max_pixels=100_000)
    messages.append((raised.value.error, raised.value.message))
  assert messages[0] == messages[1] == ('too_many_pixels',
                                        '512x929 is above the limit of 100000 pixels')
