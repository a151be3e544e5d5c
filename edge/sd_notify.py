"""systemd's notify protocol: READY/STATUS/STOPPING and the watchdog, in a few lines.

Why not the ``sdnotify`` package: it swallows every socket error by default, does not read
``WATCHDOG_USEC`` (so the caller would have to work out the ping interval) and has not been
released since 2018. The protocol itself is one datagram per message on the unix socket named
by ``NOTIFY_SOCKET`` (``@name`` is Linux's abstract namespace), see sd_notify(3).

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op, so the same code runs in a
terminal, in the tests and under the service manager. This module imports nothing of ours:
both the edge service and the display use it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("storesense.sd_notify")


class SystemdNotifier:
    """Talks to the service manager that started us, if any.

    ``watchdog()`` is meant to be called from the loop whose progress it vouches for (the
    analysis loop of the edge service): it sends ``WATCHDOG=1`` at most every half watchdog
    interval, so calling it every iteration is cheap, and a loop that hangs stops the pings
    and systemd restarts the service (``WatchdogSec=`` in the unit).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(env)
        self._sock: socket.socket | None = None
        self._last_ping_mono: float | None = None
        self.sent = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one state string such as ``READY=1``; False if not under systemd or it failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            # never fatal: a service must not die because its manager's socket hiccuped;
            # if pings keep failing the watchdog restarts us, which is the right outcome
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("systemd notify failed (%d so far): %s", self.errors, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the watchdog if it is enabled and half its interval has passed since the last ping."""
        if self.address is None or self.watchdog_interval_s is None:
            return False
        now = time.monotonic()
        if self._last_ping_mono is not None and now - self._last_ping_mono < self.watchdog_interval_s / 2:
            return False
        self._last_ping_mono = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: not a unix socket path", value)
    return None


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """``WATCHDOG_USEC`` in seconds, if the watchdog is meant for this process (``WATCHDOG_PID``)."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1e6 if value > 0 else None
