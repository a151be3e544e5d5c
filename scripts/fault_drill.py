#!/usr/bin/env python3
"""Fault drills against a real Mosquitto; prints one table (issue 12).

Each drill produces durable events (QoS 1 through the outbox) while a fault happens, and a
persistent subscriber (fixed client id, clean_start=false) counts what arrives:
produced / delivered / lost / duplicated, the statuses seen, and how long things took.

    python scripts/fault_drill.py            # all drills (disk-full needs root for a tmpfs)
    python scripts/fault_drill.py --only outage,disk_full
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.contract import Message  # noqa: E402
from mqtt_bridge.broker import start_mosquitto  # noqa: E402
from mqtt_bridge.config import MqttConfig  # noqa: E402
from mqtt_bridge.publisher import MqttPublisher  # noqa: E402
from mqtt_bridge.topics import Topics  # noqa: E402

T = Topics("drill")


@dataclass
class Row:
    drill: str
    produced: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    statuses: list[str] = field(default_factory=list)
    times: str = ""


class Watcher:
    """Persistent subscriber: events by id, availability, edge and camera statuses."""

    def __init__(self, port: int, client_id: str) -> None:
        self.ids: Counter[str] = Counter()
        self.statuses: list[str] = []
        self.lock = threading.Lock()
        self.port, self.client_id = port, client_id
        self.c: mqtt.Client | None = None
        self.connect()

    def connect(self) -> None:
        ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.on_connect = lambda cl, *a: cl.subscribe([(T.all_events(), 1), (f"{T.base}/edge/+/+", 1),
                                                    (f"{T.base}/camera/+/status", 1)])
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        c.loop_start()
        ready.wait(10)
        self.c = c

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            if "/events/" in m.topic:
                self.ids[json.loads(m.payload)["event_id"]] += 1
            elif m.topic.endswith("/availability"):
                self._note(f"availability:{m.payload.decode()}")
            else:
                p = json.loads(m.payload)
                self._note(f"{p.get('camera_id', 'edge')}:{p.get('state') or p.get('storage')}")

    def _note(self, s: str) -> None:
        if not self.statuses or self.statuses[-1] != s:
            self.statuses.append(s)

    def disconnect(self) -> None:
        if self.c is not None:
            self.c.disconnect()
            self.c.loop_stop()
            self.c = None

    def wait(self, pred: Callable[[], bool], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                if pred():
                    return True
            time.sleep(0.05)
        return False

    def score(self, row: Row, produced: list[str]) -> Row:
        with self.lock:
            row.produced = len(produced)
            row.delivered = sum(1 for i in produced if self.ids[i])
            row.lost = row.produced - row.delivered
            row.duplicated = sum(n - 1 for i, n in self.ids.items() if n > 1)
            row.statuses = list(self.statuses)
        return row


def publisher(port: int, data_dir: Path, **kw: object) -> MqttPublisher:
    pub = MqttPublisher(MqttConfig(port=port, keepalive_s=5, reconnect_max_backoff_s=1.0, device_id="drill-edge"), T,
                        data_dir=data_dir, **kw)  # type: ignore[arg-type]
    pub.start()
    return pub


def emit(pub: MqttPublisher, prefix: str, n: int, interval_s: float = 0.02) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    for i in ids:
        pub.emit([Message("event", "visit", {"event_id": i, "note": "drill event; " * 20}, "event")])
        time.sleep(interval_s)
    return ids


def drill_outage(workdir: Path) -> Row:
    broker = start_mosquitto()
    w = Watcher(broker.port, "drill-outage")
    pub = publisher(broker.port, workdir / "data")
    try:
        w.wait(lambda: "availability:online" in w.statuses, 10)
        ids = emit(pub, "before", 40)
        broker._stop_process()
        t_down = time.monotonic()
        ids += emit(pub, "during", 80)
        down_s = time.monotonic() - t_down
        broker.start()
        t_up = time.monotonic()
        w.disconnect()
        w.connect()
        ids += emit(pub, "after", 40)
        ok = w.wait(lambda: all(w.ids[i] for i in ids), 60)
        drain_s = time.monotonic() - t_up
        return w.score(Row("broker outage (stop/start)", times=f"down {down_s:.1f} s; all in {drain_s:.1f} s after"
                           + ("" if ok else " (TIMEOUT)")), ids)
    finally:
        pub.close(timeout_s=2)
        w.disconnect()
        broker.stop()


def drill_broker_restart_persistence(workdir: Path) -> Row:
    broker = start_mosquitto()
    w = Watcher(broker.port, "drill-persist")
    w.disconnect()  # away: the broker must queue for it, across its own restart
    pub = publisher(broker.port, workdir / "data")
    try:
        time.sleep(0.5)
        ids = emit(pub, "acked", 30)
        t0 = time.monotonic()
        while len(pub.outbox) and time.monotonic() - t0 < 20:
            time.sleep(0.05)
        acked_s = time.monotonic() - t0
        pub.close(timeout_s=2)
        broker.restart()
        w.connect()
        ok = w.wait(lambda: all(w.ids[i] for i in ids), 20)
        return w.score(Row("broker restart, subscriber away", times=f"acked in {acked_s:.1f} s; "
                           + ("delivered after restart" if ok else "NOT delivered")), ids)
    finally:
        w.disconnect()
        broker.stop()


_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from edge.contract import Message
from mqtt_bridge.config import MqttConfig
from mqtt_bridge.publisher import MqttPublisher
from mqtt_bridge.topics import Topics
T = Topics("drill")
pub = MqttPublisher(MqttConfig(port=int(sys.argv[1]), keepalive_s=2, device_id="drill-edge"), T, data_dir=Path(sys.argv[2]))
pub.start()
for i in range(60):
    pub.emit([Message("event", "visit", {"event_id": f"kill-{i}"}, "event")])
    time.sleep(0.01)
print("emitted", flush=True)
time.sleep(60)
"""


