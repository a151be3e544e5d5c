#!/usr/bin/env python3
"""Load test of the chain HQ path: N simulated stores -> edge Mosquittos -> bridges (TLS) ->
central Mosquitto -> ``storesense hq ingest`` -> PostgreSQL, all on this machine.

    PYTHONPATH=$PWD python scripts/hq_load.py --stores 500 --steady-s 120 --outage-s 60
    PYTHONPATH=$PWD python scripts/hq_load.py --stores 100 200 500 --steady-s 60 --outage-s 0

Traffic per store (like a real box; payloads shaped like docs/messages.md): state every second
for each of ``--lanes`` lanes and ``--zones`` zones plus the store state, events at shopper
rates (``--customers-per-hour``: entry, greeting and queue_wait per customer, a visit for
half of them), one heatmap per camera per hour. Stores are spread over ``--regions`` edge
brokers, each bridged into the central broker (one bridge carries a region's stores: the
per-store bridges of a real chain would only add connections). Events are stamped with the
wall clock at publish, so ``received_at - ts`` in PostgreSQL is the end-to-end ingest lag.

Printed per N: offered and ingested messages/s, event lag p50/p95/max over the steady phase,
CPU of each component, and (``--outage-s``) the central broker outage: events published during
it, and the time from the broker's restart until the lag is back under 5 s. At the end every
published event is counted in PostgreSQL (lost must be 0).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from hq.postgres import start_postgres  # noqa: E402
from mqtt_bridge.broker import free_port, render_template, start_mosquitto_config, write_password_file  # noqa: E402
from tests.certs import make_certs  # noqa: E402

PREFIX = "storesense/v1"
HQ_PW = "hq-" + os.urandom(6).hex()
BRIDGE_PW = "br-" + os.urandom(6).hex()


def store_id(region: int, i: int) -> str:
    return f"r{region}-s{i:04d}"


def lane_state(store: str, lane: int, now: float) -> dict[str, Any]:
    q = random.randint(0, 6)
    return {"schema": "storesense.lane_state/1", "store_id": store, "lane_id": f"lane-{lane}", "label": f"Lane {lane}",
            "camera_id": f"cam-{lane}", "timestamp_s": now, "open": True, "open_source": "staff", "command": "auto",
            "queue_length": q, "queue_length_smoothed": q + 0.1, "server_busy": True, "predicted_wait_s": 30.0 * q,
            "predicted_wait_low_s": 20.0 * q, "predicted_wait_high_s": 45.0 * q, "service_rate_per_min": 2.0,
            "service_rate_source": "observed", "services_observed": 100, "measured_wait_recent_s": 60.0,
            "measured_wait_mean_s": 58.0, "littles_law_wait_s": 61.0, "stale": False, "stale_reason": None,
            "recommended": lane == 1}


def zone_state(store: str, zone: int, now: float) -> dict[str, Any]:
    return {"schema": "storesense.zone_state/1", "store_id": store, "timestamp_s": now, "zone_id": f"zone-{zone}",
            "label": f"Zone {zone}", "kind": "dwell", "camera_id": "cam-1", "occupancy": random.randint(0, 8),
            "staff_present": True, "staff_count": 1, "visits_last_hour": 40, "visits_completed_last_hour": 38,
            "stops_last_hour": 12, "dwell_median_s": 35.0, "dwell_p90_s": 90.0, "dwell_mean_s": 44.0,
            "response_sla_s": 30.0, "response_events_last_hour": 10, "response_compliance_pct": 80.0,
            "response_latency_median_s": 12.0, "response_pending": 0, "short_tracks_ignored": 0,
            "distance_method": "floor"}


def event(store: str, kind: str, seq: int, now: float) -> dict[str, Any]:
    p: dict[str, Any] = {"schema": f"storesense.event.{kind}/1", "store_id": store, "timestamp_s": now,
                         "event_id": f"{store}-{kind}-{seq}-{int(now * 1000)}", "type": kind, "camera_id": "cam-1"}
    if kind == "entry":
        p |= {"zone_id": "entrance", "entered_s": now - 1.0, "track_age_s": 1.5}
    elif kind == "greeting":
        lat = random.expovariate(1 / 8.0)
        p |= {"zone_id": "entrance", "track_id": seq, "outcome": "greeted", "started_s": now - lat, "latency_s": lat,
              "sla_s": 10.0, "within_sla": lat <= 10.0, "customer_left": False, "distance_method": "floor",
              "distance_m": 1.2}
    elif kind == "queue_wait":
        w = random.expovariate(1 / 90.0)
        p |= {"lane_id": "lane-1", "track_id": seq, "outcome": "served", "joined_s": now - w, "served_s": now,
              "wait_s": w, "queue_length_at_join": 2}
    else:
        p |= {"zone_id": "zone-1", "track_id": seq, "enter_s": now - 40, "exit_s": now, "dwell_s": 40.0, "stop": True}
    return p


def heatmap(store: str, camera: int, now: float) -> dict[str, Any]:
    h = now - now % 3600 - 3600
    return {"schema": "storesense.heatmap/1", "store_id": store, "camera_id": f"cam-{camera}", "timestamp_s": now,
            "event_id": f"heatmap-{store}-{camera}-{int(h)}", "hour_start_s": h, "hour_end_s": h + 3600,
            "complete": True, "units": "m", "origin": [0, 0], "cell_size": 0.25, "shape": [40, 30],
            "cells": [[i, j, round(random.random() * 50, 1)] for i in range(0, 40, 3) for j in range(0, 30, 3)],
            "total_person_s": 5000.0, "suppressed_cells": 0, "suppressed_person_s": 0.0, "outside_person_s": 0.0,
            "min_tracks_per_cell": 1, "tracks": 120}


def publisher(port: int, region: int, stores: list[str], args: argparse.Namespace, stop: Any, counters: Any,
              idx: int) -> None:
    """One process: publishes the traffic of ``stores`` into its region's edge broker, once a second."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{region}-{idx}", protocol=mqtt.MQTTv5)
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    expiry = Properties(PacketTypes.PUBLISH)
    expiry.MessageExpiryInterval = 120
    ev_rate = args.customers_per_hour / 3600.0
    seq = 0
    next_tick = time.time()
    hm_slot = {s: (hash(s) % 3600) for s in stores}
    while not stop.is_set():
        now = time.time()
        n_state = n_events = 0
        for s in stores:
            base = f"{PREFIX}/{s}"
            for lane in range(1, args.lanes + 1):
                c.publish(f"{base}/lane/lane-{lane}/state", json.dumps(lane_state(s, lane, now)), qos=1, retain=True,
                          properties=expiry)
            for zone in range(1, args.zones + 1):
                c.publish(f"{base}/zone/zone-{zone}/state", json.dumps(zone_state(s, zone, now)), qos=1, retain=True,
                          properties=expiry)
            c.publish(f"{base}/store/all/state", json.dumps({"schema": "storesense.store_state/1", "store_id": s,
                      "timestamp_s": now, "recommended_lane": "lane-1", "lanes_open": args.lanes,
                      "lanes": [f"lane-{i}" for i in range(1, args.lanes + 1)], "active_alerts": []}),
                      qos=1, retain=True, properties=expiry)
            n_state += args.lanes + args.zones + 1
            if random.random() < ev_rate:  # one customer: entry, greeting, queue wait, half a visit
                kinds = ["entry", "greeting", "queue_wait"] + (["visit"] if random.random() < 0.5 else [])
                for kind in kinds:
                    seq += 1
                    c.publish(f"{base}/events/{kind}", json.dumps(event(s, kind, seq, now)), qos=1)
                n_events += len(kinds)
            if int(now) % 3600 == hm_slot[s]:
                for cam in range(1, args.cameras + 1):
                    c.publish(f"{base}/camera/cam-{cam}/heatmap", json.dumps(heatmap(s, cam, now)), qos=1)
                    n_events += 0
        with counters.get_lock():
            counters[idx * 2] += n_state
            counters[idx * 2 + 1] += n_events
        next_tick += 1.0
        delay = next_tick - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.time()  # behind: the offered load is what we manage (reported)
    time.sleep(2.0)  # let paho flush
    c.disconnect()
    c.loop_stop()


