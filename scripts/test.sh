#!/usr/bin/env bash
# The test command (README, .ci/run): lint, types, then the whole suite on real components.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m ruff check .
$PY -m mypy edge zones calibration mqtt_bridge models hq
# the layers of docs/architecture.md (import-linter contracts in pyproject.toml)
"$(dirname "$($PY -c 'import sys; print(sys.executable)')")/lint-imports" --no-cache
$PY -m pytest -q "$@"
