"""Throughput of label-images as marginal cost, against the stock approach and its ceiling.

  python tests/perf/benchmark.py [--images N] [--camera_images C] [--json PATH]
  python tests/perf/benchmark.py --uris N [--json PATH]

Makes (once, cached) sets of N and 5N JPEGs of 500x375 at quality 90 from the shared
photos (random crops, scales and flips), sets of C and 5C camera-sized JPEGs (4032x3024,
about 3 MB, sensor-like noise; tests/perf/decode_rates.py) and the fixture model, stages
its int8 model (calibrated on a sample of the N set), then measures in one run:

  stock_marginal          Beam's TF Hub example approach (tests/perf/stock_pipeline.py),
                          whole process: images/s between the run of N and the run of 5N
  pipeline_marginal       label-images with its defaults (--engine auto), the same way
  auto_engine             the engine auto chose in that run, and its probe's figures
  engines                 every registered engine alone on pre-decoded batches of 32 of the
                          5N set: {images_per_s, labels_agree, embedding_cosine_min} against
                          litert (fp32); where it cannot run here, why
  decode_before, decode   the decode stage alone on every core: Pillow's path as it was,
                          and the pipeline's own
  ceiling                 1 / (1/decode + 1/engines[auto_engine]): what one process could
                          do if decode and inference shared the cores perfectly
  labels_agree            pipeline top-1 equal to the TF SavedModel's, on the 5N set
  camera_decode_before, camera_decode, camera_decode_floor
                          the same on the camera-sized 5C set; the floor is libjpeg-turbo's
                          decode at the smallest DCT scale that keeps the crop at the
                          model's size, and nothing else
  camera_pipeline_marginal
                          label-images with its defaults, between the C and 5C camera sets

Each whole-process mode runs once on a few images first, so that every run finds the images
in the page cache and the converted model in its cache. The marginal rate leaves out what
every run pays once (imports, start-up, model load), which is what a user with millions of
images does not pay per image.

--uris N is the scale mode: label-images with its defaults on lists of N/10 and N URIs of
missing files (each becomes a not_found error row, so no image is decoded), reporting
each run's URIs/s and peak RSS, and the memory each further URI costs:
rss_kb_per_uri = (peak RSS at N - peak RSS at N/10) / (0.9 N).
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures'))

import build_models  # pylint: disable=wrong-import-position
import decode_rates  # pylint: disable=wrong-import-position
from measure import run_measured  # pylint: disable=wrong-import-position
from pipeline import stage_model  # pylint: disable=wrong-import-position
from pipeline.models import ChosenModel  # pylint: disable=wrong-import-position
from transforms import int8  # pylint: disable=wrong-import-position
from transforms.describe import describe  # pylint: disable=wrong-import-position
from transforms.engines import EngineUnavailable, engine_names  # pylint: disable=wrong-import-position
from transforms.engines.checks import cosines  # pylint: disable=wrong-import-position
from transforms.engines.choice import load_engine  # pylint: disable=wrong-import-position
from transforms.labels import builtin_labels  # pylint: disable=wrong-import-position

SHARED_PHOTOS = os.path.join(ROOT, '..', 'shared', 'fixtures', 'images')
CACHE = os.path.join(tempfile.gettempdir(), 'label-images-benchmark')
ENGINE_BATCH = 32
WARM_UP_IMAGES = 8


def make_images(count):
  directory = os.path.join(CACHE, f'images-{count}')
  decode_rates.make_web_images(directory, count)
  return directory


def camera_images(count):
  directory = os.path.join(CACHE, f'camera-{count}')
  decode_rates.make_camera_images(directory, count)
  return directory


def last_run(output_dir):
  with open(os.path.join(output_dir, '_manifest.json'), encoding='utf-8') as f:
    return json.load(f)['runs'][-1]


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


def stock_command(handles):
  return lambda images_dir, output: [
      sys.executable, os.path.join(ROOT, 'tests', 'perf', 'stock_pipeline.py'),
      '--input', images_dir, '--model', handles[0], '--output', output]


def pipeline_command(handles, *options):
  return lambda images_dir, output: [
      sys.executable, '-m', 'pipeline.run', '--input', os.path.join(images_dir, '*.jpg'),
      '--output', output, '--model_handle', handles[0], '--feature_handle', handles[1],
      *options]


def measure_marginal(command, image_sets, out_dir, name):
  """Images/s between the runs on the smaller and the larger set; each run's own figures."""
  run_process(command(warm_up_directory(image_sets[0][1]), os.path.join(out_dir, f'{name}-0')))
  runs = []
  for count, images_dir in image_sets:
    output = os.path.join(out_dir, f'{name}-{count}')
    seconds, cpu, rss = run_process(command(images_dir, output))
    runs.append({'images': count, 'seconds': round(seconds, 2), 'cpu': round(cpu, 2),
                 'peak_rss_mb': round(rss, 1), 'output': output})
  (small, large) = runs
  return (large['images'] - small['images']) / (large['seconds'] - small['seconds']), runs


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


