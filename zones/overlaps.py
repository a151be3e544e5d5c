"""Zones that overlap in a way that counts the same person twice (or hides them).

A person's feet can be in several zones at once, and every zone counts them: the analytics do not
arbitrate, because some overlaps are harmless (an entrance that runs into a display). Others are
installer mistakes that skew a metric all day: a dwell zone drawn over a till turns everyone
waiting to pay into a "lingering visitor"; a queue zone that reaches into its service zone counts
the customer being served as one more in line. This module names those pairs so /setup can warn
while the zone is being drawn, before a day of data is skewed.

Polygons must share one coordinate system (the setup page passes snapshot pixels). A tiny overlap
(where two hand-drawn edges touch) is not reported: only one covering at least ``min_share`` of
the smaller zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

# share of the smaller zone that must be covered before an overlap is worth a warning: hand-drawn
# neighbours touch along an edge (a few percent); a zone drawn over another covers much more
MIN_SHARE = 0.05

_COUNTING = ("queue", "service", "dwell")


@dataclass(frozen=True)
class ZoneShape:
    """What the check needs of a zone: id, kind, lane and its polygon (any one coordinate system)."""

    id: str
    kind: str
    polygon: Sequence[Sequence[float]]
    lane: str | None = None


@dataclass(frozen=True)
class Overlap:
    """Zones ``a`` and ``b`` overlap over ``share`` of the smaller one; ``why`` says what it skews."""

    a: str
    b: str
    share: float
    why: str

    @property
    def message(self) -> str:
        return f"zones {self.a} and {self.b} overlap ({self.share:.0%} of the smaller one): {self.why}"


def _why(a: ZoneShape, b: ZoneShape) -> str | None:
    """The double count an overlap of these two kinds causes, or None when it is harmless."""
    kinds = {a.kind, b.kind}
    if kinds == {"dwell", "queue"} or kinds == {"dwell", "service"}:
        return ("a dwell zone over a till or its queue: people waiting or paying count as lingering "
                "visitors (dwell and visits double count)")
    if kinds == {"queue", "service"}:
        same_lane = (a.lane or a.id) == (b.lane or b.id) or a.lane is None or b.lane is None
        return ("the queue reaches into the service zone: the customer being served also counts in "
                "the line (queue length one too high, waits too long)") if same_lane else (
                "a queue of one lane over another lane's till: customers there count in both lanes")
    if len(kinds) == 1 and a.kind in _COUNTING:
        what = {"queue": "queue length and waits", "service": "service times", "dwell": "visits, dwell "
                "and occupancy in the store totals"}[a.kind]
        return f"two {a.kind} zones over the same floor: a person there counts in both ({what} double count)"
    if "staff_only" in kinds and kinds & set(_COUNTING):
        return ("a staff-only zone over a customer zone: customers who stand there long enough are taken "
                "for staff and drop out of every count")
    return None


def _shape(points: Sequence[Sequence[float]]) -> BaseGeometry | None:
    if len(points) < 3:
        return None
    poly: BaseGeometry = Polygon([(float(p[0]), float(p[1])) for p in points])
    if not poly.is_valid:  # a bow-tie drawn by hand: take the area it encloses
        poly = shapely.make_valid(poly)
    return poly if poly.area > 0 else None


def double_counting_overlaps(zones: Sequence[ZoneShape], min_share: float = MIN_SHARE) -> list[Overlap]:
    """Pairs of zones (one camera, one coordinate system) whose overlap skews a metric."""
    shapes = [(z, _shape(z.polygon)) for z in zones]
    found: list[Overlap] = []
    for i, (a, pa) in enumerate(shapes):
        for b, pb in shapes[i + 1:]:
            if pa is None or pb is None:
                continue
            why = _why(a, b)
            if why is None:
                continue
            area = float(pa.intersection(pb).area)
            smaller = min(float(pa.area), float(pb.area))
            share = area / smaller if smaller > 0 else 0.0
            if share >= min_share:
                found.append(Overlap(a.id, b.id, round(share, 3), why))
    return found


__all__ = ["MIN_SHARE", "Overlap", "ZoneShape", "double_counting_overlaps"]
