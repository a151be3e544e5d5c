"""Synthetic checkout queues and entrance greetings whose truth is known, to prove the analytics.

Real video cannot tell us how wrong a predicted wait is: nobody timed those customers. So the
validation runs the unchanged analytics (:class:`zones.analytics.StoreAnalytics`) on *simulated*
tracks, where every customer's true join time, service start and greeting latency is known
exactly, and where the noise a real detector and tracker add (position jitter, missed detections,
occlusions, id switches, false positives) is switched on knob by knob. The difference between
the analytics' numbers and the truth is then the error the product owner reads in
docs/validation.md.

Design choices, each so that a measured error can only come from the analytics or the noise:

* **Deterministic.** One ``seed`` drives the scene (arrivals, service times, patience, routes) and
  a separate stream derived from it drives the noise, so the same customers can be replayed with
  and without noise.
* **Exact truth.** People move along piecewise-linear floor paths; zones are axis-aligned floor
  rectangles. Zone entries/exits are solved analytically on those segments (Liang-Barsky), and the
  first moment a staff member comes within the greeting radius of a customer is solved as a
  quadratic on each common linear piece. The truth therefore does not depend on the frame rate;
  a perfect system sampling at ``fps`` must be late by less than one frame period.
* **The product's definitions.** A customer *joins* when their foot point first enters the queue
  zone and is *served* when it first enters the service zone (``true_wait_s`` = the difference),
  which is what the analytics measure. A greeting happens when a staff member first comes within
  ``greet_radius_m`` while the customer is in the entrance zone.
* **Ready to run.** Each simulation carries a validated :class:`edge.config.StoreConfig` (zones in
  floor metres, a camera calibration built with
  :meth:`calibration.homography.Calibration.from_pairs`, staff identified by ``staff_only`` zones)
  and yields :class:`edge.contract.Tracks` exactly as the tracker would, foot point =
  ``floor_to_image(position)``.

Floor geometry of the queue scene (metres, y grows away from the camera): lanes are vertical
lines ``LANE_SPACING_M`` apart; each has a service point (the till) near the far end, a column of
queue slots ``SLOT_SPACING_M`` apart below it, a queue zone around the slots, a service zone
around the service point and a cashier standing beside the till in a ``staff_only`` zone.
Customers appear at the near edge in the aisle left of their lane, walk up the aisle to the side
of their slot, step in, move up as the queue advances, walk to the till, are served and leave past
the till. Customers who give up step back into the aisle and walk out.
"""

from __future__ import annotations

import heapq
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from calibration.homography import Calibration
from edge.config import StoreConfig, parse_config
from edge.contract import Tracks

F64Array = npt.NDArray[np.float64]

# queue scene geometry (metres)
SLOT_SPACING_M = 0.6
LANE_SPACING_M = 2.5
FIRST_LANE_X_M = 2.0
LANE_HALF_WIDTH_M = 0.6  # queue/service zones extend this far either side of the lane line
AISLE_OFFSET_M = 1.25  # customers walk up (and out) this far left of their lane line
HEAD_TO_TILL_M = 1.0  # first queue slot → service point
CASHIER_OFFSET_M = 1.1  # cashier stands this far right of the lane line, beside the till
ENTRY_Y_M = 0.3  # customers appear (and abandoners disappear) at this distance from the near edge
EXIT_BEYOND_TILL_M = 2.0  # served customers walk this far past the till and leave the view

# image
DEFAULT_FRAME_SIZE_PX = (1280, 720)
PERSON_HEIGHT_M = 1.7
BOX_ASPECT = 0.4  # width / height of a standing person's box
# how tall a 1.7 m person looks relative to the floor scale at their feet (an overhead-ish camera
# foreshortens people); only the foot point matters to the analytics, this keeps boxes plausible
HEIGHT_FORESHORTENING = 0.7

StaffRole = Literal["cashier", "greeter", "staff"]
Role = Literal["customer", "cashier", "greeter", "staff"]


# ---------------------------------------------------------------------------------------------
# noise


