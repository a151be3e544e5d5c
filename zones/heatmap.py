"""Where customers spend time: person-seconds on a grid of the floor (or of the image), per hour.

Why person-seconds and not detections: a person standing 30 s at a display is worth 30 s whether
the camera analyses 2 or 10 frames a second, so every track adds ``dt_s`` (the time since the
previous analysed frame) to the cell under its foot point. With a calibration the grid is in
floor metres (``cell_m``, 0.25 m by default) and cells of different cameras mean the same area;
without one it is a grid of the normalised image (``cell_norm``).

One message per camera and hour (local store hours, so a report's "10:00-11:00" is a bucket), sent
as a durable event; an hour in which nobody was seen sends nothing (read it as zero). Privacy: each cell also counts the *distinct* tracks that visited it this
hour; cells visited by fewer than ``min_tracks_per_cell`` tracks are left out of the published
cells (their time still counts in ``suppressed_person_s``), so one lone visitor's path cannot be
read off the map. Track id sets are cleared every hour.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from edge.contract import Message
from edge.errors import UserFacingError
from edge.payloads import Heatmap

if TYPE_CHECKING:
    from calibration.homography import Calibration
    from edge.config import StoreConfig

log = logging.getLogger("storesense.heatmap")

SCHEMA = Heatmap.SCHEMA
HOUR_S = 3600.0
F64Array = npt.NDArray[np.float64]
Units = Literal["m", "norm"]

# A floor grid never spans more than this (a far horizon would otherwise ask for km of cells);
# at 0.25 m cells that is at most 200 x 200 cells, 320 KB per open hour.
MAX_FLOOR_SPAN_M = 50.0
# without a known frame size, the floor grid covers the marks and zones plus this margin
FLOOR_MARGIN_M = 5.0
# a track id set per cell is capped: beyond this the count is already far above any k
MAX_TRACKS_PER_CELL = 10_000
PERSON_S_DECIMALS = 3


@dataclass(frozen=True)
class HeatmapGrid:
    """A regular grid: cell (row, col) covers x in [ox + col*c, ox + (col+1)*c), y likewise with row.

    ``units`` "m": floor metres (x, y of the calibration's floor frame); "norm": image fractions
    (x right, y down, 0..1).
    """

    units: Units
    origin: tuple[float, float]
    cell_size: float
    shape: tuple[int, int]  # rows, cols

    def __post_init__(self) -> None:
        if not (self.cell_size > 0 and math.isfinite(self.cell_size)):
            raise ValueError(f"cell size must be positive, got {self.cell_size}")
        if self.shape[0] < 1 or self.shape[1] < 1:
            raise ValueError(f"grid shape must be at least 1x1, got {self.shape}")

    @classmethod
    def image(cls, cell_norm: float) -> HeatmapGrid:
        n = max(1, int(math.ceil(1.0 / cell_norm - 1e-9)))
        return cls("norm", (0.0, 0.0), float(cell_norm), (n, n))

    @classmethod
    def floor(cls, x0_m: float, y0_m: float, x1_m: float, y1_m: float, cell_m: float) -> HeatmapGrid:
        """Cells covering the rectangle, with the origin snapped to a multiple of the cell size."""
        ox = math.floor(x0_m / cell_m) * cell_m
        oy = math.floor(y0_m / cell_m) * cell_m
        cols = max(1, int(math.ceil((x1_m - ox) / cell_m - 1e-9)))
        rows = max(1, int(math.ceil((y1_m - oy) / cell_m - 1e-9)))
        return cls("m", (round(ox, 9), round(oy, 9)), float(cell_m), (rows, cols))

    @classmethod
    def for_calibration(
        cls,
        calibration: Calibration,
        cell_m: float,
        *,
        frame_size_px: tuple[int, int] | None = None,
        zones: Sequence[Any] = (),
    ) -> HeatmapGrid:
        """The floor the camera sees: frame corners (below the horizon) mapped to the floor, plus
        the marks and the metre zones; capped at ``MAX_FLOOR_SPAN_M`` around the marks."""
        size = frame_size_px or calibration.reference_size_px
        parts = [calibration.floor_points_m]
        parts += [np.asarray(z.polygon, dtype=np.float64) for z in zones if getattr(z, "units", "norm") == "m"]
        if size is not None:
            cal = calibration.for_frame_size(size)
            w, h = size
            xs, ys = np.meshgrid(np.linspace(0, w - 1, 49), np.linspace(0, h - 1, 49))
            seen = cal.image_to_floor(np.stack([xs.ravel(), ys.ravel()], axis=1))
            parts.append(seen[np.all(np.isfinite(seen), axis=1)])
            pts = np.vstack(parts)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
        else:
            pts = np.vstack(parts)
            lo, hi = pts.min(axis=0) - FLOOR_MARGIN_M, pts.max(axis=0) + FLOOR_MARGIN_M
            log.warning(
                "heatmap: %s has no reference_size_px, so the floor grid covers the marks and zones + %.0f m; "
                "set calibration.reference_size_px to cover exactly what the camera sees",
                calibration.source,
                FLOOR_MARGIN_M,
            )
        centre = np.median(calibration.floor_points_m, axis=0)
        half = MAX_FLOOR_SPAN_M / 2.0
        lo = np.maximum(lo, centre - half)
        hi = np.minimum(hi, centre + half)
        return cls.floor(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), cell_m)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> HeatmapGrid:
        o = payload["origin"]
        s = payload["shape"]
        return cls(payload["units"], (float(o[0]), float(o[1])), float(payload["cell_size"]), (int(s[0]), int(s[1])))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) in grid units."""
        ox, oy = self.origin
        return (ox, ox + self.shape[1] * self.cell_size, oy, oy + self.shape[0] * self.cell_size)

    def cells_of(self, points: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(rows, cols, inside) of (N, 2) points; NaN points and points off the grid are not inside."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.units == "norm":
            # a foot point on the bottom/right frame edge (y == 1.0) belongs to the last cell
            pts = np.where((pts >= 1.0) & (pts <= 1.0 + 1e-6), 1.0 - 1e-9, pts)
        with np.errstate(invalid="ignore"):
            fc = np.floor((pts[:, 0] - self.origin[0]) / self.cell_size)
            fr = np.floor((pts[:, 1] - self.origin[1]) / self.cell_size)
            inside = np.isfinite(fc) & np.isfinite(fr) & (fc >= 0) & (fr >= 0) & (fc < self.shape[1]) & (fr < self.shape[0])
        rows = np.where(inside, fr, 0).astype(np.int64)
        cols = np.where(inside, fc, 0).astype(np.int64)
        return rows, cols, inside


@dataclass
class _Hour:
    start_s: float
    end_s: float
    person_s: F64Array
    tracks: dict[int, set[int]] = field(default_factory=dict)  # flat cell index -> track ids
    all_tracks: set[int] = field(default_factory=set)
    outside_person_s: float = 0.0
    first_s: float | None = None
    last_s: float | None = None


class HourClock:
    """Local hour boundaries of the store's time zone (handles DST and half-hour offsets)."""

    def __init__(self, timezone: str = "UTC") -> None:
        try:
            self.tz: dt.tzinfo = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UserFacingError(f"store.timezone {timezone!r} is not a known IANA time zone (e.g. Asia/Shanghai)") from None
        self._cached: tuple[float, float] | None = None

    def bounds(self, timestamp_s: float) -> tuple[float, float]:
        """[start, end) of the local hour containing ``timestamp_s``, as epoch seconds.

        An hour is always 3600 s of real time: with whole-hour DST shifts local hour boundaries
        are UTC hour boundaries, and with half-hour offsets (India) they sit at :30 UTC.
        """
        c = self._cached
        if c is not None and c[0] <= timestamp_s < c[1]:
            return c
        local = dt.datetime.fromtimestamp(timestamp_s, self.tz)
        start = local.replace(minute=0, second=0, microsecond=0).timestamp()
        self._cached = (start, start + HOUR_S)
        return self._cached


class HeatmapAccumulator:
    """Person-seconds per cell and hour for one camera; emits one message per finished hour."""

    def __init__(
        self,
        camera_id: str,
        store_id: str,
        grid: HeatmapGrid,
        *,
        min_tracks_per_cell: int = 3,
        timezone: str = "UTC",
    ) -> None:
        self.camera_id = camera_id
        self.store_id = store_id
        self.grid = grid
        self.min_tracks_per_cell = int(min_tracks_per_cell)
        self.clock = HourClock(timezone)
        self._hours: dict[float, _Hour] = {}
        self.points_outside_total = 0

    @classmethod
    def for_camera(
        cls,
        cfg: StoreConfig,
        camera_id: str,
        *,
        floor: bool,
        calibration: Calibration | None = None,
        frame_size_px: tuple[int, int] | None = None,
    ) -> HeatmapAccumulator:
        """From the store config: a floor grid if ``floor`` (the camera is calibrated), else an image grid."""
        cam = cfg.camera(camera_id)
        hcfg = cfg.analytics.heatmap
        if floor:
            if calibration is None:
                from calibration.homography import Calibration

                calibration = Calibration.for_camera(cfg, camera_id)
                if calibration is None:
                    raise UserFacingError(f"camera {camera_id}: a floor heatmap needs a calibration")
            grid = HeatmapGrid.for_calibration(calibration, hcfg.cell_m, frame_size_px=frame_size_px, zones=cam.zones)
        else:
            grid = HeatmapGrid.image(hcfg.cell_norm)
        return cls(
            camera_id, cfg.store.id, grid, min_tracks_per_cell=hcfg.min_tracks_per_cell, timezone=cfg.store.timezone
        )

    # ------------------------------------------------------------------------------------------

    def _hour(self, timestamp_s: float) -> _Hour:
        start, end = self.clock.bounds(timestamp_s)
        h = self._hours.get(start)
        if h is None:
            h = _Hour(start, end, np.zeros(self.grid.shape, dtype=np.float64))
            self._hours[start] = h
        return h

    def add(self, points: npt.ArrayLike, track_ids: npt.ArrayLike, dt_s: float, timestamp_s: float) -> None:
        """Credit ``dt_s`` seconds to the cell of each point (one point per track) at ``timestamp_s``.

        The interval is ``(timestamp_s - dt_s, timestamp_s]``; when it straddles an hour boundary
        and the earlier hour is still open, the seconds are split between the two hours. Points off
        the grid or NaN (beyond the horizon) are counted in ``outside_person_s``.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        if ids.shape[0] != pts.shape[0]:
            raise ValueError(f"heatmap: {pts.shape[0]} points but {ids.shape[0]} track ids")
        if not (math.isfinite(dt_s) and dt_s >= 0.0) or not math.isfinite(timestamp_s):
            raise ValueError(f"heatmap: dt_s must be finite and >= 0 and timestamp_s finite; got {dt_s}, {timestamp_s}")
        if pts.shape[0] == 0 or dt_s == 0.0:
            return
        cur = self._hour(timestamp_s)
        pieces: list[tuple[_Hour, float]] = []
        into_current = timestamp_s - cur.start_s
        if dt_s > into_current:
            prev_start, _ = self.clock.bounds(cur.start_s - 1e-6)
            prev = self._hours.get(prev_start)
            if prev is not None:
                pieces.append((prev, dt_s - into_current))
                pieces.append((cur, into_current))
            else:
                pieces.append((cur, dt_s))
        else:
            pieces.append((cur, dt_s))
        rows, cols, inside = self.grid.cells_of(pts)
        n_out = int((~inside).sum())
        self.points_outside_total += n_out
        flat = rows[inside] * self.grid.shape[1] + cols[inside]
        in_ids = ids[inside]
        all_ids = ids.tolist()
        for hour, secs in pieces:
            if secs <= 0:
                continue
            np.add.at(hour.person_s.reshape(-1), flat, secs)
            hour.outside_person_s += n_out * secs
            for cell, tid in zip(flat.tolist(), in_ids.tolist(), strict=True):
                s = hour.tracks.get(cell)
                if s is None:
                    hour.tracks[cell] = {tid}
                elif len(s) < MAX_TRACKS_PER_CELL:
                    s.add(tid)
            hour.all_tracks.update(all_ids)
            piece_end = min(timestamp_s, hour.end_s)
            piece_start = piece_end - secs
            hour.first_s = piece_start if hour.first_s is None else min(hour.first_s, piece_start)
            hour.last_s = piece_end if hour.last_s is None else max(hour.last_s, piece_end)

    def flush(self, upto_timestamp_s: float, *, final: bool = False) -> list[Message]:
        """Messages for every hour that ended at or before ``upto_timestamp_s`` (all hours if
        ``final``); their state is dropped."""
        out: list[Message] = []
        for start in sorted(self._hours):
            h = self._hours[start]
            if not final and h.end_s > upto_timestamp_s:
                continue
            del self._hours[start]
            if h.first_s is None:
                continue
            payload = self._payload(h, complete=h.end_s <= upto_timestamp_s)
            out.append(Message("heatmap", self.camera_id, payload.to_dict(), "event"))
        return out

    def finish(self, timestamp_s: float) -> list[Message]:
        """End of the source: publish the current partial hour too."""
        return self.flush(timestamp_s, final=True)

    @property
    def open_hours(self) -> int:
        return len(self._hours)

    def _payload(self, h: _Hour, *, complete: bool) -> Heatmap:
        k = self.min_tracks_per_cell
        cells: list[list[float | int]] = []
        suppressed_cells = 0
        suppressed_s = 0.0
        cols = self.grid.shape[1]
        for cell in sorted(h.tracks):
            n = len(h.tracks[cell])
            r, c = divmod(cell, cols)
            secs = float(h.person_s[r, c])
            if n < k:
                suppressed_cells += 1
                suppressed_s += secs
                continue
            cells.append([int(r), int(c), round(secs, PERSON_S_DECIMALS), int(n)])
        total = float(h.person_s.sum())
        assert h.first_s is not None and h.last_s is not None
        return Heatmap(
            store_id=self.store_id,
            camera_id=self.camera_id,
            timestamp_s=h.end_s if complete else h.last_s,
            event_id=f"heatmap-{self.camera_id}-{int(h.start_s)}-{int(round(h.first_s * 1000))}",
            hour_start_s=h.start_s,
            hour_end_s=h.end_s,
            complete=complete,
            observed_from_s=h.first_s,
            observed_to_s=h.last_s,
            units=self.grid.units,
            origin=[self.grid.origin[0], self.grid.origin[1]],
            cell_size=self.grid.cell_size,
            shape=[self.grid.shape[0], self.grid.shape[1]],
            cells=cells,
            total_person_s=round(total, PERSON_S_DECIMALS),
            suppressed_cells=suppressed_cells,
            suppressed_person_s=round(suppressed_s, PERSON_S_DECIMALS),
            outside_person_s=round(h.outside_person_s, PERSON_S_DECIMALS),
            min_tracks_per_cell=k,
            tracks=len(h.all_tracks),
        )


# ----------------------------------------------------------------------------------------------
# reading payloads back


def heatmap_from_payloads(
    payloads: Iterable[Mapping[str, Any]], min_tracks: int = 1
) -> tuple[F64Array, HeatmapGrid]:
    """Sum hourly payloads of one camera into one array on the union of their grids.

    Cells whose summed track count is below ``min_tracks`` are set to 0 (k-suppression on the
    period; a track seen in two hours counts twice, so use the per-hour suppression of the
    accumulator for a strict guarantee). All payloads must share units and cell size.
    """
    items = [p for p in payloads if p.get("schema") == SCHEMA]
    if not items:
        raise UserFacingError("no heatmap payloads (schema storesense.heatmap/1) to combine")
    grids = [HeatmapGrid.from_payload(p) for p in items]
    units = {g.units for g in grids}
    cells = {round(g.cell_size, 9) for g in grids}
    if len(units) > 1 or len(cells) > 1:
        raise UserFacingError(
            f"heatmap payloads mix grids (units {sorted(units)}, cell sizes {sorted(cells)}): the camera's "
            "calibration or heatmap settings changed in this period; combine one period at a time"
        )
    c = grids[0].cell_size
    x0 = min(g.origin[0] for g in grids)
    y0 = min(g.origin[1] for g in grids)
    x1 = max(g.extent[1] for g in grids)
    y1 = max(g.extent[3] for g in grids)
    union = HeatmapGrid(grids[0].units, (x0, y0), c, (int(round((y1 - y0) / c)), int(round((x1 - x0) / c))))
    total = np.zeros(union.shape, dtype=np.float64)
    tracks = np.zeros(union.shape, dtype=np.int64)
    for p, g in zip(items, grids, strict=True):
        dr = int(round((g.origin[1] - y0) / c))
        dc = int(round((g.origin[0] - x0) / c))
        for row in p["cells"]:
            r, col, secs, n = int(row[0]), int(row[1]), float(row[2]), int(row[3])
            total[r + dr, col + dc] += secs
            tracks[r + dr, col + dc] += n
    total[tracks < int(min_tracks)] = 0.0
    return total, union


def heatmap_array_from_payloads(payloads: Iterable[Mapping[str, Any]], min_tracks: int = 1) -> F64Array:
    """Person-seconds per cell summed over the hours, with cells under ``min_tracks`` zeroed."""
    return heatmap_from_payloads(payloads, min_tracks)[0]


# ----------------------------------------------------------------------------------------------
# rendering

PANEL_IN = (6.4, 4.8)
# 150 dpi: the report shows two heatmaps side by side and browsers scale them; at 100 dpi the
# camera view and its cells came out soft (issue 13 item 11: "the heatmap must be sharp")
DPI = 150
ZONE_COLOURS = {"queue": "#1f9bff", "service": "#c800c8", "dwell": "#ffdc00", "entrance": "#00e070", "staff_only": "#ff7878"}


def heatmap_png_size(grid: HeatmapGrid, *, reference: bool, calibration: bool) -> tuple[int, int]:
    """(width, height) in pixels of what :func:`render_heatmap_png` writes for these inputs."""
    panels = _panels(grid, reference, calibration)
    return (int(round(PANEL_IN[0] * DPI)) * len(panels), int(round(PANEL_IN[1] * DPI)))


def _panels(grid: HeatmapGrid, reference: bool, calibration: bool) -> list[str]:
    panels = []
    if reference and (grid.units == "norm" or calibration):
        panels.append("camera")
    if grid.units == "m":
        panels.append("floor")
    if not panels:
        panels.append("image")
    return panels


def _image_heat(array: F64Array, grid: HeatmapGrid, size: tuple[int, int], calibration: Calibration | None) -> F64Array:
    """The grid's values at every pixel of a ``size`` image (NaN where there is no cell)."""
    w, h = size
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    if grid.units == "norm":
        pts = np.stack([xs.ravel() / w, ys.ravel() / h], axis=1)
    else:
        assert calibration is not None
        pts = calibration.for_frame_size((w, h)).image_to_floor(np.stack([xs.ravel(), ys.ravel()], axis=1))
    rows, cols, inside = grid.cells_of(pts)
    out = np.full(w * h, np.nan)
    out[inside] = array[rows[inside], cols[inside]]
    return out.reshape(h, w)


def render_heatmap_png(
    array: npt.ArrayLike,
    grid: HeatmapGrid,
    out_path: str | Path,
    *,
    reference_bgr: npt.NDArray[Any] | None = None,
    calibration: Calibration | None = None,
    zones: Sequence[Any] | None = None,
    title: str = "Person-seconds per cell",
    legend: bool = True,
) -> Path:
    """Draw the heatmap: over the camera's reference frame and, when calibrated, top-down in metres.

    The reference frame never leaves the box; this PNG is for the store's own ops review.
    Size is fixed (:func:`heatmap_png_size`) so pages that embed it lay out predictably.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors

    arr = np.asarray(array, dtype=np.float64)
    if arr.shape != grid.shape:
        raise ValueError(f"heatmap array has shape {arr.shape} but the grid is {grid.shape}")
    if grid.units == "m" and reference_bgr is not None and calibration is None:
        log.warning("heatmap: a floor grid over the camera view needs the calibration; drawing the floor plan only")
    panels = _panels(grid, reference_bgr is not None, calibration is not None)
    vmax = float(np.nanmax(arr)) if np.any(arr > 0) else 1.0
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad=(0, 0, 0, 0))
    masked = np.ma.masked_less_equal(arr, 0.0)
    zones = list(zones or [])
    width_px, height_px = heatmap_png_size(grid, reference=reference_bgr is not None, calibration=calibration is not None)
    fig = plt.figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    mappable = None
    style = {"cmap": cmap, "norm": norm, "interpolation": "nearest"}
    try:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        if legend and zones:
            fig.subplots_adjust(bottom=0.2)  # room for the zone colours under the maps
        for ax, panel in zip(axes, panels, strict=True):
            if panel == "camera":
                assert reference_bgr is not None
                mappable = _camera_panel(ax, arr, grid, reference_bgr, calibration, zones, style)
            elif panel == "floor":
                mappable = _floor_panel(ax, arr, masked, grid, calibration, reference_bgr, zones, style)
            else:
                mappable = _image_grid_panel(ax, masked, grid, zones, style)
        if legend and mappable is not None:
            cell = f"{grid.cell_size:g} m cell" if grid.units == "m" else f"cell ({grid.cell_size:g} of the frame size)"
            # from the norm and colour map, not the overlay: the camera view's heat is drawn at 60 %
            # opacity, and a colour bar taken from it came out washed out
            from matplotlib.cm import ScalarMappable

            fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), shrink=0.85,
                         label=f"person-seconds per {cell}")
            _zone_kind_legend(fig, axes, zones)
        fig.suptitle(title, fontsize=11)
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return out


def _camera_panel(ax: Any, arr: F64Array, grid: HeatmapGrid, reference_bgr: npt.NDArray[Any],
                  calibration: Calibration | None, zones: Sequence[Any], style: dict[str, Any]) -> Any:
    """Heat over the camera's reference frame."""
    from matplotlib.patches import Polygon as MplPolygon

    h, w = reference_bgr.shape[:2]
    ax.imshow(reference_bgr[:, :, ::-1], extent=(0, w, h, 0))
    heat = np.ma.masked_invalid(_image_heat(arr, grid, (w, h), calibration))
    heat = np.ma.masked_less_equal(heat, 0.0)
    mappable = ax.imshow(heat, extent=(0, w, h, 0), alpha=0.6, **style)
    _draw_zones_image(ax, zones, (w, h), calibration, MplPolygon)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    ax.set_title("camera view", fontsize=9)
    return mappable


def _floor_panel(ax: Any, arr: F64Array, masked: Any, grid: HeatmapGrid, calibration: Calibration | None,
                 reference_bgr: npt.NDArray[Any] | None, zones: Sequence[Any], style: dict[str, Any]) -> Any:
    """Top-down floor plan in metres, with a scale bar."""
    from matplotlib.patches import Polygon as MplPolygon
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    x0, x1, y0, y1 = grid.extent
    ax.set_facecolor("#202020")
    mappable = ax.imshow(masked, extent=(x0, x1, y0, y1), origin="lower", **style)
    for z in zones:
        pts = _zone_floor_points(z, calibration, reference_bgr)
        if pts is not None:
            _zone_patch(ax, pts, z, MplPolygon)
    x0, x1, y0, y1 = _floor_view(arr, grid, zones)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    span = x1 - x0
    bar_m = next((b for b in (0.5, 1, 2, 5, 10, 20) if b >= span / 8), 20)
    ax.add_artist(AnchoredSizeBar(ax.transData, bar_m, f"{bar_m:g} m", "lower right", pad=0.4,
                                  color="white", frameon=False, size_vertical=span / 150))
    ax.set_title(f"floor plan, {grid.cell_size:g} m cells", fontsize=9)
    return mappable


def _image_grid_panel(ax: Any, masked: Any, grid: HeatmapGrid, zones: Sequence[Any], style: dict[str, Any]) -> Any:
    """Normalised image grid (no calibration, no reference frame)."""
    from matplotlib.patches import Polygon as MplPolygon

    ax.set_facecolor("#202020")
    mappable = ax.imshow(masked, extent=(0, 1, 1, 0), **style)
    _draw_zones_image(ax, zones, (1, 1), None, MplPolygon)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (image width)")
    ax.set_ylabel("y (image height)")
    ax.set_title(f"image grid, {grid.cell_size:g} cells (no calibration)", fontsize=9)
    return mappable


def _floor_view(arr: F64Array, grid: HeatmapGrid, zones: Sequence[Any]) -> tuple[float, float, float, float]:
    """Plot limits for the floor plan: the visited cells and metre zones plus 1 m, not the whole
    visible floor (which reaches far beyond where anyone walks)."""
    gx0, gx1, gy0, gy1 = grid.extent
    xs: list[float] = []
    ys: list[float] = []
    rows, cols = np.nonzero(arr > 0)
    if rows.size:
        c = grid.cell_size
        xs += [grid.origin[0] + cols.min() * c, grid.origin[0] + (cols.max() + 1) * c]
        ys += [grid.origin[1] + rows.min() * c, grid.origin[1] + (rows.max() + 1) * c]
    for z in zones:
        if getattr(z, "units", "norm") == "m":
            pts = np.asarray(z.polygon, dtype=np.float64)
            xs += [float(pts[:, 0].min()), float(pts[:, 0].max())]
            ys += [float(pts[:, 1].min()), float(pts[:, 1].max())]
    if not xs:
        return gx0, gx1, gy0, gy1
    x0, x1, y0, y1 = min(xs) - 1.0, max(xs) + 1.0, min(ys) - 1.0, max(ys) + 1.0
    # at least 4 m across so a single busy spot does not fill the panel
    for lo, hi, attr in ((x0, x1, "x"), (y0, y1, "y")):
        if hi - lo < 4.0:
            mid = (lo + hi) / 2.0
            lo, hi = mid - 2.0, mid + 2.0
        if attr == "x":
            x0, x1 = lo, hi
        else:
            y0, y1 = lo, hi
    return max(x0, gx0), min(x1, gx1), max(y0, gy0), min(y1, gy1)


# zones whose names a reader needs on the map; tills and staff-only areas are told apart by colour
# (legend under the map): their names crowded the checkout map and ran under the colour bar
LABELLED_KINDS = ("queue", "dwell", "entrance")


def _zone_patch(ax: Any, pts: F64Array, zone: Any, patch_cls: Any) -> None:
    kind = getattr(zone, "kind", "")
    colour = ZONE_COLOURS.get(kind, "#ffffff")
    ax.add_patch(patch_cls(pts, closed=True, fill=False, edgecolor=colour, linewidth=1.5,
                           linestyle="--" if kind == "staff_only" else "-"))
    if kind not in LABELLED_KINDS:
        return
    # the label sits inside the zone, centred under its top edge, clipped to the map: it can no
    # longer be cut by the panel's edge or hidden under the colour bar
    top_y = float(pts[:, 1].min()) if ax.yaxis_inverted() else float(pts[:, 1].max())
    ax.annotate(getattr(zone, "label", None) or zone.id, xy=(float(pts[:, 0].mean()), top_y), color=colour,
                fontsize=7, ha="center", va="top" if not ax.yaxis_inverted() else "bottom",
                xytext=(0, -3 if not ax.yaxis_inverted() else 3), textcoords="offset points",
                annotation_clip=True, clip_on=True,
                bbox={"boxstyle": "round,pad=0.15", "fc": "black", "alpha": 0.55, "lw": 0})


def _zone_kind_legend(fig: Any, axes: Sequence[Any], zones: Sequence[Any]) -> None:
    """Which colour is which kind of zone, under the maps."""
    from matplotlib.lines import Line2D

    kinds = [k for k in ZONE_COLOURS if any(getattr(z, "kind", "") == k for z in zones)]
    if not kinds:
        return
    names = {"queue": "queue", "service": "till (service)", "dwell": "dwell", "entrance": "entrance",
             "staff_only": "staff only"}
    handles = [Line2D([], [], color=ZONE_COLOURS[k], linestyle="--" if k == "staff_only" else "-", linewidth=1.5)
               for k in kinds]
    fig.legend(handles, [f"{names[k]} zone" for k in kinds], loc="lower center", ncol=len(kinds), fontsize=7,
               frameon=False)


def _draw_zones_image(ax: Any, zones: Sequence[Any], size: tuple[int, int], calibration: Calibration | None,
                      patch_cls: Any) -> None:
    w, h = size
    for z in zones:
        if z.units == "norm":
            _zone_patch(ax, np.asarray(z.polygon, dtype=np.float64) * np.array([w, h]), z, patch_cls)
        elif calibration is not None and size != (1, 1):
            for run in calibration.for_frame_size(size).floor_path_to_image(z.polygon, closed=True):
                _zone_patch(ax, run, z, patch_cls)


def _zone_floor_points(zone: Any, calibration: Calibration | None, reference_bgr: Any) -> F64Array | None:
    if zone.units == "m":
        return np.asarray(zone.polygon, dtype=np.float64)
    if calibration is None or reference_bgr is None:
        return None  # a norm zone needs the frame size and calibration to go on the floor plan
    h, w = reference_bgr.shape[:2]
    pts = calibration.for_frame_size((w, h)).image_to_floor(np.asarray(zone.polygon, dtype=np.float64) * np.array([w, h]))
    return pts if bool(np.all(np.isfinite(pts))) else None


__all__ = [
    "HeatmapAccumulator",
    "HeatmapGrid",
    "HourClock",
    "SCHEMA",
    "heatmap_array_from_payloads",
    "heatmap_from_payloads",
    "heatmap_png_size",
    "render_heatmap_png",
]
