"""Image pixels ↔ floor metres for one camera, from four or more marked point pairs.

Why a plain homography: shop floors are flat and people stand on them, so the bottom-centre of a
person's box (the foot point) lies on a plane, and a plane seen by a pinhole camera is exactly a
3x3 projective map. Four marks on the floor whose positions are measured with a tape are enough;
more marks average out clicking errors, and the reprojection error over the pairs (in metres)
tells the installer whether the marks were clicked and measured consistently.

The fit is a least-squares fit over *all* pairs (no RANSAC): an installer's marks are few and
deliberate, and a bad pair must show up as a large error on that pair instead of being quietly
dropped as an outlier.

Points near or above the horizon have no floor position (they project to infinity or behind the
camera). Those come back as NaN rows, never as huge or mirrored coordinates, so a zone test or
a heatmap simply does not count them; :meth:`Calibration.on_floor` says which ones they are.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from calibration.config import CalibrationConfig
from edge.errors import UserFacingError

log = logging.getLogger("storesense.calibration")

F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# A point whose depth is more than this many times the median depth of the calibration marks is
# treated as "beyond the horizon": at that range one pixel spans metres and the position is noise.
MAX_DEPTH_RATIO = 20.0
# Three points count as collinear when the triangle they span is smaller than this fraction of the
# square of the point set's extent (about a 0.5 % bend over the full spread of the marks).
COLLINEAR_AREA_FRACTION = 2e-3
# Frames whose aspect ratio differs more than this from the reference were cropped, not scaled.
ASPECT_TOLERANCE = 0.02


class CalibrationError(UserFacingError):
    """A calibration that cannot be used: too few, duplicated, collinear or inconsistent points."""


class CalibrationFile(BaseModel):
    """The small YAML file a ``calibration.file`` points at (same keys as the inline form)."""

    model_config = ConfigDict(extra="forbid")

    image_points_px: list[tuple[float, float]] = Field(min_length=4)
    floor_points_m: list[tuple[float, float]] = Field(min_length=4)
    reference_size_px: tuple[int, int] | None = Field(
        default=None, description="(width, height) of the frame the image points were clicked on"
    )
    notes: str | None = Field(default=None, description="free text: who measured, when, which marks")

    @model_validator(mode="after")
    def _pairs(self) -> CalibrationFile:
        if len(self.image_points_px) != len(self.floor_points_m):
            raise ValueError(
                f"image_points_px has {len(self.image_points_px)} points but floor_points_m has "
                f"{len(self.floor_points_m)}: they must pair up"
            )
        return self


def _as_points(values: Any, name: str) -> F64Array:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be a list of [x, y] pairs") from None
    if arr.size == 0:
        return np.zeros((0, 2), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise CalibrationError(f"{name} must be a list of [x, y] pairs; got an array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{name} contains NaN or infinity")
    return arr


def _general_position_quad(points: F64Array) -> tuple[int, ...] | None:
    """Indices of four points with no three (nearly) collinear, or None if there are none.

    A homography needs one such quadrilateral; other marks may lie in a row (marks along a
    tile edge are common). Exhaustive over 4-subsets for the usual handful of marks, sampled for
    very many.
    """
    n = points.shape[0]
    extent = float(np.max(np.ptp(points, axis=0))) if n else 0.0
    if n < 4 or extent <= 0.0:
        return None
    min_area = COLLINEAR_AREA_FRACTION * extent * extent

    def area(i: int, j: int, k: int) -> float:
        a, b, c = points[i], points[j], points[k]
        return 0.5 * abs(float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])))

    def ok(q: tuple[int, ...]) -> bool:
        i, j, k, m = q
        return min(area(i, j, k), area(i, j, m), area(i, k, m), area(j, k, m)) >= min_area

    if n <= 20:
        candidates: Iterable[tuple[int, ...]] = itertools.combinations(range(n), 4)
    else:
        rng = np.random.default_rng(0)
        candidates = (tuple(int(v) for v in rng.choice(n, 4, replace=False)) for _ in range(5000))
    return next((q for q in candidates if ok(q)), None)


@dataclass(frozen=True)
class Calibration:
    """A fitted image→floor homography with its quality figures.

    ``homography`` maps homogeneous image pixels (of a frame of ``reference_size_px``, or of the
    camera's own frames when that is None) to homogeneous floor metres; it is sign-normalised so
    that points in front of the camera have a positive third coordinate.
    """

    homography: F64Array
    image_points_px: F64Array
    floor_points_m: F64Array
    reference_size_px: tuple[int, int] | None = None
    max_reprojection_error_m: float = 0.25
    source: str = "calibration"
    errors_m: F64Array = field(init=False)
    _inverse: F64Array = field(init=False, repr=False)
    _median_w: float = field(init=False, repr=False)
    _median_depth: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        h = np.asarray(self.homography, dtype=np.float64)
        img = np.hstack([self.image_points_px, np.ones((self.image_points_px.shape[0], 1))])
        w = img @ h[2]
        if np.median(w) < 0:
            h = -h
            w = -w
        object.__setattr__(self, "homography", h)
        inv = np.linalg.inv(h)
        flo = np.hstack([self.floor_points_m, np.ones((self.floor_points_m.shape[0], 1))])
        depth = flo @ inv[2]
        if np.median(depth) < 0:
            inv = -inv
            depth = -depth
        object.__setattr__(self, "_inverse", inv)
        object.__setattr__(self, "_median_w", float(np.median(w)))
        object.__setattr__(self, "_median_depth", float(np.median(depth)))
        proj = self.image_to_floor(self.image_points_px)
        errs = np.linalg.norm(proj - self.floor_points_m, axis=1)
        # a calibration mark that itself lands beyond the horizon is as bad as an error can be
        errs = np.where(np.isfinite(errs), errs, np.inf)
        object.__setattr__(self, "errors_m", errs)

    # ------------------------------------------------------------------------------------------
    # construction

    @classmethod
    def from_pairs(
        cls,
        image_points_px: Sequence[Sequence[float]] | npt.ArrayLike,
        floor_points_m: Sequence[Sequence[float]] | npt.ArrayLike,
        *,
        reference_size_px: tuple[int, int] | None = None,
        max_reprojection_error_m: float = 0.25,
        source: str = "calibration",
    ) -> Calibration:
        """Fit from pairs; raise :class:`CalibrationError` with the reason if they cannot work."""
        img = _as_points(image_points_px, f"{source}: image_points_px")
        flo = _as_points(floor_points_m, f"{source}: floor_points_m")
        if img.shape[0] != flo.shape[0]:
            raise CalibrationError(
                f"{source}: {img.shape[0]} image points but {flo.shape[0]} floor points; they must pair up"
            )
        if img.shape[0] < 4:
            raise CalibrationError(
                f"{source}: need at least 4 point pairs (floor marks seen in the image), found {img.shape[0]}"
            )
        for name, pts, unit in (("image_points_px", img, "px"), ("floor_points_m", flo, "m")):
            dup = _first_duplicate(pts)
            if dup is not None:
                a, b = dup
                raise CalibrationError(
                    f"{source}: {name} #{a + 1} and #{b + 1} are the same point ({pts[a][0]:g}, {pts[a][1]:g}) "
                    f"{unit}; every pair must be a different floor mark"
                )
            if _general_position_quad(pts) is None:
                raise CalibrationError(
                    f"{source}: the {name} lie (almost) on one line: a floor homography needs at least 4 "
                    "marks that span an area with no 3 of them in a row (e.g. the corners of a rectangle "
                    "of floor tiles); add marks off the line"
                )
        h, _ = cv2.findHomography(img, flo, 0)
        if h is None or not np.all(np.isfinite(h)) or abs(float(np.linalg.det(h))) < 1e-12:
            raise CalibrationError(
                f"{source}: no homography fits these points (degenerate configuration); check that "
                "image_points_px[i] and floor_points_m[i] are the same mark for every i"
            )
        cond = np.linalg.cond(h / np.abs(h).max())
        if not np.isfinite(cond) or cond > 1e12:
            raise CalibrationError(f"{source}: the fitted homography is singular; the points are degenerate")
        cal = cls(
            homography=np.asarray(h, dtype=np.float64),
            image_points_px=img,
            floor_points_m=flo,
            reference_size_px=reference_size_px,
            max_reprojection_error_m=max_reprojection_error_m,
            source=source,
        )
        if not np.all(np.isfinite(cal.errors_m)):
            bad = [int(i) + 1 for i in np.flatnonzero(~np.isfinite(cal.errors_m))]
            raise CalibrationError(
                f"{source}: image points {bad} land beyond the horizon under the fitted homography; the pairs "
                "are inconsistent (mixed-up order, or a mark measured in the wrong place)"
            )
        return cal

    @classmethod
    def for_camera(cls, store: Any, camera_id: str) -> Calibration | None:
        """The calibration of one camera of a store config (None when it has none): the one way
        every consumer (analytics, heatmaps, report, ``storesense calibrate``) builds it."""
        cam = store.camera(camera_id)
        if cam.calibration is None:
            return None
        return cls.from_config(cam.calibration, store.resolve_path, source=f"camera {camera_id} calibration")

    @classmethod
    def from_config(
        cls,
        cfg: CalibrationConfig,
        resolve_path: Callable[[str], Path],
        *,
        source: str = "calibration",
    ) -> Calibration:
        """From the store config: inline pairs or a small YAML file next to it.

        File problems are :class:`edge.config.ConfigError` with file and line, exactly as the store
        config reports them; geometric problems are :class:`CalibrationError`.
        """
        if cfg.file is None:
            assert cfg.image_points_px is not None and cfg.floor_points_m is not None  # config validator
            return cls.from_pairs(
                cfg.image_points_px,
                cfg.floor_points_m,
                reference_size_px=cfg.reference_size_px,
                max_reprojection_error_m=cfg.max_reprojection_error_m,
                source=source,
            )
        path = resolve_path(cfg.file)
        data = load_calibration_file(path)
        ref = cfg.reference_size_px
        if data.reference_size_px is not None:
            if ref is not None and tuple(ref) != tuple(data.reference_size_px):
                from edge.config import ConfigError

                raise ConfigError(
                    [
                        f"{path}: reference_size_px {list(data.reference_size_px)} differs from the store "
                        f"config's {list(ref)}; give it in one place"
                    ]
                )
            ref = data.reference_size_px
        return cls.from_pairs(
            data.image_points_px,
            data.floor_points_m,
            reference_size_px=ref,
            max_reprojection_error_m=cfg.max_reprojection_error_m,
            source=f"{source} ({path})",
        )

    # ------------------------------------------------------------------------------------------
    # quality

    @property
    def rms_error_m(self) -> float:
        """Root-mean-square distance between each floor mark and its image point mapped to the floor."""
        return float(np.sqrt(np.mean(np.square(self.errors_m))))

    @property
    def max_error_m(self) -> float:
        return float(np.max(self.errors_m))

    @property
    def worst_pair(self) -> int:
        """0-based index of the pair with the largest reprojection error."""
        return int(np.argmax(self.errors_m))

    @property
    def within_tolerance(self) -> bool:
        return self.max_error_m <= self.max_reprojection_error_m

    def check_tolerance(self) -> None:
        """Raise :class:`CalibrationError` naming the worst pair if the max error is over the limit."""
        if not self.within_tolerance:
            i = self.worst_pair
            raise CalibrationError(
                f"{self.source}: max reprojection error {self.max_error_m:.3f} m (pair #{i + 1}, image "
                f"{_fmt(self.image_points_px[i])} px ↔ floor {_fmt(self.floor_points_m[i])} m) exceeds "
                f"max_reprojection_error_m {self.max_reprojection_error_m:g} m; re-measure or re-click that "
                "mark, or add more marks"
            )

    # ------------------------------------------------------------------------------------------
    # frame size

    def for_frame_size(self, frame_size_px: tuple[int, int]) -> Calibration:
        """The same calibration for frames of ``(width, height)`` (points clicked on another size).

        Returns ``self`` when no reference size is recorded or the sizes match. A different aspect
        ratio means the stream is cropped, not scaled, and the marks cannot be transferred.
        """
        ref = self.reference_size_px
        fw, fh = int(frame_size_px[0]), int(frame_size_px[1])
        if ref is None or (int(ref[0]), int(ref[1])) == (fw, fh):
            return self
        rw, rh = float(ref[0]), float(ref[1])
        sx, sy = fw / rw, fh / rh
        if abs(sx / sy - 1.0) > ASPECT_TOLERANCE:
            raise CalibrationError(
                f"{self.source}: calibration points were clicked on {int(rw)}x{int(rh)} frames but the camera "
                f"gives {fw}x{fh}: a different aspect ratio (cropped stream?), so the points cannot be "
                "scaled; re-click them on a current frame"
            )
        scale_inv = np.diag([1.0 / sx, 1.0 / sy, 1.0])
        return Calibration(
            homography=self.homography @ scale_inv,
            image_points_px=self.image_points_px * np.array([sx, sy]),
            floor_points_m=self.floor_points_m,
            reference_size_px=(fw, fh),
            max_reprojection_error_m=self.max_reprojection_error_m,
            source=self.source,
        )

    # ------------------------------------------------------------------------------------------
    # mapping

    def image_to_floor(self, pts_px: npt.ArrayLike, *, max_depth_ratio: float = MAX_DEPTH_RATIO) -> F64Array:
        """(N, 2) image pixels → (N, 2) floor metres; NaN rows for points beyond the horizon.

        "Beyond the horizon" includes points more than ``max_depth_ratio`` times farther from the
        camera than the calibration marks (typically): there a pixel spans metres of floor.
        """
        pts = np.asarray(pts_px, dtype=np.float64).reshape(-1, 2)
        if pts.shape[0] == 0:
            return np.zeros((0, 2), np.float64)
        hom = np.hstack([pts, np.ones((pts.shape[0], 1))]) @ self.homography.T
        w = hom[:, 2]
        # w is inversely proportional to the depth along the floor: small or negative w is far
        # away or behind the camera
        ok = w > self._median_w / max_depth_ratio
        out = np.full((pts.shape[0], 2), np.nan)
        out[ok] = hom[ok, :2] / w[ok, None]
        return out

    def floor_to_image(self, pts_m: npt.ArrayLike, *, max_depth_ratio: float = MAX_DEPTH_RATIO) -> F64Array:
        """(N, 2) floor metres → (N, 2) image pixels; NaN rows for floor points behind the camera
        or too far beyond the marks to be drawn reliably."""
        pts = np.asarray(pts_m, dtype=np.float64).reshape(-1, 2)
        if pts.shape[0] == 0:
            return np.zeros((0, 2), np.float64)
        hom = np.hstack([pts, np.ones((pts.shape[0], 1))]) @ self._inverse.T
        depth = hom[:, 2]
        ok = (depth > 0) & (depth < self._median_depth * max_depth_ratio)
        out = np.full((pts.shape[0], 2), np.nan)
        out[ok] = hom[ok, :2] / depth[ok, None]
        return out

    def floor_path_to_image(
        self,
        pts_m: npt.ArrayLike,
        *,
        closed: bool = False,
        step_m: float = 0.05,
        max_depth_ratio: float = MAX_DEPTH_RATIO,
    ) -> list[F64Array]:
        """A floor polyline as image polylines, split where it crosses the usable-floor limit.

        Straight floor lines stay straight in the image, but a line that runs behind the camera
        must be cut, not joined across infinity; sampling every ``step_m`` makes the cut exact
        to within one step.
        """
        pts = np.asarray(pts_m, dtype=np.float64).reshape(-1, 2)
        if closed and pts.shape[0] > 2:
            pts = np.vstack([pts, pts[:1]])
        if pts.shape[0] < 2:
            return []
        samples: list[F64Array] = []
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            n = max(2, int(np.ceil(float(np.linalg.norm(b - a)) / step_m)) + 1)
            t = np.linspace(0.0, 1.0, n)[:, None]
            samples.append(a + (b - a) * t)
        dense = np.vstack(samples)
        img = self.floor_to_image(dense, max_depth_ratio=max_depth_ratio)
        ok = np.all(np.isfinite(img), axis=1)
        runs: list[F64Array] = []
        start: int | None = None
        for i, good in enumerate([*ok.tolist(), False]):
            if good and start is None:
                start = i
            elif not good and start is not None:
                if i - start >= 2:
                    runs.append(img[start:i])
                start = None
        return runs

    def on_floor(self, pts_px: npt.ArrayLike) -> BoolArray:
        """(N,) mask: which image points have a usable floor position (below the horizon)."""
        return np.all(np.isfinite(self.image_to_floor(pts_px)), axis=1)

    def horizon_y_px(self, x_px: float, *, max_depth_ratio: float = MAX_DEPTH_RATIO) -> float | None:
        """Image row of the usable-floor limit at column ``x_px`` (None if the limit is not a row)."""
        h = self.homography[2]
        limit = self._median_w / max_depth_ratio
        if abs(h[1]) < 1e-15:
            return None
        return float((limit - h[0] * x_px - h[2]) / h[1])

    def summary(self) -> str:
        return (
            f"{self.source}: {self.image_points_px.shape[0]} pairs, RMS error {self.rms_error_m:.3f} m, "
            f"max {self.max_error_m:.3f} m (pair #{self.worst_pair + 1}), limit {self.max_reprojection_error_m:g} m"
        )


def _fmt(p: npt.ArrayLike) -> str:
    a = np.asarray(p, dtype=np.float64).reshape(-1)
    return f"({a[0]:.2f}, {a[1]:.2f})"


def _first_duplicate(pts: F64Array) -> tuple[int, int] | None:
    extent = float(np.max(np.ptp(pts, axis=0))) if pts.shape[0] else 0.0
    tol = max(extent * 1e-6, 1e-9)
    for a in range(pts.shape[0]):
        for b in range(a + 1, pts.shape[0]):
            if float(np.max(np.abs(pts[a] - pts[b]))) <= tol:
                return a, b
    return None


def load_calibration_file(path: Path) -> CalibrationFile:
    """Read and validate a calibration YAML file; errors are ConfigError with file:line."""
    from edge.config import ConfigError, load_yaml_mapping, validation_problems

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: calibration file not found (calibration.file is relative to the store config)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read calibration file: {exc}"]) from None
    data, lines = load_yaml_mapping(text, str(path), "image_points_px and floor_points_m")
    try:
        return CalibrationFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, str(path), lines)) from None


__all__ = ["Calibration", "CalibrationError", "CalibrationFile", "load_calibration_file", "MAX_DEPTH_RATIO"]
