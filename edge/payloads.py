"""Typed message payloads: one class per JSON schema in mqtt_bridge/schemas/.

Producers build these and send ``payload.to_dict()``; consumers parse what they receive with
``Cls.from_dict``. They live in the foundation so that every layer (analytics, transports,
screens, ops review, the app) shares one definition of each schema without importing upwards.
tests/test_payload_types.py checks every class against its JSON Schema (same fields, the same
required ones), so a field added to one and not the other fails CI.

Units are in the field names (``_s`` seconds, ``_m`` metres, ``_per_min``, ``_pct``); times
are epoch seconds on the camera clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Payload")


@dataclass(frozen=True, kw_only=True)
class Payload:
    """Base of every payload: the schema name and version go into the ``schema`` field.

    ``OPTIONAL`` fields are left out of the JSON when they are None (they exist only for some
    zones, cameras or outcomes); every other field is always present, None as ``null``.
    """

    SCHEMA: ClassVar[str] = ""
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.SCHEMA}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Parse a received payload. Unknown keys (a newer producer) are ignored; a missing
        required key raises KeyError naming it."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = data[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{cls.SCHEMA}: payload has no {f.name!r}")
        return cls(**kwargs)

    @classmethod
    def schema_name(cls) -> str:
        """``lane_state`` for ``storesense.lane_state/1``; ``event_visit`` for events."""
        return cls.SCHEMA.split("/")[0].removeprefix("storesense.").replace(".", "_")


# ---------------------------------------------------------------------------------------------
# live state (retained)


@dataclass(frozen=True, kw_only=True)
class LaneMetrics:
    """The lane_state fields owned by the queue model (zones/queues.py:LaneQueue.metrics)."""

    open: bool
    open_source: str  # staff | command | default
    command: str  # open | closed | auto
    queue_length: int
    queue_length_smoothed: float
    server_busy: bool
    predicted_wait_s: float
    predicted_wait_low_s: float
    predicted_wait_high_s: float
    service_rate_per_min: float | None
    service_rate_source: str  # observed | default
    services_observed: int
    measured_wait_recent_s: float | None
    measured_wait_mean_s: float | None
    littles_law_wait_s: float | None
    stale: bool
    stale_reason: str | None


@dataclass(frozen=True, kw_only=True)
class LaneState(LaneMetrics, Payload):
    """``{base}/lane/{lane}/state``: one checkout lane, as the screens show it."""

    SCHEMA: ClassVar[str] = "storesense.lane_state/1"

    store_id: str
    lane_id: str
    label: str
    camera_id: str
    timestamp_s: float
    recommended: bool

    @classmethod
    def of(cls, m: LaneMetrics, **kw: Any) -> LaneState:
        return cls(**{f.name: getattr(m, f.name) for f in dataclasses.fields(LaneMetrics)}, **kw)


@dataclass(frozen=True, kw_only=True)
class StoreState(Payload):
    """``{base}/store/all/state``: the recommended lane and the active alerts."""

    SCHEMA: ClassVar[str] = "storesense.store_state/1"

    store_id: str
    timestamp_s: float | None
    recommended_lane: str | None
    lanes_open: int
    lanes: list[str]
    active_alerts: list[str]
    alerts: list[dict[str, Any]]  # {alert_id, rule_id, action, message, since_s} per active alert


@dataclass(frozen=True, kw_only=True)
class ZoneState(Payload):
    """``{base}/zone/{zone}/state``: occupancy, visits and dwell of one zone; response figures
    for entrance and dwell zones; places for zones with a capacity; short tracks for entrances."""

    SCHEMA: ClassVar[str] = "storesense.zone_state/1"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "response_sla_s", "response_events_last_hour", "response_compliance_pct", "response_latency_median_s",
        "response_pending", "distance_method", "capacity", "free_places", "occupancy_pct", "full", "full_for_s",
        "waiting", "short_tracks_ignored",
    })

    store_id: str
    zone_id: str
    label: str
    kind: str
    camera_id: str
    timestamp_s: float | None
    occupancy: int
    staff_present: bool
    staff_count: int
    visits_last_hour: int
    visits_completed_last_hour: int
    stops_last_hour: int
    dwell_median_s: float | None
    dwell_p90_s: float | None
    dwell_mean_s: float | None
    response_sla_s: float | None = None
    response_events_last_hour: int | None = None
    response_compliance_pct: float | None = None
    response_latency_median_s: float | None = None
    response_pending: int | None = None
    distance_method: str | None = None
    # zones with a capacity (zones/capacity.py); ``waiting`` is null there without a waiting_zone
    capacity: int | None = None
    free_places: int | None = None
    occupancy_pct: float | None = None
    full: bool | None = None
    full_for_s: float | None = None
    waiting: int | None = None
    short_tracks_ignored: int | None = None

    RESPONSE_FIELDS: ClassVar[tuple[str, ...]] = (
        "response_sla_s", "response_events_last_hour", "response_compliance_pct", "response_latency_median_s",
        "response_pending", "distance_method",
    )

    def to_dict(self) -> dict[str, Any]:
        """Response figures are there for zones with a response clock (entrance, dwell), null when
        there is no outcome yet; other zones leave them out."""
        out = super().to_dict()
        if self.response_sla_s is not None:
            for name in self.RESPONSE_FIELDS:
                out.setdefault(name, getattr(self, name))
        if self.capacity is not None:
            out.setdefault("waiting", self.waiting)
        return out


@dataclass(frozen=True, kw_only=True)
class CameraStatus(Payload):
    """``{base}/camera/{camera}/status``: the health of one camera worker."""

    SCHEMA: ClassVar[str] = "storesense.camera_status/1"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"analysis_fps", "frames_corrupt", "reconnects", "errors", "last_error", "reason"}
    )

    store_id: str
    camera_id: str
    timestamp_s: float
    state: str
    fps_measured: float
    frames_total: int
    frames_dropped: int
    analysis_fps: float | None = None
    frames_corrupt: int | None = None
    reconnects: int | None = None
    errors: int | None = None
    last_error: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class EdgeStatus(Payload):
    """``{base}/edge/{device}/status``: the box's own health (storage, what was dropped)."""

    SCHEMA: ClassVar[str] = "storesense.edge_status/1"

    store_id: str
    device_id: str
    timestamp_s: float
    storage: str  # ok | disk_full
    events_in_memory: int
    events_dropped: int
    history_dropped: int
    outbox_queued: int


