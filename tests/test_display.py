"""Checkout display: state rules (unit, fake clock), the server on a real Mosquitto, and the page
in real headless Chromium (tests/browser.py), including staleness, edge offline, broker and
display-server outages with recovery on the same open page."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from browser import Browser, Page
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import StoreConfig, parse_config
from mqtt_bridge.broker import MosquittoProcess, free_port
from mqtt_bridge.display import (
    DisplayRequestHandler,
    DisplayServer,
    DisplayState,
    format_wait_minutes,
    lanes_from_config,
    validate_lane_payload,
)
from mqtt_bridge.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
STALE_AFTER_S = 1.5
EXPIRY_S = 120
HEARTBEAT_S = 0.5

CONFIG = f"""
version: 1
store: {{id: shop-1, name: Test Shop}}
cameras:
  - id: cam-1
    source: clip.mp4
    zones:
      - {{id: qa, kind: queue, lane: lane-a, label: "Lane A", polygon: [[0, 0], [0.3, 0], [0.3, 1]]}}
      - {{id: ta, kind: service, lane: lane-a, polygon: [[0.3, 0], [0.5, 0], [0.5, 1]]}}
      - {{id: qb, kind: queue, lane: lane-b, label: "Lane B", polygon: [[0.5, 0], [0.7, 0], [0.7, 1]]}}
  - id: cam-2
    source: clip2.mp4
    zones:
      - {{id: qc, kind: queue, lane: lane-c, label: "Lane C", polygon: [[0, 0], [1, 0], [1, 1]]}}
  - id: cam-off
    source: clip3.mp4
    enabled: false
    zones:
      - {{id: qx, kind: queue, lane: lane-x, polygon: [[0, 0], [1, 0], [1, 1]]}}