def drill_sigkill(workdir: Path) -> Row:
    broker = start_mosquitto()
    w = Watcher(broker.port, "drill-kill")
    try:
        broker._stop_process()  # events pile up in the outbox file: the broker is down
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(broker.port), str(workdir / "data"), str(REPO)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()
        broker.start()
        w.disconnect()
        w.connect()
        w.wait(lambda: "availability:online" in w.statuses, 15)
        time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        child.wait()
        will = w.wait(lambda: w.statuses[-1:] == ["availability:offline"], 15)
        will_s = time.monotonic() - t_kill
        ids = [f"kill-{i}" for i in range(60)]
        pub = publisher(broker.port, workdir / "data")  # restart on the same outbox file
        ok = w.wait(lambda: all(w.ids[i] for i in ids), 30)
        pub.close(timeout_s=2)
        return w.score(Row("edge SIGKILL, restart", times=f"Last Will {f'{will_s:.1f} s' if will else 'MISSING'}; "
                           + ("outbox delivered after restart" if ok else "outbox NOT delivered")), ids)
    finally:
        w.disconnect()
        broker.stop()


def drill_disk_full(workdir: Path) -> Row:
    from edge.history import HistorySink
    from edge.sinks import FanoutSink

    mnt = workdir / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        return Row("disk full (3 MB tmpfs)", times="SKIPPED: cannot mount a tmpfs (needs root)")
    broker = start_mosquitto()
    w = Watcher(broker.port, "drill-disk")
    history = HistorySink(mnt / "history.db", retention_days=30, max_size_mb=100, topics=T, commit_interval_s=0.1)
    pub = publisher(broker.port, mnt, status_extra=lambda: {"history_dropped": history.dropped,
                                                            "history_disk_full": history.disk_full})
    sink = FanoutSink([pub, history])
    ids: list[str] = []

    def put(prefix: str, n: int) -> None:
        for i in range(n):
            eid = f"{prefix}-{i}"
            ids.append(eid)
            sink.emit([Message("event", "visit", {"event_id": eid, "note": "drill event; " * 60}, "event"),
                       Message("zone_state", "z", {"occupancy": i, "note": "zone; " * 100}, "state")])
            time.sleep(0.02)

    try:
        w.wait(lambda: "availability:online" in w.statuses, 10)
        put("before", 8)
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        for size in (65536, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
        os.close(fd)
        t_full = time.monotonic()
        put("full", 16)
        w.wait(lambda: "edge:disk_full" in w.statuses, 10)
        seen_s = time.monotonic() - t_full
        os.unlink(filler)
        time.sleep(6)  # the outbox retries the disk every 5 s
        put("after", 8)
        ok = w.wait(lambda: all(w.ids[i] for i in ids), 30)
        return w.score(Row("disk full (3 MB tmpfs)", times=f"disk_full status after {seen_s:.1f} s; history dropped "
                           f"{history.dropped}; recovered: {not pub.stats.disk_full}" + ("" if ok else " (TIMEOUT)")), ids)
    finally:
        sink.close()
        w.disconnect()
        broker.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def drill_bad_camera(workdir: Path) -> Row:
    import yaml

    from edge.resources import videos_dir

    broker = start_mosquitto()
    w = Watcher(broker.port, "drill-cam")
    (workdir / "empty.mp4").write_bytes(b"")
    cfg = {"version": 1, "store": {"id": "drill"}, "history": {"enabled": False}, "data_dir": str(workdir / "data"),
           "mqtt": {"port": broker.port, "device_id": "drill-edge"},
           "cameras": [{"id": "broken", "source": str(workdir / "empty.mp4")},
                       {"id": "missing", "source": str(workdir / "nope.mp4")},
                       {"id": "healthy", "source": str(videos_dir() / "people-detection.gif")}]}
    path = workdir / "store.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(path)], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    took = time.monotonic() - t0
    w.wait(lambda: "healthy:ended" in w.statuses, 10)
    row = w.score(Row("1 empty + 1 missing + 1 healthy camera"), [])
    row.times = f"run exit {res.returncode} after {took:.1f} s; traceback: {'Traceback' in res.stderr}"
    w.disconnect()
    broker.stop()
    return row


def drill_stalled(workdir: Path) -> Row:
    import cv2
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from edge.sources import LiveSource
    from tests.test_hardening import _StallingCamera

    jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()
    cam = _StallingCamera(jpeg, frames_before_stall=10)
    states: list[tuple[float, str]] = []
    src = LiveSource("door", cam.url, read_timeout_s=5.0, initial_backoff_s=0.2,
                     on_state=lambda _c, s, _r: states.append((time.monotonic(), s)))
    src.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30 and not (src.stalls and cam.connections >= 2):
        src.latest()
        time.sleep(0.05)
    src.close()
    cam.close()
    seq = [s for _, s in states]
    running = next((t for t, s in states if s == "running"), t0)
    stalled = next((t for t, s in states if s == "stalled"), None)
    return Row("stalled stream (5 s read timeout)", statuses=[f"door:{s}" for s in seq],
               times=f"stalled {stalled - running:.1f} s after connect; reconnects {src.stats.reconnects}"
               if stalled else "never reported stalled")


DRILLS = {"outage": drill_outage, "persistence": drill_broker_restart_persistence, "sigkill": drill_sigkill,
          "disk_full": drill_disk_full, "bad_camera": drill_bad_camera, "stalled": drill_stalled}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated: " + ",".join(DRILLS))
    args = ap.parse_args()
    from edge.resources import videos_dir

    os.environ.setdefault("STORESENSE_VIDEOS_DIR", str(videos_dir()))
    names = args.only.split(",") if args.only else list(DRILLS)
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"storesense-drill-{name}-") as tmp:
            t0 = time.monotonic()
            try:
                row = DRILLS[name](Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a drill that breaks is a row, not the end
                row = Row(name, times=f"DRILL FAILED: {type(exc).__name__}: {exc}")
            row.times += f" [{time.monotonic() - t0:.0f} s]"
            rows.append(row)
            print(f"done: {row.drill}", file=sys.stderr, flush=True)
    print(f"| {'drill':<38} | produced | delivered | lost | dup | statuses seen | times |")
    print(f"|{'-' * 40}|---------:|----------:|-----:|----:|---|---|")
    for r in rows:
        st = " → ".join(r.statuses[:8]) + (" …" if len(r.statuses) > 8 else "")
        print(f"| {r.drill:<38} | {r.produced:8d} | {r.delivered:9d} | {r.lost:4d} | {r.duplicated:3d} | {st} | {r.times} |")
    return 1 if any(r.lost for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
