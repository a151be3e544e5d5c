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

from edge.cli import main as cli_main
from edge.config import load_config
from edge.history import HistoryReader, history_path
from edge.report import collect_report_data, summary_numbers
from hq.config import load_hq_config
from hq.report import chain_report
from hq.schema import MIGRATIONS, drop_expired_partitions, ensure_partitions, migrate
from tests.browser import Browser
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


def test_chain_report_totals_equal_the_stores_own_reports(lab: HqLab, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Both edges go once through the clip; each store's own report (its on-box history) and the
    chain report (PostgreSQL) agree store by store, and the chain totals are their sums."""
    for s in lab.stores:
        lab.start_edge_run(s, realtime=False, loop=False)
    for s in lab.stores:
        proc = lab.edges[s].proc
        assert proc is not None and proc.wait(timeout=900) == 0, lab.logs()
    drills = _drills_module()
    assert wait_for(lambda: drills._caught_up(lab), 30), lab.logs()
    day = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start_s, end_s = day.timestamp(), (day + dt.timedelta(days=2)).timestamp()
    own = {}
    monkeypatch.setenv("STORESENSE_MQTT_PASSWORD", "only-read-by-the-edge")  # load_config checks it is set
    for s in lab.stores:
        cfg = load_config(lab.edges[s].config_path)
        with HistoryReader(history_path(cfg)) as reader:
            own[s] = summary_numbers(collect_report_data(reader, cfg, start_s, end_s))
    assert sum(n["footfall_total"] + n["waits_count"] for n in own.values()) > 0  # the clip made something to compare

    hq_cfg = load_hq_config(lab.hq_config_path)
    html, figures = chain_report(hq_cfg, start_s, end_s)
    by_store = {f.store_id: f for f in figures}
    for s in lab.stores:
        f, n = by_store[s], own[s]
        assert (f.footfall, f.customers_waited, f.greeted) == (
            n["footfall_total"], n["waits_count"], n["sla_count"].get("greeting", 0)), (s, f, n)
        assert f.summary["sla_pct"] == n["sla_pct"] and f.summary["wait_mean_s"] == n["wait_mean_s"]
    out = tmp_path / "chain.html"
    out.write_text(html)
    code = cli_main(["hq", "report", "--config", str(lab.hq_config_path), "--from", day.strftime("%Y-%m-%d"),
                     "--to", (day + dt.timedelta(days=1)).strftime("%Y-%m-%d"), "--out", str(tmp_path / "cli.html")],
                    extra_modules=["hq.cli"])
    assert code == 0 and (tmp_path / "cli.html").stat().st_size > 1000
    assert "http://" not in html and "https://" not in html and "<script" not in html
    with Browser(width_px=1280, height_px=900) as b:
        page = b.new_page(out.as_uri())
        assert page.evaluate("Array.from(document.querySelectorAll('section[id]')).map(s => s.id)") == [
            "ranking", "matrix", "peaks", "availability"]
        shown = page.evaluate("""(() => {
            const rows = Array.from(document.querySelectorAll('#ranking tr[data-store]'));
            const num = (r, c) => Number(r.querySelector(c).textContent.replace(/,/g, ''));
            return {stores: rows.map(r => r.dataset.store),
                    footfall: rows.map(r => num(r, '.footfall')), waited: rows.map(r => num(r, '.waited')),
                    total_footfall: Number(document.getElementById('total-footfall').textContent.replace(/,/g, '')),
                    total_waited: Number(document.getElementById('total-waited').textContent),
                    total_greeted: Number(document.getElementById('total-greeted').textContent)};
        })()""")
        assert sorted(shown["stores"]) == sorted(lab.stores)
        assert shown["total_footfall"] == sum(shown["footfall"]) == sum(n["footfall_total"] for n in own.values())
        assert shown["total_waited"] == sum(shown["waited"]) == sum(n["waits_count"] for n in own.values())
        assert shown["total_greeted"] == sum(n["sla_count"].get("greeting", 0) for n in own.values())
        # file cameras keep every frame: the boxes kept up, and the report says so per store
        assert page.evaluate("Array.from(document.querySelectorAll('#availability td.dropped'))"
                             ".map(td => td.textContent)") == ["0.0%"] * len(lab.stores)
        assert page.console_errors() == []
        assert page.evaluate("performance.getEntriesByType('resource').map(e => e.name)"
                             ".filter(n => !n.startsWith('data:'))") == []


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
