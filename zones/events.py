"""Building the analytics' durable events (docs/messages.md): one function per event type.

Each event carries a deterministic ``event_id`` (camera/track/type/subject/time) so a replay
after a crash de-duplicates. Payloads never carry images or identities: only numbers and the
anonymous per-camera track ids.
"""

from __future__ import annotations

import logging
import math

from edge.contract import Message
from edge.payloads import (
    AlertEvent,
    AssistEvent,
    EntryEvent,
    Event,
    GreetingEvent,
    LaneCommandEvent,
    QueueWaitEvent,
    VisitEvent,
)
from zones.config import ZoneConfig
from zones.queues import AlertChange
from zones.response import ResponseOutcome

log = logging.getLogger("storesense.analytics")

def ms(t: float) -> int:
    return int(round(t * 1000.0))


def r3(t: float | None) -> float | None:
    return None if t is None else round(float(t), 3)


def event_id(camera_id: str, track_id: int, event_type: str, subject: str, t: float) -> str:
    return f"{camera_id}-{track_id}-{event_type}-{subject}-{ms(t)}"


class Events:
    """Event messages of one store."""

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id

    @staticmethod
    def message(payload: Event) -> Message:
        return Message("event", payload.TYPE, payload.to_dict(), "event")

    def queue_wait(
        self,
        camera_id: str,
        lane_id: str,
        track_id: int,
        joined_s: float,
        served_s: float | None,
        wait_s: float,
        outcome: str,
        queue_length_at_join: int,
        ts: float,
    ) -> Message:
        return self.message(QueueWaitEvent(
            store_id=self.store_id, timestamp_s=r3(ts),
            event_id=event_id(camera_id, track_id, "queue_wait", lane_id, joined_s),
            lane_id=lane_id, camera_id=camera_id, track_id=track_id, outcome=outcome,
            joined_s=r3(joined_s), served_s=r3(served_s), wait_s=round(wait_s, 2),
            queue_length_at_join=int(queue_length_at_join),
        ))

    def response(
        self, camera_id: str, zone: ZoneConfig, o: ResponseOutcome, distance_method: str, ts: float
    ) -> Message:
        cls = GreetingEvent if zone.kind == "entrance" else AssistEvent
        distance = None if o.distance is None else round(o.distance, 3)
        return self.message(cls(
            store_id=self.store_id, timestamp_s=r3(ts),
            event_id=event_id(camera_id, o.track_id, cls.TYPE, zone.id, o.started_s),
            zone_id=zone.id, camera_id=camera_id, track_id=o.track_id, outcome=o.outcome,
            started_s=r3(o.started_s), latency_s=None if o.latency_s is None else round(o.latency_s, 2),
            sla_s=zone.sla_s,
            within_sla=o.outcome == "greeted" and o.latency_s is not None and o.latency_s <= zone.sla_s,
            customer_left=o.customer_left, distance_method=distance_method,
            distance_m=distance if distance_method == "floor_m" else None,
            distance_image_widths=distance if distance_method != "floor_m" else None,
        ))

    def visit(
        self, camera_id: str, zone: ZoneConfig, track_id: int, enter_s: float, exit_s: float, dwell_s: float,
        stop: bool, closed_by: str, ts: float,
    ) -> Message:
        return self.message(VisitEvent(
            store_id=self.store_id, timestamp_s=r3(ts),
            event_id=event_id(camera_id, track_id, "visit", zone.id, exit_s),
            zone_id=zone.id, camera_id=camera_id, track_id=track_id,
            enter_s=r3(enter_s), exit_s=r3(exit_s), dwell_s=round(dwell_s, 2),
            stop=stop, stop_after_s=zone.stop_after_s, closed_by=closed_by,
        ))

    def entry(self, camera_id: str, zone_id: str, track_id: int, entered_s: float, track_age_s: float,
              ts: float) -> Message:
        return self.message(EntryEvent(
            store_id=self.store_id, timestamp_s=r3(ts),
            event_id=event_id(camera_id, track_id, "entry", zone_id, entered_s),
            camera_id=camera_id, zone_id=zone_id, entered_s=r3(entered_s),
            track_age_s=round(max(0.0, track_age_s), 2),
        ))

    def alert(self, ch: AlertChange) -> Message:
        value = ch.value
        log.info("alert %s %s (value %s)", ch.alert_id, ch.state, value, extra={"event": "alert"})
        return self.message(AlertEvent(
            store_id=self.store_id, timestamp_s=r3(ch.time_s),
            event_id=f"alert-{ch.alert_id}-{ch.state}-{ms(ch.time_s)}",
            alert_id=ch.alert_id, rule_id=ch.rule.id, lane_id=ch.lane_id, state=ch.state,
            metric=ch.rule.metric, value=None if value is None or not math.isfinite(value) else round(value, 2),
            above=ch.rule.above, for_s=ch.rule.for_s, action=ch.rule.action, message=ch.rule.message,
        ))

    def lane_command(self, lane_id: str, camera_id: str, state: str, is_open: bool, source: str,
                     ts: float) -> Message:
        return self.message(LaneCommandEvent(
            store_id=self.store_id, timestamp_s=r3(ts), event_id=f"lane_command-{lane_id}-{state}-{ms(ts)}",
            lane_id=lane_id, camera_id=camera_id, state=state, open=is_open, open_source=source,
        ))
