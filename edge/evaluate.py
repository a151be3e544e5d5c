"""Accuracy audit: score tracks against MOTChallenge ground truth, and zones against ground-truth visits.

Why a library for the tracking metrics: CLEAR-MOT, IDF1 and HOTA have subtle matching rules
(IDF1's global bipartite match, HOTA's alpha sweep) that every hand-written copy gets slightly
wrong, so figures would not be comparable with published ones. We use TrackEval's metric classes
(the code the MOTChallenge benchmark itself runs; the packaged ``trackeval`` fork supports numpy 2
and needs no torch). py-motmetrics 1.4.0, the other candidate, fails on numpy 2 (``np.asfarray``).

What is ours is what no library knows: the store's zones. Occupancy and dwell are scored by
applying the *same* membership rules (feet anchor, each zone's hysteresis, ``ZoneMembership``) to
the ground-truth tracks and to the predicted ones, so a zone error is the tracker's, not a
difference of definitions.

Ignore rules (unannotated areas): ground-truth boxes whose feet fall in an ignore region or that are
shorter than ``min_height_px`` are dropped, and so is every predicted box that matches one of them
(IoU >= 0.5), or that lies in such an area without matching any kept ground truth. This is
MOTChallenge's "distractor" handling: a correct detection of an unannotated person is neither
rewarded nor punished.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from edge.config import CameraConfig, ModelConfig, StoreConfig, load_config
from edge.contract import Frame, Tracks
from edge.errors import UserFacingError, fps_arg, open_output
from models.registry import ModelChoice

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class EvaluationInputError(UserFacingError, ValueError):
    """A ground-truth/prediction file or an ignore rule that cannot be used; says file and line."""


# ---------------------------------------------------------------------------------------------
# MOTChallenge files


@dataclass
class MotSequence:
    """Boxes per frame. ``frames`` maps the 1-based frame number to (ids, xyxy boxes)."""

    frames: dict[int, tuple[I64, F64]] = field(default_factory=dict)

    def add(self, frame: int, ids: Iterable[int], xyxy: Iterable[Sequence[float]]) -> None:
        ids_a = np.asarray(list(ids), dtype=np.int64)
        boxes = np.asarray(list(xyxy), dtype=np.float64).reshape(-1, 4)
        old = self.frames.get(frame)
        if old is not None:
            ids_a = np.concatenate([old[0], ids_a])
            boxes = np.concatenate([old[1], boxes])
        self.frames[frame] = (ids_a, boxes)

    def get(self, frame: int) -> tuple[I64, F64]:
        return self.frames.get(frame, (np.zeros(0, np.int64), np.zeros((0, 4), np.float64)))

    @property
    def ids(self) -> set[int]:
        return {int(i) for ids, _ in self.frames.values() for i in ids.tolist()}

    @property
    def rows(self) -> int:
        return sum(len(ids) for ids, _ in self.frames.values())


MAX_MOT_FRAME = 10_000_000  # > 4 days at 25 fps; a larger frame number is a typo, not a recording


def read_mot(path: str | Path, *, what: str = "MOT file") -> MotSequence:
    """Read ``frame,id,x,y,w,h[,conf,...]`` rows (frames from 1). GT rows whose 7th column is 0 are
    "do not consider" in MOTChallenge and are skipped. Errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"{what} not found: {p}")
    seq = MotSequence()
    rows: dict[int, tuple[list[int], list[list[float]]]] = {}
    seen: set[tuple[int, int]] = set()
    try:
        text_all = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvaluationInputError(f"{p}: not a UTF-8 text file (byte {exc.start}); expected MOTChallenge rows") from None
    except OSError as exc:
        raise EvaluationInputError(f"{p}: cannot read {what}: {exc.strerror}") from None
    for lineno, line in enumerate(text_all.split("\n"), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = [s.strip() for s in text.split(",")]
        try:
            if len(parts) < 6:
                raise ValueError(f"{len(parts)} fields")
            frame, tid = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            flag = float(parts[6]) if len(parts) > 6 else 1.0
        except (ValueError, OverflowError) as exc:
            raise EvaluationInputError(
                f"{p}:{lineno}: expected 'frame,id,x,y,w,h[,conf,...]' with numbers, found {text[:80]!r} ({exc})"
            ) from None
        if (not 1 <= frame <= MAX_MOT_FRAME or abs(tid) >= 2**62
                or not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0):
            raise EvaluationInputError(
                f"{p}:{lineno}: expected frame 1..{MAX_MOT_FRAME}, an id within ±2^62 and a finite box "
                f"with w, h >= 0, found {text[:80]!r}"
            )
        if (frame, tid) in seen:
            raise EvaluationInputError(f"{p}:{lineno}: id {tid} appears twice in frame {frame}")
        seen.add((frame, tid))
        if flag == 0.0 and what.startswith("ground"):
            continue
        ids, boxes = rows.setdefault(frame, ([], []))
        ids.append(tid)
        boxes.append([x, y, x + w, y + h])
    for frame, (ids, boxes) in rows.items():
        seq.add(frame, ids, boxes)
    return seq


def fill_gaps(rows: dict[int, dict[int, tuple[float, float, float, float]]], frames: Sequence[int],
              held: dict[int, tuple[int, ...]], max_unheld_gap_frames: int) -> dict[int, dict[int, tuple[float, ...]]]:
    """Offline gap filling (recordings only, never live): boxes linearly interpolated at the analysed
    ``frames`` where a track id was missing between two of its rows, i.e. where the tracker lost it
    and re-associated it later. Filled: gaps the tracker held the id through an occlusion, and any
    gap of at most ``max_unheld_gap_frames`` (detector misses); not longer unheld gaps (a track the
    static-scenery stage withheld must not come back). ``rows``: id -> frame -> xyxy.
    Returns the filled rows only, id -> frame -> xyxy."""
    order = {f: k for k, f in enumerate(frames)}
    filled: dict[int, dict[int, tuple[float, ...]]] = {}
    for tid, by_frame in rows.items():
        have = sorted(f for f in by_frame if f in order)
        for a, b in zip(have, have[1:], strict=False):
            missing = frames[order[a] + 1:order[b]]
            if not missing:
                continue
            all_held = all(tid in held.get(f, ()) for f in missing)
            if not all_held and b - a > max_unheld_gap_frames:
                continue
            box_a, box_b = np.asarray(by_frame[a]), np.asarray(by_frame[b])
            for f in missing:
                w = (f - a) / (b - a)
                filled.setdefault(tid, {})[f] = tuple(float(v) for v in (1 - w) * box_a + w * box_b)
    return filled


def sequence_from_tracks(tracks: Iterable[Tracks]) -> MotSequence:
    seq = MotSequence()
    for t in tracks:
        seq.add(t.frame_index + 1, t.track_id.tolist(), t.xyxy.tolist())
    return seq


# ---------------------------------------------------------------------------------------------
# ignore rules


@dataclass(frozen=True)
class IgnoreRules:
    """Where the ground truth has no annotations. ``regions_px``: polygons in pixels of the video."""

    min_height_px: float = 0.0
    regions_px: tuple[tuple[tuple[float, float], ...], ...] = ()

    @classmethod
    def parse_region(cls, text: str) -> tuple[tuple[float, float], ...]:
        """``"x1,y1 x2,y2 x3,y3 ..."`` (pixels) -> polygon."""
        try:
            pts = tuple((float(a), float(b)) for a, b in (p.split(",") for p in text.split()))
        except ValueError:
            raise EvaluationInputError(
                f"--ignore-region {text!r}: expected at least 3 points 'x,y' in pixels separated by spaces, "
                "e.g. '0,0 384,0 384,70 0,70'"
            ) from None
        if len(pts) < 3:
            raise EvaluationInputError(f"--ignore-region {text!r}: a polygon needs at least 3 points, found {len(pts)}")
        if not all(math.isfinite(v) for pt in pts for v in pt):
            raise EvaluationInputError(f"--ignore-region {text!r}: every coordinate must be a finite number of pixels")
        return pts

    def ignored(self, xyxy: F64) -> npt.NDArray[np.bool_]:
        """(N,) mask of boxes in an unannotated area (feet in a region, or too short)."""
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        out = (boxes[:, 3] - boxes[:, 1]) < self.min_height_px
        if self.regions_px and boxes.shape[0]:
            import shapely
            from shapely.geometry import Polygon

            fx, fy = (boxes[:, 0] + boxes[:, 2]) / 2.0, boxes[:, 3]
            for region in self.regions_px:
                out |= np.asarray(shapely.intersects_xy(Polygon(region), fx, fy), dtype=bool)
        return np.asarray(out, dtype=bool)


def iou_pairs(a: F64, b: F64) -> F64:
    """(N, M) IoU of xyxy boxes."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def apply_ignore(gt: MotSequence, pred: MotSequence, frames: Sequence[int], rules: IgnoreRules,
                 iou_threshold: float = 0.5) -> tuple[MotSequence, MotSequence]:
    """Drop unannotated areas from both sides (see the module docstring), frame by frame."""
    gt_out, pred_out = MotSequence(), MotSequence()
    for f in frames:
        g_ids, g_box = gt.get(f)
        p_ids, p_box = pred.get(f)
        g_ign = rules.ignored(g_box)
        drop = rules.ignored(p_box)
        if g_box.shape[0] and p_box.shape[0]:
            iou = iou_pairs(g_box, p_box)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= iou_threshold:
                    # a prediction on an unannotated person goes; one on an annotated person stays
                    drop[c] = bool(g_ign[r])
        gt_out.add(f, g_ids[~g_ign].tolist(), g_box[~g_ign].tolist())
        pred_out.add(f, p_ids[~drop].tolist(), p_box[~drop].tolist())
    return gt_out, pred_out


# ---------------------------------------------------------------------------------------------
# tracking metrics (TrackEval)


def _trackeval_metrics() -> Any:
    try:
        # trackeval prints a notice about optional dataset loaders on import; keep stdout clean (--json -)
        with contextlib.redirect_stdout(io.StringIO()):
            from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError:
        raise UserFacingError(
            "storesense evaluate needs the trackeval package: pip install --no-deps 'trackeval==1.3.0' "
            "(scripts/setup.sh does this; --no-deps because its metadata pulls the GUI build of OpenCV)"
        ) from None
    return CLEAR, HOTA, Identity


def tracking_metrics(gt: MotSequence, pred: MotSequence, frames: Sequence[int]) -> dict[str, float]:
    """MOTA, IDF1, HOTA, ID switches, precision, recall over ``frames`` (both already ignore-filtered)."""
    CLEAR, HOTA, Identity = _trackeval_metrics()
    g_map = {g: k for k, g in enumerate(sorted(gt.ids))}
    p_map = {p: k for k, p in enumerate(sorted(pred.ids))}
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                            "num_gt_ids": len(g_map), "num_tracker_ids": len(p_map), "num_timesteps": len(frames)}
    for f in frames:
        g_ids, g_box = gt.get(f)
        p_ids, p_box = pred.get(f)
        data["gt_ids"].append(np.array([g_map[int(i)] for i in g_ids], dtype=int))
        data["tracker_ids"].append(np.array([p_map[int(i)] for i in p_ids], dtype=int))
        data["similarity_scores"].append(iou_pairs(g_box, p_box))
    data["num_gt_dets"] = sum(len(x) for x in data["gt_ids"])
    data["num_tracker_dets"] = sum(len(x) for x in data["tracker_ids"])
    quiet = {"PRINT_CONFIG": False}
    with contextlib.redirect_stdout(io.StringIO()):
        clear = CLEAR(quiet).eval_sequence(data)
        ident = Identity(quiet).eval_sequence(data)
        hota = HOTA().eval_sequence(data)
    return {
        "MOTA": float(clear["MOTA"]),
        "IDF1": float(ident["IDF1"]),
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "IDs": int(clear["IDSW"]),
        "precision": float(clear["CLR_Pr"]),
        "recall": float(clear["CLR_Re"]),
        "TP": int(clear["CLR_TP"]),
        "FP": int(clear["CLR_FP"]),
        "FN": int(clear["CLR_FN"]),
        "gt_ids": len(g_map),
        "pred_ids": len(p_map),
        "frames": len(frames),
    }


# ---------------------------------------------------------------------------------------------
# zones: occupancy and dwell, with the product's membership rules on both sides


@dataclass(frozen=True)
class Visit:
    zone_id: str
    track_id: int
    start_s: float
    end_s: float

    @property
    def dwell_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class ZoneTimeline:
    """Per zone: members at each scored frame, and the closed visits."""

    occupancy: dict[str, dict[int, int]] = field(default_factory=dict)
    visits: list[Visit] = field(default_factory=list)


class _FloorPoints:
    """Feet in the zones' spaces: normalised image coordinates, and floor metres if calibrated."""

    def __init__(self, cfg: StoreConfig, camera: CameraConfig, frame_size_px: tuple[int, int]) -> None:
        from zones.geometry import ZoneSet

        self.zone_set = ZoneSet(camera.zones)
        self.size = frame_size_px
        self.calibration: Any = None
        if camera.calibration is not None and self.zone_set.needs_floor:
            from calibration.homography import Calibration

            self.calibration = Calibration.from_config(camera.calibration, cfg.resolve_path).for_frame_size(
                frame_size_px
            )

    def inside(self, boxes: F64) -> dict[str, npt.NDArray[np.bool_]]:
        foot = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, boxes[:, 3]], axis=1) if len(boxes) else np.zeros((0, 2))
        norm = foot / np.array(self.size, dtype=np.float64)
        floor = self.calibration.image_to_floor(foot) if self.calibration is not None else None
        return self.zone_set.inside(norm, floor)


