#!/usr/bin/env bash
# The full chaos set: kill -9 of a worker, a raylet, the GCS, Redis, the monitor and a driver,
# each mid-workload, and `down` interrupted at several points. Prints a table (also written as
# markdown to $CHAOS_MARKDOWN or the first argument, for docs/RELIABILITY.md) and exits non-zero
# if any scenario fails its thresholds. Extra arguments after the path: --only NAME...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
out="${1:-${CHAOS_MARKDOWN:-/tmp/rayctl-chaos.md}}"
shift || true
python tests/chaos/run.py --markdown "$out" "$@"
