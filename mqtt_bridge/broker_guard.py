"""Run a command (a private broker) and stop it when the process that owns it dies.

Why: ``storesense demo`` starts its own Mosquitto in a separate process group, so that Ctrl-C
reaches the pipeline first and the broker is still there while the outbox drains. If the demo
is killed outright (SIGKILL, OOM killer, a closed terminal), nothing would ever stop that
broker. The kernel's parent-death signal cannot do it either: mosquitto drops root privileges
on start, and a privilege change clears PR_SET_PDEATHSIG. So this small guard sits between the
owner and the broker: it notices that it has been re-parented (the owner is gone) and stops
the broker; a SIGTERM/SIGINT to the guard (the owner's normal ``stop()``) is passed on.

    python -m mqtt_bridge.broker_guard OWNER_PID -- mosquitto -c CONF
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

POLL_S = 0.2  # how soon an orphaned broker is stopped
STOP_TIMEOUT_S = 5.0


def _stop(child: subprocess.Popen[bytes]) -> int:
    if child.poll() is None:
        child.terminate()
    try:
        return child.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m mqtt_bridge.broker_guard OWNER_PID -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    owner_pid, cmd = int(argv[0]), argv[2:]
    stop_requested = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    child = subprocess.Popen(cmd)
    # the owner is our parent; once it dies we are re-parented (to init or a subreaper)
    while child.poll() is None and not stop_requested and os.getppid() == owner_pid:
        time.sleep(POLL_S)
    if child.poll() is not None:
        return child.returncode
    return _stop(child)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
