"""Rates of the decode stage: before (the Pillow path), now (decode_image) and the scaled-decode
floor (libjpeg-turbo at the smallest DCT scale whose central crop still covers the model's
size, and nothing else), on web-sized and on camera-sized JPEGs. A library for
tests/perf/benchmark.py; run alone, it makes the sets once (cached) and prints the rates:

  python tests/perf/decode_rates.py [--web-images DIR] [--rounds N]
"""

import argparse
import concurrent.futures
import glob
import math
import os
import platform
import random
import sys
import tempfile
import time

import numpy as np
import simplejpeg
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from transforms.decode import (  # pylint: disable=wrong-import-position
    CENTRAL_FRACTION, decode_image, decode_with_pillow)

SHARED_PHOTOS = os.path.join(ROOT, '..', 'shared', 'fixtures', 'images')
CACHE = os.path.join(tempfile.gettempdir(), 'label-images-benchmark')
MODEL_SIZE = (224, 224)
WARM_UP_IMAGES = 8
CAMERA_SIZE = (4032, 3024)
CAMERA_QUALITY = 92
# Photon shot noise and read noise, in 8-bit levels: variance = SHOT * level + READ. With
# most of it common to the three channels (luma) and the rest per channel (chroma), the
# upscaled photos come out at about 3 MB, as a 12 MP phone photo does at this quality.
SHOT_NOISE, READ_NOISE, LUMA_SHARE = 0.25, 5.0, 0.7
ORIENTATION = 0x0112


def make_camera_images(directory, count=12):
  """Makes, once, `count` 4032x3024 JPEGs of about 3 MB at quality 92 in directory from the
  shared photos: each cropped to 4:3, upscaled and given sensor-like noise; every third one
  is stored turned, with EXIF orientation 6, as a phone stores a portrait. Deterministic.
  Returns their paths."""
  paths = [os.path.join(directory, f'camera-{i:03d}.jpg') for i in range(count)]
  if all(os.path.exists(path) for path in paths):
    return paths
  os.makedirs(directory, exist_ok=True)
  photos = sorted(glob.glob(os.path.join(SHARED_PHOTOS, '*')))
  for i, path in enumerate(paths):
    rng = np.random.default_rng(i)
    with Image.open(photos[i % len(photos)]) as photo:
      pixels = _with_sensor_noise(_upscaled_to_camera(photo.convert('RGB'), rng), rng)
    exif = Image.Exif()
    exif[ORIENTATION] = 6 if i % 3 == 2 else 1
    Image.fromarray(pixels).save(path + '.part', 'JPEG', quality=CAMERA_QUALITY, exif=exif)
    os.replace(path + '.part', path)
  return paths


def _upscaled_to_camera(photo, rng):
  """float32 [3024, 4032, 3]: a 4:3 crop of photo (placed at random), upscaled bicubic."""
  width, height = CAMERA_SIZE
  crop_width = min(photo.width, photo.height * width // height)
  crop_height = crop_width * height // width
  left = int(rng.integers(0, photo.width - crop_width + 1))
  top = int(rng.integers(0, photo.height - crop_height + 1))
  box = (left, top, left + crop_width, top + crop_height)
  return np.asarray(photo.resize(CAMERA_SIZE, Image.BICUBIC, box=box), np.float32)


def _with_sensor_noise(pixels, rng):
  sigma = np.sqrt(SHOT_NOISE * pixels.mean(-1, keepdims=True) + READ_NOISE)
  noise = (rng.standard_normal(pixels.shape[:2] + (1,), np.float32) * LUMA_SHARE
           + rng.standard_normal(pixels.shape, np.float32) * (1 - LUMA_SHARE))
  return np.clip(pixels + noise * sigma + 0.5, 0, 255).astype(np.uint8)


def make_web_images(directory, count=300):
  """Makes, once, `count` 500x375 JPEGs at quality 90 in directory, as benchmark.py's sets:
  random crops, scales and flips of the shared photos. Returns their paths."""
  paths = [os.path.join(directory, f'{i:06d}.jpg') for i in range(count)]
  if all(os.path.exists(path) for path in paths):
    return paths
  os.makedirs(directory, exist_ok=True)
  rng = random.Random(count)
  photos = [Image.open(path).convert('RGB')
            for path in sorted(glob.glob(os.path.join(SHARED_PHOTOS, '*')))]
  for path in paths:
    photo = rng.choice(photos)
    scale = rng.uniform(0.6, 1.0)
    width, height = int(photo.width * scale), int(photo.height * scale)
    left, top = rng.randint(0, photo.width - width), rng.randint(0, photo.height - height)
    image = photo.crop((left, top, left + width, top + height)).resize((500, 375),
                                                                       Image.BICUBIC)
    if rng.random() < 0.5:
      image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image.save(path, quality=90)
  return paths


def read_all(paths):
  contents = []
  for path in paths:
    with open(path, 'rb') as f:
      contents.append(f.read())
  return contents


def decode_before(image_bytes, size):
  """The decode stage as it was: Pillow's decode, draft, crop and resize."""
  return decode_with_pillow(image_bytes, size)[0]


def decode_now(image_bytes, size):
  return decode_image(image_bytes, size)[0]


def scaled_decode_floor(image_bytes, size):
  """libjpeg-turbo's decode at the smallest of its scales (1/8, 1/4, 3/8, 1/2, ...) that keeps
  the central crop at least `size` (height, width), and nothing else: no crop, no resize."""
  min_height, min_width = (math.ceil(side / CENTRAL_FRACTION) for side in size)
  return simplejpeg.decode_jpeg(image_bytes, 'RGB', min_height=min_height, min_width=min_width)


def decode_rate(contents, size, decode):
  """Images/s of decode(image_bytes, size) over contents with a thread per core, after a
  warm-up, as benchmark.py's measure_decode."""
  def one(image_bytes):
    return decode(image_bytes, size)
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(one, contents[:WARM_UP_IMAGES]))
    started = time.perf_counter()
    for _ in pool.map(one, contents):
      pass
    return len(contents) / (time.perf_counter() - started)


