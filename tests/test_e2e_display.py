"""End to end: real clip → `storesense run` (ONNX detector, tracker, analytics) → real Mosquitto →
display server → the page in headless Chromium shows the lane numbers that were published.
Then the edge is killed with SIGKILL: the Last Will makes every lane unavailable on the page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from edge.commands import DEMO_CONFIG
from edge.config import load_config
from mqtt_bridge.broker import MosquittoProcess
from mqtt_bridge.display import DisplayServer, format_wait_minutes
from mqtt_bridge.topics import Topics
from tests.browser import Browser
from tests.test_display import page_lanes

KEEPALIVE_S = 2


@pytest.fixture
def store_file(tmp_path: Path, mosquitto: MosquittoProcess) -> Path:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["mqtt"].update({"port": mosquitto.port, "keepalive_s": KEEPALIVE_S})
    data["history"] = {"enabled": False}
    data["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


class LaneWatcher:
    """A plain MQTT subscriber: the latest lane states as published by the edge."""

    def __init__(self, port: int, topics: Topics) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topics.all_lane_states(), qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        with self.lock:
            self.latest[payload["lane_id"]] = payload

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.latest)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def edge_process(store_file: Path) -> Iterator[subprocess.Popen[str]]:
    from edge.resources import videos_dir

    env = {**os.environ, "STORESENSE_VIDEOS_DIR": str(videos_dir())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(store_file), "--realtime", "--loop"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _page_matches_published(page_cards: dict[str, dict[str, Any]], published: dict[str, dict[str, Any]]) -> bool:
    if set(published) != {"lane-1", "lane-2"} or set(page_cards) != {"lane-1", "lane-2"}:
        return False
    for lane, payload in published.items():
        card = page_cards[lane]
        if card["status"] != "ok":
            return False
        if card["wait"] != format_wait_minutes(payload["predicted_wait_s"], payload["queue_length"],
                                               payload["server_busy"]):
            return False
        if card["queue"] != str(payload["queue_length"]):
            return False
        if card["rec"] != bool(payload["recommended"]):
            return False
    return True


def test_clip_to_page_and_last_will(
    mosquitto: MosquittoProcess, store_file: Path, edge_process: subprocess.Popen[str]
) -> None:
    cfg = load_config(store_file)
    topics = Topics(cfg.store.id, cfg.mqtt.prefix)
    watcher = LaneWatcher(mosquitto.port, topics)
    display = DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_host="127.0.0.1", mqtt_port=mosquitto.port).start()
    try:
        with Browser(width_px=1920, height_px=1080) as browser:
            page = browser.new_page(display.url)
            # the page must show exactly what the edge last published, lane by lane
            deadline = time.monotonic() + 90
            matched = 0
            while time.monotonic() < deadline and matched < 3:
                published = watcher.snapshot()
                cards = page_lanes(page)
                if _page_matches_published(cards, published) and watcher.snapshot() == published:
                    matched += 1  # three separate agreements, not one lucky frame
                    time.sleep(0.7)
                else:
                    time.sleep(0.1)
            assert matched == 3, f"page {page_lanes(page)} vs published {watcher.snapshot()}"
            assert edge_process.poll() is None, edge_process.stderr.read() if edge_process.stderr else ""
            assert page.js_exceptions() == []
            assert sum(c["rec"] for c in page_lanes(page).values()) <= 1

            # SIGKILL: no clean shutdown, only the broker's Last Will says the edge is gone
            edge_process.send_signal(signal.SIGKILL)
            t_kill = time.monotonic()
            unavailable_after_s = None
            while time.monotonic() - t_kill < KEEPALIVE_S * 1.5 + 5:
                cards = page_lanes(page)
                if cards and all(c["status"] != "ok" and c["wait"] is None and c["queue"] is None for c in cards.values()):
                    unavailable_after_s = time.monotonic() - t_kill
                    break
                time.sleep(0.1)
            assert unavailable_after_s is not None, f"page still shows numbers: {page_lanes(page)}"
            print(f"lanes unavailable on the page {unavailable_after_s:.2f} s after SIGKILL")
            assert display.health()["edge_status"] == "offline"
    finally:
        display.stop()
        watcher.close()
