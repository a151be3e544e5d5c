"""Who is staff: a pipeline stage between the tracker and the analytics (``staff.methods``).

Staff must not count as customers in queues, dwell and visits, and staff presence is what makes
a greeting or an assist. Stores differ in what gives staff away, so each method is optional:

* ``uniform``: a share of the torso pixels falls into one of the configured HSV ranges (a hi-vis
  vest, a red shirt). One frame proves little (a customer brushes past a red shelf, a staff
  member turns away), so each frame is one *vote* and a track is decided by consensus once it
  has ``min_votes`` of them.
* ``staff_only_zone``: decided by the analytics (time spent behind the counter), which see only
  tracks, not pixels; a mark is final for that track.
* ``onnx``: a person classifier (e.g. a fine-tuned MobileNet) voting the same way as the uniform.

:class:`StaffStage` runs the image-based methods on every analysed frame, timed like the other
stages, and hands the analytics ``Tracks`` with the ``staff`` column filled in; it owns the
classifier's ONNX Runtime session.

Privacy: only the per-track vote counts are kept; no crop, colour histogram or appearance feature
is stored, and every track's state is dropped when the track ends.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.contract import Tracks
from edge.errors import UserFacingError
from zones.config import OnnxClassifierConfig, StaffConfig, UniformConfig

log = logging.getLogger("storesense.staff")

# torso band of a person box: below the head and shoulders, above the belt
TORSO_Y = (0.20, 0.60)
TORSO_X = (0.25, 0.75)
# a crop smaller than this (px, each side) is a few blurred pixels: no vote
MIN_CROP_PX = 4
# a vote is skipped when a person nearer the camera covers this much of the torso band:
# the pixels would be theirs, not this person's
MAX_OCCLUDED_FRACTION = 0.3
# more votes than this add nothing to the decision; older ones fall out of the window
VOTE_WINDOW_FACTOR = 3
MIN_VOTE_WINDOW = 15
# hard cap on remembered tracks, in case a caller never forgets ended ones (memory flat 24/7)
MAX_TRACKS = 4096

Decision = Literal["staff", "customer", "undecided"]
ImageBGR = npt.NDArray[Any]


class StaffModelError(UserFacingError):
    """The staff classifier model cannot be used."""


@dataclass
class _Votes:
    """A bounded window of yes/no votes from one method for one track."""

    window: int
    votes: deque[bool] = field(default_factory=deque)
    total: int = 0

    def add(self, vote: bool) -> None:
        self.votes.append(vote)
        self.total += 1
        while len(self.votes) > self.window:
            self.votes.popleft()

    def fraction(self) -> float:
        return sum(self.votes) / len(self.votes) if self.votes else 0.0


@dataclass
class _TrackState:
    marked: bool = False
    uniform: _Votes | None = None
    onnx: _Votes | None = None


def torso_box(xyxy: npt.ArrayLike, frame_size_px: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Integer torso crop (x1, y1, x2, y2) of a person box, clipped to the frame; None if tiny."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy, dtype=np.float64).reshape(4))
    w, h = x2 - x1, y2 - y1
    fw, fh = frame_size_px
    cx1 = int(round(max(0.0, x1 + TORSO_X[0] * w)))
    cx2 = int(round(min(float(fw), x1 + TORSO_X[1] * w)))
    cy1 = int(round(max(0.0, y1 + TORSO_Y[0] * h)))
    cy2 = int(round(min(float(fh), y1 + TORSO_Y[1] * h)))
    if cx2 - cx1 < MIN_CROP_PX or cy2 - cy1 < MIN_CROP_PX:
        return None
    return cx1, cy1, cx2, cy2


def uniform_pixel_fraction(crop_bgr: ImageBGR, ranges: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]) -> float:
    """Share of the crop's pixels that fall into any of the HSV ranges (OpenCV scale H 0..179)."""
    if crop_bgr.size == 0:
        return 0.0
    hsv = cv2.cvtColor(np.ascontiguousarray(crop_bgr), cv2.COLOR_BGR2HSV)
    mask = np.zeros(hsv.shape[:2], dtype=np.uint8)
    for lo, hi in ranges:
        mask |= cv2.inRange(hsv, lo, hi)
    return float(np.count_nonzero(mask)) / float(mask.size)


def _occluded_fraction(crop: tuple[int, int, int, int], own: int, boxes: npt.NDArray[np.float32]) -> float:
    """How much of the crop is covered by boxes of people nearer the camera (lower box bottom)."""
    x1, y1, x2, y2 = crop
    area = float((x2 - x1) * (y2 - y1))
    own_bottom = float(boxes[own, 3])
    covered = 0.0
    for j in range(boxes.shape[0]):
        if j == own or float(boxes[j, 3]) <= own_bottom:
            continue
        ix = min(x2, float(boxes[j, 2])) - max(x1, float(boxes[j, 0]))
        iy = min(y2, float(boxes[j, 3])) - max(y1, float(boxes[j, 1]))
        if ix > 0 and iy > 0:
            covered = max(covered, ix * iy / area)  # max, not sum: overlaps of two occluders overlap too
    return covered


