"""The shipped Mosquitto templates, rendered and run on real brokers on ephemeral ports.

Covers: password file + ACL (edge publishes, screens read only their own store and cannot
publish, over TCP and WebSockets) and the edge -> central bridge of a chain of stores.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.errors import UserFacingError
from mqtt_bridge.broker import (
    MosquittoProcess,
    free_port,
    mosquitto_passwd_binary,
    render_template,
    start_mosquitto_config,
    template_variables,
    write_password_file,
)
from mqtt_bridge.topics import DEFAULT_PREFIX, Topics
from tests.certs import make_certs
from tests.waiting import wait_until

PASSWORDS = {
    "edge-store-a": "pw-edge-a-" + uuid.uuid4().hex[:8],
    "screen-store-a": "pw-screen-a-" + uuid.uuid4().hex[:8],
    "edge-store-b": "pw-edge-b-" + uuid.uuid4().hex[:8],
    "screen-store-b": "pw-screen-b-" + uuid.uuid4().hex[:8],
    "operator-store-a": "pw-operator-a-" + uuid.uuid4().hex[:8],
    "operator-store-b": "pw-operator-b-" + uuid.uuid4().hex[:8],
}


def acl_block(store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return render_template("acl", STORE=store, PREFIX=prefix, EDGE_USER=f"edge-{store}", SCREEN_USER=f"screen-{store}",
                           OPERATOR_USER=f"operator-{store}")


def edge_config(workdir: Path, store: str, acl_text: str, port: int, ws_port: int, bridge: str = "",
                bind_address: str = "0.0.0.0") -> str:
    # 0.0.0.0: these tests use the WebSocket listener, which Mosquitto < 2.0.12 binds to every
    # interface anyway (render_template disables it for a loopback BIND_ADDRESS on such a broker);
    # test_broker_hardening checks the loopback case
    workdir.mkdir(parents=True, exist_ok=True)
    write_password_file(workdir / "passwd", PASSWORDS)
    (workdir / "acl").write_text(acl_text)
    (workdir / "data").mkdir(exist_ok=True)
    text = render_template(
        "mosquitto-edge.conf",
        STORE=store,
        EDGE_USER=f"edge-{store}",
        SCREEN_USER=f"screen-{store}",
        RUN_AS_USER="root",  # tests run as root in a private temp dir; Debian default is mosquitto
        PASSWORD_FILE=workdir / "passwd",
        ACL_FILE=workdir / "acl",
        PERSISTENCE_DIR=workdir / "data",
        MQTT_PORT=port,
        WS_PORT=ws_port,
        BIND_ADDRESS=bind_address,
        LOG_DEST=f"file {workdir / 'mosquitto.log'}",
    )
    return text + "\n" + bridge


class Client:
    """A real paho client that records what it receives."""

    def __init__(self, port: int, user: str | None = None, *, websockets: bool = False, tag: str = "",
                 ca_file: Path | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connected = threading.Event()
        self.connect_rc: Any = None
        self.suback: list[Any] = []
        self._subacked = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{tag}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
            transport="websockets" if websockets else "tcp",
        )
        if user:
            self.c.username_pw_set(user, PASSWORDS[user])
        if ca_file is not None:
            self.c.tls_set(ca_certs=str(ca_file))
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.c.on_subscribe = self._on_subscribe
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc
        self.connected.set()

    def _on_subscribe(self, c: Any, u: Any, mid: Any, rcs: Any, props: Any) -> None:
        self.suback = list(rcs)
        self._subacked.set()

    def wait_connected(self) -> bool:
        assert self.connected.wait(5), "no CONNACK"
        return not self.connect_rc.is_failure

    def subscribe(self, topic: str) -> None:
        self._subacked.clear()
        self.c.subscribe(topic, qos=1)
        assert self._subacked.wait(5)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def topics(self) -> set[str]:
        return {t for t, _, _ in self.messages}

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """Edge broker of store-a from the templates; its ACL also holds store-b's block (chain case)."""
    port, ws_port = free_port(), free_port()
    text = edge_config(tmp_path / "edge", "store-a", acl_block("store-a") + "\n" + acl_block("store-b"), port, ws_port)
    broker = start_mosquitto_config(text, port=port, ws_port=ws_port, workdir=tmp_path / "edge")
    try:
        yield broker
    finally:
        broker.stop()


def test_mosquitto_passwd_is_installed() -> None:
    assert Path(mosquitto_passwd_binary()).exists()


