"""``storesense calibrate``: check a camera's calibration and draw the floor grid over a frame.

An installer cannot judge a homography from numbers alone: a grid of 1 m squares drawn over a real
frame shows at a glance whether the floor lines run along the tiles, whether the marks were
clicked in the right order, and where the usable floor ends. The command also prints the
reprojection error and exits non-zero when it is over the configured limit, so it can gate a
deployment script.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from calibration.homography import Calibration, CalibrationError
from edge.errors import UserFacingError

log = logging.getLogger("storesense.calibrate")

ImageBGR = npt.NDArray[Any]  # HxWx3 uint8; typed loosely because OpenCV's stubs return mixed dtypes

# BGR colours
GRID_BGR = (255, 255, 255)
AXIS_X_BGR = (60, 60, 255)
AXIS_Y_BGR = (60, 220, 60)
MARK_BGR = (0, 255, 0)
REPROJ_BGR = (0, 0, 255)
HORIZON_BGR = (0, 200, 255)
ZONE_BGR = {
    "queue": (255, 160, 0),
    "service": (255, 0, 200),
    "dwell": (0, 220, 255),
    "entrance": (0, 255, 120),
    "staff_only": (120, 120, 255),
}
# the grid never spans more than this many metres around the marks (a far horizon would make it
# a solid white triangle)
MAX_GRID_SPAN_M = 60.0
MIN_CANVAS_WIDTH_PX = 1280
# the grid stops at this many times the typical depth of the marks: farther, 1 m cells shrink to
# a few pixels and the grid turns into a grey smear that hides the floor
GRID_DEPTH_RATIO = 4.0


def read_frame(source: str | int, frame_index: int, *, camera_id: str) -> ImageBGR:
    """Frame ``frame_index`` of a file (or the N-th frame a live source delivers)."""
    if isinstance(source, str) and "://" not in source and not Path(source).exists():
        raise UserFacingError(f"camera {camera_id}: video file not found: {source}")
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    try:
        if not cap.isOpened():
            raise UserFacingError(f"camera {camera_id}: cannot open source {source!r}")
        if frame_index < 0:
            raise UserFacingError(f"--frame-index must be 0 or more, got {frame_index}")
        image = None
        for read in range(frame_index + 1):
            ok, image = cap.read()
            if not ok:
                raise UserFacingError(
                    f"camera {camera_id}: the source has only {read} frame(s); --frame-index {frame_index} "
                    "is past its end"
                )
        assert image is not None
        return np.ascontiguousarray(image)
    finally:
        cap.release()


def _pt(p: npt.ArrayLike, scale: float) -> tuple[int, int]:
    a = np.asarray(p, dtype=np.float64).reshape(-1)
    return (int(round(a[0] * scale)), int(round(a[1] * scale)))


def _label_text(text: str) -> str:
    """OpenCV's Hershey fonts only draw ASCII; a non-ASCII label falls back to the id."""
    return text if text.isascii() else ""


def _put_label(img: ImageBGR, text: str, org: tuple[int, int], color: tuple[int, int, int],
               font_scale: float = 0.5) -> None:
    """Text on a dark box: readable over any floor, unlike an outline at small font sizes."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    x, y = org
    x0, y0 = max(0, x - 2), max(0, y - th - 3)
    x1, y1 = min(img.shape[1], x + tw + 2), min(img.shape[0], y + base + 1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[:] = (roi * 0.3).astype(np.uint8)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)


def _inside(p: npt.NDArray[np.float64], size: tuple[int, int], margin: float = 0.0) -> npt.NDArray[np.bool_]:
    w, h = size
    return (p[:, 0] >= margin) & (p[:, 0] <= w - 1 - margin) & (p[:, 1] >= margin) & (p[:, 1] <= h - 1 - margin)


def floor_extent_m(
    cal: Calibration, frame_size_px: tuple[int, int], extra_points_m: npt.ArrayLike | None = None
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) floor rectangle, whole metres, covering what the frame shows of the floor.

    Samples the frame, keeps what lands on the floor, adds the marks (and zones), and caps the
    span around the marks so a far horizon does not blow the grid up.
    """
    w, h = frame_size_px
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 33), np.linspace(0, h - 1, 33))
    floor = cal.image_to_floor(np.stack([xs.ravel(), ys.ravel()], axis=1), max_depth_ratio=GRID_DEPTH_RATIO)
    floor = floor[np.all(np.isfinite(floor), axis=1)]
    parts = [floor, cal.floor_points_m]
    if extra_points_m is not None:
        parts.append(np.asarray(extra_points_m, dtype=np.float64).reshape(-1, 2))
    pts = np.vstack(parts)
    centre = np.median(cal.floor_points_m, axis=0)
    half = MAX_GRID_SPAN_M / 2.0
    lo = np.maximum(pts.min(axis=0), centre - half)
    hi = np.minimum(pts.max(axis=0), centre + half)
    return (float(np.floor(lo[0])), float(np.floor(lo[1])), float(np.ceil(hi[0])), float(np.ceil(hi[1])))


