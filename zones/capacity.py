"""Occupancy against capacity: a fitting-room area with 6 cabins, a changing room, a demo bar.

A zone with ``capacity`` reports, in its zone state, how many places are free, whether it is
full and for how long, and how many people wait at its entrance (the occupancy of its
``waiting_zone``, a dwell zone the installer draws in front of it). An alert rule on
``zone_occupancy_pct`` (e.g. ``above: 99, for_s: 120``: full for 2 minutes) calls staff; the
checkout display can show the zone as a card (``display.capacity_zones``).

Kept in its own module, fed the occupancy the dwell statistics already count, so the analytics
orchestrator only asks it for payload fields and alert values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class CapacityState:
    zone_id: str
    capacity: int
    waiting_zone: str | None = None
    occupancy: int = 0
    waiting: int | None = None
    full_since_s: float | None = None

    def update(self, now_s: float, occupancy: int, waiting: int | None) -> None:
        """Called once per frame of the zone's camera with the current (customer) counts."""
        self.occupancy = occupancy
        self.waiting = waiting
        if occupancy >= self.capacity:
            if self.full_since_s is None:
                self.full_since_s = now_s
        else:
            self.full_since_s = None

    @property
    def full(self) -> bool:
        return self.full_since_s is not None

    @property
    def occupancy_pct(self) -> float:
        return 100.0 * self.occupancy / self.capacity

    def fields(self, now_s: float) -> dict[str, Any]:
        """The zone_state fields of a capacity zone."""
        return {
            "capacity": self.capacity,
            "free_places": max(0, self.capacity - self.occupancy),
            "occupancy_pct": round(self.occupancy_pct, 1),
            "full": self.full,
            "full_for_s": round(now_s - self.full_since_s, 1) if self.full_since_s is not None else 0.0,
            "waiting": self.waiting,
        }
