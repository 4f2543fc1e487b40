"""Throughput of label-images against the stock approach and the engines alone, side by side.

  python tests/perf/benchmark.py --images N [--modes stock,pipeline,tf_engine,fast_engine]
                                 [--json PATH]
  python tests/perf/benchmark.py --uris N [--json PATH]

Makes (once, cached) N JPEGs of about 500x375 at quality 90 from the shared photos
(random crops, scales and flips) and the fixture model, then measures in one run:

  stock        Beam's TF Hub example approach (tests/perf/stock_pipeline.py), whole process
  pipeline     label-images with its defaults, whole process: decode, inference, Parquet
  tf_engine    the TensorFlow engine alone on pre-decoded batches
  fast_engine  the pipeline's default engine (LiteRT on XNNPACK) alone on pre-decoded batches

and, when the pipeline runs, labels_agree: the fraction of images whose pipeline top-1
equals the TF SavedModel's top-1 (and the embeddings' least cosine similarity to the TF
feature vectors). Whole-process modes run once on a few images first, so that both find
the images in the page cache and the pipeline finds its converted model cached, as on any
run after the first.

--uris N is the scale mode: label-images with its defaults on lists of N/10 and N URIs of
missing files (each becomes a not_found error row, so no image is decoded), reporting
each run's URIs/s and peak RSS, and the memory each further URI costs:
rss_kb_per_uri = (peak RSS at N - peak RSS at N/10) / (0.9 N).
"""

import argparse
import glob
import json
import os
import random
import resource
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures'))

import build_models  # pylint: disable=wrong-import-position
from measure import run_measured  # pylint: disable=wrong-import-position
from transforms.decode import decode_image  # pylint: disable=wrong-import-position

SHARED_PHOTOS = os.path.join(ROOT, '..', 'shared', 'fixtures', 'images')
CACHE = os.path.join(tempfile.gettempdir(), 'label-images-benchmark')
MODES = ('stock', 'pipeline', 'tf_engine', 'fast_engine')
ENGINE_BATCH = 32
WARM_UP_IMAGES = 8


def make_images(count):
  directory = os.path.join(CACHE, f'images-{count}')
  if len(glob.glob(os.path.join(directory, '*.jpg'))) == count:
    return directory
  os.makedirs(directory, exist_ok=True)
  rng = random.Random(count)
  photos = [Image.open(path).convert('RGB') for path in sorted(glob.glob(
      os.path.join(SHARED_PHOTOS, '*')))]
  for i in range(count):
    photo = rng.choice(photos)
    scale = rng.uniform(0.6, 1.0)
    width, height = int(photo.width * scale), int(photo.height * scale)
    left, top = rng.randint(0, photo.width - width), rng.randint(0, photo.height - height)
    image = photo.crop((left, top, left + width, top + height)).resize((500, 375),
                                                                       Image.BICUBIC)
    if rng.random() < 0.5:
      image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image.save(os.path.join(directory, f'{i:06d}.jpg'), quality=90)
  return directory


def fixture_models():
  directory = os.path.join(CACHE, 'models')
  if not os.path.exists(os.path.join(directory, 'feature_vector', 'saved_model.pb')):
    build_models.build(os.path.normpath(build_models.DEFAULT_TFLITE), directory)
  return os.path.join(directory, 'classification'), os.path.join(directory, 'feature_vector')


def run_process(args):
  """Runs a command to completion; returns (seconds, CPU share of one core, peak RSS MB)."""
  measured = run_measured(args, cwd=ROOT)
  if measured.exit_code != 0:
    raise RuntimeError(f'{args} failed:\n{measured.output[-3000:]}')
  return measured.seconds, measured.cpu_cores, measured.peak_rss_mb


def warm_up_directory(images_dir):
  directory = tempfile.mkdtemp(prefix='warm-up-')
  for path in sorted(glob.glob(os.path.join(images_dir, '*.jpg')))[:WARM_UP_IMAGES]:
    os.symlink(path, os.path.join(directory, os.path.basename(path)))
  return directory


