"""Entrance zones: footfall (``entry`` events) and the greeting clock.

A customer counts as *entering* (and is owed a greeting) only if their track started at most the
entrance zone's ``entering_max_track_age_s`` before they stepped into it; someone who has been in
the store for minutes and crosses the entrance zone is leaving. A track born inside an entrance
zone within ``STITCH_RADIUS_M`` of a track lost in the last ``tracker.max_lost_s +
STITCH_EXTRA_HOLD_S`` is that person under a new id (id switch, re-acquisition after an
occlusion), not someone entering: no greeting clock, no entry event. Anyone else born inside the
zone is entering (a door in the middle of the picture works). Events of a track seen for less
than ``entering_min_seen_s`` are held, and dropped if it ends first (a detector flicker).
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
from zones.events import Events
from zones.response import ResponseOutcome

log = logging.getLogger("storesense.analytics")

IsStaff = Callable[[int], bool]


class EntranceRules:
    def __init__(self, events: Events) -> None:
        self.events = events

    def mark_born_inside(
        self,
        cam: CameraState,
        ts: float,
        ids: list[int],
        born: list[int],
        pts: npt.NDArray[Any],
        inside: dict[str, npt.NDArray[np.bool_]],
    ) -> None:
        """A track born inside an entrance zone next to where another track was just lost is a
        re-acquired id (the person was already there), not someone entering."""
        entrances = [z.id for z in cam.zones_of_kind("entrance")]
        if not entrances or not born:
            return
        present = set(ids)
        lost = [
            (tid, rec.last_pt) for tid, rec in cam.tracks.items()
            if rec.last_pt is not None and tid not in present and ts - rec.last_seen_s <= cam.stitch_hold_s
        ]
        if not lost:
            return
        lost_ids = [tid for tid, _ in lost]
        lost_pts = np.asarray([pt for _, pt in lost], dtype=np.float64)
        radius = cam.stitch_radius
        for k in born:
            if not any(bool(inside[zid][k]) for zid in entrances):
                continue
            d = np.hypot(lost_pts[:, 0] - float(pts[k, 0]), lost_pts[:, 1] - float(pts[k, 1]))
            d = np.where(np.isnan(d), np.inf, d)  # NaN (beyond the horizon) never matches
            nearest = int(np.argmin(d))
            rec = cam.tracks.get(ids[k])
            if d[nearest] <= radius and rec is not None:
                rec.reacquired, rec.reacquired_from = True, lost_ids[nearest]

    def clocks(self, cam: CameraState, is_staff: IsStaff, ts: float) -> list[Message]:
        """Start the greeting clock at the first frame a customer is inside the entrance zone
        (not when hysteresis confirms it a second later: a staff member already standing at the
        door greets with latency 0); a brush past the zone that never becomes a membership
        cancels the clock without an event. When the membership is confirmed, the customer has
        entered: one ``entry`` event (footfall). Tracks born inside the zone next to a just-lost
        track are re-acquired ids, not people entering."""
        out: list[Message] = []
        m = cam.membership
        self._hand_over_reacquired(cam)
        for zone in cam.zones_of_kind("entrance"):
            zid = zone.id
            r = cam.responses[zid]
            for tid in m.present(zid):
                rec = cam.tracks.get(tid)
                if rec is None:
                    continue
                if rec.greeting is not None:
                    if not rec.greeting and m.is_member(zid, tid):
                        rec.greeting = True
                        self.emit(cam, zone, tid, None, self._entry(cam, zid, tid, ts), out)
                    continue
                if is_staff(tid) or rec.reacquired:
                    continue
                start = m.first_inside_s(zid, tid)
                if start is not None and start - rec.first_seen_s <= zone.entering_max_track_age_s:
                    rec.greeting = m.is_member(zid, tid)
                    r.start(tid, start)
                    if rec.greeting:
                        self.emit(cam, zone, tid, None, self._entry(cam, zid, tid, ts), out)
            for tid, rec in cam.tracks.items():
                if rec.greeting is False and not m.is_present(zid, tid) and tid in r.pending:
                    r.cancel(tid)
                    rec.greeting = None
        return out

    @staticmethod
    def _hand_over_reacquired(cam: CameraState) -> None:
        """A customer re-acquired under a new id inside the entrance keeps their greeting clock,
        entry and held events: otherwise the old id would end as 'missed' while they are still
        standing there, and the new id would get nothing."""
        for tid, rec in cam.tracks.items():
            origin = rec.reacquired_from
            if origin is None:
                continue
            rec.reacquired_from = None
            old = cam.tracks.get(origin)
            if old is not None:
                old.reacquired, old.reacquired_from = True, None  # if the old id is found again: no fresh clock
            for z in cam.zones_of_kind("entrance"):
                cam.responses[z.id].transfer(origin, tid)
            if old is None:
                continue
            if old.greeting is not None:
                rec.greeting, old.greeting = old.greeting, None
            if old.held is not None:
                cam.tracks.hold(rec, old.held.threshold_s, old.held.items)
                old.held = None
            first = old.seen_from_s if old.seen_from_s is not None else old.first_seen_s
            rec.seen_from_s = min(first, rec.first_seen_s)

    def emit(
        self, cam: CameraState, zone: ZoneConfig, tid: int, o: ResponseOutcome | None, msg: Message, out: list[Message]
    ) -> None:
        """Emit an entrance event now, or hold it until the track has been seen for the zone's
        entering_min_seen_s. Outcomes count in the compliance only when emitted."""
        rec = cam.tracks.get(tid)
        held = rec.held if rec is not None else None
        if rec is None or (held is None and rec.seen_for_s() >= zone.entering_min_seen_s):
            if o is not None:
                cam.responses[zone.id].record(o)
            out.append(msg)
            return
        if held is None:
            cam.tracks.hold(rec, zone.entering_min_seen_s, [(o, msg)])
        else:
            held.items.append((o, msg))
            held.threshold_s = max(held.threshold_s, zone.entering_min_seen_s)

    def release(self, cam: CameraState) -> list[Message]:
        out: list[Message] = []
        for _tid, rec in cam.tracks.held():
            held = rec.held
            assert held is not None
            if rec.seen_for_s() >= held.threshold_s:
                rec.held = None
                for o, msg in held.items:
                    if o is not None:
                        cam.responses[o.zone_id].record(o)
                    out.append(msg)
        return out

    def _entry(self, cam: CameraState, zone_id: str, track_id: int, ts: float) -> Message:
        entered_s = cam.membership.first_inside_s(zone_id, track_id)
        entered_s = ts if entered_s is None else entered_s
        rec = cam.tracks.get(track_id)
        first_seen_s = rec.first_seen_s if rec is not None else entered_s
        return self.events.entry(cam.id, zone_id, track_id, entered_s, entered_s - first_seen_s, ts)

    def short_zones(self, cam: CameraState, tid: int) -> set[str]:
        """Entrance zones where an ending track was seen too briefly to be a customer (its held
        events are dropped, its greeting clock cancelled); counted per zone."""
        rec = cam.tracks.get(tid)
        seen_s = cam.tracks.seen_for_s(tid)
        held = rec.held if rec is not None else None
        if rec is not None:
            rec.held = None  # not released: seen too briefly
        zones = {str(msg.payload["zone_id"]) for _, msg in held.items} if held is not None else set()
        for zid, r in cam.responses.items():
            zone = cam.zones[zid]
            if tid in r.pending and zone.kind == "entrance" and seen_s < zone.entering_min_seen_s:
                zones.add(zid)
        for zid in zones:
            cam.short_tracks_ignored[zid] = cam.short_tracks_ignored.get(zid, 0) + 1
        if zones:
            log.debug("camera %s: track %d seen %.1f s at the entrance, too briefly to be a customer; "
                      "no entry or greeting event", cam.id, tid, seen_s)
        return zones
