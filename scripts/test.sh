#!/usr/bin/env bash
# The test command (README, .ci/run): lint, types, then the whole suite on real components.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m ruff check .
$PY -m mypy edge zones calibration mqtt_bridge models hq
# the layers of docs/architecture.md (import-linter contracts in pyproject.toml)
"$(dirname "$($PY -c 'import sys; print(sys.executable)')")/lint-imports" --no-cache
# one worker per core (TEST_WORKERS=0 runs in this process, e.g. under a debugger); loadfile keeps
# each module on one worker so its module-scoped fixtures are built once
$PY -m pytest -q -n "${TEST_WORKERS:-auto}" --dist loadfile "$@"