def zone_timeline(seq: MotSequence, frames: Sequence[int], fps: float, points: _FloorPoints,
                  camera: CameraConfig, held: dict[int, tuple[int, ...]] | None = None) -> ZoneTimeline:
    """Run ``ZoneMembership`` (each zone's hysteresis) over ``frames`` of ``seq``.

    A track ends (leaves every zone at its last-inside time) after its last frame in ``seq``, as the
    tracker's ``ended_ids`` make it end in the product. ``held``: frame -> ids the tracker holds
    through an occlusion (kept as members without being seen), as analytics receive them."""
    from zones.membership import Hysteresis, ZoneMembership

    membership = ZoneMembership({z.id: Hysteresis(z.enter_after_s, z.leave_after_s) for z in camera.zones})
    last_frame: dict[int, int] = {}
    for f in frames:
        for tid in seq.get(f)[0].tolist():
            last_frame[int(tid)] = f
    out = ZoneTimeline({z.id: {} for z in camera.zones})
    pending_end: set[int] = set()
    for f in frames:
        ts = (f - 1) / fps
        ids, boxes = seq.get(f)
        kwargs: dict[str, Any] = {}
        if held is not None:
            kwargs["held_ids"] = held.get(f, ())
        transitions = membership.update(ts, ids, points.inside(boxes), sorted(pending_end), **kwargs)
        pending_end = {int(t) for t in ids.tolist() if last_frame[int(t)] == f}
        out.visits.extend(_visits(transitions))
        for zid in out.occupancy:
            out.occupancy[zid][f] = len(membership.members(zid))
    end_ts = (frames[-1] - 1) / fps if frames else 0.0
    out.visits.extend(_visits(membership.close_all(end_ts)))
    return out