def test_password_file_is_hashed_and_private(tmp_path: Path) -> None:
    path = write_password_file(tmp_path / "passwd", {"u1": "plain-secret-1"})
    text = path.read_text()
    assert text.startswith("u1:$7$") and "plain-secret-1" not in text
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("acl", {"STORE", "PREFIX", "EDGE_USER", "SCREEN_USER", "OPERATOR_USER"}),
        ("bridge.conf", {"STORE", "CONNECTION_NAME", "CENTRAL_HOST", "CENTRAL_PORT", "LOCAL_PREFIX",
                         "REMOTE_PREFIX", "BRIDGE_USERNAME", "BRIDGE_PASSWORD", "BRIDGE_CLIENT_ID"}),
        ("mosquitto-edge.conf", {"STORE", "EDGE_USER", "SCREEN_USER", "RUN_AS_USER", "PASSWORD_FILE", "ACL_FILE",
                                 "PERSISTENCE_DIR", "MQTT_PORT", "WS_PORT", "BIND_ADDRESS", "LOG_DEST"}),
    ],
)
def test_template_placeholders(name: str, expected: set[str]) -> None:
    assert template_variables(name) == expected


def test_render_reports_missing_values() -> None:
    with pytest.raises(UserFacingError, match="missing value.*EDGE_USER"):
        render_template("acl", STORE="s", PREFIX="p", SCREEN_USER="x")


def test_anonymous_and_wrong_password_refused(secured_broker: MosquittoProcess) -> None:
    anon = Client(secured_broker.port, tag="anon")
    assert not anon.wait_connected()
    anon.close()
    bad = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    bad.username_pw_set("edge-store-a", "wrong")
    result: list[Any] = []
    bad.on_connect = lambda c, u, f, rc, p: result.append(rc)
    bad.connect("127.0.0.1", secured_broker.port)
    bad.loop_start()
    assert wait_until(lambda: bool(result))
    assert result[0].is_failure
    bad.loop_stop()


def test_acl_edge_publishes_screen_reads_own_store_only(secured_broker: MosquittoProcess) -> None:
    ta, tb = Topics("store-a"), Topics("store-b")
    screen_tcp = Client(secured_broker.port, "screen-store-a", tag="screen-tcp")
    screen_ws = Client(secured_broker.ws_port or 0, "screen-store-a", websockets=True, tag="screen-ws")
    watcher = Client(secured_broker.port, "edge-store-a", tag="watch-a")
    for c in (screen_tcp, screen_ws, watcher):
        assert c.wait_connected()
    # the screen asks for everything; the ACL must filter to store-a
    screen_tcp.subscribe(f"{DEFAULT_PREFIX}/#")
    screen_ws.subscribe(f"{DEFAULT_PREFIX}/#")
    watcher.subscribe(ta.everything())

    edge_a = Client(secured_broker.port, "edge-store-a", tag="edge-a")
    edge_b = Client(secured_broker.port, "edge-store-b", tag="edge-b")
    assert edge_a.wait_connected() and edge_b.wait_connected()
    edge_a.publish(ta.lane_state("l1"), '{"queue_length": 2}', retain=True)
    edge_b.publish(tb.lane_state("l1"), '{"queue_length": 9}', retain=True)
    # the edge device of store-a may not write into store-b
    edge_a.publish(tb.lane_state("l2"), '{"forged": true}', retain=True)
    # a screen cannot publish, not even into its own store
    screen_tcp.publish(ta.lane_set("l1"), '{"state": "open"}')
    screen_tcp.publish(ta.lane_state("l1"), '{"queue_length": 99}', retain=True)
    marker = ta.event("marker")
    edge_a.publish(marker, "{}")

    assert wait_until(lambda: marker in screen_tcp.topics() and marker in screen_ws.topics())
    time.sleep(0.3)
    for screen in (screen_tcp, screen_ws):
        assert screen.topics() == {ta.lane_state("l1"), marker}, screen.messages
        assert all(not t.startswith(tb.base) for t in screen.topics())
        payloads = [p for t, p, _ in screen.messages if t == ta.lane_state("l1")]
        assert payloads == [b'{"queue_length": 2}']
    # the screen's publishes never arrived anywhere
    assert ta.lane_set("l1") not in watcher.topics()
    assert [p for t, p, _ in watcher.messages if t == ta.lane_state("l1")] == [b'{"queue_length": 2}']

    # a late screen of store-b sees store-b's retained state only, and not the forged write
    screen_b = Client(secured_broker.port, "screen-store-b", tag="screen-b")
    assert screen_b.wait_connected()
    screen_b.subscribe(f"{DEFAULT_PREFIX}/#")
    assert wait_until(lambda: tb.lane_state("l1") in screen_b.topics())
    time.sleep(0.3)
    assert screen_b.topics() == {tb.lane_state("l1")}
    for c in (screen_tcp, screen_ws, watcher, edge_a, edge_b, screen_b):
        c.close()


