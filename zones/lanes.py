"""Checkout lanes: who joins a queue, who is served, who abandons, and the queue model's input.

A lane is a queue zone plus (optionally) the service zone at its till. A customer's wait runs
from the first step into the queue zone to the start of their service (entering the service
zone, or leaving the queue zone when the lane has no service zone). A new track born inside a
lane within ``STITCH_RADIUS_M`` of where a waiting customer's track was lost is that customer
under a new id and inherits the join time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.contract import Message
from zones.camera import CameraState
from zones.events import Events
from zones.membership import Transition
from zones.queues import LaneQueue, PendingJoin

log = logging.getLogger("storesense.analytics")

IsStaff = Callable[[int], bool]


class LaneRules:
    def __init__(self, events: Events) -> None:
        self.events = events

    def _wait(self, cam: CameraState, lane: LaneQueue, tid: int, pj: PendingJoin, served_s: float | None,
              wait_s: float, outcome: str, ts: float) -> Message:
        return self.events.queue_wait(cam.id, lane.lane_id, tid, pj.joined_s, served_s, wait_s, outcome,
                                      pj.queue_length_at_join, ts)

    def on_enter(self, cam: CameraState, lane: LaneQueue, tr: Transition, kind: str, ts: float) -> list[Message]:
        """A customer's confirmed step into a lane's queue or service zone."""
        if kind == "queue":
            if lane.service_zone is None or not cam.membership.is_present(lane.service_zone, tr.track_id):
                lane.join(tr.track_id, tr.time_s)
            return []
        if kind != "service":
            return []
        # a track born inside the service zone is the customer already at the till under a new id
        # (id switch, re-acquisition), not a new service: counting it inflated μ
        rec = cam.tracks.get(tr.track_id)
        seen_before = (rec.first_seen_s if rec is not None else tr.time_s) < tr.time_s
        if seen_before or tr.track_id in lane.pending:  # pending: inherited from a lost queuer
            lane.service_start(tr.time_s)
        served = lane.served(tr.track_id, tr.time_s)
        if served is None and seen_before:
            # walked straight to a free till (queue membership not confirmed yet, or never in the
            # queue zone): wait from the first step into the queue zone, else 0
            joined = cam.membership.first_inside_s(lane.queue_zone, tr.track_id)
            joined_s = tr.time_s if joined is None or joined > tr.time_s else joined
            served = lane.served_without_queueing(joined_s, tr.time_s)
        if served is None:
            return []
        pj, wait_s = served
        return [self._wait(cam, lane, tr.track_id, pj, tr.time_s, wait_s, "served", ts)]

    def on_exit(self, cam: CameraState, lane: LaneQueue, tr: Transition, kind: str, ts: float,
                closed_by: str | None) -> list[Message]:
        """A customer's confirmed exit from a lane's queue zone (without a service zone, leaving
        the queue is the service)."""
        if kind != "queue":
            return []
        if tr.track_id in lane.pending:
            lane.pending[tr.track_id].left_queue_s = tr.time_s
        if lane.service_zone is not None or closed_by is not None:
            return []
        lane.service_start(tr.time_s)
        served = lane.served(tr.track_id, tr.time_s)
        if served is None:
            return []
        pj, wait_s = served
        return [self._wait(cam, lane, tr.track_id, pj, tr.time_s, wait_s, "served", ts)]

    def queuers(
        self,
        cam: CameraState,
        ts: float,
        ids: list[int],
        born: list[int],
        pts: npt.NDArray[Any],
        inside: dict[str, npt.NDArray[np.bool_]],
        is_staff: IsStaff,
    ) -> None:
        """Remember where each waiting customer was last seen, and let a track born inside a lane
        next to a lost queuer take over that queuer's join (id switch: the wait is not cut short,
        and the lost id is not reported abandoned)."""
        if not cam.lanes:
            return
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
                lost = lane.inherit(tid, (float(pts[k, 0]), float(pts[k, 1])), ts, cam.stitch_radius,
                                    cam.stitch_hold_s, present)
                if lost is not None:
                    log.debug("camera %s lane %s: track %d inherits the wait of lost track %d",
                              cam.id, lane.lane_id, tid, lost)

    def step(self, cam: CameraState, ts: float, ended: set[int], present: set[int], is_staff: IsStaff) -> list[Message]:
        """Abandonments, expired orphans, and the queue length / till state fed to each lane's model."""
        out: list[Message] = []
        m = cam.membership
        hold_s = cam.stitch_hold_s
        for lane in cam.lanes:
            svc = lane.service_zone
            for tid, pj in list(lane.pending.items()):
                if is_staff(tid):
                    lane.abandon(tid)
                    continue
                still = m.is_present(lane.queue_zone, tid) or (svc is not None and m.is_present(svc, tid))
                if tid in ended or not still:
                    rec = cam.tracks.get(tid)
                    left_s = pj.left_queue_s or m.last_inside_s(lane.queue_zone, tid) or (
                        rec.last_seen_s if rec is not None else ts)
                    if (tid not in present and pj.last_inside and pj.last_seen_s is not None
                            and ts - pj.last_seen_s <= hold_s):
                        lane.orphan(tid, left_s)  # lost inside the lane: a new id may take it over
                        continue
                    lane.abandon(tid)
                    out.append(self._wait(cam, lane, tid, pj, None, max(0.0, left_s - pj.joined_s), "abandoned", ts))
            for tid, o in lane.expired_orphans(ts, hold_s):
                pj = o.pending
                out.append(self._wait(cam, lane, tid, pj, None, max(0.0, o.left_s - pj.joined_s), "abandoned", ts))
            queue = [t for t in m.members(lane.queue_zone) if not is_staff(t)
                     and not (svc is not None and m.is_present(svc, t))]
            if svc is not None:
                at_till = [t for t in m.members(svc) if not is_staff(t)]
                # seen inside on this very frame: the close hold (not the zone grace) bridges gaps
                staff_here = any(is_staff(t) and m.last_inside_s(svc, t) == ts for t in m.present(svc))
            else:  # without a service zone, leaving the queue is the service (see on_exit)
                at_till, staff_here = [], False
            lane.advance(ts, len(queue), bool(at_till), staff_here)
        return out

    @staticmethod
    def forget(cam: CameraState, tid: int) -> None:
        for lane in cam.lanes:
            lane.pending.pop(tid, None)

    @staticmethod
    def end_of_source(cam: CameraState) -> None:
        """Customers still waiting have no outcome yet and get no event."""
        for lane in cam.lanes:
            lane.pending.clear()
            lane.orphans.clear()