def _visits(transitions: Iterable[Any]) -> list[Visit]:
    return [Visit(t.zone_id, t.track_id, t.entered_s, t.time_s) for t in transitions if t.kind == "exit"]


def match_visits(gt: Sequence[Visit], pred: Sequence[Visit]) -> list[tuple[Visit, Visit]]:
    """One-to-one match of ground-truth and predicted visits of one zone by temporal IoU (> 0)."""
    if not gt or not pred:
        return []
    iou = np.zeros((len(gt), len(pred)))
    for i, g in enumerate(gt):
        for j, p in enumerate(pred):
            inter = min(g.end_s, p.end_s) - max(g.start_s, p.start_s)
            union = max(g.end_s, p.end_s) - min(g.start_s, p.start_s)
            iou[i, j] = inter / union if inter > 0 and union > 0 else 0.0
    rows, cols = linear_sum_assignment(-iou)
    return [(gt[r], pred[c]) for r, c in zip(rows, cols, strict=True) if iou[r, c] > 0]


def zone_metrics(gt_tl: ZoneTimeline, pred_tl: ZoneTimeline, frames: Sequence[int],
                 min_visit_s: float) -> dict[str, dict[str, Any]]:
    """Per zone: occupancy MAE and bias (persons/frame, at the scored frames); dwell error of the
    ground-truth visits of at least ``min_visit_s``; visit counts (a split visit shows as extra)."""
    out: dict[str, dict[str, Any]] = {}
    for zid, gt_occ in gt_tl.occupancy.items():
        g = np.array([gt_occ.get(f, 0) for f in frames], dtype=np.float64)
        p = np.array([pred_tl.occupancy[zid].get(f, 0) for f in frames], dtype=np.float64)
        gv = [v for v in gt_tl.visits if v.zone_id == zid]
        pv = [v for v in pred_tl.visits if v.zone_id == zid]
        pairs = [(a, b) for a, b in match_visits(gv, pv) if a.dwell_s >= min_visit_s]
        long_gt = [v for v in gv if v.dwell_s >= min_visit_s]
        errors = [abs(b.dwell_s - a.dwell_s) for a, b in pairs]
        out[zid] = {
            "occupancy_mae": float(np.mean(np.abs(p - g))) if len(frames) else 0.0,
            "occupancy_bias": float(np.mean(p - g)) if len(frames) else 0.0,
            "gt_visits": len(gv),
            "pred_visits": len(pv),
            "long_gt_visits": len(long_gt),
            "long_visits_matched": len(pairs),
            "dwell_mae_s": float(np.mean(errors)) if errors else None,
            "dwell_max_err_s": float(np.max(errors)) if errors else None,
        }
    return out


