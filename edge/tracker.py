"""ByteTrack-family multi-object tracker whose clock is the frame timestamp, not the frame count.

Why our own and not a pip ByteTrack: the packaged ports are unmaintained and count every
lifetime in frames, so a tracker tuned at 15 fps forgets people three times sooner at 5 fps
and mis-predicts motion whenever a live source drops frames. Here every duration is in
seconds and the Kalman filter integrates the real ``dt`` between updates (velocities in px/s,
process noise grown with ``dt``), so one config behaves the same at 5 fps, 15 fps and with
irregular frame spacing.

The algorithm is ByteTrack's (Zhang et al., ECCV 2022):

1. predict every track to the new timestamp;
2. stage 1: confirmed and lost tracks vs *high*-score detections (IoU, Hungarian);
3. stage 2: confirmed tracks still unmatched vs *low*-score detections, with a stricter IoU:
   a partly occluded person whose score collapses keeps their id instead of being lost;
   then (OC-SORT's observation-centric recovery) tracks still unmatched vs the remaining
   high-score detections by IoU with their *last detected box*: constant velocity overshoots
   when someone stops during a gap (arrives at a shelf), the last box does not; then held tracks
   (lost while standing still: the occlusion hold) near where they vanished, and lost walkers inside
   the filter's gate on appearance alone. Given the frame, every re-association after a gap must
   also look like the track (colour histograms, edge/appearance.py), and stage 1 judges a followed
   track in an ambiguous spot (two boxes of similar overlap, or its own box scored low) the same way;
4. stage 3: tentative tracks vs the remaining high-score detections, gated by the Kalman
   uncertainty rather than IoU (no velocity is known yet); an unmatched tentative track dies
   at once (a one-frame false positive never becomes a track);
5. new tentative tracks from high-score detections that nobody claimed (``new_track_threshold``);
6. lost tracks are kept for ``max_lost_s`` and then evicted; confirmed ones are reported in
   :attr:`Tracks.ended_ids` exactly once so downstream per-track state can be dropped too.

Track ids are handed out at confirmation, so the ids that reach analytics are dense
(1, 2, 3, ...), never reused within one tracker (not even after :meth:`ByteTracker.reset`),
and a tentative track that dies never burns an id.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from edge import appearance
from edge.appearance import DetectionLooks
from edge.config import TrackerConfig
from edge.contract import Detections, Tracks
from edge.errors import UserFacingError

F64 = npt.NDArray[np.float64]

# Floating-point slack for comparisons of durations computed from epoch timestamps: at
# 1.7e9 s a float64 resolves ~0.2 µs, so ``t0 + 3/15 - t0`` can come out as 0.19999988.
_TIME_EPS_S = 1e-3
# Cost scale of a forbidden pair in the assignment (see match_by_cost).
_FORBIDDEN = 1e6
# 95% quantile of chi-square with 4 degrees of freedom: the gate for tentative tracks.
_CHI2_95_4DOF = 9.4877
# Smallest box side the filter may predict: keeps IoU and noise (proportional to size) sane.
_MIN_SIDE_PX = 1.0
# Occlusion hold: a track is "nearly stationary" when its head (top-centre of the box) moved less
# than this many (tallest recent) box heights per second over the last _STILL_WINDOW_S of
# observations. The head, not the feet: a counter or a till hides the feet first, and someone walking
# straight away from the camera barely moves their feet in the image. A walker covers about one
# body height per second; someone who has stopped at a shelf is under 0.1 (measured, docs/tracker.md).
_STILL_SPEED_H_PER_S = 0.25
_STILL_WINDOW_S = 1.0
# A track last seen this close to the frame edge (fraction of the frame) left the view: never held.
_BORDER_FRACTION = 0.02
# A held track is re-associated with a detection whose head or feet are within this many box
# heights of where they were last seen (people shift while hidden and reappear partly visible).
_HOLD_RADIUS_H = 0.75
# Observations kept per track for the speed estimate (bounded: flat memory).
_HISTORY = 24
# Stage 1: a followed track is in an ambiguous spot when two detections (any score) overlap its
# prediction by IoU within this of each other (two people side by side, one stepping out from behind
# the other); appearance then helps choose (ByteTracker._resolve_ambiguous).
_AMBIGUOUS_IOU = 0.15
# Re-association after a gap by motion and appearance alone (no box overlap left, stage 2d) needs a
# clearly better look than the gate: this much above tracker.appearance_min_similarity.
_LOOK_ONLY_MARGIN = 0.1


class TrackerInputError(UserFacingError, ValueError):
    """Bad input to the tracker (time going backwards, camera mixed up). A ValueError for
    callers, a UserFacingError so the CLI prints the message without a traceback."""


class TrackState(enum.Enum):
    TENTATIVE = "tentative"  # seen, not yet for confirm_after_s; invisible downstream
    CONFIRMED = "confirmed"  # matched in the previous update
    LOST = "lost"  # confirmed, currently unmatched, kept for max_lost_s


# ---------------------------------------------------------------------------------------------
# Kalman filter


class BoxKalman:
    """Constant-velocity Kalman filter on a box ``(cx, cy, w, h)`` in px, velocities in px/s.

    Process noise is the continuous white-noise-acceleration model: over a gap of ``dt`` the
    velocity variance grows by ``q*dt`` and the position variance by ``q*dt^3/3``, with
    ``q = (accel_std * h)^2``. The uncertainty after one 0.2 s step therefore equals the one
    after three 0.0667 s steps (up to the cross terms), which is what makes 5 and 15 fps
    behave alike. Noise is proportional to the box height (as in SORT/ByteTrack) so near and
    far people are treated alike in relative terms.
    """

    _NDIM = 4

    def __init__(self, accel_std: float, measurement_std: float, initial_velocity_std: float = 1.0) -> None:
        self.accel_std = float(accel_std)
        self.measurement_std = float(measurement_std)
        self.initial_velocity_std = float(initial_velocity_std)
        self._H = np.hstack([np.eye(self._NDIM), np.zeros((self._NDIM, self._NDIM))])

    def initiate(self, box_cxcywh: F64) -> tuple[F64, F64]:
        h = max(float(box_cxcywh[3]), _MIN_SIDE_PX)
        mean = np.concatenate([box_cxcywh.astype(np.float64), np.zeros(self._NDIM)])
        pos_std = 2.0 * self.measurement_std * h
        vel_std = self.initial_velocity_std * h  # px/s: a walker covers about one height per second
        cov = np.diag(np.r_[np.full(self._NDIM, pos_std**2), np.full(self._NDIM, vel_std**2)])
        return mean, cov

    def predict(self, mean: F64, cov: F64, dt_s: float) -> tuple[F64, F64]:
        if dt_s <= 0.0:
            return mean, cov
        n = self._NDIM
        F = np.eye(2 * n)
        F[:n, n:] = np.eye(n) * dt_s
        h = max(float(mean[3]), _MIN_SIDE_PX)
        q = (self.accel_std * h) ** 2
        q_pp, q_pv, q_vv = q * dt_s**3 / 3.0, q * dt_s**2 / 2.0, q * dt_s
        Q = np.block([[np.eye(n) * q_pp, np.eye(n) * q_pv], [np.eye(n) * q_pv, np.eye(n) * q_vv]])
        mean = F @ mean
        mean[2:4] = np.maximum(mean[2:4], _MIN_SIDE_PX)
        cov = F @ cov @ F.T + Q
        return mean, cov

    def gating_distance(self, mean: F64, cov: F64, boxes_cxcywh: F64) -> F64:
        """Squared Mahalanobis distance of (M, 4) measured boxes from the predicted one."""
        h = max(float(mean[3]), _MIN_SIDE_PX)
        S = self._H @ cov @ self._H.T + np.eye(self._NDIM) * (self.measurement_std * h) ** 2
        d = boxes_cxcywh - (self._H @ mean)[None, :]
        return np.einsum("ij,ij->i", d, np.linalg.solve(S, d.T).T)

    def update(self, mean: F64, cov: F64, box_cxcywh: F64) -> tuple[F64, F64]:
        h = max(float(box_cxcywh[3]), _MIN_SIDE_PX)
        R = np.eye(self._NDIM) * (self.measurement_std * h) ** 2
        H = self._H
        S = H @ cov @ H.T + R
        K = np.linalg.solve(S, H @ cov).T  # cov @ H.T @ inv(S); S and cov are symmetric
        innovation = box_cxcywh - H @ mean
        mean = mean + K @ innovation
        cov = cov - K @ S @ K.T
        cov = (cov + cov.T) / 2.0  # keep it symmetric against round-off over a 24/7 run
        return mean, cov


# ---------------------------------------------------------------------------------------------
# geometry and assignment


def xyxy_to_cxcywh(box: npt.ArrayLike) -> F64:
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    return np.array(
        [(x1 + x2) / 2.0, (y1 + y2) / 2.0, max(x2 - x1, _MIN_SIDE_PX), max(y2 - y1, _MIN_SIDE_PX)]
    )


def cxcywh_to_xyxy(state: F64) -> F64:
    cx, cy, w, h = (float(v) for v in state[:4])
    return np.array([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0])


def iou_matrix(a_xyxy: F64, b_xyxy: F64) -> F64:
    """Pairwise IoU of (N,4) and (M,4) boxes -> (N,M)."""
    if a_xyxy.shape[0] == 0 or b_xyxy.shape[0] == 0:
        return np.zeros((a_xyxy.shape[0], b_xyxy.shape[0]))
    a = a_xyxy[:, None, :]
    b = b_xyxy[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0.0, inter / np.maximum(union, 1e-9), 0.0)


def _at_border(box_xyxy: F64, frame_size_px: tuple[int, int]) -> bool:
    """The box touches the frame edge: its owner is leaving (or entering) the view, not hidden."""
    w, h = frame_size_px
    mx, my = _BORDER_FRACTION * w, _BORDER_FRACTION * h
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return x1 <= mx or y1 <= my or x2 >= w - mx or y2 >= h - my


def match_by_cost(cost: F64, max_cost: float) -> list[tuple[int, int]]:
    """Hungarian assignment minimising total cost; pairs above ``max_cost`` are never matched."""
    return match_allowed(cost, cost <= max_cost)


def match_allowed(cost: F64, allowed: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Hungarian assignment minimising total cost over the ``allowed`` pairs only."""
    if cost.size == 0:
        return []
    # forbidden pairs cost more than any sum of allowed ones: the solver first maximises the
    # number of allowed pairs and only then minimises their cost
    forbidden = _FORBIDDEN * (1.0 + float(np.max(np.abs(cost), initial=0.0)))
    rows, cols = linear_sum_assignment(np.where(allowed, cost, forbidden))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


