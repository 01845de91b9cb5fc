#!/usr/bin/env bash
# The long fuzz run (issue 13): thousands of random frames on a real raylet's ports and a
# driver's listener, and random cluster configs (tests/test_fuzz.py with RAYCTL_FUZZ=long).
# The default test run has the short, seeded version. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
RAYCTL_FUZZ=long python -m pytest -q -p no:cacheprovider tests/test_fuzz.py "$@"