def test_bridge_edge_to_central(tmp_path: Path) -> None:
    """Two stores' edge brokers bridged into one central broker, all on ephemeral ports."""
    central_port, central_ws = free_port(), free_port()
    central_dir = tmp_path / "central"
    central_text = edge_config(central_dir, "central", acl_block("store-a") + "\n" + acl_block("store-b"),
                               central_port, central_ws)
    central = start_mosquitto_config(central_text, port=central_port, ws_port=central_ws, workdir=central_dir)
    edges: list[MosquittoProcess] = []
    try:
        for store in ("store-a", "store-b"):
            port, ws = free_port(), free_port()
            bridge = render_template(
                "bridge.conf",
                STORE=store,
                CONNECTION_NAME=f"central-{store}",
                CENTRAL_HOST="127.0.0.1",
                CENTRAL_PORT=central_port,
                LOCAL_PREFIX=f"{DEFAULT_PREFIX}/{store}",
                REMOTE_PREFIX=f"{DEFAULT_PREFIX}/{store}",
                BRIDGE_USERNAME=f"edge-{store}",
                BRIDGE_PASSWORD=PASSWORDS[f"edge-{store}"],
                BRIDGE_CLIENT_ID=f"bridge-{store}",
            )
            d = tmp_path / store
            edges.append(start_mosquitto_config(edge_config(d, store, acl_block(store), port, ws, bridge),
                                                port=port, ws_port=ws, workdir=d))
        ta, tb = Topics("store-a"), Topics("store-b")
        hq = Client(central_port, "edge-store-a", tag="hq")
        assert hq.wait_connected()
        hq.subscribe(ta.everything())
        # the bridge announces itself on the central broker
        assert wait_until(lambda: f"{ta.base}/edge/bridge/connection" in hq.topics(), 10), (
            (tmp_path / "store-a" / "mosquitto.log").read_text())

        edge_a = Client(edges[0].port, "edge-store-a", tag="edge-a")
        edge_b = Client(edges[1].port, "edge-store-b", tag="edge-b")
        assert edge_a.wait_connected() and edge_b.wait_connected()
        edge_a.subscribe(ta.all_lane_sets())
        edge_a.publish(ta.lane_state("l1"), '{"queue_length": 3}', retain=True)
        edge_a.publish(ta.event("visit"), '{"event_id": "v1"}')
        edge_b.publish(tb.lane_state("l1"), '{"queue_length": 7}', retain=True)
        assert wait_until(lambda: {ta.lane_state("l1"), ta.event("visit")} <= hq.topics(), 10)

        # store-b's data reached the central broker under store-b's prefix (seen by its screen)
        screen_b = Client(central_port, "screen-store-b", tag="screen-b-central")
        assert screen_b.wait_connected()
        screen_b.subscribe(f"{DEFAULT_PREFIX}/#")
        assert wait_until(lambda: tb.lane_state("l1") in screen_b.topics(), 10)
        assert all(t.startswith(tb.base + "/") for t in screen_b.topics())
        retained = [r for t, _, r in screen_b.messages if t == tb.lane_state("l1")]
        assert retained == [True]

        # a lane command sent at head office comes down to store-a's edge broker only
        hq.publish(ta.lane_set("l1"), '{"state": "closed"}')
        assert wait_until(lambda: ta.lane_set("l1") in edge_a.topics(), 10)
        for c in (hq, edge_a, edge_b, screen_b):
            c.close()
    finally:
        for e in edges:
            e.stop()
        central.stop()


def uncomment(text: str, replacements: dict[str, str]) -> str:
    """Turn a template's commented-out example lines into live ones (each must be there)."""
    for old, new in replacements.items():
        assert old in text, f"template no longer has {old!r}"
        text = text.replace(old, new)
    return text


