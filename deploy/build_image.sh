#!/usr/bin/env bash
# Builds and pushes the worker (and Flex Template launcher) image.
#   deploy/build_image.sh IMAGE [--gpu]
# IMAGE e.g. us-central1-docker.pkg.dev/PROJECT/REPOSITORY/label-images:cpu
set -euo pipefail
if (($# < 1)); then
  sed -n '3p' "$0" >&2
  exit 2
fi
image=$1
tensorflow='tensorflow==2.21.0'
[[ ${2:-} == --gpu ]] && tensorflow='tensorflow[and-cuda]==2.21.0'
cd "$(dirname "$0")/.."
docker build -f deploy/Dockerfile --build-arg TENSORFLOW="$tensorflow" -t "$image" .
docker push "$image"