def match_by_iou(iou: F64, min_iou: float) -> list[tuple[int, int]]:
    """Hungarian assignment maximising IoU; pairs below ``min_iou`` are never matched."""
    return match_by_cost(1.0 - iou, 1.0 - min_iou)


# ---------------------------------------------------------------------------------------------
# tracker


@dataclass(slots=True)
class _Track:
    key: int  # internal, for tentative tracks too
    track_id: int  # public id, 0 until confirmed
    state: TrackState
    mean: F64
    cov: F64
    birth_s: float
    last_seen_s: float
    det_xyxy: F64  # the box of the detection matched last
    det_score: float
    held: bool = False  # lost while nearly stationary: kept occlusion_hold_s, reported in held_ids
    det_j: int = -1  # index of the matched detection in the current frame
    # colour histograms of the upper/lower body (edge/appearance.py), sampled at a low rate; kept
    # on the track so they are dropped with it
    look: npt.NDArray[np.float32] | None = None
    look_at_s: float = -math.inf
    # (timestamp_s, centre x, top y, bottom y) of the last matched boxes, px
    history: deque[tuple[float, float, float, float]] = field(default_factory=lambda: deque(maxlen=_HISTORY))

    def predicted_xyxy(self) -> F64:
        return cxcywh_to_xyxy(self.mean)

    def observe(self, timestamp_s: float) -> None:
        x1, y1, x2, y2 = (float(v) for v in self.det_xyxy)
        self.history.append((timestamp_s, (x1 + x2) / 2.0, y1, y2))

    def tallest_px(self) -> float:
        return max(max(o[3] - o[2] for o in self.history), _MIN_SIDE_PX)

    def is_still(self) -> bool:
        """Head moved less than _STILL_SPEED_H_PER_S over the last _STILL_WINDOW_S of observations."""
        if len(self.history) < 2:
            return False
        t_last, x_last, top_last, _ = self.history[-1]
        recent = [o for o in self.history if t_last - o[0] <= _STILL_WINDOW_S + _TIME_EPS_S]
        t0, x0, top0, _ = recent[0]
        if t_last - t0 < 0.3:
            return False  # too short to tell
        return math.hypot(x_last - x0, top_last - top0) / (t_last - t0) / self.tallest_px() < _STILL_SPEED_H_PER_S


