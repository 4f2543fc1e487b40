#!/usr/bin/env bash
# Launches label-images on Google Cloud Dataflow with the project staged through setup.py.
#
#   deploy/run_dataflow.sh PROJECT REGION gs://BUCKET 'gs://BUCKET/photos/**.jpg' gs://BUCKET/labels [more Beam options]
#
# Workers install the project and its pinned dependencies from setup.py at start-up. Model
# handles default to tfhub.dev; pass --model_handle / --feature_handle gs://... to load them
# from a bucket in the workers' region instead.
set -euo pipefail
if (($# < 5)); then
  sed -n '4p' "$0" >&2
  exit 2
fi
project=$1 region=$2 bucket=$3 input=$4 output=$5
shift 5
cd "$(dirname "$0")/.."
exec label-images \
  --runner DataflowRunner \
  --project "$project" \
  --region "$region" \
  --temp_location "$bucket/tmp" \
  --staging_location "$bucket/staging" \
  --setup_file ./setup.py \
  --machine_type n2-standard-4 \
  --experiments=no_use_multiple_sdk_containers \
  --input "$input" \
  --output "$output" \
  "$@"
