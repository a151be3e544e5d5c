"""When live state is published, and what it says: lanes, zones, the store, alerts.

Retained live state (lane, zone, store) goes out at most every ``analytics.state_interval_s`` per
entity, and at once when something a screen must show changes (lane open/closed, recommended
lane, staleness, alerts, a capacity zone filling up). The recommended lane comes from
zones/recommend.py (shortest predicted wait, with hysteresis).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from edge.config import StoreConfig
from edge.contract import Message, MessageKind
from edge.payloads import LaneMetrics, LaneState, Payload, StoreState, ZoneState
from zones.camera import CameraState
from zones.events import Events, r3
from zones.queues import AlertEngine, LaneQueue
from zones.recommend import LaneOption, LaneRecommender

log = logging.getLogger("storesense.analytics")

StateKey = tuple[MessageKind, str]  # (kind, entity id) of one live-state entity


class StatePublisher:
    """Store-wide: alerts, the recommended lane, and the throttled live state of every entity."""

    def __init__(self, cfg: StoreConfig, lanes: Mapping[str, LaneQueue], cameras: Mapping[str, CameraState],
                 events: Events) -> None:
        self.store_id = cfg.store.id
        self.interval_s = cfg.analytics.state_interval_s
        self.lanes = lanes
        self.cameras = cameras
        self.events = events
        self.alerts = AlertEngine(list(cfg.analytics.alerts), cfg.store.timezone)
        self.recommended: str | None = None
        rec = cfg.analytics.recommendation
        self.recommender = LaneRecommender(rec.margin_s, rec.hold_s)
        self._last_emit_s: dict[StateKey, float] = {}
        self._last_sig: dict[StateKey, Any] = {}

    def _store_now(self) -> float:
        return max((c.last_ts for c in self.cameras.values() if c.last_ts is not None), default=0.0)

    def step(
        self,
        ts: float,
        cam: CameraState | None,
        force_lanes: set[str] | None = None,
        force_all: bool = False,
    ) -> list[Message]:
        now = max(self._store_now(), ts)
        out: list[Message] = []
        metrics = {lid: lane.metrics(now) for lid, lane in self.lanes.items()}
        zones = [(zid, cap.occupancy_pct) for c in self.cameras.values() for zid, cap in c.capacity.items()]
        for change in self.alerts.evaluate(now, list(metrics.items()), zones):
            out.append(self.events.alert(change))
        recommended = self.recommender.update(now, [
            LaneOption(lid, m.open, m.stale, m.predicted_wait_s) for lid, m in metrics.items()
        ])
        if recommended != self.recommended:
            log.info("recommended lane: %s → %s", self.recommended, recommended)
            self.recommended = recommended
        out.extend(self._lanes(now, cam, metrics, recommended, force_lanes, force_all))
        # zone states of the camera that just delivered a frame
        for c in [cam] if cam is not None else list(self.cameras.values()):
            for zid, st in c.stats.items():
                key: StateKey = ("zone_state", zid)
                cap = c.capacity.get(zid)
                sig: Any = (st.staff_count > 0, cap.full if cap is not None else None)
                if force_all or self._due(key, now, sig, self.interval_s):
                    out.append(self._state(key, self.zone_payload(c, zid, now), now, sig))
        out.extend(self._store(now, metrics, recommended, bool(force_lanes), force_all))
        return out

    def _lanes(self, now: float, cam: CameraState | None, metrics: dict[str, LaneMetrics], recommended: str | None,
               force_lanes: set[str] | None, force_all: bool) -> list[Message]:
        out: list[Message] = []
        for lid, lane in self.lanes.items():
            m = metrics[lid]
            is_recommended = lid == recommended
            sig: Any = (m.open, is_recommended, m.stale, m.open_source)
            own = cam is not None and lane.camera_id == cam.id
            key: StateKey = ("lane_state", lid)
            interval = self.interval_s if own else None
            if force_all or (force_lanes and lid in force_lanes) or self._due(key, now, sig, interval):
                out.append(self._state(key, self.lane_payload(lane, m, is_recommended, now), now, sig))
        return out

    def _store(self, now: float, metrics: dict[str, LaneMetrics], recommended: str | None, forced_lane: bool,
               force_all: bool) -> list[Message]:
        active = self.alerts.active()
        lanes_open = sum(1 for m in metrics.values() if m.open)
        key: StateKey = ("store_state", "all")
        sig = (recommended, lanes_open, tuple(a[0] for a in active))
        if not (force_all or forced_lane or self._due(key, now, sig, self.interval_s)):
            return []
        payload = StoreState(
            store_id=self.store_id,
            timestamp_s=r3(now),
            recommended_lane=recommended,
            lanes_open=lanes_open,
            lanes=list(self.lanes),
            active_alerts=[a[0] for a in active],
            alerts=[
                {"alert_id": aid, "rule_id": rule.id, "action": rule.action, "message": rule.message,
                 "since_s": r3(since)}
                for aid, rule, since in active
            ],
        )
        return [self._state(key, payload, now, sig)]

    def _due(self, key: StateKey, now: float, sig: Any, interval: float | None) -> bool:
        """Publish when the significant signature changed, or the interval passed (own entities)."""
        if self._last_sig.get(key, object()) != sig:
            return True
        if interval is None:
            return False
        last = self._last_emit_s.get(key)
        return last is None or now - last >= interval - 1e-9

    def _state(self, key: StateKey, payload: Payload, now: float, sig: Any) -> Message:
        self._last_emit_s[key] = now
        self._last_sig[key] = sig
        return Message(key[0], key[1], payload.to_dict(), "state")

    # -- payloads -------------------------------------------------------------------------------
    def lane_payload(self, lane: LaneQueue, m: LaneMetrics, recommended: bool, now: float) -> LaneState:
        return LaneState.of(
            m,
            store_id=self.store_id,
            lane_id=lane.lane_id,
            label=lane.label,
            camera_id=lane.camera_id,
            timestamp_s=r3(lane.last_frame_s if lane.last_frame_s is not None else now),
            recommended=recommended,
        )

    def zone_payload(self, cam: CameraState, zid: str, now: float) -> ZoneState:
        zone = cam.zones[zid]
        at = cam.last_ts if cam.last_ts is not None else now
        r = cam.responses.get(zid)
        return ZoneState(
            store_id=self.store_id,
            zone_id=zid,
            label=zone.label or zid,
            kind=zone.kind,
            camera_id=cam.id,
            timestamp_s=r3(at),
            **cam.stats[zid].summary(at),
            **(r.summary(at) if r is not None else {}),
            distance_method=cam.distance_method if r is not None else None,
            **(cap.fields(at) if (cap := cam.capacity.get(zid)) is not None else {}),
            short_tracks_ignored=cam.short_tracks_ignored.get(zid, 0) if zone.kind == "entrance" else None,
        )