# ---------------------------------------------------------------------------------------------
# running the pipeline and the whole audit


@dataclass(frozen=True)
class DevsetCase:
    """A clip with ground truth, the store config whose zones are scored, and its ignore rules."""

    name: str
    video: Path
    gt: Path
    config: Path
    ignore: IgnoreRules


def devset(name: str = "caviar-corridor") -> DevsetCase:
    """The dev clips in ``../shared/devset`` (``STORESENSE_SHARED``). The far end of the CAVIAR
    corridor (feet above y = 70 px) is not annotated: that band is ignored, as its README says."""
    from edge.resources import shared_dir

    if name != "caviar-corridor":
        raise EvaluationInputError(f"unknown devset {name!r}; known: caviar-corridor")
    base = shared_dir() / "devset" / name
    band = ((0.0, 0.0), (384.0, 0.0), (384.0, 70.0), (0.0, 70.0))
    return DevsetCase(name, base / "video.avi", base / "gt.txt", Path(__file__).parent / "demo" / f"{name}.yaml",
                      IgnoreRules(regions_px=(band,)))


@dataclass
class PipelineRun:
    """What the pipeline produced on a recording: the tracks of every analysed frame."""

    seq: MotSequence
    frames: list[int]  # 1-based numbers of the analysed frames
    held: dict[int, tuple[int, ...]]
    wall_s: float
    errors: int


