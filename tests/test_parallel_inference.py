"""Frames in flight on the detector's worker threads (edge/inference.py, Runtime._run_parallel):
the same tracks as one frame at a time, in order, fair between cameras, failures counted, no
frame lost when the run stops, and statuses that count every frame."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import parse_config
from edge.contract import Detections, Frame, Tracks
from edge.inference import ParallelDetector
from edge.runtime import Runtime, build_detector, build_tracker, open_worker, parallel_frames
from edge.sinks import MemorySink
from tests.mjpeg import MjpegServer, jpegs_of
from tests.test_runtime import FailsOnFrame, _store


def _cfg(tmp_path: Path, cameras: str, model: str = "{name: yolox-nano-416, threads: 2}") -> Any:
    return parse_config(_store(tmp_path, cameras, extra=f"model: {model}\n"))


def _track_log(cfg: Any, *, throughput: bool = True) -> tuple[list[tuple[str, int, tuple[int, ...], tuple[float, ...]]], Any,
                                                          MemorySink]:
    detector = build_detector(cfg, throughput=throughput)
    workers = [open_worker(cfg, cam, detector, build_tracker(cfg)) for cam in cfg.cameras]
    seen: list[tuple[str, int, tuple[int, ...], tuple[float, ...]]] = []

    def on_tracks(tracks: Tracks, frame: Frame) -> None:
        seen.append((frame.camera_id, frame.index, tuple(int(i) for i in tracks.track_id),
                     tuple(np.round(tracks.xyxy.reshape(-1), 2).tolist())))

    sink = MemorySink()
    summary = Runtime(cfg, workers, sink, analytics=None, on_tracks=on_tracks, save_reference_frames=False).run()
    return seen, summary, sink


def test_two_frames_in_flight_give_the_tracks_of_one_at_a_time(tmp_path: Path, videos_path: Path) -> None:
    gif = videos_path / "store-aisle-detection.gif"
    cams = f"- {{id: aisle, source: {gif}, fps: 20}}\n"  # every frame (16.7 fps file)
    # single-threaded sessions on both sides: the same arithmetic, so any difference is the loop's
    one_at_a_time, s1, _ = _track_log(_cfg(tmp_path, cams, "{name: yolox-nano-416, threads: 1}"))
    in_flight, s2, _ = _track_log(_cfg(tmp_path, cams, "{name: yolox-nano-416, threads: 2, parallel_frames: 2}"))
    n = s1.frames_processed["aisle"]
    assert n > 30 and s2.frames_processed == {"aisle": n}
    assert [f for _, f, _, _ in in_flight] == list(range(n))  # tracked in frame order
    assert in_flight == one_at_a_time
    assert sum(len(ids) for _, _, ids, _ in in_flight) > 60  # people were tracked, not an empty run


def test_cameras_take_turns_and_every_status_counts_its_frames(tmp_path: Path, videos_path: Path) -> None:
    gif = videos_path / "people-detection.gif"
    cfg = _cfg(tmp_path, f"- {{id: a, source: {gif}, fps: 12.5}}\n- {{id: b, source: {gif}, fps: 12.5}}\n"
                         f"- {{id: c, source: {gif}, fps: 12.5}}\n")
    assert parallel_frames(cfg) == 2  # several cameras: frames in flight by default
    seen, summary, sink = _track_log(cfg, throughput=False)
    assert summary.frames_processed == {"a": 23, "b": 23, "c": 23}
    order = [cam for cam, *_ in seen]
    for k in range(0, len(order), 3):  # round-robin: no camera gets a second frame before the others
        assert sorted(order[k : k + 3]) == ["a", "b", "c"], order
    for cam in "abc":
        statuses = [m.payload for m in sink.messages if m.kind == "camera_status" and m.payload["camera_id"] == cam]
        ended = [s for s in statuses if s["state"] == "ended"]
        assert ended and ended[0]["frames_total"] == 23, statuses  # not reported with frames still in flight
        assert ended[0]["reason"] == "end of file"
        running = [s for s in statuses if s["state"] == "running"]
        assert running and running[0]["frames_total"] >= 1


def test_a_frame_failing_on_a_worker_is_counted_and_the_camera_goes_on(tmp_path: Path, videos_path: Path) -> None:
    gif = videos_path / "people-detection.gif"
    cfg = _cfg(tmp_path, f"- {{id: aisle, source: {gif}, fps: 12.5}}\n", "{name: yolox-nano-416, threads: 1}")
    # each lane fails on its own 3rd/4th call: two frames fail, whichever lane gets them
    detector = ParallelDetector([FailsOnFrame(build_detector(cfg), {3}), FailsOnFrame(build_detector(cfg), {4})])
    worker = open_worker(cfg, cfg.cameras[0], detector, build_tracker(cfg))
    sink = MemorySink()
    summary = Runtime(cfg, [worker], sink, analytics=None, save_reference_frames=False).run()
    assert summary.errors["aisle"] == 2
    assert summary.frames_processed["aisle"] == 21
    last = [m.payload for m in sink.messages if m.kind == "camera_status"][-1]
    assert last["errors"] == 2 and "corrupt frame" in last["last_error"]


def test_stopping_analyses_the_frames_already_taken(tmp_path: Path, videos_path: Path) -> None:
    clip = videos_path / "one-by-one-person-detection.mp4"
    cfg = _cfg(tmp_path, f"- {{id: door, source: {clip}, fps: 10}}\n")
    detector = build_detector(cfg, throughput=True)
    assert isinstance(detector, ParallelDetector) and detector.workers == 2
    worker = open_worker(cfg, cfg.cameras[0], detector, build_tracker(cfg))
    taken = 0
    next_frame = worker.next_frame

    def counting_next_frame() -> Frame | None:
        nonlocal taken
        frame = next_frame()
        taken += frame is not None
        return frame

    worker.next_frame = counting_next_frame  # type: ignore[method-assign]
    runtime = Runtime(cfg, [worker], MemorySink(), analytics=None, save_reference_frames=False)
    threading.Timer(1.5, runtime.stop).start()
    summary = runtime.run()
    assert 0 < summary.frames_processed["door"] < worker.source.frame_count  # type: ignore[attr-defined]
    assert summary.frames_processed["door"] == taken  # every frame taken was tracked
    assert summary.errors["door"] == 0


class _Lane:
    """A detector that records the thread each call comes from; each frame takes ``sleep_s``."""

    def __init__(self, sleep_s: float = 0.01) -> None:
        self.threads: set[int] = set()
        self.prepared: list[tuple[int, int]] = []
        self.sleep_s = sleep_s

    def preprocess(self, image: Any) -> tuple[Any, Any]:
        self.threads.add(threading.get_ident())
        time.sleep(self.sleep_s)
        return image, None

    def infer(self, tensor: Any) -> Any:
        self.threads.add(threading.get_ident())
        return tensor

    def postprocess(self, raw: Any, letterbox: Any) -> Detections:
        self.threads.add(threading.get_ident())
        return Detections.empty()

    def prepare(self, width_px: int, height_px: int) -> None:
        self.prepared.append((width_px, height_px))


def test_each_lane_is_used_by_one_worker_thread_only() -> None:
    lanes = [_Lane(), _Lane()]
    detector = ParallelDetector(lanes)
    detector.prepare(640, 480)
    assert [lane.prepared for lane in lanes] == [[(640, 480)], [(640, 480)]]
    futures = [detector.submit(np.zeros((4, 4, 3), np.uint8)) for _ in range(20)]
    results = [f.result(timeout=10) for f in futures]
    detector.close()
    assert all(len(r.detections) == 0 and r.preprocess_ms >= 5.0 for r in results)
    used = [lane.threads for lane in lanes]
    assert all(len(t) == 1 for t in used), used  # a lane's buffers are never shared between threads
    assert used[0] != used[1]
    assert threading.get_ident() not in used[0] | used[1]


@pytest.mark.parametrize(
    ("model", "cameras", "throughput", "expected"),
    [
        ("{threads: 2}", 1, False, 1),  # one live camera: every thread on each frame (latency)
        ("{threads: 2}", 1, True, 2),  # a file analysed flat out
        ("{threads: 2}", 3, False, 2),
        ("{threads: 4}", 3, False, 4),
        ("{threads: 2, batch_cameras: true}", 3, False, 1),
        ("{threads: 2, parallel_frames: 1}", 3, True, 1),
        ("{threads: 1, parallel_frames: 2}", 3, True, 1),  # never more frames than threads
    ],
)
def test_frames_in_flight_by_default(tmp_path: Path, model: str, cameras: int, throughput: bool, expected: int) -> None:
    cams = "".join(f"- {{id: c{i}, source: rtsp://cam{i}/live, fps: 5}}\n" for i in range(cameras))
    cfg = parse_config(_store(tmp_path, cams, extra=f"model: {model}\n"))
    assert parallel_frames(cfg, throughput=throughput) == expected


def _peak_in_flight(cfg: Any, seconds: float) -> tuple[int, int]:
    """Run ``cfg``'s cameras on two slow detector lanes (0.1 s a frame: fewer than are due) for
    ``seconds``; the most frames in flight seen after any pass, and the frames tracked."""
    detector = ParallelDetector([_Lane(0.1), _Lane(0.1)])
    workers = [open_worker(cfg, cam, detector, build_tracker(cfg)) for cam in cfg.cameras]
    runtime = Runtime(cfg, workers, MemorySink(), analytics=None, save_reference_frames=False)
    peak = 0
    take = runtime._take_frames

    def recording_take(capacity: int) -> int:
        nonlocal peak
        taken = take(capacity)
        peak = max(peak, runtime._frames_in_flight())
        return taken

    runtime._take_frames = recording_take  # type: ignore[method-assign]
    threading.Timer(seconds, runtime.stop).start()
    summary = runtime.run()
    detector.close()
    return peak, sum(summary.frames_processed.values())


def test_live_cameras_queue_no_frame_ahead_of_the_workers(tmp_path: Path, videos_path: Path) -> None:
    """A live frame queued behind busy workers waits a whole inference after it was taken: pure
    latency. Files keep one queued (no clock to keep); live cameras take a frame only for a free
    worker."""
    server = MjpegServer(jpegs_of(videos_path / "one-by-one-person-detection.mp4", 20), frame_interval_s=0.05,
                         cameras=3)
    try:
        cams = "".join(f"- {{id: live{i}, source: {server.camera_url(i)}, fps: 10}}\n" for i in range(3))
        live_peak, live_frames = _peak_in_flight(_cfg(tmp_path, cams), 3.0)
    finally:
        server.close()
    clip = videos_path / "one-by-one-person-detection.mp4"
    files = "".join(f"- {{id: file{i}, source: {clip}, fps: 10}}\n" for i in range(3))
    file_peak, file_frames = _peak_in_flight(_cfg(tmp_path, files), 1.5)
    assert live_frames > 10 and file_frames > 10  # the lanes were busy, not idle
    assert (live_peak, file_peak) == (2, 3)