def image_bytes(images_dir):
  paths = sorted(glob.glob(os.path.join(images_dir, '*.jpg')))
  return paths, decode_rates.read_all(paths)


def measure_decodes(contents, size):
  """{'before': images/s of Pillow's path as it was, 'now': the pipeline's decode_image,
  'floor': the scaled-decode floor}, on every core, taking turns."""
  return {name: decode_rates.decode_rate(contents, size, decode)
          for name, decode in decode_rates.DECODES.items()}


def stage_int8(spec, handles, calibration_dir):
  """The fixture model's int8 twin beside it, calibrated on a sample of calibration_dir."""
  if not os.path.exists(int8.int8_paths(handles[0])[0]):
    images = os.path.join(calibration_dir, '*.jpg')
    sample = stage_model.calibration_sample(images, int8.CALIBRATION_IMAGES, 0)
    model = ChosenModel(spec, builtin_labels(spec.classes))
    stage_model.stage_int8(model, handles, os.path.dirname(handles[0]), sample, images)


def measure_engine(engine, pixels):
  """(images/s of `engine` alone on batches of ENGINE_BATCH, (scores, embeddings) of all)."""
  engine.predict(pixels[:ENGINE_BATCH])  # warm-up: tracing, memory planning
  outputs = []
  started = time.perf_counter()
  for start in range(0, len(pixels), ENGINE_BATCH):
    outputs.append(engine.predict(pixels[start:start + ENGINE_BATCH]))
  seconds = time.perf_counter() - started
  return len(pixels) / seconds, tuple(np.concatenate(parts) for parts in zip(*outputs))


def measure_engines(spec, handles, pixels):
  """{engine name: {images_per_s, labels_agree, embedding_cosine_min}} of every registered
  engine alone, agreement against litert (fp32); {unavailable: why} where it cannot run."""
  results, reference = {}, None
  for name in ['litert'] + [name for name in engine_names() if name != 'litert']:
    try:
      engine = load_engine(spec, *handles, name)
    except EngineUnavailable as e:
      results[name] = {'unavailable': str(e)}
      continue
    rate, (scores, embeddings) = measure_engine(engine, pixels)
    del engine
    if reference is None:
      reference = scores, embeddings
    results[name] = {
        'images_per_s': round(rate, 1),
        'labels_agree': round(float(np.mean(scores.argmax(1) == reference[0].argmax(1))), 4),
        'embedding_cosine_min': round(float(cosines(embeddings, reference[1]).min()), 4),
        'embedding_cosine_median': round(float(np.median(cosines(embeddings, reference[1]))),
                                         4)}
  return results