def run_pipeline(cfg: StoreConfig, camera: CameraConfig, video: Path, *, fps_override: float | None = None,
                 progress: bool = False, on_tracks: Callable[[Tracks, Frame], None] | None = None) -> PipelineRun:
    """The same detector, tracker and stages as ``storesense analyze`` (``Runtime``), without analytics."""
    from edge.runtime import Runtime, build_detector, build_tracker, open_worker
    from edge.sinks import MemorySink

    worker = open_worker(cfg, camera, build_detector(cfg, throughput=True), build_tracker(cfg), fps_override=fps_override,
                         source_override=str(video), start_epoch_s=0.0, setup_reports=False)
    run = PipelineRun(MotSequence(), [], {}, 0.0, 0)
    bar: Any = None
    if progress:
        import sys

        from tqdm import tqdm

        total = getattr(worker.source, "frame_count", 0)
        bar = tqdm(total=total or None, desc=video.name, unit="frame", file=sys.stderr, mininterval=0.5)

    def collect(tracks: Tracks, frame: Frame) -> None:
        f = frame.index + 1
        run.frames.append(f)
        run.seq.add(f, tracks.track_id.tolist(), tracks.xyxy.tolist())
        held = tuple(int(i) for i in getattr(tracks, "held_ids", ()))
        if held:
            run.held[f] = held
        if on_tracks is not None:
            on_tracks(tracks, frame)
        if bar is not None:
            bar.update(f - bar.n)

    runtime = Runtime(cfg, [worker], MemorySink(), None, on_tracks=collect, save_reference_frames=False)
    summary = runtime.run()
    if bar is not None:
        bar.close()
    run.wall_s = summary.wall_s
    run.errors = summary.errors.get(camera.id, 0)
    return run


