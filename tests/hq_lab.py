"""A whole chain on one machine, real components only, for the HQ tests and scripts/hq_drills.py.

PostgreSQL (initdb/pg_ctl in a temp dir), a central Mosquitto rendered from
mqtt_bridge/broker/mosquitto-central.conf (TLS listener for the bridges, loopback listener for
the ingester, persistence), one edge Mosquitto per store rendered from mosquitto-edge.conf with
bridge.conf (TLS, verified) into the central broker, the ingester as a subprocess
(``python -m hq ingest``), and ``storesense run`` edges on the sample clip. Every port is
ephemeral on 127.0.0.1.

A tap (a plain subscriber on each edge broker) records every event the edge handed to its
broker: that is what the store produced, and what PostgreSQL must end up holding exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.resources import models_dir, videos_dir
from hq.postgres import PostgresProcess, start_postgres
from mqtt_bridge.broker import (
    MosquittoProcess,
    free_port,
    render_template,
    start_mosquitto_config,
    write_password_file,
)
from mqtt_bridge.topics import DEFAULT_PREFIX, Topics
from tests.certs import make_certs

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "edge" / "demo" / "store.yaml"
HQ_USER = "hq-ingest"


class Tap:
    """Every event (and availability message) that reaches one broker for one store."""

    def __init__(self, port: int, user: str, password: str, topics: Topics) -> None:
        self.lock = threading.Lock()
        self.event_ids: list[str] = []
        self.availability: list[str] = []
        self.topics = topics
        self.subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tap-{topics.store}-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.everything(), qos=1)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            if "/events/" in m.topic:
                self.event_ids.append(json.loads(m.payload)["event_id"])
            elif m.topic.endswith("/availability"):
                self.availability.append(m.payload.decode())

    def unique_events(self) -> set[str]:
        with self.lock:
            return set(self.event_ids)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class Edge:
    store: str
    dir: Path
    broker: MosquittoProcess
    config_path: Path
    tap: Tap
    runs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    events_files: list[Path] = field(default_factory=list)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.runs[-1] if self.runs else None

    def jsonl_event_ids(self) -> list[str]:
        ids = []
        for f in self.events_files:
            if f.exists():
                for line in f.read_text().splitlines():
                    obj = json.loads(line)
                    if "/events/" in obj["topic"]:
                        ids.append(obj["payload"]["event_id"])
        return ids


class HqLab:
    """Start with :meth:`start`; everything stops in :meth:`close` (also on failure)."""

    def __init__(self, root: Path, stores: tuple[str, ...] = ("store-a", "store-b"), *,
                 ingest_overrides: dict[str, Any] | None = None, share_group: str | None = None) -> None:
        self.share_group = share_group
        self.root = root
        self.stores = stores
        self.passwords = {f"edge-{s}": uuid.uuid4().hex for s in stores} | {HQ_USER: uuid.uuid4().hex}
        self.passwords |= {f"screen-{s}": uuid.uuid4().hex for s in stores}
        self.ingest_overrides = ingest_overrides or {}
        self.pg: PostgresProcess | None = None
        self.central: MosquittoProcess | None = None
        self.central_ports: dict[str, int] = {}
        self.edges: dict[str, Edge] = {}
        self.ingester: subprocess.Popen[bytes] | None = None
        self.ingester_runs = 0
        self.hq_config_path = root / "hq.yaml"
        self.certs = root / "certs"

    # -- components ------------------------------------------------------------------------------

    def start(self, *, edges: bool = True) -> HqLab:
        self.root.mkdir(parents=True, exist_ok=True)
        make_certs(self.certs)
        self.pg = start_postgres()
        self.start_central()
        self.write_hq_config()
        self.start_ingester()
        if edges:
            for s in self.stores:
                self.start_edge_broker(s)
        return self

    def central_config(self) -> str:
        d = self.root / "central"
        d.mkdir(parents=True, exist_ok=True)
        (d / "data").mkdir(exist_ok=True)
        write_password_file(d / "passwd", self.passwords)
        acl = "\n".join(render_template("acl", STORE=s, PREFIX=DEFAULT_PREFIX, EDGE_USER=f"edge-{s}",
                                        SCREEN_USER=f"screen-{s}", OPERATOR_USER=f"operator-{s}")
                        for s in self.stores)
        acl += "\n" + render_template("acl-hq", HQ_USER=HQ_USER, PREFIX=DEFAULT_PREFIX)
        (d / "acl").write_text(acl)
        if not self.central_ports:
            self.central_ports = {"local": free_port(), "tls": free_port()}
        return render_template(
            "mosquitto-central.conf", RUN_AS_USER="root", PASSWORD_FILE=d / "passwd", ACL_FILE=d / "acl",
            PERSISTENCE_DIR=d / "data", AUTOSAVE_INTERVAL_S=60, MAX_QUEUED_BYTES=1_000_000_000,
            LOCAL_PORT=self.central_ports["local"], TLS_PORT=self.central_ports["tls"], BIND_ADDRESS="127.0.0.1",
            CA_FILE=self.certs / "ca.crt", CERT_FILE=self.certs / "server.crt", KEY_FILE=self.certs / "server.key",
            LOG_DEST=f"file {d / 'mosquitto.log'}")

    def start_central(self) -> None:
        text = self.central_config()
        self.central = start_mosquitto_config(text, port=self.central_ports["local"], workdir=self.root / "central")

    def write_hq_config(self) -> None:
        assert self.pg is not None
        cfg: dict[str, Any] = {
            "version": 1,
            "mqtt": {"host": "127.0.0.1", "port": self.central_ports["local"], "client_id": "hq-ingest-test",
                     "username": HQ_USER, "password_env": "HQ_MQTT_PASSWORD", "keepalive_s": 5,
                     "share_group": self.share_group},
            "postgres": {"dsn": self.pg.dsn, "reconnect_max_backoff_s": 1.0},
            "ingest": {"batch_wait_s": 0.1, "stats_interval_s": 5.0, **self.ingest_overrides},
            "stores": [{"id": s, "name": s.upper()} for s in self.stores],
        }
        self.hq_config_path.write_text(yaml.safe_dump(cfg))

    def start_ingester(self, wait_subscribed: bool = True) -> None:
        self.ingester_runs += 1
        log = (self.root / f"ingest-{self.ingester_runs}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HQ_MQTT_PASSWORD": self.passwords[HQ_USER]}
        self.ingester = subprocess.Popen([sys.executable, "-m", "hq", "ingest", "--config", str(self.hq_config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log_path = self.root / f"ingest-{self.ingester_runs}.log"
        if wait_subscribed and not wait_for(lambda: "subscribed to" in log_path.read_text(), 30):
            raise RuntimeError(f"the ingester did not subscribe:\n{log_path.read_text()}")

    def kill_ingester(self) -> None:
        assert self.ingester is not None
        self.ingester.send_signal(signal.SIGKILL)
        self.ingester.wait()

    def start_edge_broker(self, store: str) -> Edge:
        d = self.root / store
        (d / "data").mkdir(parents=True, exist_ok=True)
        write_password_file(d / "passwd", {f"edge-{store}": self.passwords[f"edge-{store}"],
                                           f"screen-{store}": self.passwords[f"screen-{store}"]})
        (d / "acl").write_text(render_template("acl", STORE=store, PREFIX=DEFAULT_PREFIX, EDGE_USER=f"edge-{store}",
                                               SCREEN_USER=f"screen-{store}", OPERATOR_USER=f"operator-{store}"))
        port, ws = free_port(), free_port()
        text = render_template(
            "mosquitto-edge.conf", STORE=store, EDGE_USER=f"edge-{store}", SCREEN_USER=f"screen-{store}",
            RUN_AS_USER="root", PASSWORD_FILE=d / "passwd", ACL_FILE=d / "acl", PERSISTENCE_DIR=d / "data",
            MQTT_PORT=port, WS_PORT=ws, BIND_ADDRESS="127.0.0.1", LOG_DEST=f"file {d / 'mosquitto.log'}")
        bridge = render_template(
            "bridge.conf", STORE=store, CONNECTION_NAME=f"central-{store}", CENTRAL_HOST="127.0.0.1",
            CENTRAL_PORT=self.central_ports["tls"], LOCAL_PREFIX=f"{DEFAULT_PREFIX}/{store}",
            REMOTE_PREFIX=f"{DEFAULT_PREFIX}/{store}", BRIDGE_USERNAME=f"edge-{store}",
            BRIDGE_PASSWORD=self.passwords[f"edge-{store}"], BRIDGE_CLIENT_ID=f"bridge-{store}")
        for old, new in {"#bridge_cafile /etc/mosquitto/ca_certificates/central-ca.crt": f"bridge_cafile {self.certs / 'ca.crt'}",
                         "#bridge_insecure false": "bridge_insecure false",
                         "#bridge_tls_version tlsv1.2": "bridge_tls_version tlsv1.2"}.items():
            assert old in bridge, f"bridge.conf no longer has {old!r}"
            bridge = bridge.replace(old, new)
        # a short reconnect backoff keeps the drills short; production keeps the template's 2..60 s
        bridge = bridge.replace("restart_timeout 2 60", "restart_timeout 1 2")
        # no ws_port: the WebSocket listener may be disabled (render_template, Mosquitto < 2.0.12)
        broker = start_mosquitto_config(text + "\n" + bridge, port=port, workdir=d)
        tap = Tap(port, f"edge-{store}", self.passwords[f"edge-{store}"], Topics(store))
        edge = Edge(store, d, broker, d / "store.yaml", tap)
        self.write_store_config(edge)
        self.edges[store] = edge
        return edge

    def write_store_config(self, edge: Edge) -> None:
        cfg = yaml.safe_load(DEMO_CONFIG.read_text())
        cfg["store"] = {"id": edge.store, "name": edge.store.upper(), "timezone": "UTC"}
        cfg["model"]["threads"] = 1
        cfg["cameras"][0]["fps"] = 3  # through the clip faster: more events per second of drill
        cfg["cameras"][0]["source"] = str(videos_dir() / "one-by-one-person-detection.mp4")
        cfg["mqtt"] = {"host": "127.0.0.1", "port": edge.broker.port, "device_id": f"{edge.store}-edge",
                       "username": f"edge-{edge.store}", "password_env": "STORESENSE_MQTT_PASSWORD",
                       "keepalive_s": 2}
        cfg["data_dir"] = str(edge.dir / "box")
        cfg.pop("display", None)
        edge.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))

    def start_edge_run(self, store: str, *, realtime: bool = True, loop: bool = True) -> subprocess.Popen[bytes]:
        edge = self.edges[store]
        n = len(edge.runs) + 1
        events = edge.dir / f"events-{n}.jsonl"
        edge.events_files.append(events)
        cmd = [sys.executable, "-m", "edge.cli", "run", "--config", str(edge.config_path), "--events", str(events)]
        cmd += ["--realtime"] if realtime else []
        cmd += ["--loop"] if loop else []
        env = {**os.environ, "PYTHONPATH": str(ROOT), "STORESENSE_MQTT_PASSWORD": self.passwords[f"edge-{store}"],
               "STORESENSE_MODELS_DIR": str(models_dir())}
        log = (edge.dir / f"run-{n}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        edge.runs.append(proc)
        return proc

    # -- what PostgreSQL holds -----------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self.pg is not None
        try:
            with psycopg.connect(self.pg.dsn) as c:
                return c.execute(sql, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    def pg_event_ids(self, store: str) -> list[str]:
        return [r[0] for r in self.query("SELECT event_id FROM events WHERE store_id = %s", (store,))]

    def availability(self, store: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.query(
            "SELECT device_id, state FROM availability WHERE store_id = %s ORDER BY ts, id", (store,))]

    def dead_letters(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.query("SELECT topic, reason FROM dead_letter ORDER BY id")]

    def logs(self) -> str:
        parts = []
        for f in sorted(self.root.glob("ingest-*.log")) + sorted(self.root.glob("*/run-*.log")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    # -- teardown ----------------------------------------------------------------------------------

    def close(self) -> None:
        for edge in self.edges.values():
            for p in edge.runs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            edge.tap.close()
            edge.broker.stop()
        if self.ingester is not None and self.ingester.poll() is None:
            self.ingester.kill()
            self.ingester.wait()
        if self.central is not None:
            self.central.stop()
        if self.pg is not None:
            self.pg.remove()

    def __enter__(self) -> HqLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_gracefully(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_for(pred: Any, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return bool(pred())
