#!/usr/bin/env bash
# Checkout-screen kiosk: wait until the StoreSense display answers, show it full screen, and
# start the browser again whenever it exits.
#
# Why: once loaded, the page recovers from everything by itself (stale data, edge offline,
# display server restarts: its EventSource reconnects). But a browser started while the display
# server is still down shows its own error page and never retries. This wrapper only opens the
# page once it answers.
#
#   scripts/kiosk.sh http://edge-box.local:8080/
#
# Environment: STORESENSE_KIOSK_BROWSER (default: chromium), STORESENSE_KIOSK_RETRY_S (2),
# STORESENSE_KIOSK_MAX_LAUNCHES (0 = forever; the tests use 1).
set -u
URL=${1:-http://127.0.0.1:8080/}
BROWSER=${STORESENSE_KIOSK_BROWSER:-chromium}
RETRY_S=${STORESENSE_KIOSK_RETRY_S:-2}
MAX_LAUNCHES=${STORESENSE_KIOSK_MAX_LAUNCHES:-0}
PY=${PYTHON:-python3}

answers() {
  "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3).read(1)' "$URL" 2>/dev/null
}

launches=0
while :; do
  until answers; do
    echo "kiosk: $URL does not answer yet; retrying in ${RETRY_S} s" >&2
    sleep "$RETRY_S"
  done
  echo "kiosk: opening $URL" >&2
  # shellcheck disable=SC2086  # BROWSER may carry its own flags
  $BROWSER --kiosk --noerrdialogs --disable-infobars --disable-session-crashed-bubble --no-first-run "$URL"
  rc=$?
  launches=$((launches + 1))
  if [ "$MAX_LAUNCHES" -gt 0 ] && [ "$launches" -ge "$MAX_LAUNCHES" ]; then
    exit "$rc"
  fi
  echo "kiosk: browser exited ($rc); starting it again" >&2
  sleep "$RETRY_S"
done
