"""On-box history: every metric snapshot and event in a local SQLite file.

Ops review (heatmaps, reports, staffing) needs weeks of data even when the MQTT uplink was
down, so the edge box keeps its own copy of the exact message stream the publisher sees.

Durability: the file is in WAL mode and a background thread commits the buffered messages at
least every ``commit_interval_s`` (1 s). ``synchronous=FULL`` makes each of those commits
fsync the WAL, so a power cut loses at most the last interval and never corrupts the file.
(``NORMAL`` in WAL mode is also corruption-safe but may roll back *every* commit since the
last checkpoint on power loss, which can be minutes; with one commit per second FULL costs
one fsync per second.) A SIGKILL of the process loses only messages not yet committed.

Bounded: rows older than ``retention_days`` (measured against the newest message, i.e. the
camera clock, so replaying an old file does not delete itself) are pruned, and when the live
pages exceed ``max_size_mb`` the oldest *state* snapshots go first (1 Hz, high volume), then
the oldest events. Freed pages are reused, so the file does not grow past the bound.

The schema is versioned with ``PRAGMA user_version`` and migrated forward on open; a file
written by a newer StoreSense is refused rather than guessed at.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.contract import Message
from edge.errors import UserFacingError, is_disk_full
from mqtt_bridge.topics import Topics

log = logging.getLogger("storesense.history")

SCHEMA_VERSION = 2
SECONDS_PER_DAY = 86400.0
DISK_RETRY_S = 30.0  # a full disk: history retries this often (the outbox every 5 s: events first)

# Each step takes the database from version i to i+1; never edit a released step, add one.
_MIGRATIONS: list[tuple[str, ...]] = [
    # 0 -> 1: the first layout (kept so older files and the migration test stay meaningful)
    (
        """CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp_s REAL NOT NULL,
            topic TEXT NOT NULL,
            schema TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS messages_time ON messages(timestamp_s)",
    ),
    # 1 -> 2: state/event kind (for pruning priority and queries) and indexes for range queries
    (
        "ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'event'",
        "UPDATE messages SET kind = 'state' WHERE schema NOT LIKE 'storesense.event.%' "
        "AND schema NOT LIKE 'storesense.heatmap/%'",
        "CREATE INDEX IF NOT EXISTS messages_schema_time ON messages(schema, timestamp_s)",
        "CREATE INDEX IF NOT EXISTS messages_topic_time ON messages(topic, timestamp_s)",
        "CREATE INDEX IF NOT EXISTS messages_kind_time ON messages(kind, timestamp_s)",
    ),
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

Kind = Literal["state", "event"]

SQLITE_CACHE_KIB = 512  # page cache per connection (SQLite's default is 2000 KiB)


