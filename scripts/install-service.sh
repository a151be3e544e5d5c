#!/usr/bin/env bash
# Install StoreSense as systemd services: storesense-edge (cameras -> MQTT) and
# storesense-display (checkout screen). Idempotent; never overwrites an existing config or secret.
#
#   scripts/install-service.sh                 # as root on the box: install, verify, enable, start
#   scripts/install-service.sh --root DIR      # stage into DIR (packaging, CI): no user, no systemctl
#   options: --bin PATH (the storesense executable), --config FILE (store config to install),
#            --no-start (install and enable only)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="" bin="" config="" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2%/}"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-service: unknown option $1" >&2; exit 2 ;;
  esac
done
bin="${bin:-$(command -v storesense || true)}"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "install-service: no storesense executable (run scripts/setup.sh first, or give --bin PATH)" >&2
  exit 2
fi
bin="$(readlink -f "$bin")"
unit_dir="$root/etc/systemd/system"
etc="$root/etc/storesense"

install -d -m 0755 "$unit_dir"
for unit in storesense-edge.service storesense-display.service; do
  sed "s#@STORESENSE@#$bin#g" "$here/systemd/$unit" > "$unit_dir/$unit.tmp"
  chmod 0644 "$unit_dir/$unit.tmp"
  mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"
  echo "install-service: $unit_dir/$unit"
done

if [ -z "$root" ] && ! getent passwd storesense >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /var/lib/storesense \
    --shell /usr/sbin/nologin --groups video storesense
  echo "install-service: created system user storesense"
fi
group=storesense
[ -n "$root" ] && group="$(id -gn)"

install -d -m 0750 -g "$group" "$etc"
if [ ! -e "$etc/store.yaml" ]; then
  install -m 0640 -g "$group" "${config:-$here/systemd/store.yaml}" "$etc/store.yaml"
  echo "install-service: $etc/store.yaml (edit it: cameras, zones, broker)"
else
  echo "install-service: kept existing $etc/store.yaml"
fi
defaults="$root/etc/default/storesense"
if [ ! -e "$defaults" ]; then
  install -d -m 0755 "$root/etc/default"
  cat > "$defaults" <<'ENV'
# Environment of storesense-edge.service and storesense-display.service (EnvironmentFile=).
# Models are never downloaded: the folder with the .onnx files (see models/README.md).
STORESENSE_MODELS_DIR=/opt/storesense/models
# STORESENSE_CONFIG=/etc/storesense/store.yaml
# extra arguments of `storesense run` / `storesense display`
STORESENSE_RUN_ARGS=
STORESENSE_DISPLAY_ARGS=
ENV
  echo "install-service: $defaults"
fi
if [ ! -e "$etc/mqtt.pw" ]; then
  # a random broker password, root-only; the services receive it through LoadCredential
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$etc/mqtt.pw")
  echo "install-service: $etc/mqtt.pw (generated). Give the broker the same password:"
  echo "    mosquitto_passwd -b /etc/mosquitto/passwd edge \"\$(cat /etc/storesense/mqtt.pw)\""
fi

if command -v systemd-analyze >/dev/null; then
  # unknown keys are only warnings for systemd: treat any output as a failure
  out="$(systemd-analyze verify "$unit_dir/storesense-edge.service" "$unit_dir/storesense-display.service" 2>&1)" || true
  if [ -n "$out" ]; then
    echo "$out" >&2
    echo "install-service: systemd-analyze verify found problems" >&2
    exit 1
  fi
  echo "install-service: systemd-analyze verify OK"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable storesense-edge.service storesense-display.service
  if [ "$start" = 1 ]; then
    systemctl restart storesense-edge.service storesense-display.service
    systemctl --no-pager status storesense-edge.service | head -5 || true
  fi
elif [ -z "$root" ]; then
  echo "install-service: systemd is not running here (no /run/systemd/system): units installed, not started"
fi
