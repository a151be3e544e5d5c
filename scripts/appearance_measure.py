"""How well the appearance cue (edge/appearance.py) tells people apart: similarity of same-person and
different-person pairs on the ground-truth boxes of a MOT clip (default: the CAVIAR dev clip).

    python scripts/appearance_measure.py [--video V --gt GT.txt] [--every 4] [--min-gap-frames 25]

Boxes are sampled every N-th frame when at least 40 px tall, away from the frame edge and not
overlapped by another box (as the tracker samples them). Prints percentiles of both distributions:
the gate tracker.appearance_min_similarity belongs below the same-person low percentiles.
"""

from __future__ import annotations

import argparse
import itertools

import cv2
import numpy as np

from edge.appearance import descriptor, isolated, similarity
from edge.resources import shared_dir


def main() -> None:
    base = shared_dir() / "devset" / "caviar-corridor"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(base / "video.avi"))
    ap.add_argument("--gt", default=str(base / "gt.txt"))
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--min-gap-frames", type=int, default=25, help="same-person pairs at least this far apart")
    args = ap.parse_args()
    gt = np.loadtxt(args.gt, delimiter=",", ndmin=2)
    cap = cv2.VideoCapture(args.video)
    samples = []
    f = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        f += 1
        rows = gt[gt[:, 0] == f]
        if f % args.every or len(rows) == 0:
            continue
        h_img, w_img = img.shape[:2]
        boxes = np.c_[rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]]
        for i, r in enumerate(rows):
            b = boxes[i]
            edge = b[0] < 0.015 * w_img or b[2] > 0.985 * w_img or b[3] > 0.985 * h_img
            if b[3] - b[1] < 40 or edge or not isolated(boxes, i):
                continue
            d = descriptor(img, b)
            if d is not None:
                samples.append((int(r[1]), f, d))
    same, diff = [], []
    for (ia, fa, da), (ib, fb, db) in itertools.combinations(samples, 2):
        if ia != ib:
            diff.append(similarity(da, db))
        elif abs(fa - fb) >= args.min_gap_frames:
            same.append(similarity(da, db))
    q = [1, 5, 10, 50, 90, 95, 99]
    print(f"{len(samples)} samples of {len({s[0] for s in samples})} people; percentiles {q}")
    print(f"same person      ({len(same)} pairs): {np.percentile(same, q).round(3).tolist()}")
    print(f"different people ({len(diff)} pairs): {np.percentile(diff, q).round(3).tolist()}")
    for gate in (0.6, 0.65, 0.7):
        print(f"gate {gate}: refuses {np.mean(np.array(same) < gate):.1%} of same-person pairs, "
              f"{np.mean(np.array(diff) < gate):.1%} of different-person pairs")


if __name__ == "__main__":
    main()
