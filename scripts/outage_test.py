#!/usr/bin/env python3
"""Broker outage drill: emit events and live state while Mosquitto is down, then count.

    python scripts/outage_test.py                 # 60 s outage, default publisher config
    python scripts/outage_test.py --outage-s 5 --max-backoff-s 2

A real Mosquitto on ephemeral loopback ports is stopped for ``--outage-s`` while the
publisher keeps emitting events (QoS 1, outbox) and lane state (retained). A persistent-session
subscriber counts what arrives. Printed: events in/out, duplicates, losses, order, reconnect
delay after the broker came back, time until a fresh subscriber sees every lane's state (as of
the outage), and time until the outbox is empty. tests/test_publisher.py runs the same drill
with a short outage and asserts on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.contract import Message
from mqtt_bridge.broker import start_mosquitto
from mqtt_bridge.config import MqttConfig
from mqtt_bridge.publisher import MqttPublisher, find_image_data
from mqtt_bridge.topics import Topics


@dataclass
class OutageResult:
    outage_s: float
    events_in: int = 0
    events_received: int = 0  # including duplicates
    events_unique: int = 0
    duplicates: int = 0
    lost: int = 0
    in_order: bool = False
    events_during_outage: int = 0
    reconnect_after_restart_s: float | None = None
    state_visible_after_reconnect_s: float | None = None
    outbox_empty_after_reconnect_s: float | None = None
    payloads_checked: int = 0
    payloads_with_image_data: int = 0
    refused_by_privacy_guard: int = 0
    publisher_stats: dict[str, Any] = field(default_factory=dict)


class _Counter:
    """Persistent-session subscriber: it misses nothing while it is away from the broker."""

    def __init__(self, port: int, topics: Topics) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.payloads: list[bytes] = []
        self.topics = topics
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"outage-counter-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv311, clean_session=False)
        self.c.reconnect_delay_set(1, 1)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.everything(), qos=1)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.payloads.append(bytes(m.payload))
            if m.topic.startswith(f"{self.topics.base}/events/"):
                self.events.append(json.loads(m.payload))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _fresh_state(port: int, topics: Topics, lanes: list[str], min_counter: dict[str, int], timeout_s: float) -> float | None:
    """Seconds until a new subscriber sees, for every lane, a state at least as new as ``min_counter``."""
    t0 = time.monotonic()
    seen: dict[str, int] = {}
    done = threading.Event()

    def on_message(c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        lane = m.topic.split("/")[-2]
        seen[lane] = max(seen.get(lane, -1), int(json.loads(m.payload)["counter"]))
        if all(seen.get(x, -1) >= min_counter[x] for x in lanes):
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topics.all_lane_states(), qos=1)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    ok = done.wait(timeout_s)
    c.disconnect()
    c.loop_stop()
    return time.monotonic() - t0 if ok else None


def run_outage(
    outage_s: float = 60.0,
    *,
    before_s: float = 2.0,
    after_s: float = 2.0,
    rate_hz: float = 20.0,
    lanes: int = 3,
    max_backoff_s: float = 30.0,
    keepalive_s: int = 10,
    workdir: Path | None = None,
    drain_timeout_s: float = 60.0,
) -> OutageResult:
    wd = workdir or Path(tempfile.mkdtemp(prefix="storesense-outage-"))
    # persistence: the counting subscriber's session (and so its queue) survives the restart;
    # "user root" keeps mosquitto able to write its db into a private temp dir when run as root
    broker = start_mosquitto(extra_config="persistence true\nuser root\n", workdir=wd / "broker")
    topics = Topics("store-outage")
    lane_ids = [f"l{i}" for i in range(1, lanes + 1)]
    cfg = MqttConfig(port=broker.port, keepalive_s=keepalive_s, reconnect_max_backoff_s=max_backoff_s,
                     device_id="edge-outage")
    pub = MqttPublisher(cfg, topics, data_dir=wd / "data")
    result = OutageResult(outage_s=outage_s)
    counter = _Counter(broker.port, topics)
    lane_counter = dict.fromkeys(lane_ids, -1)
    phase = {"down": False}
    stop = threading.Event()
    lock = threading.Lock()

    def emitter() -> None:
        seq = 0
        next_state = 0.0
        period_s = 1.0 / rate_hz
        t_next = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            msgs = [Message("event", "queue_wait", {
                "schema": "storesense.event.queue_wait/1", "store_id": topics.store, "timestamp_s": time.time(),
                "event_id": f"store-outage:l1:{seq}", "seq": seq, "wait_s": 12.5}, "event")]
            if seq % 50 == 7:  # a buggy module tries to ship a picture: must never reach the broker
                msgs.append(Message("event", "debug", {"event_id": f"x{seq}", "image": "AAAA"}, "event"))
            if now >= next_state:
                next_state = now + 0.5
                with lock:
                    for lane in lane_ids:
                        lane_counter[lane] += 1
                        msgs.append(Message("lane_state", lane, {
                            "schema": "storesense.lane_state/1", "store_id": topics.store, "lane_id": lane,
                            "timestamp_s": time.time(), "counter": lane_counter[lane]}, "state"))
            pub.emit(msgs)
            result.events_in += 1
            if phase["down"]:
                result.events_during_outage += 1
            seq += 1
            t_next += period_s
            time.sleep(max(0.0, t_next - time.monotonic()))

    try:
        pub.start()
        t_end = time.monotonic() + 10
        while not pub.connected and time.monotonic() < t_end:
            time.sleep(0.05)
        th = threading.Thread(target=emitter, daemon=True)
        th.start()
        time.sleep(before_s)
        broker.stop()
        phase["down"] = True
        time.sleep(outage_s)
        with lock:
            last_outage_state = dict(lane_counter)
        reconnects_before = pub.stats.reconnects
        broker.start()
        t_up = time.monotonic()
        phase["down"] = False
        while pub.stats.reconnects == reconnects_before and time.monotonic() - t_up < max_backoff_s + 30:
            time.sleep(0.02)
        t_reconnect = time.monotonic()
        result.reconnect_after_restart_s = t_reconnect - t_up
        # includes connecting the fresh subscriber; None if not within 10 s
        result.state_visible_after_reconnect_s = _fresh_state(broker.port, topics, lane_ids, last_outage_state, 10.0)
        while pub.stats.queued > 0 and time.monotonic() - t_reconnect < drain_timeout_s:
            time.sleep(0.02)
        result.outbox_empty_after_reconnect_s = time.monotonic() - t_reconnect
        time.sleep(max(0.0, after_s - (time.monotonic() - t_reconnect)))
        stop.set()
        th.join()
        t_end = time.monotonic() + drain_timeout_s
        while time.monotonic() < t_end:
            with counter.lock:
                if len({e["event_id"] for e in counter.events}) >= result.events_in:
                    break
            time.sleep(0.05)
        time.sleep(0.5)  # late duplicates
    finally:
        stop.set()
        pub.close(timeout_s=5.0)
        counter.close()
        broker.stop()

    with counter.lock:
        events = list(counter.events)
        payloads = list(counter.payloads)
    first_seen: list[int] = []
    ids: set[str] = set()
    for e in events:
        if e["event_id"] not in ids:
            ids.add(e["event_id"])
            first_seen.append(int(e["seq"]))
    result.events_received = len(events)
    result.events_unique = len(ids)
    result.duplicates = len(events) - len(ids)
    result.lost = result.events_in - len(ids & {f"store-outage:l1:{i}" for i in range(result.events_in)})
    result.in_order = first_seen == sorted(first_seen)
    result.payloads_checked = len(payloads)
    result.payloads_with_image_data = sum(1 for p in payloads if _has_image(p))
    stats = pub.stats
    result.refused_by_privacy_guard = stats.refused
    result.publisher_stats = asdict(stats)
    return result


def _has_image(payload: bytes) -> bool:
    try:
        obj = json.loads(payload)
    except ValueError:
        return payload not in (b"online", b"offline", b"stopped")
    return find_image_data(obj) is not None


def child_main(port: int, data_dir: str, keepalive_s: int) -> int:
    """An edge publisher that runs until it is killed (for the Last Will measurements)."""
    cfg = MqttConfig(port=port, keepalive_s=keepalive_s, device_id="edge-victim")
    pub = MqttPublisher(cfg, Topics("store-lwt"), data_dir=Path(data_dir))
    pub.start()
    while True:
        time.sleep(1.0)


def measure_last_will(signal_name: str, keepalive_s: int = 2, timeout_s: float = 30.0) -> float | None:
    """Seconds from SIGKILL/SIGSTOP of a publisher process until ``offline`` is retained."""
    import os
    import signal
    import subprocess
    import sys

    broker = start_mosquitto()
    topics = Topics("store-lwt")
    got: list[tuple[float, bytes]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topics.availability("edge-victim"), qos=1)
    c.on_message = lambda cl, u, m: got.append((time.monotonic(), bytes(m.payload)))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    data_dir = tempfile.mkdtemp(prefix="storesense-lwt-")
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(broker.port), data_dir,
                              str(keepalive_s)], cwd=Path(__file__).resolve().parents[1])
    try:
        t_end = time.monotonic() + timeout_s
        while not any(p == b"online" for _, p in got) and time.monotonic() < t_end:
            time.sleep(0.02)
        if not any(p == b"online" for _, p in got):
            return None
        t_kill = time.monotonic()
        os.kill(child.pid, getattr(signal, signal_name))
        while time.monotonic() < t_end:
            off = [t for t, p in got if p == b"offline" and t >= t_kill]
            if off:
                return off[0] - t_kill
            time.sleep(0.01)
        return None
    finally:
        child.kill()
        child.wait()
        c.disconnect()
        c.loop_stop()
        broker.stop()


def main() -> int:
    import sys

    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        return child_main(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--rate-hz", type=float, default=20.0, help="events per second")
    ap.add_argument("--max-backoff-s", type=float, default=MqttConfig().reconnect_max_backoff_s)
    ap.add_argument("--keepalive-s", type=int, default=MqttConfig().keepalive_s)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("storesense.mqtt").setLevel(logging.CRITICAL)  # the privacy refusals are expected
    r = run_outage(args.outage_s, rate_hz=args.rate_hz, max_backoff_s=args.max_backoff_s, keepalive_s=args.keepalive_s)
    for key, value in asdict(r).items():
        if key != "publisher_stats":
            print(f"{key:34s} {value}")
    print(f"{'publisher_stats':34s} {r.publisher_stats}")
    for sig in ("SIGKILL", "SIGSTOP"):
        print(f"{'last_will_after_' + sig.lower() + '_s':34s} {measure_last_will(sig, keepalive_s=args.keepalive_s)}"
              f"  (keep-alive {args.keepalive_s} s)")
    ok = r.lost == 0 and r.in_order and r.payloads_with_image_data == 0
    print("RESULT", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
