"""Per-camera pipeline: decide which frames to analyse, detect, track, identify staff. One verb per stage.

The detector is shared by every camera of the store (one ONNX Runtime session: the CPU is the
bottleneck on an edge box, and one session with all cores beats several fighting for them);
the tracker is per camera.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edge.contract import Detections, Frame, Tracks
from edge.scenery import SceneryFilter
from edge.track_flow import TrackFlow

STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "staff", "analytics")


class Detector(Protocol):
    """What the pipeline needs of a detector; three calls so each stage can be timed."""

    def preprocess(self, image_bgr: Any) -> tuple[Any, Any]: ...

    def infer(self, tensor: Any) -> Any: ...

    def postprocess(self, raw: Any, letterbox: Any) -> Detections: ...


@dataclass(frozen=True)
class DetectResult:
    """One frame's detections and the time each detector stage took (ms); made on a worker
    thread with frames in flight (edge.inference), fed to the camera's timer on the loop's."""

    detections: Detections
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


def timed_detect(detector: Detector, image_bgr: Any) -> DetectResult:
    t0 = time.perf_counter()
    tensor, letterbox = detector.preprocess(image_bgr)
    t1 = time.perf_counter()
    raw = detector.infer(tensor)
    t2 = time.perf_counter()
    detections = detector.postprocess(raw, letterbox)
    t3 = time.perf_counter()
    return DetectResult(detections, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)


class Tracker(Protocol):
    def update(
        self,
        detections: Detections,
        *,
        camera_id: str,
        frame_index: int,
        timestamp_s: float,
        frame_size_px: tuple[int, int],
        image: Any = None,
    ) -> Tracks: ...


class SampleRing:
    """The last ``size`` samples of one stage in a float array allocated once.

    A deque of Python floats grows by ~32 bytes a sample until it is full, which on a 5 fps
    camera takes a quarter of an hour: the box's RSS then creeps for that long and a memory
    soak cannot tell it from a leak. A preallocated array is flat from the first frame.
    """

    __slots__ = ("_buf", "_next", "_count")

    def __init__(self, size: int) -> None:
        self._buf = np.zeros(max(1, int(size)), dtype=np.float64)
        self._next = 0
        self._count = 0

    def append(self, value: float) -> None:
        self._buf[self._next] = value
        self._next = (self._next + 1) % self._buf.size
        self._count = min(self._count + 1, self._buf.size)

    def values(self) -> npt.NDArray[np.float64]:
        """The samples held, oldest first (a copy)."""
        if self._count < self._buf.size:
            return self._buf[: self._count].copy()
        return np.concatenate((self._buf[self._next :], self._buf[: self._next]))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[float]:
        return iter(self.values().tolist())


@dataclass
class StageTimer:
    """Milliseconds per stage over the last ``window`` frames (bounded and preallocated: flat
    memory 24/7 from the first frame)."""

    window: int = 5000
    samples_ms: dict[str, SampleRing] = field(default_factory=dict)
    # also told every sample (the Prometheus latency histograms); None outside `storesense run`
    on_sample: Callable[[str, float], None] | None = None

    def add(self, stage: str, ms: float) -> None:
        if self.on_sample is not None:
            self.on_sample(stage, ms)
        ring = self.samples_ms.get(stage)
        if ring is None:
            ring = self.samples_ms[stage] = SampleRing(self.window)
        ring.append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage in STAGES:
            s = self.samples_ms.get(stage)
            if s:
                arr = s.values()
                out[stage] = {
                    "median_ms": float(np.median(arr)),
                    "p95_ms": float(np.percentile(arr, 95)),
                    "n": float(arr.size),
                }
        return out

    def merge(self, others: Iterable[StageTimer]) -> StageTimer:
        merged = StageTimer(self.window * 4)
        for t in (self, *others):
            for stage, s in t.samples_ms.items():
                for v in s.values():
                    merged.add(stage, float(v))
        return merged


class FpsGate:
    """Picks frames at the analysis rate from frame timestamps (not from frame counts), so a
    10 fps file analysed at 5 fps takes every other frame and a live source with jitter still
    averages the configured rate."""

    def __init__(self, fps: float) -> None:
        self.period_s = 1.0 / fps
        self._next_due_s: float | None = None

    def due(self, timestamp_s: float) -> bool:
        if self._next_due_s is None or timestamp_s + 1e-3 >= self._next_due_s:
            if self._next_due_s is None or timestamp_s - self._next_due_s > self.period_s:
                self._next_due_s = timestamp_s + self.period_s  # fell behind: do not try to catch up
            else:
                self._next_due_s += self.period_s
            return True
        return False


class TrackStage(Protocol):
    """A stage after the tracker that adds a per-track column (e.g. staff identification)."""

    def __call__(self, tracks: Tracks, image_bgr: Any) -> Tracks: ...


class IdleGate:
    """Says when a camera's picture has not changed since its last detection, so the detector can
    be skipped and that detection reused. Cheap: a grey 64x36 thumbnail and one absdiff.

    "Changed" means more than ``changed_fraction`` of the thumbnail's pixels moved by more than
    ``pixel_delta`` grey levels against the thumbnail of the last *detected* frame (not the
    previous frame, so slow drift adds up). Every ``refresh_s`` the detector runs anyway.
    """

    def __init__(self, refresh_s: float, pixel_delta: int = 12, changed_fraction: float = 0.002) -> None:
        self.refresh_s = refresh_s
        self.pixel_delta = pixel_delta
        self.changed_fraction = changed_fraction
        self._grey: np.ndarray | None = None
        self._small = np.empty((36, 64), np.uint8)
        self._ref = np.empty((36, 64), np.uint8)
        self._diff = np.empty((36, 64), np.uint8)
        self._ref_ts: float | None = None
        self._small_ts: float | None = None
        self.skipped = 0

    def _thumbnail(self, image: Any, timestamp_s: float) -> None:
        if self._small_ts == timestamp_s:
            return  # already made for this frame
        if self._grey is None or self._grey.shape != image.shape[:2]:
            self._grey = np.empty(image.shape[:2], np.uint8)
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=self._grey)
        cv2.resize(self._grey, (64, 36), dst=self._small, interpolation=cv2.INTER_AREA)
        self._small_ts = timestamp_s

    def unchanged(self, image: Any, timestamp_s: float) -> bool:
        if self._ref_ts is None or not 0.0 <= timestamp_s - self._ref_ts < self.refresh_s:
            return False
        self._thumbnail(image, timestamp_s)
        cv2.absdiff(self._small, self._ref, dst=self._diff)
        moved = int(np.count_nonzero(self._diff > self.pixel_delta))
        return moved <= self.changed_fraction * self._diff.size

    def detected(self, image: Any, timestamp_s: float) -> None:
        """This frame went through the detector: it is the new reference."""
        self._thumbnail(image, timestamp_s)
        np.copyto(self._ref, self._small)
        self._ref_ts = timestamp_s


class CameraPipeline:
    """Detect, track and identify staff on the frames of one camera."""

    def __init__(
        self,
        camera_id: str,
        detector: Detector,
        tracker: Tracker,
        timer: StageTimer | None = None,
        idle: IdleGate | None = None,
        scenery: SceneryFilter | None = None,
        staff: TrackStage | None = None,
        flow: TrackFlow | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.detector = detector
        self.tracker = tracker
        # ignore polygons before the tracker, static scenery out of the tracks after it (edge/scenery.py)
        self.scenery = scenery
        # per-track attribute columns after tracking, timed as their own stage (edge/staff.py)
        self.staff = staff
        # where tracks are born and end, over the last hour, for /setup (edge/track_flow.py)
        self.flow = flow
        self.timer = timer or StageTimer()
        self.idle = idle
        self._last_detections: Detections | None = None
        self.frames_processed = 0

    def skip_detection(self, frame: Frame) -> bool:
        """True when the idle gate says the last detections still hold for this frame."""
        if self.idle is None or self._last_detections is None:
            return False
        return self.idle.unchanged(frame.image, frame.timestamp_s)

    def reuse_detections(self, frame: Frame) -> Detections | None:
        """The last detections when the idle gate says they still hold for this frame (the
        detector is skipped and the frame counted), else None: the frame needs the detector."""
        if not self.skip_detection(frame):
            return None
        assert self.idle is not None
        self.idle.skipped += 1
        return self._last_detections

    def add_detect_times(self, preprocess_ms: float, inference_ms: float, postprocess_ms: float) -> None:
        """Stage times of a detection made on another thread (edge.inference)."""
        self.timer.add("preprocess", preprocess_ms)
        self.timer.add("inference", inference_ms)
        self.timer.add("postprocess", postprocess_ms)

    def process(self, frame: Frame) -> Tracks:
        if self.skip_detection(frame):
            assert self.idle is not None and self._last_detections is not None
            self.idle.skipped += 1
            return self.track(frame, self._last_detections)
        result = timed_detect(self.detector, frame.image)
        self.add_detect_times(result.preprocess_ms, result.inference_ms, result.postprocess_ms)
        return self.track(frame, result.detections)

    def track(self, frame: Frame, detections: Detections) -> Tracks:
        """The tracking stage alone, for detections made elsewhere (a batch of cameras)."""
        if self.idle is not None and detections is not self._last_detections:
            self.idle.detected(frame.image, frame.timestamp_s)
            self._last_detections = detections
        t0 = time.perf_counter()
        if self.scenery is not None:
            detections = self.scenery.filter_detections(detections, (frame.width_px, frame.height_px))
        tracks = self.tracker.update(
            detections,
            camera_id=self.camera_id,
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            frame_size_px=(frame.width_px, frame.height_px),
            image=frame.image,
        )
        if self.scenery is not None:
            tracks = self.scenery.update(tracks, frame.image)
        if self.flow is not None:
            self.flow.update(tracks)
        self.timer.add("tracking", (time.perf_counter() - t0) * 1e3)
        if self.staff is not None:
            t1 = time.perf_counter()
            tracks = self.staff(tracks, frame.image)
            self.timer.add("staff", (time.perf_counter() - t1) * 1e3)
        self.frames_processed += 1
        return tracks


def detect_batch(detector: Any, pipelines: list[CameraPipeline], frames: list[Frame]) -> list[Detections]:
    """One ``session.run`` for frames of several cameras with the same input geometry; the
    stage times are shared out equally between the cameras' timers."""
    t0 = time.perf_counter()
    tensor, boxes = detector.preprocess_batch([f.image for f in frames])
    t1 = time.perf_counter()
    raw = detector.infer(tensor)
    t2 = time.perf_counter()
    out = [detector.postprocess(raw, box, k) for k, box in enumerate(boxes)]
    t3 = time.perf_counter()
    n = len(frames)
    for p in pipelines:
        p.timer.add("preprocess", (t1 - t0) * 1e3 / n)
        p.timer.add("inference", (t2 - t1) * 1e3 / n)
        p.timer.add("postprocess", (t3 - t2) * 1e3 / n)
    return out
