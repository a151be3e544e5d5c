"""SQLite outbox: FIFO order, bounded size with counted drops, persistence across restarts."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mqtt_bridge.outbox import Outbox


def payload(i: int) -> bytes:
    return f'{{"event_id": "e{i}", "seq": {i}}}'.encode()


def test_wal_mode_on(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", 100)
    assert box.journal_mode == "wal"
    box.close()
    # it is a property of the file, visible to any reader
    con = sqlite3.connect(tmp_path / "o.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_fifo_peek_after_and_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", 100)
    box.put_many([("t/a", payload(i), 1) for i in range(10)])
    rows = box.peek(limit=4)
    assert [r.payload for r in rows] == [payload(i) for i in range(4)]
    assert [r.payload for r in box.peek(after_id=rows[-1].id, limit=3)] == [payload(i) for i in range(4, 7)]
    assert box.ack([rows[0].id, rows[2].id, 99999]) == 2
    assert box.ack([rows[0].id]) == 0  # acked twice: ignored
    assert len(box) == 8
    assert [r.payload for r in box.peek(limit=3)] == [payload(1), payload(3), payload(4)]
    box.close()


@pytest.mark.parametrize(("capacity", "n_put", "batch"), [(10, 25, 1), (10, 25, 7), (50, 49, 49), (10, 200, 200)])
def test_bounded_drops_oldest_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capacity: int, n_put: int, batch: int
) -> None:
    box = Outbox(tmp_path / "o.db", capacity)
    caplog.set_level(logging.WARNING, logger="storesense.mqtt.outbox")
    dropped = 0
    for start in range(0, n_put, batch):
        dropped += box.put_many([("t", payload(i), 1) for i in range(start, min(n_put, start + batch))])
    expected_drops = max(0, n_put - capacity)
    assert dropped == expected_drops == box.dropped == box.dropped_total
    assert len(box) == min(n_put, capacity)
    # the newest events survive, in order
    assert [r.payload for r in box.peek(limit=capacity)] == [payload(i) for i in range(expected_drops, n_put)]
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert bool(drop_logs) == (expected_drops > 0)
    box.close()


def test_order_and_drop_count_survive_process_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    # a different process writes, then dies without closing the connection
    code = textwrap.dedent(
        f"""
        import os
        from mqtt_bridge.outbox import Outbox
        box = Outbox({str(path)!r}, 20)
        for i in range(30):
            box.put("t/e", ('{{"seq": %d}}' % i).encode())
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    box = Outbox(path, 20)
    assert len(box) == 20
    assert box.dropped == 0 and box.dropped_total == 10
    assert [r.payload for r in box.peek(limit=100)] == [f'{{"seq": {i}}}'.encode() for i in range(10, 30)]
    box.put("t/e", b'{"seq": 30}')
    assert box.dropped_total == 11
    assert box.peek(limit=100)[-1].payload == b'{"seq": 30}'
    box.close()


def test_invalid_capacity(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_messages"):
        Outbox(tmp_path / "o.db", 0)