mqtt: {{device_id: edge-1, state_expiry_s: {EXPIRY_S}, reconnect_max_backoff_s: 2}}
display: {{stale_after_s: {STALE_AFTER_S}, languages: [zh, en]}}
"""


def make_cfg(**display: Any) -> StoreConfig:
    cfg = parse_config(CONFIG)
    for key, value in display.items():
        setattr(cfg.display, key, value)
    return cfg


def lane_payload(lane: str, **over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "schema": "storesense.lane_state/1",
        "store_id": "shop-1",
        "lane_id": lane,
        "label": {"lane-a": "Lane A", "lane-b": "Lane B", "lane-c": "Lane C"}.get(lane, lane),
        "camera_id": "cam-1",
        "timestamp_s": 1_700_000_000.0,
        "open": True,
        "open_source": "default",
        "queue_length": 2,
        "queue_length_smoothed": 2.0,
        "predicted_wait_s": 120.0,
        "predicted_wait_low_s": 90.0,
        "predicted_wait_high_s": 150.0,
        "service_rate_per_min": 1.0,
        "measured_wait_recent_s": None,
        "stale": False,
        "recommended": False,
    }
    p.update(over)
    return p


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


# ---------------------------------------------------------------------------------------------
# unit: rules of what a screen may show


@pytest.mark.parametrize(
    ("wait_s", "text"),
    [(None, None), (float("nan"), None), (0.0, "0"), (0.4, "0"), (1.0, "<1"), (59.9, "<1"), (60.0, "1"),
     (89.0, "1"), (90.0, "2"), (185.0, "3"), (600.0, "10"), (3599.0, "60")],
)
def test_wait_is_whole_minutes(wait_s: float | None, text: str | None) -> None:
    assert format_wait_minutes(wait_s) == text


# (queue_length, server_busy, predicted_wait_s) -> what every lane shows; one rule for all lanes
WORDING = [
    ((0, False, 0.0), "0"),  # nobody ahead
    ((0, True, 40.0), "<1"),  # nobody in line, till busy: some wait
    ((0, True, 0.0), "<1"),  # till busy, the model says 0: still never "0" (the reported "<1" vs "0")
    ((1, True, 45.0), "<1"),
    ((2, True, 89.0), "1"),  # nearest minute
    ((2, True, 90.0), "2"),
    ((3, True, 185.0), "3"),
    ((12, True, 1810.0), "30"),
    ((0, False, None), None),  # no estimate yet: "Estimating"
]


@pytest.mark.parametrize(("state", "text"), WORDING)
def test_wait_wording_rule(state: tuple[int, bool, float | None], text: str | None) -> None:
    assert format_wait_minutes(state[2], state[0], state[1]) == text


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ([1, 2], "not a JSON object"),
        (lane_payload("a", open="yes"), "'open'"),
        (lane_payload("a", queue_length=-1), "'queue_length'"),
        (lane_payload("a", queue_length=2.5), "'queue_length'"),
        (lane_payload("a", queue_length=None), "'queue_length'"),
        (lane_payload("a", queue_length=True), "'queue_length'"),
        (lane_payload("a", predicted_wait_s="3 min"), "'predicted_wait_s'"),
        (lane_payload("a", predicted_wait_s=-5), "'predicted_wait_s'"),
        (lane_payload("a", stale="no"), "'stale'"),
        (lane_payload("a", recommended=1), "'recommended'"),
        (lane_payload("a", label=7), "'label'"),
        (lane_payload("a"), None),
        (lane_payload("a", predicted_wait_s=None), None),
    ],
)
def test_lane_payload_validation(payload: Any, problem: str | None) -> None:
    got = validate_lane_payload(payload)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def test_lanes_come_from_queue_zones_of_enabled_cameras_in_order() -> None:
    assert lanes_from_config(make_cfg()) == [("lane-a", "Lane A"), ("lane-b", "Lane B"), ("lane-c", "Lane C")]


def _state(clock: FakeClock, **display: Any) -> DisplayState:
    st = DisplayState(make_cfg(**display), clock=clock)
    st.on_connected()
    st.on_availability("edge-1", "online")
    return st


def _lane(st: DisplayState, lane: str) -> dict[str, Any]:
    return next(v for v in st.snapshot()["lanes"] if v["lane_id"] == lane)


# (name, steps, expected status, expected reason); a step is (action, argument), see _apply
FRESH: tuple[str, Any] = ("lane", {})
CASES: list[tuple[str, list[tuple[str, Any]], str, str]] = [
    ("fresh", [FRESH], "ok", ""),
    ("edge says stale", [("lane", {"stale": True})], "stale", "edge_stale"),
    ("closed", [("lane", {"open": False})], "closed", ""),
    ("silent past stale_after_s", [FRESH, ("advance", STALE_AFTER_S + 0.1)], "stale", "no_update"),
    ("still fresh just before stale_after_s", [FRESH, ("advance", STALE_AFTER_S - 0.1)], "ok", ""),
    ("silent for long", [FRESH, ("advance", 6 * STALE_AFTER_S)], "unavailable", "no_update"),
    ("retained, old per expiry countdown", [("retained", EXPIRY_S - 5)], "stale", "no_update"),
    ("retained, young per expiry countdown", [("retained", EXPIRY_S - 1)], "ok", ""),
    ("retained without expiry (age unknown)", [("retained", None)], "stale", "no_update"),
    ("edge offline", [FRESH, ("availability", ("edge-1", "offline"))], "unavailable", "edge_offline"),
    ("edge stopped", [FRESH, ("availability", ("edge-1", "stopped"))], "unavailable", "edge_stopped"),
    ("edge back online", [("availability", ("edge-1", "offline")), FRESH, ("availability", ("edge-1", "online"))],
     "ok", ""),
    ("other device offline does not matter", [FRESH, ("availability", ("edge-9", "offline"))], "ok", ""),
    ("broker lost", [FRESH, ("disconnect", None)], "unavailable", "broker_disconnected"),
    ("malformed payload is ignored", [("lane", {"open": "yes"})], "stale", "no_data"),
    ("no data long after connecting", [("advance", STALE_AFTER_S + 1)], "unavailable", "no_data"),
]


def _apply(st: DisplayState, clock: FakeClock, steps: list[tuple[str, Any]]) -> None:
    for action, arg in steps:
        if action == "lane":
            st.on_lane_state("lane-a", lane_payload("lane-a", **arg))
        elif action == "retained":
            st.on_lane_state("lane-a", lane_payload("lane-a"), age_at_receipt_s=st.age_at_receipt_s(arg, True))
        elif action == "advance":
            clock.now_s += arg
        elif action == "availability":
            st.on_availability(*arg)
        elif action == "disconnect":
            st.on_disconnected()
        else:
            raise ValueError(action)


@pytest.mark.parametrize(("name", "steps", "status", "reason"), CASES, ids=[c[0] for c in CASES])
def test_lane_status_rules(name: str, steps: list[tuple[str, Any]], status: str, reason: str) -> None:
    clock = FakeClock()
    st = _state(clock)
    _apply(st, clock, steps)
    view = _lane(st, "lane-a")
    assert (view["status"], view["reason"]) == (status, reason)
    if status == "ok":
        assert view["wait_text"] == "2" and view["queue_length"] == 2
    else:  # the server never sends a number the screen must not show
        assert view["wait_text"] is None and view["queue_length"] is None and view["wait_min"] is None


def test_recommended_lane_follows_fresh_store_state_and_only_if_showable() -> None:
    clock = FakeClock()
    st = _state(clock)
    for lane in ("lane-a", "lane-b", "lane-c"):
        st.on_lane_state(lane, lane_payload(lane, recommended=lane == "lane-a"))
    assert st.snapshot()["recommended_lane"] == "lane-a"  # lane flags without a store state
    st.on_store_state({"recommended_lane": "lane-b", "lanes_open": 3})
    snap = st.snapshot()
    assert snap["recommended_lane"] == "lane-b"
    assert [v["recommended"] for v in snap["lanes"]] == [False, True, False]
    st.on_lane_state("lane-b", lane_payload("lane-b", stale=True))
    assert st.snapshot()["recommended_lane"] is None  # never point shoppers at a lane shown as updating
    st.on_store_state({"recommended_lane": None})
    assert st.snapshot()["recommended_lane"] is None
    assert st.on_store_state({"recommended_lane": 5}) is False


@pytest.mark.parametrize(
    ("devices", "edge"),
    [({}, "unknown"), ({"edge-1": "online"}, "online"), ({"edge-1": "offline", "edge-2": "online"}, "offline"),
     ({"box-7": "online"}, "online"), ({"box-7": "offline"}, "offline"), ({"box-7": "stopped"}, "stopped"),
     ({"box-7": "stopped", "box-8": "online"}, "online")],
)
def test_edge_status_of_own_or_other_devices(devices: dict[str, str], edge: str) -> None:
    st = DisplayState(make_cfg(), clock=FakeClock())
    for dev, status in devices.items():
        st.on_availability(dev, status)
    assert st.edge_status() == edge


@pytest.mark.parametrize(
    ("languages", "wait_text"), [(["zh", "en"], ["预计等候", "Wait"]), (["en"], ["Wait"]), (["zh"], ["预计等候"])]
)
def test_labels_follow_configured_languages(languages: list[str], wait_text: list[str]) -> None:
    snap = DisplayState(make_cfg(languages=languages), clock=FakeClock()).snapshot()
    assert snap["languages"] == languages
    assert snap["text"]["wait"] == wait_text
    assert all(len(v) == len(languages) for v in snap["text"].values())


# ---------------------------------------------------------------------------------------------
# helpers on a real broker


class Edge:
    """Publishes like the edge does: retained state with MQTT 5 expiry, availability strings."""

    def __init__(self, port: int) -> None:
        self.topics = Topics("shop-1")
        self.connect(port)

    def connect(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _publish(self, topic: str, payload: str | bytes, *, expiry_s: int | None = EXPIRY_S, retain: bool = True) -> None:
        props = None
        if expiry_s is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry_s
        self.client.publish(topic, payload, qos=1, retain=retain, properties=props).wait_for_publish(5)

    def lane(self, lane: str, **over: Any) -> None:
        self._publish(self.topics.lane_state(lane), json.dumps(lane_payload(lane, **over)))

    def raw(self, topic: str, payload: str | bytes) -> None:
        self._publish(topic, payload)

    def store(self, recommended: str | None) -> None:
        payload = {"schema": "storesense.store_state/1", "store_id": "shop-1", "timestamp_s": 1.0,
                   "recommended_lane": recommended, "lanes_open": 2, "lanes": ["lane-a", "lane-b", "lane-c"],
                   "active_alerts": []}
        self._publish(self.topics.store_state(), json.dumps(payload))

    def availability(self, status: str) -> None:
        self._publish(self.topics.availability("edge-1"), status, expiry_s=None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def poll(fn: Callable[[], Any], what: str, timeout_s: float = 8.0, interval_s: float = 0.1,
         during: Callable[[], None] | None = None) -> Any:
    """Wait until fn() is truthy. ``during`` runs every round: the real edge republishes its state
    every second, and a state that is not republished turns stale on the screen, as it must."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        if during is not None:
            during()
        last = fn()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode("utf-8", "replace")


