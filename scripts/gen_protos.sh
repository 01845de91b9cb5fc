#!/usr/bin/env bash
# Regenerate runtime/protocol/*_pb2*.py from the .proto files (tests/test_protocol.py checks they are current).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
python -m grpc_tools.protoc -I . --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" runtime/protocol/*.proto
