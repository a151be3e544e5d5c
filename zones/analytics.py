"""StoreAnalytics: tracks in, the numbers store managers act on out.

One instance per store, called from the single analysis thread once per analysed frame of any
camera (``update``), on a lane command (``set_lane_state``) and at the end of a file
(``finish``). This module only orchestrates; the rules live in their own modules:

* :mod:`zones.camera` -- the per-camera context (zones, calibration, lanes, ...), built once;
* :mod:`zones.tracks` -- one record per track, dropped in one statement when the track ends;
* :mod:`zones.entrance` -- footfall and the greeting clock;
* :mod:`zones.lanes` -- queue joins, services, abandonments, the queue model's input;
* :mod:`zones.visits` -- dwell visits, stops, staff approach, occupancy;
* :mod:`zones.publishing` -- when live state is published, alerts, the recommended lane;
* :mod:`zones.events` -- the durable events.

Output is a list of :class:`edge.contract.Message` (kind, entity id, payload, durability); the
analytics know nothing of MQTT. Payloads never carry images or identities: only numbers and the
anonymous per-camera track ids, which the tracker never reuses and which are forgotten when a
track ends. See docs/messages.md for every field.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.config import StoreConfig
from edge.contract import Message, Tracks
from edge.errors import UserFacingError
from edge.payloads import LaneMetrics
from zones.camera import CameraState, build_camera
from zones.entrance import EntranceRules
from zones.events import Events
from zones.geometry import image_widths
from zones.lanes import LaneRules
from zones.membership import Transition
from zones.publishing import StatePublisher
from zones.queues import LaneCommand, LaneQueue
from zones.visits import MAX_STEP_S, VisitRules

log = logging.getLogger("storesense.analytics")

# Safety net for a tracker that never reports a track as ended: forget it after this long unseen.
TRACK_FORGET_S = 120.0


class UnknownLaneError(UserFacingError, ValueError):
    """A lane command names a lane that is not in the config."""


class StoreAnalytics:
    """See the module docstring. Not thread-safe by design: one analysis thread calls it."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.store_id = cfg.store.id
        self.staff_methods = list(cfg.staff.methods)
        self.cameras: dict[str, CameraState] = {}
        lanes = cfg.lanes()
        for cam in cfg.cameras:
            if cam.enabled:
                self.cameras[cam.id] = build_camera(cfg, cam, lanes)
        self.lanes: dict[str, LaneQueue] = {q.lane_id: q for c in self.cameras.values() for q in c.lanes}
        for rule in cfg.analytics.alerts:
            if rule.lane != "*" and rule.lane not in self.lanes:
                raise UserFacingError(
                    f"alert rule {rule.id!r} names lane {rule.lane!r}, which is not a lane of this store; "
                    f"lanes: {sorted(self.lanes) or 'none (add queue zones)'}"
                )
        self.events = Events(self.store_id)
        self.entrance = EntranceRules(self.events)
        self.lane_rules = LaneRules(self.events)
        self.visits = VisitRules(self.events, self.entrance)
        self.publisher = StatePublisher(cfg, self.lanes, self.cameras, self.events)

    # -- public API -----------------------------------------------------------------------------
    def update(self, tracks: Tracks) -> list[Message]:
        cam = self.cameras.get(tracks.camera_id)
        if cam is None:
            raise UserFacingError(
                f"tracks from camera {tracks.camera_id!r}, which is not an enabled camera of the config; "
                f"cameras: {sorted(self.cameras)}"
            )
        ts = float(tracks.timestamp_s)
        if cam.last_ts is not None and ts < cam.last_ts:
            log.warning("camera %s: timestamp went back %.3f s; holding the clock", cam.id, cam.last_ts - ts)
            ts = cam.last_ts
        dt_s = 0.0 if cam.last_ts is None else ts - cam.last_ts
        id_list = [int(i) for i in tracks.track_id.tolist()]
        born = [k for k, tid in enumerate(id_list) if cam.tracks.see(tid, ts)]
        for tid, flag in zip(id_list, tracks.staff_flags.tolist(), strict=True):
            rec = cam.tracks.get(tid)
            if rec is not None:
                rec.staff = bool(flag)  # the staff stage's decision (edge/staff.py)
        ended = set(tracks.ended_ids) - set(id_list)
        ended |= {t for t, rec in cam.tracks.items() if ts - rec.last_seen_s > TRACK_FORGET_S}

        foot_px = tracks.foot_px
        floor = None
        if cam.calibration is not None:
            # NaN rows (beyond the horizon) fall outside every zone and never count as near
            floor = cam.calibration_for(tracks.frame_size_px).image_to_floor(foot_px)
        inside = cam.zone_set.inside(tracks.foot_norm, floor)
        if "staff_only_zone" in self.staff_methods:
            self.visits.staff_only(cam, id_list, inside, dt_s, self.cfg.staff.staff_only_zone.min_time_s)
        is_staff = cam.tracks.is_staff

        out: list[Message] = []
        transitions = cam.membership.update(ts, tracks.track_id, inside, ended, held_ids=tracks.held_ids)
        pts = floor if floor is not None else image_widths(foot_px, tracks.frame_size_px[0])
        self.lane_rules.queuers(cam, ts, id_list, born, pts, inside, is_staff)
        for tr in transitions:
            out.extend(self._on_transition(cam, tr, is_staff(tr.track_id), ts))
        self.entrance.mark_born_inside(cam, ts, id_list, born, pts, inside)
        for k, tid in enumerate(id_list):
            rec = cam.tracks.get(tid)
            if rec is not None:
                rec.last_pt = (float(pts[k, 0]), float(pts[k, 1]))
        out.extend(self.entrance.clocks(cam, is_staff, ts))
        self.visits.stops(cam, ts, is_staff)
        out.extend(self.lane_rules.step(cam, ts, ended, set(id_list), is_staff))
        out.extend(self.visits.responses(cam, ts, id_list, pts, is_staff))
        out.extend(self.entrance.release(cam))
        self.visits.occupancy(cam, is_staff, ts)
        out.extend(self._heatmap_step(cam, tracks, floor, dt_s, ts, is_staff))
        out.extend(self._end_tracks(cam, ended, ts))
        cam.last_ts = ts
        cam.frames += 1
        out.extend(self.publisher.step(ts, cam))
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
        out = [self.events.lane_command(lane.lane_id, lane.camera_id, state, is_open, source, ts)]
        out.extend(self.publisher.step(ts, None, force_lanes={lane.lane_id}))
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
                staff = cam.tracks.is_staff(tr.track_id)
                out.extend(self._on_transition(cam, tr, staff, now, closed_by="end_of_source"))
            LaneRules.end_of_source(cam)
            VisitRules.end_of_source(cam)
            if cam.heatmap is not None:
                out.extend(cam.heatmap.flush(now, final=True))
            cam.tracks.clear()  # held entrance events: never seen long enough to tell from a flicker
        out.extend(self.publisher.step(ts, None, force_all=True))
        return out

    # -- introspection (tests, memory checks) ---------------------------------------------------
    def per_track_state_sizes(self) -> dict[str, int]:
        """Sizes of every per-track container, summed over cameras; must stay flat over time."""
        total: dict[str, int] = {}
        for cam in self.cameras.values():
            for k, v in cam.per_track_sizes().items():
                total[k] = total.get(k, 0) + v
        return total

    def lane_metrics(self, lane_id: str, now_s: float | None = None) -> LaneMetrics:
        lane = self.lanes[lane_id]
        return lane.metrics(now_s if now_s is not None else (lane.last_frame_s or 0.0))

    # -- per-frame steps ------------------------------------------------------------------------
    def _on_transition(
        self, cam: CameraState, tr: Transition, staff: bool, ts: float, closed_by: str | None = None
    ) -> list[Message]:
        if staff:
            return []
        zone = cam.zones[tr.zone_id]
        stats = cam.stats[zone.id]
        lane = cam.lane_of_zone(zone.id)
        if tr.kind == "enter":
            stats.entered(tr.time_s)
            return self.lane_rules.on_enter(cam, lane, tr, zone.kind, ts) if lane is not None else []
        visit = stats.exited(tr.track_id, tr.entered_s, tr.time_s)
        out = self.lane_rules.on_exit(cam, lane, tr, zone.kind, ts, closed_by) if lane is not None else []
        out.extend(self.visits.on_exit(cam, zone, tr, visit.dwell_s, visit.stop, ts, closed_by))
        return out

    @staticmethod
    def _heatmap_step(
        cam: CameraState, tracks: Tracks, floor: np.ndarray | None, dt_s: float, ts: float, is_staff: Any
    ) -> list[Message]:
        if cam.heatmap is None:
            return []
        if cam.last_ts is None:
            dt_s = 1.0 / cam.cfg.fps
        dt_s = min(dt_s, MAX_STEP_S)
        if len(tracks) and dt_s > 0:
            pts = np.asarray(floor if floor is not None else tracks.foot_norm, dtype=np.float64)
            keep = np.array([not is_staff(int(t)) for t in tracks.track_id], dtype=bool)
            keep &= np.all(np.isfinite(pts), axis=1)
            if keep.any():
                cam.heatmap.add(pts[keep], tracks.track_id[keep], dt_s, ts)
        return list(cam.heatmap.flush(ts))

    def _end_tracks(self, cam: CameraState, ended: set[int], ts: float) -> list[Message]:
        """Outcomes owed by ending tracks, then every per-track fact is dropped: the record in one
        statement, and the track's entries in the lanes."""
        out: list[Message] = []
        for tid in ended:
            short_zones = self.entrance.short_zones(cam, tid)
            out.extend(self.visits.track_ended(cam, tid, short_zones, ts))
            LaneRules.forget(cam, tid)
            cam.tracks.drop(tid)
        return out
