"""`storesense display` serves /setup only when an installer password is configured."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.config import load_config
from mqtt_bridge.broker import MosquittoProcess
from mqtt_bridge.display import DisplayServer, installer_routes

BASE = "version: 1\nstore: {id: s}\ncameras: [{id: c, source: a.mp4}]\n"


@pytest.mark.parametrize(
    ("display_yaml", "expected_status"),
    [
        ("", 404),  # no password configured: no setup page at all
        ("display: {setup_password_env: STORESENSE_TEST_SETUP_PW}\n", 401),  # configured: needs login
    ],
)
def test_setup_route_wiring(
    mosquitto: MosquittoProcess,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    display_yaml: str,
    expected_status: int,
) -> None:
    monkeypatch.setenv("STORESENSE_TEST_SETUP_PW", "s3cret")
    path = tmp_path / "store.yaml"
    path.write_text(BASE + display_yaml)
    cfg = load_config(path)
    server = DisplayServer(
        cfg, host="127.0.0.1", port=0, mqtt_host="127.0.0.1", mqtt_port=mosquitto.port,
        extra_routes=installer_routes(cfg),
    ).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "setup", timeout=5)
        assert info.value.code == expected_status
    finally:
        server.stop()
