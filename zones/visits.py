"""Dwell and staff response: visits of dwell zones, stops, approach/greeting clocks, occupancy.

A visit of a dwell zone longer than the zone's ``stop_after_s`` is a *stop* (product attention);
a stop starts the zone's staff-approach clock. Outcomes (greeted/missed) are resolved against
the staff positions of the same camera on every frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.contract import Message
from zones.camera import CameraState
from zones.config import ZoneConfig
from zones.entrance import EntranceRules
from zones.events import Events
from zones.membership import Transition

log = logging.getLogger("storesense.analytics")

IsStaff = Callable[[int], bool]
# Time step cap: after a stall the next frame must not add seconds nobody observed.
MAX_STEP_S = 1.0


class VisitRules:
    def __init__(self, events: Events, entrance: EntranceRules) -> None:
        self.events = events
        self.entrance = entrance

    def on_exit(self, cam: CameraState, zone: ZoneConfig, tr: Transition, dwell_s: float, stop: bool, ts: float,
                closed_by: str | None) -> list[Message]:
        """A dwell-zone visit ended: its event, and the approach outcome if the customer left."""
        if zone.kind != "dwell":
            return []
        how = closed_by or ("track_end" if tr.ended else "exit")
        out = [self.events.visit(cam.id, zone, tr.track_id, tr.entered_s, tr.time_s, dwell_s, stop, how, ts)]
        rec = cam.tracks.get(tr.track_id)
        if rec is not None:
            rec.stopped_in.discard(zone.id)
        if closed_by is None:
            o = cam.responses[zone.id].left(tr.track_id, tr.time_s)
            if o is not None:
                cam.responses[zone.id].record(o)
                out.append(self.events.response(cam.id, zone, o, cam.distance_method, ts))
        return out

    @staticmethod
    def stops(cam: CameraState, ts: float, is_staff: IsStaff) -> None:
        """A visit longer than stop_after_s is a stop: the staff-approach clock starts."""
        for zone in cam.zones_of_kind("dwell"):
            zid = zone.id
            for tid in cam.membership.members(zid):
                rec = cam.tracks.get(tid)
                if rec is None or zid in rec.stopped_in or is_staff(tid):
                    continue
                entered = cam.membership.entered_s(zid, tid)
                if entered is not None and ts - entered >= zone.stop_after_s - 1e-9:
                    rec.stopped_in.add(zid)
                    cam.responses[zid].start(tid, entered + zone.stop_after_s)

    def responses(
        self, cam: CameraState, ts: float, ids: list[int], pts: npt.NDArray[Any], is_staff: IsStaff
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
                msg = self.events.response(cam.id, zone, o, cam.distance_method, ts)
                if zone.kind == "entrance":
                    self.entrance.emit(cam, zone, o.track_id, o, msg, out)
                else:
                    r.record(o)
                    out.append(msg)
        return out

    def track_ended(self, cam: CameraState, tid: int, short_zones: set[str], ts: float) -> list[Message]:
        """Resolve the response clocks of an ending track: a customer who leaves unserved was missed;
        staff and entrance flickers get no outcome."""
        rec = cam.tracks.get(tid)
        last = rec.last_seen_s if rec is not None else ts
        out: list[Message] = []
        for zid, r in cam.responses.items():
            if tid not in r.pending:
                continue
            if cam.tracks.is_staff(tid) or (short_zones and cam.zones[zid].kind == "entrance"):
                r.cancel(tid)
                continue
            o = r.left(tid, last)
            if o is not None:
                r.record(o)
                out.append(self.events.response(cam.id, cam.zones[zid], o, cam.distance_method, ts))
        return out

    @staticmethod
    def occupancy(cam: CameraState, is_staff: IsStaff, ts: float) -> None:
        for zid, st in cam.stats.items():
            members = cam.membership.members(zid)
            staff = sum(1 for t in members if is_staff(t))
            st.staff_count = staff
            st.occupancy = len(members) - staff
        for zid, cap in cam.capacity.items():
            waiting = cam.stats[cap.waiting_zone].occupancy if cap.waiting_zone is not None else None
            cap.update(ts, cam.stats[zid].occupancy, waiting)

    @staticmethod
    def staff_only(cam: CameraState, ids: list[int], inside: dict[str, np.ndarray], dt_s: float, need_s: float) -> None:
        """staff_only_zone identification: time inside staff-only zones marks a track as staff."""
        zones = [z.id for z in cam.zones_of_kind("staff_only")]
        if not zones:
            return
        in_any = np.zeros(len(ids), dtype=bool)
        for zid in zones:
            in_any |= inside[zid]
        step = min(dt_s, MAX_STEP_S)
        for tid, flag in zip(ids, in_any.tolist(), strict=True):
            rec = cam.tracks.get(tid)
            if not flag or rec is None:
                continue
            total = (rec.staff_only_s or 0.0) + step
            rec.staff_only_s = total
            if total >= need_s - 1e-9 and not cam.tracks.is_staff(tid):
                rec.staff_marked = True
                log.debug("camera %s: track %d marked staff (%.1f s in a staff_only zone)", cam.id, tid, total)

    @staticmethod
    def end_of_source(cam: CameraState) -> None:
        for r in cam.responses.values():
            r.pending.clear()
        for st in cam.stats.values():
            st.occupancy = 0
            st.staff_count = 0
