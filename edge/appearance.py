"""A cheap appearance cue for re-associating a track after a gap: colour histograms of the upper and
lower body, taken from the frame the detector already decoded.

Why: position alone decides who is who after a gap. When a person reappears from behind a sign, a lamp
post or a passer-by, the nearest unclaimed detection is taken, and where two people were hidden
together (a crossing) or someone else walks out near the spot, that is the wrong person: one id
switch, two visits spliced. Clothing colour separates most such pairs. A ReID embedding network would
separate more, but costs a second model per detection and keeps a biometric-grade vector per person;
two small colour histograms are a few microseconds and say nothing about who someone is.

How it stays cheap (no per-frame cost): a track's appearance is *sampled* at a low rate
(:data:`SAMPLE_EVERY_S`), only while it is confirmed, matched to a confident detection and not
overlapped by another detection (a crop with two people in it describes neither). A detection's
histogram is computed only when a lost or held track is about to be re-associated with it.

What it is: the box, clipped to the frame, minus the side margins (background) is split into the
torso (15-50 % of the height: no face) and the legs (50-85 %: no floor). Each part is shrunk to
12x16 pixels and binned in HSV: chromatic pixels by hue (8) x saturation (3), achromatic ones
(low saturation or dark: black, grey and white clothes are the most common) by value (4). Two
descriptors are compared with the Bhattacharyya coefficient of each part (1 = same distribution),
averaged. The per-track model is a running mean of the samples, stored on the track itself, so it
is dropped with the track (flat memory on a 24/7 box). Nothing of it leaves the tracker.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

# A track's appearance is refreshed at most this often (seconds of frame time).
SAMPLE_EVERY_S = 0.5
# Weight of a new sample in the running mean (about the last 1.5 s of samples dominate).
SAMPLE_WEIGHT = 0.3
# A crop shares at most this fraction of its area with another detection to be sampled.
MAX_SHARED_AREA = 0.1
# Boxes smaller than this (px, after clipping) carry too few pixels for a histogram.
MIN_BOX_H_PX = 24.0
MIN_BOX_W_PX = 8.0

_PART_WH = (12, 16)
_H_BINS, _S_BINS, _V_BINS = 8, 3, 4
_CHROMA_BINS = _H_BINS * _S_BINS
PART_BINS = _CHROMA_BINS + _V_BINS
# A pixel is chromatic when saturated and bright enough for its hue to mean something (0..255).
_MIN_S, _MIN_V = 60, 50
# (top, bottom) of each part as fractions of the box height; side margin as a fraction of the width.
_PARTS = ((0.15, 0.5), (0.5, 0.85))
_SIDE_MARGIN = 0.2


def descriptor(image_bgr: npt.NDArray[Any], box_xyxy: Any) -> F32 | None:
    """Upper- and lower-body HSV histograms of one box, (2, PART_BINS), each row summing to 1; None
    for a box too small (or too far out of the frame) to describe."""
    img_h, img_w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    x1, x2 = max(x1, 0.0), min(x2, float(img_w))
    y1, y2 = max(y1, 0.0), min(y2, float(img_h))
    w, h = x2 - x1, y2 - y1
    if w < MIN_BOX_W_PX or h < MIN_BOX_H_PX:
        return None
    xa, xb = int(x1 + _SIDE_MARGIN * w), int(np.ceil(x2 - _SIDE_MARGIN * w))
    out = np.empty((len(_PARTS), PART_BINS), np.float32)
    for k, (top, bottom) in enumerate(_PARTS):
        ya, yb = int(y1 + top * h), int(np.ceil(y1 + bottom * h))
        crop = image_bgr[ya:yb, xa:xb]
        if crop.size == 0:
            return None
        small = cv2.resize(crop, _PART_WH, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.int32)
        hue, sat, val = hsv[:, 0], hsv[:, 1], hsv[:, 2]
        chroma = (sat >= _MIN_S) & (val >= _MIN_V)
        # OpenCV's 8-bit hue is 0..179
        bins = np.where(
            chroma,
            (hue * _H_BINS // 180) * _S_BINS + np.minimum((sat - _MIN_S) * _S_BINS // (256 - _MIN_S), _S_BINS - 1),
            _CHROMA_BINS + val * _V_BINS // 256,
        )
        counts = np.bincount(bins, minlength=PART_BINS).astype(np.float32)
        out[k] = counts / counts.sum()
    return out


def similarity(a: F32, b: F32) -> float:
    """Mean over body parts of the Bhattacharyya coefficient: 1 for identical colour distributions,
    0 for disjoint ones."""
    return float(np.mean(np.sqrt(a * b).sum(axis=1)))


def blend(model: F32 | None, sample: F32) -> F32:
    """The running mean of a track's samples (each row stays a distribution)."""
    if model is None:
        return sample.copy()
    return ((1.0 - SAMPLE_WEIGHT) * model + SAMPLE_WEIGHT * sample).astype(np.float32)


def isolated(boxes_xyxy: npt.NDArray[np.float64], i: int) -> bool:
    """Box ``i`` shares at most :data:`MAX_SHARED_AREA` of its area with any other box: its crop shows
    one person."""
    b = boxes_xyxy[i]
    area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
    others = np.delete(boxes_xyxy, i, axis=0)
    if others.shape[0] == 0:
        return True
    iw = np.clip(np.minimum(b[2], others[:, 2]) - np.maximum(b[0], others[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(b[3], others[:, 3]) - np.maximum(b[1], others[:, 1]), 0.0, None)
    return bool(np.max(iw * ih) / area <= MAX_SHARED_AREA)


class DetectionLooks:
    """Descriptors of one frame's detections, computed on first use only (most frames need none)."""

    def __init__(self, image_bgr: npt.NDArray[Any] | None, boxes_xyxy: npt.NDArray[np.float64]) -> None:
        self.image = image_bgr
        self.boxes = boxes_xyxy
        self._cache: dict[int, F32 | None] = {}

    def get(self, j: int) -> F32 | None:
        if self.image is None:
            return None
        if j not in self._cache:
            self._cache[j] = descriptor(self.image, self.boxes[j])
        return self._cache[j]


__all__ = ["DetectionLooks", "PART_BINS", "SAMPLE_EVERY_S", "blend", "descriptor", "isolated", "similarity"]
