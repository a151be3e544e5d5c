"""Start a private Eclipse Mosquitto on loopback: for tests and for ``storesense demo``.

Ports are ephemeral (the kernel picks a free one), never fixed, so parallel test runs and a
broker already running on 1883 cannot collide.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import UserFacingError


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A loopback TCP port that is free now, chosen below the kernel's ephemeral range.

    Why not ``bind(0)``: that port lies in the ephemeral range, so between this check and the
    broker's own bind any outgoing connection on the box (every MQTT client) may take it as its
    local port, and Mosquitto stops with "Unable to create websockets listener" (seen once in CI
    with 8 brokers' ports and parallel tests). Outgoing connections never use ports below the
    range."""
    low = _ephemeral_low()
    start = max(10_000, low - 12_000)
    rng = random.SystemRandom()
    for _ in range(64 if start < low else 0):
        port = rng.randrange(start, low)
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise UserFacingError(
        "Eclipse Mosquitto is not installed: run `apt-get install -y mosquitto` (scripts/setup.sh does)"
    )


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


GUARD_SCRIPT = Path(__file__).resolve().parent / "broker_guard.py"
AUTOSAVE_INTERVAL_S = 5


@dataclass
class MosquittoProcess:
    """A running broker. ``port`` is the MQTT/TCP listener, ``ws_port`` the WebSocket one (if any)."""

    port: int
    ws_port: int | None
    workdir: Path
    extra_config: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # a complete config (e.g. rendered from mqtt_bridge/broker/ templates); replaces the generated one
    config_text: str | None = field(default=None, repr=False)
    own_process_group: bool = False
    # stop the broker when this process dies, even by SIGKILL (see mqtt_bridge/broker_guard.py)
    stop_with_owner: bool = False
    # a temporary workdir made for this broker is removed by stop(): a demo run leaves nothing
    remove_workdir_on_stop: bool = False

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_config(self) -> None:
        if self.config_text is not None:
            self.config_path.write_text(self.config_text)
            return
        lines = [
            f"listener {self.port} 127.0.0.1",
            "protocol mqtt",
        ]
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
        if "allow_anonymous" not in self.extra_config and "per_listener_settings" not in self.extra_config:
            lines.append("allow_anonymous true")
        lines += [
            # persistence on, always: without it a restart forgets the QoS 1 messages the broker
            # already acknowledged to the edge (the outbox deleted them) but not yet delivered to a
            # persistent subscriber. autosave bounds what a broker crash (SIGKILL) can lose.
            f"persistence_location {self.workdir}/",
            "persistence true",
            f"autosave_interval {AUTOSAVE_INTERVAL_S}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        # extra settings go after the listeners so listener-scoped options apply to them
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")

    def start(self, timeout_s: float = 10.0) -> MosquittoProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)  # again after a stop() that removed it
        self.write_config()
        _let_broker_user_write(self.workdir)
        # own_process_group: Ctrl-C in a terminal signals the whole foreground process group;
        # a broker owned by an interactive command (storesense demo) must outlive that command's
        # clean shutdown (drain the outbox, publish "stopped"), and the owner then stops it.
        cmd = [mosquitto_binary(), "-c", str(self.config_path)]
        if self.stop_with_owner:  # isolated mode (-I): the guard needs nothing but the stdlib
            cmd = [sys.executable, "-I", str(GUARD_SCRIPT), str(os.getpid()), "--", *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # (process_group=0 needs Python 3.11; setpgrp is async-signal-safe for preexec_fn)
            preexec_fn=os.setpgrp if self.own_process_group else None,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout_s)
            if self.ws_port is not None:  # libwebsockets opens its socket a few ms after the TCP one
                wait_for_port("127.0.0.1", self.ws_port, timeout_s)
        except TimeoutError:
            log = self.log_path.read_text() if self.log_path.exists() else ""  # before stop() removes it
            self.stop()
            err = self.proc.stderr.read().decode() if self.proc and self.proc.stderr else ""
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{err}\n{log}") from None
        return self

    def stop(self) -> None:
        self._stop_process()
        if self.remove_workdir_on_stop:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports, keeping the persistence file (outage drills)."""
        self._stop_process()
        self.start()

    def __enter__(self) -> MosquittoProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _let_broker_user_write(workdir: Path) -> None:
    """Started as root, Mosquitto drops to the ``mosquitto`` user before it opens its log and
    persistence file: the private dir must be that user's, or both fail silently (and with them
    every QoS 1 message the broker holds across a restart)."""
    if os.geteuid() != 0:
        return
    try:
        import pwd

        entry = pwd.getpwnam("mosquitto")
    except (ImportError, KeyError):
        return
    os.chown(workdir, entry.pw_uid, entry.pw_gid)


def start_mosquitto(
    *,
    websockets: bool = False,
    extra_config: str = "",
    workdir: Path | None = None,
    own_process_group: bool = False,
    stop_with_owner: bool = False,
) -> MosquittoProcess:
    """Start mosquitto with a TCP listener (and optionally WebSockets) on free loopback ports."""
    wd = workdir or Path(tempfile.mkdtemp(prefix="storesense-mosquitto-"))
    wd.mkdir(parents=True, exist_ok=True)
    ws = free_port() if websockets else None
    return MosquittoProcess(port=free_port(), ws_port=ws, workdir=wd, extra_config=extra_config,
                            own_process_group=own_process_group, stop_with_owner=stop_with_owner,
                            remove_workdir_on_stop=workdir is None).start()


# ---------------------------------------------------------------------------------------------
# production templates (mqtt_bridge/broker/): edge broker, ACL, bridge to a central broker

TEMPLATES_DIR = Path(__file__).resolve().parent / "broker"
TEMPLATE_NAMES = ("mosquitto-edge.conf", "acl", "bridge.conf", "mosquitto-central.conf", "acl-hq")


def template_variables(name: str) -> set[str]:
    """The ``${NAME}`` placeholders a template needs."""
    text = (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    return {m.group("braced") or m.group("named") for m in string.Template.pattern.finditer(text)
            if m.group("braced") or m.group("named")}


def render_template(name: str, **values: object) -> str:
    """Fill a broker template; every placeholder must be given (Mosquitto cannot expand them)."""
    if name not in TEMPLATE_NAMES:
        raise UserFacingError(f"unknown broker template {name!r}; expected one of {list(TEMPLATE_NAMES)}")
    text = (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    missing = sorted(template_variables(name) - set(values))
    if missing:
        raise UserFacingError(f"broker template {name}: missing value(s) for {', '.join(missing)}")
    for key, value in values.items():
        if "\n" in str(value):
            raise UserFacingError(f"broker template {name}: value of {key} must be one line")
    text = string.Template(text).substitute({k: str(v) for k, v in values.items()})
    if name == "mosquitto-edge.conf":
        text = _guard_websocket_bind(text, str(values["WS_PORT"]), str(values["BIND_ADDRESS"]))
    return text


WILDCARD_ADDRESSES = ("", "0.0.0.0", "::", "*")


def mosquitto_version() -> tuple[int, ...] | None:
    """The installed broker's version, e.g. (2, 0, 11); None if it cannot be told."""
    try:
        out = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError, UserFacingError):
        return None
    m = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(x) for x in m.groups()) if m else None