@dataclass
class EvalReport:
    """Everything ``storesense evaluate`` prints; ``to_dict()`` is the ``--json`` document."""

    video: str
    gt: str
    config: str | None
    camera: str
    model: str | None
    analysis_fps: float | None
    source: str  # "pipeline" or the --pred file
    tracking: dict[str, float]
    zones: dict[str, dict[str, Any]]
    ignore: dict[str, Any]
    min_visit_s: float
    wall_s: float = 0.0
    frames_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def occupancy_mae(self) -> float | None:
        """Mean over zones (persons/frame)."""
        vals = [z["occupancy_mae"] for z in self.zones.values()]
        return float(np.mean(vals)) if vals else None

    @property
    def dwell_mae_s(self) -> float | None:
        """Mean over the matched long visits of every zone."""
        errs = [(z["dwell_mae_s"], z["long_visits_matched"]) for z in self.zones.values() if z["dwell_mae_s"] is not None]
        n = sum(k for _, k in errs)
        return float(sum(e * k for e, k in errs) / n) if n else None


def _video_info(video: Path, fps_override: float | None) -> tuple[float, tuple[int, int], int]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise EvaluationInputError(f"OpenCV cannot open {video} (unsupported or corrupt file)")
        fps = float(fps_override or cap.get(cv2.CAP_PROP_FPS) or 0.0)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if not 0.5 <= fps <= 240.0:
        raise EvaluationInputError(f"{video}: frame rate {fps!r} is not usable; give the real one with --fps")
    return fps, size, count


def _pred_frames(pred: MotSequence, count: int, frame_step: int | None, analysis_fps: float,
                 source_fps: float) -> list[int]:
    """Frames a --pred file was computed on, so that frames it never analysed are not charged as
    misses: every ``frame_step``-th frame if given; else the frames the camera's analysis fps picks
    (the runtime's own FpsGate), when the file has rows on no other frame; else every frame."""
    from edge.pipeline import FpsGate

    last = max(count, max(pred.frames, default=0))
    if frame_step is not None:
        first = min(pred.frames, default=1)
        return list(range((first - 1) % frame_step + 1, last + 1, max(frame_step, 1)))
    gate = FpsGate(analysis_fps)
    picked = [i + 1 for i in range(last) if gate.due(i / source_fps)]
    return picked if set(pred.frames) <= set(picked) else list(range(1, last + 1))


def model_label(model: ModelConfig) -> str:
    """The model a report was made with: name (or file), plus int8 and the width when set, so two
    audits of one family side by side say which is which."""
    base = model.name if model.path is None else model.path
    return f"{base}" + (" int8" if model.precision == "int8" else "") + (
        f" w{model.input_width_px}" if model.input_width_px else "")


