"""``hq.yaml``: the central ingester's and the chain report's config.

Same rules as the store config (edge/config.py): unknown keys are errors, every problem names
file, line, field, expected and found, ``${VAR}`` is expanded, secrets are never inline.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from edge.config import ID_PATTERN, ConfigError, expand_env, load_yaml_mapping, validation_problems
from edge.config_base import Strict
from edge.config_checks import Where
from mqtt_bridge.config import TlsConfig
from mqtt_bridge.topics import DEFAULT_PREFIX


class HqMqttConfig(Strict):
    """The ingester's session on the central broker."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: str = DEFAULT_PREFIX
    client_id: str = Field(default="storesense-hq-1", pattern=ID_PATTERN,
                           description="unique per ingester: the broker keeps this session's queue while it is away")
    # Scaling out: give each ingester its own client_id and its own list of stores (a plain
    # persistent subscription per store keeps queueing while that ingester is down).
    stores: list[str] | None = Field(default=None, description="subscribe to these stores only; null: every store")
    # Shared subscriptions split one stream across ingesters, but Mosquitto 2.0 does not queue a
    # shared subscription while no member of the group is connected: a central restart where the
    # bridges come back before the ingesters loses those messages (measured, docs/hq.md). Only
    # for brokers that queue per group, or with members that are never all down at once.
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                    description="$share/<group>/...: ingesters of one group split the stream")
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=2, le=3600)
    session_expiry_s: int = Field(default=7 * 86400, ge=60,
                                  description="how long the broker queues for this ingester while it is down")
    receive_maximum: int = Field(default=1000, ge=1, le=65535,
                                 description="unacknowledged messages the broker may send at once (MQTT 5); the back-pressure window")

    @model_validator(mode="after")
    def _one_secret(self) -> HqMqttConfig:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if self.stores is not None and self.share_group:
            raise ValueError("give stores (one ingester per list of stores) or share_group, not both")
        for s in self.stores or []:
            if not re.match(r"^[a-z0-9][a-z0-9_-]{0,63}$", s):
                raise ValueError(f"store id {s!r} cannot be a topic level: use a-z, 0-9, '_' and '-'")
        return self


class PostgresConfig(Strict):
    dsn: str = Field(description="libpq connection string; keep the password in PGPASSWORD/.pgpass, not here")
    retention_days: int = Field(default=400, ge=1, le=10 * 366)
    reconnect_max_backoff_s: float = Field(default=10.0, gt=0.0, le=300.0)

    def redacted_dsn(self) -> str:
        """The DSN for an error message, without its password: cutting the text at "password"
        kept it in URL form (``postgresql://user:secret@host/db``)."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            parts = conninfo_to_dict(self.dsn)
        except Exception:  # psycopg.ProgrammingError: the DSN itself is malformed
            return "postgres.dsn (malformed)"
        parts.pop("password", None)
        return make_conninfo("", **parts)


DEFAULT_STATE_METRICS: dict[str, tuple[str, ...]] = {
    "lane": ("queue_length", "predicted_wait_s", "open", "measured_wait_recent_s", "service_rate_per_min"),
    "zone": ("occupancy", "staff_count"),
    "store": ("lanes_open",),
    "camera": ("fps_measured", "frames_dropped"),
}


class IngestConfig(Strict):
    batch_max_messages: int = Field(default=2000, ge=1, le=100_000)
    batch_wait_s: float = Field(default=0.2, gt=0.0, le=10.0,
                                description="longest a message waits for its batch (adds to ingest lag)")
    accept_future_s: float = Field(default=86400.0, ge=0.0,
                                   description="timestamps further ahead than this are dead-lettered (a wrong clock)")
    stats_interval_s: float = Field(default=60.0, gt=0.0)
    # Each kept field costs one row per entity and minute, and one upsert per entity and batch:
    # keep what the reports and dashboards read. A kind missing here keeps every numeric field.
    state_metrics: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_STATE_METRICS.items()})


class StoreEntry(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    timezone: str = "UTC"


class ReportConfig(Strict):
    timezone: str = Field(default="UTC", description="IANA zone of the chain report's hours")
    wait_sla_s: float = Field(default=300.0, gt=0.0, description="a customer waiting longer than this misses the wait SLA")
    title: str = "StoreSense chain report"


class HqConfig(Strict):
    version: int = Field(default=1, ge=1, le=1)
    mqtt: HqMqttConfig = Field(default_factory=HqMqttConfig)
    postgres: PostgresConfig
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    stores: list[StoreEntry] = Field(default_factory=list, description="optional names for the report")


def parse_hq_config(text: str, filename: str = "<hq config>") -> HqConfig:
    data, lines = load_yaml_mapping(text, filename, "postgres (and mqtt, ingest, report)")
    where = Where(filename, lines)
    data = expand_env(data, (), where)
    if where.problems:
        raise ConfigError(where.problems)
    try:
        return HqConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, filename, lines)) from None


def load_hq_config(path: str | Path) -> HqConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read config file: {exc}"]) from None
    return parse_hq_config(text, str(p))