def websockets_honour_bind_address() -> bool:
    """Mosquitto < 2.0.12 (Debian bookworm ships 2.0.11) binds WebSocket listeners to every
    interface regardless of the listener's address (eclipse-mosquitto/mosquitto#3045)."""
    version = mosquitto_version()
    return version is not None and version >= (2, 0, 12)


def _guard_websocket_bind(text: str, ws_port: str, bind: str) -> str:
    """Disable the WebSocket listener when it would listen beyond ``BIND_ADDRESS``."""
    if bind.strip() in WILDCARD_ADDRESSES or websockets_honour_bind_address():
        return text
    listener = f"listener {ws_port} {bind}\nprotocol websockets\n"
    note = (f"# DISABLED by render_template: this Mosquitto would bind the WebSocket listener to every\n"
            f"# interface, not {bind} (fixed in 2.0.12). Upgrade, or set BIND_ADDRESS 0.0.0.0 on purpose.\n")
    return text.replace(listener, note + "".join("#" + line + "\n" for line in listener.splitlines()))


def mosquitto_passwd_binary() -> str:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and Path(candidate).exists():
            return candidate
    raise UserFacingError(
        "mosquitto_passwd is not installed: run `apt-get install -y mosquitto-clients` (or mosquitto)"
    )


def write_password_file(path: str | Path, users: Mapping[str, str]) -> Path:
    """Write a Mosquitto password file (mode 600) with hashed passwords.

    Passwords are written in plain text to the new file and hashed in place with
    ``mosquitto_passwd -U``, so they never appear on a command line (``ps``, shell history).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    for user, password in users.items():
        if not user or ":" in user or "\n" in user or "\n" in password:
            raise UserFacingError(f"password file: user name {user!r} must be one line without ':'")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(f"{user}:{password}\n" for user, password in users.items())
    os.chmod(out, 0o600)
    res = subprocess.run([mosquitto_passwd_binary(), "-U", str(out)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        out.unlink(missing_ok=True)
        raise UserFacingError(f"mosquitto_passwd -U failed for {out}: {res.stderr.strip() or res.stdout.strip()}")
    return out


def start_mosquitto_config(
    config_text: str, *, port: int, ws_port: int | None = None, workdir: Path | None = None
) -> MosquittoProcess:
    """Start mosquitto with a complete config (``port`` is the TCP listener it declares)."""
    wd = workdir or Path(tempfile.mkdtemp(prefix="storesense-mosquitto-"))
    wd.mkdir(parents=True, exist_ok=True)
    return MosquittoProcess(port=port, ws_port=ws_port, workdir=wd, config_text=config_text).start()