def evaluate(
    video: str | Path,
    gt: str | Path,
    *,
    config: str | Path | StoreConfig | None = None,
    camera: str | None = None,
    model: str | None = None,
    pred: str | Path | None = None,
    ignore: IgnoreRules | None = None,
    analysis_fps: float | None = None,
    fps: float | None = None,
    frame_step: int | None = None,
    min_visit_s: float = 5.0,
    progress: bool = False,
    mot_out: str | Path | None = None,
    interpolate: bool = True,
) -> EvalReport:
    """The audit as a function (``storesense bench`` calls it). Runs the pipeline on ``video`` (or
    reads ``pred``), scores it against ``gt`` and the camera's zones. ``model`` overrides
    ``model.name`` of the config; ``config`` may be a loaded ``StoreConfig``. ``interpolate``: the
    tracking metrics score the pipeline's tracks with the offline gap filling of ``analyze --mot``
    (zones are scored on what the analytics saw live)."""
    video_p, ignore = Path(video), ignore or IgnoreRules()
    if not video_p.is_file():
        raise EvaluationInputError(f"video not found: {video_p}")
    cfg = _load_cfg(config, video_p)
    if model is not None:
        choice = ModelChoice.parse(model)
        cfg.model = cfg.model.model_copy(update=choice.update())
    try:
        cam = cfg.camera(camera) if camera else cfg.cameras[0]
    except KeyError as exc:
        raise EvaluationInputError(str(exc.args[0])) from None
    if frame_step is not None and frame_step < 1:
        raise EvaluationInputError(f"--frame-step: expected 1 or more, found {frame_step}")
    if analysis_fps is not None:
        cam = cam.model_copy(update={"fps": analysis_fps})
    src_fps, size, count = _video_info(video_p, fps or cam.source_fps)
    gt_seq = read_mot(gt, what="ground-truth file")
    count = max(count, max(gt_seq.frames, default=0))
    held: dict[int, tuple[int, ...]] = {}
    wall_s = 0.0
    if pred is not None:
        pred_seq = read_mot(pred, what="prediction file")
        frames = _pred_frames(pred_seq, count, frame_step, cam.fps, src_fps)
    else:
        run = run_pipeline(cfg, cam, video_p, fps_override=fps or cam.source_fps, progress=progress)
        pred_seq, frames, held, wall_s = run.seq, run.frames, run.held, run.wall_s
    scored_seq = pred_seq
    if pred is None and interpolate:
        scored_seq = _with_gaps_filled(pred_seq, frames, held, int(round(cfg.tracker.max_lost_s * src_fps)) + 1)
    if mot_out is not None and pred is None:
        _write_mot(scored_seq, mot_out)
    gt_f, pred_f = apply_ignore(gt_seq, pred_seq, frames, ignore)
    _, scored_f = apply_ignore(gt_seq, scored_seq, frames, ignore)
    tracking = tracking_metrics(gt_f, scored_f, frames)
    points = _FloorPoints(cfg, cam, size)
    all_frames = list(range(1, count + 1))
    gt_all, _ = apply_ignore(gt_seq, MotSequence(), all_frames, ignore)
    gt_tl = zone_timeline(gt_all, all_frames, src_fps, points, cam)
    pred_tl = zone_timeline(pred_f, frames, src_fps, points, cam, held=held or None)
    return EvalReport(
        video=str(video_p), gt=str(gt), config=str(cfg.source_path) if cfg.source_path else None, camera=cam.id,
        model=model_label(cfg.model),
        analysis_fps=None if pred is not None else cam.fps, source=str(pred) if pred is not None else "pipeline",
        tracking=tracking, zones=zone_metrics(gt_tl, pred_tl, frames, min_visit_s),
        ignore={"min_height_px": ignore.min_height_px, "regions_px": [list(r) for r in ignore.regions_px]},
        min_visit_s=min_visit_s, wall_s=wall_s, frames_per_s=len(frames) / wall_s if wall_s else 0.0,
    )


def _with_gaps_filled(seq: MotSequence, frames: Sequence[int], held: dict[int, tuple[int, ...]],
                      max_unheld_gap_frames: int) -> MotSequence:
    rows: dict[int, dict[int, tuple[float, float, float, float]]] = {}
    for f, (ids, boxes) in seq.frames.items():
        for tid, box in zip(ids.tolist(), boxes.tolist(), strict=True):
            rows.setdefault(int(tid), {})[f] = tuple(box)
    out = MotSequence({f: (ids.copy(), boxes.copy()) for f, (ids, boxes) in seq.frames.items()})
    for tid, by_frame in fill_gaps(rows, frames, held, max_unheld_gap_frames).items():
        for f, box in by_frame.items():
            out.add(f, [tid], [box])
    return out


def _load_cfg(config: str | Path | StoreConfig | None, video: Path) -> StoreConfig:
    if isinstance(config, StoreConfig):
        return config.model_copy(deep=True)
    if config is not None:
        return load_config(config)
    from edge.commands import default_store_config

    return default_store_config(str(video.resolve()))


def _write_mot(seq: MotSequence, path: str | Path) -> None:
    p = Path(path)
    with open_output(p, "--mot") as fh:
        for f in sorted(seq.frames):
            ids, boxes = seq.frames[f]
            for tid, (x1, y1, x2, y2) in zip(ids.tolist(), boxes.tolist(), strict=True):
                fh.write(f"{f},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1\n")


# ---------------------------------------------------------------------------------------------
# command line


