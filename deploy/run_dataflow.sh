#!/usr/bin/env bash
# Launches label-images on Google Cloud Dataflow straight from this checkout.
#
#   deploy/run_dataflow.sh PROJECT REGION gs://BUCKET INPUT OUTPUT [--amx | --gpu] [more label-images or Beam options]
#
# With IMAGE set (deploy/build_image.sh), workers run that image; without it they install
# the project from setup.py at start-up (slower to start). Stage the model first
# (label-images stage-model --dest gs://BUCKET/models) and pass
#   --model_handle gs://BUCKET/models/classification --feature_handle gs://BUCKET/models/feature_vector
# so workers load it from their own region. Add --dry_run to build the job without submitting.
#
# Worker settings, recommended:
#   CPU: n2-standard-4; one SDK process per VM, so a VM holds one model copy rather than one
#        per vCPU (--experiments=no_use_multiple_sdk_containers), with 4 harness threads
#        sharing it; each engine uses every vCPU, and each worker times the fp32 engines
#        at start (--engine auto) and keeps the fastest.
#   AMX: c3-standard-4 (Sapphire Rapids), --precision bf16: OpenVINO in bfloat16 on AMX.
#   GPU: g2-standard-4 with one NVIDIA L4, --engine tf, batches of 64.
#   Autoscaling: throughput-based, up to MAX_WORKERS (default 50).
set -euo pipefail
if (($# < 5)); then
  sed -n '4p' "$0" >&2
  exit 2
fi
project=$1 region=$2 bucket=$3 input=$4 output=$5
shift 5
machine=(--machine_type n2-standard-4 --number_of_worker_harness_threads 4)
if [[ ${1:-} == --amx ]]; then
  shift
  machine=(--machine_type c3-standard-4 --number_of_worker_harness_threads 4 --precision bf16)
elif [[ ${1:-} == --gpu ]]; then
  shift
  machine=(--machine_type g2-standard-4 --number_of_worker_harness_threads 2 --engine tf
           --batch_size 64
           --dataflow_service_options 'worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver')
fi
if [[ -n ${IMAGE:-} ]]; then
  dependencies=(--sdk_container_image "$IMAGE")
else
  dependencies=(--setup_file ./setup.py)
fi
cd "$(dirname "$0")/.."
exec label-images \
  --runner DataflowRunner \
  --project "$project" \
  --region "$region" \
  --temp_location "$bucket/tmp" \
  --staging_location "$bucket/staging" \
  "${dependencies[@]}" \
  "${machine[@]}" \
  --experiments=no_use_multiple_sdk_containers \
  --autoscaling_algorithm THROUGHPUT_BASED \
  --max_num_workers "${MAX_WORKERS:-50}" \
  --input "$input" \
  --output "$output" \
  "$@"
