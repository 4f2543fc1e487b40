"""Workers in separate processes, through Beam's portability framework, as on Dataflow, Flink
or Spark: everything the workers need must pickle, and no state of the driver may leak."""

import os

from conftest import ALL_PHOTOS, PHOTOS_DIR, REFERENCE_LABELS, last_run
from test_cli import LABELS_SCHEMA, label_images, model_args, read_output
from transforms.schema import ERRORS_SCHEMA


def test_labels_with_worker_processes(model_dir, tmp_path):
  broken = tmp_path / 'broken.png'
  broken.write_bytes(b'no image here')
  listing = tmp_path / 'list.txt'
  listing.write_text('\n'.join([os.path.join(PHOTOS_DIR, name) for name in ALL_PHOTOS]
                               + [str(broken)]))
  output = tmp_path / 'out'
  result = label_images('--input', listing, '--output', output, '--direct_running_mode',
                        'multi_processing', '--direct_num_workers', 2, *model_args(model_dir))
  assert result.returncode == 0, result.stderr

  labels = {os.path.basename(row['uri']): row['label_index']
            for row in read_output(output, 'labels', LABELS_SCHEMA)}
  assert {name: labels[name] for name in REFERENCE_LABELS} == REFERENCE_LABELS
  assert sorted(labels) == ALL_PHOTOS
  errors = read_output(output, 'errors', ERRORS_SCHEMA)
  assert [(row['uri'], row['error']) for row in errors] == [(str(broken), 'not_an_image')]
  # The workers' metrics reach the driver.
  counts = last_run(output)['counts']
  assert (counts['labelled'], counts['errors'], counts['unaccounted']) == (9, 1, 0)
