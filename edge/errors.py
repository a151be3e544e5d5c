"""Errors phrased for the operator; the CLI prints them without a traceback."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import IO


class UserFacingError(Exception):
    """An error whose message is complete for the operator: what, where, what to do."""


_DISK_FULL = ("full", "disk i/o", "no space")


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's (or the OS's) way of saying the disk is full: the outbox and the history both
    keep running on a full disk, so both must recognise it the same way."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.Error | OSError) and any(s in text for s in _DISK_FULL)


def is_storage_error(exc: BaseException) -> bool:
    """A full disk, or a file system that refuses writes (read-only)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError | OSError) and any(
        s in text for s in (*_DISK_FULL, "read-only", "readonly")
    )


def open_output(path: Path, flag: str) -> IO[str]:
    """``path`` opened for writing (its folder made), or an error naming the option that gave it:
    a folder or an unwritable place given as ``--events``/``--mot`` was an OSError traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UserFacingError(f"{flag} {path}: cannot write: {exc.strerror}") from None


def tcp_port_arg(text: str, *, allow_zero: bool = True) -> int:
    """argparse ``type=`` for a TCP port: ``--port 99999`` reached the socket as an OverflowError
    traceback. argparse prints this message with the usage line and exits 2."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number {low}..65535, found {text!r}")
    return port


def broker_port_arg(text: str) -> int:
    """``tcp_port_arg`` without 0: 0 means "any free port" for a server, but a broker has a real one."""
    return tcp_port_arg(text, allow_zero=False)


def positive_int_arg(text: str) -> int:
    """argparse ``type=`` for counts that must be 1 or more (``--cameras 0`` gave a
    ZeroDivisionError in bench's table, ``--frames -1`` was taken as given)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more, found {text!r}")
    return value


def positive_float_arg(text: str) -> float:
    """argparse ``type=`` for rates and durations that must be above 0 (NaN and inf refused)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0.0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number above 0, found {text!r}")
    return value


MAX_FPS = 240.0


def fps_arg(text: str) -> float:
    """argparse ``type=`` for ``--fps``/``--analysis-fps``: 0 divided by zero in the frame gate,
    NaN analysed one frame, a negative rate every frame."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= MAX_FPS:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected frames per second in (0, {MAX_FPS:g}], found {text!r}")
    return value
