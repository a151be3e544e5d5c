"""Static scenery: a "person" that never moves is a poster, a mannequin or a sign, not a visitor.

A person detector fires on posters, standees, mannequins and signs all day (YOLOX-Nano held one
track on a blue sign for 711 of 795 frames). In a dwell zone it becomes an all-day visitor; in a
queue zone a phantom customer who inflates every predicted wait. This stage sits between the
tracker and the analytics and takes such tracks out of :class:`Tracks`, so every consumer
(occupancy, visits, queues, heatmaps, the MOT export) is rid of them at once.

A track is static scenery when BOTH hold for ``static_after_s``:

* its feet have not moved (less than ``_STILL_RADIUS_H`` box heights from where they settled), and
* the pixels inside its box have not changed: no frame-to-frame change, and no slow drift from the
  crop taken when it settled (a grey, blurred, 24x48 crop of the box where the feet settled, so that
  detector jitter does not shift it; a pixel "changes" by more than ``_PIXEL_DELTA`` grey levels,
  the box "moves" when more than ``_MOTION_FRACTION`` of it does).

A track that has not stirred once since it was born (no step, no pixel change) is held back until it
does, and becomes static after ``static_after_s``: a poster then never counts at all, while a person
walks into view or shifts within a second or two of being found (measured: docs/tracker.md).

The second test is what keeps a real person standing still in a queue for minutes: people shift,
turn their head, breathe and move their arms, and each of these changes a few percent of the box
within seconds. A printed poster changes nothing but sensor noise. Both conditions are re-checked
on every frame, so a static track that moves (or shows motion in its box) comes back at once.

Static *places* are remembered (box + crop) after the track that found them ends: a new track born
on the same box with the same picture is static from its first frame, because detections on a
sign flicker and would otherwise start a fresh ``static_after_s`` every time. The memory is bounded
(``_MAX_PLACES``, forgotten ``_PLACE_FORGET_S`` after last seen). All per-track state is dropped
when the tracker reports the track ended.

Per-camera ``ignore`` polygons (config) drop detections whose feet fall inside before the tracker
sees them: the installer's answer to a poster this stage cannot see (a screen playing a video).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.contract import Detections, Tracks

log = logging.getLogger("storesense.scenery")

# Feet within this many box heights of where they settled count as "not moved" (detector jitter
# on a still box is a few percent of its height; a step is about a third of it).
_STILL_RADIUS_H = 0.15
# Crop compared for pixel change: small enough to be cheap (1152 pixels), large enough for a head turn.
_CROP_WH = (24, 48)
# A pixel has changed when its grey level moves more than this (compression noise is a few levels).
_PIXEL_DELTA = 18
# The box shows motion when more than this fraction of its pixels changed.
_MOTION_FRACTION = 0.03
# Remembered static places: at most this many per camera, forgotten this long after last seen.
_MAX_PLACES = 32
_PLACE_FORGET_S = 600.0
# A new track is on a remembered place when its box overlaps it this much and its crop matches.
_PLACE_IOU = 0.6
# A track born now is compared with this many previous frames ("stirred at birth", below).
_PREV_FRAMES = 2


@dataclass
class _TrackState:
    anchor_foot_px: tuple[float, float]
    anchor_xyxy: tuple[float, float, float, float]  # the box when the feet settled
    still_since_s: float
    motion_at_s: float  # last time the box showed pixel change (or the feet moved)
    ref_crop: npt.NDArray[np.uint8]
    last_crop: npt.NDArray[np.uint8]
    static: bool = False
    stirred: bool = False  # moved or showed pixel change at least once since birth


@dataclass
class StaticPlace:
    """A box in the image where static scenery was found (shown on /setup so it can be masked)."""

    xyxy: tuple[float, float, float, float]
    crop: npt.NDArray[np.uint8] = field(repr=False)
    first_s: float
    last_s: float


class _Grey:
    """A frame in grey, blurred only inside the boxes asked about.

    Blurring the whole frame for every analysed frame of every camera cost the analysis loop more
    than the comparisons (a 768x432 frame against a few 24x48 crops). The grey conversion is cheap
    and goes into a buffer the camera reuses (no frame-sized allocation per frame); the blur runs
    per box with a one-pixel margin, so it sees the same neighbours as on the whole frame and the
    crop is bit-identical (tests/test_scenery.py checks it).
    """

    __slots__ = ("_grey", "shape")

    def __init__(self, grey: npt.NDArray[np.uint8]) -> None:
        self._grey = grey
        self.shape: tuple[int, int] = (int(grey.shape[0]), int(grey.shape[1]))

    def crop(self, xyxy: Sequence[float]) -> npt.NDArray[np.uint8]:
        """The box, blurred (3x3 Gaussian) and resized to ``_CROP_WH``."""
        h, w = self.shape
        x1, y1 = max(int(xyxy[0]), 0), max(int(xyxy[1]), 0)
        x2, y2 = min(int(np.ceil(xyxy[2])), w), min(int(np.ceil(xyxy[3])), h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return np.zeros((_CROP_WH[1], _CROP_WH[0]), np.uint8)
        mx1, my1 = max(x1 - 1, 0), max(y1 - 1, 0)
        blurred = cv2.GaussianBlur(self._grey[my1:min(y2 + 1, h), mx1:min(x2 + 1, w)], (3, 3), 0)
        inner = blurred[y1 - my1:y2 - my1, x1 - mx1:x2 - mx1]
        return np.asarray(cv2.resize(inner, _CROP_WH, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def changed_fraction(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Share of crop pixels whose grey level differs by more than ``_PIXEL_DELTA``."""
    return float(np.count_nonzero(cv2.absdiff(a, b) > _PIXEL_DELTA)) / float(a.size)