def format_report(rep: EvalReport) -> str:
    t = rep.tracking
    lines = [
        f"{Path(rep.video).name} vs {Path(rep.gt).name}: model {rep.model}, camera {rep.camera}, "
        f"{t['frames']} frames scored ({rep.source}" + (f", {rep.analysis_fps:g} fps" if rep.analysis_fps else "") + ")",
        f"  MOTA {t['MOTA']:.3f}  IDF1 {t['IDF1']:.3f}  HOTA {t['HOTA']:.3f}  ID switches {t['IDs']}  "
        f"precision {t['precision']:.3f}  recall {t['recall']:.3f}",
        f"  TP {t['TP']}  FP {t['FP']}  FN {t['FN']}  ids: {t['gt_ids']} true, {t['pred_ids']} predicted",
    ]
    for zid, z in rep.zones.items():
        dwell = "n/a" if z["dwell_mae_s"] is None else f"{z['dwell_mae_s']:.2f} s (max {z['dwell_max_err_s']:.2f})"
        lines.append(
            f"  zone {zid}: occupancy MAE {z['occupancy_mae']:.3f} (bias {z['occupancy_bias']:+.3f}) person/frame; "
            f"visits {z['pred_visits']} predicted / {z['gt_visits']} true; dwell error, visits >= "
            f"{rep.min_visit_s:g} s: {dwell} over {z['long_visits_matched']}/{z['long_gt_visits']}"
        )
    if rep.wall_s:
        lines.append(f"  pipeline: {rep.wall_s:.1f} s, {rep.frames_per_s:.1f} frames/s")
    return "\n".join(lines)


def cmd_evaluate(args: Any) -> int:
    import json
    import sys

    ignore = IgnoreRules(args.min_height_px, tuple(IgnoreRules.parse_region(r) for r in args.ignore_region or ()))
    video, gt, config = args.video, args.gt, args.config
    if args.devset:
        case = devset(args.devset)
        video, gt = video or case.video, gt or case.gt
        config = config or case.config
        ignore = IgnoreRules(ignore.min_height_px, ignore.regions_px + case.ignore.regions_px)
    if video is None or gt is None:
        raise EvaluationInputError("give VIDEO and --gt GT.txt (or --devset caviar-corridor)")
    reports = []
    for model in args.model or [None]:
        rep = evaluate(video, gt, config=config, camera=args.camera, model=model, pred=args.pred, ignore=ignore,
                       analysis_fps=args.analysis_fps, fps=args.fps, frame_step=args.frame_step,
                       min_visit_s=args.min_visit_s, progress=not args.no_progress and sys.stderr.isatty(),
                       mot_out=args.mot, interpolate=not args.no_interpolate)
        reports.append(rep)
        if args.json != "-":
            print(format_report(rep), flush=True)
    if args.json:
        doc = [r.to_dict() for r in reports]
        text = json.dumps(doc[0] if len(doc) == 1 else doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            try:
                Path(args.json).write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise EvaluationInputError(f"--json {args.json}: cannot write: {exc.strerror}") from None
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="accuracy audit: MOTA/IDF1/HOTA and zone occupancy/dwell against ground truth")
    p.add_argument("video", nargs="?", help="the recording (default with --devset: the dev clip)")
    p.add_argument("--gt", help="MOTChallenge ground truth: frame,id,x,y,w,h,... (frames from 1, video pixels)")
    p.add_argument("--devset", choices=["caviar-corridor"], help="the dev clip with its ground truth, zones and ignore band")
    p.add_argument("--config", help="store config whose camera zones are scored (default: no zones)")
    p.add_argument("--camera", help="camera id in the config (default: first)")
    p.add_argument("--model", action="append",
                   help=f"{ModelChoice.SYNTAX}: the model instead of the config's (repeatable: one audit per "
                   "model, e.g. --model yolov8n-640 --model yolov8n:int8)")
    p.add_argument("--pred", help="score this MOT file instead of running the pipeline")
    p.add_argument("--frame-step", type=int,
                   help="--pred: it was computed on every N-th frame (default: the camera's analysis fps, "
                   "or every frame if it has rows elsewhere)")
    p.add_argument("--fps", type=fps_arg, help="the video's real frame rate, if its container is wrong")
    p.add_argument("--analysis-fps", type=fps_arg, help="override the camera's analysis fps")
    p.add_argument("--min-height-px", type=float, default=0.0, help="ignore boxes shorter than this (unannotated)")
    p.add_argument("--ignore-region", action="append", metavar="'x,y x,y x,y ...'",
                   help="pixel polygon with no annotations: boxes with feet inside are not scored (repeatable)")
    p.add_argument("--min-visit-s", type=float, default=5.0, help="dwell error over true visits at least this long")
    p.add_argument("--mot", help="also write the predicted tracks (MOTChallenge) here")
    p.add_argument("--no-interpolate", action="store_true",
                   help="score only observed boxes (default: the offline gap filling of analyze --mot)")
    p.add_argument("--json", help="write the figures as JSON to this file ('-': stdout only)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)
