"""MqttPublisher against a real Mosquitto, observed by real paho subscribers."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.contract import Message
from edge.errors import UserFacingError
from mqtt_bridge.broker import (
    MosquittoProcess,
    free_port,
    start_mosquitto,
    start_mosquitto_config,
    write_password_file,
)
from mqtt_bridge.commands import CommandError, parse_lane_command
from mqtt_bridge.config import MqttConfig, TlsConfig
from mqtt_bridge.publisher import MqttPublisher, find_image_data, resolve_password
from mqtt_bridge.topics import Topics
from tests.certs import make_certs
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "mqtt_bridge" / "schemas"
T = Topics("store-1")
LANES = ["l1", "l2", "l3"]


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def load_outage_script() -> Any:
    spec = importlib.util.spec_from_file_location("outage_test", ROOT / "scripts" / "outage_test.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["outage_test"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


class Sub:
    """A real paho MQTT 5 subscriber that records (topic, payload, retain, properties)."""

    def __init__(self, port: int, topic: str, *, user: tuple[str, str] | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool, Any]] = []
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(*user)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self._subscribed.wait(5), "subscriber got no SUBACK"

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain), m.properties))

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _, _ in self.messages if t == topic]

    def json_on(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _, _ in self.messages if t.startswith(prefix)]

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def lane_state(lane: str, queue_length: int) -> Message:
    return Message("lane_state", lane, {
        "schema": "storesense.lane_state/1", "store_id": "store-1", "lane_id": lane, "label": lane.upper(),
        "camera_id": "cam-1", "timestamp_s": 1_700_000_000.0 + queue_length, "open": True,
        "open_source": "default", "queue_length": queue_length,
    }, "state")


def event(seq: int, kind: str = "queue_wait") -> Message:
    return Message("event", kind, {
        "schema": f"storesense.event.{kind}/1", "store_id": "store-1", "timestamp_s": 1_700_000_000.0 + seq,
        "event_id": f"cam-1:{seq}", "seq": seq,
    }, "event")


@pytest.fixture
def make_pub(tmp_path: Path) -> Iterator[Callable[..., MqttPublisher]]:
    made: list[MqttPublisher] = []

    def factory(port: int, *, data_dir: Path | None = None, start: bool = True, **kwargs: Any) -> MqttPublisher:
        cfg_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in MqttConfig.model_fields}
        cfg = MqttConfig(port=port, keepalive_s=cfg_kwargs.pop("keepalive_s", 5),
                         reconnect_max_backoff_s=cfg_kwargs.pop("reconnect_max_backoff_s", 2.0), **cfg_kwargs)
        pub = MqttPublisher(cfg, T, data_dir=data_dir or tmp_path / "data", **kwargs)
        made.append(pub)
        if start:
            pub.start()
            assert wait_until(lambda: pub.ready), "publisher did not connect and subscribe"
        return pub

    yield factory
    for p in made:
        p.close(timeout_s=1.0)


# ---------------------------------------------------------------------------------------------
# live state, availability, schemas


def test_retained_state_late_subscriber_and_availability(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher]
) -> None:
    pub = make_pub(mosquitto.port, state_expiry_s=90)
    for q in range(3):
        pub.emit([lane_state(lane, q * 10 + i) for i, lane in enumerate(LANES)])
    status = Message("camera_status", "cam-1", {
        "schema": "storesense.camera_status/1", "store_id": "store-1", "camera_id": "cam-1",
        "timestamp_s": 1_700_000_000.0, "state": "running", "fps_measured": 4.9, "analysis_fps": 5.0,
        "frames_total": 120, "frames_dropped": 0, "frames_corrupt": 0, "reconnects": 0, "errors": 0,
        "reason": "",
    }, "state")
    pub.emit([status])
    # updates of one topic coalesce: at least availability + 3 lanes + status went out
    assert wait_until(lambda: pub.stats.published >= 1 + 3 + 1)

    late = Sub(mosquitto.port, T.everything())
    try:
        assert wait_until(lambda: all(late.payloads(T.lane_state(x)) for x in LANES) and late.payloads(T.of(status)))
        for i, lane in enumerate(LANES):
            (payload,) = late.payloads(T.lane_state(lane))
            assert json.loads(payload)["queue_length"] == 20 + i  # the latest value only
        with late.lock:
            retained = {t: (r, p) for t, _, r, p in late.messages}
        for lane in LANES:
            is_retained, props = retained[T.lane_state(lane)]
            assert is_retained
            assert 0 < props.MessageExpiryInterval <= 90  # MQTT 5 expiry on live state
        assert retained[T.availability("edge-1")][0] is True
        avail = late.payloads(T.availability("edge-1"))
        assert avail == [b"online"]
        jsonschema.validate(avail[0].decode(), schema("availability"))
        jsonschema.validate(json.loads(late.payloads(T.of(status))[0]), schema("camera_status"))
    finally:
        late.close()

    pub.close(timeout_s=2.0)
    after = Sub(mosquitto.port, T.availability("edge-1"))
    try:
        assert wait_until(lambda: after.payloads(T.availability("edge-1")) == [b"stopped"])
        jsonschema.validate("stopped", schema("availability"))
    finally:
        after.close()


def test_mqtt_311_mode_state_events_and_commands(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher]
) -> None:
    """``mqtt.protocol: "3.1.1"`` for brokers without MQTT 5: everything works except expiry."""
    received: list[tuple[str, str]] = []
    events_sub = Sub(mosquitto.port, T.all_events())
    pub = make_pub(mosquitto.port, protocol="3.1.1", state_expiry_s=90,
                   on_lane_command=lambda lane, state: received.append((lane, state)), known_lanes=LANES)
    try:
        pub.emit([lane_state(lane, 4) for lane in LANES])
        pub.emit([event(j) for j in range(20)])
        assert wait_until(lambda: [e["seq"] for e in events_sub.json_on(T.base)] == list(range(20)))
        assert wait_until(lambda: pub.stats.acked == 20 and len(pub.outbox) == 0)
        late = Sub(mosquitto.port, T.everything())
        try:
            assert wait_until(lambda: all(late.payloads(T.lane_state(x)) for x in LANES))
            with late.lock:
                props = {t: (r, p) for t, _, r, p in late.messages}
            retained, p = props[T.lane_state(LANES[0])]
            assert retained and not hasattr(p, "MessageExpiryInterval")  # no expiry in 3.1.1
            late.publish(T.lane_set(LANES[0]), b'{"state": "closed"}')
            assert wait_until(lambda: received == [(LANES[0], "closed")])
        finally:
            late.close()
        assert pub.connected and pub.stats.callback_errors == 0
    finally:
        events_sub.close()


def test_broker_without_mqtt5_gets_a_clear_hint(
    tmp_path: Path, make_pub: Callable[..., MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that answers CONNECT with 'Unsupported protocol version' (what an MQTT 3.1.1-only
    broker means): the log says which setting fixes it. One fake socket peer, one class."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(bytes([0x20, 0x03, 0x00, 0x84, 0x00]))  # v5 CONNACK, reason 0x84
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    caplog.set_level(logging.WARNING, logger="storesense")
    try:
        pub = make_pub(port, start=False)
        pub.start()
        assert wait_until(lambda: any('mqtt.protocol: "3.1.1"' in r.getMessage() for r in caplog.records), 10)
        assert not pub.ready
    finally:
        stop.set()
        thread.join(2)
        server.close()


def test_events_in_order_deleted_on_puback(mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher]) -> None:
    sub = Sub(mosquitto.port, T.all_events())
    pub = make_pub(mosquitto.port)
    try:
        for i in range(0, 200, 10):
            pub.emit([event(j) for j in range(i, i + 10)])
        assert wait_until(lambda: len(sub.json_on(T.base)) >= 200)
        assert [e["seq"] for e in sub.json_on(T.base)] == list(range(200))
        assert wait_until(lambda: pub.stats.acked == 200 and pub.stats.queued == 0)
        assert len(pub.outbox) == 0
    finally:
        sub.close()


def test_outbox_bounded_and_persists_across_publisher_restart(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "restart"
    dead_port = free_port()  # nothing listens: the broker is "down" for the first process
    first = MqttPublisher(MqttConfig(port=dead_port, outbox_max_messages=10, reconnect_max_backoff_s=1.0), T,
                          data_dir=data)
    first.start()
    caplog.set_level(logging.WARNING)
    for seq in range(25):
        first.emit([event(seq)])
    assert first.stats.dropped == 15 and first.stats.queued == 10 and not first.connected
    assert any("dropped the 1 oldest" in r.getMessage() for r in caplog.records)
    first.close(timeout_s=0.5)

    sub = Sub(mosquitto.port, T.all_events())
    try:
        second = make_pub(mosquitto.port, data_dir=data, outbox_max_messages=10)
        assert wait_until(lambda: len(sub.json_on(T.base)) >= 10 and second.stats.queued == 0)
        second.emit([event(25)])  # after the drain: the full outbox would otherwise drop seq 15
        assert wait_until(lambda: len(sub.json_on(T.base)) >= 11)
        assert [e["seq"] for e in sub.json_on(T.base)] == list(range(15, 26))
        assert second.outbox.dropped_total == 15
    finally:
        sub.close()


def test_broker_outage_no_loss_order_kept_state_back(tmp_path: Path) -> None:
    """Short version of scripts/outage_test.py (60 s there): 5 s outage while emitting at 20 Hz."""
    r = load_outage_script().run_outage(5.0, before_s=1.5, after_s=1.0, rate_hz=20.0, max_backoff_s=2.0,
                                        keepalive_s=5, workdir=tmp_path)
    print(f"outage 5 s: {r}")
    assert r.events_during_outage > 50
    assert r.lost == 0 and r.events_unique == r.events_in
    assert r.in_order
    assert r.reconnect_after_restart_s is not None
    assert r.state_visible_after_reconnect_s is not None and r.state_visible_after_reconnect_s <= 5.0
    # end-to-end privacy: a module tried to send an image, nothing of it reached the broker
    assert r.refused_by_privacy_guard > 0
    assert r.payloads_checked > r.events_in and r.payloads_with_image_data == 0


def test_event_sent_as_the_link_drops_is_delivered_after_reconnect(
    tmp_path: Path, make_pub: Callable[..., MqttPublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a broker dying (or Ctrl-C reaching the demo's broker) just as events go out:
    paho hands back 'not connected' for messages it still queues. Such an event must neither wedge
    the sender (its ack check used to raise on every tick) nor be lost."""
    broker = start_mosquitto(workdir=tmp_path / "broker")
    try:
        pub = make_pub(broker.port)
        pub.emit([event(0)])
        assert wait_until(lambda: pub.stats.acked == 1)
        broker.stop()
        assert wait_until(lambda: not pub.connected, 10)
        # fault injection: the sender still believes the link is up for one more round of events
        monkeypatch.setattr(MqttPublisher, "connected", property(lambda self: True))
        monkeypatch.setattr(MqttPublisher, "ready", property(lambda self: True))
        pub._ready = True  # noqa: SLF001 - the flag the sender reads; cleared again on disconnect
        pub.emit([event(j) for j in range(1, 6)])
        assert wait_until(lambda: pub.stats.published >= 6, 5)
        time.sleep(0.5)  # several sender ticks with those messages in flight
        monkeypatch.undo()
        assert pub.stats.callback_errors == 0
        broker.start()
        sub = Sub(broker.port, T.all_events())
        try:
            pub.emit([event(6)])
            assert wait_until(lambda: pub.stats.acked == 7 and len(pub.outbox) == 0, 20), pub.stats
            assert wait_until(lambda: {e["seq"] for e in sub.json_on(T.base)} >= set(range(1, 7)), 10)
        finally:
            sub.close()
        assert pub.stats.callback_errors == 0
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------------------
# Last Will


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_last_will_offline_when_edge_process_dies(signal_name: str) -> None:
    """SIGKILL: the socket closes at once. SIGSTOP: a hung box; only the keep-alive notices."""
    keepalive_s = 2
    delay_s = load_outage_script().measure_last_will(signal_name, keepalive_s=keepalive_s)
    print(f"Last Will after {signal_name}: {delay_s} s (keep-alive {keepalive_s} s)")
    assert delay_s is not None, "availability never became 'offline'"
    # the broker gives up after 1.5 x keep-alive since the client's last packet (<= keep-alive before)
    assert delay_s <= 2.5 * keepalive_s + 2.0


