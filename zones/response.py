"""Staff response: how fast a staff member reaches a customer who needs one.

Two situations, one mechanism. At the **entrance** the clock starts when a customer enters the
entrance zone (greeting, SLA 10 s by default); in a **dwell** zone it starts when a customer's
visit becomes a stop (``stop_after_s`` in the zone; assist, SLA 30 s). The clock stops at the
first frame in which a staff member's foot point is within the zone's ``greet_radius_m`` of the
customer's. Every customer gets exactly one outcome: ``greeted`` (with the latency) or
``missed`` (the SLA passed, or the customer left first). Only customer→staff distances are ever
measured, so two staff members standing together never count as a greeting.

Distances are floor metres when the camera is calibrated. Without calibration they are image
widths, and the radius is ``greet_radius_m * FALLBACK_WIDTHS_PER_M`` (zones.geometry): an
approximation that is logged at startup and marked ``distance_method: "image_approx"`` on every
event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from zones.geometry import pairwise_distances

WINDOW_S = 3600.0

Outcome = Literal["greeted", "missed"]


@dataclass(frozen=True)
class ResponseOutcome:
    zone_id: str
    track_id: int
    started_s: float
    outcome: Outcome
    decided_s: float
    latency_s: float | None
    customer_left: bool
    distance: float | None  # customer↔staff distance at the greeting, in the tracker's units


@dataclass
class ResponseTracker:
    """Pending customers of one zone and the rolling compliance of the last hour."""

    zone_id: str
    sla_s: float
    radius: float
    pending: dict[int, float] = field(default_factory=dict)  # track id → clock start
    outcomes: deque[tuple[float, bool, float | None]] = field(default_factory=lambda: deque(maxlen=50_000))
    _cache: tuple[tuple[int, float | None], dict[str, object]] | None = None

    def start(self, track_id: int, started_s: float) -> None:
        self.pending.setdefault(track_id, started_s)

    def cancel(self, track_id: int) -> None:
        """The 'customer' turned out to be staff: no event at all."""
        self.pending.pop(track_id, None)

    def left(self, track_id: int, now_s: float) -> ResponseOutcome | None:
        """The customer left (visit ended or track ended) before anyone reached them."""
        start = self.pending.pop(track_id, None)
        if start is None:
            return None
        return ResponseOutcome(self.zone_id, track_id, start, "missed", now_s, None, True, None)

    def update(
        self,
        now_s: float,
        customer_ids: Sequence[int],
        customer_points: npt.ArrayLike,
        staff_points: npt.ArrayLike,
    ) -> list[ResponseOutcome]:
        """Resolve pending customers with this frame's positions (customers and staff of this camera)."""
        if not self.pending:
            return []
        out: list[ResponseOutcome] = []
        cpts = np.asarray(customer_points, dtype=np.float64).reshape(-1, 2)
        spts = np.asarray(staff_points, dtype=np.float64).reshape(-1, 2)
        nearest: dict[int, float] = {}
        if spts.shape[0] and cpts.shape[0]:
            d = np.nan_to_num(pairwise_distances(cpts, spts), nan=np.inf).min(axis=1)
            nearest = {int(t): float(v) for t, v in zip(customer_ids, d, strict=True)}
        for tid, start in list(self.pending.items()):
            if now_s < start:
                continue  # the clock has not started yet (stop begins later)
            dist = nearest.get(tid)
            if dist is not None and dist <= self.radius:
                del self.pending[tid]
                out.append(ResponseOutcome(self.zone_id, tid, start, "greeted", now_s, now_s - start, False, dist))
            elif now_s - start > self.sla_s:
                del self.pending[tid]
                out.append(ResponseOutcome(self.zone_id, tid, start, "missed", now_s, None, False, None))
        return out

    def transfer(self, old_track_id: int, new_track_id: int) -> bool:
        """The same customer under a new id (re-acquired after an id switch): the clock goes on."""
        start = self.pending.pop(old_track_id, None)
        if start is None:
            return False
        self.pending[new_track_id] = start
        return True

    def record(self, o: ResponseOutcome) -> ResponseOutcome:
        """Count an outcome in the rolling compliance. Separate from deciding it, because the
        caller may hold an outcome back (a track too short-lived to be a customer) and drop it."""
        ok = o.outcome == "greeted" and o.latency_s is not None and o.latency_s <= self.sla_s
        self.outcomes.append((o.decided_s, ok, o.latency_s))
        return o

    def summary(self, now_s: float) -> dict[str, Any]:
        while self.outcomes and now_s - self.outcomes[0][0] > WINDOW_S:
            self.outcomes.popleft()
        n = len(self.outcomes)
        key = (n, self.outcomes[-1][0] if n else None)
        cache = self._cache
        if cache is None or cache[0] != key:
            ok = sum(1 for _, good, _ in self.outcomes if good)
            lat = [x for _, good, x in self.outcomes if good and x is not None]
            stats: dict[str, object] = {
                "response_events_last_hour": n,
                "response_compliance_pct": round(100.0 * ok / n, 1) if n else None,
                "response_latency_median_s": round(float(np.median(lat)), 1) if lat else None,
            }
            cache = (key, stats)
            self._cache = cache
        return {"response_sla_s": self.sla_s, **cache[1], "response_pending": len(self.pending)}
