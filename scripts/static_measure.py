"""Measure how long real people go without moving their feet AND without pixel change in their box,
and the same for a poster composited into the footage. The static-scenery default (tracker.static_after_s)
must sit well above the first and well below the poster's life. Prints one row per track.

    python scripts/static_measure.py [--model yolox-nano] [--fps 5] VIDEO...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config import ModelConfig  # noqa: E402
from edge.detector import OnnxDetector  # noqa: E402
from edge.pipeline import FpsGate  # noqa: E402
from edge.scenery import SceneryFilter  # noqa: E402
from edge.sources import FileSource  # noqa: E402
from edge.tracker import ByteTracker  # noqa: E402


class Recorder(SceneryFilter):
    def __init__(self) -> None:
        super().__init__(static_after_s=1e9)
        self.best: dict[int, float] = {}
        self.life: dict[int, tuple[float, float]] = {}

    def _observe(self, tid, xyxy, crop, ts):  # type: ignore[no-untyped-def]
        r = super()._observe(tid, xyxy, crop, ts)
        st = self._tracks[tid]
        quiet = min(ts - st.still_since_s, ts - st.motion_at_s)
        self.best[tid] = max(self.best.get(tid, 0.0), quiet)
        a, _ = self.life.get(tid, (ts, ts))
        self.life[tid] = (a, ts)
        return r


def measure(video: str, model: str, fps: float) -> None:
    det = OnnxDetector.from_config(ModelConfig(name=model))
    tracker, rec, gate = ByteTracker(), Recorder(), FpsGate(fps)
    src = FileSource("m", video, start_epoch_s=0.0)
    for frame in src.frames():
        if not gate.due(frame.timestamp_s):
            continue
        tracks = tracker.update(det.detect(frame.image), camera_id="m", frame_index=frame.index,
                                timestamp_s=frame.timestamp_s, frame_size_px=(frame.width_px, frame.height_px))
        rec.update(tracks, frame.image)
    src.close()
    for tid in sorted(rec.best):
        a, b = rec.life[tid]
        print(f"{Path(video).name}\ttrack {tid}\tlife {b - a:6.1f} s\tlongest still+no-pixel-change {rec.best[tid]:5.1f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--fps", type=float, default=5.0)
    a = ap.parse_args()
    for v in a.videos:
        measure(v, a.model, a.fps)