def draw_floor_grid(
    canvas: ImageBGR,
    cal: Calibration,
    frame_size_px: tuple[int, int],
    scale: float,
    *,
    step_m: float = 1.0,
    extent_m: tuple[float, float, float, float] | None = None,
) -> None:
    """1 m grid lines on the floor, the X (red) and Y (green) axes, metre labels along the edges."""
    x0, y0, x1, y1 = extent_m or floor_extent_m(cal, frame_size_px)
    overlay = canvas.copy()
    labels: list[tuple[str, tuple[int, int], tuple[int, int, int]]] = []
    for axis in (0, 1):
        lo, hi = (x0, x1) if axis == 0 else (y0, y1)
        for k in np.arange(np.ceil(lo / step_m) * step_m, hi + 1e-9, step_m):
            val = float(round(k, 6))
            if axis == 0:  # line x = k runs along y
                line = [(val, y0), (val, y1)]
                color = AXIS_Y_BGR if val == 0 else GRID_BGR
            else:
                line = [(x0, val), (x1, val)]
                color = AXIS_X_BGR if val == 0 else GRID_BGR
            thick = 2 if val == 0 else 1
            best: npt.NDArray[np.float64] | None = None
            for run in cal.floor_path_to_image(line, step_m=0.05, max_depth_ratio=GRID_DEPTH_RATIO):
                pts = np.round(run * scale).astype(np.int32)
                cv2.polylines(overlay, [pts], False, color, thick, cv2.LINE_AA)
                vis = run[_inside(run, frame_size_px, margin=4)]
                if vis.shape[0]:
                    # label where the line is nearest the camera (lowest in the image)
                    cand = vis[int(np.argmax(vis[:, 1]))]
                    if best is None or cand[1] > best[1]:
                        best = cand
            if best is not None:
                name = ("x" if axis == 0 else "y") + f"={val:g}"
                labels.append((name, _pt(best + np.array([3.0, -4.0]), scale), color))
    cv2.addWeighted(overlay, 0.75, canvas, 0.25, 0, dst=canvas)
    placed: list[tuple[int, int]] = []
    for text, org, color in labels:
        if any(abs(org[0] - p[0]) < 34 and abs(org[1] - p[1]) < 14 for p in placed):
            continue  # labels crowd together near the horizon; skip the overlapping ones
        placed.append(org)
        _put_label(canvas, text, org, color, 0.42)
    # usable-floor limit
    w, _h = frame_size_px
    ya, yb = cal.horizon_y_px(0.0), cal.horizon_y_px(float(w - 1))
    if ya is not None and yb is not None and (0 <= ya < frame_size_px[1] or 0 <= yb < frame_size_px[1]):
        cv2.line(canvas, _pt((0, ya), scale), _pt((w - 1, yb), scale), HORIZON_BGR, 1, cv2.LINE_AA)
        label_x = 0.6 * (w - 1)
        label_y = ya + (yb - ya) * 0.6 + 12 / scale  # just on the floor side of the line
        if 0 <= label_y < frame_size_px[1]:
            _put_label(canvas, "floor limit: no floor position beyond", _pt((label_x, label_y), scale), HORIZON_BGR, 0.42)