def with_tls_listeners(text: str, certs: Path, tls_port: int, wss_port: int) -> str:
    """The edge template's two commented TLS blocks (mqtts and wss), enabled on test ports."""
    return uncomment(text, {
        "#listener 8883 0.0.0.0": f"listener {tls_port} 127.0.0.1",
        "#listener 8884 0.0.0.0": f"listener {wss_port} 127.0.0.1",
        "#protocol mqtt\n": "protocol mqtt\n",
        "#protocol websockets\n": "protocol websockets\n",
        "#cafile /etc/mosquitto/ca_certificates/ca.crt": f"cafile {certs / 'ca.crt'}",
        "#certfile /etc/mosquitto/certs/edge.crt": f"certfile {certs / 'server.crt'}",
        "#keyfile /etc/mosquitto/certs/edge.key": f"keyfile {certs / 'server.key'}",
        "#tls_version tlsv1.2": "tls_version tlsv1.2",
    })


def test_tls_templates_bridge_and_websockets(tmp_path: Path) -> None:
    """The commented TLS examples of both templates work as shipped: the edge broker bridges to
    the central broker over verified TLS, the edge process publishes over mqtts and a screen
    reads over wss; a client that does not trust the CA is refused."""
    certs = make_certs(tmp_path / "certs")
    ports = {name: free_port() for name in ("c", "c_ws", "c_tls", "c_wss", "e", "e_ws", "e_tls", "e_wss")}
    central_dir = tmp_path / "central"
    central_text = with_tls_listeners(
        edge_config(central_dir, "central", acl_block("store-a"), ports["c"], ports["c_ws"]),
        certs, ports["c_tls"], ports["c_wss"])
    central = start_mosquitto_config(central_text, port=ports["c"], ws_port=ports["c_ws"], workdir=central_dir)
    edge: MosquittoProcess | None = None
    clients: list[Client] = []
    try:
        bridge = uncomment(render_template(
            "bridge.conf", STORE="store-a", CONNECTION_NAME="central-tls", CENTRAL_HOST="127.0.0.1",
            CENTRAL_PORT=ports["c_tls"], LOCAL_PREFIX=f"{DEFAULT_PREFIX}/store-a",
            REMOTE_PREFIX=f"{DEFAULT_PREFIX}/store-a", BRIDGE_USERNAME="edge-store-a",
            BRIDGE_PASSWORD=PASSWORDS["edge-store-a"], BRIDGE_CLIENT_ID="bridge-tls-store-a",
        ), {
            "#bridge_cafile /etc/mosquitto/ca_certificates/central-ca.crt": f"bridge_cafile {certs / 'ca.crt'}",
            "#bridge_insecure false": "bridge_insecure false",  # the certificate name is checked
            "#bridge_tls_version tlsv1.2": "bridge_tls_version tlsv1.2",
        })
        edge_dir = tmp_path / "store-a"
        edge_text = with_tls_listeners(
            edge_config(edge_dir, "store-a", acl_block("store-a"), ports["e"], ports["e_ws"], bridge),
            certs, ports["e_tls"], ports["e_wss"])
        edge = start_mosquitto_config(edge_text, port=ports["e"], ws_port=ports["e_ws"], workdir=edge_dir)
        ta = Topics("store-a")

        hq = Client(ports["c_tls"], "edge-store-a", tag="hq-tls", ca_file=certs / "ca.crt")
        clients.append(hq)
        assert hq.wait_connected()
        hq.subscribe(ta.everything())
        assert wait_until(lambda: f"{ta.base}/edge/bridge/connection" in hq.topics(), 10), (
            (edge_dir / "mosquitto.log").read_text())

        screen = Client(ports["e_wss"], "screen-store-a", websockets=True, tag="screen-wss", ca_file=certs / "ca.crt")
        clients.append(screen)
        assert screen.wait_connected()
        screen.subscribe(f"{ta.base}/lane/+/state")
        publisher = Client(ports["e_tls"], "edge-store-a", tag="edge-mqtts", ca_file=certs / "ca.crt")
        clients.append(publisher)
        assert publisher.wait_connected()
        publisher.publish(ta.lane_state("l1"), '{"queue_length": 2}', retain=True)
        assert wait_until(lambda: ta.lane_state("l1") in screen.topics(), 10)  # wss at the edge
        assert wait_until(lambda: ta.lane_state("l1") in hq.topics(), 10)  # TLS bridge to central

        # TLS is really checked: a client that does not trust the test CA cannot connect
        untrusted = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="untrusted", protocol=mqtt.MQTTv5)
        untrusted.tls_set()  # system CAs only
        with pytest.raises(ssl.SSLError):
            untrusted.connect("127.0.0.1", ports["e_tls"])
    finally:
        for c in clients:
            c.close()
        if edge is not None:
            edge.stop()
        central.stop()
