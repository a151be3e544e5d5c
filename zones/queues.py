"""Checkout lanes: queue length, measured and predicted waits, open/closed, alerts.

A lane is a queue zone (where customers wait) linked to a service zone (where they stand at the
till). What a store manager acts on is "how long will someone joining now wait", so:

* **queue length**: customers (not staff) who are members of the queue zone and have not yet
  stepped into the service zone (so the count drops the moment someone reaches the till rather
  than after the queue zone's exit grace).
* **measured wait** of a customer: first seen inside the queue zone → first seen inside the
  service zone (both true times, see :mod:`zones.membership`).
* **service rate** μ: service starts (customers entering the service zone) per second of *busy*
  time (someone waiting or at the till), both exponentially weighted with half-life
  ``service_rate_halflife_s``. Dividing by busy time instead of wall time keeps an idle lane from
  looking slow. Both sums start with a prior of one service of ``default_service_time_s``,
  forgotten with the same half-life, so the first few observations do not swing the estimate;
  before any service start the rate is exactly ``1 / default_service_time_s``.
* **predicted wait** for a customer joining now: ``W = n / μ + r`` with ``n`` customers in the
  queue and ``r`` the residual service of the customer at the till (0 if nobody is there):
  ``r = max(1/μ − elapsed, 0.3/μ)`` with ``elapsed`` the time since the last service start (a
  fixed half service ignored the elapsed part and biased the error; measured in
  docs/validation.md); ``0.5/μ`` when that start was not observed. The band is an ~80 %
  interval from two error sources, the randomness of ``w = n + r·μ`` service times (relative sd
  ``1/sqrt(w)``) and the rate estimate (relative sd ``1/sqrt(weighted services incl. prior +
  1)``): ``W · (1 ∓ 1.28·rel)``, low clipped at 0.
* **Little's law** ``Lq = λ·Wq`` is reported as a consistency check: the exponentially weighted
  time-average queue length divided by the weighted join rate gives ``littles_law_wait_s``,
  which should agree with ``measured_wait_mean_s`` (within about ``enter_after_s``: a customer
  is counted in the queue once membership is confirmed) when the model and the zones are right.
* **stale**: no frame from the lane's camera for ``stale_after_s``, or customers are waiting and
  no service started for three expected service times (and at least ``stale_after_s``): the
  prediction then no longer describes what is happening.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from edge.payloads import LaneMetrics
from zones.config import AlertRule, QueueModelConfig

LaneCommand = Literal["open", "closed", "auto"]

# z-score of the ~80 % band
BAND_Z = 1.2816
# measured waits shown as "recent": the last few customers, if served within this window
RECENT_WAITS = 5
RECENT_WAIT_WINDOW_S = 900.0
# residual service of the customer at the till, in mean services: floor once the service has run
# longer than the mean, and the fallback when its start was not observed
RESIDUAL_FLOOR_FRACTION = 0.3
RESIDUAL_UNKNOWN_FRACTION = 0.5


@dataclass
class PendingJoin:
    joined_s: float
    queue_length_at_join: int
    left_queue_s: float | None = None  # last seen inside the queue zone, once membership ended
    # where and when the track was last seen, and whether inside the queue or service zone then:
    # a lost queuer whose id switched is recognised by a new track born close to that spot
    last_seen_s: float | None = None
    last_xy: tuple[float, float] | None = None
    last_inside: bool = False


@dataclass
class Orphan:
    """A queuer whose track was lost inside the lane: kept for a short while so that a new track
    born next to where it vanished (id switch, re-acquisition) inherits its join time."""

    pending: PendingJoin
    left_s: float  # for the abandoned event if nobody inherits it


@dataclass
class LaneQueue:
    """Queue model of one lane. Fed by :class:`zones.analytics.StoreAnalytics` once per frame of
    the lane's camera; holds per-track state only for customers who joined and were not yet
    served (evicted on service, abandonment or track end)."""

    lane_id: str
    label: str
    camera_id: str
    queue_zone: str
    service_zone: str | None
    cfg: QueueModelConfig
    staff_detection: bool = True

    queue_length: int = 0
    queue_length_smoothed: float = 0.0
    server_busy: bool = False
    last_frame_s: float | None = None
    last_service_start_s: float | None = None
    busy_since_s: float | None = None
    services_total: int = 0
    staff_last_seen_s: float | None = None
    command: LaneCommand = "auto"
    pending: dict[int, PendingJoin] = field(default_factory=dict)
    orphans: dict[int, Orphan] = field(default_factory=dict)  # lost queuers, by their old track id
    recent_waits: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT_WAITS))
    # exponentially weighted integrals
    _services_w: float = 0.0
    _busy_w_s: float = 0.0
    _joins_w: float = 0.0
    _queue_area_w: float = 0.0
    _wait_sum_w: float = 0.0
    _wait_n_w: float = 0.0

    def __post_init__(self) -> None:
        self._services_w = 1.0
        self._busy_w_s = self.cfg.default_service_time_s

    # -- feeding ------------------------------------------------------------------------------
    def advance(self, timestamp_s: float, queue_length: int, server_busy: bool, staff_present: bool) -> None:
        """Move the weighted integrals to ``timestamp_s``; the previous state held since the last frame."""
        if self.last_frame_s is not None:
            gap_s = max(0.0, timestamp_s - self.last_frame_s)
            decay = 0.5 ** (gap_s / self.cfg.service_rate_halflife_s)
            # a camera outage is not busy time: integrate at most stale_after_s of a gap
            dt_s = min(gap_s, self.cfg.stale_after_s)
            was_busy = self.queue_length > 0 or self.server_busy
            self._services_w *= decay
            self._joins_w *= decay
            self._wait_sum_w *= decay
            self._wait_n_w *= decay
            self._busy_w_s = self._busy_w_s * decay + (dt_s if was_busy else 0.0)
            self._queue_area_w = self._queue_area_w * decay + self.queue_length * dt_s
            if self.cfg.smoothing_s > 0:
                alpha = 1.0 - math.exp(-gap_s / self.cfg.smoothing_s)
                self.queue_length_smoothed += alpha * (queue_length - self.queue_length_smoothed)
            else:
                self.queue_length_smoothed = float(queue_length)
        else:
            self.queue_length_smoothed = float(queue_length)
        busy = queue_length > 0 or server_busy
        if not busy:
            self.busy_since_s = None
        elif self.busy_since_s is None:
            self.busy_since_s = timestamp_s
        self.queue_length = queue_length
        self.server_busy = server_busy
        self.last_frame_s = timestamp_s
        if staff_present:
            self.staff_last_seen_s = timestamp_s

    def join(self, track_id: int, joined_s: float) -> None:
        if track_id in self.pending:
            return
        self.pending[track_id] = PendingJoin(joined_s, self.queue_length)
        self._joins_w += 1.0

    def service_start(self, time_s: float) -> None:
        """A customer reached the till (from the queue or straight): one service of this lane."""
        self._services_w += 1.0
        self.services_total += 1
        self.last_service_start_s = time_s if self.last_service_start_s is None else max(self.last_service_start_s, time_s)

    def served(self, track_id: int, served_s: float) -> tuple[PendingJoin, float] | None:
        """The customer reached the till: their measured wait, if they had joined the queue."""
        pj = self.pending.pop(track_id, None)
        if pj is None:
            return None
        wait_s = max(0.0, served_s - pj.joined_s)
        self.recent_waits.append((served_s, wait_s))
        self._wait_sum_w += wait_s
        self._wait_n_w += 1.0
        return pj, wait_s

    def served_without_queueing(self, joined_s: float, served_s: float) -> tuple[PendingJoin, float]:
        """A customer reached the till before their queue membership was confirmed (walked
        straight to a free till): still one join and one measured wait, so quiet periods do not
        leave out exactly the shortest waits. ``joined_s`` = first seen inside the queue zone, or
        ``served_s`` if they never stepped into it."""
        pj = PendingJoin(joined_s, self.queue_length)
        self._joins_w += 1.0
        wait_s = max(0.0, served_s - joined_s)
        self.recent_waits.append((served_s, wait_s))
        self._wait_sum_w += wait_s
        self._wait_n_w += 1.0
        return pj, wait_s

    def inherit(
        self,
        track_id: int,
        xy: tuple[float, float],
        timestamp_s: float,
        radius: float,
        hold_s: float,
        present: set[int],
    ) -> int | None:
        """A new track was born inside this lane's zones at ``xy``: if a queuer was lost (not in
        this frame, last seen inside the lane within ``hold_s``) within ``radius`` of it, the new
        track takes over that join (time and place in the queue) and the lost id is dropped
        without an abandoned event. Returns the lost id, or None."""
        best: tuple[float, int] | None = None
        candidates = [(t, pj) for t, pj in self.pending.items() if t not in present and t != track_id]
        candidates += [(t, o.pending) for t, o in self.orphans.items()]
        for tid, pj in candidates:
            if not pj.last_inside or pj.last_xy is None or pj.last_seen_s is None:
                continue
            if timestamp_s - pj.last_seen_s > hold_s:
                continue
            d = math.hypot(xy[0] - pj.last_xy[0], xy[1] - pj.last_xy[1])
            if d <= radius and (best is None or d < best[0]):
                best = (d, tid)
        if best is None:
            return None
        lost = best[1]
        pj = self.pending.pop(lost) if lost in self.pending else self.orphans.pop(lost).pending
        self.pending[track_id] = PendingJoin(pj.joined_s, pj.queue_length_at_join, None, timestamp_s, xy, True)
        return lost

    def orphan(self, track_id: int, left_s: float) -> None:
        pj = self.pending.pop(track_id, None)
        if pj is not None:
            self.orphans[track_id] = Orphan(pj, left_s)

    def expired_orphans(self, timestamp_s: float, hold_s: float) -> list[tuple[int, Orphan]]:
        """Lost queuers nobody inherited within ``hold_s`` of last being seen: they abandoned."""
        out = [(t, o) for t, o in self.orphans.items()
               if o.pending.last_seen_s is None or timestamp_s - o.pending.last_seen_s > hold_s]
        for t, _ in out:
            del self.orphans[t]
        return out

    def abandon(self, track_id: int) -> PendingJoin | None:
        return self.pending.pop(track_id, None)

    def set_command(self, command: LaneCommand) -> None:
        self.command = command

    # -- model --------------------------------------------------------------------------------
    @property
    def service_rate_per_s(self) -> float:
        if self.services_total == 0 or self._busy_w_s <= 0:
            return 1.0 / self.cfg.default_service_time_s
        return self._services_w / self._busy_w_s

    @property
    def expected_service_time_s(self) -> float:
        return 1.0 / self.service_rate_per_s

    def residual_service_s(self) -> float:
        """Expected time left for the customer at the till: a fixed half service ignores how long
        this service has already run (and, with variable service times, the inspection paradox),
        so it is the mean service minus the elapsed part, floored at 0.3 of a mean service (a
        service that has run long is not about to end exactly now). Half a service when the start
        was not observed (e.g. someone already at the till at startup)."""
        mean_s = self.expected_service_time_s
        if not self.server_busy:
            return 0.0
        if self.last_service_start_s is None or self.last_frame_s is None:
            return RESIDUAL_UNKNOWN_FRACTION * mean_s
        elapsed_s = max(0.0, self.last_frame_s - self.last_service_start_s)
        return max(mean_s - elapsed_s, RESIDUAL_FLOOR_FRACTION * mean_s)

    def predicted_wait(self) -> tuple[float, float, float]:
        """(wait, low, high) seconds for a customer joining now; see the module doc."""
        mu = self.service_rate_per_s
        work = self.queue_length + self.residual_service_s() * mu
        if work <= 0:
            return 0.0, 0.0, 0.0
        wait_s = work / mu
        rel = math.sqrt(1.0 / work + 1.0 / (self._services_w + 1.0))
        return wait_s, max(0.0, wait_s * (1.0 - BAND_Z * rel)), wait_s * (1.0 + BAND_Z * rel)

    def is_open(self) -> tuple[bool, str]:
        if self.command != "auto":
            return self.command == "open", "command"
        if not self.staff_detection:
            return True, "default"
        if self.staff_last_seen_s is None or self.last_frame_s is None:
            return False, "staff"
        return self.last_frame_s - self.staff_last_seen_s <= self.cfg.lane_close_hold_s, "staff"

    def stale_reason(self, now_s: float) -> str | None:
        if self.last_frame_s is None or now_s - self.last_frame_s > self.cfg.stale_after_s:
            return "no_frames"
        if self.queue_length > 0:
            since = max(v for v in (self.last_service_start_s, self.busy_since_s, -math.inf) if v is not None)
            limit_s = max(3.0 * self.expected_service_time_s, self.cfg.stale_after_s)
            if self.last_frame_s - since > limit_s:
                return "no_service"
        return None

    def measured_wait_recent_s(self) -> float | None:
        if self.last_frame_s is None:
            return None
        waits = sorted(w for t, w in self.recent_waits if self.last_frame_s - t <= RECENT_WAIT_WINDOW_S)
        if not waits:
            return None
        mid = len(waits) // 2
        return waits[mid] if len(waits) % 2 else 0.5 * (waits[mid - 1] + waits[mid])

    def littles_law(self) -> tuple[float | None, float | None]:
        """(Lq/λ, weighted mean measured wait) in seconds; None without data."""
        little = self._queue_area_w / self._joins_w if self._joins_w > 1e-6 else None
        measured = self._wait_sum_w / self._wait_n_w if self._wait_n_w > 1e-6 else None
        return little, measured

    def metrics(self, now_s: float) -> LaneMetrics:
        """The lane_state payload fields owned by the queue model."""
        wait_s, low_s, high_s = self.predicted_wait()
        is_open, source = self.is_open()
        stale = self.stale_reason(now_s)
        little, measured_mean = self.littles_law()
        return LaneMetrics(
            open=is_open,
            open_source=source,
            command=self.command,
            queue_length=int(self.queue_length),
            queue_length_smoothed=round(self.queue_length_smoothed, 2),
            server_busy=bool(self.server_busy),
            predicted_wait_s=round(wait_s, 1),
            predicted_wait_low_s=round(low_s, 1),
            predicted_wait_high_s=round(high_s, 1),
            service_rate_per_min=round(self.service_rate_per_s * 60.0, 3) if self.services_total else None,
            service_rate_source="observed" if self.services_total else "default",
            services_observed=int(self.services_total),
            measured_wait_recent_s=_r1(self.measured_wait_recent_s()),
            measured_wait_mean_s=_r1(measured_mean),
            littles_law_wait_s=_r1(little),
            stale=stale is not None,
            stale_reason=stale,
        )

    def pending_count(self) -> int:
        return len(self.pending) + len(self.orphans)


def _r1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# ---------------------------------------------------------------------------------------------
# alerts


@dataclass
class _AlertState:
    active: bool = False
    cond_since_s: float | None = None  # condition true continuously since
    clear_since_s: float | None = None  # condition false continuously since (while active)
    raised_s: float | None = None
    value: float | None = None


@dataclass(frozen=True)
class AlertChange:
    alert_id: str
    rule: AlertRule
    lane_id: str | None
    state: Literal["raised", "cleared"]
    time_s: float
    value: float | None


class AlertEngine:
    """Evaluates the configured rules; raises after the condition held for ``for_s`` and clears
    after it was false for ``for_s`` (symmetric, so a value wobbling around the threshold does
    not page staff every frame). Outside a rule's ``hours`` window the rule is inactive and an
    active alert clears at once.

    Metrics: ``queue_length`` uses the smoothed queue length; ``predicted_wait_s`` the predicted
    wait (stale lanes never trigger); ``open_lanes_busy`` is store-wide: the smallest smoothed
    queue among open lanes (every open lane is busier than ``above``), or, with no lane open, the
    largest queue (customers waiting and nobody serving).
    """

    def __init__(self, rules: list[AlertRule], timezone: str = "UTC") -> None:
        self.rules = list(rules)
        try:
            self.tz: dt.tzinfo = ZoneInfo(timezone)
        except Exception:  # unknown zone name: fall back rather than crash the store
            self.tz = dt.timezone.utc
        self._state: dict[str, _AlertState] = {}

    @staticmethod
    def alert_id(rule: AlertRule, lane_id: str | None) -> str:
        return rule.id if lane_id is None else f"{rule.id}:{lane_id}"

    def _in_hours(self, rule: AlertRule, timestamp_s: float) -> bool:
        if rule.hours is None:
            return True
        start, end = rule.hours
        hour = dt.datetime.fromtimestamp(timestamp_s, self.tz).hour
        if start <= end:
            return start <= hour < end
        return hour >= start or hour < end  # window across midnight, e.g. (22, 2)

    def evaluate(
        self, timestamp_s: float, lanes: list[tuple[str, LaneMetrics]],
        zones: Sequence[tuple[str, float]] = (),
    ) -> list[AlertChange]:
        """``lanes``: (lane id, metrics) of every lane; ``zones``: (zone id, occupancy %) of every
        zone with a capacity (zones/capacity.py)."""
        changes: list[AlertChange] = []
        for rule in self.rules:
            active_hours = self._in_hours(rule, timestamp_s)
            targets: list[tuple[str | None, float | None]]
            if rule.metric == "open_lanes_busy":
                targets = [(None, _open_lanes_busy(lanes))]
            elif rule.metric == "zone_occupancy_pct":
                targets = [(zid, pct) for zid, pct in zones if rule.zone in ("*", zid)]
            else:
                targets = []
                for lid, m in lanes:
                    if rule.lane != "*" and rule.lane != lid:
                        continue
                    v: float | None
                    if rule.metric == "queue_length":
                        v = float(m.queue_length_smoothed)
                    else:
                        v = None if m.stale else float(m.predicted_wait_s)
                    targets.append((lid, v))
            for lane_id, value in targets:
                aid = self.alert_id(rule, lane_id)
                st = self._state.setdefault(aid, _AlertState())
                cond = active_hours and value is not None and value > rule.above
                st.value = value
                if cond:
                    st.clear_since_s = None
                    if st.cond_since_s is None:
                        st.cond_since_s = timestamp_s
                    if not st.active and timestamp_s - st.cond_since_s >= rule.for_s - 1e-9:
                        st.active = True
                        st.raised_s = timestamp_s
                        changes.append(AlertChange(aid, rule, lane_id, "raised", timestamp_s, value))
                else:
                    st.cond_since_s = None
                    if st.active:
                        if st.clear_since_s is None:
                            st.clear_since_s = timestamp_s
                        if not active_hours or timestamp_s - st.clear_since_s >= rule.for_s - 1e-9:
                            st.active = False
                            st.clear_since_s = None
                            changes.append(AlertChange(aid, rule, lane_id, "cleared", timestamp_s, value))
        return changes

    def active(self) -> list[tuple[str, AlertRule, float]]:
        """(alert id, rule, raised time) of every active alert, in rule order."""
        by_id = {}
        for rule in self.rules:
            for aid, st in self._state.items():
                if st.active and (aid == rule.id or aid.startswith(rule.id + ":")):
                    by_id[aid] = (aid, rule, st.raised_s or 0.0)
        return list(by_id.values())


def _open_lanes_busy(lanes: list[tuple[str, LaneMetrics]]) -> float | None:
    if not lanes:
        return None
    open_q = [float(m.queue_length_smoothed) for _, m in lanes if m.open and not m.stale]
    if open_q:
        return min(open_q)
    return max(float(m.queue_length_smoothed) for _, m in lanes)
