"""Re-export an Ultralytics checkpoint (.pt) to ONNX at another input size or opset.

    python -m models.export --weights ../shared/models/yolov8n.pt --imgsz 320 --out yolov8n-320.onnx

Needs the optional ``[export]`` extra (Ultralytics, which pulls PyTorch): it is a one-off step
on a workstation, never something an edge box runs, so it is not a runtime dependency. The
result is checked by loading it with :class:`edge.detector.OnnxDetector`, and its sha256 is
printed so it can be added to :mod:`models.registry`.

Ultralytics writes the export next to the checkpoint; the shared model folder is read-only,
so the checkpoint is first copied into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

INSTALL_HINT = (
    "exporting needs Ultralytics, which is not installed. Install the optional extra on a "
    "workstation (it pulls PyTorch, ~2 GB):\n"
    "    pip install -e '.[export]'        # from the repository\n"
    "    pip install 'storesense[export]'  # from a package\n"
    "The edge runtime never needs it: it runs the exported .onnx with ONNX Runtime."
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m models.export",
        description="Export an Ultralytics YOLOv8/YOLO11 .pt checkpoint to ONNX for StoreSense.",
    )
    ap.add_argument("--weights", required=True, type=Path, help="Ultralytics checkpoint, e.g. yolov8n.pt")
    ap.add_argument("--imgsz", type=int, default=640, help="square input size in px (multiple of 32)")
    ap.add_argument("--out", required=True, type=Path, help="where to write the .onnx file")
    ap.add_argument("--opset", type=int, default=None, help="ONNX opset (default: Ultralytics' choice)")
    ap.add_argument("--dynamic", action="store_true", help="dynamic input size (then set model.input_size_px)")
    ap.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.imgsz <= 0 or args.imgsz % 32 != 0:
        print(f"error: --imgsz must be a positive multiple of 32; got {args.imgsz}", file=sys.stderr)
        return 2
    weights: Path = args.weights.expanduser().resolve()
    if not weights.is_file():
        print(f"error: checkpoint not found: {weights}", file=sys.stderr)
        return 2
    out: Path = args.out.expanduser().resolve()
    if out.suffix != ".onnx":
        print(f"error: --out should end in .onnx; got {out}", file=sys.stderr)
        return 2

    os.environ.setdefault("YOLO_OFFLINE", "1")  # never try to download anything
    try:
        from ultralytics import YOLO
    except ImportError:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="storesense-export-") as tmp:
        local = Path(tmp) / weights.name
        shutil.copy2(weights, local)
        kwargs: dict[str, object] = {
            "format": "onnx",
            "imgsz": args.imgsz,
            "dynamic": bool(args.dynamic),
            "simplify": not args.no_simplify,
        }
        if args.opset is not None:
            kwargs["opset"] = args.opset
        exported = Path(str(YOLO(str(local)).export(**kwargs)))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(exported), out)

    from edge.detector import ModelError, OnnxDetector
    from models.registry import sha256_file

    try:
        det = OnnxDetector(out, None, args.imgsz if args.dynamic else None)
    except ModelError as exc:
        print(f"error: the export does not load as a StoreSense detector: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    print(f"  layout {det.layout}, input {det.input_hw_px[1]}x{det.input_hw_px[0]}, output {det.output_shape}")
    print(f"  sha256 {sha256_file(out)}")
    print("  use it with  model: {path: <this file>}  in the store config (licence: AGPL-3.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