class Chain:
    def __init__(self, root: Path, regions: int, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.certs = make_certs(root / "certs")
        self.pg = start_postgres({"shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "15min"})
        cdir = root / "central"
        (cdir / "data").mkdir(parents=True)
        write_password_file(cdir / "passwd", {"hq-ingest": HQ_PW, "loadbridge": BRIDGE_PW})
        (cdir / "acl").write_text(render_template("acl-hq", HQ_USER="hq-ingest", PREFIX=PREFIX)
                                  + f"\nuser loadbridge\ntopic readwrite {PREFIX}/#\n")
        self.central_ports = {"local": free_port(), "tls": free_port()}
        self.central_text = render_template(
            "mosquitto-central.conf", RUN_AS_USER="root", PASSWORD_FILE=cdir / "passwd", ACL_FILE=cdir / "acl",
            PERSISTENCE_DIR=cdir / "data", AUTOSAVE_INTERVAL_S=60, MAX_QUEUED_BYTES=4_000_000_000,
            LOCAL_PORT=self.central_ports["local"], TLS_PORT=self.central_ports["tls"], BIND_ADDRESS="127.0.0.1",
            CA_FILE=self.certs / "ca.crt", CERT_FILE=self.certs / "server.crt", KEY_FILE=self.certs / "server.key",
            LOG_DEST=f"file {cdir / 'mosquitto.log'}")
        self.central = start_mosquitto_config(self.central_text, port=self.central_ports["local"], workdir=cdir)
        self.edges = [self._edge(r) for r in range(regions)]
        self.ingester: Any = None

    def _edge(self, region: int) -> Any:
        d = self.root / f"region-{region}"
        (d / "data").mkdir(parents=True)
        port = free_port()
        bridge = "\n".join([
            f"connection region-{region}", f"address 127.0.0.1:{self.central_ports['tls']}",
            "bridge_protocol_version mqttv50", f"remote_clientid bridge-region-{region}", "remote_username loadbridge",
            f"remote_password {BRIDGE_PW}", "cleansession false", "restart_timeout 1 2", "keepalive_interval 30",
            "try_private true", f"bridge_cafile {self.certs / 'ca.crt'}", "bridge_insecure false",
            # its notification (and Last Will) under the prefix the ACL lets it write, as bridge.conf does
            "notifications true", f"notification_topic {PREFIX}/region-{region}/edge/bridge/connection",
            # the shipped bridge.conf's topic lines, with a store level wildcard (a region's bridge)
            *(f"topic {t} out 1 {PREFIX}/ {PREFIX}/" for t in
              ("+/lane/+/state", "+/zone/+/state", "+/store/+/+", "+/camera/+/+", "+/events/+", "+/edge/+/availability")),
        ])
        text = "\n".join(["user root", f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence true",
                          f"persistence_location {d / 'data'}/",
                          "max_queued_messages 5000000",  # a big queue for the outage
                          f"log_dest file {d / 'mosquitto.log'}", "log_type error", "log_type warning", bridge, ""])
        return start_mosquitto_config(text, port=port, workdir=d)

    def start_ingester(self, batch_wait_s: float, batch_max: int) -> None:
        cfg = {"mqtt": {"host": "127.0.0.1", "port": self.central_ports["local"], "client_id": "hq-load",
                        "username": "hq-ingest", "password_env": "HQ_PW", "receive_maximum": 5000},
               "postgres": {"dsn": self.pg.dsn},
               "ingest": {"batch_wait_s": batch_wait_s, "batch_max_messages": batch_max, "stats_interval_s": 5.0}}
        (self.root / "hq.yaml").write_text(yaml.safe_dump(cfg))
        import subprocess

        env = {**os.environ, "HQ_PW": HQ_PW, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.ingest_log = self.root / "ingest.log"
        self.ingester = subprocess.Popen([sys.executable, "-m", "hq", "ingest", "--config", str(self.root / "hq.yaml")],
                                         stdout=self.ingest_log.open("wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while "subscribed to" not in self.ingest_log.read_text():
            if time.time() > deadline:
                raise RuntimeError(self.ingest_log.read_text())
            time.sleep(0.2)

    def close(self) -> None:
        if self.ingester is not None and self.ingester.poll() is None:
            self.ingester.terminate()
            self.ingester.wait(30)
        for e in self.edges:
            e.stop()
        self.central.stop()
        self.pg.remove()


def cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def pg_cpu_s(pg: Any) -> float:
    import subprocess

    out = subprocess.run(["pgrep", "-u", pg.user or str(os.getuid()), "postgres"], capture_output=True, text=True).stdout
    return sum(cpu_s(int(p)) for p in out.split())


def committed(log: Path) -> int:
    n = 0
    for line in log.read_text().splitlines():
        if "committed=" in line:
            n = int(line.split("committed=")[1].split()[0])
    return n


def lag_stats(pg: Any, since: float, until: float) -> tuple[float | None, float | None, float | None, int]:
    with psycopg.connect(pg.dsn) as c:
        row = c.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.95) WITHIN GROUP (ORDER BY l), "
            "max(l), count(*) FROM (SELECT extract(epoch FROM received_at - ts) AS l FROM events "
            "WHERE ts >= to_timestamp(%s) AND ts < to_timestamp(%s)) x", (since, until)).fetchone()
    assert row is not None
    f = lambda v: None if v is None else float(v)  # noqa: E731  (numeric -> float for JSON)
    return f(row[0]), f(row[1]), f(row[2]), int(row[3])


def newest_event_age_s(pg: Any, regions: int) -> float:
    """The oldest of the regions' newest committed events (each bridge delivers in order)."""
    with psycopg.connect(pg.dsn) as c:
        rows = c.execute("SELECT split_part(store_id, '-', 1), extract(epoch FROM max(ts)) FROM events "
                         "WHERE ts > now() - interval '1 hour' GROUP BY 1").fetchall()
    if len(rows) < regions:
        return float("inf")
    return time.time() - min(float(r[1]) for r in rows)


def run_one(n_stores: int, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"storesense-hq-load-{n_stores}-"))
    chain = Chain(root, args.regions, args)
    res: dict[str, Any] = {"stores": n_stores}
    try:
        chain.start_ingester(args.batch_wait_s, args.batch_max)
        stop = mp.Event()
        counters = mp.Array("q", 2 * args.publishers)
        procs = []
        for k in range(args.publishers):  # publisher k: region k % regions, every publishers-th store
            region = k % args.regions
            mine = [store_id(region, i) for i in range(n_stores) if i % args.publishers == k]
            p = mp.Process(target=publisher, args=(chain.edges[region].port, region, mine, args, stop, counters, k),
                           daemon=True)
            p.start()
            procs.append(p)
        time.sleep(args.warmup_s)
        pids = {"ingester": [chain.ingester.pid], "central mosquitto": [chain.central.proc.pid],  # type: ignore[union-attr]
                "edge mosquittos": [e.proc.pid for e in chain.edges], "publishers": [p.pid for p in procs]}
        cpu0 = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()} | {"postgres": pg_cpu_s(chain.pg)}
        c0, pub0, t0 = committed(chain.ingest_log), sum(counters[:]), time.time()
        time.sleep(args.steady_s)
        c1, pub1, t1 = committed(chain.ingest_log), sum(counters[:]), time.time()
        cpu1 = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()} | {"postgres": pg_cpu_s(chain.pg)}
        res["offered_msgs_per_s"] = round((pub1 - pub0) / (t1 - t0))
        res["ingested_msgs_per_s"] = round((c1 - c0) / (t1 - t0))
        p50, p95, mx, n = lag_stats(chain.pg, t0, t1 - 6)
        res |= {"lag_p50_s": p50, "lag_p95_s": p95, "lag_max_s": mx, "events_in_window": n}
        res["cpu_cores"] = {k: round((cpu1[k] - cpu0[k]) / (t1 - t0), 2) for k in cpu0}
        if args.outage_s > 0:
            ev_before = sum(counters[1::2])
            chain.central.stop()
            time.sleep(args.outage_s)
            res["events_published_during_outage"] = sum(counters[1::2]) - ev_before
            chain.central.start()
            t_up = time.time()
            while newest_event_age_s(chain.pg, args.regions) > 5.0 and time.time() - t_up < args.outage_s * 10 + 120:
                time.sleep(0.5)
            res["recovery_s"] = round(time.time() - t_up, 1)
            time.sleep(10)
            _, p95b, mxb, _ = lag_stats(chain.pg, time.time() - 8, time.time() - 4)
            res["lag_after_recovery_p95_s"] = p95b
        stop.set()
        for p in procs:
            p.join(30)
        published_events = sum(counters[1::2])
        deadline = time.time() + 300
        while time.time() < deadline:
            with psycopg.connect(chain.pg.dsn) as c:
                got = c.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
            if got >= published_events:
                break
            time.sleep(1)
        res["events_published"] = published_events
        res["events_in_postgres"] = got
        res["events_lost"] = published_events - got
    finally:
        chain.close()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stores", type=int, nargs="+", default=[500])
    ap.add_argument("--lanes", type=int, default=3)
    ap.add_argument("--zones", type=int, default=3)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--customers-per-hour", type=float, default=300.0)
    ap.add_argument("--regions", type=int, default=2, help="edge brokers, each bridged to the central one")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes (a multiple of --regions)")
    ap.add_argument("--warmup-s", type=float, default=20.0)
    ap.add_argument("--steady-s", type=float, default=60.0)
    ap.add_argument("--outage-s", type=float, default=0.0, help="stop the central broker this long after the steady phase")
    ap.add_argument("--batch-wait-s", type=float, default=0.5)
    ap.add_argument("--batch-max", type=int, default=5000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.publishers % args.regions:
        ap.error("--publishers must be a multiple of --regions")
    rows = []
    for n in args.stores:
        r = run_one(n, args)
        print(json.dumps(r), flush=True)
        rows.append(r)
    print("\n| stores | offered msg/s | ingested msg/s | event lag p50 / p95 / max (s) | CPU cores: ingester, PostgreSQL, central, edges, publishers | outage (s) | events during outage | recovery to lag ≤ 5 s (s) | events lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = r["cpu_cores"]
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"| {r['stores']} | {r['offered_msgs_per_s']} | {r['ingested_msgs_per_s']} | {f(r['lag_p50_s'])} / {f(r['lag_p95_s'])} / {f(r['lag_max_s'])} | "
              f"{cpu['ingester']}, {cpu['postgres']}, {cpu['central mosquitto']}, {cpu['edge mosquittos']}, {cpu['publishers']} | "
              f"{args.outage_s:.0f} | {r.get('events_published_during_outage', '-')} | {r.get('recovery_s', '-')} | {r['events_lost']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
