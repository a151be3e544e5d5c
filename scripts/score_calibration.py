"""Per-model tracker score thresholds from measured score distributions (models/registry.py defaults).

    python scripts/score_calibration.py [--models yolox-nano-416 yolov8n-640 ...] [--cache DIR]

Why: ByteTrack's thresholds (high 0.5 / new track 0.6 / low 0.1) were set for YOLOX detectors. Other
detectors score the same people differently (YOLOv8/YOLO11 have no objectness; a smaller input scores
small people lower), so the same number means a different share of real people on another model.

How:
1. Every model runs (confidence floor 0.1) on frames sampled from all the shared footage: the five
   clips of ../shared/videos (a store aisle, a worker zone, a table people walk up to, people walking
   and pausing) and the CAVIAR dev clip.
2. *People* are the detections that at least two other models also find (IoU >= 0.5, score >= 0.3):
   no ground truth is needed, and no single model decides.
3. YOLOX-Nano is the reference (ByteTrack's thresholds are YOLOX's): the share of its people scoring
   below ByteTrack's high threshold 0.5 is measured; each model's high threshold is the score below
   which the *same share* of its own people falls (quantile matching), rounded to 0.05. The new-track
   threshold is high + 0.1 (ByteTrack's rule); the low threshold stays 0.1 for every model: it is the
   detector floor, and stage 2 only lets such detections keep a track they overlap by IoU >= 0.5.
   The share is small (a few percent), so the estimate rests on the tail of a few hundred people:
   the script also prints it at twice the share, as a check of how stable it is.
Prints the table that models/registry.py carries, and the score quantiles behind it.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import ModelConfig
from edge.evaluate import iou_pairs
from edge.resources import shared_dir, videos_dir

MODELS = ["yolox-nano-416", "yolov8n-640", "yolov8n-320", "yolov8n-640-int8", "yolo11n-640", "yolo11n-320"]
REFERENCE = "yolox-nano-416"
REFERENCE_HIGH = 0.5
CLIPS = [  # (file, take every n-th frame)
    ("one-by-one-person-detection.mp4", 14),
    ("people-detection.gif", 1),
    ("store-aisle-detection.gif", 2),
    ("worker-zone-detection.gif", 2),
    ("face-demographics-walking-and-pause.gif", 1),
]


def frames() -> list[tuple[str, int, Any]]:
    paths = [(videos_dir() / name, step) for name, step in CLIPS]
    paths.append((shared_dir() / "devset" / "caviar-corridor" / "video.avi", 8))
    out = []
    for path, step in paths:
        cap = cv2.VideoCapture(str(path))
        k = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if k % step == 0:
                out.append((path.name, k, img))
            k += 1
        cap.release()
    return out


def detections(model: str, imgs: list[tuple[str, int, Any]], cache: Path | None) -> list[Any]:
    from edge.detector import OnnxDetector

    path = cache / f"survey-{model}.pkl" if cache else None
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    det = OnnxDetector.from_config(ModelConfig(name=model, confidence_threshold=0.1))
    res = [(name, k, det.detect(img)) for name, k, img in imgs]
    if path is not None:
        path.write_bytes(pickle.dumps(res))
    return res


def people_scores(runs: dict[str, list[Any]], model: str) -> np.ndarray:
    """Scores of ``model``'s detections that at least two other models confirm."""
    scores = []
    for i, (_, _, d) in enumerate(runs[model]):
        if len(d) == 0:
            continue
        votes = np.zeros(len(d), int)
        for other, res in runs.items():
            if other == model:
                continue
            o = res[i][2]
            keep = o.confidence >= 0.3
            if keep.any():
                votes += (iou_pairs(d.xyxy.astype(float), o.xyxy[keep].astype(float)).max(1) >= 0.5).astype(int)
        scores.extend(d.confidence[votes >= 2].tolist())
    return np.array(scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--cache", type=Path, help="keep each model's detections here (re-runs are instant)")
    args = ap.parse_args()
    models = list(dict.fromkeys([REFERENCE, *args.models]))
    imgs = frames()
    print(f"{len(imgs)} frames from {len(CLIPS) + 1} clips")
    runs = {m: detections(m, imgs, args.cache) for m in models}
    ref = people_scores(runs, REFERENCE)
    share = float(np.mean(ref < REFERENCE_HIGH))
    print(f"reference {REFERENCE}: {len(ref)} people; {share:.1%} of them score below {REFERENCE_HIGH}")
    print(f"| model | people | score p2 / p5 / p10 / p50 | high (at {share:.1%}) | at {2 * share:.1%} | new track | low |")
    print("|---|---|---|---|---|---|---|")
    for m in models:
        s = people_scores(runs, m)
        high = round(float(np.quantile(s, share)) / 0.05) * 0.05
        check = float(np.quantile(s, 2 * share))
        q = np.quantile(s, [0.02, 0.05, 0.1, 0.5])
        print(f"| {m} | {len(s)} | {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} / {q[3]:.2f} | {high:.2f} | {check:.2f} | "
              f"{high + 0.1:.2f} | 0.10 |")


if __name__ == "__main__":
    main()
