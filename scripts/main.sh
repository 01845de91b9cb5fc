#!/usr/bin/env bash
# The main job: `rayctl up cluster-configs/local.yaml`, a workload that makes it autoscale, `rayctl down`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python examples/workload.py "$@"
