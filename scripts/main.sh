#!/usr/bin/env bash
# The main job: start a local cluster, run the example workload on it, tear it down.
# (Becomes `rayctl up cluster-configs/local.yaml` once the autoscaler lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python examples/workload.py "$@"