def milliseconds_per_image(contents, size, decodes):
  """{name: mean milliseconds of decodes[name](image_bytes, size) on one thread}. The decodes
  take turns image by image, in an order that rotates, so that a neighbour's load on a shared
  machine falls on all of them alike."""
  names = list(decodes)
  seconds = dict.fromkeys(names, 0.0)
  for i, image_bytes in enumerate(contents):
    for name in names[i % len(names):] + names[:i % len(names)]:
      started = time.perf_counter()
      decodes[name](image_bytes, size)
      seconds[name] += time.perf_counter() - started
  return {name: total * 1000 / len(contents) for name, total in seconds.items()}


DECODES = {'before': decode_before, 'now': decode_now, 'floor': scaled_decode_floor}


def best_of(rounds, contents, size):
  """{decode name: (ms per image on one thread, images/s on every core)}, each the best of
  `rounds` rounds."""
  results = {name: (math.inf, 0.0) for name in DECODES}
  for _ in range(rounds):
    milliseconds = milliseconds_per_image(contents, size, DECODES)
    for name, decode in DECODES.items():
      results[name] = (min(results[name][0], milliseconds[name]),
                       max(results[name][1], decode_rate(contents, size, decode)))
  return results


def cpu_model():
  with open('/proc/cpuinfo', encoding='utf-8') as f:
    names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
  return names[0] if names else platform.processor()


def print_rates(name, contents, rounds):
  results = best_of(rounds, contents, MODEL_SIZE)
  print(f'{name}: {len(contents)} JPEGs, {sum(map(len, contents)) / len(contents) / 1e6:.2f} '
        'MB on average')
  for decode, (milliseconds, rate) in results.items():
    print(f'  {decode:6s} {milliseconds:7.2f} ms/image on one thread  {rate:7.1f} images/s '
          f'on {os.cpu_count()} threads')
  before, now, floor = (results[decode] for decode in DECODES)
  print(f'  now / before: {before[0] / now[0]:.2f}x on one thread, {now[1] / before[1]:.2f}x '
        f'on every core; now / floor: {floor[0] / now[0]:.2f} on one thread, '
        f'{now[1] / floor[1]:.2f} on every core')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--web-images', help='a directory of 500x375 JPEGs (default: made once)')
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  web = (sorted(glob.glob(os.path.join(args.web_images, '*.jpg'))) if args.web_images
         else make_web_images(os.path.join(CACHE, 'web-300')))
  camera = make_camera_images(os.path.join(CACHE, 'camera-12'))
  print(f'{cpu_model()}, {os.cpu_count()} cores; model size {MODEL_SIZE}')
  print_rates('500x375', read_all(web), args.rounds)
  print_rates('4032x3024', read_all(camera), args.rounds)


if __name__ == '__main__':
  main()
