"""Shared fixtures: real files from ../shared and a real Mosquitto on an ephemeral port.

Nothing here skips: a missing model, video or broker is a failure, because CI installs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.resources import images_dir, models_dir, videos_dir
from mqtt_bridge.broker import MosquittoProcess, start_mosquitto


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"test resource missing: {path} (set STORESENSE_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _cwd_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A config built in memory has no file to resolve ``data_dir`` against, so its default
    ``storesense-data`` lands in the working directory: tests ran from the checkout wrote
    ``flow/`` and ``reference/`` files there, and parallel tests with the same camera id shared
    them. Each test session (each xdist worker) works in its own empty folder instead."""
    import os

    before = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="session")
def models_path() -> Path:
    return _need(models_dir())


@pytest.fixture(scope="session")
def videos_path() -> Path:
    return _need(videos_dir())


@pytest.fixture(scope="session")
def images_path() -> Path:
    return _need(images_dir())


@pytest.fixture(scope="session")
def table_video(videos_path: Path) -> Path:
    """Indoor room, single people walk to a standing table and stay 12-27 s (10 fps, 1394 frames)."""
    return _need(videos_path / "one-by-one-person-detection.mp4")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A private anonymous broker with TCP and WebSocket listeners on free loopback ports."""
    broker = start_mosquitto(websockets=True, workdir=tmp_path / "broker")
    try:
        yield broker
    finally:
        broker.stop()
