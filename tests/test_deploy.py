"""deploy/: the image matches the pinned Beam, and the Flex Template's parameters are the CLI's."""

import json
import os
import re
import subprocess

import pytest

from conftest import ROOT
from pipeline.options import parse_args

DEPLOY = os.path.join(ROOT, 'deploy')
# A value of the right form for each parameter, as the Flex Template launcher passes it.
SAMPLE_VALUES = {
    'input': 'gs://b/images/*.jpg', 'output': 'gs://b/out', 'model_handle': 'gs://b/m/c',
    'feature_handle': 'gs://b/m/f', 'top_k': '3', 'engine': 'tf', 'batch_size': '64',
    'rows_per_file': '1000', 'max_image_bytes': '1000000', 'max_image_pixels': '1000000',
    'max_read_attempts': '3', 'resume': 'true', 'overwrite': 'false',
    'max_error_fraction': '0.01', 'precision': 'fp32',
}


def read(name):
  with open(os.path.join(DEPLOY, name), encoding='utf-8') as f:
    return f.read()


def test_the_image_is_built_on_the_beam_version_setup_py_pins():
  pinned = re.search(r"'apache-beam\[[a-z,]+\]==([\d.]+)'", read('../setup.py')).group(1)
  dockerfile = read('Dockerfile')
  assert f'ARG BEAM_VERSION={pinned}' in dockerfile
  assert 'FROM apache/beam_python3.11_sdk:${BEAM_VERSION}' in dockerfile
  assert 'FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/run.py' in dockerfile


def test_every_template_parameter_is_an_option_of_the_cli():
  parameters = json.loads(read('flex_template_metadata.json'))['parameters']
  assert {p['name'] for p in parameters} == set(SAMPLE_VALUES)
  for parameter in parameters:
    value = SAMPLE_VALUES[parameter['name']]
    for regex in parameter.get('regexes', []):
      assert re.match(regex, value), (parameter['name'], value)
  args, _ = parse_args([f'--{name}={value}' for name, value in SAMPLE_VALUES.items()])
  assert (args.top_k, args.engine, args.resume, args.overwrite) == (3, 'tf', True, False)


@pytest.mark.parametrize('script', sorted(n for n in os.listdir(DEPLOY) if n.endswith('.sh')))
def test_scripts_parse_and_explain_their_usage(script):
  path = os.path.join(DEPLOY, script)
  subprocess.run(['bash', '-n', path], check=True)
  result = subprocess.run(['bash', path], capture_output=True, text=True)
  assert result.returncode == 2 and os.path.basename(path) in result.stderr
