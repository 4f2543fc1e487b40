#!/usr/bin/env bash
# Runs a job from the Flex Template, workers on the template's own image.
#   deploy/run_flex_template.sh gs://BUCKET/templates/label-images.json REGION IMAGE INPUT OUTPUT [--gpu]
# Further parameters: PARAMETERS='model_handle=gs://...,feature_handle=gs://...'
set -euo pipefail
if (($# < 5)); then
  sed -n '3p' "$0" >&2
  exit 2
fi
template=$1 region=$2 image=$3 input=$4 output=$5
machine=n2-standard-4 parameters="input=$input,output=$output" pipeline_options=()
if [[ ${6:-} == --gpu ]]; then
  machine=g2-standard-4
  parameters+=",engine=tf,batch_size=64"
  pipeline_options=(--additional-pipeline-options
    'dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver')
fi
[[ -n ${PARAMETERS:-} ]] && parameters+=",$PARAMETERS"
exec gcloud dataflow flex-template run "label-images-$(date +%Y%m%d-%H%M%S)" \
  --template-file-gcs-location "$template" \
  --region "$region" \
  --worker-machine-type "$machine" \
  --max-workers "${MAX_WORKERS:-50}" \
  --additional-experiments no_use_multiple_sdk_containers \
  "${pipeline_options[@]}" \
  --parameters "$parameters,sdk_container_image=$image"
