"""Median milliseconds of preprocess / infer / postprocess per registry model on one image.

A figure for MODELS.md-style comparisons and for choosing a model for a box; never asserted in
tests. Usage: ``python scripts/detector_latency.py [--threads 2] [--runs 30] [--image bus.jpg]``.
"""

from __future__ import annotations

import argparse
import statistics

import cv2

from edge.config import ModelConfig
from edge.detector import OnnxDetector
from edge.pipeline import timed_detect
from edge.resources import images_dir
from models.registry import REGISTRY


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--image", default="bus.jpg")
    ap.add_argument("--models", nargs="*", default=list(REGISTRY))
    args = ap.parse_args()
    image = cv2.imread(str(images_dir() / args.image))
    if image is None:
        raise SystemExit(f"cannot read {images_dir() / args.image}")
    conf = ModelConfig().confidence_threshold
    print(
        f"image {args.image} {image.shape[1]}x{image.shape[0]}, threads={args.threads}, "
        f"confidence_threshold={conf} (config default), median of {args.runs}"
    )
    print(f"{'model':18s} {'preprocess':>11s} {'infer':>9s} {'postproc':>9s} {'total':>9s}  detections")
    for name in args.models:
        det = OnnxDetector.from_config(ModelConfig(name=name, threads=args.threads))
        pre, inf, post = [], [], []
        n = 0
        for i in range(args.runs + 3):
            r = timed_detect(det, image)
            if i >= 3:  # warm-up excluded
                pre.append(r.preprocess_ms)
                inf.append(r.inference_ms)
                post.append(r.postprocess_ms)
            n = len(r.detections)
        m = [statistics.median(v) for v in (pre, inf, post)]
        print(f"{name:18s} {m[0]:9.2f}ms {m[1]:7.2f}ms {m[2]:7.2f}ms {sum(m):7.2f}ms  {n}")


if __name__ == "__main__":
    main()
