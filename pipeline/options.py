"""The pipeline's own options, parsed the Beam way beside every standard Beam option."""

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.decode import DEFAULT_MAX_PIXELS
from transforms.inference import DEFAULT_BATCH_SIZE
from transforms.read import DEFAULT_MAX_IMAGE_BYTES
from transforms.write import DEFAULT_ROWS_PER_FILE

TFHUB_MOBILENET_V2 = 'https://tfhub.dev/google/tf2-preview/mobilenet_v2'
DEFAULT_MODEL_HANDLE = f'{TFHUB_MOBILENET_V2}/classification/4'
DEFAULT_FEATURE_HANDLE = f'{TFHUB_MOBILENET_V2}/feature_vector/4'
REQUIRED = ('input', 'output')


class LabelImagesOptions(PipelineOptions):
  """No option is argparse-required: Beam parses every options class wherever it builds a
  PipelineOptions, so required ones are checked by the command line instead."""

  @classmethod
  def _add_argparse_args(cls, parser):
    parser.add_argument(
        '--input',
        help='Images to label: a glob (local or gs://, e.g. gs://bucket/photos/**.jpg), '
        'a .txt file with one URI per line, or a .csv / .parquet file with a "uri" column.')
    parser.add_argument(
        '--output', help='Directory (local or gs://) for labels-*.parquet and errors-*.parquet.')
    parser.add_argument(
        '--model_handle', default=DEFAULT_MODEL_HANDLE,
        help='TF Hub handle of the classification module: a tfhub.dev or Kaggle URL, '
        'a gs:// path or a local SavedModel directory. Default: %(default)s')
    parser.add_argument(
        '--feature_handle', default=DEFAULT_FEATURE_HANDLE,
        help='TF Hub handle of the matching feature-vector module. Default: %(default)s')
    parser.add_argument(
        '--top_k', type=int, default=5, help='How many labels and scores to keep per image.')
    parser.add_argument(
        '--batch_size', type=int, default=DEFAULT_BATCH_SIZE,
        help='Largest batch of images per forward pass. Default: %(default)s')
    parser.add_argument(
        '--rows_per_file', type=int, default=DEFAULT_ROWS_PER_FILE,
        help='Rows per Parquet part (one row group each). Default: %(default)s')
    parser.add_argument(
        '--max_image_bytes', type=int, default=DEFAULT_MAX_IMAGE_BYTES,
        help='Larger files are refused as too_large. Default: %(default)s')
    parser.add_argument(
        '--max_image_pixels', type=int, default=DEFAULT_MAX_PIXELS,
        help='Images declaring more pixels are refused before decoding, as too_many_pixels. '
        'Default: %(default)s')
