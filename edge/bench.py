"""Benchmark: the speed/accuracy frontier of the detectors, and N cameras at once.

Each row is one model x precision x geometry (``--model NAME[:PRECISION[:WIDTH]]``, e.g.
``yolov8n:int8:640``) and runs in a fresh subprocess (its peak RSS is its own). It prints:

* frames/s end to end through ``Runtime``, the loop of ``storesense analyze`` and ``run`` (decode
  at the analysis rate, letterbox, inference, decode + NMS, tracking, scenery), with the product's
  frames in flight (``model.parallel_frames``, or ``--parallel-frames``), on one clip;
* the bare ``session.run`` floor of that model at its own geometry, and the reference floor
  (YOLOv8n fp32 640x640) measured in the same subprocess, before and after the run: the box is
  shared and noisy, so only ratios within one run mean anything;
* the overhead of everything that is not ``session.run`` (% of the row's own floor);
* MOTA / IDF1 on ``../shared/devset/caviar-corridor`` from ``storesense evaluate``'s function.

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

from edge.errors import positive_float_arg, positive_int_arg
from edge.host import cpu_name, int8_note
from edge.resources import models_dir, videos_dir
from models.registry import ModelChoice

DEFAULT_VIDEO = "one-by-one-person-detection.mp4"
REFERENCE_FLOOR = ("yolov8n-640.onnx", (640, 640))
DEFAULT_FRONTIER = [
    "yolox-nano-416",
    "yolox-nano:fp32:416",
    "yolov8n-640",
    "yolov8n:fp32:640",
    "yolov8n:int8:640",
    "yolov8n:fp32:512",
    "yolo11n:fp32:640",
    "yolo11n:int8:640",
]


def _model_config(choice: ModelChoice, threads: int) -> Any:
    """The row's whole ``model:`` section: the choice on the defaults, nothing from a store."""
    from edge.config import ModelConfig

    return ModelConfig(**choice.update(), threads=threads)