def _connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        # a brand-new file: incremental auto-vacuum must be chosen before WAL and the first table
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise UserFacingError(f"history database {path}: cannot switch to WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # The writer appends and prunes by time: a small page cache serves it as well as SQLite's
    # default 2 MB, which it otherwise fills slowly as the file grows: the edge's RSS crept for
    # hours and a memory soak could not tell that from a leak (issue 12 item 19).
    conn.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    return conn


def migrate(conn: sqlite3.Connection, path: Path | str = "<history>") -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise UserFacingError(
            f"history database {path} has schema version {found}, newer than this StoreSense "
            f"understands ({SCHEMA_VERSION}); upgrade StoreSense or point history.path at another file"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in _MIGRATIONS[version]:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("history %s: migrated schema %d -> %d", path, version, version + 1)
    return found


def message_kind(message: Message) -> Kind:
    """Live state or event: the message's durability (the publisher routes on the same field)."""
    return message.durability


def _finite(value: Any) -> Any:
    """NaN/inf are not JSON: store them as null rather than refuse the whole message."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _row_for(message: Message, topics: Topics) -> tuple[float, str, str, str, str]:
    payload = message.payload
    ts = payload.get("timestamp_s")
    timestamp_s = float(ts) if isinstance(ts, int | float) else float("nan")
    if timestamp_s != timestamp_s:  # NaN: a payload without a time is stored at "now"
        timestamp_s = time.time()
    schema = str(payload.get("schema", ""))
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (timestamp_s, topics.of(message), schema, message_kind(message), text)


class HistorySink:
    """A :class:`edge.sinks.Sink` that appends every message to the history database.

    ``emit`` only queues (the analysis loop never waits on the disk); a writer thread owns the
    connection and commits in batches. An error in the writer (disk full, read-only file) is
    re-raised from the next ``emit``/``close`` so it is not silently swallowed.
    """

    def __init__(
        self,
        path: str | Path,
        retention_days: float = 90.0,
        max_size_mb: float = 1024.0,
        *,
        topics: Topics,
        commit_interval_s: float = 1.0,
        prune_interval_s: float = 60.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        max_batch: int = 5000,
    ) -> None:
        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        if max_size_mb <= 0:
            raise ValueError("max_size_mb must be positive")
        self.path = Path(path)
        self.topics = topics  # the topic column: what MQTT carries, so queries use the same addresses
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_days = float(retention_days)
        self.max_size_bytes = int(max_size_mb * 1024 * 1024)
        self.commit_interval_s = float(commit_interval_s)
        self.prune_interval_s = float(prune_interval_s)
        self.max_batch = int(max_batch)
        try:
            self._conn = _connect(self.path, synchronous=synchronous)
            migrate(self._conn, self.path)
        except sqlite3.DatabaseError as exc:
            if is_disk_full(exc):
                raise HistoryDiskFull(f"history database {self.path} cannot be opened: {exc}") from None
            raise UserFacingError(f"history database {self.path} cannot be opened: {exc}") from None
        self.written = 0
        self.pruned = 0
        self.dropped = 0  # messages not stored because the disk was full
        self.disk_full = False
        self._disk_full_since_mono = 0.0
        self._queue: queue.Queue[tuple[float, str, str, str, str] | None] = queue.Queue()
        self._flush_requests: queue.Queue[threading.Event] = queue.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._newest_s = float(self._conn.execute("SELECT max(timestamp_s) FROM messages").fetchone()[0] or 0.0)
        self.prune()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # -- Sink -----------------------------------------------------------------------------
    def emit(self, messages: Sequence[Message]) -> None:
        self._raise_writer_error()
        if self._closed:
            raise RuntimeError("HistorySink is closed")
        for m in messages:
            self._queue.put(_row_for(m, self.topics))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Commit everything emitted so far (used at shutdown and by tests)."""
        self._raise_writer_error()
        done = threading.Event()
        self._flush_requests.put(done)
        self._queue.put(None)  # wake the writer
        if not done.wait(timeout_s):
            raise TimeoutError(f"history writer did not commit within {timeout_s} s")
        self._raise_writer_error()

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._thread.is_alive():
                self.flush()
        finally:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30.0)
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a checkpoint is an optimisation; the WAL is valid
                log.warning("history %s: checkpoint at close failed: %s", self.path, exc)
            self._conn.close()
        self._raise_writer_error()

    def __enter__(self) -> HistorySink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread --------------------------------------------------------------------
    def _raise_writer_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise UserFacingError(f"history database {self.path}: writing failed: {err}") from err

    def _run(self) -> None:
        last_prune = time.monotonic()
        while True:
            deadline = time.monotonic() + self.commit_interval_s
            batch: list[tuple[float, str, str, str, str]] = []
            stop = False
            # collect until the commit deadline, a full batch, or a flush/close request
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
                if item is None:
                    stop = self._closed
                    break
                batch.append(item)
            # flush requests made so far cover only messages queued before them: take them now,
            # drain the queue, and signal them after the commit
            requests: list[threading.Event] = []
            while True:
                try:
                    requests.append(self._flush_requests.get_nowait())
                except queue.Empty:
                    break
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            try:
                if batch:
                    self._write_or_sacrifice(batch)
                if time.monotonic() - last_prune >= self.prune_interval_s and not self.disk_full:
                    last_prune = time.monotonic()
                    self.prune()
            except Exception as exc:  # noqa: BLE001 - handed to the caller via _raise_writer_error
                log.error("history %s: write failed: %s", self.path, exc)
                self._error = exc
            for request in requests:
                request.set()
            if stop or (self._closed and self._queue.empty()):
                return

    def _write_or_sacrifice(self, batch: list[tuple[float, str, str, str, str]]) -> None:
        """On a full disk history is sacrificed before events: the batch is dropped and counted,
        and writing pauses for ``DISK_RETRY_S`` so space that comes back goes to the outbox first."""
        now = time.monotonic()
        if self.disk_full and now - self._disk_full_since_mono < DISK_RETRY_S:
            self.dropped += len(batch)
            return
        try:
            self._write(batch)
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            if not self.disk_full:
                log.error("history %s: disk full (%s): history is dropped, events keep priority; "
                          "retrying every %.0f s", self.path, exc, DISK_RETRY_S)
            self.disk_full = True
            self._disk_full_since_mono = now
            self.dropped += len(batch)
            return
        if self.disk_full:
            log.warning("history %s: disk space is back; writing again (%d message(s) were dropped)",
                        self.path, self.dropped)
            self.disk_full = False

    def _write(self, batch: list[tuple[float, str, str, str, str]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO messages (timestamp_s, topic, schema, kind, payload) VALUES (?, ?, ?, ?, ?)", batch
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # after SQLITE_FULL SQLite has rolled back already
                    self._conn.execute("ROLLBACK")
                raise
        self.written += len(batch)
        self._newest_s = max(self._newest_s, max(r[0] for r in batch))

    # -- bounds ---------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes in live pages (the file may be larger by free pages that will be reused)."""
        page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(self._conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * page_size

    def prune(self) -> int:
        """Apply retention and the size bound now; return the number of rows deleted.

        Called by the writer thread every ``prune_interval_s`` and once at open.
        """
        with self._lock:
            return self._prune_locked()

    def _prune_locked(self) -> int:
        deleted = 0
        cutoff_s = self._newest_s - self.retention_days * SECONDS_PER_DAY
        if self._newest_s > 0:
            cur = self._conn.execute("DELETE FROM messages WHERE timestamp_s < ?", (cutoff_s,))
            deleted += max(cur.rowcount, 0)
        # size: delete the oldest rows in chunks, state snapshots before events
        target = int(self.max_size_bytes * 0.9)
        guard = 0
        while self.used_bytes() > target and guard < 1000:
            guard += 1
            total = int(self._conn.execute("SELECT count(*) FROM messages").fetchone()[0])
            if total == 0:
                break
            chunk = max(100, total // 20)
            kind_filter = "WHERE kind = 'state'"
            if self._conn.execute("SELECT 1 FROM messages WHERE kind = 'state' LIMIT 1").fetchone() is None:
                kind_filter = ""
            cur = self._conn.execute(
                f"DELETE FROM messages WHERE id IN (SELECT id FROM messages {kind_filter} "
                "ORDER BY timestamp_s, id LIMIT ?)",
                (chunk,),
            )
            deleted += max(cur.rowcount, 0)
        if deleted:
            if int(self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
                # executescript steps to completion; execute() would free a single page
                self._conn.executescript("PRAGMA incremental_vacuum;")
            self.pruned += deleted
            log.info("history %s: pruned %d old rows", self.path, deleted)
        return deleted


@dataclass(frozen=True)
class HistoryRow:
    id: int
    timestamp_s: float
    topic: str
    schema: str
    kind: str
    payload: dict[str, Any]


class HistoryReader:
    """Read-only queries over a history file, safe while a :class:`HistorySink` writes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.damaged_rows = 0  # rows whose payload is not a JSON object: skipped by rows()
        if not self.path.exists():
            raise UserFacingError(
                f"history database {self.path} does not exist: run the edge pipeline with history enabled "
                "first (config history.enabled), or pass --history PATH"
            )
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            migrate(self._conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise UserFacingError(f"history database {self.path} cannot be read: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _where(
        schema: str | None,
        topic: str | None,
        start_s: float | None,
        end_s: float | None,
        kind: str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if schema is not None:
            if "/" in schema:
                clauses.append("schema = ?")
                args.append(schema)
            else:  # any version of that schema name
                clauses.append("schema LIKE ?")
                args.append(schema.replace("%", "").replace("_", "\\_") + "/%")
                clauses[-1] += " ESCAPE '\\'"
        if topic is not None:
            if topic.endswith("#") or "+" in topic:
                clauses.append("topic LIKE ? ESCAPE '\\'")
                pattern = topic.replace("%", "").replace("_", "\\_").replace("+", "%")
                args.append(pattern[:-1] + "%" if pattern.endswith("#") else pattern)
            else:
                clauses.append("topic = ?")
                args.append(topic)
        if start_s is not None:
            clauses.append("timestamp_s >= ?")
            args.append(float(start_s))
        if end_s is not None:
            clauses.append("timestamp_s < ?")
            args.append(float(end_s))
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def rows(
        self,
        *,
        schema: str | None = None,
        topic: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> Iterator[HistoryRow]:
        """Rows in time order. ``schema`` without a version (``storesense.lane_state``) matches
        any version; ``topic`` may use MQTT ``+``/``#`` wildcards; ``end_s`` is exclusive."""
        where, args = self._where(schema, topic, start_s, end_s, kind)
        sql = f"SELECT id, timestamp_s, topic, schema, kind, payload FROM messages{where} ORDER BY timestamp_s, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        try:
            for rid, ts, tp, sc, kd, text in self._conn.execute(sql, args):
                try:
                    payload = json.loads(text)
                except (TypeError, ValueError):
                    payload = None
                if not isinstance(payload, dict):
                    # one damaged row must not cost the whole report: skip it, say so once per reader
                    self.damaged_rows += 1
                    if self.damaged_rows == 1:
                        log.warning("history database %s: row %s (%s) is not a JSON object; skipping it and any "
                                    "other damaged row", self.path, rid, sc)
                    continue
                yield HistoryRow(int(rid), float(ts), str(tp), str(sc), str(kd), payload)
        except sqlite3.DatabaseError as exc:
            raise UserFacingError(
                f"history database {self.path} cannot be read: {exc} (not a StoreSense history file, or damaged)"
            ) from None

    def payloads(self, schema: str, **filters: Any) -> list[dict[str, Any]]:
        return [r.payload for r in self.rows(schema=schema, **filters)]

    def count(self, **filters: Any) -> int:
        where, args = self._where(
            filters.get("schema"), filters.get("topic"), filters.get("start_s"), filters.get("end_s"), filters.get("kind")
        )
        return int(self._conn.execute(f"SELECT count(*) FROM messages{where}", args).fetchone()[0])

    def schema_counts(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._conn.execute("SELECT schema, count(*) FROM messages GROUP BY schema")}

    def time_range(self) -> tuple[float, float] | None:
        lo, hi = self._conn.execute("SELECT min(timestamp_s), max(timestamp_s) FROM messages").fetchone()
        return None if lo is None else (float(lo), float(hi))

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])


def history_path(cfg: Any) -> Path:
    """Where the store config keeps its history file (``data_dir``/``history.path``)."""
    return Path(cfg.data_path(cfg.history.path))


class HistoryDiskFull(UserFacingError):
    """The history database cannot be opened because the disk is full: the store runs without it."""


def history_sink_from_config(cfg: Any) -> HistorySink | None:
    """The history sink configured in a StoreConfig, or None when ``history.enabled`` is false."""
    if not cfg.history.enabled:
        return None
    topics = Topics(cfg.store.id, cfg.mqtt.prefix)
    return HistorySink(history_path(cfg), cfg.history.retention_days, cfg.history.max_size_mb, topics=topics)
