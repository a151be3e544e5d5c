"""Chain HQ on real components: PostgreSQL (initdb/pg_ctl), a central Mosquitto with TLS bridges
in from two edge Mosquittos, the ingester as a subprocess, two ``storesense run`` edges on the
sample clip (tests/hq_lab.py). One lab per module: PostgreSQL and five processes are costly."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hq.schema import MIGRATIONS, drop_expired_partitions, ensure_partitions, migrate
from tests.hq_lab import HqLab, wait_for

ROOT = Path(__file__).resolve().parents[1]


def _drills_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("hq_drills", ROOT / "scripts" / "hq_drills.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hq_drills"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HqLab]:
    with HqLab(tmp_path_factory.mktemp("hq-lab")) as lab:
        lab.start()
        yield lab


def _central_client(lab: HqLab, store: str) -> mqtt.Client:
    """A store's credentials on the central broker's TLS listener (what its bridge uses)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{store}-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    c.username_pw_set(f"edge-{store}", lab.passwords[f"edge-{store}"])
    c.tls_set(ca_certs=str(lab.certs / "ca.crt"))
    c.connect("127.0.0.1", lab.central_ports["tls"])
    c.loop_start()
    return c


def test_bad_input_is_parked_counted_and_the_ingester_carries_on(lab: HqLab) -> None:
    c = _central_client(lab, "store-a")
    base = "storesense/v1/store-a"
    now = time.time()
    good = {"schema": "storesense.event.entry/1", "store_id": "store-a", "timestamp_s": now, "event_id": "raw-ok-1",
            "type": "entry", "camera_id": "c", "zone_id": "door", "entered_s": now, "track_age_s": 1.0}
    bad = [
        (f"{base}/events/entry", b"{not json"),
        (f"{base}/events/entry", json.dumps({**good, "schema": "storesense.event.entry/7"}).encode()),
        (f"{base}/events/entry", json.dumps({**good, "event_id": None}).encode()),
        (f"{base}/events/entry", json.dumps({**good, "store_id": "store-b"}).encode()),
        (f"{base}/events/entry", json.dumps({**good, "timestamp_s": now + 10 * 86400}).encode()),
        (f"{base}/lane/l1/state", b"[1, 2]"),
        (f"{base}/gadget/x/thing", b"{}"),
        (f"{base}/edge/box/availability", b"maybe"),
    ]
    try:
        for topic, payload in bad:
            c.publish(topic, payload, qos=1).wait_for_publish(5)
        for _ in range(3):  # the same event three times: one row
            c.publish(f"{base}/events/entry", json.dumps(good), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
    assert wait_for(lambda: len([d for d in lab.dead_letters() if "/store-a/" in d[0]]) >= len(bad), 20), lab.logs()
    assert wait_for(lambda: "raw-ok-1" in lab.pg_event_ids("store-a"), 10)
    reasons = [r for t, r in lab.dead_letters()]
    assert any("not JSON" in r for r in reasons)
    assert any("unknown schema 'storesense.event.entry/7'" in r for r in reasons)
    assert any("does not match the topic's store" in r for r in reasons)
    assert any("in the future" in r for r in reasons)
    assert lab.pg_event_ids("store-a").count("raw-ok-1") == 1
    assert lab.ingester is not None and lab.ingester.poll() is None, "the ingester must survive bad input"
    rows = lab.query("SELECT payload FROM dead_letter WHERE topic LIKE %s", ("%/gadget/x/thing",))
    assert rows and bytes(rows[0][0]) == b"{}"  # parked as received, for a human to look at
    # clean up: the drill compares store-a's rows with what its edge produced
    lab.query("DELETE FROM events WHERE event_id = 'raw-ok-1' RETURNING 1")


def test_schema_migrations_partitions_and_retention(lab: HqLab) -> None:
    assert lab.pg is not None
    with psycopg.connect(lab.pg.dsn, autocommit=True) as conn:
        assert migrate(conn) == max(v for v, _, _ in MIGRATIONS)  # idempotent: the ingester applied it
        old = dt.date(2020, 1, 1)
        with conn.transaction():
            assert ensure_partitions(conn, "events", [old]) == ["events_p20200101"]
            conn.execute("INSERT INTO events (store_id, event_id, type, ts, payload) VALUES "
                         "('s', 'old-1', 'entry', '2020-01-01T12:00:00Z', '{}')")
        with conn.transaction():
            dropped = drop_expired_partitions(conn, retention_days=30)
        assert "events_p20200101" in dropped
        assert conn.execute("SELECT count(*) FROM events WHERE event_id = 'old-1'").fetchone() == (0,)
        kinds = {r[0] for r in conn.execute(
            "SELECT partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname IN ('events', 'state_minute', 'heatmaps')").fetchall()}
        assert kinds == {"r"}  # native range partitioning


def test_drills_lose_nothing_and_duplicate_nothing(lab: HqLab) -> None:
    """Short version of scripts/hq_drills.py (60 s central outage there)."""
    drills = _drills_module()
    res = drills.run_drills(lab, outage_s=5.0, gap_s=2.0, min_events=1, timeout_s=60.0)
    drills.print_table(res)
    for d in res.drills:
        assert d.caught_up_s is not None, (d, lab.logs())
    for d in res.drills[:3]:
        assert d.produced_during >= 1, d  # something was in flight during every outage
    for s in res.stores:
        assert s.produced > 0
        assert (s.lost, s.duplicated, s.unexpected) == (0, 0, 0), (s, lab.logs())
    a, b = res.stores
    assert a.produced_jsonl == a.produced  # the cleanly stopped edge: its --events file = its broker = PostgreSQL
    assert b.availability[-1] == ("store-b-edge", "offline")  # Last Will of the SIGKILLed edge
    assert a.availability[-1] == ("store-a-edge", "stopped")
    # the bridges came back after the central outage: HQ does not think the stores are cut off
    for s in res.stores:
        bridge = [st for dev, st in s.availability if dev == "bridge"]
        assert bridge[-1] == "online" and "offline" in bridge, s.availability
    # state was downsampled to one row per entity, metric and minute
    rows = lab.query("SELECT count(*), sum(n), max(n) FROM state_minute WHERE store_id = 'store-a' AND kind = 'lane' "
                     "AND metric = 'queue_length'")
    assert rows[0][0] >= 1 and rows[0][1] >= rows[0][0]
