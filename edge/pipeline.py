"""Per-camera pipeline: decide which frames to analyse, detect, track. One verb per stage.

The detector is shared by every camera of the store (one ONNX Runtime session: the CPU is the
bottleneck on an edge box, and one session with all cores beats several fighting for them);
the tracker is per camera.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.contract import Detections, Frame, Tracks

STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "analytics")


class Detector(Protocol):
    """What the pipeline needs of a detector; three calls so each stage can be timed."""

    def preprocess(self, image_bgr: Any) -> tuple[Any, Any]: ...

    def infer(self, tensor: Any) -> Any: ...

    def postprocess(self, raw: Any, letterbox: Any) -> Detections: ...


class Tracker(Protocol):
    def update(
        self,
        detections: Detections,
        *,
        camera_id: str,
        frame_index: int,
        timestamp_s: float,
        frame_size_px: tuple[int, int],
    ) -> Tracks: ...


@dataclass
class StageTimer:
    """Milliseconds per stage over the last ``window`` frames (bounded: flat memory 24/7)."""

    window: int = 5000
    samples_ms: dict[str, deque[float]] = field(default_factory=dict)
    # also told every sample (the Prometheus latency histograms); None outside `storesense run`
    on_sample: Callable[[str, float], None] | None = None

    def add(self, stage: str, ms: float) -> None:
        if self.on_sample is not None:
            self.on_sample(stage, ms)
        if stage not in self.samples_ms:
            self.samples_ms[stage] = deque(maxlen=self.window)
        self.samples_ms[stage].append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage in STAGES:
            s = self.samples_ms.get(stage)
            if s:
                arr = np.fromiter(s, dtype=np.float64)
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
                for v in s:
                    merged.add(stage, v)
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


class CameraPipeline:
    """Detect and track on the frames of one camera."""

    def __init__(self, camera_id: str, detector: Detector, tracker: Tracker, timer: StageTimer | None = None) -> None:
        self.camera_id = camera_id
        self.detector = detector
        self.tracker = tracker
        self.timer = timer or StageTimer()
        self.frames_processed = 0

    def process(self, frame: Frame) -> Tracks:
        t0 = time.perf_counter()
        tensor, letterbox = self.detector.preprocess(frame.image)
        t1 = time.perf_counter()
        raw = self.detector.infer(tensor)
        t2 = time.perf_counter()
        detections = self.detector.postprocess(raw, letterbox)
        t3 = time.perf_counter()
        self.timer.add("preprocess", (t1 - t0) * 1e3)
        self.timer.add("inference", (t2 - t1) * 1e3)
        self.timer.add("postprocess", (t3 - t2) * 1e3)
        return self.track(frame, detections)

    def track(self, frame: Frame, detections: Detections) -> Tracks:
        """The tracking stage alone, for detections made elsewhere (a batch of cameras)."""
        t0 = time.perf_counter()
        tracks = self.tracker.update(
            detections,
            camera_id=self.camera_id,
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            frame_size_px=(frame.width_px, frame.height_px),
        )
        self.timer.add("tracking", (time.perf_counter() - t0) * 1e3)
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
