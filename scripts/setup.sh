#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu edge box or dev machine: system packages + the Python package.
# Idempotent; safe to re-run. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mosquitto mosquitto-clients   # the MQTT broker (edge and tests) + mosquitto_passwd
  chromium                      # headless browser for display/report/setup tests (never downloaded by a tool)
  fonts-wqy-zenhei              # CJK glyphs for Chinese labels in the display and reports
  systemd                       # systemd-analyze verify of the service units (works without systemd as PID 1)
  libseccomp2                   # tests run the services under their units' SystemCallFilter (tests/seccomp_sandbox.py)
  prometheus                    # promtool: checks the sample scrape config and unit-tests the alert rules
  postgresql                    # chain HQ database; the hq tests start their own cluster (initdb/pg_ctl)
)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian keeps initdb/pg_ctl in /usr/lib/postgresql/<version>/bin; hq/postgres.py looks there too
command -v initdb >/dev/null 2>&1 || ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 \
  || { echo "setup: PostgreSQL's initdb not found after installing postgresql" >&2; exit 1; }

PY=${PYTHON:-python3}
# Debian 12's own python3 refuses pip installs (PEP 668, EXTERNALLY-MANAGED): say what to do
# instead of pip's long error. A virtual environment is never externally managed.
if $PY -c 'import os, sys, sysconfig; sys.exit(sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
  :
else
  echo "setup: $($PY -c 'import sys; print(sys.executable)') is the system's Python, which refuses pip installs (PEP 668)." >&2
  echo "setup: make a virtual environment and give it to this script, e.g." >&2
  echo "setup:   python3 -m venv /opt/storesense/venv && PYTHON=/opt/storesense/venv/bin/python $0" >&2
  exit 1
fi
echo "setup: pip install -e .[dev] with $PY"
$PY -m pip install -q --disable-pip-version-check -e ".[dev]"
# the accuracy audit's metrics (storesense evaluate); --no-deps: see pyproject.toml
$PY -m pip install -q --disable-pip-version-check --no-deps "trackeval==1.3.0"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

# models and sample clips are never downloaded: they come from ../shared (or STORESENSE_SHARED)
$PY - <<'PY'
from edge.resources import models_dir, videos_dir
for what, d in (("models", models_dir()), ("videos", videos_dir())):
    print(f"setup: {what} from {d}" + ("" if d.is_dir() else "  (MISSING: set STORESENSE_SHARED)"))
PY
echo "setup: done. Try: storesense demo"
