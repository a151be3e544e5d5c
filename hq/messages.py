"""Classify one MQTT message from the chain into the row it becomes, or a dead letter.

The topic is authoritative for the store (the central broker's ACL lets a store's bridge write
only under its own prefix), so a payload that claims another ``store_id`` is parked, not
trusted. Anything not understood (unknown schema or version, malformed JSON, missing fields, a
timestamp outside the kept window) is a :class:`DeadLetter`: counted and stored, never dropped
silently and never an exception in the ingester.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from edge.payloads import PAYLOAD_TYPES

# the published contract: the typed payloads (one per JSON schema, checked equal in
# tests/test_payload_types.py) -> the top-level fields each may carry
SCHEMA_FIELDS: dict[str, frozenset[str]] = {
    cls.SCHEMA: frozenset({"schema", *(f.name for f in dataclasses.fields(cls))}) for cls in PAYLOAD_TYPES
}

# the versions this ingester understands; a new major version is dead-lettered until supported
STATE_SCHEMAS = {
    "lane": ("state", "storesense.lane_state/1"),
    "zone": ("state", "storesense.zone_state/1"),
    "store": ("state", "storesense.store_state/1"),
    "camera": ("status", "storesense.camera_status/1"),
}
HEATMAP_SCHEMA = "storesense.heatmap/1"
AVAILABILITY_STATES = {"online", "offline", "stopped"}
# per-minute statistics are kept only for numbers; these change every message and say nothing
SKIP_METRICS = {"timestamp_s", "hour_start_s", "hour_end_s"}


@dataclass(frozen=True)
class EventRow:
    store_id: str
    event_id: str
    type: str
    ts: dt.datetime
    payload: str  # JSON text, stored as jsonb


@dataclass(frozen=True)
class StateSample:
    store_id: str
    kind: str
    entity_id: str
    timestamp_s: float
    metrics: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class AvailabilityRow:
    store_id: str
    device_id: str
    state: str


@dataclass(frozen=True)
class HeatmapRow:
    store_id: str
    camera_id: str
    event_id: str
    hour_start: dt.datetime
    payload: str


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    reason: str
    payload: bytes


@dataclass(frozen=True)
class Ignored:
    """Not data: lane commands sent from HQ to a store come back on the shared wildcard."""

    reason: str


Row = EventRow | StateSample | AvailabilityRow | HeatmapRow | DeadLetter | Ignored


class _Bad(Exception):
    pass


def _epoch(payload: dict[str, Any], key: str, now_s: float, accept_future_s: float, oldest_s: float) -> float:
    v = payload.get(key)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise _Bad(f"{key} must be a number of epoch seconds; found {v!r}")
    if v > now_s + accept_future_s:
        raise _Bad(f"{key} {v} is more than {accept_future_s:.0f} s in the future (edge clock wrong?)")
    if v < oldest_s:
        raise _Bad(f"{key} {v} is older than the retention window")
    return float(v)


def _utc(ts_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_s, dt.timezone.utc)


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _Bad(f"payload has the out-of-range number {text[:40]!r}")
    return v


def _no_constant(name: str) -> Any:
    raise _Bad(f"payload has {name}, which is not JSON")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        # NaN/Infinity/1e999 would be accepted by json.loads but refused by json.dumps(allow_nan=False)
        # and by jsonb; an over-long integer or a deeply nested document raises ValueError/RecursionError
        obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise _Bad(f"payload is not JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise _Bad(f"payload must be a JSON object; found {type(obj).__name__}")
    return obj


class _Private(_Bad):
    """Fields outside the published schema: possibly identities or images, never stored as sent."""

    def __init__(self, reason: str, redacted: bytes) -> None:
        super().__init__(reason)
        self.redacted = redacted


def _check_common(obj: dict[str, Any], schema: str, store: str) -> None:
    found = obj.get("schema")
    if found != schema:
        raise _Bad(f"unknown schema {found!r}; expected {schema!r}")
    if obj.get("store_id") != store:
        raise _Bad(f"store_id {obj.get('store_id')!r} does not match the topic's store {store!r}")
    allowed = SCHEMA_FIELDS.get(schema)
    if allowed is None:
        raise _Bad(f"unknown schema {schema!r} (not in the published contract)")
    extra = sorted(k for k in obj if k not in allowed)
    if extra:
        # only the documented aggregate fields may leave a store: park it, without the values
        redacted = json.dumps({k: ("<removed>" if k in extra else v) for k, v in obj.items()}).encode()
        raise _Private(f"fields not in {schema}: {', '.join(repr(k[:40]) for k in extra[:10])} "
                       "(not stored: only documented fields may leave a store)", redacted)


def _metrics(obj: dict[str, Any], keep: Collection[str] | None) -> tuple[tuple[str, float], ...]:
    out = []
    for k, v in obj.items():
        if k in SKIP_METRICS or (keep is not None and k not in keep):
            continue
        if isinstance(v, bool):
            out.append((k, 1.0 if v else 0.0))
        elif isinstance(v, int | float) and math.isfinite(v):
            out.append((k, float(v)))
    return tuple(out)


def classify(topic: str, raw: bytes, *, prefix: str, now_s: float, accept_future_s: float,
             retention_days: float, state_metrics: Mapping[str, Collection[str]] | None = None) -> Row:
    """One message → one row (or a dead letter). Never raises for bad input. ``state_metrics``:
    the numeric fields kept per state kind (a kind not listed keeps all)."""
    try:
        return _classify(topic, raw, prefix, now_s, accept_future_s, now_s - retention_days * 86400.0,
                         state_metrics or {})
    except _Private as exc:
        return DeadLetter(topic, str(exc), exc.redacted)
    except _Bad as exc:
        return DeadLetter(topic, str(exc), bytes(raw))
    except Exception as exc:  # noqa: BLE001 - a poison message must never stop the ingester (it would be redelivered forever)
        return DeadLetter(topic, f"not understood: {type(exc).__name__}: {str(exc)[:200]}", bytes(raw))


def _classify(topic: str, raw: bytes, prefix: str, now_s: float, accept_future_s: float, oldest_s: float,
              state_metrics: Mapping[str, Collection[str]]) -> Row:
    if not topic.startswith(prefix + "/"):
        raise _Bad(f"topic outside the prefix {prefix!r}")
    parts = topic[len(prefix) + 1:].split("/")
    store = parts[0]
    if len(parts) == 3 and parts[1] == "events":
        obj = _json_object(raw)
        _check_common(obj, f"storesense.event.{parts[2]}/1", store)
        event_id = obj.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise _Bad("event_id missing or not a string")
        ts = _epoch(obj, "timestamp_s", now_s, accept_future_s, oldest_s)
        return EventRow(store, event_id, parts[2], _utc(ts), json.dumps(obj, allow_nan=False))
    if len(parts) != 4:
        raise _Bad("unexpected topic shape; expected {prefix}/{store}/{kind}/{id}/{leaf} or .../events/{type}")
    _, kind, entity, leaf = parts
    if kind == "edge" and leaf == "availability":
        state = raw.decode("utf-8", "replace").strip()
        if state not in AVAILABILITY_STATES:
            raise _Bad(f"availability must be one of {sorted(AVAILABILITY_STATES)}; found {state[:40]!r}")
        return AvailabilityRow(store, entity, state)
    if kind == "edge" and entity == "bridge" and leaf == "connection":
        state = raw.decode("utf-8", "replace").strip()
        if state not in {"0", "1"}:
            raise _Bad(f"bridge notification must be '0' or '1'; found {state[:40]!r}")
        return AvailabilityRow(store, "bridge", "online" if state == "1" else "offline")
    if kind == "lane" and leaf == "set":
        return Ignored("lane command")
    if kind == "camera" and leaf == "heatmap":
        obj = _json_object(raw)
        _check_common(obj, HEATMAP_SCHEMA, store)
        event_id = obj.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise _Bad("event_id missing or not a string")
        hour = _epoch(obj, "hour_start_s", now_s, accept_future_s, oldest_s)
        return HeatmapRow(store, entity, event_id, _utc(hour), json.dumps(obj, allow_nan=False))
    if kind in STATE_SCHEMAS and leaf == STATE_SCHEMAS[kind][0]:
        if not raw:
            return Ignored("retained state cleared")  # an empty retained message deletes it
        obj = _json_object(raw)
        _check_common(obj, STATE_SCHEMAS[kind][1], store)
        ts = _epoch(obj, "timestamp_s", now_s, accept_future_s, oldest_s)
        return StateSample(store, kind, entity, ts, _metrics(obj, state_metrics.get(kind)))
    raise _Bad(f"no table for topic kind {kind!r} leaf {leaf!r}")
