"""report, similar and duplicates on real labelled output, through the command line."""

import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import ALL_PHOTOS, PHOTOS_DIR, unavailable
from near_copies import VARIANTS, make_near_copies
from test_cli import label_images, model_args

DUPLICATES_SCHEMA = pa.schema([
    pa.field('group', pa.int64(), nullable=False),
    pa.field('uri', pa.string(), nullable=False),
    pa.field('nearest_uri', pa.string(), nullable=False),
    pa.field('cosine', pa.float32(), nullable=False),
])
CATS = {'cat.bmp', 'cat_720p.jpg'}  # the same photo at two sizes


def labelled(model_dir, input_glob, output):
  result = label_images('--input', input_glob, '--output', output, *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  return output


@pytest.fixture(scope='module')
def photos_output(model_dir, tmp_path_factory):
  """The shared photos, labelled."""
  return labelled(model_dir, os.path.join(PHOTOS_DIR, '*'),
                  tmp_path_factory.mktemp('photos') / 'out')


@pytest.fixture(scope='module')
def copies_output(model_dir, tmp_path_factory):
  """The shared photos and near copies of each (re-encoded, halved, cropped), labelled;
  returns (output dir, {source path: [copy paths]})."""
  images = tmp_path_factory.mktemp('copies')
  sources = []
  for name in ALL_PHOTOS:
    shutil.copy(os.path.join(PHOTOS_DIR, name), images / name)
    sources.append(str(images / name))
  copies = make_near_copies(sources, str(images))
  return labelled(model_dir, str(images / '*'), images / 'out'), copies


def duplicates_of(output):
  table = pq.read_table(output / 'duplicates.parquet')
  assert table.schema.equals(DUPLICATES_SCHEMA)
  return table.to_pylist()


def similar_json(output, *args):
  result = label_images('similar', output, *args, '--json')
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def test_the_two_cat_photos_are_the_only_duplicates(photos_output):
  result = label_images('duplicates', photos_output)
  assert result.returncode == 0, result.stderr
  assert '2 of 9 images have a near-duplicate' in result.stdout
  rows = duplicates_of(photos_output)
  assert {os.path.basename(row['uri']) for row in rows} == CATS
  assert {row['group'] for row in rows} == {0}
  for row in rows:
    assert os.path.basename(row['nearest_uri']) == ({*CATS} - {os.path.basename(row['uri'])}).pop()
    assert 0.9 < row['cosine'] <= 1.0001


@pytest.mark.parametrize('query,nearest', [('cat.bmp', 'cat_720p.jpg'),
                                           ('cat_720p.jpg', 'cat.bmp')])
def test_similar_by_uri_finds_the_same_photo_first(photos_output, query, nearest):
  answers = similar_json(photos_output, '--uri', os.path.join(PHOTOS_DIR, query), '--k', '4')
  assert len(answers) == 4
  assert all(set(answer) == {'uri', 'similarity', 'label'} for answer in answers)
  assert os.path.basename(answers[0]['uri']) == nearest
  assert answers[0]['label'] == 'Egyptian cat'
  assert query not in {os.path.basename(answer['uri']) for answer in answers}
  similarities = [answer['similarity'] for answer in answers]
  assert similarities == sorted(similarities, reverse=True)
  assert similarities[0] > 0.9 > similarities[1]


def test_similar_embeds_an_image_from_anywhere(photos_output, tmp_path):
  with Image.open(os.path.join(PHOTOS_DIR, 'parrot.jpg')) as image:
    image.resize((image.width // 2, image.height // 2)).save(tmp_path / 'small.jpg', quality=70)
  answers = similar_json(photos_output, '--image', tmp_path / 'small.jpg', '--k', '2')
  assert os.path.basename(answers[0]['uri']) == 'parrot.jpg'
  assert answers[0]['label'] == 'macaw' and answers[0]['similarity'] > 0.9

  # An image of the output, given by path, is not its own answer.
  result = label_images('similar', photos_output, '--image', os.path.join(PHOTOS_DIR, 'cat.bmp'))
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].split() == ['rank', 'similarity', 'label', 'uri']
  assert len(lines) == 1 + 8 and 'cat_720p.jpg' in lines[1]
  assert not any(line.endswith('/cat.bmp') for line in lines)


@pytest.mark.parametrize('args,message', [
    (['--uri', '/nowhere/x.jpg'], 'is not among the 9 labelled images'),
    (['--image', '/nowhere/x.jpg'], 'cannot embed the image: not_found'),
])
def test_similar_refuses_what_it_cannot_answer(photos_output, args, message):
  result = label_images('similar', photos_output, *args)
  assert result.returncode == 2
  assert message in result.stderr and 'Traceback' not in result.stderr


def test_commands_refuse_a_directory_without_results(tmp_path):
  for command in ('report', 'duplicates'):
    result = label_images(command, tmp_path)
    assert result.returncode == 2
    assert 'holds no labels-*.parquet' in result.stderr and 'Traceback' not in result.stderr


def test_every_copy_lands_in_its_sources_group_and_nothing_else_does(copies_output):
  output, copies = copies_output
  result = label_images('duplicates', output)
  assert result.returncode == 0, result.stderr
  group = {row['uri']: row['group'] for row in duplicates_of(output)}
  expected = {}  # source photo -> the group its copies must share
  for source, copy_paths in copies.items():
    members = {group.get(path) for path in [source, *copy_paths]}
    assert len(members) == 1 and None not in members, (source, members)
    expected[os.path.basename(source)] = members.pop()
  assert len(copies[next(iter(copies))]) == len(VARIANTS)
  assert expected['cat.bmp'] == expected['cat_720p.jpg']
  assert len(set(expected.values())) == len(ALL_PHOTOS) - 1
  assert len(group) == len(ALL_PHOTOS) * (1 + len(VARIANTS))


def test_the_index_is_reused_until_the_output_changes(model_dir, photos_output, tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(photos_output, output)
  assert label_images('duplicates', output).returncode == 0
  saved = {path: os.stat(path).st_mtime_ns for path in glob.glob(str(output / 'index' / '*'))}
  assert {os.path.basename(path) for path in saved} == {
      'embeddings.faiss', 'rows.parquet', 'index.json'}
  similar_json(output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp'))
  assert saved == {path: os.stat(path).st_mtime_ns for path in saved}

  # One more image, labelled by --resume: the next query sees it.
  more = tmp_path / 'more'
  more.mkdir()
  shutil.copy(os.path.join(PHOTOS_DIR, 'cat.bmp'), more / 'another_cat.bmp')
  result = label_images('--input', more / '*', '--output', output, '--resume',
                        *model_args(model_dir))
  assert result.returncode == 0, result.stderr
  answers = similar_json(output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp'), '--k', '1')
  assert answers[0]['uri'] == str(more / 'another_cat.bmp')
  assert answers[0]['similarity'] == pytest.approx(1.0, abs=1e-4)
  assert json.loads((output / 'index' / 'index.json').read_text())['images'] == 10


def test_report_renders_in_a_browser(photos_output, tmp_path):
  chromium = shutil.which('chromium') or shutil.which('chromium-browser')
  if chromium is None:
    unavailable('no chromium to render the report in (Debian package chromium)')
  assert label_images('duplicates', photos_output).returncode == 0
  result = label_images('report', photos_output)
  assert result.returncode == 0, result.stderr
  page = (photos_output / 'report.html').read_text()
  # Self-contained: nothing to fetch, nothing to run.
  assert '<script' not in page
  assert not any(f'{attribute}="http' in page for attribute in ('src', 'href'))
  assert page.count('<svg') == 2  # the label and score plots
  assert page.count('src="data:image/jpeg;base64,') >= 9 + 2  # examples, least sure, cats
  assert 'unavailable' not in page
  for text in ('Egyptian cat', 'macaw', '9</b><span>images labelled', 'Group of 2',
               'No image failed'):
    assert text in page, text

  screenshot = tmp_path / 'report.png'
  subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                  '--window-size=1280,3000', f'--screenshot={screenshot}',
                  (photos_output / 'report.html').as_uri()],
                 capture_output=True, timeout=120, check=True)
  pixels = np.asarray(Image.open(screenshot).convert('RGB')).reshape(-1, 3).astype(int)
  bar_blue = np.all(np.abs(pixels - [0x3b, 0x6f, 0xd4]) < 12, axis=1).sum()
  assert bar_blue > 5_000, 'the plots are not drawn'
  distinct = len(np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]))
  assert distinct > 20_000, 'the thumbnails are not drawn'


def test_after_the_run_on_gcs(model_dir, gcs_bucket):
  bucket, bucket_uri = gcs_bucket
  output = f'{bucket_uri}/out'
  labelled(model_dir, os.path.join(PHOTOS_DIR, '*'), output)
  result = label_images('duplicates', output)
  assert result.returncode == 0, result.stderr
  assert '2 of 9 images have a near-duplicate' in result.stdout
  answers = similar_json(output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp'), '--k', '1')
  assert os.path.basename(answers[0]['uri']) == 'cat_720p.jpg'
  result = label_images('report', output)
  assert result.returncode == 0, result.stderr
  names = {blob.name for blob in bucket.list_blobs(prefix='out/')}
  assert {'out/duplicates.parquet', 'out/report.html', 'out/index/embeddings.faiss',
          'out/index/rows.parquet', 'out/index/index.json'} <= names
  page = bucket.blob('out/report.html').download_as_text()
  assert page.count('src="data:image/jpeg;base64,') >= 9 and 'Group of 2' in page
