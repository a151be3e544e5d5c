"""Disk-backed, bounded FIFO of MQTT events waiting for a PUBACK.

Events (queue waits, visits, alerts ...) must survive a broker outage and an edge restart, so
they are written to SQLite before anything touches the network. Rows are deleted only when the
broker acknowledged them (PUBACK), which makes delivery at-least-once: consumers de-duplicate by
the payload's ``event_id``.

WAL mode lets the analysis thread append while the sender reads, without either waiting for
the other's fsync. ``synchronous=NORMAL`` survives a process crash (the usual failure on an
edge box); a power cut may lose the last committed transactions, which is the accepted price
for not fsyncing every event on an SD card.

The size is bounded: when full, the *oldest* rows are dropped, counted (persistently, in the
``meta`` table) and logged. Old events are the least useful ones once a store has been
offline for days; a bounded file keeps the disk from filling up.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("storesense.mqtt.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """A FIFO in one SQLite file; safe to use from several threads."""

    def __init__(self, path: str | Path, max_messages: int = 100_000) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"outbox {self.path}: SQLite refused WAL mode (got {mode!r})")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        row = self._db.execute("SELECT value FROM meta WHERE key='dropped_total'").fetchone()
        self._dropped_total = int(row[0]) if row else 0
        self.dropped = 0  # in this process
        if self._count:
            log.info("outbox %s: %d event(s) left from a previous run will be sent first", self.path, self._count)

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    @property
    def dropped_total(self) -> int:
        """Drops over the lifetime of the file, across restarts."""
        return self._dropped_total

    def __len__(self) -> int:
        return self._count

    def put(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Append one event; return how many old events were dropped to make room."""
        return self.put_many([(topic, payload, qos)])

    def put_many(self, items: Iterable[tuple[str, bytes, int]]) -> int:
        rows = [(t, sqlite3.Binary(p), int(q)) for t, p, q in items]
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO outbox (topic, payload, qos) VALUES (?, ?, ?)", rows)
                count = self._count + len(rows)
                excess = max(0, count - self.max_messages)
                if excess:
                    self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
                    )
                    self._db.execute(
                        "INSERT INTO meta (key, value) VALUES ('dropped_total', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                        (excess,),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count = count - excess
            if excess:
                self.dropped += excess
                self._dropped_total += excess
                log.warning(
                    "outbox full (%d events): dropped the %d oldest event(s); %d dropped in this run, %d in total",
                    self.max_messages, excess, self.dropped, self._dropped_total,
                )
            return excess

    def peek(self, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """The oldest rows with ``id > after_id``, in order."""
        with self._lock:
            cur = self._db.execute(
                "SELECT id, topic, payload, qos FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            return [OutboxRow(int(i), str(t), bytes(p), int(q)) for i, t, p, q in cur.fetchall()]

    def ack(self, ids: Sequence[int]) -> int:
        """Delete acknowledged rows; ids already gone (dropped, acked twice) are ignored."""
        if not ids:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                for i in ids:
                    removed += self._db.execute("DELETE FROM outbox WHERE id = ?", (int(i),)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= removed
            return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
