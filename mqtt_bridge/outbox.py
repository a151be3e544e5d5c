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

A full disk (or an I/O error) must not lose events either: rows that cannot be written wait in
a bounded in-memory queue, with the ids they would have had on disk, and are still handed to
the sender (delivered while the broker is up). Every ``DISK_RETRY_S`` a write is tried again;
when it succeeds the memory rows move to the file under the same ids, so order and the
sender's cursor are unaffected. One log line when the disk fills, one when it is back; the
memory queue drops its oldest rows when full, counted in :attr:`Outbox.dropped`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.errors import is_storage_error

log = logging.getLogger("storesense.mqtt.outbox")

DISK_RETRY_S = 5.0
MAX_MEMORY_ROWS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class StorageFull(Exception):
    """The outbox file could not be written (disk full, or an I/O error): nothing was stored."""


def _rollback(db: sqlite3.Connection) -> None:
    # After SQLITE_FULL SQLite has already rolled back; a ROLLBACK then raises "cannot rollback -
    # no transaction is active", which hid the real error (and gave a traceback per frame)
    if db.in_transaction:
        db.execute("ROLLBACK")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """A FIFO in one SQLite file; safe to use from several threads."""

    def __init__(self, path: str | Path, max_messages: int = 100_000, max_memory_rows: int = MAX_MEMORY_ROWS) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._file_pending = False  # the file could not be opened at start (disk full): memory only
        self.rewind = False  # rows appeared below ids already handed out: the sender starts over
        try:
            self._db, self._count, self._dropped_total = self._open_file()
        except (sqlite3.Error, OSError) as exc:
            if not is_storage_error(exc):
                raise
            # a box restarted on a full disk must still run and send its events (issue 12 item 1)
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
            self._count, self._dropped_total = 0, 0
            self._file_pending = True
            log.error("outbox %s: cannot be opened, disk full (%s); events wait in memory (up to %d) and are "
                      "still sent; retrying the disk every %.0f s", self.path, exc, max_memory_rows, DISK_RETRY_S)
        self.dropped = 0  # in this process (file full, or memory queue full while the disk was)
        self.max_memory_rows = max_memory_rows
        self._memory: dict[int, OutboxRow] = {}  # rows the disk refused, by the id they will keep
        self._last_memory_id = 0
        self._pending_acks: set[int] = set()  # acknowledged, but the delete could not be written
        self._disk_full_since_mono: float | None = time.monotonic() if self._file_pending else None
        self._last_try_mono = time.monotonic() if self._file_pending else 0.0
        if self._count:
            log.info("outbox %s: %d event(s) left from a previous run will be sent first", self.path, self._count)

    def _open_file(self) -> tuple[sqlite3.Connection, int, int]:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"outbox {self.path}: SQLite refused WAL mode (got {mode!r})")
            db.execute("PRAGMA synchronous=NORMAL")
            # A queue read from its head: SQLite's default 2 MB page cache only fills during an outage
            # and then stays, a step in the box's RSS (issue 12 item 19). 512 KiB serves it as well.
            db.execute("PRAGMA cache_size=-512")
            db.executescript(_SCHEMA)
            count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            row = db.execute("SELECT value FROM meta WHERE key='dropped_total'").fetchone()
        except BaseException:
            db.close()
            raise
        return db, count, int(row[0]) if row else 0

    def _reopen_file_locked(self) -> None:
        """Disk space is back after a start on a full disk: move from the memory database to the file."""
        try:
            db, count, dropped_total = self._open_file()
        except (sqlite3.Error, OSError) as exc:
            if is_storage_error(exc):
                raise StorageFull(f"outbox {self.path}: {exc}") from exc
            raise
        # memory rows keep their ids: lift them above the file's, so none collides or hides
        top = max(int(db.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0),
                  int((db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone() or [0])[0]))
        if self._memory and min(self._memory) <= top:
            shift = top + 1 - min(self._memory)
            self._memory = {i + shift: OutboxRow(i + shift, r.topic, r.payload, r.qos) for i, r in self._memory.items()}
            self._last_memory_id += shift
            self.rewind = True  # rows in flight were renumbered (re-sent: at least once)
        if count:
            self.rewind = True  # rows left from a previous run sit below the sender's cursor
        self._db.close()
        self._db, self._count, self._dropped_total = db, count, dropped_total
        self._file_pending = False
        if count:
            log.info("outbox %s: %d event(s) left from a previous run will be sent", self.path, count)

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    @property
    def dropped_total(self) -> int:
        """Drops over the lifetime of the file, across restarts."""
        return self._dropped_total

    def __len__(self) -> int:
        return self._count - len(self._pending_acks) + len(self._memory)

    def put(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Append one event; return how many old events were dropped to make room."""
        return self.put_many([(topic, payload, qos)])

    @property
    def disk_full(self) -> bool:
        return self._disk_full_since_mono is not None

    @property
    def in_memory(self) -> int:
        return len(self._memory)

    def put_many(self, items: Iterable[tuple[str, bytes, int]]) -> int:
        """Append events; on a full disk keep them in memory (see the module docstring)."""
        batch = list(items)
        if not batch:
            return 0
        with self._lock:
            now = time.monotonic()
            if self._memory and now - self._last_try_mono < DISK_RETRY_S:
                self._to_memory(batch)
                return 0
            self._last_try_mono = now
            try:
                if self._file_pending:
                    self._reopen_file_locked()
                excess = self._flush_memory_locked()
                excess += self._put_locked(batch)
            except StorageFull as exc:
                if self._disk_full_since_mono is None:
                    self._disk_full_since_mono = now
                    log.error("outbox %s: disk full (%s); events wait in memory (up to %d) and are still "
                              "sent; history is dropped first; retrying the disk every %.0f s",
                              self.path, exc.__cause__ or exc, self.max_memory_rows, DISK_RETRY_S)
                self._to_memory(batch)
                return 0
            if self._disk_full_since_mono is not None:
                log.warning("outbox %s: disk space is back after %.0f s; events are stored on disk again",
                            self.path, now - self._disk_full_since_mono)
                self._disk_full_since_mono = None
            return excess

    def _next_id_locked(self) -> int:
        # never reuse an id: a memory row acknowledged and gone may still be the sender's cursor
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        top = self._db.execute("SELECT max(id) FROM outbox").fetchone()[0]
        return max(int(row[0]) if row else 0, int(top or 0), self._last_memory_id) + 1

    def _to_memory(self, batch: list[tuple[str, bytes, int]]) -> None:
        next_id = self._next_id_locked()
        for i, (topic, payload, qos) in enumerate(batch):
            self._memory[next_id + i] = OutboxRow(next_id + i, topic, bytes(payload), int(qos))
        self._last_memory_id = next_id + len(batch) - 1
        over = len(self._memory) - self.max_memory_rows
        if over > 0:
            for old in sorted(self._memory)[:over]:
                del self._memory[old]
            self.dropped += over
            log.warning("outbox: memory queue full (%d events, disk still full): dropped the %d oldest; "
                        "%d dropped in this run", self.max_memory_rows, over, self.dropped)

    def _flush_memory_locked(self) -> int:
        """Move the memory rows to the file, under their own ids; raises StorageFull."""
        if self._pending_acks:
            self._delete_locked(sorted(self._pending_acks))
            self._pending_acks.clear()
        if not self._memory:
            return 0
        rows = [(r.id, r.topic, sqlite3.Binary(r.payload), r.qos) for r in sorted(self._memory.values(), key=lambda r: r.id)]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO outbox (id, topic, payload, qos) VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException as exc:
            _rollback(self._db)
            if is_storage_error(exc):
                raise StorageFull(f"outbox {self.path}: {exc}") from exc
            raise
        self._count += len(rows)
        self._memory.clear()
        return 0

    def _put_locked(self, batch: list[tuple[str, bytes, int]]) -> int:
        rows = [(t, sqlite3.Binary(p), int(q)) for t, p, q in batch]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._last_memory_id:  # ids handed out from memory are never issued again
                self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox' AND seq < ?",
                                 (self._last_memory_id, self._last_memory_id))
                self._db.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ? WHERE NOT EXISTS "
                                 "(SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')", (self._last_memory_id,))
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
        except BaseException as exc:
            _rollback(self._db)
            if is_storage_error(exc):
                raise StorageFull(f"outbox {self.path}: {exc}") from exc
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
        """The oldest rows with ``id > after_id``, in order (file and memory)."""
        with self._lock:
            cur = self._db.execute(
                "SELECT id, topic, payload, qos FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit + len(self._pending_acks)),
            )
            rows = [OutboxRow(int(i), str(t), bytes(p), int(q)) for i, t, p, q in cur.fetchall()]
            rows = [r for r in rows if r.id not in self._pending_acks]
            rows += [self._memory[i] for i in sorted(self._memory) if i > after_id][:limit]
            return sorted(rows, key=lambda r: r.id)[:limit]

    def ack(self, ids: Sequence[int]) -> int:
        """Delete acknowledged rows; ids already gone (dropped, acked twice) are ignored."""
        if not ids:
            return 0
        with self._lock:
            removed = 0
            on_disk = []
            for i in ids:
                if self._memory.pop(int(i), None) is not None:
                    removed += 1
                else:
                    on_disk.append(int(i))
            try:
                removed += self._delete_locked(on_disk)
            except StorageFull:  # even a DELETE needs WAL space: delete later, never re-send
                self._pending_acks.update(on_disk)
                removed += len(on_disk)
            return removed

    def _delete_locked(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            removed = 0
            for i in ids:
                removed += self._db.execute("DELETE FROM outbox WHERE id = ?", (int(i),)).rowcount
            self._db.execute("COMMIT")
        except BaseException as exc:
            _rollback(self._db)
            if is_storage_error(exc):
                raise StorageFull(f"outbox {self.path}: {exc}") from exc
            raise
        self._count -= removed
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