def labels_agree(pipeline_output, paths, pixels, handles):
  """Fraction of images whose pipeline top-1 equals the TF SavedModel's."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  classifier = tf.saved_model.load(handles[0])
  rows = {}
  for path in glob.glob(os.path.join(pipeline_output, 'labels-*.parquet')):
    for row in pq.read_table(path, columns=['uri', 'label_index']).to_pylist():
      rows[row['uri']] = row['label_index']
  agree = 0
  for start in range(0, len(pixels), ENGINE_BATCH):
    images = tf.constant(pixels[start:start + ENGINE_BATCH], tf.float32) / 255.0
    for path, label in zip(paths[start:], classifier(images).numpy().argmax(1)):
      agree += int(rows.get(path) == label)
  return agree / len(paths)


def cpu_flags():
  """The CPU's flags that matter here: vector width and int8 dot products."""
  try:
    with open('/proc/cpuinfo', encoding='ascii') as f:
      flags = next(line for line in f if line.startswith('flags')).split(':')[1].split()
  except (OSError, StopIteration):
    return []
  return sorted(set(flags) & {'avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni',
                               'avx512_bf16', 'amx_int8'})


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=1000,
                      help='N: the marginal rates are measured between N and 5N images')
  parser.add_argument('--camera_images', type=int, default=24,
                      help='C: the camera-sized marginal rate is measured between C and 5C')
  parser.add_argument('--uris', type=int,
                      help='scale mode: peak memory per listed URI, on N/10 and N missing files')
  parser.add_argument('--json', help='where to write the results as JSON')
  args = parser.parse_args()
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

  image_sets = [(count, make_images(count)) for count in (args.images, 5 * args.images)]
  camera_sets = [(count, camera_images(count)) for count in (args.camera_images,
                                                              5 * args.camera_images)]
  spec = describe(*handles)
  stage_int8(spec, handles, image_sets[0][1])
  paths, contents = image_bytes(image_sets[1][1])  # also brings the files into the page cache
  decodes = measure_decodes(contents, spec.image_size)
  camera_decodes = measure_decodes(image_bytes(camera_sets[1][1])[1], spec.image_size)
  report = {'images': args.images, 'camera_images': args.camera_images,
            'cpu_flags': cpu_flags(), 'cores': os.cpu_count(),
            'decode_before': decodes['before'], 'decode': decodes['now'],
            'camera_decode_before': camera_decodes['before'],
            'camera_decode': camera_decodes['now'],
            'camera_decode_floor': camera_decodes['floor']}
  runs = {}
  for name, command, sets in (('stock', stock_command(handles), image_sets),
                              ('pipeline', pipeline_command(handles), image_sets),
                              ('camera_pipeline', pipeline_command(handles), camera_sets)):
    report[f'{name}_marginal'], runs[name] = measure_marginal(command, sets, out_dir, name)
  choice = last_run(runs['pipeline'][1]['output'])['engine_choice']
  report['auto_engine'] = choice['engine']
  report['auto_probe'] = choice
  pixels = np.stack([decode_rates.decode_now(image, spec.image_size) for image in contents])
  report['engines'] = measure_engines(spec, handles, pixels)
  report['ceiling'] = 1 / (1 / report['decode']
                           + 1 / report['engines'][report['auto_engine']]['images_per_s'])
  report['labels_agree'] = labels_agree(runs['pipeline'][1]['output'], paths, pixels, handles)
  report['pipeline_marginal/stock_marginal'] = report['pipeline_marginal'] / report[
      'stock_marginal']
  report['pipeline_marginal/ceiling'] = report['pipeline_marginal'] / report['ceiling']
  report['decode/decode_before'] = report['decode'] / report['decode_before']
  report['camera_decode/camera_decode_before'] = (report['camera_decode']
                                                  / report['camera_decode_before'])
  report['camera_decode/camera_decode_floor'] = (report['camera_decode']
                                                 / report['camera_decode_floor'])
  report['camera_pipeline_marginal/camera_decode'] = (report['camera_pipeline_marginal']
                                                      / report['camera_decode'])
  report = {key: round(value, 4) if isinstance(value, float) else value
            for key, value in report.items()}
  report['runs'] = {name: [{k: v for k, v in run.items() if k != 'output'} for run in pair]
                    for name, pair in runs.items()}

  print(f"{args.images} and {5 * args.images} JPEGs of 500x375; {os.cpu_count()} cores; "
        f"CPU flags: {' '.join(report['cpu_flags']) or 'none of note'}")
  for name, pair in report['runs'].items():
    for run in pair:
      print(f"  {name:<14} {run['images']:>6} images in {run['seconds']:>7.1f} s, "
            f"{run['cpu']:.2f} cores, peak RSS {run['peak_rss_mb']:.0f} MB")
  for key, value in report.items():
    if key not in ('runs', 'cpu_flags', 'images', 'cores', 'engines', 'auto_probe'):
      print(f'{key}: {value}')
  for name, figures in report['engines'].items():
    print(f'engine {name}: {figures}')
  write_json(args.json, report)


def write_json(path, report):
  if path:
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)


if __name__ == '__main__':
  main()
