"""Polling helper shared by the tests that watch real processes (brokers, cameras, the demo)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(pred: Callable[[], Any], timeout_s: float = 5.0, interval_s: float = 0.05) -> bool:
    """True as soon as ``pred()`` is truthy; its last answer once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return bool(pred())
