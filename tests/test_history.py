"""History database: real SQLite files, a real writer process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge.contract import Message
from edge.errors import UserFacingError
from edge.history import SCHEMA_VERSION, HistoryReader, HistorySink
from mqtt_bridge.topics import Topics

TOPICS = Topics("s1")
BASE = TOPICS.base
T0 = 1_700_000_000.0


def lane_state(ts: float, lane: str = "lane-1", q: int = 2) -> Message:
    payload = {"schema": "storesense.lane_state/1", "store_id": "s1", "lane_id": lane, "timestamp_s": ts, "queue_length": q}
    return Message("lane_state", lane, payload, "state")


def wait_event(ts: float, wait_s: float, n: int) -> Message:
    payload = {
        "schema": "storesense.event.queue_wait/1",
        "store_id": "s1",
        "timestamp_s": ts,
        "event_id": f"w{n}",
        "wait_s": wait_s,
    }
    return Message("event", "queue_wait", payload, "event")


def test_roundtrip_queries_by_schema_topic_time_and_kind(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with HistorySink(db, topics=TOPICS) as sink:
        sink.emit([lane_state(T0 + i, "lane-1", i % 4) for i in range(100)])
        sink.emit([lane_state(T0 + i, "lane-2") for i in range(50)])
        sink.emit([wait_event(T0 + 10 * i, 30.0 + i, i) for i in range(10)])
    with HistoryReader(db) as r:
        assert r.count() == 160
        assert r.count(schema="storesense.lane_state") == 150
        assert r.count(schema="storesense.lane_state/1") == 150
        assert r.count(schema="storesense.lane_state/2") == 0
        assert r.count(topic=f"{BASE}/lane/+/state") == 150
        assert r.count(topic=f"{BASE}/lane/lane-2/state") == 50
        assert r.count(topic=f"{BASE}/#") == 160
        assert r.count(kind="event") == 10
        assert r.count(kind="state") == 150
        # end is exclusive; rows come back in time order
        rows = list(r.rows(topic=f"{BASE}/lane/lane-1/state", start_s=T0 + 10, end_s=T0 + 20))
        assert [row.timestamp_s for row in rows] == [T0 + i for i in range(10, 20)]
        assert [row.payload["queue_length"] for row in rows] == [i % 4 for i in range(10, 20)]
        waits = r.payloads("storesense.event.queue_wait")
        assert sum(p["wait_s"] for p in waits) == pytest.approx(sum(30.0 + i for i in range(10)))
        assert r.time_range() == (T0, T0 + 99)
        assert r.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index_names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"messages_schema_time", "messages_topic_time"} <= index_names
    plan = " ".join(
        str(row[-1])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM messages WHERE schema = 'x' AND timestamp_s >= 1 AND timestamp_s < 2"
        )
    )
    assert "messages_schema_time" in plan


def test_non_finite_numbers_are_stored_as_null(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    m = lane_state(T0)
    m.payload["predicted_wait_s"] = float("nan")
    m.payload["band"] = [1.0, float("inf")]
    with HistorySink(db, topics=TOPICS) as sink:
        sink.emit([m])
    with HistoryReader(db) as r:
        (row,) = list(r.rows())
    assert row.payload["predicted_wait_s"] is None and row.payload["band"] == [1.0, None]
    assert row.payload["queue_length"] == 2


def test_commits_within_a_second_without_flush(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    sink = HistorySink(db, topics=TOPICS)
    try:
        sink.emit([lane_state(T0 + i) for i in range(20)])
        deadline = time.monotonic() + 1.6
        seen = 0
        while time.monotonic() < deadline and seen < 20:
            time.sleep(0.1)
            with HistoryReader(db) as r:  # another connection sees only committed rows
                seen = r.count()
        assert seen == 20
    finally:
        sink.close()


def test_retention_prunes_rows_older_than_the_newest_minus_retention(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    day = 86400.0
    with HistorySink(db, topics=TOPICS, retention_days=3.0) as sink:
        sink.emit([lane_state(T0 + d * day + h * 3600) for d in range(10) for h in range(24)])
        sink.flush()
        deleted = sink.prune()
    assert deleted == 24 * 10 - (3 * 24 + 1)  # kept: exactly 3 days back from the newest row
    with HistoryReader(db) as r:
        lo, hi = r.time_range() or (0, 0)
        assert hi == T0 + 9 * day + 23 * 3600
        assert hi - lo == pytest.approx(3 * day)
    # pruning also happens on open (a box that was off for a week)
    with HistorySink(db, topics=TOPICS, retention_days=1.0):
        pass
    with HistoryReader(db) as r:
        assert r.count() == 25


def test_size_bound_drops_oldest_state_before_events(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    max_mb = 0.5
    pad = "x" * 300
    with HistorySink(db, topics=TOPICS, max_size_mb=max_mb) as sink:
        for i in range(6000):
            m = lane_state(T0 + i)
            m.payload["pad"] = pad
            sink.emit([m])
            if i % 100 == 0:
                sink.emit([wait_event(T0 + i, 20.0, i)])
        sink.flush()
        assert sink.used_bytes() > max_mb * 1024 * 1024  # the test really exceeds the bound
        deleted = sink.prune()
        assert deleted > 0
        assert sink.used_bytes() <= max_mb * 1024 * 1024
    with HistoryReader(db) as r:
        assert r.count(kind="event") == 60  # events survive while state snapshots can go
        states = list(r.rows(kind="state"))
        assert states[-1].timestamp_s == T0 + 5999  # the newest are kept
        assert 0 < len(states) < 6000
        ts = [s.timestamp_s for s in states]
        assert ts == sorted(ts) and ts == [ts[0] + k for k in range(len(ts))]  # a contiguous recent tail
    assert db.stat().st_size <= 1.3 * max_mb * 1024 * 1024  # incremental vacuum gave pages back


V1_SCHEMA = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp_s REAL NOT NULL,
    topic TEXT NOT NULL,
    schema TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX messages_time ON messages(timestamp_s);
PRAGMA user_version = 1;
"""


