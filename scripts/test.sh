#!/usr/bin/env bash
# The test command (README, .ci/run): lint, types, then the whole suite on real components.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m ruff check .
$PY -m mypy edge zones calibration mqtt_bridge models hq
$PY -m pytest -q "$@"