# ---------------------------------------------------------------------------------------------
# watchdog


def test_exception_in_wrapped_callback_does_not_stop_delivery(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = Sub(mosquitto.port, T.all_events())
    pub = make_pub(mosquitto.port, known_lanes=LANES)

    def boom(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("bug in a callback")

    monkeypatch.setattr(pub._commands, "handle", boom)
    try:
        sub.publish(T.lane_set("l1"), '{"state": "open"}')
        assert wait_until(lambda: pub.stats.callback_errors >= 1)
        pub.emit([event(1), event(2)])
        assert wait_until(lambda: [e["seq"] for e in sub.json_on(T.base)] == [1, 2])
        assert pub.stats.loop_restarts == 0
    finally:
        sub.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_watchdog_restarts_dead_network_thread(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher]
) -> None:
    """An unwrapped callback that raises ends paho's thread while is_connected() stays True."""
    sub = Sub(mosquitto.port, T.all_events())
    commands: list[tuple[str, str]] = []
    pub = make_pub(mosquitto.port, known_lanes=LANES, on_lane_command=lambda lane, s: commands.append((lane, s)))
    guarded = pub._client.on_message
    calls = {"n": 0}

    def raw(client: Any, userdata: Any, message: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("unguarded bug")
        assert guarded is not None
        guarded(client, userdata, message)

    pub._client.on_message = raw
    try:
        sub.publish(T.lane_set("l1"), '{"state": "closed"}')
        assert wait_until(lambda: pub.stats.loop_restarts >= 1), "watchdog did not notice the dead thread"
        pub.emit([event(10), event(11)])
        assert wait_until(lambda: [e["seq"] for e in sub.json_on(T.base)] == [10, 11])
        sub.publish(T.lane_set("l2"), '{"state": "open"}')
        assert wait_until(lambda: ("l2", "open") in commands)
    finally:
        sub.close()


# ---------------------------------------------------------------------------------------------
# lane commands

BAD_COMMANDS: list[tuple[str, bytes, str]] = [
    ("l1", b"not json", "not JSON"),
    ("l1", b"\xff\xfe\x00", "not JSON"),
    ("l1", b'["open"]', "JSON object"),
    ("l1", b'"open"', "JSON object"),
    ("l1", b"{}", "missing field"),
    ("l1", b'{"state": 1}', "must be a string"),
    ("l1", b'{"state": null}', "must be a string"),
    ("l1", b'{"state": "OPEN"}', "unknown state"),
    ("l1", b'{"state": "half-open"}', "unknown state"),
    ("l1", b'{"state": "open", "force": true}', "unknown field"),
    ("l1", b'{"state": "open", "pad": "' + b"x" * 400 + b'"}', "too large"),
    ("l9", b'{"state": "open"}', "unknown lane"),
]
GOOD_COMMANDS = [("l1", b'{"state": "open"}', "open"), ("l2", b'{"state":"closed"}', "closed"),
                 ("l3", b' {"state": "auto"} ', "auto")]


@pytest.mark.parametrize(("lane", "payload", "reason"), BAD_COMMANDS)
def test_parse_rejects_with_reason_and_schema_agrees(lane: str, payload: bytes, reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        parse_lane_command(T, T.lane_set(lane), payload, LANES)
    if lane in LANES and len(payload) <= 256:
        try:
            obj = json.loads(payload)
        except ValueError:
            return
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(obj, schema("lane_set"))


@pytest.mark.parametrize(("lane", "payload", "state"), GOOD_COMMANDS)
def test_parse_accepts_and_schema_agrees(lane: str, payload: bytes, state: str) -> None:
    cmd = parse_lane_command(T, T.lane_set(lane), payload, LANES)
    assert (cmd.lane_id, cmd.state) == (lane, state)
    jsonschema.validate(json.loads(payload), schema("lane_set"))


def test_commands_over_mqtt(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    received: list[tuple[str, str]] = []
    fail = {"on": False}

    def on_cmd(lane: str, state: str) -> None:
        if fail["on"]:
            raise ValueError("handler bug")
        received.append((lane, state))

    caplog.set_level(logging.WARNING, logger="storesense.mqtt.commands")
    pub = make_pub(mosquitto.port, on_lane_command=on_cmd, known_lanes=LANES)
    sender = Sub(mosquitto.port, T.store_state())
    try:
        for n, (lane, payload, reason) in enumerate(BAD_COMMANDS, start=1):
            sender.publish(T.lane_set(lane), payload)
            assert wait_until(lambda n=n: pub.stats.commands_rejected == n), payload  # type: ignore[misc]
            rec = caplog.records[-1]
            assert rec.levelno == logging.WARNING and reason in rec.getMessage()
            assert T.lane_set(lane) in rec.getMessage()
            assert len(rec.getMessage()) < 400  # payload truncated in the log
        assert received == []
        fail["on"] = True
        sender.publish(T.lane_set("l2"), b'{"state": "closed"}')
        assert wait_until(lambda: any("handler failed" in r.getMessage() for r in caplog.records))
        fail["on"] = False
        for lane, payload, _ in GOOD_COMMANDS:
            sender.publish(T.lane_set(lane), payload)
        assert wait_until(lambda: received == [(lane, state) for lane, _, state in GOOD_COMMANDS])
        assert pub.connected and pub.stats.callback_errors == 0
    finally:
        sender.close()


def test_retained_command_is_not_replayed_on_connect(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    """A retained "open" left on the broker would be re-applied on every reconnect: ignored."""
    sender = Sub(mosquitto.port, T.store_state())
    received: list[tuple[str, str]] = []
    try:
        sender.publish(T.lane_set("l1"), b'{"state": "open"}', retain=True)
        caplog.set_level(logging.WARNING, logger="storesense.mqtt.commands")
        pub = make_pub(mosquitto.port, on_lane_command=lambda lane, s: received.append((lane, s)), known_lanes=LANES)
        assert wait_until(lambda: pub.stats.commands_rejected == 1)
        assert "retained command ignored" in caplog.text and received == []
        sender.publish(T.lane_set("l1"), b"", retain=True)  # clear it
    finally:
        sender.close()


def test_known_lanes_learned_from_emitted_state(
    mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher]
) -> None:
    received: list[tuple[str, str]] = []
    pub = make_pub(mosquitto.port, on_lane_command=lambda lane, s: received.append((lane, s)))
    sender = Sub(mosquitto.port, T.store_state())
    try:
        sender.publish(T.lane_set("l1"), b'{"state": "open"}')
        assert wait_until(lambda: pub.stats.commands_rejected == 1)
        pub.emit([lane_state("l1", 0)])
        sender.publish(T.lane_set("l1"), b'{"state": "open"}')
        assert wait_until(lambda: received == [("l1", "open")])
    finally:
        sender.close()


# ---------------------------------------------------------------------------------------------
# privacy guard

IMAGE_PAYLOADS: list[dict[str, Any]] = [
    {"event_id": "a", "image": "x"},
    {"event_id": "a", "face_crop": [1, 2]},
    {"event_id": "a", "data": {"frame": 1}},
    {"event_id": "a", "thumbnail_b64": "AAAA"},
    {"event_id": "a", "blob": b"\xff\xd8\xff"},
    {"event_id": "a", "grid": np.zeros((4, 4), np.uint8)},
    {"event_id": "a", "note": "QUJD" * 400},
    {"event_id": "a", "note": "data:image/png;base64," + "A" * 100},
    {"event_id": "a", "list": [{"ok": 1}, {"snapshot": "…"}]},
    {"event_id": "a", "value": float("nan")},  # not JSON: refused as well
]
CLEAN_PAYLOADS: list[dict[str, Any]] = [
    {"event_id": "a", "frames_total": 10, "frames_dropped": 0, "frame_index": 3},
    {"schema": "storesense.heatmap/1", "cells": [[0.5] * 64 for _ in range(64)], "cell_m": 0.5},
    {"reason": "camera reconnecting after read timeout " * 5, "lanes": ["l1", "l2"], "x": None},
]


@pytest.mark.parametrize("payload", IMAGE_PAYLOADS)
def test_privacy_guard_refuses_image_like_payloads(
    payload: dict[str, Any], mosquitto: MosquittoProcess, make_pub: Callable[..., MqttPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="storesense.mqtt")
    pub = make_pub(mosquitto.port)
    pub.emit([Message("event", "debug", payload, "event"), Message("lane_state", "l1", payload, "state")])
    assert pub.stats.refused == 2 and pub.stats.queued == 0
    assert sum("refused to publish" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize("payload", CLEAN_PAYLOADS)
def test_privacy_guard_lets_metrics_through(payload: dict[str, Any]) -> None:
    assert find_image_data(payload) is None


# ---------------------------------------------------------------------------------------------
# credentials and TLS


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[tuple[MosquittoProcess, str]]:
    secret = "s3cret-" + uuid.uuid4().hex
    wd = tmp_path / "auth"
    write_password_file(wd / "passwd", {"edge-store-1": secret, "reader": "reader-pw"})
    port = free_port()
    text = (f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {wd / 'passwd'}\n"
            f"persistence false\nlog_dest file {wd / 'mosquitto.log'}\n")
    broker = start_mosquitto_config(text, port=port, workdir=wd)
    try:
        yield broker, secret
    finally:
        broker.stop()


@pytest.mark.parametrize("source", ["env", "file"])
def test_password_from_env_or_file_never_logged(
    source: str, auth_broker: tuple[MosquittoProcess, str], make_pub: Callable[..., MqttPublisher],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    broker, secret = auth_broker
    caplog.set_level(logging.DEBUG)  # everything, paho's own log included
    if source == "env":
        monkeypatch.setenv("STORESENSE_TEST_MQTT_PW", secret)
        kw: dict[str, Any] = {"password_env": "STORESENSE_TEST_MQTT_PW"}
    else:
        (tmp_path / "pw").write_text(secret + "\n")
        kw = {"password_file": str(tmp_path / "pw")}
    sub = Sub(broker.port, T.all_events(), user=("reader", "reader-pw"))
    try:
        pub = make_pub(broker.port, username="edge-store-1", **kw)
        pub.emit([event(1)])
        assert wait_until(lambda: len(sub.json_on(T.base)) == 1)
        pub.close(timeout_s=1.0)
    finally:
        sub.close()
    assert any(r.name.startswith("storesense.mqtt.paho") for r in caplog.records)  # paho did log
    assert secret not in caplog.text
    assert secret not in repr(pub) and secret not in str(pub.stats)


def test_wrong_password_keeps_retrying_without_leaking(
    auth_broker: tuple[MosquittoProcess, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, _ = auth_broker
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("STORESENSE_TEST_MQTT_PW", "wrong-" + uuid.uuid4().hex)
    cfg = MqttConfig(port=broker.port, username="edge-store-1", password_env="STORESENSE_TEST_MQTT_PW",
                     reconnect_max_backoff_s=1.0)
    pub = MqttPublisher(cfg, T, data_dir=tmp_path / "d")
    pub.start()
    pub.emit([event(1)])
    assert wait_until(lambda: any("refused the connection" in r.getMessage() for r in caplog.records))
    assert not pub.connected and pub.stats.queued == 1
    pub.close(timeout_s=0.5)
    import os

    assert os.environ["STORESENSE_TEST_MQTT_PW"] not in caplog.text


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"password_env": "STORESENSE_SURELY_UNSET_VAR"}, "STORESENSE_SURELY_UNSET_VAR"),
        ({"password_file": "/nonexistent/storesense-pw"}, "cannot read"),
    ],
)
def test_missing_secret_is_a_clear_error(kw: dict[str, str], message: str) -> None:
    cfg = MqttConfig.model_validate({"username": "u", **kw})
    with pytest.raises(UserFacingError, match=message):
        resolve_password(cfg)


def test_relative_password_file_is_read_alike_by_the_edge_and_the_display(
    auth_broker: tuple[MosquittoProcess, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One secret resolver: a relative mqtt.password_file is relative to the config file for the edge's
    publisher (as wired by `storesense run`) and for the display alike, whatever the working directory.
    Before the fix the publisher read it relative to the working directory and could not connect."""
    from edge.commands import build_live_sinks
    from edge.config import load_config
    from mqtt_bridge.display import _mqtt_password

    broker, secret = auth_broker
    cfg_dir = tmp_path / "etc"
    cfg_dir.mkdir()
    (cfg_dir / "mqtt.pw").write_text(secret + "\n")
    (cfg_dir / "store.yaml").write_text(
        "version: 1\nstore: {id: store-1}\ncameras: [{id: cam-1, source: a.mp4}]\n"
        f"mqtt: {{port: {broker.port}, username: edge-store-1, password_file: mqtt.pw, reconnect_max_backoff_s: 1}}\n"
        f"data_dir: {tmp_path / 'data'}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(cfg_dir / "store.yaml")
    assert _mqtt_password(cfg) == secret
    sinks, pub = build_live_sinks(cfg, T, [])
    try:
        pub.start()
        assert wait_until(lambda: pub.ready, 10), "the edge could not log in with the password file"
    finally:
        for sink in sinks:
            sink.close()


def test_empty_password_variable_is_an_error_for_the_edge_and_the_display(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty variable must not quietly log in without a password on either side (the display used to
    accept it). validate-config refuses it too; this is the variable emptied after the config was loaded."""
    from edge.config import parse_config
    from mqtt_bridge.display import _mqtt_password

    monkeypatch.setenv("STORESENSE_TEST_EMPTY_PW", "set-at-load")
    cfg = parse_config("version: 1\nstore: {id: s}\ncameras: [{id: c, source: a.mp4}]\n"
                       "mqtt: {username: u, password_env: STORESENSE_TEST_EMPTY_PW}\n")
    monkeypatch.setenv("STORESENSE_TEST_EMPTY_PW", "")
    with pytest.raises(UserFacingError, match="STORESENSE_TEST_EMPTY_PW"):
        resolve_password(cfg.mqtt)
    with pytest.raises(UserFacingError, match="STORESENSE_TEST_EMPTY_PW"):
        _mqtt_password(cfg)


def test_tls_connection_from_config(tmp_path: Path, make_pub: Callable[..., MqttPublisher]) -> None:
    certs = tmp_path / "certs"
    make_certs(certs)
    port, plain = free_port(), free_port()
    text = (f"user root\nper_listener_settings false\nallow_anonymous true\n"
            f"listener {port} 127.0.0.1\ncafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\n"
            f"keyfile {certs / 'server.key'}\nlistener {plain} 127.0.0.1\n"
            f"log_dest file {tmp_path / 'tls.log'}\n")
    broker = start_mosquitto_config(text, port=port, workdir=tmp_path / "tlsbroker")
    sub = Sub(plain, T.all_events())
    try:
        pub = make_pub(port, tls=TlsConfig(ca_file=str(certs / "ca.crt")))
        pub.emit([event(7)])
        assert wait_until(lambda: [e["seq"] for e in sub.json_on(T.base)] == [7])
    finally:
        sub.close()
        broker.stop()
    with pytest.raises(UserFacingError, match="does not exist"):
        MqttPublisher(MqttConfig(port=port, tls=TlsConfig(ca_file=str(tmp_path / "nope.crt"))), T,
                      data_dir=tmp_path / "x").start()


def test_subprocess_import_is_light() -> None:
    """The publisher module imports without pulling in the detector stack (edge boxes import it early)."""
    code = "import sys, mqtt_bridge.publisher; print('onnxruntime' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ---------------------------------------------------------------------------------------------
# end to end: the real pipeline (ONNX detector on the demo clip) through MqttPublisher


def test_pipeline_end_to_end_payloads_carry_no_image_data(
    mosquitto: MosquittoProcess, videos_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.commands import DEMO_CONFIG, run_store
    from edge.config import load_config

    monkeypatch.setenv("STORESENSE_VIDEOS_DIR", str(videos_path))
    cfg = load_config(DEMO_CONFIG)
    cfg.mqtt.port = mosquitto.port
    cfg.data_dir = str(tmp_path / "data")
    topics = Topics(cfg.store.id, cfg.mqtt.prefix)
    sub = Sub(mosquitto.port, topics.everything())
    stop = threading.Event()
    timer = threading.Timer(6.0, stop.set)
    timer.start()
    try:
        run_store(cfg, realtime=False, loop=False, stop_event=stop)
    finally:
        timer.cancel()
        stop.set()
    avail_topic = topics.availability(cfg.mqtt.device_id)
    assert wait_until(lambda: sub.payloads(avail_topic)[-1:] == [b"stopped"])
    sub.close()
    with sub.lock:
        messages = list(sub.messages)
    assert len(messages) > 20
    assert {topics.lane_state("lane-1"), topics.lane_state("lane-2")} <= {t for t, _, _, _ in messages}
    for topic, payload, _, _ in messages:
        assert len(payload) < 262_144, topic
        if topic == avail_topic:
            jsonschema.validate(payload.decode(), schema("availability"))
            continue
        obj = json.loads(payload)  # every other payload is a JSON object ...
        assert isinstance(obj, dict)
        assert find_image_data(obj) is None, (topic, str(obj)[:200])  # ... with no image data
        assert obj["store_id"] == cfg.store.id and isinstance(obj["timestamp_s"], float | int)
        assert str(obj["schema"]).startswith("storesense.")
        if topic.endswith("/status"):
            jsonschema.validate(obj, schema("camera_status"))
