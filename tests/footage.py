"""Real footage with known edits, for the static-scenery and occlusion tests (and scripts/static_measure.py):
a still photo of a person pasted in as a poster, or an opaque board painted over where people stand.

The edits are written as MJPG AVI (always available in OpenCV builds) at the source's frame rate,
with a little sensor noise on the pasted poster so it is not unrealistically perfect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# The leftmost person of ../shared/images/bus.jpg (YOLOX-Nano: 0.85), a full standing figure.
BUS_PERSON_XYXY = (50, 394, 214, 898)


def person_crop(images_dir: Path) -> np.ndarray:
    img = cv2.imread(str(images_dir / "bus.jpg"))
    if img is None:
        raise FileNotFoundError(images_dir / "bus.jpg")
    x1, y1, x2, y2 = BUS_PERSON_XYXY
    return np.ascontiguousarray(img[y1:y2, x1:x2])


def edit_video(src: Path, dst: Path, *, max_frames: int | None = None,
               posters: Sequence[tuple[np.ndarray, tuple[int, int, int, int]]] = (),
               boards: Sequence[tuple[int, int, int, int]] = (), noise_std: float = 3.0, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with each poster (image, xyxy) pasted and each board (xyxy) painted grey."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    rng = np.random.default_rng(seed)
    resized = [(cv2.resize(img, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA), (x1, y1, x2, y2))
               for img, (x1, y1, x2, y2) in posters]
    n = 0
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        for img, (x1, y1, x2, y2) in resized:
            noisy = img.astype(np.float32) + rng.normal(0.0, noise_std, img.shape).astype(np.float32)
            frame[y1:y2, x1:x2] = np.clip(noisy, 0, 255).astype(np.uint8)
        for x1, y1, x2, y2 in boards:
            frame[y1:y2, x1:x2] = (96, 104, 112)
        out.write(frame)
        n += 1
    cap.release()
    out.release()
    return dst
