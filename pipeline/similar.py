"""label-images similar: the images of an output directory most like one image.

  label-images similar OUTPUT_DIR (--uri URI | --image PATH_OR_URI) [--k 10] [--json]

--uri names an image in the output (its stored embedding is the query); --image is any
image, decoded and embedded as the pipeline does, with the model the manifest names.
The query image itself is never among the answers.
"""

import argparse
import json

from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.console import add_verbose_flag
from pipeline.embedding_index import SEARCH_NPROBE, index_for
from transforms.decode import decode_image
from transforms.model import load_engine
from transforms.read import read_image_bytes


class QueryError(Exception):
  pass


def stored_embedding(output_dir, embedding_index, uri):
  row = embedding_index.row_of(uri)
  if row is None:
    raise QueryError(f'{uri} is not among the {embedding_index.size:,} labelled images of '
                     f'{output_dir}; pass --image to embed an image from anywhere')
  part, offset = embedding_index.part_and_offset(row)
  return results.read_row(FileSystems.join(output_dir, part), offset, ['embedding'])['embedding']


def embed_image(output_dir, uri):
  """The embedding of any image, by the model (and engine) that labelled output_dir."""
  identity = (results.read_manifest(output_dir) or {}).get('identity')
  if not identity:
    raise QueryError(f'{output_dir} has no manifest.json naming its model: --image needs it')
  pixels, _, _ = decode_image(read_image_bytes(uri))
  model = load_engine(identity['model_handle'], identity['feature_handle'], identity['engine'])
  return model.predict(pixels[None])[1][0]


def most_similar(output_dir, k=10, uri=None, image=None):
  """[{uri, similarity, label}], most similar first."""
  embedding_index = index_for(output_dir)
  embedding_index.set_nprobe(SEARCH_NPROBE)
  query = uri or image
  vector = (stored_embedding(output_dir, embedding_index, uri) if uri
            else embed_image(output_dir, image))
  cosines, rows = embedding_index.search(results.unit_vectors([vector]), k + 1)
  answers = []
  for cosine, row in zip(cosines[0], rows[0]):
    if row < 0 or embedding_index.uris[row].as_py() == query:
      continue
    answers.append({'uri': embedding_index.uris[row].as_py(),
                    'similarity': round(float(cosine), 4),
                    'label': embedding_index.labels[row].as_py()})
  return answers[:k]


def table(answers):
  if not answers:
    return 'no similar images'
  lines = [f"{'rank':>4}  {'similarity':>10}  {'label':<30}  uri"]
  for rank, answer in enumerate(answers, 1):
    lines.append(f"{rank:>4}  {answer['similarity']:>10.4f}  {answer['label'][:30]:<30}  "
                 f"{answer['uri']}")
  return '\n'.join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='label-images similar',
      description='The images of an output directory most similar to one image, by the '
      'cosine of their embeddings.')
  parser.add_argument('output_dir', help='A directory label-images wrote (local or gs://).')
  query = parser.add_mutually_exclusive_group(required=True)
  query.add_argument('--uri', help='An image of the output, by its URI there.')
  query.add_argument('--image', help='Any image (path or URI): it is embedded first.')
  parser.add_argument('--k', type=int, default=10, help='How many. Default: %(default)s')
  parser.add_argument('--json', action='store_true',
                      help='Print a JSON list of {uri, similarity, label} instead of a table.')
  add_verbose_flag(parser)
  args = results.parse_with_filesystem_options(parser, argv)
  if args.k < 1:
    parser.error('--k must be at least 1')
  return args


def main(argv):
  args = parse_args(argv)
  answers = most_similar(args.output_dir, args.k, uri=args.uri, image=args.image)
  print(json.dumps(answers, indent=2) if args.json else table(answers))
  return 0