class OnnxStaffClassifier:
    """The ONNX hook: a person crop in, one vote out.

    Model contract: one input ``float32 [1, 3, H, W]`` (RGB, 0..1, the whole person box resized to
    ``input_size_px = (W, H)``), one output ``[1, C]``. With C >= 2 the vote is "staff" when the
    arg-max is ``staff_class``; with C == 1 the value is the staff probability (vote when >= 0.5).
    """

    def __init__(self, cfg: OnnxClassifierConfig, base_dir: Path | None) -> None:
        import onnxruntime as ort

        path = Path(cfg.path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = (base_dir / path).resolve()
        if not path.is_file():
            raise StaffModelError(
                f"staff.onnx.path: classifier model not found: {path} (relative paths are relative to the "
                "store config); remove 'onnx' from staff.methods or give the right path"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise StaffModelError(f"staff.onnx.path: {path} is not a usable ONNX model: {exc}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise StaffModelError(
                f"staff classifier {path}: expected one input of shape [1, 3, H, W]; found "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        shape = inputs[0].shape
        w, h = cfg.input_size_px
        if isinstance(shape[2], int) and isinstance(shape[3], int) and (shape[2], shape[3]) != (h, w):
            raise StaffModelError(
                f"staff classifier {path}: model input is {shape[3]}x{shape[2]} (WxH) but staff.onnx.input_size_px "
                f"is {w}x{h}; set input_size_px: [{shape[3]}, {shape[2]}]"
            )
        self.input_name = inputs[0].name
        self.size_px = (int(w), int(h))
        self.staff_class = cfg.staff_class
        self.path = path

    def vote(self, person_bgr: ImageBGR) -> bool:
        img = cv2.resize(person_bgr, self.size_px, interpolation=cv2.INTER_LINEAR)
        tensor = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        out = np.asarray(self.session.run(None, {self.input_name: tensor})[0], dtype=np.float64).reshape(-1)
        if out.size == 1:
            return bool(out[0] >= 0.5)
        if self.staff_class >= out.size:
            raise StaffModelError(
                f"staff classifier {self.path}: staff_class {self.staff_class} but the model has only {out.size} classes"
            )
        return int(np.argmax(out)) == self.staff_class


class StaffIdentifier:
    """Per-track staff decision from the configured methods; state is bounded and evicted.

    A track is staff if it was marked (staff-only zone) or if any voting method (uniform, onnx)
    has at least ``min_votes`` votes and at least ``staff_vote_fraction`` of its recent votes say
    staff. The window of recent votes is bounded, so a staff member's decision stays stable over
    a long shift while a wrong early impression is corrected within a few seconds.

    ``Tracks.ended_ids`` are forgotten at the *next* :meth:`observe`, so the caller can still ask
    :meth:`is_staff` about a track in the update where it ended; :meth:`forget` drops at once.
    """

    def __init__(self, cfg: StaffConfig, base_dir: Path | None = None, *, max_tracks: int = MAX_TRACKS) -> None:
        self.cfg = cfg
        self.max_tracks = max_tracks
        self._tracks: OrderedDict[int, _TrackState] = OrderedDict()
        self._pending_forget: tuple[int, ...] = ()
        self.uniform: UniformConfig | None = cfg.uniform if "uniform" in cfg.methods else None
        self._ranges = [
            (np.array(r.lower, dtype=np.uint8), np.array(r.upper, dtype=np.uint8)) for r in (self.uniform.hsv_ranges if self.uniform else [])
        ]
        self.classifier: OnnxStaffClassifier | None = None
        if "onnx" in cfg.methods:
            assert cfg.onnx is not None  # StaffConfig validator
            self.classifier = OnnxStaffClassifier(cfg.onnx, base_dir)
        self.frames_without_image = 0

    # ------------------------------------------------------------------------------------------

    @property
    def needs_image(self) -> bool:
        """Whether :meth:`observe` uses the frame (callers may skip passing it otherwise)."""
        return self.uniform is not None or self.classifier is not None

    def _state(self, track_id: int) -> _TrackState:
        st = self._tracks.get(track_id)
        if st is None:
            st = _TrackState()
            self._tracks[track_id] = st
            while len(self._tracks) > self.max_tracks:
                old, _ = self._tracks.popitem(last=False)
                log.debug("staff: evicting track %d (over %d remembered tracks)", old, self.max_tracks)
        else:
            self._tracks.move_to_end(track_id)
        return st

    def observe(self, tracks: Tracks, image_bgr: ImageBGR | None) -> None:
        """One vote per method for every visible track of this frame."""
        if self._pending_forget:
            self.forget(self._pending_forget)
        self._pending_forget = tracks.ended_ids
        if not self.needs_image or len(tracks) == 0:
            return  # nothing to vote on; marks (staff-only zone) create their own state
        if image_bgr is None:
            self.frames_without_image += 1
            return
        fh, fw = image_bgr.shape[:2]
        for i, tid in enumerate(tracks.track_id.tolist()):
            st = self._state(int(tid))
            crop = torso_box(tracks.xyxy[i], (fw, fh))
            if crop is None or _occluded_fraction(crop, i, tracks.xyxy) > MAX_OCCLUDED_FRACTION:
                continue
            x1, y1, x2, y2 = crop
            if self.uniform is not None:
                frac = uniform_pixel_fraction(image_bgr[y1:y2, x1:x2], self._ranges)
                if st.uniform is None:
                    st.uniform = _Votes(max(self.uniform.min_votes * VOTE_WINDOW_FACTOR, MIN_VOTE_WINDOW))
                st.uniform.add(frac >= self.uniform.min_pixel_fraction)
            if self.classifier is not None:
                bx1, by1, bx2, by2 = (int(round(float(v))) for v in tracks.xyxy[i])
                person = image_bgr[max(0, by1) : min(fh, by2), max(0, bx1) : min(fw, bx2)]
                if person.shape[0] >= MIN_CROP_PX and person.shape[1] >= MIN_CROP_PX:
                    assert self.cfg.onnx is not None
                    if st.onnx is None:
                        st.onnx = _Votes(max(self.cfg.onnx.min_votes * VOTE_WINDOW_FACTOR, MIN_VOTE_WINDOW))
                    st.onnx.add(self.classifier.vote(person))

    def mark_staff(self, track_id: int) -> None:
        """Final: this track is staff (e.g. it spent ``staff_only_zone.min_time_s`` behind the counter)."""
        self._state(int(track_id)).marked = True

    def decision(self, track_id: int) -> Decision:
        st = self._tracks.get(int(track_id))
        if st is None:
            return "undecided"
        if st.marked:
            return "staff"
        decided = False
        for votes, min_votes, fraction in self._voters(st):
            if votes.total >= min_votes:
                decided = True
                if votes.fraction() >= fraction:
                    return "staff"
        return "customer" if decided else "undecided"

    def is_staff(self, track_id: int) -> bool:
        """True once the track is marked or a method's consensus says staff; undecided is False."""
        return self.decision(track_id) == "staff"

    def forget(self, track_ids: Iterable[int]) -> None:
        for tid in track_ids:
            self._tracks.pop(int(tid), None)

    @property
    def tracked_count(self) -> int:
        """Tracks with state in memory (for tests and the memory-flat check)."""
        return len(self._tracks)

    def staff_ids(self) -> set[int]:
        return {tid for tid in self._tracks if self.is_staff(tid)}

    def _voters(self, st: _TrackState) -> list[tuple[_Votes, int, float]]:
        out: list[tuple[_Votes, int, float]] = []
        if st.uniform is not None and self.uniform is not None:
            out.append((st.uniform, self.uniform.min_votes, self.uniform.staff_vote_fraction))
        if st.onnx is not None and self.cfg.onnx is not None:
            out.append((st.onnx, self.cfg.onnx.min_votes, self.cfg.onnx.staff_vote_fraction))
        return out


# HSV ranges (OpenCV scale) that catch hi-vis workwear under shop and warehouse light; chosen on
# the sample warehouse clip (orange vest: H 5..10, S and V > 150) against shoppers in brown/
# orange-ish clothes (same hue but V < 110). A starting point for `staff.uniform.hsv_ranges`.
HI_VIS_HSV_RANGES: list[dict[str, list[int]]] = [
    {"lower": [3, 150, 140], "upper": [15, 255, 255]},  # hi-vis orange
    {"lower": [22, 150, 140], "upper": [40, 255, 255]},  # hi-vis yellow / lime
]

class StaffStage:
    """The staff-identification stage of one camera: votes on this frame's tracks and returns them
    with the ``staff`` column set (True once a method's consensus says staff)."""

    def __init__(self, cfg: StaffConfig, base_dir: Path | None = None) -> None:
        self.identifier = StaffIdentifier(cfg, base_dir)

    @staticmethod
    def wanted(cfg: StaffConfig) -> bool:
        """Whether the config has an image-based method (otherwise the stage has nothing to do)."""
        return "uniform" in cfg.methods or "onnx" in cfg.methods

    def __call__(self, tracks: Tracks, image_bgr: ImageBGR | None) -> Tracks:
        self.identifier.observe(tracks, image_bgr)
        flags = np.array([self.identifier.is_staff(int(t)) for t in tracks.track_id], dtype=bool)
        return tracks.with_staff(flags)


__all__ = [
    "HI_VIS_HSV_RANGES",
    "OnnxStaffClassifier",
    "StaffIdentifier",
    "StaffModelError",
    "StaffStage",
    "torso_box",
    "uniform_pixel_fraction",
]