# ---------------------------------------------------------------------------------------------
# durable events (QoS 1 through the outbox)


@dataclass(frozen=True, kw_only=True)
class Event(Payload):
    """Fields of every event; ``event_id`` is deterministic (camera/track/type/subject/time)."""

    TYPE: ClassVar[str] = ""

    store_id: str
    timestamp_s: float | None
    event_id: str
    type: str = ""

    def __post_init__(self) -> None:
        if not self.type:
            object.__setattr__(self, "type", self.TYPE)


@dataclass(frozen=True, kw_only=True)
class QueueWaitEvent(Event):
    SCHEMA: ClassVar[str] = "storesense.event.queue_wait/1"
    TYPE: ClassVar[str] = "queue_wait"

    lane_id: str
    camera_id: str
    track_id: int
    outcome: str  # served | abandoned
    joined_s: float | None
    served_s: float | None
    wait_s: float
    queue_length_at_join: int


@dataclass(frozen=True, kw_only=True)
class ResponseEvent(Event):
    """Base of greeting (entrance) and assist (dwell-zone approach) outcomes."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"distance_m", "distance_image_widths"})

    zone_id: str
    camera_id: str
    track_id: int
    outcome: str  # greeted | missed
    started_s: float | None
    latency_s: float | None
    sla_s: float
    within_sla: bool
    customer_left: bool
    distance_method: str  # floor_m | image_approx
    distance_m: float | None = None
    distance_image_widths: float | None = None


@dataclass(frozen=True, kw_only=True)
class GreetingEvent(ResponseEvent):
    SCHEMA: ClassVar[str] = "storesense.event.greeting/1"
    TYPE: ClassVar[str] = "greeting"


@dataclass(frozen=True, kw_only=True)
class AssistEvent(ResponseEvent):
    SCHEMA: ClassVar[str] = "storesense.event.assist/1"
    TYPE: ClassVar[str] = "assist"


@dataclass(frozen=True, kw_only=True)
class VisitEvent(Event):
    SCHEMA: ClassVar[str] = "storesense.event.visit/1"
    TYPE: ClassVar[str] = "visit"

    zone_id: str
    camera_id: str
    track_id: int
    enter_s: float | None
    exit_s: float | None
    dwell_s: float
    stop: bool
    stop_after_s: float
    closed_by: str  # exit | track_end | end_of_source


@dataclass(frozen=True, kw_only=True)
class EntryEvent(Event):
    SCHEMA: ClassVar[str] = "storesense.event.entry/1"
    TYPE: ClassVar[str] = "entry"

    camera_id: str
    zone_id: str
    entered_s: float | None
    track_age_s: float


@dataclass(frozen=True, kw_only=True)
class AlertEvent(Event):
    SCHEMA: ClassVar[str] = "storesense.event.alert/1"
    TYPE: ClassVar[str] = "alert"

    alert_id: str
    rule_id: str
    lane_id: str | None
    state: str  # raised | cleared
    metric: str
    value: float | None
    above: float
    for_s: float
    action: str
    message: str


@dataclass(frozen=True, kw_only=True)
class LaneCommandEvent(Event):
    SCHEMA: ClassVar[str] = "storesense.event.lane_command/1"
    TYPE: ClassVar[str] = "lane_command"

    lane_id: str
    camera_id: str
    state: str  # open | closed | auto
    open: bool
    open_source: str


@dataclass(frozen=True, kw_only=True)
class Heatmap(Payload):
    """``{base}/camera/{camera}/heatmap``: person-seconds per cell of one hour, k-suppressed."""

    SCHEMA: ClassVar[str] = "storesense.heatmap/1"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"observed_from_s", "observed_to_s"})

    store_id: str
    camera_id: str
    timestamp_s: float
    event_id: str
    hour_start_s: float
    hour_end_s: float
    complete: bool
    units: str
    origin: list[float]
    cell_size: float
    shape: list[int]
    cells: list[list[Any]]
    total_person_s: float
    suppressed_cells: int
    suppressed_person_s: float
    outside_person_s: float
    min_tracks_per_cell: int
    tracks: int
    observed_from_s: float | None = None
    observed_to_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class LaneSet:
    """``{base}/lane/{lane}/set``: a lane command to the edge (not a Payload: no schema field)."""

    state: str  # open | closed | auto


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (QueueWaitEvent, GreetingEvent, AssistEvent, VisitEvent, EntryEvent, AlertEvent, LaneCommandEvent)
}

PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    LaneState, StoreState, ZoneState, CameraStatus, EdgeStatus, Heatmap, *EVENT_TYPES.values(),
)

__all__ = [
    "EVENT_TYPES",
    "PAYLOAD_TYPES",
    "AlertEvent",
    "AssistEvent",
    "CameraStatus",
    "EdgeStatus",
    "EntryEvent",
    "Event",
    "GreetingEvent",
    "Heatmap",
    "LaneCommandEvent",
    "LaneMetrics",
    "LaneSet",
    "LaneState",
    "Payload",
    "QueueWaitEvent",
    "ResponseEvent",
    "StoreState",
    "VisitEvent",
    "ZoneState",
]