def _floor_ms(run: Any, n: int) -> float:
    for _ in range(3):  # warm-up: first runs allocate arenas
        run()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _reference_session(threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(models_dir() / REFERENCE_FLOOR[0]), so, providers=["CPUExecutionProvider"])
    h, w = REFERENCE_FLOOR[1]
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def _bench_one(
    video: str, spec: str, n_cameras: int, frames: int, threads: int, analysis_fps: float | None,
    data_dir: str, accuracy: bool, parallel: int | None = None, floor_runs: int | None = None,
) -> dict[str, Any]:
    """One row: N copies of the clip through ``Runtime``, the loop ``storesense analyze`` and
    ``run`` use (frames in flight, scenery, staff and flow stages included), so the figure is the
    product's and not a hand-written loop's."""
    import cv2

    from edge.commands import default_store_config
    from edge.contract import Frame, Tracks
    from edge.pipeline import STAGES, StageTimer
    from edge.runtime import Runtime, build_detector, build_tracker, open_worker, parallel_frames
    from edge.sinks import MemorySink

    variant = ModelChoice.parse(spec)
    model_cfg = _model_config(variant, threads).model_copy(update={"parallel_frames": parallel})
    cap = cv2.VideoCapture(video)
    ok, first_image = cap.read()
    source_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read a frame from {video}")
    n_floor = floor_runs or max(20, min(frames, 60))
    reference = _reference_session(threads)
    ref_before = _floor_ms(reference, n_floor)
    floor, geometry = _own_floor(model_cfg, data_dir, first_image, n_floor)

    base = default_store_config(str(Path(video).resolve()))
    fps = analysis_fps or min(source_fps if source_fps > 0 else 10.0, 60.0)
    cameras = [base.cameras[0].model_copy(update={"id": f"cam-{i}", "fps": fps}) for i in range(n_cameras)]
    cfg = base.model_copy(update={"cameras": cameras, "model": model_cfg, "data_dir": str(Path(data_dir).resolve())})
    detector = build_detector(cfg, throughput=True)
    workers = [open_worker(cfg, cam, detector, build_tracker(cfg), start_epoch_s=0.0, setup_reports=False)
               for cam in cameras]
    counts = dict.fromkeys((c.id for c in cameras), 0)
    runtime: Runtime | None = None

    def count(tracks: Tracks, _frame: Frame) -> None:
        counts[tracks.camera_id] += 1
        if runtime is not None and min(counts.values()) >= frames:
            runtime.stop()

    runtime = Runtime(cfg, workers, MemorySink(), None, on_tracks=count, save_reference_frames=False)
    result = runtime.run()
    wall_s = result.wall_s
    done = sum(result.frames_processed.values())
    ref_after = _floor_ms(reference, n_floor)
    ref_ms = (ref_before + ref_after) / 2.0
    per_frame_ms = wall_s * 1e3 / max(done, 1)
    summary = StageTimer(window=done + 10).merge(result.timers.values()).summary()
    row: dict[str, Any] = {
        "model": variant.label(),
        "spec": spec,
        "geometry": f"{geometry[1]}x{geometry[0]}",
        "cameras": n_cameras,
        "threads": threads,
        "parallel_frames": parallel_frames(cfg, throughput=True),
        "frames": done,
        "fps_total": done / wall_s,
        "fps_per_camera": done / wall_s / n_cameras,
        "per_frame_ms": per_frame_ms,
        "floor_ms": floor,
        "floor_fps": 1e3 / floor,
        "ref_floor_ms": ref_ms,
        "ref_floor_spread_ms": abs(ref_after - ref_before),
        "x_ref_floor": (done / wall_s) / (1e3 / ref_ms),
        "overhead_pct": 100.0 * (per_frame_ms - floor) / floor,
        "stages": {k: summary[k] for k in STAGES if k in summary},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if accuracy:
        row.update(_accuracy(variant, threads, data_dir))
    return row


def _own_floor(model_cfg: Any, data_dir: str, image: Any, n: int) -> tuple[float, tuple[int, int]]:
    """The row's bare ``session.run`` at its own geometry, one frame at a time on every thread
    (the copy is dropped before the run, so it does not count in the row's RSS)."""
    from edge.detector import OnnxDetector

    probe = OnnxDetector.from_config(model_cfg.model_copy(update={"parallel_frames": None}), None, Path(data_dir))
    tensor, _ = probe.preprocess(image)
    return _floor_ms(lambda: probe.infer(tensor), n), (int(tensor.shape[2]), int(tensor.shape[3]))


def _accuracy(variant: ModelChoice, threads: int, data_dir: str) -> dict[str, Any]:
    """MOTA/IDF1 on the dev clip through ``storesense evaluate``'s function (if it is installed)."""
    try:
        from edge.evaluate import devset, evaluate
    except ImportError:
        return {"mota": None, "idf1": None, "accuracy_note": "storesense evaluate not available"}
    from edge.config import load_config

    case = devset("caviar-corridor")
    cfg = load_config(case.config)
    cfg.model = _model_config(variant, threads)
    cfg.data_dir = str(Path(data_dir).resolve())
    rep = evaluate(case.video, case.gt, config=cfg, ignore=case.ignore)
    return {"mota": rep.tracking.get("MOTA"), "idf1": rep.tracking.get("IDF1")}


def _worker(q: Any, *a: Any) -> None:
    try:
        q.put(_bench_one(*a))
    except Exception as exc:  # report, do not hang the parent
        q.put({"spec": a[1], "error": f"{type(exc).__name__}: {exc}"})


def bench_in_subprocess(*args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(q, *args))
    p.start()
    result: dict[str, Any] = q.get()
    p.join()
    return result


def _cell(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r.get('spec', '?')} | error: {r['error']} |"
    st = r["stages"]

    def cell(name: str) -> str:
        s = st.get(name)
        return f"{s['median_ms']:.1f}" if s else "-"

    return (
        f"| {r['model']} | {r['geometry']} | {r['cameras']} | {r.get('parallel_frames', 1)} | {r['fps_total']:.1f} | {r['floor_fps']:.1f} | "
        f"{r['overhead_pct']:.0f} % | {r['x_ref_floor']:.2f}x | {1e3 / r['ref_floor_ms']:.1f} | "
        f"{_cell(r.get('mota'))} | {_cell(r.get('idf1'))} | {cell('decode')} | {cell('preprocess')} | "
        f"{cell('inference')} | {cell('postprocess')} | {cell('tracking')} | {r['peak_rss_mb']:.0f} |"
    )


HEADER = (
    "| model precision width | input | cameras | frames in flight | frames/s end to end | own session.run floor (frames/s) | "
    "overhead vs own floor | x ref floor | ref floor yolov8n fp32 640x640 (frames/s) | MOTA | IDF1 | "
    "decode ms | preprocess | inference | postprocess | tracking | peak RSS MB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


# share of the measured capacity to plan on: the rest absorbs the decoding of live streams (a
# file decodes only what it needs) and busy hours (more people: more tracking and analytics)
SIZING_HEADROOM = 0.8


def sizing_line(row: dict[str, Any], analysis_fps: float) -> str:
    """README "Sizing a box" as a sentence for this box: cameras at ``analysis_fps`` it can take."""
    cameras = int(SIZING_HEADROOM * row["fps_total"] / analysis_fps)
    return (
        f"sizing: {row['model']} analysed {row['fps_total']:.1f} frames/s with {row['cameras']} cameras here, so plan "
        f"on at most {cameras} camera(s) at {analysis_fps:g} frames/s on this box ({SIZING_HEADROOM:.0%} of it; "
        "README, 'Sizing a box')"
    )


def run_bench(args: argparse.Namespace) -> int:
    video = args.video or str(videos_dir() / DEFAULT_VIDEO)
    if not Path(video).exists():
        from edge.errors import UserFacingError

        raise UserFacingError(f"benchmark video not found: {video}")
    specs = args.model or DEFAULT_FRONTIER
    for spec in specs:
        ModelChoice.parse(spec)  # a typo fails before minutes of benchmarking
    cameras = args.cameras or [1]
    rate = f"at {args.analysis_fps:g} analysis fps" if args.analysis_fps else "every frame analysed"
    print(
        f"video {Path(video).name}, {args.frames} frames per camera, {args.threads} ORT threads, {rate}; "
        f"accuracy on devset caviar-corridor{'' if not args.no_accuracy else ' skipped'}"
    )
    print(f"CPU: {cpu_name()}; {int8_note()}")
    print(HEADER, flush=True)
    rows = []
    for spec in specs:
        for n in cameras:
            r = bench_in_subprocess(
                video, spec, n, args.frames, args.threads, args.analysis_fps, args.data_dir,
                not args.no_accuracy and n == cameras[0], args.parallel_frames,
            )
            rows.append(r)
            print(format_row(r), flush=True)
    if args.analysis_fps:
        for r in rows:
            if "error" not in r and r["cameras"] > 1:
                print(sizing_line(r, args.analysis_fps))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--video", default=None, help="default: the sample clip in ../shared/videos")
    ap.add_argument(
        "--model", action="append",
        help="NAME[:fp32|int8[:WIDTH_PX]] (repeatable), e.g. yolov8n:int8:640; default: the frontier set",
    )
    ap.add_argument("--cameras", type=positive_int_arg, action="append", help="open the clip N times at once (repeatable)")
    ap.add_argument("--frames", type=positive_int_arg, default=300, help="frames per camera")
    ap.add_argument("--threads", type=positive_int_arg, default=2)
    ap.add_argument(
        "--parallel-frames", type=positive_int_arg, default=None,
        help="model.parallel_frames (default: the product's for a file analysed flat out, i.e. --threads)",
    )
    ap.add_argument("--analysis-fps", type=positive_float_arg, default=None, help="decode at this rate (default: every frame)")
    ap.add_argument("--data-dir", default="storesense-data", help="where int8 copies are cached")
    ap.add_argument("--no-accuracy", action="store_true", help="skip MOTA/IDF1 on the dev clip")
    ap.add_argument("--json", help="also write the rows as JSON")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    add_arguments(ap)
    return run_bench(ap.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