def measure_stock(images_dir, count, handles, out_dir):
  command = lambda input_dir, output: [
      sys.executable, os.path.join(ROOT, 'tests', 'perf', 'stock_pipeline.py'),
      '--input', input_dir, '--model', handles[0], '--output', output]
  run_process(command(warm_up_directory(images_dir), os.path.join(out_dir, 'stock-warm-up')))
  seconds, cpu, rss = run_process(command(images_dir, os.path.join(out_dir, 'stock')))
  return {'images_per_s': count / seconds, 'cpu': cpu, 'peak_rss_mb': rss}


def measure_pipeline(images_dir, count, handles, out_dir):
  command = lambda input_dir, output: [
      sys.executable, '-m', 'pipeline.run', '--input', os.path.join(input_dir, '*.jpg'),
      '--output', output, '--model_handle', handles[0], '--feature_handle', handles[1]]
  run_process(command(warm_up_directory(images_dir), os.path.join(out_dir, 'pipeline-warm-up')))
  output = os.path.join(out_dir, 'pipeline')
  seconds, cpu, rss = run_process(command(images_dir, output))
  return {'images_per_s': count / seconds, 'cpu': cpu, 'peak_rss_mb': rss, 'output': output}


def measure_scale(count, handles, out_dir):
  """Whole-process URIs/s and peak RSS on lists of count/10 and count missing files, after a
  warm-up run that leaves the converted model in its cache."""
  results = {}
  for uris in (WARM_UP_IMAGES, count // 10, count):
    listing = os.path.join(out_dir, f'missing-{uris}.txt')
    with open(listing, 'w', encoding='utf-8') as f:
      f.writelines(f'{out_dir}/nowhere/{i % 997:03d}/image-{i:08d}.jpg\n' for i in range(uris))
    seconds, cpu, rss = run_process([
        sys.executable, '-m', 'pipeline.run', '--input', listing, '--output',
        os.path.join(out_dir, f'scale-{uris}'), '--model_handle', handles[0],
        '--feature_handle', handles[1]])
    results[uris] = {'uris_per_s': round(uris / seconds, 1), 'cpu': round(cpu, 2),
                     'peak_rss_mb': round(rss, 1)}
  del results[WARM_UP_IMAGES]
  small, large = count // 10, count
  growth_kb = (results[large]['peak_rss_mb'] - results[small]['peak_rss_mb']) * 1024
  return {'uris': {str(n): result for n, result in results.items()},
          'rss_kb_per_uri': round(growth_kb / (large - small), 3)}


def decoded_pixels(images_dir):
  paths = sorted(glob.glob(os.path.join(images_dir, '*.jpg')))
  pixels = []
  for path in paths:
    with open(path, 'rb') as f:
      pixels.append(decode_image(f.read())[0])
  return paths, np.stack(pixels)


def measure_engine(engine, pixels):
  engine.predict(pixels[:ENGINE_BATCH])  # warm-up: tracing, memory planning
  cpu_before = resource.getrusage(resource.RUSAGE_SELF)
  started = time.perf_counter()
  for start in range(0, len(pixels), ENGINE_BATCH):
    engine.predict(pixels[start:start + ENGINE_BATCH])
  seconds = time.perf_counter() - started
  cpu_after = resource.getrusage(resource.RUSAGE_SELF)
  cpu = (cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime
         - cpu_before.ru_stime) / seconds
  return {'images_per_s': len(pixels) / seconds, 'cpu': cpu, 'peak_rss_mb': None}


def agreement(pipeline_output, paths, pixels, handles):
  """(fraction of equal top-1 labels, least embedding cosine) against the TF SavedModels."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  classifier, feature_extractor = (tf.saved_model.load(handle) for handle in handles)
  rows = {}
  for path in glob.glob(os.path.join(pipeline_output, 'labels-*.parquet')):
    for row in pq.read_table(path, columns=['uri', 'label_index', 'embedding']).to_pylist():
      rows[row['uri']] = row
  agree, cosines = 0, []
  for start in range(0, len(pixels), ENGINE_BATCH):
    images = tf.constant(pixels[start:start + ENGINE_BATCH], tf.float32) / 255.0
    labels = classifier(images).numpy().argmax(1)
    embeddings = feature_extractor(images).numpy()
    for path, label, embedding in zip(paths[start:], labels, embeddings):
      row = rows.get(path)
      if row is None:
        continue
      agree += int(row['label_index'] == label)
      ours = np.asarray(row['embedding'])
      cosines.append(float(ours @ embedding / (np.linalg.norm(ours) * np.linalg.norm(embedding))))
  return agree / len(paths), min(cosines) if cosines else None


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=400)
  parser.add_argument('--uris', type=int,
                      help='scale mode: peak memory per listed URI, on N/10 and N missing files')
  parser.add_argument('--modes', default=','.join(MODES))
  parser.add_argument('--json', help='where to write the results as JSON')
  args = parser.parse_args()
  modes = args.modes.split(',')
  unknown = set(modes) - set(MODES)
  if unknown:
    parser.error(f'unknown modes: {sorted(unknown)}; choose from {MODES}')

  handles = fixture_models()
  out_dir = tempfile.mkdtemp(prefix='label-images-benchmark-')
  if args.uris:
    report = measure_scale(args.uris, handles, out_dir)
    print(f'{os.cpu_count()} cores; label-images on lists of missing files')
    print(f"{'URIs':>9} {'URIs/s':>9} {'CPU (cores)':>12} {'peak RSS MB':>12}")
    for uris, result in report['uris'].items():
      print(f"{uris:>9} {result['uris_per_s']:>9.1f} {result['cpu']:>12.2f} "
            f"{result['peak_rss_mb']:>12.0f}")
    print(f"rss_kb_per_uri: {report['rss_kb_per_uri']}")
    write_json(args.json, report)
    return
  images_dir = make_images(args.images)
  paths, pixels = decoded_pixels(images_dir)  # also brings the files into the page cache
  results = {}
  for mode in modes:
    if mode == 'stock':
      results[mode] = measure_stock(images_dir, args.images, handles, out_dir)
    elif mode == 'pipeline':
      results[mode] = measure_pipeline(images_dir, args.images, handles, out_dir)
    else:
      from transforms.model import load_engine  # pylint: disable=import-outside-toplevel
      engine = load_engine(*handles, engine='tf' if mode == 'tf_engine' else 'litert')
      results[mode] = measure_engine(engine, pixels)

  report = {mode: round(results[mode]['images_per_s'], 2) for mode in modes}
  report['images'] = args.images
  if 'pipeline' in results:
    report['pipeline_peak_rss_mb'] = round(results['pipeline']['peak_rss_mb'], 1)
    report['labels_agree'], report['min_embedding_cosine'] = agreement(
        results['pipeline']['output'], paths, pixels, handles)
    for mode in ('stock', 'tf_engine', 'fast_engine'):
      if mode in results:
        report[f'pipeline/{mode}'] = round(
            results['pipeline']['images_per_s'] / results[mode]['images_per_s'], 3)

  print(f'{args.images} JPEGs of 500x375, {os.cpu_count()} cores')
  print(f"{'mode':<12} {'images/s':>9} {'CPU (cores)':>12} {'peak RSS MB':>12}")
  for mode in modes:
    result = results[mode]
    rss = f"{result['peak_rss_mb']:.0f}" if result['peak_rss_mb'] else '-'
    print(f"{mode:<12} {result['images_per_s']:>9.1f} {result['cpu']:>12.2f} {rss:>12}")
  for key, value in report.items():
    if key not in modes and key != 'images':
      print(f'{key}: {value}')
  write_json(args.json, report)


def write_json(path, report):
  if path:
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)


if __name__ == '__main__':
  main()