def draw_marks(canvas: ImageBGR, cal: Calibration, scale: float) -> None:
    """Each clicked mark (green circle), where its measured floor position lands (red cross)."""
    reproj = cal.floor_to_image(cal.floor_points_m)
    for i, (img_pt, rep, err) in enumerate(zip(cal.image_points_px, reproj, cal.errors_m, strict=True)):
        p = _pt(img_pt, scale)
        if np.all(np.isfinite(rep)):
            q = _pt(rep, scale)
            cv2.line(canvas, p, q, REPROJ_BGR, 1, cv2.LINE_AA)
            cv2.drawMarker(canvas, q, REPROJ_BGR, cv2.MARKER_CROSS, 14, 2, cv2.LINE_AA)
        cv2.circle(canvas, p, 7, MARK_BGR, 2, cv2.LINE_AA)
        fx, fy = cal.floor_points_m[i]
        _put_label(canvas, f"#{i + 1} ({fx:g},{fy:g}) m  err {err * 100:.0f} cm", (p[0] + 9, p[1] - 8), MARK_BGR, 0.45)


def draw_zones(
    canvas: ImageBGR,
    zones: Sequence[Any],
    frame_size_px: tuple[int, int],
    scale: float,
    cal: Calibration | None,
    *,
    thickness: int = 2,
) -> None:
    """Zone outlines and names; ``units: m`` zones are projected with the calibration."""
    w, h = frame_size_px
    for z in zones:
        color = ZONE_BGR.get(z.kind, (255, 255, 255))
        if z.units == "m":
            if cal is None:
                continue
            runs = cal.floor_path_to_image(z.polygon, closed=True, step_m=0.05)
        else:
            runs = [np.asarray(z.polygon, dtype=np.float64) * np.array([w, h])]
            runs[0] = np.vstack([runs[0], runs[0][:1]])
        anchor: npt.NDArray[np.float64] | None = None
        for run in runs:
            cv2.polylines(canvas, [np.round(run * scale).astype(np.int32)], False, color, thickness, cv2.LINE_AA)
            top = run[int(np.argmin(run[:, 1]))]
            if anchor is None or top[1] < anchor[1]:
                anchor = top
        if anchor is not None:
            name = _label_text(z.label or "") or z.id
            ax = float(np.clip(anchor[0], 2, w - 60))
            ay = float(np.clip(anchor[1] + 14, 12, h - 4))
            _put_label(canvas, f"{name} [{z.kind}]", _pt((ax, ay), scale), color, 0.5)