def api_lanes(display: DisplayServer) -> dict[str, dict[str, Any]]:
    _, snap = get_json(display.url + "api/state")
    return {v["lane_id"]: v for v in snap["lanes"]}


@pytest.fixture
def edge(mosquitto: MosquittoProcess) -> Iterator[Edge]:
    e = Edge(mosquitto.port)
    yield e
    e.close()


@pytest.fixture
def display(mosquitto: MosquittoProcess) -> Iterator[DisplayServer]:
    d = DisplayServer(make_cfg(), host="127.0.0.1", port=0, mqtt_host="127.0.0.1", mqtt_port=mosquitto.port,
                      heartbeat_s=HEARTBEAT_S)
    d.start()
    yield d
    d.stop()


# ---------------------------------------------------------------------------------------------
# server on a real broker (no browser)


def test_api_state_reflects_retained_state_published_before_the_display(mosquitto: MosquittoProcess, edge: Edge) -> None:
    edge.availability("online")
    edge.lane("lane-a", queue_length=4, predicted_wait_s=250.0)
    edge.lane("lane-b", stale=True)
    edge.lane("lane-c", open=False)
    with DisplayServer(make_cfg(), host="127.0.0.1", port=0, mqtt_port=mosquitto.port) as d:
        lanes = poll(lambda: (ls := api_lanes(d))["lane-a"]["status"] == "ok" and ls, "lane-a ok")
        assert (lanes["lane-a"]["wait_text"], lanes["lane-a"]["queue_length"]) == ("4", 4)
        assert lanes["lane-b"]["status"] == "stale" and lanes["lane-b"]["wait_text"] is None
        assert lanes["lane-c"]["status"] == "closed"
        status, health = get_json(d.url + "healthz")
        assert status == 200 and health["broker_connected"] and health["edge_status"] == "online"


