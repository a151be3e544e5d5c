"""The HQ database: versioned migrations, daily partitions and retention.

Documented for humans in docs/hq.md ("Schema"). Migrations are append-only: a deployed
version is never edited, a change is a new entry in ``MIGRATIONS``. Each one runs in its own
transaction together with its row in ``schema_migrations``, under an advisory lock, so two
ingesters starting at once cannot apply one twice.

Time-series tables are natively partitioned by day (``PARTITION BY RANGE``): retention drops
whole partitions (no DELETE, no bloat, no VACUUM debt) and queries for a period only touch
that period's partitions.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable

import psycopg

log = logging.getLogger("storesense.hq")

# tables partitioned by day on their timestamp column
PARTITIONED = {"events": "ts", "state_minute": "minute", "heatmaps": "hour_start"}
_LOCK_KEY = 0x5354_5351  # advisory lock id for migrations ("STSQ")

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "events, state_minute, availability, heatmaps, dead_letter", """
CREATE TABLE events (
    store_id    text        NOT NULL,
    event_id    text        NOT NULL,
    type        text        NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload     jsonb       NOT NULL,
    PRIMARY KEY (store_id, event_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX events_type_ts ON events (type, ts);

CREATE TABLE state_minute (
    store_id  text        NOT NULL,
    kind      text        NOT NULL,
    entity_id text        NOT NULL,
    metric    text        NOT NULL,
    minute    timestamptz NOT NULL,
    n         integer     NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    first_ts  double precision NOT NULL,
    last_ts   double precision NOT NULL,
    PRIMARY KEY (store_id, kind, entity_id, metric, minute)
) PARTITION BY RANGE (minute);

CREATE TABLE availability (
    id        bigserial   PRIMARY KEY,
    store_id  text        NOT NULL,
    device_id text        NOT NULL,
    state     text        NOT NULL,
    ts        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX availability_store_ts ON availability (store_id, device_id, ts);

CREATE TABLE heatmaps (
    store_id   text        NOT NULL,
    camera_id  text        NOT NULL,
    event_id   text        NOT NULL,
    hour_start timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb       NOT NULL,
    PRIMARY KEY (store_id, camera_id, event_id, hour_start)
) PARTITION BY RANGE (hour_start);

CREATE TABLE dead_letter (
    id          bigserial   PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text        NOT NULL,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL
);
"""),
]


def migrate(conn: psycopg.Connection) -> int:
    """Apply every pending migration; return the schema version now in force."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY, description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        known = max(v for v, _, _ in MIGRATIONS)
        if current > known:
            raise RuntimeError(f"the HQ database is at schema version {current}; this ingester knows only "
                               f"up to {known}: upgrade storesense")
        for version, description, sql in MIGRATIONS:
            if version <= current:
                continue
            conn.execute(sql)  # literal DDL constant
            conn.execute("INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                         (version, description))
            log.info("hq schema: applied migration %d (%s)", version, description)
            current = version
    return current


def day_start(ts: dt.datetime) -> dt.date:
    return ts.astimezone(dt.timezone.utc).date()


def partition_name(table: str, day: dt.date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection, table: str, days: Iterable[dt.date]) -> list[str]:
    """Create the daily partitions (UTC days) that do not exist yet; return the names created."""
    created = []
    for day in sorted(set(days)):
        name = partition_name(table, day)
        lo = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
        hi = lo + dt.timedelta(days=1)
        cur = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        if cur and cur[0] is not None:
            continue
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                     f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
        created.append(name)
    return created


_PART_RE = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def drop_expired_partitions(conn: psycopg.Connection, retention_days: int, now: dt.datetime | None = None) -> list[str]:
    """Drop every daily partition whose whole day is older than ``retention_days``; also trims
    the small unpartitioned tables (availability transitions, dead letters) by DELETE."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = (now - dt.timedelta(days=retention_days)).date()
    dropped = []
    rows = conn.execute(
        "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)", (list(PARTITIONED),)).fetchall()
    for child, parent in rows:
        m = _PART_RE.match(child)
        if not m or m.group("table") != parent:
            continue
        day = dt.datetime.strptime(m.group("day"), "%Y%m%d").date()
        if day < cutoff:
            conn.execute(f"DROP TABLE IF EXISTS {child}")
            dropped.append(child)
    cut_ts = now - dt.timedelta(days=retention_days)
    conn.execute("DELETE FROM availability WHERE ts < %s", (cut_ts,))
    conn.execute("DELETE FROM dead_letter WHERE received_at < %s", (cut_ts,))
    return dropped
