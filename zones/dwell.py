"""Per-zone visit statistics: occupancy, visits per hour, dwell distribution, stops.

Only customers count (staff are filtered by the caller). A visit is one membership interval
(see :mod:`zones.membership`), so a short occlusion does not split it. A visit longer than the
zone's ``stop_after_s`` is a *stop*: the customer paid attention to the products there.
The rolling window is one hour of frame time; the deques are pruned on every update so memory
is bounded by the busiest hour, never by uptime.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WINDOW_S = 3600.0
MAX_VISITS_KEPT = 50_000  # hard cap on one hour of visits per zone, in case of a runaway tracker


@dataclass(frozen=True)
class Visit:
    zone_id: str
    track_id: int
    enter_s: float
    exit_s: float
    stop: bool

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.exit_s - self.enter_s)


@dataclass
class ZoneStats:
    zone_id: str
    stop_after_s: float
    occupancy: int = 0
    staff_count: int = 0
    entries: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_VISITS_KEPT))
    visits: deque[Visit] = field(default_factory=lambda: deque(maxlen=MAX_VISITS_KEPT))
    visits_total: int = 0
    # dwell statistics only change when a visit is added or ages out: computed once per change
    _dwell_cache: dict[str, object] | None = None

    def entered(self, time_s: float) -> None:
        self.entries.append(time_s)

    def exited(self, track_id: int, enter_s: float, exit_s: float) -> Visit:
        v = Visit(self.zone_id, track_id, enter_s, exit_s, exit_s - enter_s >= self.stop_after_s)
        self.visits.append(v)
        self.visits_total += 1
        self._dwell_cache = None
        return v

    def prune(self, now_s: float) -> None:
        while self.entries and now_s - self.entries[0] > WINDOW_S:
            self.entries.popleft()
        while self.visits and now_s - self.visits[0].exit_s > WINDOW_S:
            self.visits.popleft()
            self._dwell_cache = None

    def _dwell_stats(self) -> dict[str, object]:
        if self._dwell_cache is None:
            dwell = np.fromiter((v.exit_s - v.enter_s for v in self.visits), dtype=np.float64, count=len(self.visits))
            dwell = np.maximum(dwell, 0.0)
            self._dwell_cache = {
                "visits_completed_last_hour": int(dwell.size),
                "stops_last_hour": sum(1 for v in self.visits if v.stop),
                "dwell_median_s": round(float(np.median(dwell)), 1) if dwell.size else None,
                "dwell_p90_s": round(float(np.percentile(dwell, 90)), 1) if dwell.size else None,
                "dwell_mean_s": round(float(dwell.mean()), 1) if dwell.size else None,
            }
        return self._dwell_cache

    def summary(self, now_s: float) -> dict[str, Any]:
        self.prune(now_s)
        return {
            "occupancy": int(self.occupancy),
            "staff_present": self.staff_count > 0,
            "staff_count": int(self.staff_count),
            "visits_last_hour": len(self.entries),
            **self._dwell_stats(),
        }
