#!/usr/bin/env python3
"""Issue 11 acceptance, as ratios within one run on a shared, noisy box.

    python scripts/speed_acceptance.py --repeats 3

For each clip (the 16:9 sample clip, and a 4:3 768x576 clip made from it at run time: centre
crop to 4:3, resized) and each model config (``{name: yolov8n, precision: int8}`` and the fp32
square ``yolov8n-640``), runs ``storesense analyze`` in a subprocess and reads its frames/s;
the yolov8n fp32 640x640 ``session.run`` floor is measured right before and after each analyze
run in this process, and the ratio analyze/floor is printed per repeat with its spread. Then
MOTA/IDF1 of both configs on ../shared/devset/caviar-corridor through ``storesense evaluate``'s
function. The int8 copy is quantised once into ``--data-dir`` (first use) before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.bench import _floor_ms, _reference_session  # noqa: E402
from edge.resources import videos_dir  # noqa: E402

MODELS = {"yolov8n-int8": "{name: yolov8n, precision: int8}", "yolov8n-640-fp32": "{name: yolov8n-640}"}


def make_clips(tmp: Path, frames: int) -> dict[str, Path]:
    src = videos_dir() / "one-by-one-person-detection.mp4"
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    wide = cv2.VideoWriter(str(tmp / "wide-768x432.avi"), cv2.VideoWriter_fourcc(*"MJPG"), fps, (768, 432))
    four3 = cv2.VideoWriter(str(tmp / "4x3-768x576.avi"), cv2.VideoWriter_fourcc(*"MJPG"), fps, (768, 576))
    for _ in range(frames):
        ok, img = cap.read()
        if not ok:
            break
        wide.write(img)
        h, w = img.shape[:2]
        cw = h * 4 // 3
        x0 = (w - cw) // 2
        four3.write(cv2.resize(img[:, x0 : x0 + cw], (768, 576), interpolation=cv2.INTER_LINEAR))
    wide.release()
    four3.release()
    cap.release()
    return {"16:9 768x432": tmp / "wide-768x432.avi", "4:3 768x576": tmp / "4x3-768x576.avi"}


def write_config(tmp: Path, key: str, model: str, clip: Path, data_dir: Path) -> Path:
    p = tmp / f"{key}.yaml"
    p.write_text(
        f"version: 1\nstore: {{id: accept}}\nmodel: {model}\ncameras:\n  - {{id: cam, source: {clip}, fps: 5}}\n"
        f"mqtt: {{enabled: false}}\ndata_dir: {data_dir}\n"
    )
    return p


def analyze_fps(clip: Path, config: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--log-level", "WARNING", "analyze", str(clip), "--config", str(config),
         "--no-progress", "--no-history"],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,  # cwd: -m puts it first on sys.path
    ).stdout
    m = re.search(r"\(([\d.]+) frames/s\)", out)
    if m is None:
        raise RuntimeError(f"no frames/s in analyze output: {out!r}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300, help="frames of each clip (10 fps source)")
    ap.add_argument("--data-dir", default="storesense-data")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--accuracy-only", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="storesense-accept-"))
    data_dir = Path(args.data_dir).resolve()
    clips = make_clips(tmp, args.frames)
    # quantise (first use) outside the timed runs
    from edge.config import ModelConfig
    from edge.detector import OnnxDetector

    OnnxDetector.from_config(ModelConfig(name="yolov8n", precision="int8"), None, data_dir)
    reference = _reference_session(2)
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(0 if args.accuracy_only else args.repeats):
        for clip_name, clip in clips.items():
            for key, model in MODELS.items():
                cfg = write_config(tmp, key, model, clip, data_dir)
                before = _floor_ms(reference, 20)
                fps = analyze_fps(clip, cfg)
                after = _floor_ms(reference, 20)
                floor_fps = 1e3 / ((before + after) / 2.0)
                results.setdefault(f"{clip_name} {key}", {"ratio": [], "fps": [], "floor_fps": []})
                r = results[f"{clip_name} {key}"]
                r["ratio"].append(fps / floor_fps)
                r["fps"].append(fps)
                r["floor_fps"].append(floor_fps)
                print(f"{clip_name} {key}: analyze {fps:.2f} frames/s, floor {floor_fps:.2f} -> {fps / floor_fps:.2f}x",
                      flush=True)
    print("\n| clip, model | analyze / yolov8n fp32 640x640 floor (median, min-max over repeats) | analyze frames/s |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {np.median(r['ratio']):.2f}x ({min(r['ratio']):.2f}-{max(r['ratio']):.2f}) | "
              f"{np.median(r['fps']):.2f} |")
    doc: dict[str, object] = {"speed": results}
    if not args.no_accuracy:
        from edge.config import load_config
        from edge.evaluate import devset, evaluate

        case = devset("caviar-corridor")
        acc = {}
        for key, model in (("yolov8n int8", ModelConfig(name="yolov8n", precision="int8")),
                           ("yolov8n fp32 (same geometry)", ModelConfig(name="yolov8n")),
                           ("yolov8n-640 fp32 square", ModelConfig(name="yolov8n-640"))):
            cfg = load_config(case.config)
            cfg.model = model
            cfg.data_dir = str(data_dir)
            t0 = time.time()
            rep = evaluate(case.video, case.gt, config=cfg, ignore=case.ignore)
            acc[key] = {"mota": rep.tracking.get("MOTA"), "idf1": rep.tracking.get("IDF1"), "wall_s": time.time() - t0}
            print(f"devset caviar-corridor {key}: MOTA {acc[key]['mota']:.3f} IDF1 {acc[key]['idf1']:.3f}", flush=True)
        doc["accuracy"] = acc
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
