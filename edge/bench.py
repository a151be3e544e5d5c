"""Benchmark: frames/s end to end, per-stage median/p95 ms, peak RSS, N cameras at once, and the
compute floor (a bare ``session.run`` loop on the same input) for comparison.

Each (model, cameras) configuration runs in a fresh subprocess so its peak RSS is its own.
Figures are printed, never asserted: performance belongs in benchmarks, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.resources import videos_dir

DEFAULT_VIDEO = "one-by-one-person-detection.mp4"


def _bench_one(video: str, model: str, n_cameras: int, frames: int, threads: int) -> dict[str, Any]:
    from edge.config import ModelConfig, TrackerConfig
    from edge.detector import OnnxDetector
    from edge.pipeline import STAGES, CameraPipeline, StageTimer
    from edge.sources import FileSource
    from edge.tracker import ByteTracker

    detector = OnnxDetector.from_config(ModelConfig(name=model, threads=threads), None)

    # compute floor first, before any decode thread exists: session.run only, same tensor, same threads
    import cv2

    cap = cv2.VideoCapture(video)
    ok, first_image = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read a frame from {video}")
    tensor, _ = detector.preprocess(first_image)
    for _ in range(5):  # warm-up: first runs allocate arenas
        detector.infer(tensor)
    floor_ms = []
    for _ in range(max(100, min(frames, 200))):
        t0 = time.perf_counter()
        detector.infer(tensor)
        floor_ms.append((time.perf_counter() - t0) * 1e3)

    sources = [FileSource(f"cam-{i}", video, start_epoch_s=0.0) for i in range(n_cameras)]
    iters = [s.frames() for s in sources]
    timer = StageTimer(window=frames * n_cameras + 10)
    pipes = [CameraPipeline(s.camera_id, detector, ByteTracker(TrackerConfig()), timer) for s in sources]

    done = 0
    t_start = time.perf_counter()
    for _ in range(frames):
        for it, pipe in zip(iters, pipes, strict=True):
            t0 = time.perf_counter()
            frame = next(it, None)
            timer.add("decode", (time.perf_counter() - t0) * 1e3)
            if frame is None:
                continue
            pipe.process(frame)
            done += 1
    wall_s = time.perf_counter() - t_start
    for s in sources:
        s.close()
    summary = timer.summary()
    per_frame_ms = wall_s * 1e3 / max(done, 1)
    floor_median = float(np.median(floor_ms))
    return {
        "model": model,
        "cameras": n_cameras,
        "threads": threads,
        "frames": done,
        "fps_total": done / wall_s,
        "fps_per_camera": done / wall_s / n_cameras,
        "per_frame_ms": per_frame_ms,
        "floor_ms": floor_median,
        "floor_fps": 1e3 / floor_median,
        "overhead_pct": 100.0 * (per_frame_ms - floor_median) / floor_median,
        "stages": {k: summary[k] for k in STAGES if k in summary},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _worker(q: Any, *a: Any) -> None:
    try:
        q.put(_bench_one(*a))
    except Exception as exc:  # report, do not hang the parent
        q.put({"error": f"{type(exc).__name__}: {exc}"})


def bench_in_subprocess(video: str, model: str, n_cameras: int, frames: int, threads: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(q, video, model, n_cameras, frames, threads))
    p.start()
    result: dict[str, Any] = q.get()
    p.join()
    return result


def format_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    st = r["stages"]

    def cell(name: str) -> str:
        s = st.get(name)
        return f"{s['median_ms']:.1f}/{s['p95_ms']:.1f}" if s else "-"

    return (
        f"| {r['model']} | {r['cameras']} | {r['fps_total']:.1f} | {r['fps_per_camera']:.1f} | {r['floor_fps']:.1f} | "
        f"{r['overhead_pct']:.0f} % | {cell('decode')} | {cell('preprocess')} | {cell('inference')} | "
        f"{cell('postprocess')} | {cell('tracking')} | {r['peak_rss_mb']:.0f} |"
    )


HEADER = (
    "| model | cameras | frames/s total | frames/s per camera | session.run floor (frames/s) | overhead vs floor | "
    "decode ms (med/p95) | preprocess | inference | postprocess | tracking | peak RSS MB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def run_bench(args: argparse.Namespace) -> int:
    video = args.video or str(videos_dir() / DEFAULT_VIDEO)
    if not Path(video).exists():
        from edge.errors import UserFacingError

        raise UserFacingError(f"benchmark video not found: {video}")
    models = args.model or ["yolox-nano-416"]
    cameras = args.cameras or [1]
    print(f"video {Path(video).name}, {args.frames} frames per camera, {args.threads} ORT threads, "
          f"every frame analysed (no fps gate)")
    print(HEADER, flush=True)
    rows = []
    for model in models:
        for n in cameras:
            r = bench_in_subprocess(video, model, n, args.frames, args.threads)
            rows.append(r)
            print(format_row(r), flush=True)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--video")
    ap.add_argument("--model", action="append")
    ap.add_argument("--cameras", type=int, action="append")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    return run_bench(ap.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
