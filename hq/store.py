"""Writes classified rows into PostgreSQL, one transaction per batch.

Idempotent by construction, because the broker redelivers whatever was not acknowledged:
events and heatmaps are ``ON CONFLICT DO NOTHING`` on their ids; a state sample at or before
the last one already folded into an entity's minute row is skipped (per-entity streams arrive
in order on one session); an availability row is written only when the state changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from hq.messages import AvailabilityRow, DeadLetter, EventRow, HeatmapRow, Row, StateSample
from hq.schema import drop_expired_partitions, ensure_partitions, migrate

log = logging.getLogger("storesense.hq")

EntityKey = tuple[str, str, str]  # store, kind, entity
_STATE_COLS = "store_id, kind, entity_id, metric, minute, n, sum, min, max, first_ts, last_ts"


@dataclass
class BatchResult:
    events_new: int = 0
    events_duplicate: int = 0
    state_samples: int = 0
    state_samples_duplicate: int = 0
    state_rows: int = 0
    availability_changes: int = 0
    heatmaps_new: int = 0
    dead_letters: int = 0
    max_event_lag_s: float | None = None


@dataclass
class _Pending:
    """Caches updated by a batch, applied only after its COMMIT (a rolled-back batch changes nothing)."""

    last_ts: dict[EntityKey, float] = field(default_factory=dict)
    availability: dict[tuple[str, str], str] = field(default_factory=dict)
    partitions: set[tuple[str, dt.date]] = field(default_factory=set)


class PgWriter:
    def __init__(self, dsn: str, retention_days: int) -> None:
        self.dsn = dsn
        self.retention_days = retention_days
        self.conn: psycopg.Connection | None = None
        self._last_ts: dict[EntityKey, float] = {}
        self._availability: dict[tuple[str, str], str] = {}
        self._partitions: set[tuple[str, dt.date]] = set()

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        conn = psycopg.connect(self.dsn, autocommit=True, application_name="storesense-hq-ingest")
        migrate(conn)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS ev_stage (store_id text, event_id text, type text, "
                     "ts timestamptz, received_at timestamptz, payload jsonb)")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS st_stage (LIKE state_minute)")
        self.conn = conn
        self._partitions.clear()  # another process may have dropped some (retention)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def apply_retention(self) -> list[str]:
        assert self.conn is not None
        with self.conn.transaction():
            dropped = drop_expired_partitions(self.conn, self.retention_days)
        self._partitions = {p for p in self._partitions if (p[0] + "_p" + f"{p[1]:%Y%m%d}") not in dropped}
        if dropped:
            log.info("hq retention: dropped %d partitions older than %d days", len(dropped), self.retention_days)
        return dropped

    # -- one batch ------------------------------------------------------------------------------

    def write(self, rows: Sequence[Row], now: dt.datetime | None = None) -> BatchResult:
        """Write a batch in one transaction. Raises psycopg errors (the caller retries the batch)."""
        if self.conn is None:
            self.connect()
        assert self.conn is not None
        now = now or dt.datetime.now(dt.timezone.utc)
        res = BatchResult()
        pending = _Pending()
        events = [r for r in rows if isinstance(r, EventRow)]
        samples = [r for r in rows if isinstance(r, StateSample)]
        heatmaps = [r for r in rows if isinstance(r, HeatmapRow)]
        with self.conn.transaction():
            self._ensure_partitions(events, samples, heatmaps, pending)
            self._write_events(events, now, res)
            self._write_state(samples, res, pending)
            self._write_heatmaps(heatmaps, res)
            self._write_availability([r for r in rows if isinstance(r, AvailabilityRow)], res, pending)
            self._write_dead_letters([r for r in rows if isinstance(r, DeadLetter)], res)
        self._last_ts.update(pending.last_ts)
        self._availability.update(pending.availability)
        self._partitions |= pending.partitions
        if events:
            res.max_event_lag_s = max((now - e.ts).total_seconds() for e in events)
        return res

    def _ensure_partitions(self, events: list[EventRow], samples: list[StateSample], heatmaps: list[HeatmapRow],
                           pending: _Pending) -> None:
        assert self.conn is not None
        need: dict[str, set[dt.date]] = defaultdict(set)
        for e in events:
            need["events"].add(e.ts.date())
        for s in samples:
            need["state_minute"].add(dt.datetime.fromtimestamp(s.timestamp_s, dt.timezone.utc).date())
        for h in heatmaps:
            need["heatmaps"].add(h.hour_start.date())
        for table, days in need.items():
            missing = {d for d in days if (table, d) not in self._partitions}
            if missing:
                ensure_partitions(self.conn, table, missing)
                pending.partitions |= {(table, d) for d in missing}

    def _write_events(self, events: list[EventRow], now: dt.datetime, res: BatchResult) -> None:
        if not events:
            return
        assert self.conn is not None
        self.conn.execute("TRUNCATE ev_stage")
        with self.conn.cursor().copy("COPY ev_stage (store_id, event_id, type, ts, received_at, payload) FROM STDIN") as cp:
            for e in events:
                cp.write_row((e.store_id, e.event_id, e.type, e.ts, now, e.payload))
        cur = self.conn.execute("INSERT INTO events (store_id, event_id, type, ts, received_at, payload) "
                                "SELECT store_id, event_id, type, ts, received_at, payload FROM ev_stage "
                                "ON CONFLICT DO NOTHING")
        res.events_new += cur.rowcount
        res.events_duplicate += len(events) - cur.rowcount

    def _load_last_ts(self, keys: set[EntityKey]) -> None:
        assert self.conn is not None
        unknown = [k for k in keys if k not in self._last_ts]
        if not unknown:
            return
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
        rows = self.conn.execute(
            "SELECT s.store_id, s.kind, s.entity_id, max(s.last_ts) FROM state_minute s "
            "JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(store_id, kind, entity_id) "
            "USING (store_id, kind, entity_id) WHERE s.minute >= %s GROUP BY 1, 2, 3",
            ([k[0] for k in unknown], [k[1] for k in unknown], [k[2] for k in unknown], since)).fetchall()
        for store, kind, entity, last in rows:
            self._last_ts[(store, kind, entity)] = float(last)
        for k in unknown:
            self._last_ts.setdefault(k, float("-inf"))

    def _write_state(self, samples: list[StateSample], res: BatchResult, pending: _Pending) -> None:
        """Fold 1 s samples into one row per entity, metric and minute (n, sum, min, max)."""
        if not samples:
            return
        assert self.conn is not None
        self._load_last_ts({(s.store_id, s.kind, s.entity_id) for s in samples})
        agg: dict[tuple[str, str, str, str, dt.datetime], list[float]] = {}
        for s in sorted(samples, key=lambda s: s.timestamp_s):
            key = (s.store_id, s.kind, s.entity_id)
            last = pending.last_ts.get(key, self._last_ts[key])
            if s.timestamp_s <= last:
                res.state_samples_duplicate += 1
                continue
            pending.last_ts[key] = s.timestamp_s
            res.state_samples += 1
            minute = dt.datetime.fromtimestamp(s.timestamp_s - s.timestamp_s % 60.0, dt.timezone.utc)
            for metric, v in s.metrics:
                a = agg.get((*key, metric, minute))
                if a is None:
                    agg[(*key, metric, minute)] = [1, v, v, v, s.timestamp_s, s.timestamp_s]
                else:
                    a[0] += 1
                    a[1] += v
                    a[2] = min(a[2], v)
                    a[3] = max(a[3], v)
                    a[5] = s.timestamp_s
        if not agg:
            return
        # COPY into a staging table, then one set-based upsert (far cheaper than a statement per row)
        self.conn.execute("TRUNCATE st_stage")
        with self.conn.cursor().copy(f"COPY st_stage ({_STATE_COLS}) FROM STDIN") as cp:
            for k, a in agg.items():
                cp.write_row((*k, int(a[0]), *a[1:]))
        self.conn.execute(
            f"INSERT INTO state_minute AS s ({_STATE_COLS}) SELECT {_STATE_COLS} FROM st_stage "
            "ON CONFLICT (store_id, kind, entity_id, metric, minute) "
            "DO UPDATE SET n = s.n + EXCLUDED.n, sum = s.sum + EXCLUDED.sum, min = LEAST(s.min, EXCLUDED.min), "
            "max = GREATEST(s.max, EXCLUDED.max), first_ts = LEAST(s.first_ts, EXCLUDED.first_ts), "
            "last_ts = GREATEST(s.last_ts, EXCLUDED.last_ts)")
        res.state_rows += len(agg)

    def _write_heatmaps(self, heatmaps: list[HeatmapRow], res: BatchResult) -> None:
        if not heatmaps:
            return
        assert self.conn is not None
        for h in heatmaps:
            cur = self.conn.execute(
                "INSERT INTO heatmaps (store_id, camera_id, event_id, hour_start, payload) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING", (h.store_id, h.camera_id, h.event_id, h.hour_start, h.payload))
            res.heatmaps_new += cur.rowcount

    def _write_availability(self, rows: list[AvailabilityRow], res: BatchResult, pending: _Pending) -> None:
        assert self.conn is not None
        for r in rows:
            key = (r.store_id, r.device_id)
            last = pending.availability.get(key) or self._availability.get(key)
            if last is None:
                got = self.conn.execute("SELECT state FROM availability WHERE store_id = %s AND device_id = %s "
                                        "ORDER BY ts DESC, id DESC LIMIT 1", key).fetchone()
                last = got[0] if got else None
            if last == r.state:
                continue
            self.conn.execute("INSERT INTO availability (store_id, device_id, state, ts) VALUES (%s, %s, %s, clock_timestamp())",
                              (r.store_id, r.device_id, r.state))
            pending.availability[key] = r.state
            res.availability_changes += 1

    def _write_dead_letters(self, rows: list[DeadLetter], res: BatchResult) -> None:
        if not rows:
            return
        assert self.conn is not None
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO dead_letter (topic, reason, payload) VALUES (%s, %s, %s)",
                            [(r.topic, r.reason, r.payload) for r in rows])
        res.dead_letters += len(rows)
        for r in rows:
            log.warning("hq dead letter: %s: %s", r.topic, r.reason)