def _at_edge(xyxy: Sequence[float], shape: tuple[int, ...], margin: float = 0.02) -> bool:
    h, w = shape[0], shape[1]
    return xyxy[0] <= margin * w or xyxy[1] <= margin * h or xyxy[2] >= (1 - margin) * w or xyxy[3] >= (1 - margin) * h


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class SceneryFilter:
    """One per camera: drops detections in ``ignore`` polygons, and static tracks from ``Tracks``.

    ``static_after_s`` <= 0 turns the static test off (ignore polygons still apply).
    """

    def __init__(self, static_after_s: float = 20.0, ignore_polygons_norm: Sequence[Sequence[tuple[float, float]]] = (),
                 report_path: Path | None = None) -> None:
        self.static_after_s = float(static_after_s)
        self._ignore = [np.asarray(p, dtype=np.float32) for p in ignore_polygons_norm]
        self._tracks: dict[int, _TrackState] = {}
        self.places: list[StaticPlace] = []
        self.report_path = report_path
        self._reported: tuple[Any, ...] = ()
        self._prev_greys: deque[_Grey] = deque(maxlen=_PREV_FRAMES)
        # grey frames written in turn: the current one and the two in _prev_greys
        self._grey_buffers: list[npt.NDArray[np.uint8]] = []
        self._next_buffer = 0

    # -- before the tracker ---------------------------------------------------------------------

    def filter_detections(self, detections: Detections, frame_size_px: tuple[int, int]) -> Detections:
        """Detections whose feet fall in an ``ignore`` polygon never reach the tracker."""
        if not self._ignore or len(detections) == 0:
            return detections
        w, h = frame_size_px
        feet = np.stack([(detections.xyxy[:, 0] + detections.xyxy[:, 2]) / 2 / w, detections.xyxy[:, 3] / h], axis=1)
        keep = np.ones(len(detections), dtype=bool)
        for poly in self._ignore:
            keep &= np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for x, y in feet], dtype=bool)
        return detections if keep.all() else detections.filter(keep)

    # -- after the tracker ----------------------------------------------------------------------

    @property
    def tracked_count(self) -> int:
        """Per-track states held (memory-flatness checks): only tracks the tracker still has."""
        return len(self._tracks)

    def is_static(self, track_id: int) -> bool:
        st = self._tracks.get(track_id)
        return st is not None and st.static

    def is_withheld(self, track_id: int) -> bool:
        """Static, or not stirred once since birth: left out of the tracks downstream."""
        st = self._tracks.get(track_id)
        return st is not None and (st.static or not st.stirred)

    def update(self, tracks: Tracks, image_bgr: npt.NDArray[np.uint8] | None) -> Tracks:
        """``tracks`` without its static rows (and without static ids among ``held_ids``)."""
        ts = float(tracks.timestamp_s)
        for tid in tracks.ended_ids:
            self._forget(tid, ts)
        if self.static_after_s <= 0 or image_bgr is None:
            return tracks
        grey = _Grey(self._to_grey(image_bgr))
        keep = np.ones(len(tracks), dtype=bool)
        for k, t in enumerate(tracks):
            keep[k] = not self._observe(t.track_id, t.xyxy, grey, ts)
        self._prev_greys.append(grey)
        self._expire_places(ts)
        self._write_report()
        held = tuple(getattr(tracks, "held_ids", ()))
        held_kept = tuple(i for i in held if not self.is_withheld(i))
        if keep.all() and held_kept == held:
            return tracks
        return _subset(tracks, keep, held_kept)

    def _to_grey(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        shape = image.shape[:2]
        if not self._grey_buffers or self._grey_buffers[0].shape != shape:
            self._grey_buffers = [np.empty(shape, np.uint8) for _ in range(_PREV_FRAMES + 1)]
        buf = self._grey_buffers[self._next_buffer]
        self._next_buffer = (self._next_buffer + 1) % len(self._grey_buffers)
        if image.ndim == 3:
            cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=buf)
        else:
            np.copyto(buf, image)
        return buf

    def _observe(self, tid: int, xyxy: tuple[float, float, float, float], grey: _Grey, ts: float) -> bool:
        foot = ((xyxy[0] + xyxy[2]) / 2.0, xyxy[3])
        height = max(xyxy[3] - xyxy[1], 1.0)
        st = self._tracks.get(tid)
        if st is None:
            crop = grey.crop(xyxy)
            place = self._place_for(xyxy, grey)
            # stirred at birth if the box changed since the previous frame (someone walking in)
            # (against the last two frames: a source that repeats frames would hide a slow walker)
            # or if it touches the frame edge: people come into view there (a half-visible walker moves little)
            stirred = place is None and (_at_edge(xyxy, grey.shape) or any(
                prev.shape == grey.shape and changed_fraction(crop, prev.crop(xyxy)) > _MOTION_FRACTION
                for prev in self._prev_greys
            ))
            self._tracks[tid] = st = _TrackState(foot, xyxy, ts, ts, crop, crop, static=place is not None,
                                                 stirred=stirred)
            if place is not None:
                place.last_s = ts
                log.debug("track %d born on a known static place %s", tid, place.xyxy)
            return not stirred
        moved = np.hypot(foot[0] - st.anchor_foot_px[0], foot[1] - st.anchor_foot_px[1]) > _STILL_RADIUS_H * height
        if moved:
            st.anchor_foot_px, st.anchor_xyxy, st.still_since_s = foot, xyxy, ts
        # the pixels of the box where the feet settled, not of the detection box: a still box jitters
        # by a few pixels from frame to frame, and a shifted crop of a still poster differs at every edge
        crop = grey.crop(st.anchor_xyxy)
        if moved:
            st.ref_crop = st.last_crop = crop
        if moved or max(changed_fraction(crop, st.last_crop), changed_fraction(crop, st.ref_crop)) > _MOTION_FRACTION:
            st.motion_at_s = ts
            st.ref_crop = crop
            st.stirred = True
        st.last_crop = crop
        was = st.static
        long_still = ts - st.still_since_s >= self.static_after_s and ts - st.motion_at_s >= self.static_after_s
        # a remembered place that looks exactly as it did (someone walked past in front of the sign)
        st.static = long_still or (ts > st.motion_at_s and self._place_for(st.anchor_xyxy, grey) is not None)
        if st.static:
            self._remember_place(st.anchor_xyxy, crop, ts, st.still_since_s)
        if st.static != was:
            log.info("track %d %s static scenery", tid, "is" if st.static else "is no longer")
        # a track that has not stirred once since it was born is held back: people walk into view
        # (or shift within a second or two of being found), posters never do
        return st.static or not st.stirred

    def _forget(self, tid: int, ts: float) -> None:
        self._tracks.pop(tid, None)

    # -- remembered places -----------------------------------------------------------------------

    def _place_for(self, xyxy: Sequence[float], grey: _Grey) -> StaticPlace | None:
        """A remembered place under this box that still looks as it did (compared on its own box)."""
        for p in self.places:
            if _iou(p.xyxy, xyxy) >= _PLACE_IOU and changed_fraction(grey.crop(p.xyxy), p.crop) <= _MOTION_FRACTION:
                return p
        return None

    def _remember_place(self, xyxy: tuple[float, float, float, float], crop: npt.NDArray[np.uint8], ts: float,
                        since_s: float) -> None:
        for p in self.places:
            if _iou(p.xyxy, xyxy) >= _PLACE_IOU:
                p.xyxy, p.crop, p.last_s = xyxy, crop, ts
                return
        self.places.append(StaticPlace(xyxy, crop, since_s, ts))
        if len(self.places) > _MAX_PLACES:
            self.places.sort(key=lambda p: p.last_s)
            del self.places[0]

    def _expire_places(self, ts: float) -> None:
        self.places = [p for p in self.places if ts - p.last_s <= _PLACE_FORGET_S]

    def _write_report(self) -> None:
        """The places found, for /setup (JSON next to the reference frame; never leaves the box)."""
        if self.report_path is None:
            return
        sig = tuple((tuple(round(v) for v in p.xyxy)) for p in self.places)
        if sig == self._reported:
            return
        self._reported = sig
        doc = [{"xyxy_px": [round(v, 1) for v in p.xyxy], "first_s": p.first_s, "last_s": p.last_s} for p in self.places]
        try:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.report_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc), encoding="utf-8")
            tmp.replace(self.report_path)
        except OSError as exc:
            log.warning("could not write %s: %s", self.report_path, exc)


def _subset(tracks: Tracks, keep: npt.NDArray[np.bool_], held_ids: tuple[int, ...]) -> Tracks:
    kwargs: dict[str, Any] = {}
    if hasattr(tracks, "held_ids"):
        kwargs["held_ids"] = held_ids
    return Tracks(tracks.camera_id, tracks.frame_index, tracks.timestamp_s, tracks.frame_size_px,
                  tracks.xyxy[keep], tracks.confidence[keep], tracks.track_id[keep],
                  ended_ids=tracks.ended_ids, staff=tracks.staff_flags[keep], **kwargs)


__all__ = ["SceneryFilter", "StaticPlace", "changed_fraction"]
