#!/usr/bin/env bash
# Builds the image and the Flex Template spec that points at it.
#   deploy/build_flex_template.sh IMAGE gs://BUCKET/templates/label-images.json [--gpu]
set -euo pipefail
if (($# < 2)); then
  sed -n '3p' "$0" >&2
  exit 2
fi
image=$1 template=$2
cd "$(dirname "$0")/.."
deploy/build_image.sh "$image" "${3:-}"
gcloud dataflow flex-template build "$template" \
  --image "$image" \
  --sdk-language PYTHON \
  --metadata-file deploy/flex_template_metadata.json
