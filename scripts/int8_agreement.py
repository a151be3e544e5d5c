"""How closely a model's int8 copy follows its fp32 graph, on whole frames and on smaller people.

    python scripts/int8_agreement.py [--model yolov8n] [--data-dir storesense-data]

The quantiser's own check (``models.quantize.agreement``: recall and precision of the fp32 person
boxes at IoU 0.5, mean score change) on frames of ../shared/videos other than the calibration
frames, then on 768x576 mosaics of 2x2 and 3x3 of those frames: the same people at a half and a
third of their size, more of them per frame, as on a camera mounted higher or farther away.
int8 loses small, low-contrast people first, and the shared clips show mostly large ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config import ModelConfig  # noqa: E402
from edge.detector import OnnxDetector  # noqa: E402
from edge.resources import videos_dir  # noqa: E402
from models.quantize import agreement, sample_frames, video_files  # noqa: E402

MOSAIC_PX = (768, 576)


def mosaics(frames: list[np.ndarray], side: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` mosaics of ``side`` x ``side`` frames drawn at random, each tile resized to fit."""
    rng = np.random.default_rng(seed)
    tile_w, tile_h = MOSAIC_PX[0] // side, MOSAIC_PX[1] // side
    out = []
    for _ in range(n):
        picks = rng.choice(len(frames), side * side, replace=len(frames) < side * side)
        tiles = [cv2.resize(frames[i], (tile_w, tile_h), interpolation=cv2.INTER_AREA) for i in picks]
        out.append(np.vstack([np.hstack(tiles[r * side:(r + 1) * side]) for r in range(side)]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n", help="a model family with precision: int8")
    ap.add_argument("--data-dir", default="storesense-data", help="where the int8 copy is cached (made on first use)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--mosaics", type=int, default=60, help="per mosaic size")
    ap.add_argument("--confidence", type=float, default=0.25)
    ap.add_argument("--json")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    fp32 = OnnxDetector.from_config(ModelConfig(name=args.model, confidence_threshold=args.confidence), None, data_dir)
    int8 = OnnxDetector.from_config(
        ModelConfig(name=args.model, precision="int8", confidence_threshold=args.confidence), None, data_dir
    )
    frames = sample_frames(video_files(videos_dir()), args.frames, offset=0.25)  # off the calibration frames
    if not frames:
        raise SystemExit(f"no frames could be read from {videos_dir()}")
    sets = {"frames": frames, "mosaic 2x2": mosaics(frames, 2, args.mosaics),
            "mosaic 3x3": mosaics(frames, 3, args.mosaics, seed=1)}
    rows = {name: agreement(fp32, int8, images) for name, images in sets.items()}
    print(f"{args.model} int8 against fp32, persons at conf {args.confidence:g}, IoU 0.5")
    print("| images | n | fp32 boxes | int8 boxes | recall of fp32 | precision vs fp32 | mean abs score change |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {int(r['frames'])} | {int(r['fp32_boxes'])} | {int(r['int8_boxes'])} | "
              f"{r['recall_vs_fp32']:.3f} | {r['precision_vs_fp32']:.3f} | {r['mean_abs_score_delta']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