def test_retained_state_older_than_stale_after_is_not_shown(mosquitto: MosquittoProcess, edge: Edge) -> None:
    """The broker counts the MQTT 5 expiry down; a retained message 4 s old is stale on arrival."""
    edge.availability("online")
    edge._publish(edge.topics.lane_state("lane-a"), json.dumps(lane_payload("lane-a")), expiry_s=EXPIRY_S - 4)
    edge.lane("lane-b")
    with DisplayServer(make_cfg(), host="127.0.0.1", port=0, mqtt_port=mosquitto.port) as d:
        lanes = poll(lambda: (ls := api_lanes(d))["lane-b"]["status"] == "ok" and ls, "lane-b ok")
        assert lanes["lane-a"]["status"] == "stale" and lanes["lane-a"]["wait_text"] is None
        assert 4.0 <= lanes["lane-a"]["age_s"] < 6.0


def test_bad_messages_do_not_stop_the_subscriber(display: DisplayServer, edge: Edge) -> None:
    edge.availability("online")
    edge.raw(edge.topics.lane_state("lane-a"), "{not json")
    edge.raw(edge.topics.lane_state("lane-a"), json.dumps({"open": "maybe"}))
    edge.raw(edge.topics.store_state(), "[]")
    edge.raw(edge.topics.lane_state("lane-a"), b"\xff\xfe")
    edge.lane("lane-a", queue_length=6, predicted_wait_s=400.0)
    lanes = poll(lambda: (ls := api_lanes(display))["lane-a"]["status"] == "ok" and ls, "lane-a ok")
    assert lanes["lane-a"]["wait_text"] == "7"
    status, health = get_json(display.url + "healthz")
    assert status == 200 and health["mqtt_thread_alive"] and health["callback_errors"] == 0
    assert health["invalid_messages"] >= 4


