#!/usr/bin/env bash
# Run ziya-jax training on every worker of a TPU VM pod slice (jax.distributed initialises itself).
#   TPU=my-v5p-128 ZONE=us-east5-a WORKDIR=/mnt/ckpt/ziya2 tools/launch/tpu_pod.sh configs/hardware/v5p_128.py [--config.KEY=VALUE ...]
# The repository, the packed caches (ZIYA_CACHE_DIR) and WORKDIR must be reachable from every worker
# (same path: a shared filesystem such as Filestore, or a copy per worker for the caches).
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR (shared filesystem)}"
CONFIG=${1:?usage: tpu_pod.sh CONFIG [overrides...]}; shift
REPO=${REPO:-~/ziya-jax}
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd $REPO && ZIYA_CACHE_DIR=${ZIYA_CACHE_DIR:-} .venv/bin/python -m ziya_jax train --config $CONFIG --workdir $WORKDIR $*"
