"""The checkout display's optional capacity card (issue 13 item 10): a zone with a capacity (fitting
rooms) shown after the lanes with its free places, "Full" and the people waiting. The zone states
come from the real analytics on simulated tracks, go through a real Mosquitto, and the page is read
in real headless Chromium, in zh and en."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_display import Edge, FakeClock, poll

from edge.config import ConfigError, parse_config
from edge.contract import Tracks
from mqtt_bridge.broker import MosquittoProcess
from mqtt_bridge.display import DisplayServer, DisplayState, validate_zone_payload
from tests.browser import Browser

ARTIFACTS = Path(os.environ.get("STORESENSE_TEST_ARTIFACTS", "/tmp/storesense-test-artifacts"))

CONFIG = """
version: 1
store: {id: shop-1, name: Test Shop}
cameras:
  - id: cam-1
    source: clip.mp4
    zones:
      - {id: qa, kind: queue, lane: lane-a, label: "Lane A", polygon: [[0, 0], [0.3, 0], [0.3, 1], [0, 1]]}
      - {id: fitting, kind: dwell, label: "Fitting rooms 试衣间", capacity: 2, waiting_zone: fitting-queue,
         polygon: [[0.5, 0], [1.0, 0], [1.0, 0.5], [0.5, 0.5]]}
      - {id: fitting-queue, kind: dwell, polygon: [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]}
mqtt: {device_id: edge-1, state_expiry_s: 120}
display: {stale_after_s: 1.5, languages: [zh, en], capacity_zones: [fitting]}
"""


def zone_states(people_in: int, people_waiting: int) -> list[dict[str, Any]]:
    """``fitting``'s zone_state payloads from the real analytics: people walk in and stand."""
    from zones.analytics import StoreAnalytics

    cfg = parse_config(CONFIG)
    analytics: Any = StoreAnalytics(cfg)
    feet = [(0.6 + 0.1 * k, 0.3) for k in range(people_in)] + [(0.6 + 0.1 * k, 0.8) for k in range(people_waiting)]
    out: list[dict[str, Any]] = []
    for f in range(25):  # 5 s at 5 fps: past the zones' enter hysteresis
        boxes = np.array([[x * 640 - 20, y * 360 - 100, x * 640 + 20, y * 360] for x, y in feet], np.float32).reshape(-1, 4)
        tracks = Tracks("cam-1", f, 1_700_000_000.0 + f / 5, (640, 360), boxes, np.full(len(feet), 0.9, np.float32),
                        np.arange(1, len(feet) + 1))
        for m in analytics.update(tracks):
            if m.payload.get("zone_id") == "fitting" and m.payload.get("schema", "").startswith("storesense.zone_state"):
                out.append(m.payload)
    return out


def test_zone_payload_validation() -> None:
    ok = zone_states(1, 0)[-1]
    assert validate_zone_payload(ok) is None
    assert "capacity" in str(validate_zone_payload({**ok, "capacity": None}))
    assert "free_places" in str(validate_zone_payload({**ok, "free_places": -1}))
    assert "full" in str(validate_zone_payload({**ok, "full": "yes"}))
    assert validate_zone_payload([1]) == "payload is not a JSON object"


def test_capacity_card_state_rules() -> None:
    clock = FakeClock()
    st = DisplayState(parse_config(CONFIG), clock=clock)
    st.on_connected()
    st.on_availability("edge-1", "online")
    assert st.on_zone_state("fitting", zone_states(1, 0)[-1])
    assert not st.on_zone_state("qa", zone_states(1, 0)[-1])  # not a configured card
    assert not st.on_zone_state("fitting", {"capacity": "six"})  # malformed: ignored, last good kept
    (z,) = st.snapshot()["zones"]
    assert (z["status"], z["free_places"], z["occupancy"], z["capacity"], z["full"]) == ("ok", 1, 1, 2, False)
    assert z["label"] == "Fitting rooms 试衣间"
    clock.now_s += 2.0  # past stale_after_s: no numbers
    (z,) = st.snapshot()["zones"]
    assert z["status"] == "stale" and z["free_places"] is None


def test_capacity_zones_must_name_a_zone_with_a_capacity() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG.replace("capacity_zones: [fitting]", "capacity_zones: [fiting, qa]"), "store.yaml")
    text = "\n".join(err.value.problems)
    assert "store.yaml:13: display.capacity_zones[0]: 'fiting' is not a zone with a capacity (did you mean 'fitting'?)" in text
    assert "display.capacity_zones[1]: 'qa' is not a zone with a capacity" in text


READ_ZONES = """
Array.from(document.querySelectorAll('#lanes .zone')).map(function (c) {
  var f = c.querySelector('.free-value'), w = c.querySelector('.queue-value'), n = c.querySelector('.pill-count');
  return {zone: c.dataset.zone, status: c.dataset.status, free: f ? f.textContent : null,
          waiting: w ? w.textContent : null, count: n ? n.textContent : null, full: c.classList.contains('full'),
          text: c.innerText};
})
"""


@pytest.fixture
def edge(mosquitto: MosquittoProcess) -> Iterator[Edge]:
    e = Edge(mosquitto.port)
    yield e
    e.close()


def test_page_shows_the_capacity_card_in_chromium(mosquitto: MosquittoProcess, edge: Edge) -> None:
    cfg = parse_config(CONFIG)
    one_in = zone_states(1, 0)[-1]
    full = zone_states(2, 3)[-1]
    assert full["full"] and full["waiting"] == 3 and full["free_places"] == 0

    def publish(payload: dict[str, Any]) -> None:
        import json

        edge.availability("online")
        edge.lane("lane-a", queue_length=1, predicted_wait_s=40.0)
        edge.raw(edge.topics.zone_state("fitting"), json.dumps(payload))

    with DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_port=mosquitto.port, heartbeat_s=0.5) as d, \
            Browser(width_px=1920, height_px=1080) as b:
        page = b.new_page(d.url)
        try:
            cards = poll(lambda: (z := page.evaluate(READ_ZONES)) and z[0]["free"] == "1" and z, "one place free",
                         during=lambda: publish(one_in))
            (card,) = cards
            assert card["count"] == "1 / 2" and card["waiting"] == "0" and not card["full"]
            for label in ("Fitting rooms 试衣间", "个空位", "free", "人等候", "waiting"):
                assert label in card["text"], (label, card["text"])
            assert page.evaluate("document.querySelectorAll('#lanes .lane').length") == 2  # lane + card
            (card,) = poll(lambda: (z := page.evaluate(READ_ZONES)) and z[0]["full"] and z, "full",
                           during=lambda: publish(full))
            assert card["free"] is None and card["waiting"] == "3" and card["count"] == "2 / 2"
            assert "已满" in card["text"] and "Full" in card["text"]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(ARTIFACTS / "display_capacity_full.png")
            # the edge goes quiet: the card shows no number, like a lane
            (card,) = poll(lambda: (z := page.evaluate(READ_ZONES)) and z[0]["status"] == "stale" and z, "stale", 6)
            assert card["free"] is None and card["waiting"] is None and not any(ch.isdigit() for ch in card["text"])
            assert page.js_exceptions() == []
        finally:
            page.close()