@dataclass(frozen=True)
class NoiseModel:
    """What a real detector + tracker do to perfect positions; every knob defaults to off.

    * ``jitter_m``: sd of independent gaussian noise on each floor coordinate, every frame.
    * ``miss_rate``: probability that a detection is dropped in a frame (independently).
    * ``occlusion_per_track_s``: occlusions start at this rate per second of a person's life; each
      hides the person for U(0, ``occlusion_max_s``) seconds. The track keeps its id across the
      gap (the tracker bridged it), so ``occlusion_max_s`` should not exceed ``end_after_s``.
    * ``id_switch_per_track_s``: rate per track-second at which the person's track continues
      under a new id; the old id is reported ended ``end_after_s`` after its last frame.
    * ``false_positive_per_s``: rate of spurious short tracks (anywhere on the floor, including the
      zones), each lasting U(0.2, ``false_positive_max_s``) seconds with its own id.
    * ``end_after_s``: the tracker's ``max_lost_s``: an id appears in ``Tracks.ended_ids`` this long
      after its last detection.
    """

    jitter_m: float = 0.0
    miss_rate: float = 0.0
    occlusion_per_track_s: float = 0.0
    occlusion_max_s: float = 0.0
    id_switch_per_track_s: float = 0.0
    false_positive_per_s: float = 0.0
    false_positive_max_s: float = 2.0
    end_after_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("jitter_m", "occlusion_per_track_s", "occlusion_max_s", "id_switch_per_track_s",
                     "false_positive_per_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"noise {name} must be a finite number >= 0, got {v!r}")
        if not 0.0 <= self.miss_rate < 1.0:
            raise ValueError(f"noise miss_rate must be in [0, 1), got {self.miss_rate!r}")
        if not self.false_positive_max_s >= 0.2:
            raise ValueError(f"noise false_positive_max_s must be >= 0.2 s, got {self.false_positive_max_s!r}")
        if not self.end_after_s > 0.0:
            raise ValueError(f"noise end_after_s must be > 0, got {self.end_after_s!r}")


NOISE_FREE = NoiseModel()
# The "realistic" setting of the acceptance runs (docs/validation.md): jitter 0.15 m, 10 % misses,
# an occlusion of up to 2 s per minute of track, an id switch per 200 track-seconds and a false
# positive every 30 s somewhere in view.
REALISTIC_NOISE = NoiseModel(
    jitter_m=0.15,
    miss_rate=0.10,
    occlusion_per_track_s=1.0 / 60.0,
    occlusion_max_s=2.0,
    id_switch_per_track_s=1.0 / 200.0,
    false_positive_per_s=1.0 / 30.0,
    false_positive_max_s=2.0,
)


# ---------------------------------------------------------------------------------------------
# geometry helpers


@dataclass(frozen=True)
class Rect:
    """An axis-aligned floor rectangle (metres); zones are these so truth can be solved exactly."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def polygon(self) -> list[tuple[float, float]]:
        return [(self.xmin, self.ymin), (self.xmax, self.ymin), (self.xmax, self.ymax), (self.xmin, self.ymax)]

    def contains(self, x: float, y: float) -> bool:
        return self.xmin < x < self.xmax and self.ymin < y < self.ymax


class FloorPath:
    """A person's floor path: waypoints (t, x, y), linear between them, standing still after the last.

    Paths are built forward in time by the event simulation; :meth:`go` first cuts the path at the
    decision time, so a plan can be changed mid-walk (the queue moved up, patience ran out).
    """

    def __init__(self, t_s: float, x_m: float, y_m: float) -> None:
        self.t: list[float] = [t_s]
        self.x: list[float] = [x_m]
        self.y: list[float] = [y_m]

    def pos(self, t_s: float) -> tuple[float, float]:
        if t_s <= self.t[0]:
            return self.x[0], self.y[0]
        if t_s >= self.t[-1]:
            return self.x[-1], self.y[-1]
        i = int(np.searchsorted(self.t, t_s, side="right")) - 1
        t0, t1 = self.t[i], self.t[i + 1]
        u = (t_s - t0) / (t1 - t0) if t1 > t0 else 1.0
        return self.x[i] + u * (self.x[i + 1] - self.x[i]), self.y[i] + u * (self.y[i + 1] - self.y[i])

    def cut(self, t_s: float) -> None:
        """Drop every waypoint after ``t_s`` and end the path at its position at ``t_s``."""
        x, y = self.pos(t_s)
        while self.t and self.t[-1] > t_s:
            self.t.pop()
            self.x.pop()
            self.y.pop()
        if not self.t or self.t[-1] < t_s:
            self.t.append(t_s)
            self.x.append(x)
            self.y.append(y)

    def go(self, t_s: float, points: Sequence[tuple[float, float]], speed_mps: float) -> list[float]:
        """From ``t_s`` walk through ``points``; returns the arrival time at each point."""
        self.cut(t_s)
        arrivals = []
        t = t_s
        for px, py in points:
            d = math.hypot(px - self.x[-1], py - self.y[-1])
            if d > 1e-9:
                t = t + d / speed_mps
                self.t.append(t)
                self.x.append(px)
                self.y.append(py)
            arrivals.append(t)
        return arrivals

    def hold(self, until_s: float) -> None:
        """Stand still until ``until_s`` (a waypoint there, so a later :meth:`go` starts then)."""
        if until_s > self.t[-1]:
            self.t.append(until_s)
            self.x.append(self.x[-1])
            self.y.append(self.y[-1])

    @property
    def end_s(self) -> float:
        return self.t[-1]

    def segments(self, until_s: float) -> Iterator[tuple[float, float, float, float, float, float]]:
        """(t0, t1, x0, y0, x1, y1) pieces up to ``until_s``; standing still after the last waypoint."""
        for i in range(len(self.t) - 1):
            if self.t[i] >= until_s:
                return
            yield self.t[i], self.t[i + 1], self.x[i], self.y[i], self.x[i + 1], self.y[i + 1]
        if self.t[-1] < until_s:
            yield self.t[-1], until_s, self.x[-1], self.y[-1], self.x[-1], self.y[-1]


def _inside_interval(rect: Rect, x0: float, y0: float, dx: float, dy: float) -> tuple[float, float] | None:
    """Parameter range (u_lo, u_hi) ⊂ [0, 1] where p0 + u·d is strictly inside ``rect`` (Liang-Barsky)."""
    lo, hi = 0.0, 1.0
    for p, d, a, b in ((x0, dx, rect.xmin, rect.xmax), (y0, dy, rect.ymin, rect.ymax)):
        if abs(d) < 1e-15:
            if not a < p < b:
                return None
            continue
        u1, u2 = (a - p) / d, (b - p) / d
        if u1 > u2:
            u1, u2 = u2, u1
        lo, hi = max(lo, u1), min(hi, u2)
        if lo >= hi:
            return None
    return lo, hi


def first_entry_s(path: FloorPath, rect: Rect, after_s: float, until_s: float) -> float | None:
    """First time in [after_s, until_s] at which the path is strictly inside ``rect``."""
    for t0, t1, x0, y0, x1, y1 in path.segments(until_s):
        if t1 < after_s:
            continue
        if t1 <= t0:
            continue
        iv = _inside_interval(rect, x0, y0, x1 - x0, y1 - y0)
        if iv is None:
            continue
        t_in = t0 + iv[0] * (t1 - t0)
        t_out = t0 + iv[1] * (t1 - t0)
        if t_out <= after_s:
            continue
        t = max(t_in, after_s)
        return t if t <= until_s else None
    return None


def first_exit_s(path: FloorPath, rect: Rect, after_s: float, until_s: float) -> float | None:
    """First time in [after_s, until_s] at which the path is outside ``rect`` (boundary = outside)."""
    for t0, t1, x0, y0, x1, y1 in path.segments(until_s):
        if t1 < after_s or t1 <= t0:
            continue
        iv = _inside_interval(rect, x0, y0, x1 - x0, y1 - y0)
        ta = max(t0, after_s)
        if iv is None:
            return ta
        t_in = t0 + iv[0] * (t1 - t0)
        t_out = t0 + iv[1] * (t1 - t0)
        if ta < t_in:
            return ta
        if iv[1] < 1.0 and t_out >= ta:
            return t_out if t_out <= until_s else None
    return None


def first_within_s(a: FloorPath, b: FloorPath, radius_m: float, from_s: float, until_s: float) -> float | None:
    """First time in [from_s, until_s] at which paths ``a`` and ``b`` are at most ``radius_m`` apart."""
    if until_s < from_s:
        return None
    cuts = sorted({from_s, until_s, *(t for t in a.t if from_s < t < until_s), *(t for t in b.t if from_s < t < until_s)})
    r2 = radius_m * radius_m
    for ta, tb in zip(cuts[:-1], cuts[1:], strict=True):
        ax0, ay0 = a.pos(ta)
        bx0, by0 = b.pos(ta)
        ax1, ay1 = a.pos(tb)
        bx1, by1 = b.pos(tb)
        rx, ry = ax0 - bx0, ay0 - by0
        span = tb - ta
        if rx * rx + ry * ry <= r2:
            return ta
        if span <= 0:
            continue
        vx, vy = ((ax1 - bx1) - rx) / span, ((ay1 - by1) - ry) / span
        qa = vx * vx + vy * vy
        qb = 2.0 * (rx * vx + ry * vy)
        qc = rx * rx + ry * ry - r2
        if qa <= 0:
            continue
        disc = qb * qb - 4.0 * qa * qc
        if disc < 0:
            continue
        root = (-qb - math.sqrt(disc)) / (2.0 * qa)
        if 0.0 <= root <= span:
            return ta + root
    return None


# ---------------------------------------------------------------------------------------------
# people and the track stream


@dataclass
class Person:
    """Someone the camera sees: a customer or staff, with their true floor path."""

    pid: int
    role: Role
    path: FloorPath
    appear_s: float
    vanish_s: float = math.inf

    @property
    def is_staff(self) -> bool:
        return self.role != "customer"


def _homography_floor_to_image(width_m: float, depth_m: float, frame_size_px: tuple[int, int]) -> F64Array:
    """A plausible high, tilted camera: the near floor edge fills the bottom of the frame, the far
    edge is narrower near the top (perspective), with margins so people stay in frame."""
    w, h = frame_size_px
    floor = np.array([[0, 0], [width_m, 0], [width_m, depth_m], [0, depth_m]], np.float32)
    image = np.array(
        [[0.05 * w, 0.97 * h], [0.95 * w, 0.97 * h], [0.76 * w, 0.06 * h], [0.24 * w, 0.06 * h]], np.float32
    )
    return np.asarray(cv2.getPerspectiveTransform(floor, image), dtype=np.float64)


def calibration_pairs(
    width_m: float, depth_m: float, frame_size_px: tuple[int, int]
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Image/floor point pairs an installer would have marked: the four floor corners and the centre
    and two mid-edge marks, projected through the true camera (so the fit is exact)."""
    hmat = _homography_floor_to_image(width_m, depth_m, frame_size_px)
    floor = np.array(
        [[0, 0], [width_m, 0], [width_m, depth_m], [0, depth_m], [width_m / 2, depth_m / 2],
         [width_m / 2, 0], [0, depth_m / 2]],
        np.float64,
    )
    img = cv2.perspectiveTransform(floor[None, :, :], hmat)[0]
    return (
        [(round(float(x), 4), round(float(y), 4)) for x, y in img],
        [(float(x), float(y)) for x, y in floor],
    )


@dataclass
class TrackStream:
    """All observations of a simulation, sorted by frame; :meth:`frames` yields ``Tracks``."""

    camera_id: str
    fps: float
    start_epoch_s: float
    n_frames: int
    frame_size_px: tuple[int, int]
    frame: npt.NDArray[np.int64]
    track_id: npt.NDArray[np.int64]
    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    ended_frame: npt.NDArray[np.int64]  # per ended id: the frame that reports it
    ended_id: npt.NDArray[np.int64]
    id_owner: dict[int, int]  # track id → person id (-1: false positive)
    is_staff_obs: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))

    def timestamp_s(self, frame_index: int) -> float:
        return self.start_epoch_s + frame_index / self.fps

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[Tracks]:
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        lo = np.searchsorted(self.frame, np.arange(start, stop), side="left")
        hi = np.searchsorted(self.frame, np.arange(start, stop), side="right")
        elo = np.searchsorted(self.ended_frame, np.arange(start, stop), side="left")
        ehi = np.searchsorted(self.ended_frame, np.arange(start, stop), side="right")
        for k, f in enumerate(range(start, stop)):
            a, b = int(lo[k]), int(hi[k])
            yield Tracks(
                self.camera_id,
                f,
                self.timestamp_s(f),
                self.frame_size_px,
                self.xyxy[a:b],
                self.confidence[a:b],
                self.track_id[a:b],
                tuple(int(i) for i in self.ended_id[int(elo[k]):int(ehi[k])]),
            )

    def __iter__(self) -> Iterator[Tracks]:
        return self.frames()

    def __len__(self) -> int:
        return self.n_frames


@dataclass
class _Samples:
    """Per-observation columns collected before projection into the image."""

    frames: list[npt.NDArray[np.int64]] = field(default_factory=list)
    ids: list[npt.NDArray[np.int64]] = field(default_factory=list)
    xs: list[F64Array] = field(default_factory=list)
    ys: list[F64Array] = field(default_factory=list)
    confs: list[npt.NDArray[np.float32]] = field(default_factory=list)
    staff: list[npt.NDArray[np.bool_]] = field(default_factory=list)

    def add(self, fi: npt.NDArray[np.int64], tid: npt.NDArray[np.int64], x: F64Array, y: F64Array, conf: float,
            staff: bool) -> None:
        self.frames.append(fi)
        self.ids.append(tid)
        self.xs.append(x)
        self.ys.append(y)
        self.confs.append(np.full(fi.shape[0], conf, np.float32))
        self.staff.append(np.full(fi.shape[0], staff, bool))