class ByteTracker:
    """One tracker per camera. See the module docstring and docs/tracker.md for the knobs.

    ``update`` returns the confirmed tracks matched in this frame, with the *detection* box
    (not the Kalman-smoothed one): downstream foot points, zone membership and the MOT export
    then line up with what the detector saw, and a track never "coasts" into a zone on
    prediction alone. The filter is used for association only.
    """

    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        # unset score thresholds: ByteTrack's (the app resolves them from the model registry first)
        self.cfg = (cfg if cfg is not None else TrackerConfig()).with_model_scores(0.5, 0.6, 0.1)
        assert self.cfg.high_score_threshold is not None and self.cfg.low_score_threshold is not None
        assert self.cfg.new_track_threshold is not None
        self._high, self._low, self._new = (
            self.cfg.high_score_threshold, self.cfg.low_score_threshold, self.cfg.new_track_threshold
        )
        self.kalman = BoxKalman(self.cfg.kalman_accel_std, self.cfg.kalman_measurement_std)
        self._next_id = 1
        self._next_key = 1
        self._tracks: list[_Track] = []
        self._last_timestamp_s: float | None = None
        self._camera_id: str | None = None
        self._looks = DetectionLooks(None, np.zeros((0, 4)))
        self._prefer_low: dict[int, int] = {}

    # -- public state ---------------------------------------------------------------------------

    @property
    def active_track_count(self) -> int:
        """All state held: tentative + confirmed + lost. Bounded by the people in view plus
        those lost less than ``max_lost_s`` ago; a test holds it flat over 10,000 frames."""
        return len(self._tracks)

    def state_counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in TrackState}
        for t in self._tracks:
            counts[t.state.value] += 1
        return counts

    def reset(self) -> None:
        """Forget every track and the clock (new source, or a jump in time). Ids keep counting
        up, so an id seen before the reset is never given to someone else after it. Tracks
        dropped here are not reported in ``ended_ids``: call it when downstream resets too."""
        self._tracks = []
        self._last_timestamp_s = None
        self._camera_id = None

    # -- the one verb ---------------------------------------------------------------------------

    def update(
        self,
        detections: Detections,
        *,
        camera_id: str,
        frame_index: int,
        timestamp_s: float,
        frame_size_px: tuple[int, int],
        image: npt.NDArray[Any] | None = None,
    ) -> Tracks:
        """``image``: the decoded frame (BGR), for the appearance cue of re-association after a gap
        (edge/appearance.py); without it association is by position alone."""
        cfg = self.cfg
        dt_s = self._advance_clock(camera_id, frame_index, timestamp_s)
        ended_ids = self._expire_lost(timestamp_s)

        self._predict(dt_s)
        boxes = detections.xyxy.astype(np.float64)
        scores = detections.confidence.astype(np.float64)
        self._looks = DetectionLooks(image if cfg.appearance_min_similarity > 0 else None, boxes)
        high_idx = np.flatnonzero(scores >= self._high)
        low_idx = np.flatnonzero((scores >= self._low) & (scores < self._high))

        matched: list[_Track] = []

        # stage 1: confirmed + lost tracks vs high-score detections
        pool = [t for t in self._tracks if t.state in (TrackState.CONFIRMED, TrackState.LOST)]
        self._prefer_low = {}
        pool_left, high_left = self._associate(
            pool, high_idx, boxes, scores, cfg.match_iou_threshold, timestamp_s, matched, own_low=low_idx
        )
        if self._prefer_low:
            pool_left, low_idx = self._take_preferred_low(pool_left, low_idx, boxes, scores, timestamp_s, matched)

        # stage 2: tracks that were being followed (not the already-lost ones) vs low-score detections
        followed = [t for t in pool_left if t.state is TrackState.CONFIRMED]
        followed_left, _ = self._associate(
            followed, low_idx, boxes, scores, cfg.low_match_iou_threshold, timestamp_s, matched
        )
        for t in followed_left:
            t.state = TrackState.LOST
            t.held = cfg.occlusion_hold_s > 0 and t.is_still() and not _at_border(t.det_xyxy, frame_size_px)

        # stage 2b, OC-SORT's observation-centric recovery: whoever is still unmatched vs the
        # remaining high-score detections, by IoU with the track's *last detected box*. Constant
        # velocity overshoots exactly when people stop (arriving at a shelf or a till), and
        # most of all across a gap, where the old speed is extrapolated for the whole gap.
        matched_keys = {t.key for t in matched}
        stray = [t for t in pool if t.key not in matched_keys]
        stray_left, high_left = self._associate(
            stray, high_left, boxes, scores, cfg.match_iou_threshold, timestamp_s, matched, "last"
        )
        # stage 2c, occlusion hold: a track lost while standing still, back near where it vanished
        # (often only partly visible at first, so IoU with its old box can be low)
        held = [t for t in stray_left if t.held and t.state is TrackState.LOST]
        high_left = self._reassociate_held(held, high_left, boxes, scores, timestamp_s, matched)
        # stage 2d: lost tracks vs what is left, inside the filter's gate (it grows with the gap) and only
        # on a clear appearance match: someone who walked behind a post and came out off the predicted line
        lost = [t for t in stray_left if t.state is TrackState.LOST and not t.held and t.look is not None]
        _, high_left = self._associate(lost, high_left, boxes, scores, None, timestamp_s, matched, "look")

        # stage 3: tentative tracks vs the high-score detections nobody claimed. A tentative
        # track has one or a few observations and no trustworthy velocity, so IoU against its
        # prediction would drop anyone crossing more than ~1/3 of their width per frame (a brisk
        # walker at 5 fps). Gate with the filter's own uncertainty instead: it grows with dt.
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]
        tentative_left, high_left = self._associate(
            tentative, high_left, boxes, scores, None, timestamp_s, matched, "gate"
        )
        dead = {t.key for t in tentative_left}  # a tentative track gets no second chance
        if dead:
            self._tracks = [t for t in self._tracks if t.key not in dead]

        self._births_and_confirmations(high_left, boxes, scores, timestamp_s, matched)
        out = sorted((t for t in matched if t.state is TrackState.CONFIRMED), key=lambda t: t.track_id)
        self._sample_looks(out, boxes, scores, timestamp_s, frame_size_px)
        self._looks = DetectionLooks(None, boxes)  # the frame is not kept past this update
        held_ids = sorted(t.track_id for t in self._tracks if t.state is TrackState.LOST and t.held)
        return Tracks(
            camera_id,
            frame_index,
            timestamp_s,
            frame_size_px,
            np.array([t.det_xyxy for t in out], dtype=np.float32).reshape(-1, 4),
            np.array([t.det_score for t in out], dtype=np.float32),
            np.array([t.track_id for t in out], dtype=np.int64),
            ended_ids=tuple(ended_ids),
            held_ids=tuple(held_ids),
        )

    # -- steps ------------------------------------------------------------------------------------

    def _predict(self, dt_s: float) -> None:
        for t in self._tracks:
            if t.state is TrackState.LOST:
                # as in ByteTrack: a lost box keeps its size, only its position extrapolates;
                # a held one (lost while standing still) stays where it was
                t.mean[6:8] = 0.0
                if t.held:
                    t.mean[4:6] = 0.0
            t.mean, t.cov = self.kalman.predict(t.mean, t.cov, dt_s)

    def _births_and_confirmations(
        self, high_left: npt.NDArray[np.intp], boxes: F64, scores: F64, timestamp_s: float, matched: list[_Track]
    ) -> None:
        """New tentative tracks from the high-score detections nobody claimed; tentative tracks
        matched for confirm_after_s get their public id (ids are never reused)."""
        cfg = self.cfg
        for j in high_left:
            if scores[j] >= self._new:
                t = self._new_track(boxes[j], float(scores[j]), timestamp_s)
                t.det_j = int(j)
                self._tracks.append(t)
                matched.append(t)
        for t in matched:
            if (
                t.state is TrackState.TENTATIVE
                and timestamp_s - t.birth_s >= cfg.confirm_after_s - _TIME_EPS_S
            ):
                t.state = TrackState.CONFIRMED
                t.track_id = self._next_id
                self._next_id += 1

    def _advance_clock(self, camera_id: str, frame_index: int, timestamp_s: float) -> float:
        if not math.isfinite(timestamp_s):
            raise TrackerInputError(
                f"tracker (camera {camera_id}): timestamp_s must be finite, got {timestamp_s!r}"
            )
        if self._camera_id is not None and camera_id != self._camera_id:
            raise TrackerInputError(
                f"tracker of camera {self._camera_id!r} received a frame of camera {camera_id!r}: "
                "use one ByteTracker per camera (or reset() it when the source changes)"
            )
        last = self._last_timestamp_s
        if last is not None and timestamp_s < last:
            raise TrackerInputError(
                f"tracker (camera {camera_id}): timestamp went backwards at frame {frame_index}: "
                f"{timestamp_s:.3f} s after {last:.3f} s ({timestamp_s - last:+.3f} s). Frame timestamps "
                "must not decrease; call reset() if the source restarted its clock"
            )
        self._camera_id = camera_id
        self._last_timestamp_s = timestamp_s
        return 0.0 if last is None else timestamp_s - last

    def _expire_lost(self, timestamp_s: float) -> list[int]:
        """Evict lost tracks whose gap already exceeds ``max_lost_s`` *before* matching, so a
        person back after a longer gap gets a new id whatever the frame spacing."""
        limit_s = self.cfg.max_lost_s + _TIME_EPS_S
        hold_s = max(self.cfg.occlusion_hold_s, self.cfg.max_lost_s) + _TIME_EPS_S
        keep: list[_Track] = []
        ended: list[int] = []
        for t in self._tracks:
            if t.state is TrackState.LOST and timestamp_s - t.last_seen_s > (hold_s if t.held else limit_s):
                ended.append(t.track_id)
            else:
                keep.append(t)
        self._tracks = keep
        return sorted(ended)

    def _associate(
        self,
        tracks: list[_Track],
        det_idx: npt.NDArray[np.intp],
        boxes: F64,
        scores: F64,
        min_iou: float | None,
        timestamp_s: float,
        matched: list[_Track],
        anchor: Literal["predicted", "last", "gate", "look"] = "predicted",
        own_low: npt.NDArray[np.intp] | None = None,
    ) -> tuple[list[_Track], npt.NDArray[np.intp]]:
        """Match ``tracks`` to detections ``det_idx`` and update the matched ones.

        ``anchor``: "predicted" = IoU with the Kalman prediction; "last" = IoU with the last
        detected box (the filter is then restarted from the new box: its velocity was wrong);
        "gate" = Mahalanobis distance inside the filter's 95% gate; "look" = inside that gate and
        on appearance alone. A track coming back after a gap (lost, or "last") must also look like
        itself (:meth:`_look_terms`). ``own_low`` (stage 1): low-score detections that a followed track
        may prefer over a high-score one (:meth:`_defer_to_own_low`). Returns the unmatched tracks and
        the unmatched detection indices."""
        if not tracks or det_idx.size == 0:
            return tracks, det_idx
        if anchor in ("gate", "look"):
            meas = np.stack([xyxy_to_cxcywh(b) for b in boxes[det_idx]])
            cost = np.stack([self.kalman.gating_distance(t.mean, t.cov, meas) for t in tracks])
            allowed = cost <= _CHI2_95_4DOF
            cost = cost / _CHI2_95_4DOF
        else:
            assert min_iou is not None
            ref = np.stack([t.det_xyxy if anchor == "last" else t.predicted_xyxy() for t in tracks])
            iou = iou_matrix(ref, boxes[det_idx])
            cost, allowed = 1.0 - iou, iou >= min_iou
            if own_low is not None and self._looks.image is not None:
                self._resolve_ambiguous(tracks, ref, iou, cost, allowed, det_idx, own_low, min_iou)
        if anchor != "gate":
            rows = [i for i, t in enumerate(tracks) if anchor != "predicted" or t.state is TrackState.LOST]
            margin = _LOOK_ONLY_MARGIN if anchor == "look" else 0.0
            look_cost, look_ok = self._look_terms(
                [tracks[i] for i in rows], det_idx, allowed[rows], margin, required=anchor == "look"
            )
            if anchor == "look":
                cost = look_cost + 0.1 * cost  # appearance decides; the nearer one breaks a tie
            else:
                cost[rows] += look_cost
            allowed[rows] &= look_ok
        used_t, used_d = set(), set()
        for ti, di in match_allowed(cost, allowed):
            t, j = tracks[ti], int(det_idx[di])
            z = xyxy_to_cxcywh(boxes[j])
            if anchor in ("last", "look"):
                # restart with the average velocity over the gap: a stopped person gets ~0
                gap_s = max(timestamp_s - t.last_seen_s, 1e-3)
                velocity = (z[:2] - xyxy_to_cxcywh(t.det_xyxy)[:2]) / gap_s
                t.mean, t.cov = self.kalman.initiate(z)
                t.mean[4:6] = velocity
            else:
                t.mean, t.cov = self.kalman.update(t.mean, t.cov, z)
            self._take(t, j, boxes[j], float(scores[j]), timestamp_s, matched)
            used_t.add(ti)
            used_d.add(di)
        left_t = [t for i, t in enumerate(tracks) if i not in used_t]
        left_d = np.array([d for i, d in enumerate(det_idx) if i not in used_d], dtype=np.intp)
        return left_t, left_d

    def _resolve_ambiguous(
        self,
        tracks: list[_Track],
        ref: F64,
        iou: F64,
        cost: F64,
        allowed: npt.NDArray[np.bool_],
        high_idx: npt.NDArray[np.intp],
        low_idx: npt.NDArray[np.intp],
        min_iou: float,
    ) -> None:
        """Stage 1, for a followed track with two candidate detections (any score) of about the same
        overlap, or whose best-overlapping one scored low: add how unlike the track each one looks to
        its cost. When someone steps out from behind the person
        a track follows, the newcomer's box is often the only confident one there while the followed
        person, half hidden, scores just below ``high_score_threshold``: by position alone ByteTrack
        hands the newcomer's box to the track, an identity switch decided by a score change of a few
        hundredths (YOLOv8n int8 vs fp32 on the dev clip). If the track's own box is such a low-score
        one, it is remembered in ``self._prefer_low`` and taken before stage 2. Only ambiguous tracks
        pay for histograms: none in a frame without two people side by side."""
        all_idx = np.concatenate([high_idx, low_idx])
        iou_all = iou_matrix(ref, self._looks.boxes[all_idx]) if all_idx.size else np.zeros((len(tracks), 0))
        for i, t in enumerate(tracks):
            if t.state is not TrackState.CONFIRMED or t.look is None:
                continue
            cand = np.flatnonzero(iou_all[i] >= min_iou)
            if cand.size < 2:
                continue
            n_high = high_idx.size
            top = np.sort(iou_all[i, cand])[::-1]
            if top[0] - top[1] > _AMBIGUOUS_IOU and int(np.argmax(iou_all[i])) < n_high:
                continue  # one clear high-score box: position decides, as in ByteTrack
            look_cost, look_ok = self._look_terms([t], all_idx, (iou_all[i] >= min_iou)[None, :], 0.0)
            total = np.where((iou_all[i] >= min_iou) & look_ok[0], 1.0 - iou_all[i] + look_cost[0], np.inf)
            best = int(np.argmin(total))
            if not np.isfinite(total[best]):
                continue
            cost[i] += look_cost[0, :n_high]
            allowed[i] &= look_ok[0, :n_high]
            if best >= n_high:  # its own box scored low: keep it from every high-score box
                allowed[i] = False
                self._prefer_low[t.key] = int(all_idx[best])

    def _take_preferred_low(
        self,
        tracks: list[_Track],
        low_idx: npt.NDArray[np.intp],
        boxes: F64,
        scores: F64,
        timestamp_s: float,
        matched: list[_Track],
    ) -> tuple[list[_Track], npt.NDArray[np.intp]]:
        """The low-score boxes :meth:`_resolve_ambiguous` chose (each taken once, by its first claimant)."""
        left: list[_Track] = []
        used: set[int] = set()
        for t in tracks:
            j = self._prefer_low.get(t.key)
            if j is None or j in used:
                left.append(t)
                continue
            t.mean, t.cov = self.kalman.update(t.mean, t.cov, xyxy_to_cxcywh(boxes[j]))
            self._take(t, j, boxes[j], float(scores[j]), timestamp_s, matched)
            used.add(j)
        return left, np.array([d for d in low_idx if int(d) not in used], dtype=np.intp)

    def _look_terms(
        self,
        tracks: list[_Track],
        det_idx: npt.NDArray[np.intp],
        candidates: npt.NDArray[np.bool_],
        margin: float,
        *,
        required: bool = False,
    ) -> tuple[F64, Any]:
        """Appearance for re-association after a gap: a cost (1 - similarity) that prefers the candidate
        who looks more like the track, and a gate that refuses one who clearly does not
        (similarity below ``appearance_min_similarity`` + ``margin``). A track with no sample yet, or
        a detection too small to describe, is not judged (cost 0, allowed unless ``required``). Only the
        ``candidates`` pairs (already allowed by position) are looked at: a detection's histogram is made
        only when some track could take it back."""
        cost = np.zeros((len(tracks), det_idx.size))
        ok = np.full((len(tracks), det_idx.size), not required)
        gate = self.cfg.appearance_min_similarity + margin
        if self._looks.image is None:
            return cost, ok
        for i, t in enumerate(tracks):
            if t.look is None:
                continue
            for k in np.flatnonzero(candidates[i]):
                d = self._looks.get(int(det_idx[k]))
                if d is not None:
                    sim = appearance.similarity(t.look, d)
                    cost[i, k], ok[i, k] = 1.0 - sim, sim >= gate
        return cost, ok

    def _sample_looks(
        self, out: list[_Track], boxes: F64, scores: F64, timestamp_s: float, frame_size_px: tuple[int, int]
    ) -> None:
        """Refresh the appearance of confirmed tracks, at most every SAMPLE_EVERY_S, from confident
        detections that no other box overlaps (a crop with two people describes neither)."""
        if self._looks.image is None:
            return
        for t in out:
            if (
                timestamp_s - t.look_at_s < appearance.SAMPLE_EVERY_S - _TIME_EPS_S
                or scores[t.det_j] < self._high
                or _at_border(t.det_xyxy, frame_size_px)
                or not appearance.isolated(boxes, t.det_j)
            ):
                continue
            d = self._looks.get(t.det_j)
            if d is not None:
                t.look = appearance.blend(t.look, d)
                t.look_at_s = timestamp_s

    @staticmethod
    def _take(t: _Track, j: int, box_xyxy: F64, score: float, timestamp_s: float, matched: list[_Track]) -> None:
        t.det_j = j
        t.det_xyxy = box_xyxy.copy()
        t.det_score = score
        t.last_seen_s = timestamp_s
        t.held = False
        t.observe(timestamp_s)
        if t.state is TrackState.LOST:
            t.state = TrackState.CONFIRMED
        matched.append(t)

    def _reassociate_held(
        self,
        held: list[_Track],
        det_idx: npt.NDArray[np.intp],
        boxes: F64,
        scores: F64,
        timestamp_s: float,
        matched: list[_Track],
    ) -> npt.NDArray[np.intp]:
        """Held tracks vs the detections nobody claimed, by the distance of the feet (in box heights of
        the track) inside ``_HOLD_RADIUS_H``; the filter restarts at rest. Returns the unclaimed."""
        if not held or det_idx.size == 0:
            return det_idx
        det = boxes[det_idx]
        cx = (det[:, 0] + det[:, 2]) / 2.0
        cost = np.empty((len(held), det_idx.size))
        for i, t in enumerate(held):
            _, x, top, bottom = t.history[-1]
            head = np.hypot(cx - x, det[:, 1] - top)
            feet = np.hypot(cx - x, det[:, 3] - bottom)
            cost[i] = np.minimum(head, feet) / t.tallest_px()
        allowed = cost <= _HOLD_RADIUS_H
        # nearness in box heights plus (1 - appearance similarity): of two people near the spot, the one
        # who looks like the held track takes it; one who clearly does not never does
        look_cost, look_ok = self._look_terms(held, det_idx, allowed, 0.0)
        used: set[int] = set()
        for ti, di in match_allowed(cost + look_cost, allowed & look_ok):
            t, j = held[ti], int(det_idx[di])
            t.mean, t.cov = self.kalman.initiate(xyxy_to_cxcywh(boxes[j]))
            self._take(t, j, boxes[j], float(scores[j]), timestamp_s, matched)
            used.add(di)
        return np.array([d for i, d in enumerate(det_idx) if i not in used], dtype=np.intp)

    def _new_track(self, box_xyxy: F64, score: float, timestamp_s: float) -> _Track:
        mean, cov = self.kalman.initiate(xyxy_to_cxcywh(box_xyxy))
        key = self._next_key
        self._next_key += 1
        t = _Track(
            key=key,
            track_id=0,
            state=TrackState.TENTATIVE,
            mean=mean,
            cov=cov,
            birth_s=timestamp_s,
            last_seen_s=timestamp_s,
            det_xyxy=box_xyxy.copy(),
            det_score=score,
        )
        t.observe(timestamp_s)
        return t


__all__ = [
    "BoxKalman",
    "ByteTracker",
    "TrackState",
    "TrackerInputError",
    "iou_matrix",
    "match_allowed",
    "match_by_cost",
    "match_by_iou",
]
