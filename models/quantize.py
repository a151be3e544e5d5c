"""Static int8 copies of the detectors, quantised on the box from its own footage.

Why static QDQ, per-channel: dynamic int8 (as published, ``yolov8n-640-int8``) re-measures
activation ranges on every frame and runs slower than fp32 on x86; static ranges measured once
on calibration frames let ONNX Runtime fuse int8 convolutions. Why the decode stays in float:
YOLOv8's output tensor concatenates box coordinates (0..640) and class scores (0..1); one
int8 scale for both rounds every score to zero. So every node after the last feature
convolution (DFL softmax, anchor decode, sigmoid, concat; YOLOX's output concat) is excluded,
found from the graph itself rather than from node names.

The result is cached in ``<data_dir>/models/<source>-int8.onnx`` with a JSON sidecar: its
sha256, the source file and its sha256, the calibration frames, and the measured agreement
with fp32 on frames that were not used for calibration. Nothing is downloaded; the shared
model folder is never written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import positive_int_arg
from models.onnx_graph import set_input_hw
from models.registry import ModelResolveError, ResolvedModel, sha256_file, with_file

log = logging.getLogger("storesense.quantize")

CALIBRATION_FRAMES = 48
VALIDATION_FRAMES = 24
# DequantizeLinear takes a per-channel ``axis`` from this opset on
PER_CHANNEL_OPSET = 13
# an int8 copy is used only if it finds at least this share of the people fp32 finds on frames
# not used for calibration: YOLOv8n's and YOLO11n's copies find 0.97-1.00; YOLOX-Nano's
# (depthwise convolutions, one activation scale for channels of very different ranges) found
# 0.49, and a box that silently loses half its people is worse than one that refuses to start.
# The line catches a broken copy, not a marginal one: a few dozen boxes judge it, so below
# MIN_JUDGED_BOXES it only warns
MIN_RECALL_VS_FP32 = 0.8
MIN_JUDGED_BOXES = 20
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".gif", ".webm", ".m4v")


@dataclass(frozen=True)
class Quantised:
    path: Path
    meta: dict[str, Any]


def decode_tail(model: Any) -> list[str]:
    """Names of the nodes after the last feature convolution: the detection head's decode.

    A node belongs to the tail when no path from it reaches a feature convolution (one with more
    than one output channel; YOLOv8's DFL is a 1-channel convolution inside the decode).
    """
    nodes = list(model.graph.node)  # protobuf hands out fresh wrappers: work with indices
    weights = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(k)

    def feature_conv(node: Any) -> bool:
        if node.op_type != "Conv":
            return False
        w = weights.get(node.input[1])
        return w is None or int(w.dims[0]) > 1

    is_feature = [feature_conv(n) for n in nodes]
    reaches = [False] * len(nodes)
    for k in range(len(nodes) - 1, -1, -1):  # ONNX nodes are topologically sorted
        reaches[k] = any(is_feature[c] or reaches[c] for out in nodes[k].output for c in consumers.get(out, []))
    return [n.name for k, n in enumerate(nodes) if not reaches[k] and not is_feature[k]]


def video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []


def sample_frames(videos: Sequence[Path], n: int, *, offset: float = 0.0) -> list[np.ndarray]:
    """``n`` frames spread evenly over the videos (``offset`` in 0..1 of a step shifts them, so
    validation frames differ from calibration frames)."""
    import cv2

    frames: list[np.ndarray] = []
    per = max(1, int(np.ceil(n / max(1, len(videos)))))
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if not cap.isOpened() or total <= 0:
            cap.release()
            continue
        wanted = sorted({min(total - 1, int((k + offset) * total / per)) for k in range(per)})
        index = 0
        for target in wanted:  # read forward (seeking in GIFs and some codecs is unreliable)
            ok, image = True, None
            while index <= target and ok:
                ok, image = cap.read()
                index += 1
            if ok and image is not None:
                frames.append(image)
        cap.release()
    return frames[:n]


class _DropPreprocessAdvice(logging.Filter):
    """ONNX Runtime's quantiser logs "Please consider to run pre-processing before quantization"
    on the root logger, twice per copy. Measured here (yolov8n, 480x640): its pre-processing
    (``quant_pre_process``, with symbolic shape inference skipped because the YOLO graphs defeat
    it) gave the same agreement with fp32 and the same speed, so the advice is noise in the edge's
    journal on first use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _calibration_reader(tensors: list[np.ndarray], input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            t = next(self._it, None)
            return None if t is None else {input_name: t}

    return Reader()


def quantize(
    resolved: ResolvedModel,
    out_dir: Path,
    videos: Sequence[Path],
    *,
    frames: int = CALIBRATION_FRAMES,
    calibration_hw: tuple[int, int] | None = None,
) -> Quantised:
    """Quantise ``resolved`` (fp32) to static int8 QDQ, calibrated on frames of ``videos``."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edge.detector import OnnxDetector

    images = sample_frames(videos, frames)
    if not images:
        raise ModelResolveError(
            f"no calibration frames: none of {[str(v) for v in videos]} could be read; give videos "
            "with --video or put footage in the shared videos folder"
        )
    fp32 = OnnxDetector(
        resolved.path, resolved.layout, resolved.input_size_px, confidence_threshold=0.3,
        input_width_px=resolved.input_width_px,
    )
    hw = calibration_hw or fp32.geometry_for(images[0].shape[1], images[0].shape[0])
    tensors = [_letterboxed(fp32, img, hw) for img in images]
    model = onnx.load(str(resolved.path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < PER_CHANNEL_OPSET:
        # per-channel weights need DequantizeLinear's axis (opset 13); quantize_static writes it
        # into an older graph anyway and ONNX Runtime then refuses the file (YOLOX-Nano is opset 11)
        from onnx import version_converter

        log.info("%s is opset %d: converting it to opset %d for per-channel int8", resolved.path.name, opset,
                 PER_CHANNEL_OPSET)
        model = version_converter.convert_version(model, PER_CHANNEL_OPSET)
    resizable = fp32.resizable
    if resizable:
        set_input_hw(model, hw)
    tail = decode_tail(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{resolved.path.stem}-int8.onnx"
    log.info(
        "quantising %s to int8 on %d frames at %dx%d (%d decode nodes stay float); this takes seconds to a "
        "minute and about 1 GB of memory",
        resolved.path.name, len(tensors), hw[1], hw[0], len(tail),
    )
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = Path(tmp) / "source.onnx"
        onnx.save(model, str(src))
        staged = Path(tmp) / target.name
        advice = _DropPreprocessAdvice()
        logging.getLogger().addFilter(advice)
        try:
            quantize_static(
                str(src),
                str(staged),
                _calibration_reader(tensors, fp32._primary.input_name),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=tail,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            logging.getLogger().removeFilter(advice)
        q = onnx.load(str(staged))
        if resizable:
            set_input_hw(q, None)  # one file for every camera geometry
        onnx.save(q, str(staged))
        _check_loads(staged, resolved.path.name)  # a file that cannot run never replaces the cache
        staged.replace(target)
    meta: dict[str, Any] = {
        "sha256": sha256_file(target),
        "source": resolved.path.name,
        "source_sha256": resolved.sha256 or sha256_file(resolved.path),
        "calibration": {
            "videos": [v.name for v in videos],
            "frames": len(tensors),
            "input_hw_px": list(hw),
            "method": "MinMax, QDQ, per-channel weights int8, activations uint8",
        },
        "float_nodes": len(tail),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    int8 = OnnxDetector(
        target, fp32.layout, resolved.input_size_px, confidence_threshold=0.3, input_width_px=resolved.input_width_px
    )
    validation = max(4, min(VALIDATION_FRAMES, frames // 2))
    meta["accuracy_delta"] = agreement(fp32, int8, sample_frames(videos, validation, offset=0.5))
    target.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    log.info("int8 model %s: %s", target, meta["accuracy_delta"])
    return Quantised(target, meta)


def _check_loads(path: Path, source: str) -> None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types per failure
        raise ModelResolveError(
            f"quantising {source} produced a model ONNX Runtime cannot load ({str(exc)[:300]}); "
            "use precision: fp32 for this model"
        ) from None


def _letterboxed(det: Any, image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    slot = det._slot(hw)
    plane = np.empty((1, 3, hw[0], hw[1]), np.float32)
    det._letterbox_into(slot, image, plane[0])
    return plane


def agreement(fp32: Any, int8: Any, images: Sequence[np.ndarray], iou: float = 0.5) -> dict[str, float]:
    """How far int8 detections are from fp32 ones on the same frames (persons, conf 0.3):
    recall of the fp32 boxes, precision against them, mean absolute score change of matches."""
    matched = n_a = n_b = 0
    deltas: list[float] = []
    for image in images:
        a, b = fp32.detect(image), int8.detect(image)
        n_a, n_b = n_a + len(a), n_b + len(b)
        if len(a) == 0 or len(b) == 0:
            continue
        ious = _iou(a.xyxy, b.xyxy)
        for i in range(len(a)):
            j = int(ious[i].argmax())
            if ious[i, j] >= iou:
                matched += 1
                deltas.append(float(b.confidence[j] - a.confidence[i]))
    return {
        "frames": float(len(images)),
        "fp32_boxes": float(n_a),
        "int8_boxes": float(n_b),
        "recall_vs_fp32": round(matched / n_a, 4) if n_a else 1.0,
        "precision_vs_fp32": round(matched / n_b, 4) if n_b else 1.0,
        "mean_abs_score_delta": round(float(np.mean(np.abs(deltas))), 4) if deltas else 0.0,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9))


def cached(resolved: ResolvedModel, out_dir: Path) -> Quantised | None:
    """The cached int8 copy of ``resolved`` if it exists, is intact and was made from this file."""
    target = out_dir / f"{resolved.path.stem}-int8.onnx"
    meta_path = target.with_suffix(".json")
    if not target.is_file() or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    source_sha = resolved.sha256 or sha256_file(resolved.path)
    if meta.get("source_sha256") != source_sha:
        log.warning("%s was made from another %s; quantising again", target, resolved.path.name)
        return None
    if meta.get("sha256") != sha256_file(target):
        log.warning("%s does not match its recorded sha256 (damaged?); quantising again", target)
        return None
    return Quantised(target, meta)


def int8_variant(
    resolved: ResolvedModel,
    data_dir: Path | None,
    videos: Sequence[Path] | None = None,
    frames: int = CALIBRATION_FRAMES,
) -> ResolvedModel:
    """``resolved`` served from its int8 copy; quantises on first use (and says so)."""
    from edge.resources import videos_dir

    out_dir = (data_dir or Path("storesense-data")) / "models"
    found = cached(resolved, out_dir)
    if found is None:
        sources = list(videos or []) or video_files(videos_dir())
        log.warning(
            "model %s: no usable int8 copy in %s; quantising it now on %d video(s) (first use only; "
            "`storesense models quantize %s` does this ahead of time)",
            resolved.name or resolved.path.name, out_dir, len(sources), resolved.name or resolved.path,
        )
        found = quantize(resolved, out_dir, sources, frames=frames)
    check_agreement(found, resolved.name or resolved.path.name)
    return with_file(resolved, found.path, found.meta["sha256"])


def check_agreement(found: Quantised, name: str) -> None:
    """Refuse an int8 copy that loses people fp32 finds (``MIN_RECALL_VS_FP32``), with the figure."""
    delta = found.meta.get("accuracy_delta") or {}
    recall = float(delta.get("recall_vs_fp32", 1.0))
    if recall >= MIN_RECALL_VS_FP32:
        return
    if float(delta.get("fp32_boxes", 0.0)) < MIN_JUDGED_BOXES:
        log.warning(
            "model %s: its int8 copy finds %.0f%% of the people fp32 finds, but on only %d boxes: too few to "
            "judge it; check it with `storesense evaluate --model %s:int8` on footage with ground truth",
            name, recall * 100, int(delta.get("fp32_boxes", 0.0)), name,
        )
        return
    raise ModelResolveError(
        f"model {name}: its int8 copy finds {recall:.0%} of the people fp32 finds on "
        f"{int(delta.get('frames', 0))} frames not used for calibration (at least {MIN_RECALL_VS_FP32:.0%} "
        f"needed; {found.path.with_suffix('.json')}), so it is not used: set precision: fp32 for this model"
    )


# ------------------------------------------------------------------------------ command line


def cmd_quantize(args: argparse.Namespace) -> int:
    from edge.config import ModelConfig, load_config
    from edge.resources import videos_dir
    from models.registry import resolve_model

    cfg = load_config(args.config) if args.config else None
    model_cfg = (cfg.model if cfg else ModelConfig()).model_copy(update={"name": args.name, "precision": "fp32"})
    if args.name is None and cfg is None:
        raise ModelResolveError("give a model NAME or --config")
    if args.name is None:
        model_cfg = model_cfg.model_copy(update={"name": cfg.model.name if cfg else None})
    base = cfg.source_path.parent if cfg is not None and cfg.source_path else None
    resolved = resolve_model(model_cfg, base)
    videos = [Path(v) for v in args.video or []]
    if not videos and cfg is not None:
        videos = [cfg.resolve_path(str(c.source)) for c in cfg.cameras if not c.is_live]
    if not videos:
        videos = video_files(videos_dir())
    data_dir = Path(args.data_dir) if args.data_dir else (cfg.data_path() if cfg else Path("storesense-data"))
    out_dir = data_dir / "models"
    found = None if args.force else cached(resolved, out_dir)
    if found is None:
        found = quantize(resolved, out_dir, videos, frames=args.frames)
    print(f"{found.path}\n{json.dumps(found.meta, indent=2)}")
    check_agreement(found, resolved.name or resolved.path.name)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="model files: quantise a detector to int8")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("quantize", help="static int8 copy of a registry model, calibrated on store footage")
    q.add_argument("name", nargs="?", help="registry name, e.g. yolov8n (default: the config's model)")
    q.add_argument("--config", help="store config: calibrate on its cameras' recordings, cache in its data_dir")
    q.add_argument("--video", action="append", help="calibration video (repeatable; default: shared videos)")
    q.add_argument("--frames", type=positive_int_arg, default=CALIBRATION_FRAMES, help="calibration frames")
    q.add_argument("--data-dir", help="where the int8 copy is cached (default: the config's data_dir)")
    q.add_argument("--force", action="store_true", help="quantise again even if a cached copy exists")
    q.set_defaults(func=cmd_quantize)


__all__ = ["Quantised", "agreement", "cached", "check_agreement", "decode_tail", "int8_variant", "quantize", "sample_frames"]