def test_a_failing_callback_is_contained(display: DisplayServer, edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception escaping a paho callback would end its network thread: the screen would freeze."""
    real = display.state.on_lane_state
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(display.state, "on_lane_state", flaky)
    edge.availability("online")
    edge.lane("lane-a", queue_length=1, predicted_wait_s=30.0)
    poll(lambda: get_json(display.url + "healthz")[1]["callback_errors"] == 1, "callback error counted")
    edge.lane("lane-a", queue_length=2, predicted_wait_s=130.0)
    lanes = poll(lambda: (ls := api_lanes(display))["lane-a"]["status"] == "ok" and ls, "lane-a ok after the error")
    assert lanes["lane-a"]["wait_text"] == "2"
    assert get_json(display.url + "healthz")[1]["mqtt_thread_alive"]


def test_page_needs_nothing_from_the_internet() -> None:
    static = Path(__file__).resolve().parent.parent / "mqtt_bridge" / "static"
    names = sorted(p.name for p in static.iterdir())
    assert {"index.html", "display.js", "display.css"} <= set(names)
    for name in names:
        text = (static / name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert "@import" not in text and "fonts.googleapis" not in text, name


def test_events_stream_and_routes(display: DisplayServer, edge: Edge) -> None:
    edge.availability("online")
    edge.lane("lane-b", queue_length=3, predicted_wait_s=61.0)
    poll(lambda: api_lanes(display)["lane-b"]["status"] == "ok", "lane-b ok")
    host, port = display.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/events")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream")
    snaps: list[dict[str, Any]] = []
    t0 = time.monotonic()
    while len(snaps) < 3:
        line = resp.fp.readline().decode("utf-8")
        if line.startswith("data: "):
            snaps.append(json.loads(line[6:]))
    elapsed_s = time.monotonic() - t0
    conn.close()
    lane_b = next(v for v in snaps[0]["lanes"] if v["lane_id"] == "lane-b")
    assert (lane_b["wait_text"], lane_b["queue_length"]) == ("1", 3)
    assert elapsed_s < 3 * HEARTBEAT_S + 1.0  # heartbeats keep coming without new messages
    for path, code in [("/", 200), ("/static/display.js", 200), ("/static/display.css", 200),
                       ("/static/../display.py", 404), ("/static/%2e%2e/display.py", 404), ("/nope", 404)]:
        try:
            with urllib.request.urlopen(display.url.rstrip("/") + path, timeout=5) as r:
                got = r.status
        except urllib.error.HTTPError as exc:
            got = exc.code
        assert got == code, path


def test_event_streams_are_bounded(mosquitto: MosquittoProcess) -> None:
    with DisplayServer(make_cfg(), host="127.0.0.1", port=0, mqtt_port=mosquitto.port, max_streams=1,
                       heartbeat_s=0.2) as d:
        host, port = d.url.removeprefix("http://").rstrip("/").split(":")
        first = http.client.HTTPConnection(host, int(port), timeout=5)
        first.request("GET", "/events")
        first_resp = first.getresponse()  # keep it: the response owns the socket of an HTTP/1.0 stream
        assert first_resp.status == 200
        second = http.client.HTTPConnection(host, int(port), timeout=5)
        second.request("GET", "/events")
        assert second.getresponse().status == 503
        second.close()
        first_resp.close()
        first.close()

        def stream_status() -> int:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            try:
                conn.request("GET", "/events")
                return conn.getresponse().status
            finally:
                conn.close()

        # the slot is freed when the server's next write finds the first screen gone
        poll(lambda: stream_status() == 200, "a free stream slot after the first screen left", interval_s=0.3)


def test_extra_routes_get_every_method_below_their_path(mosquitto: MosquittoProcess) -> None:
    seen: list[tuple[str, str, bytes]] = []

    def setup(h: DisplayRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        seen.append((h.command, h.path, body))
        h.send_json(200, {"store": h.display.cfg.store.id})

    with DisplayServer(make_cfg(), host="127.0.0.1", port=0, mqtt_port=mosquitto.port,
                       extra_routes={"/setup": setup}) as d:
        assert get_json(d.url + "setup")[1] == {"store": "shop-1"}
        req = urllib.request.Request(d.url + "setup/lanes", data=b"x=1", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        assert get_json(d.url + "setupx")[0] == 404
    assert seen == [("GET", "/setup", b""), ("POST", "/setup/lanes", b"x=1")]


def test_display_started_before_the_broker_recovers(tmp_path: Path) -> None:
    broker = MosquittoProcess(port=free_port(), ws_port=None, workdir=tmp_path / "late-broker")
    broker.workdir.mkdir(parents=True)
    with DisplayServer(make_cfg(), host="127.0.0.1", port=0, mqtt_port=broker.port) as d:
        time.sleep(0.5)
        lanes = api_lanes(d)
        assert all(v["status"] == "unavailable" and v["reason"] == "broker_disconnected" for v in lanes.values())
        assert get_json(d.url + "healthz")[1]["mqtt_thread_alive"]
        with broker.start():
            e = Edge(broker.port)
            try:
                e.availability("online")
                lanes = poll(lambda: (ls := api_lanes(d))["lane-c"]["status"] == "ok" and ls, "lane-c ok", 10,
                             during=lambda: e.lane("lane-c", queue_length=9, predicted_wait_s=720.0))
                assert (lanes["lane-c"]["wait_text"], lanes["lane-c"]["queue_length"]) == ("12", 9)
            finally:
                e.close()


def test_cli_serves_and_stops_on_sigterm(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    cfg_path = tmp_path / "store.yaml"
    cfg_path.write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "display", "--config", str(cfg_path), "--port", "0",
         "--mqtt-port", str(mosquitto.port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"open (http://\S+)", line)
        assert m, line
        status, health = poll(lambda: get_json(m.group(1) + "healthz"), "healthz")
        assert status == 200
        poll(lambda: get_json(m.group(1) + "healthz")[1]["broker_connected"], "broker connected")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    cfg_path = tmp_path / "store.yaml"
    cfg_path.write_text(CONFIG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "edge.cli", "display", "--config", str(cfg_path), "--port", str(port)],
            capture_output=True, text=True, timeout=20, cwd=Path(__file__).resolve().parent.parent,
        )
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# the page in real headless Chromium

READ_LANES = """
Array.from(document.querySelectorAll('#lanes .lane')).map(function (c) {
  var w = c.querySelector('.wait-value'), q = c.querySelector('.queue-value');
  return {lane: c.dataset.lane, status: c.dataset.status, reason: c.dataset.reason,
          rec: c.dataset.recommended === 'true', wait: w ? w.textContent : null,
          queue: q ? q.textContent : null, text: c.innerText};
})
"""


def page_lanes(page: Page) -> dict[str, dict[str, Any]]:
    return {c["lane"]: c for c in page.evaluate(READ_LANES)}


def wait_lanes(page: Page, cond: Callable[[dict[str, dict[str, Any]]], bool], what: str,
               timeout_s: float = 8.0, during: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
    return poll(lambda: (ls := page_lanes(page)) and cond(ls) and ls, what, timeout_s, 0.2, during)


def assert_no_numbers(card: dict[str, Any]) -> None:
    """A card that is not live shows no digit at all (labels are letters on purpose)."""
    assert card["wait"] is None and card["queue"] is None
    assert not re.search(r"\d", card["text"]), card["text"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(width_px=1920, height_px=1080) as b:
        yield b


def publish_all(edge: Edge) -> None:
    edge.lane("lane-a", queue_length=3, predicted_wait_s=185.0)
    edge.lane("lane-b", queue_length=1, predicted_wait_s=40.0, recommended=True)
    edge.lane("lane-c", open=False, queue_length=0, predicted_wait_s=0.0)
    edge.store("lane-b")


def live_numbers(ls: dict[str, dict[str, Any]]) -> bool:
    return (ls["lane-a"]["wait"], ls["lane-a"]["queue"], ls["lane-b"]["wait"], ls["lane-b"]["queue"]) == ("3", "3", "<1", "1")


def test_page_shows_lanes_goes_stale_offline_and_recovers_without_reload(
    browser: Browser, mosquitto: MosquittoProcess, display: DisplayServer, edge: Edge, tmp_path: Path
) -> None:
    edge.availability("online")
    publish_all(edge)
    page = browser.new_page(display.url)
    try:
        page.evaluate("window.__noReload = 42")
        ls = wait_lanes(page, live_numbers, "published numbers on the page", during=lambda: publish_all(edge))
        assert [ls[k]["rec"] for k in ("lane-a", "lane-b", "lane-c")] == [False, True, False]
        assert ls["lane-c"]["status"] == "closed" and ls["lane-c"]["wait"] is None
        text = page.text()
        for label in ("预计等候", "Wait", "分钟", "min", "人排队", "in line", "推荐", "Recommended", "已关闭", "Closed",
                      "收银台", "Checkout"):
            assert label in text, label

        png = page.screenshot(tmp_path / "display.png")
        if os.environ.get("STORESENSE_SCREENSHOT_DIR"):
            Path(os.environ["STORESENSE_SCREENSHOT_DIR"], "display-live.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (1080, 1920, 3) and float(img.std()) > 20.0
        # the recommended card's green frame/badge (#22c55e) is really drawn, in the middle third
        green = (np.abs(img.astype(int) - np.array([0x5E, 0xC5, 0x22])).sum(axis=2) < 40)
        assert green.sum() > 20_000
        xs = np.nonzero(green)[1]
        assert 640 < float(np.median(xs)) < 1280

        # the edge marks a lane stale → "updating", no number
        def a_stale_others_fresh() -> None:
            publish_all(edge)
            edge.lane("lane-a", stale=True, queue_length=3, predicted_wait_s=185.0)

        ls = wait_lanes(page, lambda ls: ls["lane-a"]["status"] == "stale" and ls["lane-b"]["wait"] == "<1",
                        "lane-a updating, lane-b live", during=a_stale_others_fresh)
        assert "更新中…" in ls["lane-a"]["text"] and "Updating…" in ls["lane-a"]["text"]
        assert_no_numbers(ls["lane-a"])

        # the edge goes quiet: past stale_after_s every lane is "updating", no numbers
        ls = wait_lanes(page, lambda ls: all(c["reason"] == "no_update" for c in ls.values()), "all updating",
                        STALE_AFTER_S + 3)
        for card in ls.values():
            assert_no_numbers(card)
            assert card["status"] == "stale" and "Updating…" in card["text"]

        # fresh data: numbers come back by themselves
        publish_all(edge)
        wait_lanes(page, live_numbers, "numbers back after fresh data", during=lambda: publish_all(edge))

        # edge offline (its Last Will) → unavailable, banner; back online → numbers
        edge.availability("offline")
        ls = wait_lanes(page, lambda ls: all(c["status"] == "unavailable" for c in ls.values()), "edge offline")
        for card in ls.values():
            assert_no_numbers(card)
            assert "暂不可用" in card["text"] and "Unavailable" in card["text"]
        assert page.evaluate("!document.getElementById('banner').hidden")
        edge.availability("online")
        ls = wait_lanes(page, live_numbers, "numbers back after edge online", during=lambda: publish_all(edge))
        assert ls["lane-b"]["rec"]
        assert page.evaluate("document.getElementById('banner').hidden")

        # broker outage: the display loses the broker → unavailable; broker back → recovery
        edge.close()
        mosquitto.stop()
        ls = wait_lanes(page, lambda ls: all(c["reason"] == "broker_disconnected" for c in ls.values()), "broker lost")
        for card in ls.values():
            assert_no_numbers(card)
        mosquitto.start()
        edge.connect(mosquitto.port)
        edge.availability("online")
        wait_lanes(page, live_numbers, "numbers back after broker restart", 12, during=lambda: publish_all(edge))

        assert page.evaluate("window.__noReload") == 42
        assert page.js_exceptions() == []
    finally:
        page.close()


def test_page_guards_against_a_silent_or_dead_display_server_and_reconnects(
    browser: Browser, mosquitto: MosquittoProcess, edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_cfg()
    d1 = DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_port=mosquitto.port, heartbeat_s=HEARTBEAT_S).start()
    port = int(d1.url.rstrip("/").rsplit(":", 1)[1])
    edge.availability("online")
    publish_all(edge)
    page = browser.new_page(d1.url)
    d2 = None
    try:
        page.evaluate("window.__noReload = 7")
        wait_lanes(page, live_numbers, "numbers", during=lambda: publish_all(edge))

        # half-open link: the connection stays up but nothing arrives → the page's own watchdog
        gate = threading.Event()
        real_wait = d1.state.wait_for_change

        def frozen(version: int, timeout_s: float) -> int:
            gate.wait(20)
            return real_wait(version, timeout_s)

        monkeypatch.setattr(d1.state, "wait_for_change", frozen)
        ls = wait_lanes(page, lambda ls: all(c["reason"] == "display_link" for c in ls.values()), "watchdog", 8)
        for card in ls.values():
            assert_no_numbers(card)
        monkeypatch.setattr(d1.state, "wait_for_change", real_wait)
        gate.set()
        wait_lanes(page, live_numbers, "numbers after the link came back", 15, during=lambda: publish_all(edge))

        d1.stop()  # the server is gone: the page must not keep its last numbers
        ls = wait_lanes(page, lambda ls: all(c["status"] == "unavailable" for c in ls.values()), "page guard", 8)
        for card in ls.values():
            assert_no_numbers(card)
        assert page.evaluate("document.body.dataset.link") == "connecting"
        d2 = DisplayServer(cfg, host="127.0.0.1", port=port, mqtt_port=mosquitto.port, heartbeat_s=HEARTBEAT_S).start()
        wait_lanes(page, live_numbers, "numbers after the server came back", 15, during=lambda: publish_all(edge))
        assert page.evaluate("window.__noReload") == 7
        assert page.evaluate("document.body.dataset.link") == "live"
    finally:
        page.close()
        if d2 is not None:
            d2.stop()
        d1.stop()


@pytest.mark.parametrize(("languages", "present", "absent"), [
    (["en"], ["Wait", "min", "in line", "Checkout"], ["预计等候", "分钟", "收银台"]),
    (["zh"], ["预计等候", "分钟", "人排队", "收银台"], ["Wait", "in line", "Checkout"]),
])
def test_page_languages_follow_config(
    browser: Browser, mosquitto: MosquittoProcess, edge: Edge, languages: list[str], present: list[str],
    absent: list[str],
) -> None:
    edge.availability("online")
    publish_all(edge)
    with DisplayServer(make_cfg(languages=languages), host="127.0.0.1", port=0, mqtt_port=mosquitto.port) as d:
        page = browser.new_page(d.url)
        try:
            wait_lanes(page, live_numbers, "numbers", during=lambda: publish_all(edge))
            text = page.text()
            assert all(p in text for p in present), text
            assert not any(a in text for a in absent), text
        finally:
            page.close()


def test_kiosk_waits_for_the_display_then_opens_it(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    """scripts/kiosk.sh started before the display server: it waits instead of showing the
    browser's own error page, then opens the page in real headless Chromium once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    seen = tmp_path / "seen.json"
    browser = tmp_path / "browser.py"
    # Real headless Chromium stands in for the kiosk screen. It opens the URL the kiosk passes,
    # waits until the page's script has rendered the lanes (a plain --dump-dom can capture the
    # page before that), records what it saw and exits.
    browser.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from browser import Browser\n"
        "with Browser() as b:\n"
        "    page = b.new_page(sys.argv[-1])\n"
        "    page.wait_for(\"document.body.innerText.includes('Lane C')\", timeout_s=20)\n"
        f"    json.dump({{'argv': sys.argv[1:], 'text': page.text()}}, open({str(seen)!r}, 'w'))\n"
    )
    browser.chmod(0o755)
    env = {**os.environ, "STORESENSE_KIOSK_BROWSER": str(browser), "STORESENSE_KIOSK_RETRY_S": "0.3",
           "STORESENSE_KIOSK_MAX_LAUNCHES": "1", "PYTHON": sys.executable}
    kiosk = subprocess.Popen([str(ROOT / "scripts" / "kiosk.sh"), url], env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert kiosk.poll() is None and not seen.exists()  # still waiting: no browser on a dead URL
        with DisplayServer(make_cfg(), host="127.0.0.1", port=port, mqtt_port=mosquitto.port):
            rc = kiosk.wait(timeout=60)
        err = kiosk.stderr.read() if kiosk.stderr else ""
        assert rc == 0, err
        assert "does not answer yet" in err and f"opening {url}" in err
        got = json.loads(seen.read_text())
        assert got["argv"][0] == "--kiosk" and got["argv"][-1] == url
        assert "Lane A" in got["text"] and "Lane C" in got["text"], got["text"][:800]  # rendered lanes
    finally:
        if kiosk.poll() is None:
            kiosk.kill()


WORDING_LANES = [f"w{i}" for i in range(len(WORDING))]
WORDING_CONFIG = "version: 1\nstore: {id: shop-1}\ncameras:\n  - id: cam-1\n    source: clip.mp4\n    zones:\n" + "".join(
    f"      - {{id: q{i}, kind: queue, lane: {lane}, label: L{i}, polygon: [[0, 0], [1, 0], [1, 1]]}}\n"
    for i, lane in enumerate(WORDING_LANES)
) + "mqtt: {device_id: edge-1}\ndisplay: {stale_after_s: 30}\n"

READ_WAITS = """
Array.from(document.querySelectorAll('#lanes .lane')).map(function (c) {
  var w = c.querySelector('.wait-value'), u = c.querySelector('.wait-unit');
  return [c.dataset.lane, w ? w.textContent : null, u ? u.innerText.trim() : null];
})
"""


@pytest.mark.parametrize(("language", "unit", "estimating"), [("en", "min", "Estimating"), ("zh", "分钟", "估算中")])
def test_page_wording_table_in_chromium(
    browser: Browser, mosquitto: MosquittoProcess, edge: Edge, language: str, unit: str, estimating: str
) -> None:
    """Each row of WORDING published as a lane; the page shows the rule's text, in zh and en."""
    cfg = parse_config(WORDING_CONFIG)
    cfg.display.languages = [language]  # type: ignore[list-item]
    expected = {lane: ("–", estimating) if text is None else (text, unit)
                for lane, (_, text) in zip(WORDING_LANES, WORDING, strict=True)}

    def publish() -> None:
        edge.availability("online")
        for lane, ((queue, busy, wait), _) in zip(WORDING_LANES, WORDING, strict=True):
            edge.lane(lane, queue_length=queue, server_busy=busy, predicted_wait_s=wait)

    with DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_port=mosquitto.port) as d:
        page = browser.new_page(d.url)
        try:
            shown = poll(lambda: (rows := {r[0]: (r[1], r[2]) for r in page.evaluate(READ_WAITS)}) == expected
                         and rows, f"wording table in {language}", during=publish)
            assert shown == expected
        finally:
            page.close()