def test_migrates_a_version_1_file(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO messages (timestamp_s, topic, schema, payload) VALUES (?, ?, ?, ?)",
        (T0, f"{BASE}/lane/a/state", "storesense.lane_state/1", '{"schema":"storesense.lane_state/1","timestamp_s":1}'),
    )
    conn.execute(
        "INSERT INTO messages (timestamp_s, topic, schema, payload) VALUES (?, ?, ?, ?)",
        (T0 + 1, f"{BASE}/events/visit", "storesense.event.visit/1", '{"schema":"storesense.event.visit/1"}'),
    )
    conn.execute(
        "INSERT INTO messages (timestamp_s, topic, schema, payload) VALUES (?, ?, ?, ?)",
        (T0 + 2, f"{BASE}/camera/c/heatmap", "storesense.heatmap/1", '{"schema":"storesense.heatmap/1"}'),
    )
    conn.commit()
    conn.close()
    with HistorySink(db, topics=TOPICS) as sink:
        sink.emit([lane_state(T0 + 3)])
    with HistoryReader(db) as r:
        assert r.schema_version() == SCHEMA_VERSION
        kinds = [(row.schema, row.kind) for row in r.rows()]
    assert kinds == [
        ("storesense.lane_state/1", "state"),
        ("storesense.event.visit/1", "event"),
        ("storesense.heatmap/1", "event"),
        ("storesense.lane_state/1", "state"),
    ]


def test_refuses_a_file_from_a_newer_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(UserFacingError, match="newer than this StoreSense"):
        HistorySink(db, topics=TOPICS)
    with pytest.raises(UserFacingError, match="does not exist"):
        HistoryReader(tmp_path / "missing.db")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserFacingError, match="cannot be opened"):
        HistorySink(db, topics=TOPICS)


WRITER = textwrap.dedent(
    """
    import sys, time
    from edge.contract import Message
    from edge.history import HistorySink
    from mqtt_bridge.topics import Topics

    TOPICS = Topics("s1")

    db, start = sys.argv[1], int(sys.argv[2])
    sink = HistorySink(db, topics=TOPICS, commit_interval_s=1.0)
    seq = start
    while True:
        batch = []
        for _ in range(20):
            batch.append(Message("lane_state", "l",
                                 {"schema": "storesense.lane_state/1", "timestamp_s": 1.7e9 + seq, "seq": seq},
                                 "state"))
            seq += 1
        sink.emit(batch)
        print(seq - 1, time.monotonic(), flush=True)
        time.sleep(0.002)
    """
)


def test_sigkill_during_writes_never_corrupts_and_loses_at_most_the_last_second(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    next_seq = 0
    totals = []
    for round_no in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db), str(next_seq)], stdout=subprocess.PIPE, text=True, env=env
        )
        emitted: list[tuple[int, float]] = []

        def read(p: subprocess.Popen[str] = proc, out: list[tuple[int, float]] = emitted) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                parts = line.split()
                if len(parts) != 2:  # the kill cut the last line short: it was never "emitted" anyway
                    continue
                out.append((int(parts[0]), float(parts[1])))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while not emitted:  # wait until it really writes
            time.sleep(0.05)
        time.sleep(1.8 + 0.3 * round_no)  # kill at different points of the commit cycle
        proc.send_signal(signal.SIGKILL)
        kill_t = time.monotonic()
        proc.wait()
        reader.join(timeout=5)

        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [int(s) for (s,) in conn.execute("SELECT json_extract(payload, '$.seq') FROM messages ORDER BY id")]
        conn.close()
        # rows are monotonic and contiguous: whole batches are committed or not at all
        assert seqs == list(range(len(seqs)))
        # everything emitted more than ~1 s (+ scheduling slack) before the kill was committed
        old_enough = [s for s, t in emitted if t < kill_t - 1.5]
        assert old_enough, "writer ran long enough to have committed data"
        assert seqs[-1] >= max(old_enough)
        totals.append(len(seqs))
        next_seq = len(seqs)
    assert totals == sorted(totals) and totals[-1] > totals[0]
    with HistoryReader(db) as r:
        assert r.count() == totals[-1]
