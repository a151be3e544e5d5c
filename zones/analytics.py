"""StoreAnalytics: tracks in, the numbers store managers act on out.

One instance per store, called from the single analysis thread once per analysed frame of any
camera (``update``), on a lane command (``set_lane_state``) and at the end of a file
(``finish``). It owns, per camera, zone membership (hysteresis), staff identification, the
queue model of every lane whose queue zone that camera sees, dwell statistics, staff-response
clocks and the heatmap accumulator; store-wide it owns the recommended lane and the alerts.

Output is a list of :class:`edge.contract.Message`: retained live state (lane, zone, store) at
most every ``analytics.state_interval_s`` per entity, and at once when something a screen must
show changes (lane open/closed, recommended lane, staleness, alerts); durable events as they
happen, each with a deterministic ``event_id`` (camera/track/type/time) so a replay after a
crash de-duplicates. Payloads never carry images or identities: only numbers and the anonymous
per-camera track ids, which the tracker never reuses and this class forgets when a track ends.
See docs/messages.md for every field.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.config import CameraConfig, StoreConfig
from edge.contract import Message, Tracks
from edge.errors import UserFacingError
from mqtt_bridge.topics import Topics
from zones.capacity import CapacityState
from zones.config import ZoneConfig
from zones.dwell import ZoneStats
from zones.geometry import FALLBACK_WIDTHS_PER_M, ZoneSet, image_widths
from zones.membership import Hysteresis, Transition, ZoneMembership
from zones.queues import AlertChange, AlertEngine, LaneCommand, LaneQueue
from zones.recommend import LaneOption, LaneRecommender
from zones.response import ResponseOutcome, ResponseTracker

log = logging.getLogger("storesense.analytics")

SCHEMA_VERSION = 1
# A customer counts as *entering* (and is owed a greeting) only if their track started at most
# the entrance zone's entering_max_track_age_s before they stepped into it; someone who has been
# in the store for minutes and crosses the entrance zone is leaving.
# A track born inside an entrance zone within STITCH_RADIUS_M of a track lost in the last
# tracker.max_lost_s + STITCH_EXTRA_HOLD_S is that person under a new id (id switch,
# re-acquisition after an occlusion), not someone entering: no greeting clock, no entry event.
# Anyone else born inside the zone is entering (a door in the middle of the picture works).
# Safety net for a tracker that never reports a track as ended: forget it after this long unseen.
TRACK_FORGET_S = 120.0
# A new track born inside a lane's queue/service zone within this distance of where a queuer's
# track was lost (floor metres; image widths via FALLBACK_WIDTHS_PER_M without calibration) is
# that customer under a new id, and inherits the join time.
STITCH_RADIUS_M = 1.0
# ... if the lost track was last seen at most the tracker's max_lost_s plus this long ago
STITCH_EXTRA_HOLD_S = 1.0
# Heatmap time step cap: after a stall the next frame must not paint seconds nobody observed.
HEATMAP_MAX_DT_S = 1.0


class UnknownLaneError(UserFacingError, ValueError):
    """A lane command names a lane that is not in the config."""


def _schema(name: str) -> str:
    return f"storesense.{name}/{SCHEMA_VERSION}"


def _ms(t: float) -> int:
    return int(round(t * 1000.0))


def _r3(t: float | None) -> float | None:
    return None if t is None else round(float(t), 3)


@dataclass
class _Camera:
    """Everything analytics keeps for one camera."""

    cfg: CameraConfig
    zones: dict[str, ZoneConfig]
    zone_set: ZoneSet
    membership: ZoneMembership
    calibration: Any | None
    staff: Any
    heatmap: Any | None
    lanes: list[LaneQueue]
    stats: dict[str, ZoneStats]
    responses: dict[str, ResponseTracker]
    distance_method: str
    last_ts: float | None = None
    frames: int = 0
    calibration_by_size: dict[tuple[int, int], Any] = field(default_factory=dict)
    capacity: dict[str, CapacityState] = field(default_factory=dict)  # zones with a capacity
    # per-track state; every dict is evicted when the track ends
    first_seen_s: dict[int, float] = field(default_factory=dict)
    last_seen_s: dict[int, float] = field(default_factory=dict)
    staff_only_s: dict[int, float] = field(default_factory=dict)
    # entrance greeting clock started for these tracks; value: entrance membership confirmed
    greeting_started: dict[int, bool] = field(default_factory=dict)
    # tracks born inside an entrance zone next to a just-lost track (re-acquired, not entering);
    # value: that lost track, whose greeting clock they take over (None once handed over)
    born_inside_entrance: dict[int, int | None] = field(default_factory=dict)
    # entrance events (entry, greeting outcome) of tracks not yet seen for the zone's
    # entering_min_seen_s: (that threshold, [(outcome or None, message)]); released once the track
    # has been seen long enough, dropped if it ends first (a flicker is not a customer)
    entrance_held: dict[int, tuple[float, list[tuple[ResponseOutcome | None, Message]]]] = field(default_factory=dict)
    # first sighting of a re-acquired person under their earlier id (for entering_min_seen_s)
    seen_from_s: dict[int, float] = field(default_factory=dict)
    # entrance zone → tracks seen too briefly to count (see entering_min_seen_s); since start
    short_tracks_ignored: dict[str, int] = field(default_factory=dict)
    # last anchor point of each track (floor m, or image widths without calibration)
    last_pt: dict[int, tuple[float, float]] = field(default_factory=dict)
    stopped: dict[str, set[int]] = field(default_factory=dict)  # dwell zone → tracks whose visit is a stop

    def per_track_sizes(self) -> dict[str, int]:
        sizes = {
            "first_seen": len(self.first_seen_s),
            "last_seen": len(self.last_seen_s),
            "staff_only": len(self.staff_only_s),
            "greeting_started": len(self.greeting_started),
            "born_inside_entrance": len(self.born_inside_entrance),
            "entrance_held": len(self.entrance_held),
            "seen_from": len(self.seen_from_s),
            "last_pt": len(self.last_pt),
            "stopped": sum(len(s) for s in self.stopped.values()),
            "membership": self.membership.tracked_count(),
            "responses": sum(len(r.pending) for r in self.responses.values()),
            "lane_pending": sum(lane.pending_count() for lane in self.lanes),
        }
        return sizes


class StoreAnalytics:
    """See the module docstring. Not thread-safe by design: one analysis thread calls it."""

    def __init__(self, cfg: StoreConfig, topics: Topics) -> None:
        self.cfg = cfg
        self.topics = topics
        self.store_id = cfg.store.id
        self.acfg = cfg.analytics
        self.staff_methods = list(cfg.staff.methods)
        self.cameras: dict[str, _Camera] = {}
        self.lanes: dict[str, LaneQueue] = {}
        self.alerts = AlertEngine(list(self.acfg.alerts), cfg.store.timezone)
        self._last_emit_s: dict[str, float] = {}
        self._last_sig: dict[str, Any] = {}
        self._recommended: str | None = None
        self.recommender = LaneRecommender(self.acfg.recommendation.margin_s, self.acfg.recommendation.hold_s)
        self._finished = False
        for cam in cfg.cameras:
            if cam.enabled:
                self.cameras[cam.id] = self._build_camera(cam)
        for rule in self.acfg.alerts:
            if rule.lane != "*" and rule.lane not in self.lanes:
                raise UserFacingError(
                    f"alert rule {rule.id!r} names lane {rule.lane!r}, which is not a lane of this store; "
                    f"lanes: {sorted(self.lanes) or 'none (add queue zones)'}"
                )

    # -- construction ---------------------------------------------------------------------------
    def _build_camera(self, cam: CameraConfig) -> _Camera:
        zones = {z.id: z for z in cam.zones}
        calibration = None
        if cam.calibration is not None:
            from calibration.homography import Calibration

            calibration = Calibration.from_config(cam.calibration, self.cfg.resolve_path)
        elif any(z.kind in ("entrance", "dwell") for z in cam.zones):
            log.warning(
                "camera %s has no calibration: greeting/approach distances use an APPROXIMATE image-based radius "
                "(greet_radius_m x %.2f image widths per metre); calibrate the camera (storesense calibrate) "
                "for floor metres",
                cam.id,
                FALLBACK_WIDTHS_PER_M,
                extra={"camera": cam.id},
            )
        membership = ZoneMembership({z.id: Hysteresis(z.enter_after_s, z.leave_after_s) for z in cam.zones})
        lanes: list[LaneQueue] = []
        staff_detection = bool(self.staff_methods)
        for z in cam.zones:
            if z.kind != "queue":
                continue
            lane_id = z.lane_id
            if lane_id in self.lanes:
                raise UserFacingError(
                    f"lane {lane_id!r} has more than one queue zone (camera {cam.id}, zone {z.id}); give each "
                    "queue zone its own 'lane' id"
                )
            service = z.service_zone
            if service is None:  # a service zone of the same lane on this camera
                service = next((s.id for s in cam.zones if s.kind == "service" and s.lane_id == lane_id), None)
            lane = LaneQueue(
                lane_id=lane_id,
                label=z.label or lane_id,
                camera_id=cam.id,
                queue_zone=z.id,
                service_zone=service,
                cfg=self.acfg.queue,
                staff_detection=staff_detection,
            )
            lanes.append(lane)
            self.lanes[lane_id] = lane
        base_dir = self.cfg.source_path.parent if self.cfg.source_path is not None else None
        staff = self._make_staff(base_dir)
        distance_method = "floor_m" if calibration is not None else "image_approx"
        responses = {}
        for z in cam.zones:
            if z.kind in ("entrance", "dwell"):
                radius = z.greet_radius_m if calibration is not None else z.greet_radius_m * FALLBACK_WIDTHS_PER_M
                responses[z.id] = ResponseTracker(z.id, z.sla_s, radius)
        return _Camera(
            cfg=cam,
            zones=zones,
            zone_set=ZoneSet(cam.zones),
            membership=membership,
            calibration=calibration,
            staff=staff,
            heatmap=self._make_heatmap(cam, calibration),
            lanes=lanes,
            stats={z.id: ZoneStats(z.id, z.stop_after_s) for z in cam.zones},
            responses=responses,
            distance_method=distance_method,
            stopped={z.id: set() for z in cam.zones if z.kind == "dwell"},
            capacity={z.id: CapacityState(z.id, z.capacity, z.waiting_zone) for z in cam.zones if z.capacity},
        )

    def _make_staff(self, base_dir: Any) -> Any:
        from zones.staff import StaffIdentifier

        return StaffIdentifier(self.cfg.staff, base_dir)

    def _make_heatmap(self, cam: CameraConfig, calibration: Any | None) -> Any:
        from zones.heatmap import HeatmapAccumulator

        return HeatmapAccumulator.for_camera(
            self.cfg, cam.id, self.topics, floor=calibration is not None, calibration=calibration
        )

    # -- public API -----------------------------------------------------------------------------
    def update(self, tracks: Tracks, image_bgr: npt.NDArray[np.uint8] | None = None) -> list[Message]:
        cam = self.cameras.get(tracks.camera_id)
        if cam is None:
            raise UserFacingError(
                f"tracks from camera {tracks.camera_id!r}, which is not an enabled camera of the config; "
                f"cameras: {sorted(self.cameras)}"
            )
        ts = float(tracks.timestamp_s)
        if cam.last_ts is not None and ts < cam.last_ts:
            log.warning("camera %s: timestamp went back %.3f s; holding the clock", cam.cfg.id, cam.last_ts - ts)
            ts = cam.last_ts
        dt_s = 0.0 if cam.last_ts is None else ts - cam.last_ts
        out: list[Message] = []

        ids = tracks.track_id
        id_list = [int(i) for i in ids.tolist()]
        born = [k for k, tid in enumerate(id_list) if tid not in cam.first_seen_s]
        for tid in id_list:
            cam.first_seen_s.setdefault(tid, ts)
            cam.last_seen_s[tid] = ts
        ended = set(tracks.ended_ids) - set(id_list)
        ended |= {t for t, seen in cam.last_seen_s.items() if ts - seen > TRACK_FORGET_S}

        cam.staff.observe(tracks, image_bgr)
        foot_px = tracks.foot_px
        floor = None
        if cam.calibration is not None:
            # NaN rows (beyond the horizon) fall outside every zone and never count as near
            floor = self._calibration_for(cam, tracks.frame_size_px).image_to_floor(foot_px)
        inside = cam.zone_set.inside(tracks.foot_norm, floor)

        if "staff_only_zone" in self.staff_methods:
            self._staff_only(cam, id_list, inside, dt_s)
        staff_flags = {tid: bool(cam.staff.is_staff(tid)) for tid in id_list}

        def is_staff(tid: int) -> bool:
            flag = staff_flags.get(tid)
            return bool(cam.staff.is_staff(tid)) if flag is None else flag

        transitions = cam.membership.update(ts, ids, inside, ended, held_ids=tracks.held_ids)
        pts = floor if floor is not None else image_widths(foot_px, tracks.frame_size_px[0])
        self._queuers_step(cam, ts, id_list, born, pts, inside, is_staff)
        for tr in transitions:
            out.extend(self._on_transition(cam, tr, is_staff(tr.track_id), ts))
        self._mark_born_inside_entrance(cam, ts, id_list, born, pts, inside)
        for k, tid in enumerate(id_list):
            cam.last_pt[tid] = (float(pts[k, 0]), float(pts[k, 1]))
        out.extend(self._entrance_clocks(cam, is_staff, ts))
        out.extend(self._stops(cam, ts, is_staff))
        out.extend(self._lanes_step(cam, ts, ended, set(id_list), is_staff))
        out.extend(self._responses_step(cam, ts, id_list, pts, is_staff))
        out.extend(self._release_entrance_events(cam))
        self._zone_occupancy(cam, is_staff, ts)
        out.extend(self._heatmap_step(cam, tracks, floor, dt_s, ts, is_staff))
        out.extend(self._evict(cam, ended, ts))

        cam.last_ts = ts
        cam.frames += 1
        out.extend(self._store_step(ts, cam))
        return out

    def set_lane_state(self, lane_id: str, state: str, timestamp_s: float) -> list[Message]:
        lane = self.lanes.get(lane_id)
        if lane is None:
            lane = next((ln for ln in self.lanes.values() if ln.lane_id.lower() == str(lane_id).strip().lower()), None)
        if lane is None:
            raise UnknownLaneError(
                f"unknown lane {lane_id!r}; lanes of store {self.store_id}: {sorted(self.lanes) or 'none'}"
            )
        if state not in ("open", "closed", "auto"):
            raise UserFacingError(f"lane {lane.lane_id}: state must be 'open', 'closed' or 'auto'; got {state!r}")
        command: LaneCommand = state  # type: ignore[assignment]
        lane.set_command(command)
        is_open, source = lane.is_open()
        ts = float(timestamp_s)
        payload = self._event_base("lane_command", f"lane_command-{lane.lane_id}-{state}-{_ms(ts)}", ts)
        payload.update({"lane_id": lane.lane_id, "camera_id": lane.camera_id, "state": state, "open": is_open,
                        "open_source": source})
        out = [self._event("lane_command", payload)]
        out.extend(self._store_step(ts, None, force_lanes={lane.lane_id}))
        return out

    def finish(self, timestamp_s: float) -> list[Message]:
        """End of the source: close open visits at their last-inside time, flush heatmaps and
        publish the final state. Customers still waiting for a greeting or for the till have no
        outcome yet and get no event."""
        ts = float(timestamp_s)
        out: list[Message] = []
        for cam in self.cameras.values():
            now = max(ts, cam.last_ts or ts)
            for tr in cam.membership.close_all(now):
                out.extend(self._on_transition(cam, tr, bool(cam.staff.is_staff(tr.track_id)), now, closed_by="end_of_source"))
            for lane in cam.lanes:
                lane.pending.clear()
                lane.orphans.clear()
            for r in cam.responses.values():
                r.pending.clear()
            if cam.heatmap is not None:
                out.extend(cam.heatmap.flush(now, final=True))
            ended = set(cam.first_seen_s) | set(cam.last_seen_s)
            cam.staff.forget(sorted(ended))
            cam.first_seen_s.clear()
            cam.last_seen_s.clear()
            cam.staff_only_s.clear()
            cam.greeting_started.clear()
            cam.born_inside_entrance.clear()
            cam.entrance_held.clear()  # never seen long enough to tell a customer from a flicker
            cam.seen_from_s.clear()
            cam.last_pt.clear()
            for s in cam.stopped.values():
                s.clear()
            for st in cam.stats.values():
                st.occupancy = 0
                st.staff_count = 0
        self._finished = True
        out.extend(self._store_step(ts, None, force_all=True))
        return out

    @staticmethod
    def _calibration_for(cam: _Camera, frame_size_px: tuple[int, int]) -> Any:
        size = (int(frame_size_px[0]), int(frame_size_px[1]))
        cal = cam.calibration_by_size.get(size)
        if cal is None:
            assert cam.calibration is not None
            cal = cam.calibration.for_frame_size(size)
            cam.calibration_by_size[size] = cal
        return cal

    # -- introspection (tests, memory checks) ---------------------------------------------------
    def per_track_state_sizes(self) -> dict[str, int]:
        """Sizes of every per-track container, summed over cameras; must stay flat over time."""
        total: dict[str, int] = {}
        for cam in self.cameras.values():
            for k, v in cam.per_track_sizes().items():
                total[k] = total.get(k, 0) + v
        return total

    def lane_metrics(self, lane_id: str, now_s: float | None = None) -> dict[str, Any]:
        lane = self.lanes[lane_id]
        return lane.metrics(now_s if now_s is not None else (lane.last_frame_s or 0.0))

    # -- per-frame steps ------------------------------------------------------------------------
    def _staff_only(self, cam: _Camera, ids: list[int], inside: dict[str, np.ndarray], dt_s: float) -> None:
        zones = [z.id for z in cam.zones.values() if z.kind == "staff_only"]
        if not zones:
            return
        in_any = np.zeros(len(ids), dtype=bool)
        for zid in zones:
            in_any |= inside[zid]
        step = min(dt_s, HEATMAP_MAX_DT_S)
        need = self.cfg.staff.staff_only_zone.min_time_s
        for tid, flag in zip(ids, in_any.tolist(), strict=True):
            if not flag:
                continue
            total = cam.staff_only_s.get(tid, 0.0) + step
            cam.staff_only_s[tid] = total
            if total >= need - 1e-9 and not cam.staff.is_staff(tid):
                cam.staff.mark_staff(tid)
                log.debug("camera %s: track %d marked staff (%.1f s in a staff_only zone)", cam.cfg.id, tid, total)

    def _on_transition(
        self, cam: _Camera, tr: Transition, staff: bool, ts: float, closed_by: str | None = None
    ) -> list[Message]:
        if staff:
            return []
        zone = cam.zones[tr.zone_id]
        stats = cam.stats[zone.id]
        out: list[Message] = []
        lane = self._lane_of_zone(cam, zone.id)
        if tr.kind == "enter":
            stats.entered(tr.time_s)
            if zone.kind == "queue" and lane is not None:
                if lane.service_zone is None or not cam.membership.is_present(lane.service_zone, tr.track_id):
                    lane.join(tr.track_id, tr.time_s)
            elif zone.kind == "service" and lane is not None:
                # a track born inside the service zone is the customer already at the till under a
                # new id (id switch, re-acquisition), not a new service: counting it inflated μ
                seen_before = cam.first_seen_s.get(tr.track_id, tr.time_s) < tr.time_s
                if seen_before or tr.track_id in lane.pending:  # pending: inherited from a lost queuer
                    lane.service_start(tr.time_s)
                served = lane.served(tr.track_id, tr.time_s)
                if served is None and seen_before:
                    # walked straight to a free till (queue membership not confirmed yet, or never
                    # in the queue zone): wait from the first step into the queue zone, else 0
                    joined = cam.membership.first_inside_s(lane.queue_zone, tr.track_id)
                    joined_s = tr.time_s if joined is None or joined > tr.time_s else joined
                    served = lane.served_without_queueing(joined_s, tr.time_s)
                if served is not None:
                    pj, wait_s = served
                    out.append(self._queue_wait(cam, lane, tr.track_id, pj.joined_s, tr.time_s, wait_s, "served",
                                                pj.queue_length_at_join, ts))
            return out
        # exit
        visit = stats.exited(tr.track_id, tr.entered_s, tr.time_s)
        if zone.kind == "queue" and lane is not None and tr.track_id in lane.pending:
            lane.pending[tr.track_id].left_queue_s = tr.time_s
        if zone.kind == "queue" and lane is not None and lane.service_zone is None and closed_by is None:
            lane.service_start(tr.time_s)
            served = lane.served(tr.track_id, tr.time_s)
            if served is not None:
                pj, wait_s = served
                out.append(self._queue_wait(cam, lane, tr.track_id, pj.joined_s, tr.time_s, wait_s, "served",
                                            pj.queue_length_at_join, ts))
        if zone.kind == "dwell":
            how = closed_by or ("track_end" if tr.ended else "exit")
            payload = self._event_base("visit", self._eid(cam, tr.track_id, "visit", zone.id, tr.time_s), ts)
            payload.update({
                "zone_id": zone.id, "camera_id": cam.cfg.id, "track_id": tr.track_id,
                "enter_s": _r3(tr.entered_s), "exit_s": _r3(tr.time_s), "dwell_s": round(visit.dwell_s, 2),
                "stop": visit.stop, "stop_after_s": zone.stop_after_s, "closed_by": how,
            })
            out.append(self._event("visit", payload))
            cam.stopped[zone.id].discard(tr.track_id)
            if closed_by is None:
                o = cam.responses[zone.id].left(tr.track_id, tr.time_s)
                if o is not None:
                    cam.responses[zone.id].record(o)
                    out.append(self._response_event(cam, zone, o, ts))
        return out

    def _mark_born_inside_entrance(
        self,
        cam: _Camera,
        ts: float,
        ids: list[int],
        born: list[int],
        pts: npt.NDArray[Any],
        inside: dict[str, npt.NDArray[np.bool_]],
    ) -> None:
        """A track born inside an entrance zone next to where another track was just lost is a
        re-acquired id (the person was already there), not someone entering."""
        entrances = [zid for zid, z in cam.zones.items() if z.kind == "entrance"]
        if not entrances or not born:
            return
        present = set(ids)
        hold_s = self._stitch_hold_s()
        lost = [
            (tid, pt) for tid, pt in cam.last_pt.items()
            if tid not in present and ts - cam.last_seen_s.get(tid, -math.inf) <= hold_s
        ]
        if not lost:
            return
        lost_ids = [tid for tid, _ in lost]
        lost_pts = np.asarray([pt for _, pt in lost], dtype=np.float64)
        radius = self._stitch_radius(cam)
        for k in born:
            if not any(bool(inside[zid][k]) for zid in entrances):
                continue
            d = np.hypot(lost_pts[:, 0] - float(pts[k, 0]), lost_pts[:, 1] - float(pts[k, 1]))
            d = np.where(np.isnan(d), np.inf, d)  # NaN (beyond the horizon) never matches
            nearest = int(np.argmin(d))
            if d[nearest] <= radius:
                cam.born_inside_entrance[ids[k]] = lost_ids[nearest]

    def _entrance_clocks(self, cam: _Camera, is_staff: Any, ts: float) -> list[Message]:
        """Start the greeting clock at the first frame a customer is inside the entrance zone
        (not when hysteresis confirms it a second later: a staff member already standing at the
        door greets with latency 0); a brush past the zone that never becomes a membership
        cancels the clock without an event. When the membership is confirmed, the customer has
        entered: one ``entry`` event (footfall). Tracks born inside the zone next to a just-lost
        track are re-acquired ids, not people entering."""
        out: list[Message] = []
        m = cam.membership
        self._hand_over_reacquired(cam)
        for zid, zone in cam.zones.items():
            if zone.kind != "entrance":
                continue
            r = cam.responses[zid]
            for tid in m.present(zid):
                if tid in cam.greeting_started:
                    if not cam.greeting_started[tid] and m.is_member(zid, tid):
                        cam.greeting_started[tid] = True
                        self._emit_entrance(cam, zone, tid, None, self._entry_event(cam, zid, tid, ts), out)
                    continue
                if is_staff(tid) or tid in cam.born_inside_entrance:
                    continue
                start = m.first_inside_s(zid, tid)
                if start is not None and start - cam.first_seen_s.get(tid, start) <= zone.entering_max_track_age_s:
                    cam.greeting_started[tid] = m.is_member(zid, tid)
                    r.start(tid, start)
                    if cam.greeting_started[tid]:
                        self._emit_entrance(cam, zone, tid, None, self._entry_event(cam, zid, tid, ts), out)
            for tid, confirmed in list(cam.greeting_started.items()):
                if not confirmed and not m.is_present(zid, tid) and tid in r.pending:
                    r.cancel(tid)
                    del cam.greeting_started[tid]
        return out

    @staticmethod
    def _hand_over_reacquired(cam: _Camera) -> None:
        """A customer re-acquired under a new id inside the entrance keeps their greeting clock,
        entry and held events: otherwise the old id would end as 'missed' while they are still
        standing there, and the new id would get nothing."""
        for tid, origin in list(cam.born_inside_entrance.items()):
            if origin is None:
                continue
            cam.born_inside_entrance[tid] = None
            if origin in cam.first_seen_s:
                cam.born_inside_entrance[origin] = None  # if the old id is found again: no fresh clock
            for r in (cam.responses[zid] for zid, z in cam.zones.items() if z.kind == "entrance"):
                r.transfer(origin, tid)
            if origin in cam.greeting_started:
                cam.greeting_started[tid] = cam.greeting_started.pop(origin)
            if origin in cam.entrance_held:
                cam.entrance_held[tid] = cam.entrance_held.pop(origin)
            first = cam.seen_from_s.get(origin, cam.first_seen_s.get(origin))
            if first is not None:
                cam.seen_from_s[tid] = min(first, cam.first_seen_s.get(tid, first))

    @staticmethod
    def _seen_for_s(cam: _Camera, tid: int) -> float:
        """How long this person has been seen, across re-acquisitions."""
        last = cam.last_seen_s.get(tid)
        first = cam.seen_from_s.get(tid, cam.first_seen_s.get(tid))
        return 0.0 if last is None or first is None else last - first

    def _emit_entrance(
        self, cam: _Camera, zone: ZoneConfig, tid: int, o: ResponseOutcome | None, msg: Message, out: list[Message]
    ) -> None:
        """Emit an entrance event now, or hold it until the track has been seen for the zone's
        entering_min_seen_s. Outcomes count in the compliance only when emitted."""
        held = cam.entrance_held.get(tid)
        if held is None and self._seen_for_s(cam, tid) >= zone.entering_min_seen_s:
            if o is not None:
                cam.responses[zone.id].record(o)
            out.append(msg)
            return
        threshold_s, items = held if held is not None else (zone.entering_min_seen_s, [])
        items.append((o, msg))
        cam.entrance_held[tid] = (max(threshold_s, zone.entering_min_seen_s), items)

    def _release_entrance_events(self, cam: _Camera) -> list[Message]:
        out: list[Message] = []
        for tid, (threshold_s, items) in list(cam.entrance_held.items()):
            if self._seen_for_s(cam, tid) >= threshold_s:
                del cam.entrance_held[tid]
                for o, msg in items:
                    if o is not None:
                        cam.responses[o.zone_id].record(o)
                    out.append(msg)
        return out

    def _entry_event(self, cam: _Camera, zone_id: str, track_id: int, ts: float) -> Message:
        entered_s = cam.membership.first_inside_s(zone_id, track_id)
        entered_s = ts if entered_s is None else entered_s
        payload = self._event_base("entry", self._eid(cam, track_id, "entry", zone_id, entered_s), ts)
        payload.update({
            "camera_id": cam.cfg.id, "zone_id": zone_id, "entered_s": _r3(entered_s),
            "track_age_s": round(max(0.0, entered_s - cam.first_seen_s.get(track_id, entered_s)), 2),
        })
        return self._event("entry", payload)

    def _stops(self, cam: _Camera, ts: float, is_staff: Any) -> list[Message]:
        for zid, stopped in cam.stopped.items():
            zone = cam.zones[zid]
            for tid in cam.membership.members(zid):
                if tid in stopped or is_staff(tid):
                    continue
                entered = cam.membership.entered_s(zid, tid)
                if entered is not None and ts - entered >= zone.stop_after_s - 1e-9:
                    stopped.add(tid)
                    cam.responses[zid].start(tid, entered + zone.stop_after_s)
        return []

    def _stitch_hold_s(self) -> float:
        return self.cfg.tracker.max_lost_s + STITCH_EXTRA_HOLD_S

    @staticmethod
    def _stitch_radius(cam: _Camera) -> float:
        """STITCH_RADIUS_M in the units of the anchor points (image widths without calibration)."""
        return STITCH_RADIUS_M if cam.calibration is not None else STITCH_RADIUS_M * FALLBACK_WIDTHS_PER_M

    def _queuers_step(
        self,
        cam: _Camera,
        ts: float,
        ids: list[int],
        born: list[int],
        pts: npt.NDArray[Any],
        inside: dict[str, npt.NDArray[np.bool_]],
        is_staff: Any,
    ) -> None:
        """Remember where each waiting customer was last seen, and let a track born inside a lane
        next to a lost queuer take over that queuer's join (id switch: the wait is not cut short,
        and the lost id is not reported abandoned)."""
        if not cam.lanes:
            return
        radius = self._stitch_radius(cam)
        present = set(ids)
        for lane in cam.lanes:
            in_lane = np.asarray(inside[lane.queue_zone], dtype=bool)
            if lane.service_zone is not None:
                in_lane = in_lane | np.asarray(inside[lane.service_zone], dtype=bool)
            if lane.pending:
                for k, tid in enumerate(ids):
                    pj = lane.pending.get(tid)
                    if pj is not None:
                        pj.last_seen_s = ts
                        pj.last_xy = (float(pts[k, 0]), float(pts[k, 1]))
                        pj.last_inside = bool(in_lane[k])
            if not (lane.pending or lane.orphans):
                continue
            for k in born:
                tid = ids[k]
                if not in_lane[k] or is_staff(tid) or tid in lane.pending:
                    continue
                lost = lane.inherit(tid, (float(pts[k, 0]), float(pts[k, 1])), ts, radius, self._stitch_hold_s(),
                                    present)
                if lost is not None:
                    log.debug("camera %s lane %s: track %d inherits the wait of lost track %d",
                              cam.cfg.id, lane.lane_id, tid, lost)

    def _lanes_step(self, cam: _Camera, ts: float, ended: set[int], present: set[int], is_staff: Any) -> list[Message]:
        out: list[Message] = []
        m = cam.membership
        hold_s = self._stitch_hold_s()
        for lane in cam.lanes:
            svc = lane.service_zone
            for tid, pj in list(lane.pending.items()):
                if is_staff(tid):
                    lane.abandon(tid)
                    continue
                still = m.is_present(lane.queue_zone, tid) or (svc is not None and m.is_present(svc, tid))
                if tid in ended or not still:
                    left_s = pj.left_queue_s or m.last_inside_s(lane.queue_zone, tid) or cam.last_seen_s.get(tid, ts)
                    if (tid not in present and pj.last_inside and pj.last_seen_s is not None
                            and ts - pj.last_seen_s <= hold_s):
                        lane.orphan(tid, left_s)  # lost inside the lane: a new id may take it over
                        continue
                    lane.abandon(tid)
                    out.append(self._queue_wait(cam, lane, tid, pj.joined_s, None, max(0.0, left_s - pj.joined_s),
                                                "abandoned", pj.queue_length_at_join, ts))
            for tid, o in lane.expired_orphans(ts, hold_s):
                pj = o.pending
                out.append(self._queue_wait(cam, lane, tid, pj.joined_s, None, max(0.0, o.left_s - pj.joined_s),
                                            "abandoned", pj.queue_length_at_join, ts))
            queue = [t for t in m.members(lane.queue_zone) if not is_staff(t)
                     and not (svc is not None and m.is_present(svc, t))]
            if svc is not None:
                at_till = [t for t in m.members(svc) if not is_staff(t)]
                # seen inside on this very frame: the close hold (not the zone grace) bridges gaps
                staff_here = any(is_staff(t) and m.last_inside_s(svc, t) == ts for t in m.present(svc))
            else:  # without a service zone, leaving the queue is the service (see _on_transition)
                at_till, staff_here = [], False
            lane.advance(ts, len(queue), bool(at_till), staff_here)
        return out

    def _responses_step(
        self, cam: _Camera, ts: float, ids: list[int], pts: npt.NDArray[Any], is_staff: Any
    ) -> list[Message]:
        if not cam.responses:
            return []
        staff_mask = np.array([is_staff(t) for t in ids], dtype=bool)
        cust_ids = [t for t, s in zip(ids, staff_mask.tolist(), strict=True) if not s]
        cust_pts = pts[~staff_mask] if len(ids) else np.zeros((0, 2))
        staff_pts = pts[staff_mask] if len(ids) else np.zeros((0, 2))
        out: list[Message] = []
        for zid, r in cam.responses.items():
            for tid in [t for t in r.pending if is_staff(t)]:
                r.cancel(tid)
            zone = cam.zones[zid]
            for o in r.update(ts, cust_ids, cust_pts, staff_pts):
                msg = self._response_event(cam, zone, o, ts)
                if zone.kind == "entrance":
                    self._emit_entrance(cam, zone, o.track_id, o, msg, out)
                else:
                    r.record(o)
                    out.append(msg)
        return out

    def _zone_occupancy(self, cam: _Camera, is_staff: Any, ts: float) -> None:
        for zid, st in cam.stats.items():
            members = cam.membership.members(zid)
            staff = sum(1 for t in members if is_staff(t))
            st.staff_count = staff
            st.occupancy = len(members) - staff
        for zid, cap in cam.capacity.items():
            waiting = cam.stats[cap.waiting_zone].occupancy if cap.waiting_zone is not None else None
            cap.update(ts, cam.stats[zid].occupancy, waiting)

    def _heatmap_step(
        self, cam: _Camera, tracks: Tracks, floor: np.ndarray | None, dt_s: float, ts: float, is_staff: Any
    ) -> list[Message]:
        if cam.heatmap is None:
            return []
        if cam.last_ts is None:
            dt_s = 1.0 / cam.cfg.fps
        dt_s = min(dt_s, HEATMAP_MAX_DT_S)
        if len(tracks) and dt_s > 0:
            pts = np.asarray(floor if floor is not None else tracks.foot_norm, dtype=np.float64)
            keep = np.array([not is_staff(int(t)) for t in tracks.track_id], dtype=bool)
            keep &= np.all(np.isfinite(pts), axis=1)
            if keep.any():
                cam.heatmap.add(pts[keep], tracks.track_id[keep], dt_s, ts)
        return list(cam.heatmap.flush(ts))

    def _evict(self, cam: _Camera, ended: set[int], ts: float) -> list[Message]:
        if not ended:
            return []
        out: list[Message] = []
        for tid in ended:
            last = cam.last_seen_s.get(tid, ts)
            seen_s = self._seen_for_s(cam, tid)
            held = cam.entrance_held.pop(tid, None)  # not released: seen too briefly
            short_zones = {str(msg.payload["zone_id"]) for _, msg in held[1]} if held is not None else set()
            for zid, r in cam.responses.items():
                zone = cam.zones[zid]
                if tid in r.pending and zone.kind == "entrance" and seen_s < zone.entering_min_seen_s:
                    short_zones.add(zid)
            short = bool(short_zones)
            for zid in short_zones:
                cam.short_tracks_ignored[zid] = cam.short_tracks_ignored.get(zid, 0) + 1
            if short:
                log.debug("camera %s: track %d seen %.1f s at the entrance, too briefly to be a customer; "
                          "no entry or greeting event", cam.cfg.id, tid, seen_s)
            for zid, r in cam.responses.items():
                if tid in r.pending:
                    if cam.staff.is_staff(tid) or (short and cam.zones[zid].kind == "entrance"):
                        r.cancel(tid)
                        continue
                    o = r.left(tid, last)
                    if o is not None:
                        r.record(o)
                        out.append(self._response_event(cam, cam.zones[zid], o, ts))
            for lane in cam.lanes:
                lane.pending.pop(tid, None)
            cam.first_seen_s.pop(tid, None)
            cam.last_seen_s.pop(tid, None)
            cam.staff_only_s.pop(tid, None)
            cam.greeting_started.pop(tid, None)
            cam.born_inside_entrance.pop(tid, None)
            cam.seen_from_s.pop(tid, None)
            cam.last_pt.pop(tid, None)
            for s in cam.stopped.values():
                s.discard(tid)
        cam.staff.forget(sorted(ended))
        return out

    # -- store-wide -----------------------------------------------------------------------------
    def _store_now(self) -> float:
        return max((c.last_ts for c in self.cameras.values() if c.last_ts is not None), default=0.0)

    def _store_step(
        self,
        ts: float,
        cam: _Camera | None,
        force_lanes: set[str] | None = None,
        force_all: bool = False,
    ) -> list[Message]:
        now = max(self._store_now(), ts)
        out: list[Message] = []
        metrics = {lid: lane.metrics(now) for lid, lane in self.lanes.items()}
        zones = [(zid, cap.occupancy_pct) for c in self.cameras.values() for zid, cap in c.capacity.items()]
        for change in self.alerts.evaluate(now, list(metrics.items()), zones):
            out.append(self._alert_event(change))
        recommended = self.recommender.update(now, [
            LaneOption(lid, bool(m["open"]), bool(m["stale"]), m["predicted_wait_s"]) for lid, m in metrics.items()
        ])
        if recommended != self._recommended:
            log.info("recommended lane: %s → %s", self._recommended, recommended)
            self._recommended = recommended
        interval = self.acfg.state_interval_s
        for lid, lane in self.lanes.items():
            m = metrics[lid]
            m["recommended"] = lid == recommended
            sig: Any = (m["open"], m["recommended"], m["stale"], m["open_source"])
            own = cam is not None and lane.camera_id == cam.cfg.id
            topic = self.topics.lane_state(lid)
            if force_all or (force_lanes and lid in force_lanes) or self._due(topic, now, sig, interval if own else None):
                out.append(self._state(topic, self._lane_payload(lane, m, now), now, sig))
        # zone states of the camera that just delivered a frame
        cams = [cam] if cam is not None else list(self.cameras.values())
        for c in cams:
            for zid, st in c.stats.items():
                topic = self.topics.zone_state(zid)
                cap = c.capacity.get(zid)
                sig = (st.staff_count > 0, cap.full if cap is not None else None)
                if force_all or self._due(topic, now, sig, interval):
                    out.append(self._state(topic, self._zone_payload(c, zid, now), now, sig))
        active = self.alerts.active()
        lanes_open = sum(1 for m in metrics.values() if m["open"])
        topic = self.topics.store_state()
        sig = (recommended, lanes_open, tuple(a[0] for a in active))
        if force_all or force_lanes or self._due(topic, now, sig, interval):
            payload = {
                "schema": _schema("store_state"),
                "store_id": self.store_id,
                "timestamp_s": _r3(now),
                "recommended_lane": recommended,
                "lanes_open": lanes_open,
                "lanes": list(self.lanes),
                "active_alerts": [a[0] for a in active],
                "alerts": [
                    {"alert_id": aid, "rule_id": rule.id, "action": rule.action, "message": rule.message,
                     "since_s": _r3(since)}
                    for aid, rule, since in active
                ],
            }
            out.append(self._state(topic, payload, now, sig))
        return out

    def _due(self, topic: str, now: float, sig: Any, interval: float | None) -> bool:
        """Publish when the significant signature changed, or the interval passed (own entities)."""
        if self._last_sig.get(topic, object()) != sig:
            return True
        if interval is None:
            return False
        last = self._last_emit_s.get(topic)
        return last is None or now - last >= interval - 1e-9

    def _state(self, topic: str, payload: dict[str, Any], now: float, sig: Any) -> Message:
        self._last_emit_s[topic] = now
        self._last_sig[topic] = sig
        return Message(topic, payload, retain=True, qos=1)

    # -- payloads -------------------------------------------------------------------------------
    def _lane_payload(self, lane: LaneQueue, m: dict[str, Any], now: float) -> dict[str, Any]:
        payload = {
            "schema": _schema("lane_state"),
            "store_id": self.store_id,
            "lane_id": lane.lane_id,
            "label": lane.label,
            "camera_id": lane.camera_id,
            "timestamp_s": _r3(lane.last_frame_s if lane.last_frame_s is not None else now),
        }
        payload.update(m)
        return payload

    def _zone_payload(self, cam: _Camera, zid: str, now: float) -> dict[str, Any]:
        zone = cam.zones[zid]
        payload: dict[str, Any] = {
            "schema": _schema("zone_state"),
            "store_id": self.store_id,
            "zone_id": zid,
            "label": zone.label or zid,
            "kind": zone.kind,
            "camera_id": cam.cfg.id,
            "timestamp_s": _r3(cam.last_ts if cam.last_ts is not None else now),
        }
        payload.update(cam.stats[zid].summary(cam.last_ts if cam.last_ts is not None else now))
        r = cam.responses.get(zid)
        if r is not None:
            payload.update(r.summary(cam.last_ts if cam.last_ts is not None else now))
            payload["distance_method"] = cam.distance_method
        cap = cam.capacity.get(zid)
        if cap is not None:
            payload.update(cap.fields(cam.last_ts if cam.last_ts is not None else now))
        if zone.kind == "entrance":
            payload["short_tracks_ignored"] = cam.short_tracks_ignored.get(zid, 0)
        return payload

    def _event_base(self, event_type: str, event_id: str, ts: float) -> dict[str, Any]:
        return {
            "schema": _schema(f"event.{event_type}"),
            "store_id": self.store_id,
            "timestamp_s": _r3(ts),
            "event_id": event_id,
            "type": event_type,
        }

    def _event(self, event_type: str, payload: dict[str, Any]) -> Message:
        return Message(self.topics.event(event_type), payload, retain=False, qos=1)

    @staticmethod
    def _eid(cam: _Camera, track_id: int, event_type: str, subject: str, t: float) -> str:
        return f"{cam.cfg.id}-{track_id}-{event_type}-{subject}-{_ms(t)}"

    def _queue_wait(
        self,
        cam: _Camera,
        lane: LaneQueue,
        track_id: int,
        joined_s: float,
        served_s: float | None,
        wait_s: float,
        outcome: str,
        queue_length_at_join: int,
        ts: float,
    ) -> Message:
        payload = self._event_base("queue_wait", self._eid(cam, track_id, "queue_wait", lane.lane_id, joined_s), ts)
        payload.update({
            "lane_id": lane.lane_id, "camera_id": cam.cfg.id, "track_id": track_id, "outcome": outcome,
            "joined_s": _r3(joined_s), "served_s": _r3(served_s), "wait_s": round(wait_s, 2),
            "queue_length_at_join": int(queue_length_at_join),
        })
        return self._event("queue_wait", payload)

    def _response_event(self, cam: _Camera, zone: ZoneConfig, o: ResponseOutcome, ts: float) -> Message:
        etype = "greeting" if zone.kind == "entrance" else "assist"
        payload = self._event_base(etype, self._eid(cam, o.track_id, etype, zone.id, o.started_s), ts)
        payload.update({
            "zone_id": zone.id, "camera_id": cam.cfg.id, "track_id": o.track_id, "outcome": o.outcome,
            "started_s": _r3(o.started_s), "latency_s": None if o.latency_s is None else round(o.latency_s, 2),
            "sla_s": zone.sla_s,
            "within_sla": o.outcome == "greeted" and o.latency_s is not None and o.latency_s <= zone.sla_s,
            "customer_left": o.customer_left, "distance_method": cam.distance_method,
        })
        if o.distance is not None:
            key = "distance_m" if cam.distance_method == "floor_m" else "distance_image_widths"
            payload[key] = round(o.distance, 3)
        return self._event(etype, payload)

    def _alert_event(self, ch: AlertChange) -> Message:
        payload = self._event_base("alert", f"alert-{ch.alert_id}-{ch.state}-{_ms(ch.time_s)}", ch.time_s)
        value = ch.value
        payload.update({
            "alert_id": ch.alert_id, "rule_id": ch.rule.id, "lane_id": ch.lane_id, "state": ch.state,
            "metric": ch.rule.metric, "value": None if value is None or not math.isfinite(value) else round(value, 2),
            "above": ch.rule.above, "for_s": ch.rule.for_s, "action": ch.rule.action, "message": ch.rule.message,
        })
        log.info("alert %s %s (value %s)", ch.alert_id, ch.state, value, extra={"event": "alert"})
        return self._event("alert", payload)

    @staticmethod
    def _lane_of_zone(cam: _Camera, zone_id: str) -> LaneQueue | None:
        for lane in cam.lanes:
            if zone_id in (lane.queue_zone, lane.service_zone):
                return lane
        return None
