"""report, similar and duplicates on real labelled output, through the command line."""

import glob
import json
import os
import re
import shutil
import subprocess

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import ALL_PHOTOS, PHOTOS_DIR, ROOT, unavailable
from near_copies import VARIANTS, make_near_copies
from pipeline import similar
from pipeline.output_dir import DUPLICATES_FILE, INDEX_DIR, MANIFEST, REPORT_FILE
from test_cli import ERRORS_SCHEMA, label_images, model_args

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
  table = pq.read_table(output / DUPLICATES_FILE)
  assert table.schema.equals(DUPLICATES_SCHEMA)
  return table.to_pylist()


def similar_json(output, *args):
  result = label_images('similar', output, *args, '--json')
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def report_page(output):
  result = label_images('report', output)
  assert result.returncode == 0, result.stderr
  return (output / REPORT_FILE).read_text()


def label_paths(output):
  return sorted(output.glob('labels-*.parquet'))


def labels_rows(output):
  """Every labels row of output, by URI."""
  return pa.concat_tables(pq.read_table(path) for path in label_paths(output)).sort_by('uri')


def refusals(output, message):
  """Asserts that similar and duplicates refuse output with message, as a usage error."""
  for args in (['similar', output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp')],
               ['duplicates', output]):
    result = label_images(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and 'Traceback' not in result.stderr


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


@pytest.mark.parametrize('query,nearest,spell', [
    ('cat.bmp', 'cat_720p.jpg', lambda path: path),
    ('cat_720p.jpg', 'cat.bmp', lambda path: os.path.relpath(path, ROOT)),  # from ROOT, as run
    ('cat.bmp', 'cat_720p.jpg', lambda path: f'file://{path}'),
])
def test_similar_by_uri_finds_the_same_photo_first(photos_output, query, nearest, spell):
  answers = similar_json(photos_output, '--uri', spell(os.path.join(PHOTOS_DIR, query)),
                         '--k', '4')
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
  result = label_images('report', tmp_path)
  assert result.returncode == 2
  assert 'holds no labels-*.parquet nor _errors/errors-*.parquet' in result.stderr
  refusals(tmp_path, 'holds no labels-*.parquet nor _errors/errors-*.parquet')


def test_an_output_where_every_image_failed_has_a_report(model_dir, tmp_path):
  broken = tmp_path / 'broken'
  broken.mkdir()
  (broken / 'text.jpg').write_text('not an image')
  (broken / 'empty.png').write_bytes(b'')
  listing = tmp_path / 'uris.txt'
  listing.write_text('\n'.join(str(broken / name)
                               for name in ('text.jpg', 'empty.png', 'gone.jpg')))
  output = labelled(model_dir, listing, tmp_path / 'out')
  assert not label_paths(output)
  page = report_page(output)
  for text in ('0</b><span>images labelled', '3</b><span>errors', '1</b><span>run</span>',
               'No image was labelled. Every image failed', 'not_an_image', 'empty', 'not_found',
               'gone.jpg', 'built from 0 label rows in 0 parts and 3 error rows'):
    assert text in page, text
  assert '<svg' not in page and 'Near-duplicates' not in page
  refusals(output, 'holds no labels-*.parquet: every image failed')


def test_commands_read_parts_rewritten_by_pandas_and_duckdb(photos_output, tmp_path):
  """The labels in a part pandas wrote, one DuckDB wrote, one as the pipeline writes, and
  an empty one; an errors part pandas wrote."""
  output = tmp_path / 'out'
  output.mkdir()
  shutil.copy(photos_output / MANIFEST, output)
  rows = labels_rows(photos_output)
  rows.slice(0, 3).to_pandas().to_parquet(output / 'labels-0-pandas.parquet')
  connection = duckdb.connect()
  connection.register('some_rows', rows.slice(3, 3))
  connection.execute(f"COPY some_rows TO '{output / 'labels-1-duckdb.parquet'}' (FORMAT parquet)")
  pq.write_table(rows.slice(6), output / 'labels-2-pipeline.parquet')
  rows.slice(0, 0).to_pandas().to_parquet(output / 'labels-3-empty.parquet')
  (output / '_errors').mkdir()
  pa.table({'uri': ['/nowhere/x.jpg'], 'stage': ['read'], 'error': ['not_found'],
            'message': ['gone']}).to_pandas().to_parquet(output / '_errors' / 'errors-0.parquet')

  page = report_page(output)
  for text in ('9</b><span>images labelled', '8</b><span>distinct labels',
               '1</b><span>error</span>', 'built from 9 label rows in 4 parts', 'x.jpg'):
    assert text in page, text
  assert page.count('src="data:image/jpeg;base64,') >= 9 and 'unavailable' not in page
  result = label_images('duplicates', output)
  assert result.returncode == 0, result.stderr
  assert '2 of 9 images have a near-duplicate' in result.stdout
  answers = similar_json(output, '--uri', os.path.join(PHOTOS_DIR, 'cat.bmp'), '--k', '8')
  assert os.path.basename(answers[0]['uri']) == 'cat_720p.jpg'
  assert sorted(os.path.basename(answer['uri']) for answer in answers) == [
      name for name in ALL_PHOTOS if name != 'cat.bmp']


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
  saved = {path: os.stat(path).st_mtime_ns for path in glob.glob(str(output / INDEX_DIR / '*'))}
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
  assert json.loads((output / INDEX_DIR / 'index.json').read_text())['images'] == 10


def test_report_renders_in_a_browser(photos_output, tmp_path):
  chromium = shutil.which('chromium') or shutil.which('chromium-browser')
  if chromium is None:
    unavailable('no chromium to render the report in (Debian package chromium)')
  assert label_images('duplicates', photos_output).returncode == 0
  page = report_page(photos_output)
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
                  (photos_output / REPORT_FILE).as_uri()],
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
  assert {f'out/{name}' for name in (
      DUPLICATES_FILE, REPORT_FILE, f'{INDEX_DIR}/embeddings.faiss', f'{INDEX_DIR}/rows.parquet',
      f'{INDEX_DIR}/index.json')} <= names
  page = bucket.blob(f'out/{REPORT_FILE}').download_as_text()
  assert page.count('src="data:image/jpeg;base64,') >= 9 and 'Group of 2' in page


def write_duplicates(output, groups, metadata):
  """OUTPUT/_duplicates.parquet of these groups ([[uri]]), with this key-value metadata."""
  uris = [uri for group in groups for uri in group]
  table = pa.table({
      'group': [number for number, group in enumerate(groups) for _ in group],
      'uri': uris, 'nearest_uri': uris[1:] + uris[:1], 'cosine': [0.95] * len(uris),
  }, schema=DUPLICATES_SCHEMA)
  pq.write_table(table.replace_schema_metadata(metadata), output / DUPLICATES_FILE)


def test_report_gives_each_groups_size_its_threshold_and_whether_it_is_current(
    photos_output, tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(photos_output, output)
  rows = labels_rows(output)
  uris = rows.column('uri').to_pylist()
  parts = {path.name: pq.read_metadata(path).num_rows for path in label_paths(output)}
  write_duplicates(output, [uris[:7], uris[7:]], {'threshold': '0.85', 'parts': json.dumps(parts)})
  page = report_page(output)
  assert '9 images in 2 groups (cosine 0.85 or above):' in page
  assert 'Group of 7 images <span class="muted">(6 shown)</span></h3>' in page
  assert 'Group of 2 images</h3>' in page and 'Group of 6+' not in page

  # A part more since: those groups were found among fewer images.
  more = rows.slice(0, 1).set_column(0, 'uri', pa.array(['/elsewhere/cat.bmp']))
  pq.write_table(more, output / 'labels-zz-more.parquet')
  page = report_page(output)
  built_from = f'{len(parts)} part' + ('' if len(parts) == 1 else 's')
  assert (f'out of date: built from {built_from}, the output now has {len(parts) + 1}; '
          f'refresh with: <code>label-images duplicates {output}</code>') in page
  assert 'Group of' not in page


def tick_labels(svg, axis):
  """The tick labels of one axis ('x' or 'y') of a matplotlib SVG."""
  return re.findall(rf'<g id="{axis}tick_\d+">.*?<!-- (.*?) -->', svg, re.S)


def test_report_labels_ticks_and_counts_read_right(photos_output):
  page = report_page(photos_output)
  label_svg, score_svg = page.split('<svg')[1:]
  names = tick_labels(label_svg, 'y')
  assert "dragonfly, darning needle, devil's darn…" in names
  assert all(len(name) <= 40 for name in names)
  assert ("<title>dragonfly, darning needle, devil&#x27;s darning needle, sewing needle, "
          "snake feeder, snake doctor, mosquito hawk, skeeter hawk</title>") in label_svg
  for ticks in (tick_labels(label_svg, 'x'), tick_labels(score_svg, 'y')):  # image counts
    assert ticks and all(tick.isdigit() for tick in ticks), ticks
  assert '1</b><span>run</span>' in page
  assert '<b>1 image</b> of 9 (11.1%) has a top score below 0.5' in page
  assert not re.search(r'\b1 (images|groups|parts|errors|rows)\b', page)


def test_commands_take_a_directory_of_the_old_layout(photos_output, tmp_path):
  output = tmp_path / 'out'
  shutil.copytree(photos_output, output, ignore=shutil.ignore_patterns('_*'))
  shutil.copy(photos_output / MANIFEST, output / 'manifest.json')
  pq.write_table(pa.table({'uri': ['/nowhere/x.jpg'], 'stage': ['read'], 'error': ['not_found'],
                           'message': ['gone']}, schema=ERRORS_SCHEMA),
                 output / 'errors-20260101T000000-0-00000.parquet')
  page = report_page(output)
  assert 'DirectRunner' in page and '1</b><span>error</span>' in page
  assert sorted(path.name for path in output.iterdir() if path not in label_paths(output)) == [
      '_errors', MANIFEST, REPORT_FILE]
  assert os.listdir(output / '_errors') == ['errors-20260101T000000-0-00000.parquet']


def test_report_shows_images_stored_as_absolute_paths_and_file_uris(photos_output, tmp_path):
  images = tmp_path / 'my photos'
  images.mkdir()
  rows = labels_rows(photos_output)
  uris = []
  for number, uri in enumerate(rows.column('uri').to_pylist()):
    path = images / f'#{number} {os.path.basename(uri)}'
    shutil.copy(uri, path)
    uris.append(path.as_uri() if number % 2 else str(path))
  output = tmp_path / 'out'
  output.mkdir()
  pq.write_table(rows.set_column(0, rows.schema.field('uri'), pa.array(uris)),
                 output / 'labels-0.parquet')
  page = report_page(output)
  assert 'unavailable' not in page
  assert page.count('src="data:image/jpeg;base64,') >= 9


def test_similar_shortens_long_labels_in_its_table_with_an_ellipsis():
  printed = similar.table([{'uri': '/p/x.jpg', 'similarity': 0.99,
                            'label': 'restaurant, eating house, eating place, eatery'}])
  assert 'restaurant, eating house, eat…  /p/x.jpg' in printed
