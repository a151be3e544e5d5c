"""Zone polygons and the per-frame point tests that run for every track of every frame.

Points are tested with shapely 2's vectorised ``contains_xy`` on prepared polygons: one call per
zone covers all tracks of the frame, so the cost stays flat as the store gets busy. A zone lives
in one of two spaces, chosen by ``ZoneConfig.units``: normalised image coordinates (0..1 of the
frame width/height) or floor metres (needs the camera's calibration). The anchor is always the
foot point (bottom-centre of the box), because zones are drawn on the floor and the box centre of
someone standing just inside a queue zone is outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import Polygon

from zones.config import ZoneConfig

BoolArray = npt.NDArray[np.bool_]
F64Array = npt.NDArray[np.float64]

# Without a calibration, distances are measured in image widths. This many image widths per floor
# metre is a rough figure for a ceiling camera that sees about 10 m of floor across the frame;
# it only exists so that greeting/approach still produce numbers, and the startup log says they
# are approximate. Calibrate the camera (storesense calibrate) for real metres.
FALLBACK_WIDTHS_PER_M = 0.1


@dataclass(frozen=True)
class ZoneShape:
    """One zone's polygon, prepared for fast repeated point tests."""

    zone_id: str
    units: str  # "norm" | "m"
    polygon: Polygon

    @classmethod
    def from_config(cls, zone: ZoneConfig) -> ZoneShape:
        poly = Polygon(zone.polygon)
        shapely.prepare(poly)
        return cls(zone.id, zone.units, poly)

    def contains(self, points: npt.ArrayLike) -> BoolArray:
        """(N,) mask of the (N, 2) points that fall strictly inside (boundary counts as outside)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if pts.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        return np.asarray(shapely.contains_xy(self.polygon, pts[:, 0], pts[:, 1]), dtype=bool)


class ZoneSet:
    """All zones of one camera; tests every track against every zone in one pass per zone."""

    def __init__(self, zones: Sequence[ZoneConfig]) -> None:
        self.shapes = [ZoneShape.from_config(z) for z in zones]
        self.zone_ids = [s.zone_id for s in self.shapes]
        self.needs_floor = any(s.units == "m" for s in self.shapes)

    def inside(self, points_norm: npt.ArrayLike, points_m: npt.ArrayLike | None) -> dict[str, BoolArray]:
        """zone id → (N,) inside mask. ``points_m`` may be None only if no zone is in metres."""
        norm = np.asarray(points_norm, dtype=np.float64).reshape(-1, 2)
        out: dict[str, BoolArray] = {}
        for s in self.shapes:
            if s.units == "m":
                if points_m is None:
                    raise ValueError(f"zone {s.zone_id!r} is in floor metres but no floor points were given")
                out[s.zone_id] = s.contains(points_m)
            else:
                out[s.zone_id] = s.contains(norm)
        return out


def pairwise_distances(a: npt.ArrayLike, b: npt.ArrayLike) -> F64Array:
    """(len(a), len(b)) Euclidean distances; empty-safe."""
    pa = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    pb = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    if pa.shape[0] == 0 or pb.shape[0] == 0:
        return np.zeros((pa.shape[0], pb.shape[0]), dtype=np.float64)
    diff = pa[:, None, :] - pb[None, :, :]
    return np.asarray(np.sqrt(np.sum(diff * diff, axis=2)), dtype=np.float64)


def image_widths(points_px: npt.ArrayLike, frame_width_px: int) -> F64Array:
    """Pixels → image widths on both axes, so distances stay isotropic (unlike foot_norm)."""
    return np.asarray(points_px, dtype=np.float64).reshape(-1, 2) / float(max(frame_width_px, 1))
