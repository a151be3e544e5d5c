"""Issue 12 items 2, 14, 15 on a real Mosquitto: persistence in every broker the product starts,
the WebSocket listener never wider than BIND_ADDRESS, and the operator ACL role."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.contract import Message
from mqtt_bridge.broker import (
    free_port,
    render_template,
    start_mosquitto,
    start_mosquitto_config,
    websockets_honour_bind_address,
)
from mqtt_bridge.config import MqttConfig
from mqtt_bridge.publisher import MqttPublisher
from mqtt_bridge.topics import Topics
from tests.test_broker_configs import Client, acl_block, edge_config
from tests.waiting import wait_until

T = Topics("s1")


def _persistent_subscriber(port: int, got: list[str]) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ops-dashboard", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    subscribed: list[int] = []
    c.on_message = lambda _c, _u, m: got.append(json.loads(m.payload)["event_id"])
    c.on_subscribe = lambda *a: subscribed.append(1)
    c.on_connect = lambda cl, *a: cl.subscribe(T.all_events(), qos=1)
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    assert wait_until(lambda: bool(subscribed), 5)
    return c


def test_acked_events_survive_a_broker_restart_before_the_subscriber_returns(tmp_path: Path) -> None:
    # item 2: the demo's private broker ran with persistence off, so 16 events the outbox had
    # already seen acknowledged were gone when the subscriber came back after a broker restart
    broker = start_mosquitto()
    got: list[str] = []
    try:
        sub = _persistent_subscriber(broker.port, got)
        sub.disconnect()
        sub.loop_stop()
        pub = MqttPublisher(MqttConfig(port=broker.port, keepalive_s=5, reconnect_max_backoff_s=1.0), T,
                            data_dir=tmp_path / "data")
        pub.start()
        assert wait_until(lambda: pub.ready, 10)
        ids = [f"e{i}" for i in range(16)]
        pub.emit([Message("event", "visit", {"event_id": i}, "event") for i in ids])
        assert wait_until(lambda: len(pub.outbox) == 0 and pub.stats.acked == 16, 10)  # acked: gone from the outbox
        pub.close(timeout_s=2)
        broker.restart()
        sub = _persistent_subscriber(broker.port, got)
        assert wait_until(lambda: len(set(got)) == 16, 10), got
        assert sorted(set(got)) == sorted(ids)
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.stop()
    assert "persistence true" in broker.config_path.read_text() if broker.config_path.exists() else True


def _listening(port: int) -> list[str]:
    """Local addresses with a LISTEN socket on ``port`` (from /proc/net/tcp and tcp6)."""
    out = []
    for name in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                out.append(addr)
    return out


def test_websocket_listener_never_wider_than_bind_address(tmp_path: Path) -> None:
    # item 14: with BIND_ADDRESS 127.0.0.1 the WebSocket listener listened on *:port
    port, ws_port = free_port(), free_port()
    text = edge_config(tmp_path / "edge", "store-a", acl_block("store-a"), port, ws_port, bind_address="127.0.0.1")
    broker = start_mosquitto_config(text, port=port, ws_port=ws_port if websockets_honour_bind_address() else None,
                                    workdir=tmp_path / "edge")
    try:
        time.sleep(0.3)
        wildcard = {"00000000", "00000000000000000000000000000000"}
        for p in (port, ws_port):
            assert not wildcard & set(_listening(p)), (p, _listening(p))
        assert _listening(port)  # the MQTT listener is there, on loopback
        if not websockets_honour_bind_address():
            assert "#listener " + str(ws_port) in text and "DISABLED" in text
    finally:
        broker.stop()
    wide = render_template("mosquitto-edge.conf", STORE="s", EDGE_USER="e", SCREEN_USER="s", RUN_AS_USER="root",
                           PASSWORD_FILE="p", ACL_FILE="a", PERSISTENCE_DIR="d", MQTT_PORT=1, WS_PORT=2,
                           BIND_ADDRESS="0.0.0.0", LOG_DEST="syslog")
    assert "\nlistener 2 0.0.0.0\nprotocol websockets\n" in wide  # a wildcard is what the installer asked for


def test_operator_may_send_lane_commands_and_read_state_only(tmp_path: Path) -> None:
    # item 15: staff needed the edge's own read-write credential to send a lane command
    port, ws_port = free_port(), free_port()
    text = edge_config(tmp_path / "edge", "store-a", acl_block("store-a") + "\n" + acl_block("store-b"), port, ws_port)
    broker = start_mosquitto_config(text, port=port, ws_port=ws_port, workdir=tmp_path / "edge")
    ta, tb = Topics("store-a"), Topics("store-b")
    try:
        edge = Client(port, "edge-store-a", tag="edge")
        op = Client(port, "operator-store-a", tag="op")
        assert edge.wait_connected() and op.wait_connected()
        edge.subscribe(ta.everything())
        op.subscribe(f"{ta.base}/#")
        edge.publish(ta.lane_state("l1"), '{"open": true}', retain=True)
        edge.publish(ta.store_state(), '{"lanes_open": 1}', retain=True)
        edge.publish(ta.event("visit"), '{"event_id": "v1"}')
        edge.publish(ta.camera_heatmap("c1"), '{"cells": []}')
        op.publish(ta.lane_set("l1"), '{"state": "closed"}')  # allowed
        op.publish(ta.lane_state("l1"), '{"forged": true}', retain=True)  # not allowed
        op.publish(ta.event("alert"), '{"forged": true}')  # not allowed
        op.publish(tb.lane_set("l1"), '{"state": "open"}')  # another store: not allowed
        marker = ta.lane_state("marker")
        edge.publish(marker, "{}", retain=True)
        assert wait_until(lambda: marker in op.topics() and ta.lane_set("l1") in edge.topics(), 5)
        time.sleep(0.3)
        assert op.topics() == {ta.lane_state("l1"), ta.store_state(), marker}, op.topics()  # state only
        assert [p for t, p, _ in edge.messages if t == ta.lane_state("l1")] == [b'{"open": true}']
        assert ta.event("alert") not in edge.topics()
        for c in (edge, op):
            c.close()
    finally:
        broker.stop()
