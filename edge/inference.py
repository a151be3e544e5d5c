"""Several frames on the detector at once, one detector copy per worker thread.

Why: on a small CPU one ``session.run`` with two intra-op threads leaves cores idle at every
operator boundary (the threads meet, split the next operator, meet again), and the letterbox,
box decode, NMS and tracking around it run on one core while the other waits. Two frames in
flight, each on its own single-threaded session, keep both cores busy: measured on the 2-core
box, ``storesense analyze`` ran 1.10-1.15x faster (README, Benchmarks). The price is latency:
one frame takes about the time of a single-threaded run, so a single live camera keeps one frame
in flight (``model.parallel_frames``).

ONNX Runtime releases the GIL inside ``session.run``, so worker threads are enough; each owns
its detector (its sessions and its preallocated letterbox buffers, which are not thread-safe).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from edge.contract import Detections
from edge.pipeline import Detector, DetectResult, timed_detect


class ParallelDetector:
    """``lanes`` are copies of one detector (same model and settings, own sessions); lane k is
    used only by worker thread k. The first lane also serves the synchronous :class:`Detector`
    calls (a camera processed on the loop's own thread) and answers geometry questions."""

    def __init__(self, lanes: Sequence[Detector]) -> None:
        if not lanes:
            raise ValueError("ParallelDetector needs at least one detector")
        self.lanes = list(lanes)
        self.primary = self.lanes[0]
        self._local = threading.local()
        self._next_lane = itertools.count()
        self._lane_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(len(self.lanes), thread_name_prefix="detector", initializer=self._bind_lane)

    @property
    def workers(self) -> int:
        return len(self.lanes)

    def _bind_lane(self) -> None:
        with self._lane_lock:
            self._local.lane = self.lanes[next(self._next_lane) % len(self.lanes)]

    # -- the Detector protocol, on the primary lane (the loop's own thread) ---------------
    def preprocess(self, image_bgr: Any) -> tuple[Any, Any]:
        return self.primary.preprocess(image_bgr)

    def infer(self, tensor: Any) -> Any:
        return self.primary.infer(tensor)

    def postprocess(self, raw: Any, letterbox: Any) -> Detections:
        return self.primary.postprocess(raw, letterbox)

    def prepare(self, width_px: int, height_px: int) -> None:
        """Open every lane's session for this frame size (see ``OnnxDetector.prepare``)."""
        for lane in self.lanes:
            prepare = getattr(lane, "prepare", None)
            if prepare is not None:
                prepare(width_px, height_px)

    # -- frames in flight --------------------------------------------------------------------
    def submit(self, image_bgr: Any) -> Future[DetectResult]:
        """Detect on a worker thread; the image must not be written to until the future is done
        (sources hand out a new array per frame)."""
        return self._pool.submit(self._detect, image_bgr)

    def _detect(self, image_bgr: Any) -> DetectResult:
        return timed_detect(self._local.lane, image_bgr)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __getattr__(self, name: str) -> Any:
        # name, licence, precision, geometry_for, ... : the lanes are copies, the primary answers
        if name in ("lanes", "primary", "_local", "_pool", "_next_lane", "_lane_lock"):
            raise AttributeError(name)
        return getattr(self.primary, name)
