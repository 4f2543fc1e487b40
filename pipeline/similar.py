"""label-images similar: the images of an output directory most like one image.

  label-images similar OUTPUT_DIR (--uri URI | --image PATH_OR_URI) [--k 10] [--json]

--uri names an image in the output (its stored embedding is the query); --image is any
image, decoded at the size and embedded by the model (and engine) the manifest records.
The query image itself is never among the answers.
"""

import argparse
import json
import os

from apache_beam.io.filesystems import FileSystems

from pipeline import results
from pipeline.console import add_verbose_flag, shortened, status
from pipeline.label_stats import NONE_LABEL
from pipeline.embedding_index import NAN_OR_INF, SEARCH_NPROBE, index_for, unit_rows
from transforms.decode import decode_image
from transforms.engines.choice import load_engine
from transforms.model_spec import recorded_spec
from transforms.read import canonical_uri, read_image_bytes

# More answers than anyone reads; k is also capped at the images indexed.
MAX_K = 100_000


class QueryError(Exception):
  pass


def _no_direction(reason):
  """What is wrong with an embedding left out of the index for `reason`."""
  what = 'holds NaN or inf' if reason == NAN_OR_INF else 'is all zero'
  return f'{what}: it has no direction to compare'


def stored_uri(embedding_index, uri):
  """`uri` as the output stores it: a local path in its canonical form, or as given by
  a directory written before paths were made canonical; None where it is not there."""
  for spelling in (canonical_uri(uri, os.getcwd()), uri):
    if embedding_index.row_of(spelling) is not None:
      return spelling
  return None


def stored_embedding(output_dir, embedding_index, uri):
  """The embedding of an image of the output, and its vector in the index."""
  row = embedding_index.row_of(uri)
  if row is None:
    raise QueryError(f'{uri} is not among the {embedding_index.images:,} labelled images of '
                     f'{output_dir}; pass --image to embed an image from anywhere')
  reason = embedding_index.left_out_reason(row)
  if reason:
    raise QueryError(f'the embedding of {uri} {_no_direction(reason)}, so it is left out '
                     'of the index')
  part, offset = embedding_index.part_and_offset(row)
  embedding = results.read_row(FileSystems.join(output_dir, part), offset,
                               ['embedding'])['embedding']
  return embedding, int(embedding_index.vector_of[row])


def embed_image(output_dir, uri):
  """The embedding of any image, decoded and embedded as output_dir's images were: at its
  model's size, by its model on its engine."""
  identity = (results.read_manifest(output_dir) or {}).get('identity')
  if not identity:
    raise QueryError(f'{output_dir} has no _manifest.json naming its model: --image needs it')
  spec = recorded_spec(identity)
  pixels, _, _ = decode_image(read_image_bytes(uri), size=spec.image_size)
  model = load_engine(spec, identity['model_handle'], identity['feature_handle'],
                      identity['engine'], identity.get('precision'))
  return model.predict(pixels[None])[1][0]


def _unit_query(embedding_index, embedding, query):
  if len(embedding) != embedding_index.width:
    raise QueryError(f'the embedding of {query} is {len(embedding):,} wide, those of the '
                     f'output {embedding_index.width:,}: the model its manifest names is not '
                     'the one that labelled it')
  vectors, left_out = unit_rows([embedding])
  if left_out[0]:
    raise QueryError(f'the embedding of {query} {_no_direction(left_out[0])}')
  return vectors


def most_similar(output_dir, k=10, uri=None, image=None, progress=status):
  """[{uri, similarity, label}], most similar first: the images that share the query's
  embedding at 1, then those of the nearest other embeddings."""
  embedding_index = index_for(output_dir, progress)
  for note in embedding_index.notes():
    progress(note)
  embedding_index.set_nprobe(SEARCH_NPROBE)
  if uri:
    query = stored_uri(embedding_index, uri) or uri
    embedding, own_vector = stored_embedding(output_dir, embedding_index, query)
  else:
    query = canonical_uri(image, os.getcwd())
    embedding, own_vector = embed_image(output_dir, image), None
  unit_query = _unit_query(embedding_index, embedding, query)
  nearest = [(own_vector, 1.0)] if own_vector is not None else []
  if embedding_index.size:
    # k + 1 vectors hold k images besides the query, whether or not its own is among them.
    cosines, vectors = embedding_index.search(unit_query, min(k + 1, embedding_index.size))
    nearest += [(vector, min(float(cosine), 1.0)) for cosine, vector
                in zip(cosines[0], vectors[0]) if vector >= 0 and vector != own_vector]
  return _answers(embedding_index, nearest, query, k)


def _answers(embedding_index, nearest, query, k):
  """The first k images of the `nearest` [(vector, cosine)], the query excepted."""
  answers = []
  for vector, cosine in nearest:
    for row in embedding_index.rows_of_vector(vector):
      uri = embedding_index.uris[row].as_py()
      if uri != query:
        answers.append({'uri': uri, 'similarity': round(cosine, 4),
                        'label': embedding_index.labels[row].as_py()})
      if len(answers) == k:
        return answers
  return answers


def table(answers):
  if not answers:
    return 'no similar images'
  lines = [f"{'rank':>4}  {'similarity':>10}  {'label':<30}  uri"]
  for rank, answer in enumerate(answers, 1):
    lines.append(f"{rank:>4}  {answer['similarity']:>10.4f}  {shortened(answer['label'] or NONE_LABEL, 30):<30}  "
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
  parser.add_argument('--k', type=int, default=10,
                      help=f'How many, at most {MAX_K:,}. Default: %(default)s')
  parser.add_argument('--json', action='store_true',
                      help='Print a JSON list of {uri, similarity, label} instead of a table.')
  add_verbose_flag(parser)
  args = results.parse_with_filesystem_options(parser, argv)
  if not 1 <= args.k <= MAX_K:
    parser.error(f'--k must be between 1 and {MAX_K:,}')
  return args


def main(argv):
  args = parse_args(argv)
  answers = most_similar(args.output_dir, args.k, uri=args.uri, image=args.image)
  print(json.dumps(answers, indent=2) if args.json else table(answers))
  return 0
