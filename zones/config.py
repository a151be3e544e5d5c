"""Config models owned by the analytics: zones, staff identification, alert rules, heatmaps.

They live here, next to the code that reads them, and are assembled into the store config by
:mod:`edge.config`. Every model forbids unknown keys so that a typo is an error with a line
number instead of a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.config_base import Strict

Point = tuple[float, float]


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # one MQTT topic level: no '/', '+', '#'


ZoneKind = Literal["queue", "service", "dwell", "entrance", "staff_only"]


class _ZoneBase(Strict):
    """A polygon on the floor or in the image, and the rules that apply inside it.

    One model per ``kind`` (a pydantic discriminated union, :data:`ZoneConfig`): a setting that
    does not belong to a kind (``stop_after_s`` on a queue zone) is an error at its line instead
    of being accepted and ignored. Settings of other kinds read as their defaults (``ClassVar``),
    so code that walks every zone can still ask any zone for them.
    """

    id: str = Field(pattern=ID_PATTERN, description="zone id, unique within the camera")
    label: str | None = Field(default=None, description="Name shown on screens and reports")
    units: Literal["norm", "m"] = Field(
        default="norm", description="norm: image coordinates 0..1; m: floor metres (needs calibration)"
    )
    polygon: list[Point] = Field(min_length=3, description="3 or more points, in `units`")
    # membership hysteresis
    enter_after_s: float = Field(default=1.0, ge=0.0, le=60.0, description="a person is in the zone after being inside this long")
    leave_after_s: float = Field(default=2.0, ge=0.0, le=120.0, description="and out of it after being outside this long")

    @field_validator("polygon")
    @classmethod
    def _polygon_ok(cls, v: list[Point], info: ValidationInfo) -> list[Point]:
        from shapely.geometry import Polygon

        if info.data.get("units", "norm") == "norm":
            for x, y in v:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(
                        f"point ({x}, {y}) is outside 0..1; with units: norm, points are fractions "
                        "of the image width/height (use units: m for floor metres)"
                    )
        else:
            from calibration.config import MAX_COORDINATE

            for x, y in v:
                if abs(x) > MAX_COORDINATE or abs(y) > MAX_COORDINATE:
                    raise ValueError(f"point ({x:.3g}, {y:.3g}) is beyond ±{MAX_COORDINATE:.0f} m: not a floor position")

        poly = Polygon(v)
        if not poly.is_valid or poly.area <= 0:
            raise ValueError("polygon must be a simple, non-self-intersecting shape with a non-zero area")
        return v

    @property
    def lane_id(self) -> str:
        lane = getattr(self, "lane", None)
        return lane or self.id

    @property
    def sla_s(self) -> float:
        sla = getattr(self, "response_sla_s", None)
        if sla is not None:
            return float(sla)
        return 10.0 if getattr(self, "kind", "") == "entrance" else 30.0


_LANE_DESCRIPTION = "Lane id of a queue/service zone (default: zone id)"
_SLA_DESCRIPTION = "entrance: default 10 s; dwell: default 30 s"


class QueueZone(_ZoneBase):
    """Customers waiting for a till; one queue zone per lane."""

    kind: Literal["queue"] = Field(description="queue, service (till), dwell, entrance or staff_only")
    lane: str | None = Field(default=None, pattern=ID_PATTERN, description=_LANE_DESCRIPTION)
    service_zone: str | None = Field(default=None, description="queue: id of the service zone at its till")
    stop_after_s: ClassVar[float] = 20.0
    greet_radius_m: ClassVar[float] = 1.5
    response_sla_s: ClassVar[float | None] = None
    entering_min_seen_s: ClassVar[float] = 2.0
    entering_max_track_age_s: ClassVar[float] = 10.0
    capacity: ClassVar[int | None] = None
    waiting_zone: ClassVar[str | None] = None


class ServiceZone(_ZoneBase):
    """The till of a lane: being served here ends the wait."""

    kind: Literal["service"] = Field(description="queue, service (till), dwell, entrance or staff_only")
    lane: str | None = Field(default=None, pattern=ID_PATTERN, description=_LANE_DESCRIPTION)
    service_zone: ClassVar[str | None] = None
    stop_after_s: ClassVar[float] = 20.0
    greet_radius_m: ClassVar[float] = 1.5
    response_sla_s: ClassVar[float | None] = None
    entering_min_seen_s: ClassVar[float] = 2.0
    entering_max_track_age_s: ClassVar[float] = 10.0
    capacity: ClassVar[int | None] = None
    waiting_zone: ClassVar[str | None] = None


class DwellZone(_ZoneBase):
    """A product display: visits, stops and staff approach."""

    kind: Literal["dwell"] = Field(description="queue, service (till), dwell, entrance or staff_only")
    stop_after_s: float = Field(default=20.0, gt=0.0, le=3600.0, description="dwell: a visit longer than this counts as a stop (attention)")
    greet_radius_m: float = Field(default=1.5, gt=0.0, le=20.0, description="a staff member this close counts as a greeting/approach")
    response_sla_s: float | None = Field(default=None, gt=0.0, le=3600.0, description=_SLA_DESCRIPTION)
    capacity: int | None = Field(
        default=None, ge=1, le=10_000,
        description="places in the zone (e.g. 6 fitting cabins): its state then reports free places, "
        "full and for how long, and alert rules can use zone_occupancy_pct (zones/capacity.py)",
    )
    waiting_zone: str | None = Field(
        default=None, pattern=ID_PATTERN,
        description="with capacity: id of the dwell zone at its entrance where people wait (counted as waiting)",
    )
    lane: ClassVar[str | None] = None
    service_zone: ClassVar[str | None] = None
    entering_min_seen_s: ClassVar[float] = 2.0
    entering_max_track_age_s: ClassVar[float] = 10.0

    @model_validator(mode="after")
    def _waiting_needs_capacity(self) -> DwellZone:
        if self.waiting_zone is not None and self.capacity is None:
            raise ValueError("waiting_zone needs capacity (the zone people wait to enter)")
        return self


class EntranceZone(_ZoneBase):
    """The door: footfall and greetings."""

    kind: Literal["entrance"] = Field(description="queue, service (till), dwell, entrance or staff_only")
    greet_radius_m: float = Field(default=1.5, gt=0.0, le=20.0, description="a staff member this close counts as a greeting/approach")
    response_sla_s: float | None = Field(default=None, gt=0.0, le=3600.0, description=_SLA_DESCRIPTION)
    entering_min_seen_s: float = Field(
        default=2.0,
        ge=0.0,
        le=60.0,
        description="entrance: a track seen for less than this in all is a detector flicker, not a customer: "
        "its entry and greeting events wait until it has been seen this long and are dropped if it ends "
        "first. Lower it for a camera that sees people for less than this as they come in",
    )
    entering_max_track_age_s: float = Field(
        default=10.0,
        gt=0.0,
        le=600.0,
        description="entrance: a track older than this when it steps into the zone is someone leaving "
        "or passing, not a customer entering (no greeting owed, no footfall)",
    )
    lane: ClassVar[str | None] = None
    service_zone: ClassVar[str | None] = None
    stop_after_s: ClassVar[float] = 20.0
    capacity: ClassVar[int | None] = None
    waiting_zone: ClassVar[str | None] = None


class StaffOnlyZone(_ZoneBase):
    """Behind the counter: tracks that stay here are staff."""

    kind: Literal["staff_only"] = Field(description="queue, service (till), dwell, entrance or staff_only")
    lane: ClassVar[str | None] = None
    service_zone: ClassVar[str | None] = None
    stop_after_s: ClassVar[float] = 20.0
    greet_radius_m: ClassVar[float] = 1.5
    response_sla_s: ClassVar[float | None] = None
    entering_min_seen_s: ClassVar[float] = 2.0
    entering_max_track_age_s: ClassVar[float] = 10.0
    capacity: ClassVar[int | None] = None
    waiting_zone: ClassVar[str | None] = None


ZoneConfig = Annotated[
    QueueZone | ServiceZone | DwellZone | EntranceZone | StaffOnlyZone, Field(discriminator="kind")
]
ZONE_MODELS: dict[str, type[_ZoneBase]] = {
    "queue": QueueZone, "service": ServiceZone, "dwell": DwellZone, "entrance": EntranceZone,
    "staff_only": StaffOnlyZone,
}
_ZONE_ADAPTER: TypeAdapter[ZoneConfig] = TypeAdapter(ZoneConfig)


def zone_config(**fields: Any) -> ZoneConfig:
    """Build a zone of the right kind from keyword fields (tests, simulator)."""
    return _ZONE_ADAPTER.validate_python(fields)


class HsvRange(Strict):
    lower: tuple[int, int, int] = Field(description="lowest H, S, V (OpenCV scale: H 0-179, S and V 0-255)")
    upper: tuple[int, int, int] = Field(description="highest H, S, V")

    @model_validator(mode="after")
    def _ranges(self) -> HsvRange:
        for lo, hi, top, name in zip(self.lower, self.upper, (179, 255, 255), "HSV", strict=True):
            if not (0 <= lo <= top and 0 <= hi <= top):
                raise ValueError(f"{name} must be within 0..{top} (OpenCV HSV scale)")
            if lo > hi:
                raise ValueError(f"{name}: lower {lo} is above upper {hi}")
        return self


class UniformConfig(Strict):
    """Staff wear a uniform: a share of the torso pixels falls into one of these HSV ranges."""

    hsv_ranges: list[HsvRange] = Field(min_length=1, description="uniform colours")
    min_pixel_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="share of torso pixels in a range for one staff vote")
    min_votes: int = Field(default=5, ge=1, le=1000, description="frames observed before deciding")
    staff_vote_fraction: float = Field(default=0.6, gt=0.0, le=1.0, description="share of staff votes that makes a track staff")


class StaffOnlyConfig(Strict):
    """Tracks that spend this long in a staff_only zone are staff."""

    min_time_s: float = Field(default=2.0, ge=0.0, le=600.0, description="time in a staff_only zone that makes a track staff")


class OnnxClassifierConfig(Strict):
    path: str = Field(description="the staff/customer classifier (.onnx)")
    staff_class: int = Field(default=1, ge=0, description="output index of the staff class")
    input_size_px: tuple[int, int] = Field(default=(128, 256), description="classifier input (width, height)")
    min_votes: int = Field(default=5, ge=1, description="frames classified before deciding")
    staff_vote_fraction: float = Field(default=0.6, gt=0.0, le=1.0, description="share of staff votes that makes a track staff")


class StaffConfig(Strict):
    methods: list[Literal["uniform", "staff_only_zone", "onnx"]] = Field(default_factory=list, description="staff identification methods, combined")
    uniform: UniformConfig | None = Field(default=None, description="settings of the uniform method")
    staff_only_zone: StaffOnlyConfig = Field(default_factory=StaffOnlyConfig, description="settings of the staff_only_zone method")
    onnx: OnnxClassifierConfig | None = Field(default=None, description="settings of the onnx classifier method")

    @model_validator(mode="after")
    def _method_settings(self) -> StaffConfig:
        if "uniform" in self.methods and self.uniform is None:
            raise ValueError("method 'uniform' needs a 'uniform:' section with hsv_ranges")
        if "onnx" in self.methods and self.onnx is None:
            raise ValueError("method 'onnx' needs an 'onnx:' section with the classifier path")
        return self


class AlertRule(Strict):
    """E.g. predicted wait > 300 s for 60 s on any lane → "open another lane"."""

    id: str = Field(pattern=ID_PATTERN, description="alert id (in the store state's active_alerts)")
    lane: str = Field(default="*", pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_-]{0,63})$", description="lane id, or * for every lane")
    metric: Literal["predicted_wait_s", "queue_length", "open_lanes_busy", "zone_occupancy_pct"] = Field(description="what is compared with `above`")
    zone: str = Field(default="*", pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_-]{0,63})$",
                      description="zone_occupancy_pct: zone id, or * for every zone with a capacity")
    above: float = Field(description="threshold, in the metric's unit")
    for_s: float = Field(default=0.0, ge=0.0, le=3600.0, description="the metric must stay above the threshold this long")
    action: str = Field(default="open_lane", description="machine-readable action for staff apps")
    message: str = Field(default="Open another lane", description="text for staff screens and apps")
    hours: tuple[int, int] | None = Field(
        default=None, description="active only between these local hours [start, end), e.g. peak hours"
    )

    @field_validator("hours")
    @classmethod
    def _hours_ok(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None:
            start, end = v
            if not (0 <= start <= 23 and 0 <= end <= 24):
                raise ValueError(f"hours are local hours of the day: start 0..23, end 0..24; found [{start}, {end}]")
            if start == end:
                raise ValueError(f"hours [{start}, {end}] is an empty window; leave hours out for all day")
        return v


class HeatmapConfig(Strict):
    cell_m: float = Field(default=0.25, gt=0.0, le=5.0, description="grid cell on the floor (calibrated cameras)")
    cell_norm: float = Field(default=0.02, gt=0.0, le=0.5, description="grid cell as a fraction of the image (uncalibrated cameras)")
    min_tracks_per_cell: int = Field(
        default=3,
        ge=1,
        description="privacy (k-anonymity): hide cells fewer than k distinct tracks visited in the hour. "
        "k=1 lets a cell describe one person (61 % of cells in a fault-injection run); k=3 hides them, "
        "at the price of blank cells at quiet hours and in rarely visited corners",
    )


class QueueModelConfig(Strict):
    service_rate_halflife_s: float = Field(
        default=1800.0, gt=0.0, le=7200.0,
        description="how fast the learnt service rate forgets old customers. 1800 s: on the isolated-lane "
        "scenario of scripts/wait_floor.py the predicted wait is within 1.08x of the best-informed floor at "
        "utilisation 0.95 (300 s gave 1.52x: a rate learnt from ~7 services was the gap; "
        "scripts/wait_vs_floor.py); lower it to follow a cashier whose speed changes faster",
    )
    stale_after_s: float = Field(default=10.0, gt=0.0, le=600.0, description="a lane with no fresh data this long is shown as stale")
    smoothing_s: float = Field(default=3.0, ge=0.0, le=120.0, description="queue length smoothing window")
    default_service_time_s: float = Field(default=60.0, gt=0.0, le=3600.0, description="service time assumed before a lane has served anyone")
    lane_close_hold_s: float = Field(
        default=15.0,
        ge=0.0,
        le=600.0,
        description="a lane detected by staff at the till shows closed only after nobody has been "
        "there this long (a cashier stepping away for a moment does not close it on the screens)",
    )


class RecommendationConfig(Strict):
    """Hysteresis of the "Recommended" badge on the checkout screens (zones/recommend.py)."""

    margin_s: float = Field(
        default=30.0, ge=0.0, le=600.0,
        description="another lane takes the badge only if its predicted wait is at least this much shorter",
    )
    hold_s: float = Field(
        default=10.0, ge=0.0, le=600.0,
        description="... and stays that much shorter this long (the recommended lane closing or going "
        "stale moves the badge at once)",
    )


class AnalyticsConfig(Strict):
    state_interval_s: float = Field(default=1.0, gt=0.0, le=60.0, description="live state is published at most this often")
    queue: QueueModelConfig = Field(default_factory=QueueModelConfig, description="queue and wait model")
    recommendation: RecommendationConfig = Field(
        default_factory=RecommendationConfig, description="hysteresis of the checkout screens' Recommended badge"
    )
    heatmap: HeatmapConfig = Field(default_factory=HeatmapConfig, description="heatmap grid and privacy")
    alerts: list[AlertRule] = Field(default_factory=list, description="alert rules")