def _kept_frames(t: F64Array, life_s: float, fps: float, noise: NoiseModel, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Which samples the detector sees: occlusions (non-overlapping gaps) and random misses."""
    keep = np.ones(t.shape[0], dtype=bool)
    if noise.occlusion_per_track_s > 0 and noise.occlusion_max_s > 0:
        n_occ = int(rng.poisson(noise.occlusion_per_track_s * life_s))
        starts = np.sort(rng.uniform(t[0], t[-1], n_occ))
        lengths = rng.uniform(0.0, noise.occlusion_max_s, n_occ)
        busy_until = -math.inf
        for s, ln in zip(starts, lengths, strict=True):
            if s < busy_until + 1.0 / fps:
                continue  # overlapping occlusions would make one gap longer than occlusion_max_s
            keep &= ~((t >= s) & (t < s + ln))
            busy_until = s + ln
    if noise.miss_rate > 0:
        keep &= rng.random(t.shape[0]) >= noise.miss_rate
    return keep


def _sample_person(p: Person, fps: float, n_frames: int, duration_s: float, noise: NoiseModel,
                   rng: np.random.Generator, next_id: int, owner: dict[int, int], out: _Samples) -> int:
    """One person's noisy observations (id switches, occlusions, misses, jitter); the next free id."""
    f0 = max(0, int(math.ceil(p.appear_s * fps - 1e-9)))
    f1 = min(n_frames - 1, int(math.floor(min(p.vanish_s, duration_s) * fps + 1e-9)))
    if f1 < f0:
        return next_id
    fi = np.arange(f0, f1 + 1, dtype=np.int64)
    t = fi / fps
    x = np.interp(t, p.path.t, p.path.x)
    y = np.interp(t, p.path.t, p.path.y)
    life_s = (f1 - f0) / fps
    # id switches: the track continues under a new id after each switch time
    n_sw = int(rng.poisson(noise.id_switch_per_track_s * life_s)) if noise.id_switch_per_track_s > 0 else 0
    seg_ids = [p.pid]
    for _ in range(n_sw):
        seg_ids.append(next_id)
        next_id += 1
    sw_times = np.sort(rng.uniform(t[0], t[-1], n_sw)) if n_sw else np.zeros(0)
    tid = np.asarray(seg_ids, np.int64)[np.searchsorted(sw_times, t, side="right")]
    for i in seg_ids:
        owner[i] = p.pid
    keep = _kept_frames(t, life_s, fps, noise, rng)
    if noise.jitter_m > 0:
        x = x + rng.normal(0.0, noise.jitter_m, t.shape[0])
        y = y + rng.normal(0.0, noise.jitter_m, t.shape[0])
    out.add(fi[keep], tid[keep], x[keep], y[keep], 0.85, p.is_staff)
    return next_id


def _false_positives(fps: float, n_frames: int, duration_s: float, floor_bounds: Rect, noise: NoiseModel,
                     rng: np.random.Generator, next_id: int, owner: dict[int, int], out: _Samples) -> None:
    """Short static blobs anywhere on the floor."""
    if noise.false_positive_per_s <= 0:
        return
    n_fp = int(rng.poisson(noise.false_positive_per_s * duration_s))
    for _ in range(n_fp):
        start = rng.uniform(0.0, duration_s)
        length = rng.uniform(0.2, noise.false_positive_max_s)
        f0 = int(math.ceil(start * fps))
        f1 = min(n_frames - 1, int(math.floor((start + length) * fps)))
        if f1 < f0:
            continue
        fi = np.arange(f0, f1 + 1, dtype=np.int64)
        cx = rng.uniform(floor_bounds.xmin, floor_bounds.xmax)
        cy = rng.uniform(floor_bounds.ymin, floor_bounds.ymax)
        owner[next_id] = -1
        x = cx + rng.normal(0.0, max(noise.jitter_m, 0.05), fi.shape[0])
        y = cy + rng.normal(0.0, max(noise.jitter_m, 0.05), fi.shape[0])
        out.add(fi, np.full(fi.shape[0], next_id, np.int64), x, y, 0.55, False)
        next_id += 1


def _ended(frame: npt.NDArray[np.int64], tid: npt.NDArray[np.int64], n_frames: int, fps: float,
           end_after_s: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(frame, id) of every track end: the tracker drops an id end_after_s after its last detection."""
    if not tid.shape[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    uniq, last_idx = np.unique(tid[::-1], return_index=True)
    last_frame = frame[::-1][last_idx]
    end_f = last_frame + int(math.ceil(end_after_s * fps - 1e-9))
    sel = end_f < n_frames
    o = np.lexsort((uniq[sel], end_f[sel]))
    return end_f[sel][o].astype(np.int64), uniq[sel][o].astype(np.int64)


def build_stream(
    people: Sequence[Person],
    calibration: Calibration,
    *,
    camera_id: str,
    fps: float,
    duration_s: float,
    start_epoch_s: float,
    frame_size_px: tuple[int, int],
    floor_bounds: Rect,
    noise: NoiseModel,
    rng: np.random.Generator,
) -> TrackStream:
    """Sample every person at every frame, apply the noise, project to boxes in the image."""
    n_frames = int(math.floor(duration_s * fps + 1e-9)) + 1
    next_id = max((p.pid for p in people), default=0) + 1
    owner: dict[int, int] = {}
    samples = _Samples()
    for p in people:
        next_id = _sample_person(p, fps, n_frames, duration_s, noise, rng, next_id, owner, samples)
    _false_positives(fps, n_frames, duration_s, floor_bounds, noise, rng, next_id, owner, samples)
    frame = np.concatenate(samples.frames) if samples.frames else np.zeros(0, np.int64)
    tid_all = np.concatenate(samples.ids) if samples.ids else np.zeros(0, np.int64)
    floor = np.stack([np.concatenate(samples.xs), np.concatenate(samples.ys)], axis=1) if samples.xs else np.zeros((0, 2))
    conf = np.concatenate(samples.confs) if samples.confs else np.zeros(0, np.float32)
    staff = np.concatenate(samples.staff) if samples.staff else np.zeros(0, bool)
    # project: foot point = floor_to_image(position); box height from the local floor scale
    foot = calibration.floor_to_image(floor)
    side = calibration.floor_to_image(floor + np.array([0.5, 0.0]))
    px_per_m = np.linalg.norm(side - foot, axis=1) / 0.5
    w_px, h_px = frame_size_px
    ok = np.all(np.isfinite(foot), axis=1) & np.isfinite(px_per_m)
    ok &= (foot[:, 0] >= 0) & (foot[:, 0] < w_px) & (foot[:, 1] >= 0) & (foot[:, 1] < h_px)
    frame, tid_all, foot, px_per_m, conf, staff = frame[ok], tid_all[ok], foot[ok], px_per_m[ok], conf[ok], staff[ok]
    bh = PERSON_HEIGHT_M * HEIGHT_FORESHORTENING * px_per_m
    bw = BOX_ASPECT * bh
    xyxy = np.stack(
        [foot[:, 0] - bw / 2, np.maximum(foot[:, 1] - bh, 0.0), foot[:, 0] + bw / 2, foot[:, 1]], axis=1
    ).astype(np.float32)
    order = np.lexsort((tid_all, frame))
    frame, tid_all, xyxy, conf, staff = frame[order], tid_all[order], xyxy[order], conf[order], staff[order]
    ended_frame, ended_id = _ended(frame, tid_all, n_frames, fps, noise.end_after_s)
    return TrackStream(
        camera_id=camera_id,
        fps=fps,
        start_epoch_s=start_epoch_s,
        n_frames=n_frames,
        frame_size_px=frame_size_px,
        frame=frame.astype(np.int64),
        track_id=tid_all.astype(np.int64),
        xyxy=xyxy,
        confidence=conf.astype(np.float32),
        ended_frame=ended_frame,
        ended_id=ended_id,
        id_owner=owner,
        is_staff_obs=staff,
    )


def _store_config(
    *,
    store_id: str,
    camera_id: str,
    fps: float,
    frame_size_px: tuple[int, int],
    pairs: tuple[list[tuple[float, float]], list[tuple[float, float]]],
    zones: list[dict[str, Any]],
    data_dir: str | FsPath | None,
    analytics: dict[str, Any] | None = None,
) -> StoreConfig:
    """The YAML an installer would write for this scene, parsed by the real config loader."""
    img, flo = pairs
    doc: dict[str, Any] = {
        "version": 1,
        "store": {"id": store_id, "name": "Simulated store"},
        "cameras": [
            {
                "id": camera_id,
                "source": f"simulated-{camera_id}.mp4",
                "fps": fps,
                "calibration": {
                    "image_points_px": [list(p) for p in img],
                    "floor_points_m": [list(p) for p in flo],
                    "reference_size_px": list(frame_size_px),
                },
                "zones": zones,
            }
        ],
        "staff": {"methods": ["staff_only_zone"]},
        "mqtt": {"enabled": False},
        "data_dir": str(data_dir if data_dir is not None else FsPath(tempfile.gettempdir()) / "storesense-sim"),
    }
    if analytics:
        doc["analytics"] = analytics
    return parse_config(yaml.safe_dump(doc, sort_keys=False), f"<simulated {store_id}>")


def _rect_zone(zone_id: str, kind: str, rect: Rect, **extra: Any) -> dict[str, Any]:
    z: dict[str, Any] = {"id": zone_id, "kind": kind, "units": "m", "polygon": [list(p) for p in rect.polygon]}
    z.update({k: v for k, v in extra.items() if v is not None})
    return z


def _service_sampler(mean_s: float, cv: float, rng: np.random.Generator) -> float:
    """Gamma with the given mean and coefficient of variation (cv = 1: exponential; 0: constant)."""
    if cv <= 0:
        return mean_s
    shape = 1.0 / (cv * cv)
    return float(rng.gamma(shape, mean_s / shape))


# ---------------------------------------------------------------------------------------------
# checkout queues


@dataclass(frozen=True)
class QueueScenario:
    """Knobs of a checkout simulation. ``rho`` = λ · mean_service_s / tills sets the arrival rate."""

    tills: int = 2
    rho: float = 0.8
    mean_service_s: float = 60.0
    service_cv: float = 0.6
    duration_s: float = 3600.0
    fps: float = 5.0
    patience_mean_s: float | None = 900.0  # exponential patience from joining; None: nobody gives up
    max_queue: int = 16  # slots per lane; a customer who finds every lane full walks away (balks)
    walk_speed_mps: float = 1.0
    noise: NoiseModel = NOISE_FREE
    seed: int = 0
    start_epoch_s: float = 1_700_000_000.0
    enter_after_s: float = 1.0  # zone hysteresis written into the generated config
    leave_after_s: float = 2.0
    default_service_time_s: float | None = None  # analytics prior; None: the product default
    frame_size_px: tuple[int, int] = DEFAULT_FRAME_SIZE_PX
    camera_id: str = "sim-cam"
    store_id: str = "sim-store"

    def __post_init__(self) -> None:
        if not 1 <= self.tills <= 12:
            raise ValueError(f"tills must be 1..12, got {self.tills}")
        if not 0.0 < self.rho < 1.5:
            raise ValueError(f"rho (utilisation) must be in (0, 1.5), got {self.rho}")
        if not self.mean_service_s > 0 or not self.duration_s > 0 or not self.fps > 0:
            raise ValueError("mean_service_s, duration_s and fps must be > 0")
        if not 2 <= self.max_queue <= 40:
            raise ValueError(f"max_queue must be 2..40 slots, got {self.max_queue}")
        if self.service_cv < 0:
            raise ValueError("service_cv must be >= 0")

    @property
    def arrival_rate_per_s(self) -> float:
        return self.rho * self.tills / self.mean_service_s

    # geometry
    @property
    def service_y_m(self) -> float:
        return ENTRY_Y_M + 1.0 + SLOT_SPACING_M * (self.max_queue - 1) + HEAD_TO_TILL_M

    @property
    def floor_size_m(self) -> tuple[float, float]:
        width = FIRST_LANE_X_M + LANE_SPACING_M * (self.tills - 1) + 2.0
        return width, self.service_y_m + EXIT_BEYOND_TILL_M + 0.3

    def lane_x_m(self, k: int) -> float:
        return FIRST_LANE_X_M + LANE_SPACING_M * k

    def slot_y_m(self, i: int) -> float:
        return self.service_y_m - HEAD_TO_TILL_M - SLOT_SPACING_M * i

    def lane_id(self, k: int) -> str:
        return f"lane-{k + 1}"

    def queue_rect(self, k: int) -> Rect:
        x = self.lane_x_m(k)
        return Rect(x - LANE_HALF_WIDTH_M, self.slot_y_m(self.max_queue - 1) - 0.4, x + LANE_HALF_WIDTH_M,
                    self.service_y_m - 0.5)

    def service_rect(self, k: int) -> Rect:
        x = self.lane_x_m(k)
        return Rect(x - LANE_HALF_WIDTH_M, self.service_y_m - 0.5, x + LANE_HALF_WIDTH_M, self.service_y_m + 0.6)

    def cashier_rect(self, k: int) -> Rect:
        x = self.lane_x_m(k) + CASHIER_OFFSET_M
        return Rect(x - 0.35, self.service_y_m - 0.7, x + 0.4, self.service_y_m + 0.7)


@dataclass(frozen=True)
class CustomerTruth:
    """What really happened to one checkout customer (times in seconds since the simulation start;
    add ``start_epoch_s`` for the ``Tracks`` clock).

    ``join_s``: foot point first inside the queue zone (None: never joined, e.g. gave up while
    walking up). ``service_start_s``: first inside the service zone. ``true_wait_s`` =
    service_start_s - join_s for served customers, None otherwise. ``queue_exit_s``: when an
    abandoning customer stepped out of the queue zone. ``ahead_at_join`` / ``server_busy_at_join``:
    the true queue in front of them when they joined (for the oracle predictor).
    """

    customer_id: int
    lane: str
    arrive_s: float
    join_s: float | None
    service_start_s: float | None
    service_begin_s: float | None  # reached the till (service time runs from here)
    service_end_s: float | None
    leave_s: float
    true_wait_s: float | None
    abandoned: bool
    queue_exit_s: float | None
    ahead_at_join: int = 0
    server_busy_at_join: bool = False


@dataclass
class QueueSimulation:
    """A simulated checkout: its config, calibration, track stream and per-customer truth."""

    scenario: QueueScenario
    config: StoreConfig
    calibration: Calibration
    people: list[Person]
    customers: list[CustomerTruth]
    stream: TrackStream
    balked: int
    service_times_s: list[float]

    def frames(self) -> Iterator[Tracks]:
        return self.stream.frames()

    def epoch(self, t_s: float) -> float:
        return self.scenario.start_epoch_s + t_s

    def true_queue_length(self, lane: str, t_s: float | npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Customers of ``lane`` strictly inside its queue zone and not yet at the till at ``t_s``."""
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        count = np.zeros(t.shape[0], np.int64)
        for c in self.customers:
            if c.lane != lane or c.join_s is None:
                continue
            end = c.service_start_s if c.service_start_s is not None else c.queue_exit_s
            end = math.inf if end is None else end
            count += ((t > c.join_s) & (t < end)).astype(np.int64)
        return count

    def expected_queue_length(self, lane: str, frame_index: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """What a correct implementation of the documented membership rule must report at these
        frames: a customer counts from the frame at which they have been inside for
        ``enter_after_s`` and stops counting at their first frame inside the service zone, or,
        when they walk out of the queue, ``leave_after_s`` after their last frame inside."""
        sc = self.scenario
        fps = sc.fps
        f = np.atleast_1d(np.asarray(frame_index, dtype=np.int64))
        t = f / fps
        count = np.zeros(f.shape[0], np.int64)
        for c in self.customers:
            if c.lane != lane or c.join_s is None:
                continue
            first_in = math.floor(c.join_s * fps + 1e-9) + 1  # first frame strictly after the crossing
            member_from = first_in / fps + sc.enter_after_s - 1e-9
            if c.service_start_s is not None:
                svc_f = math.floor(c.service_start_s * fps + 1e-9) + 1
                until = svc_f / fps - 1e-9
                # never a member if they reach the till before the membership is confirmed
                counted = (t >= member_from) & (t < until)
            elif c.queue_exit_s is not None:
                last_in = math.ceil(c.queue_exit_s * fps - 1e-9) - 1
                counted = (t >= member_from) & (t - last_in / fps <= sc.leave_after_s + 1e-9)
            else:
                counted = t >= member_from
            count += counted.astype(np.int64)
        return count


@dataclass
class _Customer:
    """A simulated shopper's plan at the checkout (the truth comes from its final path)."""

    person: Person
    lane: int
    arrive_s: float
    slot: int = -1
    step_in_s: float = math.inf  # when the current plan reaches the aisle point beside the slot
    dispatched: bool = False
    abandoned: bool = False
    service_begin_s: float | None = None
    service_end_s: float | None = None


class _Checkout:
    """The event-driven checkout of :func:`simulate_queue`: arrivals choose the shortest lane,
    queue in slots, are served FIFO, and may lose patience. Paths are planned on the floor."""

    def __init__(self, sc: QueueScenario, rng: np.random.Generator) -> None:
        self.sc = sc
        self.rng = rng
        self.people: list[Person] = []
        # cashiers first: ids 1..tills, in view the whole time
        for k in range(sc.tills):
            path = FloorPath(0.0, sc.lane_x_m(k) + CASHIER_OFFSET_M, sc.service_y_m)
            path.hold(sc.duration_s)
            self.people.append(Person(k + 1, "cashier", path, 0.0, sc.duration_s))
        self.fifo: list[list[int]] = [[] for _ in range(sc.tills)]
        self.serving: list[int | None] = [None] * sc.tills
        self.cust: dict[int, _Customer] = {}
        self.events: list[tuple[float, int, str, int]] = []
        self.seq = 0
        self.service_times: list[float] = []
        self.next_pid = sc.tills + 1
        self.balked = 0

    def push(self, t: float, kind: str, arg: int) -> None:
        heapq.heappush(self.events, (t, self.seq, kind, arg))
        self.seq += 1

    def replan(self, k: int, t: float) -> None:
        sc, v = self.sc, self.sc.walk_speed_mps
        xk = sc.lane_x_m(k)
        gap = xk - AISLE_OFFSET_M
        for i, pid in enumerate(self.fifo[k]):
            c = self.cust[pid]
            if c.slot == i:
                continue
            c.slot = i
            y = sc.slot_y_m(i)
            if t < c.step_in_s:
                arr = c.person.path.go(t, [(gap, y), (xk, y)], v)
                c.step_in_s = arr[0]
            else:
                c.person.path.go(t, [(xk, y)], v)

    def dispatch(self, k: int, t: float) -> None:
        sc = self.sc
        if self.serving[k] is not None or not self.fifo[k]:
            return
        pid = self.fifo[k].pop(0)
        c = self.cust[pid]
        xk = sc.lane_x_m(k)
        head_y = sc.slot_y_m(0)
        if t < c.step_in_s:
            pts = [(xk - AISLE_OFFSET_M, head_y), (xk, head_y), (xk, sc.service_y_m)]
        else:
            pts = [(xk, sc.service_y_m)]
        arr = c.person.path.go(t, pts, sc.walk_speed_mps)
        if t < c.step_in_s:
            c.step_in_s = arr[0]
        c.dispatched = True
        c.service_begin_s = arr[-1]
        s = _service_sampler(sc.mean_service_s, sc.service_cv, self.rng)
        self.service_times.append(s)
        c.service_end_s = arr[-1] + s
        self.serving[k] = pid
        self.push(c.service_end_s, "done", k)
        self.replan(k, t)

    def arrival(self, t: float) -> None:
        sc, rng = self.sc, self.rng
        self.push(t + float(rng.exponential(1.0 / sc.arrival_rate_per_s)), "arrival", 0)
        loads = [len(self.fifo[k]) + (self.serving[k] is not None) for k in range(sc.tills)]
        open_lanes = [k for k in range(sc.tills) if len(self.fifo[k]) < sc.max_queue]
        if not open_lanes:
            self.balked += 1
            return
        best = min(loads[k] for k in open_lanes)
        choices = [k for k in open_lanes if loads[k] == best]
        k = choices[int(rng.integers(len(choices)))]
        pid = self.next_pid
        self.next_pid += 1
        person = Person(pid, "customer", FloorPath(t, sc.lane_x_m(k) - AISLE_OFFSET_M, ENTRY_Y_M), t)
        self.people.append(person)
        self.cust[pid] = _Customer(person, k, t)
        self.fifo[k].append(pid)
        if sc.patience_mean_s is not None:
            self.push(t + float(rng.exponential(sc.patience_mean_s)), "patience", pid)
        self.replan(k, t)
        self.dispatch(k, t)

    def done(self, t: float, k: int) -> None:
        pid_s = self.serving[k]
        assert pid_s is not None
        c = self.cust[pid_s]
        xk = self.sc.lane_x_m(k)
        arr = c.person.path.go(t, [(xk, self.sc.service_y_m + EXIT_BEYOND_TILL_M)], self.sc.walk_speed_mps)
        c.person.vanish_s = arr[-1]
        self.serving[k] = None
        self.dispatch(k, t)

    def patience(self, t: float, pid: int) -> None:
        c = self.cust[pid]
        k = c.lane
        if c.dispatched or pid not in self.fifo[k]:
            return
        self.fifo[k].remove(pid)
        c.abandoned = True
        gap = self.sc.lane_x_m(k) - AISLE_OFFSET_M
        x, y = c.person.path.pos(t)
        pts = [(gap, ENTRY_Y_M)] if t < c.step_in_s and abs(x - gap) < 1e-9 else [(gap, y), (gap, ENTRY_Y_M)]
        if t < c.step_in_s:
            c.step_in_s = math.inf
        arr = c.person.path.go(t, pts, self.sc.walk_speed_mps)
        c.person.vanish_s = arr[-1]
        self.replan(k, t)

    def run(self) -> None:
        self.push(float(self.rng.exponential(1.0 / self.sc.arrival_rate_per_s)), "arrival", 0)
        while self.events:
            t, _, kind, arg = heapq.heappop(self.events)
            if t > self.sc.duration_s:
                break
            if kind == "arrival":
                self.arrival(t)
            elif kind == "done":
                self.done(t, arg)
            elif kind == "patience":
                self.patience(t, arg)


def simulate_queue(scenario: QueueScenario, *, data_dir: str | FsPath | None = None) -> QueueSimulation:
    """Run the checkout simulation (see the module docstring) and return config, tracks and truth."""
    sc = scenario
    rng = np.random.default_rng([sc.seed, 0])
    noise_rng = np.random.default_rng([sc.seed, 1])
    width_m, depth_m = sc.floor_size_m
    pairs = calibration_pairs(width_m, depth_m, sc.frame_size_px)
    calibration = Calibration.from_pairs(pairs[0], pairs[1], reference_size_px=sc.frame_size_px, source="simulator")
    checkout = _Checkout(sc, rng)
    checkout.run()
    truths = _with_queue_found(_customer_truths(sc, checkout.cust))
    analytics = None
    if sc.default_service_time_s is not None:
        analytics = {"queue": {"default_service_time_s": sc.default_service_time_s}}
    cfg = _store_config(store_id=sc.store_id, camera_id=sc.camera_id, fps=sc.fps, frame_size_px=sc.frame_size_px,
                        pairs=pairs, zones=_checkout_zones(sc), data_dir=data_dir, analytics=analytics)
    stream = build_stream(
        checkout.people, calibration, camera_id=sc.camera_id, fps=sc.fps, duration_s=sc.duration_s,
        start_epoch_s=sc.start_epoch_s, frame_size_px=sc.frame_size_px,
        floor_bounds=Rect(0.2, 0.2, width_m - 0.2, depth_m - 0.2), noise=sc.noise, rng=noise_rng,
    )
    return QueueSimulation(sc, cfg, calibration, checkout.people, truths, stream, checkout.balked,
                           checkout.service_times)


def _customer_truths(sc: QueueScenario, cust: dict[int, _Customer]) -> list[CustomerTruth]:
    """Truth from the final paths: when each customer joined, reached the till, left."""
    end = sc.duration_s
    truths: list[CustomerTruth] = []
    for pid, c in cust.items():
        p = c.person
        vanish = min(p.vanish_s, end)
        p.vanish_s = p.vanish_s if math.isfinite(p.vanish_s) else end
        until = min(p.vanish_s, end)
        q, s = sc.queue_rect(c.lane), sc.service_rect(c.lane)
        join = first_entry_s(p.path, q, p.appear_s, until)
        svc = first_entry_s(p.path, s, p.appear_s, until) if join is not None else None
        qexit = first_exit_s(p.path, q, join, until) if (join is not None and c.abandoned) else None
        truths.append(
            CustomerTruth(
                customer_id=pid,
                lane=sc.lane_id(c.lane),
                arrive_s=c.arrive_s,
                join_s=join,
                service_start_s=svc,
                service_begin_s=c.service_begin_s if c.service_begin_s is not None and c.service_begin_s <= end else None,
                service_end_s=c.service_end_s if c.service_end_s is not None and c.service_end_s <= end else None,
                leave_s=vanish,
                true_wait_s=(svc - join) if (svc is not None and join is not None) else None,
                abandoned=c.abandoned,
                queue_exit_s=qexit,
            )
        )
    truths.sort(key=lambda ct: ct.customer_id)
    return truths


def _with_queue_found(truths: list[CustomerTruth]) -> list[CustomerTruth]:
    """The true queue each customer found when joining (for the oracle predictor)."""
    by_lane: dict[str, list[CustomerTruth]] = {}
    for ct in truths:
        by_lane.setdefault(ct.lane, []).append(ct)
    final: list[CustomerTruth] = []
    for ct in truths:
        if ct.join_s is None:
            final.append(ct)
            continue
        ahead = 0
        busy = False
        for o in by_lane[ct.lane]:
            if o is ct or o.join_s is None:
                continue
            o_end = o.service_start_s if o.service_start_s is not None else (o.queue_exit_s or math.inf)
            if o.join_s < ct.join_s < o_end:
                ahead += 1
            if o.service_start_s is not None and o.service_start_s <= ct.join_s and (
                o.service_end_s is None or ct.join_s < o.service_end_s
            ):
                busy = True
        final.append(_replace_truth(ct, ahead, busy))
    return final


def _checkout_zones(sc: QueueScenario) -> list[dict[str, Any]]:
    zones: list[dict[str, Any]] = []
    for k in range(sc.tills):
        lid = sc.lane_id(k)
        hyst = {"enter_after_s": sc.enter_after_s, "leave_after_s": sc.leave_after_s}
        zones.append(_rect_zone(f"{lid}-queue", "queue", sc.queue_rect(k), lane=lid, label=f"Lane {k + 1}",
                                service_zone=f"{lid}-till", **hyst))
        zones.append(_rect_zone(f"{lid}-till", "service", sc.service_rect(k), lane=lid, **hyst))
        zones.append(_rect_zone(f"{lid}-cashier", "staff_only", sc.cashier_rect(k)))
    return zones


def _replace_truth(c: CustomerTruth, ahead: int, busy: bool) -> CustomerTruth:
    from dataclasses import replace

    return replace(c, ahead_at_join=ahead, server_busy_at_join=busy)


# ---------------------------------------------------------------------------------------------
# entrance greetings


@dataclass(frozen=True)
class EntranceScenario:
    """Knobs of an entrance simulation: customers walk in, greeters (staff) come to greet them.

    Each entering customer gets a *planned* outcome: with ``p_never`` nobody comes, with
    ``p_late`` a greeter arrives after the SLA (U(sla+2, sla+12) s), otherwise within it (U(3,
    sla-1) s). A greeter only goes if one is free, so a busy entrance produces extra misses.
    ``staff_contacts_per_hour`` times an hour, a stock clerk walks from the back room into the
    entrance zone and talks to a free greeter there: staff-to-staff contact that must never count.
    The truth (:class:`GreetingTruth`) is computed from the paths, not from the plan.
    """

    duration_s: float = 1800.0
    fps: float = 5.0
    customers_per_min: float = 1.5
    greeters: int = 2
    sla_s: float = 10.0
    greet_radius_m: float = 1.5
    p_never: float = 0.15
    p_late: float = 0.15
    staff_contacts_per_hour: float = 12.0
    walk_speed_mps: float = 1.0
    noise: NoiseModel = NOISE_FREE
    seed: int = 0
    start_epoch_s: float = 1_700_000_000.0
    enter_after_s: float = 1.0
    leave_after_s: float = 2.0
    frame_size_px: tuple[int, int] = DEFAULT_FRAME_SIZE_PX
    camera_id: str = "sim-door"
    store_id: str = "sim-store"

    def __post_init__(self) -> None:
        if not self.duration_s > 0 or not self.fps > 0 or not self.customers_per_min > 0:
            raise ValueError("duration_s, fps and customers_per_min must be > 0")
        if not 0 <= self.greeters <= 6:
            raise ValueError(f"greeters must be 0..6, got {self.greeters}")
        if not (0 <= self.p_never <= 1 and 0 <= self.p_late <= 1 and self.p_never + self.p_late <= 1):
            raise ValueError("p_never and p_late must be probabilities with p_never + p_late <= 1")
        if not self.sla_s >= 5.0:
            raise ValueError("sla_s must be at least 5 s")

    # geometry (metres): floor 10 x 8, door at the near edge
    floor_size_m: tuple[float, float] = (10.0, 8.0)
    entrance: Rect = Rect(3.0, 0.5, 7.0, 3.0)
    counter: Rect = Rect(7.9, 1.0, 9.6, 3.0)  # staff_only: greeters wait here
    backroom: Rect = Rect(0.3, 6.3, 1.7, 7.7)  # staff_only: stock clerks come from here


@dataclass(frozen=True)
class GreetingTruth:
    """What really happened to one entering customer (seconds since the simulation start).

    ``entered_s``: foot point first inside the entrance zone. ``latency_s``: first moment any
    staff member was within ``greet_radius_m`` while the customer was in the zone (None: never).
    ``outcome``: ``greeted`` if that latency is within the SLA, else ``missed``. ``planned``: what
    the scenario intended (``on_time`` | ``late`` | ``never`` | ``no_greeter_free``).
    """

    customer_id: int
    entered_s: float
    zone_exit_s: float
    latency_s: float | None
    outcome: Literal["greeted", "missed"]
    planned: str
    planned_latency_s: float | None


@dataclass
class EntranceSimulation:
    scenario: EntranceScenario
    config: StoreConfig
    calibration: Calibration
    people: list[Person]
    greetings: list[GreetingTruth]
    stream: TrackStream
    staff_contacts: int  # staff-to-staff meetings inside the entrance zone

    def frames(self) -> Iterator[Tracks]:
        return self.stream.frames()

    def staff_track_ids(self) -> set[int]:
        staff = {p.pid for p in self.people if p.is_staff}
        return {tid for tid, pid in self.stream.id_owner.items() if pid in staff}


class _Entrance:
    """The entrance scene of :func:`simulate_entrance`: customers walk in and linger, greeters at the
    counter walk over (on time, late or never, as planned), clerks come out of the back room."""

    def __init__(self, sc: EntranceScenario, rng: np.random.Generator) -> None:
        self.sc = sc
        self.rng = rng
        self.home = [(8.75, 1.4 + 1.2 * g / max(1, sc.greeters - 1)) if sc.greeters > 1 else (8.75, 2.0)
                     for g in range(sc.greeters)]
        self.people: list[Person] = []
        self.greeters: list[Person] = []
        self.free_at: list[float] = []
        for g in range(sc.greeters):
            p = Person(g + 1, "greeter", FloorPath(0.0, *self.home[g]), 0.0, sc.duration_s)
            self.greeters.append(p)
            self.people.append(p)
            self.free_at.append(3.0)  # first they stand at the counter long enough to be known as staff
        self.next_pid = sc.greeters + 1
        self.customers: list[tuple[Person, str, float | None]] = []
        self.contacts = 0

    def jobs(self) -> list[tuple[float, str]]:
        """Arrival times of customers and staff contacts, in time order."""
        sc, rng = self.sc, self.rng
        jobs: list[tuple[float, str]] = []
        t = 0.0
        rate = sc.customers_per_min / 60.0
        while True:
            t += float(rng.exponential(1.0 / rate))
            if t > sc.duration_s - 5.0:
                break
            jobs.append((t, "customer"))
        if sc.staff_contacts_per_hour > 0:
            t = 0.0
            while True:
                t += float(rng.exponential(3600.0 / sc.staff_contacts_per_hour))
                if t > sc.duration_s - 30.0:
                    break
                jobs.append((t, "contact"))
        jobs.sort()
        return jobs

    def take_greeter(self, t_dep: float) -> int | None:
        free = [g for g in range(self.sc.greeters) if self.free_at[g] <= t_dep]
        if not free:
            return None
        return min(free, key=lambda g: self.free_at[g])

    def _greet(self, gi: int, t0: float, spot: tuple[float, float], greet_at: float) -> float:
        """Greeter ``gi`` walks to the customer at ``spot``, talks and walks back; when the talk ends."""
        sc, v = self.sc, self.sc.walk_speed_mps
        gp = self.greeters[gi]
        hx, hy = self.home[gi]
        d = math.hypot(hx - spot[0], hy - spot[1])
        ux, uy = (hx - spot[0]) / d, (hy - spot[1]) / d
        meet = (spot[0] + 0.8 * ux, spot[1] + 0.8 * uy)
        t_dep = max(t0, self.free_at[gi], greet_at - (d - sc.greet_radius_m) / v)
        gp.path.hold(t_dep)
        arr = gp.path.go(t_dep, [meet], v)[0]
        talk = float(self.rng.uniform(3.0, 8.0))
        gp.path.hold(arr + talk)
        back = gp.path.go(arr + talk, [self.home[gi]], v)[0]
        self.free_at[gi] = back + 1.0
        return arr + talk

    def customer(self, t0: float) -> None:
        sc, rng, v = self.sc, self.rng, self.sc.walk_speed_mps
        door = (float(rng.uniform(4.2, 5.8)), 0.15)
        spot = (float(rng.uniform(3.7, 6.3)), float(rng.uniform(1.3, 2.6)))
        path = FloorPath(t0, *door)
        arrive_spot = path.go(t0, [spot], v)[0]
        entered = first_entry_s(path, sc.entrance, t0, arrive_spot + 1.0)
        assert entered is not None
        u = float(rng.random())
        plan = "never" if u < sc.p_never else ("late" if u < sc.p_never + sc.p_late else "on_time")
        planned_latency: float | None = None
        linger = float(rng.uniform(5.0, 20.0))
        stay_until = max(arrive_spot, entered + linger)
        if plan != "never":
            planned_latency = (float(rng.uniform(sc.sla_s + 2.0, sc.sla_s + 12.0)) if plan == "late"
                               else float(rng.uniform(3.0, sc.sla_s - 1.0)))
            gi = self.take_greeter(t0)
            if gi is None:
                plan = "no_greeter_free"
            else:
                stay_until = max(stay_until, self._greet(gi, t0, spot, entered + planned_latency))
        path.hold(stay_until)
        out = (float(rng.uniform(2.5, 7.5)), sc.floor_size_m[1] - 0.2)
        gone = path.go(stay_until, [out], v)[-1]
        p = Person(self.next_pid, "customer", path, t0, gone)
        self.next_pid += 1
        self.people.append(p)
        self.customers.append((p, plan, planned_latency))

    def contact(self, t0: float) -> None:
        """A clerk from the back room talks with a greeter in the shop (staff meeting staff)."""
        rng, v = self.rng, self.sc.walk_speed_mps
        gi = self.take_greeter(t0 + 3.0)
        if gi is None:
            return
        gp = self.greeters[gi]
        meet = (float(rng.uniform(3.6, 6.4)), float(rng.uniform(1.2, 2.6)))
        start = (float(rng.uniform(0.6, 1.4)), float(rng.uniform(6.6, 7.4)))
        clerk = FloorPath(t0, *start)
        clerk.hold(t0 + 3.0)  # long enough in the back room to be known as staff
        arrive = clerk.go(t0 + 3.0, [(meet[0] - 0.4, meet[1])], v)[0]
        hx, hy = self.home[gi]
        d_g = math.hypot(hx - meet[0] - 0.4, hy - meet[1])
        t_dep = max(t0 + 3.0, self.free_at[gi], arrive - d_g / v)
        gp.path.hold(t_dep)
        g_arr = gp.path.go(t_dep, [(meet[0] + 0.4, meet[1])], v)[0]
        talk_end = max(arrive, g_arr) + float(rng.uniform(5.0, 15.0))
        clerk.hold(talk_end)
        gone = clerk.go(talk_end, [start], v)[-1]
        gp.path.hold(talk_end)
        back = gp.path.go(talk_end, [self.home[gi]], v)[0]
        self.free_at[gi] = back + 1.0
        self.people.append(Person(self.next_pid, "staff", clerk, t0, gone))
        self.next_pid += 1
        self.contacts += 1

    def run(self) -> None:
        for t0, kind in self.jobs():
            if kind == "customer":
                self.customer(t0)
            else:
                self.contact(t0)
        for gp in self.greeters:
            gp.path.hold(self.sc.duration_s)

    def truths(self) -> list[GreetingTruth]:
        """Greeting truth from the final paths: the first staff member within the greet radius."""
        sc = self.sc
        staff = [p for p in self.people if p.is_staff]
        truths: list[GreetingTruth] = []
        for p, plan, planned_latency in self.customers:
            until = min(p.vanish_s, sc.duration_s)
            entered = first_entry_s(p.path, sc.entrance, p.appear_s, until)
            if entered is None:
                continue
            exit_s = first_exit_s(p.path, sc.entrance, entered, until)
            zone_end = exit_s if exit_s is not None else until
            firsts = [first_within_s(p.path, s.path, sc.greet_radius_m, max(entered, s.appear_s),
                                     min(zone_end, s.vanish_s)) for s in staff]
            hits = [f for f in firsts if f is not None]
            latency = (min(hits) - entered) if hits else None
            outcome: Literal["greeted", "missed"] = "greeted" if latency is not None and latency <= sc.sla_s else "missed"
            truths.append(GreetingTruth(p.pid, entered, zone_end, latency, outcome, plan, planned_latency))
        return truths


def simulate_entrance(scenario: EntranceScenario, *, data_dir: str | FsPath | None = None) -> EntranceSimulation:
    """Run the entrance/greeting simulation and return config, tracks and truth."""
    sc = scenario
    rng = np.random.default_rng([sc.seed, 10])
    noise_rng = np.random.default_rng([sc.seed, 11])
    width_m, depth_m = sc.floor_size_m
    pairs = calibration_pairs(width_m, depth_m, sc.frame_size_px)
    calibration = Calibration.from_pairs(pairs[0], pairs[1], reference_size_px=sc.frame_size_px, source="simulator")
    scene = _Entrance(sc, rng)
    scene.run()
    zones = [
        _rect_zone("entrance", "entrance", sc.entrance, label="Entrance", greet_radius_m=sc.greet_radius_m,
                   response_sla_s=sc.sla_s, enter_after_s=sc.enter_after_s, leave_after_s=sc.leave_after_s),
        _rect_zone("greeter-counter", "staff_only", sc.counter),
        _rect_zone("back-room", "staff_only", sc.backroom),
    ]
    cfg = _store_config(store_id=sc.store_id, camera_id=sc.camera_id, fps=sc.fps, frame_size_px=sc.frame_size_px,
                        pairs=pairs, zones=zones, data_dir=data_dir)
    stream = build_stream(
        scene.people, calibration, camera_id=sc.camera_id, fps=sc.fps, duration_s=sc.duration_s,
        start_epoch_s=sc.start_epoch_s, frame_size_px=sc.frame_size_px,
        floor_bounds=Rect(0.2, 0.2, width_m - 0.2, depth_m - 0.2), noise=sc.noise, rng=noise_rng,
    )
    return EntranceSimulation(sc, cfg, calibration, scene.people, scene.truths(), stream, scene.contacts)


# ---------------------------------------------------------------------------------------------
# replay through the analytics and compare with the truth


@dataclass
class Replay:
    """Everything the analytics said about a simulation, plus per-frame lane queue lengths."""

    messages: list[Any]
    queue_length: dict[str, npt.NDArray[np.int64]]  # lane → value after each frame
    wall_s: float = 0.0

    def payloads(self, kind: str, entity_id: str | None = None) -> list[dict[str, Any]]:
        """Payloads of one message kind (and entity: lane/zone/camera id, or event type)."""
        return [m.payload for m in self.messages if m.kind == kind and entity_id in (None, m.entity_id)]

    def lane_states(self, lane: str) -> list[dict[str, Any]]:
        return self.payloads("lane_state", lane)


def replay(sim: QueueSimulation | EntranceSimulation, *, analytics: Any | None = None) -> Replay:
    """Feed every simulated frame to a fresh ``StoreAnalytics`` (or the one given), record all messages
    and, after every frame, each lane's queue length."""
    import time

    from zones.analytics import StoreAnalytics

    an = analytics if analytics is not None else StoreAnalytics(sim.config)
    lanes = list(getattr(an, "lanes", {}))
    lengths = {lane: np.zeros(sim.stream.n_frames, np.int64) for lane in lanes}
    out: list[Any] = []
    t0 = time.perf_counter()
    last_ts = sim.stream.start_epoch_s
    for tracks in sim.stream.frames():
        out.extend(an.update(tracks))
        last_ts = tracks.timestamp_s
        for lane in lanes:
            lengths[lane][tracks.frame_index] = int(an.lanes[lane].queue_length)
    out.extend(an.finish(last_ts))
    return Replay(out, lengths, time.perf_counter() - t0)


@dataclass(frozen=True)
class QueueReport:
    """Accuracy of one queue simulation: the numbers docs/validation.md reports."""

    customers_evaluated: int  # served, joined after the warm-up
    mean_true_wait_s: float
    # predicted wait (lane_state.predicted_wait_s in force when the customer joined) vs true wait
    pred_mae_s: float
    pred_rel_mae: float  # pred_mae_s / mean_true_wait_s
    pred_bias_s: float  # mean(predicted - true)
    pred_band_coverage: float  # share of true waits within [low, high] (± band_slack_s)
    # the product's formula with the *true* queue and the true mean service interval
    oracle_mae_s: float
    oracle_rel_mae: float
    # measured waits (events/queue_wait) vs true waits, per customer matched through track ids
    measured_matched: int
    measured_missing: int  # served customers without a served queue_wait event
    measured_missing_short: int  # ... of which the true wait was below enter_after_s + 2 frames
    measured_extra: int  # served events that belong to nobody or to a customer twice
    measured_mae_s: float
    measured_median_abs_err_s: float
    measured_max_abs_err_s: float
    measured_mean_s: float | None  # mean of all served events' wait_s
    # queue length per frame vs the documented membership rule and vs the geometric truth
    queue_length_frames: int
    queue_length_exact_share: float  # analytics == expected_queue_length
    queue_length_mae: float  # vs expected_queue_length
    queue_length_geometric_mae: float  # vs true_queue_length (no hysteresis)


def _predictions_at_join(sim: QueueSimulation, rep: Replay, served: list[CustomerTruth]) -> tuple[F64Array, F64Array, F64Array]:
    """The predicted wait (and its band) in force at each customer's join time."""
    sc = sim.scenario
    preds, lows, highs = [], [], []
    states: dict[str, tuple[F64Array, list[dict[str, Any]]]] = {}
    for k in range(sc.tills):
        lane = sc.lane_id(k)
        st = rep.lane_states(lane)
        states[lane] = (np.array([s["timestamp_s"] for s in st], dtype=np.float64), st)
    for c in served:
        assert c.join_s is not None
        ts, st = states[c.lane]
        i = int(np.searchsorted(ts, sc.start_epoch_s + c.join_s, side="right")) - 1
        s = st[i] if i >= 0 else None
        p = s.get("predicted_wait_s") if s is not None else None
        preds.append(float(p) if p is not None else 0.0)
        lows.append(float(s.get("predicted_wait_low_s") or 0.0) if s is not None else 0.0)
        highs.append(float(s.get("predicted_wait_high_s") or 0.0) if s is not None else 0.0)
    return np.array(preds), np.array(lows), np.array(highs)


def _measured_waits(
    sim: QueueSimulation, rep: Replay, served: list[CustomerTruth]
) -> tuple[list[dict[str, Any]], list[float], int, int, int]:
    """(served events, measured - true wait per matched customer, missing, missing short, extra)."""
    sc = sim.scenario
    owner = sim.stream.id_owner
    events = [e for e in rep.payloads("event", "queue_wait") if e.get("outcome") == "served"]
    by_person: dict[int, list[dict[str, Any]]] = {}
    extra = 0
    for e in events:
        pid = owner.get(int(e["track_id"]), -1)
        if pid < 0:
            extra += 1
            continue
        by_person.setdefault(pid, []).append(e)
    errs: list[float] = []
    missing, missing_short = 0, 0
    for c in served:
        evs = by_person.get(c.customer_id, [])
        if not evs:
            missing += 1
            if c.true_wait_s is not None and c.true_wait_s < sc.enter_after_s + 2.0 / sc.fps:
                missing_short += 1
            continue
        extra += len(evs) - 1
        errs.append(float(evs[0]["wait_s"]) - float(c.true_wait_s or 0.0))
    return events, errs, missing, missing_short, extra


def _queue_length_errors(sim: QueueSimulation, rep: Replay, warmup_s: float) -> tuple[int, float, float, int]:
    """Queue length per frame after the warm-up: (exact frames, abs error sum, abs error sum against
    the geometric truth, frames)."""
    sc = sim.scenario
    frames = np.arange(int(math.ceil(warmup_s * sc.fps)), sim.stream.n_frames)
    exact, qmae, gmae, n = 0, 0.0, 0.0, 0
    for k in range(sc.tills):
        lane = sc.lane_id(k)
        got = rep.queue_length[lane][frames]
        want = sim.expected_queue_length(lane, frames)
        geo = sim.true_queue_length(lane, frames / sc.fps)
        exact += int(np.sum(got == want))
        qmae += float(np.sum(np.abs(got - want)))
        gmae += float(np.sum(np.abs(got - geo)))
        n += frames.shape[0]
    return exact, qmae, gmae, n


def evaluate_queue(
    sim: QueueSimulation, rep: Replay, *, warmup_s: float = 300.0, band_slack_s: float = 2.0
) -> QueueReport:
    """Compare a replay with the truth. Customers who join during ``warmup_s`` are left out (the
    service-rate estimate starts from its prior). A true wait within ``band_slack_s`` of the
    predicted band counts as covered: someone who walks straight to a free till "waits" the second
    it takes to cross the queue zone while the band says 0."""
    sc = sim.scenario
    served = [c for c in sim.customers if c.true_wait_s is not None and c.join_s is not None and c.join_s >= warmup_s]
    true_w = np.array([c.true_wait_s for c in served], dtype=np.float64)
    mean_w = float(true_w.mean()) if true_w.size else float("nan")

    pred, low, high = _predictions_at_join(sim, rep, served)
    err = pred - true_w
    cover = (low - band_slack_s <= true_w) & (true_w <= high + band_slack_s)
    service_interval_s = sc.mean_service_s + HEAD_TO_TILL_M / sc.walk_speed_mps
    oracle = np.array([(c.ahead_at_join + (0.5 if c.server_busy_at_join else 0.0)) * service_interval_s for c in served])
    oerr = oracle - true_w
    events, errs, missing, missing_short, extra = _measured_waits(sim, rep, served)
    aerr = np.abs(np.array(errs)) if errs else np.zeros(0)
    exact, qmae, gmae, n = _queue_length_errors(sim, rep, warmup_s)
    all_waits = [float(e["wait_s"]) for e in events]
    return QueueReport(
        customers_evaluated=len(served),
        mean_true_wait_s=mean_w,
        pred_mae_s=float(np.mean(np.abs(err))) if err.size else float("nan"),
        pred_rel_mae=float(np.mean(np.abs(err)) / mean_w) if err.size else float("nan"),
        pred_bias_s=float(np.mean(err)) if err.size else float("nan"),
        pred_band_coverage=float(np.mean(cover)) if cover.size else float("nan"),
        oracle_mae_s=float(np.mean(np.abs(oerr))) if oerr.size else float("nan"),
        oracle_rel_mae=float(np.mean(np.abs(oerr)) / mean_w) if oerr.size else float("nan"),
        measured_matched=len(errs),
        measured_missing=missing,
        measured_missing_short=missing_short,
        measured_extra=extra,
        measured_mae_s=float(aerr.mean()) if aerr.size else float("nan"),
        measured_median_abs_err_s=float(np.median(aerr)) if aerr.size else float("nan"),
        measured_max_abs_err_s=float(aerr.max()) if aerr.size else float("nan"),
        measured_mean_s=float(np.mean(all_waits)) if all_waits else None,
        queue_length_frames=n,
        queue_length_exact_share=exact / n if n else float("nan"),
        queue_length_mae=qmae / n if n else float("nan"),
        queue_length_geometric_mae=gmae / n if n else float("nan"),
    )


@dataclass(frozen=True)
class GreetingReport:
    customers: int
    true_greeted: int  # within the SLA
    true_missed: int
    outcome_agreement: float  # share of customers whose first event has the true outcome
    no_event: int  # customers without any greeting event
    both_greeted: int  # true and measured greeted: latency compared on these
    latency_median_abs_err_s: float
    latency_p90_abs_err_s: float
    latency_max_abs_err_s: float
    false_greeted: int  # truth missed, measured greeted
    false_missed: int  # truth greeted, measured missed
    staff_events: int  # events whose track belongs to a staff member: must be 0
    false_positive_events: int  # events on false-positive tracks
    duplicate_events: int  # more than one event for a customer (e.g. after an id switch)
    staff_contacts: int
    compliance_true_pct: float
    compliance_measured_pct: float
    entries_true: int  # customers who walked in (footfall truth)
    entries_measured: int  # entry events
    entry_false_positives: int  # entry events matching no true entry within 1.5 s


def evaluate_greeting(sim: EntranceSimulation, rep: Replay) -> GreetingReport:
    sc = sim.scenario
    epoch = sc.start_epoch_s
    owner = sim.stream.id_owner
    staff_pids = {p.pid for p in sim.people if p.is_staff}
    events = rep.payloads("event", "greeting")
    by_person: dict[int, list[dict[str, Any]]] = {}
    staff_events = fp_events = 0
    for e in events:
        pid = owner.get(int(e["track_id"]), -1)
        if pid < 0:
            fp_events += 1
        elif pid in staff_pids:
            staff_events += 1
        else:
            by_person.setdefault(pid, []).append(e)
    agree = no_event = both = false_g = false_m = dup = 0
    lat_err: list[float] = []
    truth_ok = 0
    # customers whose outcome is not decided before the end of the run have no event yet
    judged = [g for g in sim.greetings if g.entered_s + sc.sla_s + sc.leave_after_s + 1.0 < sc.duration_s]
    for g in judged:
        truth_ok += g.outcome == "greeted"
        evs = sorted(by_person.get(g.customer_id, []), key=lambda e: float(e["started_s"]))
        if not evs:
            no_event += 1
            continue
        dup += len(evs) - 1
        e = evs[0]
        if e["outcome"] == g.outcome:
            agree += 1
        if e["outcome"] == "greeted" and g.outcome == "greeted":
            both += 1
            assert g.latency_s is not None
            # the event's clock starts at its own started_s; compare greeting *instants* to the truth's
            measured_at = float(e["started_s"]) + float(e["latency_s"]) - epoch
            lat_err.append(abs((measured_at - g.entered_s) - g.latency_s))
        elif e["outcome"] == "greeted":
            false_g += 1
        elif g.outcome == "greeted":
            false_m += 1
    n = len(judged)
    # entry events carry no track id: match each to an unclaimed true entry within 1.5 s
    entries = rep.payloads("event", "entry")
    unclaimed = sorted(g.entered_s for g in sim.greetings)
    entry_fp = 0
    for e in sorted(entries, key=lambda e: float(e["entered_s"])):
        t = float(e["entered_s"]) - epoch
        near = [i for i, x in enumerate(unclaimed) if abs(x - t) <= 1.5]
        if near:
            del unclaimed[min(near, key=lambda i: abs(unclaimed[i] - t))]
        else:
            entry_fp += 1
    le = np.array(lat_err) if lat_err else np.array([np.nan])
    firsts = [min(by_person[g.customer_id], key=lambda e: float(e["started_s"])) for g in judged
              if by_person.get(g.customer_id)]
    measured_ok = sum(1 for e in firsts if e["outcome"] == "greeted" and e.get("within_sla"))
    measured_n = len(firsts)
    return GreetingReport(
        customers=n,
        true_greeted=truth_ok,
        true_missed=n - truth_ok,
        outcome_agreement=agree / n if n else float("nan"),
        no_event=no_event,
        both_greeted=both,
        latency_median_abs_err_s=float(np.median(le)),
        latency_p90_abs_err_s=float(np.percentile(le, 90)),
        latency_max_abs_err_s=float(np.max(le)),
        false_greeted=false_g,
        false_missed=false_m,
        staff_events=staff_events,
        false_positive_events=fp_events,
        duplicate_events=dup,
        staff_contacts=sim.staff_contacts,
        compliance_true_pct=100.0 * truth_ok / n if n else float("nan"),
        compliance_measured_pct=100.0 * measured_ok / measured_n if measured_n else float("nan"),
        entries_true=len(sim.greetings),
        entries_measured=len(entries),
        entry_false_positives=entry_fp,
    )