def _info_box(canvas: ImageBGR, lines: list[tuple[str, tuple[int, int, int]]]) -> None:
    pad, line_h = 8, 20
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] for t, _ in lines) + 2 * pad
    height = line_h * len(lines) + pad
    roi = canvas[0:height, 0:width]
    roi[:] = (roi * 0.35).astype(np.uint8)
    for i, (text, color) in enumerate(lines):
        cv2.putText(canvas, text, (pad, pad + 12 + i * line_h), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


def render_calibration(
    image_bgr: ImageBGR,
    cal: Calibration,
    zones: Sequence[Any] = (),
    *,
    title: str = "",
    step_m: float = 1.0,
) -> ImageBGR:
    """The check image: frame, floor grid, marks and their reprojections, zones, error summary."""
    h, w = image_bgr.shape[:2]
    scale = max(1.0, MIN_CANVAS_WIDTH_PX / w)
    canvas = cv2.resize(image_bgr, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_LINEAR)
    zone_pts = [np.asarray(z.polygon, dtype=np.float64) for z in zones if z.units == "m"]
    extent = floor_extent_m(cal, (w, h), np.vstack(zone_pts) if zone_pts else None)
    draw_floor_grid(canvas, cal, (w, h), scale, step_m=step_m, extent_m=extent)
    draw_zones(canvas, zones, (w, h), scale, cal)
    draw_marks(canvas, cal, scale)
    ok = cal.within_tolerance
    n = cal.image_points_px.shape[0]
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if title:
        lines.append((title, (255, 255, 255)))
    lines += [
        (f"{n} marks   RMS {cal.rms_error_m * 100:.1f} cm   max {cal.max_error_m * 100:.1f} cm "
         f"(#{cal.worst_pair + 1})   limit {cal.max_reprojection_error_m * 100:.0f} cm", (255, 255, 255)),
        ("PASS" if ok else "FAIL: max error over the limit", (80, 255, 80) if ok else (80, 80, 255)),
        (f"grid {step_m:g} m; red = X axis (y=0), green = Y axis (x=0)", (220, 220, 220)),
        ("circle = clicked mark, cross = measured floor position", (220, 220, 220)),
    ]
    if n == 4:
        lines.append(("4 marks fit exactly: add a 5th mark to measure the error", (80, 200, 255)))
    _info_box(canvas, lines)
    return canvas


def cmd_calibrate(args: argparse.Namespace) -> int:
    from edge.config import load_config

    if not 0.05 <= args.grid_m <= 100.0:  # also refuses nan/inf; 1e-9 m would be 6e9 grid lines
        raise UserFacingError(f"--grid-m: expected a spacing from 0.05 to 100 m, got {args.grid_m}")
    cfg = load_config(args.config)
    try:
        cam = cfg.camera(args.camera)
    except KeyError as exc:
        raise UserFacingError(str(exc.args[0])) from None
    if cam.calibration is None:
        raise UserFacingError(
            f"camera {cam.id} has no calibration. Without one everything still works in normalised image "
            "coordinates (zones with units: norm, image-grid heatmaps), but distances in metres (greet_radius_m, "
            "floor heatmaps, zones with units: m) need one. Add to the camera:\n"
            "  calibration:\n"
            "    image_points_px: [[x, y], ...]   # 4+ floor marks clicked on a frame\n"
            "    floor_points_m: [[x, y], ...]    # the same marks measured on the floor\n"
            "    reference_size_px: [width, height]\n"
            "or 'file: cam-calibration.yaml' with those keys, then run this command again."
        )
    if args.image:
        image = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
        if image is None:
            raise UserFacingError(f"cannot read image {args.image}")
        frame_desc = str(args.image)
    else:
        source: str | int = cam.source
        if isinstance(source, str) and not cam.is_live:
            source = str(cfg.resolve_path(source))
        image = read_frame(source, args.frame_index, camera_id=cam.id)
        frame_desc = f"frame {args.frame_index}"
    h, w = image.shape[:2]
    cal = Calibration.for_camera(cfg, cam.id)
    assert cal is not None  # checked above: the camera has a calibration
    cal = cal.for_frame_size((w, h))
    outside = ~_inside(cal.image_points_px, (w, h))
    out = Path(args.out) if args.out else Path(f"calibrate-{cam.id}.png")
    title = f"camera {cam.id}  {frame_desc}  {w}x{h}"
    canvas = render_calibration(image, cal, cam.zones, title=title, step_m=args.grid_m)
    if out.is_dir() or out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserFacingError(f"--out {out}: expected a .png (or .jpg) file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(out), canvas)
    except (OSError, cv2.error) as exc:
        raise UserFacingError(f"cannot write {out}: {exc}") from None
    if not written:
        raise UserFacingError(f"cannot write {out}")
    print(cal.summary())
    for i, (img_pt, flo_pt, err) in enumerate(zip(cal.image_points_px, cal.floor_points_m, cal.errors_m, strict=True)):
        note = "  (outside the frame)" if outside[i] else ""
        print(f"  #{i + 1}: image ({img_pt[0]:.1f}, {img_pt[1]:.1f}) px -> floor ({flo_pt[0]:g}, {flo_pt[1]:g}) m: "
              f"error {err * 100:.1f} cm{note}")
    if cal.image_points_px.shape[0] == 4:
        print("  note: with exactly 4 marks the fit is exact and the error cannot reveal a mistake; add a 5th mark")
    if cal.reference_size_px is None and outside.any():
        print(f"  warning: some marks lie outside this {w}x{h} frame; if they were clicked on a frame of another "
              "size, set calibration.reference_size_px", file=sys.stderr)
    print(f"wrote {out}")
    try:
        cal.check_tolerance()
    except CalibrationError as exc:
        print(f"calibration FAILED: {exc}", file=sys.stderr)
        return 1
    print("calibration OK")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="check a camera's floor calibration and draw the 1 m floor grid over a frame (PNG)",
        description="Fits the camera's image→floor homography, prints the reprojection error of every mark and "
        "draws the floor grid, marks and zones over a frame. Exits 1 if the max error is over "
        "calibration.max_reprojection_error_m.",
    )
    p.add_argument("--config", required=True, help="store config YAML")
    p.add_argument("--camera", required=True, help="camera id in the config")
    p.add_argument("--frame-index", type=int, default=0, help="frame of the camera source to draw on (default 0)")
    p.add_argument("--image", help="draw on this image instead of a frame of the source")
    p.add_argument("--out", help="PNG to write (default calibrate-<camera>.png)")
    p.add_argument("--grid-m", type=float, default=1.0, help="grid spacing in metres (default 1)")
    p.set_defaults(func=cmd_calibrate)
