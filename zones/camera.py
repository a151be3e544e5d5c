"""The per-camera context of the analytics, built once: zones, calibration, lanes, dwell
statistics, response clocks, capacities, heatmap, and the records of live tracks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from edge.config import CameraConfig, LaneConfig, StoreConfig
from zones.capacity import CapacityState
from zones.config import ZoneConfig
from zones.dwell import ZoneStats
from zones.geometry import FALLBACK_WIDTHS_PER_M, ZoneSet
from zones.membership import Hysteresis, ZoneMembership
from zones.queues import LaneQueue
from zones.response import ResponseTracker
from zones.tracks import TrackBook

log = logging.getLogger("storesense.analytics")

# A new track born inside a lane's queue/service zone (or an entrance) within this distance of
# where another track was lost (floor metres; image widths via FALLBACK_WIDTHS_PER_M without
# calibration) is that person under a new id.
STITCH_RADIUS_M = 1.0
# ... if the lost track was last seen at most the tracker's max_lost_s plus this long ago
STITCH_EXTRA_HOLD_S = 1.0


@dataclass
class CameraState:
    """Everything analytics keep for one camera."""

    cfg: CameraConfig
    zones: dict[str, ZoneConfig]
    zone_set: ZoneSet
    membership: ZoneMembership
    calibration: Any | None
    heatmap: Any | None
    lanes: list[LaneQueue]
    stats: dict[str, ZoneStats]
    responses: dict[str, ResponseTracker]
    distance_method: str
    stitch_hold_s: float
    tracks: TrackBook = field(default_factory=TrackBook)
    last_ts: float | None = None
    frames: int = 0
    calibration_by_size: dict[tuple[int, int], Any] = field(default_factory=dict)
    # entrance zone → tracks seen too briefly to count (see entering_min_seen_s); since start
    short_tracks_ignored: dict[str, int] = field(default_factory=dict)
    capacity: dict[str, CapacityState] = field(default_factory=dict)  # zones with a capacity

    @property
    def id(self) -> str:
        return self.cfg.id

    @property
    def stitch_radius(self) -> float:
        """STITCH_RADIUS_M in the units of the anchor points (image widths without calibration)."""
        return STITCH_RADIUS_M if self.calibration is not None else STITCH_RADIUS_M * FALLBACK_WIDTHS_PER_M

    def zones_of_kind(self, kind: str) -> list[ZoneConfig]:
        return [z for z in self.zones.values() if z.kind == kind]

    def lane_of_zone(self, zone_id: str) -> LaneQueue | None:
        for lane in self.lanes:
            if zone_id in (lane.queue_zone, lane.service_zone):
                return lane
        return None

    def calibration_for(self, frame_size_px: tuple[int, int]) -> Any:
        size = (int(frame_size_px[0]), int(frame_size_px[1]))
        cal = self.calibration_by_size.get(size)
        if cal is None:
            assert self.calibration is not None
            cal = self.calibration.for_frame_size(size)
            self.calibration_by_size[size] = cal
        return cal

    def per_track_sizes(self) -> dict[str, int]:
        sizes = self.tracks.sizes()
        sizes["membership"] = self.membership.tracked_count()
        sizes["responses"] = sum(len(r.pending) for r in self.responses.values())
        sizes["lane_pending"] = sum(lane.pending_count() for lane in self.lanes)
        return sizes


def build_lanes(cfg: StoreConfig, cam: CameraConfig, lanes: list[LaneConfig]) -> list[LaneQueue]:
    """The queue model of every lane whose queue zone this camera sees."""
    staff_detection = bool(cfg.staff.methods)
    return [
        LaneQueue(
            lane_id=lc.lane_id,
            label=lc.label,
            camera_id=cam.id,
            queue_zone=lc.queue_zone,
            service_zone=lc.service_zone,
            cfg=cfg.analytics.queue,
            staff_detection=staff_detection,
        )
        for lc in lanes
        if lc.camera_id == cam.id
    ]


def build_camera(cfg: StoreConfig, cam: CameraConfig, lanes: list[LaneConfig]) -> CameraState:
    from calibration.homography import Calibration

    calibration = Calibration.for_camera(cfg, cam.id)
    if calibration is None and any(z.kind in ("entrance", "dwell") for z in cam.zones):
        log.warning(
            "camera %s has no calibration: greeting/approach distances use an APPROXIMATE image-based radius "
            "(greet_radius_m x %.2f image widths per metre); calibrate the camera (storesense calibrate) "
            "for floor metres",
            cam.id,
            FALLBACK_WIDTHS_PER_M,
            extra={"camera": cam.id},
        )
    membership = ZoneMembership({z.id: Hysteresis(z.enter_after_s, z.leave_after_s) for z in cam.zones})
    responses = {}
    for z in cam.zones:
        if z.kind in ("entrance", "dwell"):
            radius = z.greet_radius_m if calibration is not None else z.greet_radius_m * FALLBACK_WIDTHS_PER_M
            responses[z.id] = ResponseTracker(z.id, z.sla_s, radius)
    return CameraState(
        cfg=cam,
        zones={z.id: z for z in cam.zones},
        zone_set=ZoneSet(cam.zones),
        membership=membership,
        calibration=calibration,
        heatmap=_make_heatmap(cfg, cam, calibration),
        lanes=build_lanes(cfg, cam, lanes),
        stats={z.id: ZoneStats(z.id, z.stop_after_s) for z in cam.zones},
        responses=responses,
        distance_method="floor_m" if calibration is not None else "image_approx",
        stitch_hold_s=cfg.tracker.max_lost_s + STITCH_EXTRA_HOLD_S,
        capacity={z.id: CapacityState(z.id, z.capacity, z.waiting_zone) for z in cam.zones if z.capacity},
    )


def _make_heatmap(cfg: StoreConfig, cam: CameraConfig, calibration: Any | None) -> Any:
    from zones.heatmap import HeatmapAccumulator

    return HeatmapAccumulator.for_camera(cfg, cam.id, floor=calibration is not None, calibration=calibration)
