"""Person detection with ONNX Runtime on the CPU, for two output layouts.

* ``yolov8`` (YOLOv8 / YOLO11 exports from Ultralytics): input RGB scaled to 0..1, letterboxed
  *centred* with grey 114; output ``(1, 4 + classes, N)`` = cx, cy, w, h in input pixels and
  one sigmoid score per class (no objectness).
* ``yolox`` (Megvii YOLOX exports): input BGR 0..255, *not* normalised, padded with 114 at the
  right/bottom only; output ``(1, N, 5 + classes)`` = grid-relative cx, cy, log w, log h,
  objectness and class scores. Most exports (including ``yolox-nano-416.onnx``) leave the
  grid/stride decoding to the caller; an export that already decodes is recognised from the
  magnitude of its box values on a warm-up frame, so both kinds work.

Getting the preprocessing of each family right matters more than any threshold: feeding YOLOX
RGB 0..1 input, or shifting its padding to the centre, silently costs most of its recall.

This runs on every analysed frame, so post-processing touches only the candidates above the
confidence threshold, the letterbox canvas and input tensor are allocated once and reused,
and NMS is OpenCV's C++ implementation (class-aware via a coordinate offset per class).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge.contract import Detections
from edge.errors import UserFacingError

if TYPE_CHECKING:
    from edge.config import ModelConfig

log = logging.getLogger(__name__)

Layout = Literal["yolov8", "yolox"]
LAYOUTS: tuple[Layout, ...] = ("yolov8", "yolox")
PAD_VALUE = 114
YOLOX_STRIDES = (8, 16, 32)
SUPPORTED_SHAPES = (
    "yolov8: (1, 84, N) i.e. (1, 4 + classes, N), e.g. (1, 84, 8400) at 640; "
    "yolox: (1, N, 85) i.e. (1, N, 5 + classes), e.g. (1, 3549, 85) at 416"
)
# Offset that moves each class into its own coordinate range so one NMS call is class-aware.
_CLASS_OFFSET_PX = 8192.0
# Raw YOLOX log-size values beyond this would mean boxes of exp(20) strides: clip, do not overflow.
_MAX_LOG_SIZE = 20.0


class ModelError(UserFacingError):
    """The detector model cannot be used: missing, not ONNX, or an output layout we cannot read."""


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed into the model input: ``model_px = image_px * scale + pad``."""

    scale: float
    pad_x_px: float
    pad_y_px: float
    image_width_px: int
    image_height_px: int


class OnnxDetector:
    """One ONNX Runtime session and the pre/post-processing its output layout needs.

    ``layout=None`` detects the layout from the output shape. ``input_size_px`` is only needed
    for models with a dynamic input shape; a fixed input shape is read from the model and a
    conflicting value is an error. Boxes are returned in pixels of the image passed to
    :meth:`preprocess` / :meth:`detect`, clipped to it.

    Not thread-safe: :meth:`preprocess` returns a tensor that the next call overwrites (one
    buffer, no per-frame allocation). The runtime calls the detector from its single analysis
    loop; use one instance per thread otherwise.
    """

    def __init__(
        self,
        path: str | Path,
        layout: Layout | None = None,
        input_size_px: int | None = None,
        confidence_threshold: float = 0.35,
        nms_iou_threshold: float = 0.45,
        classes: Sequence[int] = (0,),
        threads: int = 2,
        max_detections: int = 300,
    ) -> None:
        self.path = Path(path)
        if not 0.0 < confidence_threshold < 1.0:
            raise ValueError(f"confidence_threshold must be in (0, 1); got {confidence_threshold}")
        if not 0.0 < nms_iou_threshold <= 1.0:
            raise ValueError(f"nms_iou_threshold must be in (0, 1]; got {nms_iou_threshold}")
        if len(classes) == 0 or any(int(c) < 0 for c in classes):
            raise ValueError(f"classes must be a non-empty list of class ids >= 0; got {list(classes)}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1; got {threads}")
        if layout is not None and layout not in LAYOUTS:
            raise ModelError(f"{self.path}: unknown layout {layout!r}; supported layouts: {', '.join(LAYOUTS)}")
        self.confidence_threshold = float(confidence_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.classes: tuple[int, ...] = tuple(sorted({int(c) for c in classes}))
        self.threads = int(threads)
        self.max_detections = int(max_detections)
        self.name: str | None = None
        self.licence: str | None = None

        self._session = self._open_session()
        self._input_name, self.input_hw_px, self._input_dtype = self._read_input(input_size_px)
        self._output_name = self._session.get_outputs()[0].name

        in_h, in_w = self.input_hw_px
        self._canvas = np.full((in_h, in_w, 3), PAD_VALUE, dtype=np.uint8)
        self._tensor = np.empty((1, 3, in_h, in_w), dtype=np.float32)
        self._canvas_geometry: tuple[int, int, int, int] | None = None
        self._geometry_cache: dict[tuple[int, int], tuple[int, int, int, int, float]] = {}
        self._classes_arr = np.asarray(self.classes, dtype=np.int64)

        # Warm-up on a grey frame: the real output shape (dynamic models report symbolic dims),
        # the layout, and the first-run allocation cost paid before the first real frame. Grey
        # is 114 in YOLOX's 0..255 input scale, which the decoded-or-not check below relies on.
        self.yolox_decoded = False
        self._tensor.fill(PAD_VALUE / 255.0 if layout == "yolov8" else float(PAD_VALUE))
        raw = self.infer(self._tensor.astype(self._input_dtype, copy=False))
        self.output_shape: tuple[int, ...] = tuple(int(d) for d in raw.shape)
        self.layout: Layout
        self.layout, self.num_classes = self._check_layout(self.output_shape, layout)
        if self.layout == "yolox":
            self._grid_xy, self._grid_stride = self._yolox_grid(self.output_shape[1])
            # Raw outputs are offsets of a few cells; decoded ones are input pixels.
            limit = max(in_h, in_w) / YOLOX_STRIDES[0] / 2.0
            self.yolox_decoded = bool(np.max(np.abs(raw[0, :, 0:2])) > limit)
        log.info(
            "detector %s: layout=%s%s input=%dx%d output=%s threads=%d classes=%s",
            self.path.name,
            self.layout,
            " (decoded)" if self.yolox_decoded else "",
            in_w,
            in_h,
            self.output_shape,
            self.threads,
            list(self.classes),
        )

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_config(cls, cfg: ModelConfig, base_dir: Path | None = None) -> OnnxDetector:
        """Build the detector of a store config (``model:``); ``base_dir`` is the config's folder."""
        from models.registry import ModelResolveError, resolve_model, sha256_file

        try:
            resolved = resolve_model(cfg, base_dir)
        except ModelResolveError as exc:
            raise ModelError(str(exc)) from None
        det = cls(
            resolved.path,
            resolved.layout,
            resolved.input_size_px,
            confidence_threshold=cfg.confidence_threshold,
            nms_iou_threshold=cfg.nms_iou_threshold,
            classes=cfg.classes,
            threads=cfg.threads,
        )
        det.name = resolved.name
        det.licence = resolved.licence
        if resolved.sha256 is not None and sha256_file(resolved.path) != resolved.sha256:
            # still usable, but not the file whose accuracy and latency were validated
            log.warning("model %s: %s does not match the registry sha256", resolved.name, resolved.path)
        log.info("model %s, licence: %s", resolved.name or resolved.path, resolved.licence)
        return det

    def _open_session(self) -> ort.InferenceSession:
        if not self.path.exists():
            raise ModelError(f"model file not found: {self.path}")
        if not self.path.is_file():
            raise ModelError(f"model path is not a file: {self.path}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # ORT warnings about unused initialisers etc. are noise here
        try:
            return ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several pybind types (InvalidProtobuf, Fail, ...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"cannot load {self.path} as an ONNX model ({reason}); is it a complete .onnx export?"
            ) from None

    def _read_input(self, input_size_px: int | None) -> tuple[str, tuple[int, int], Any]:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"{self.path}: expected one image input, found {len(inputs)}: {[i.name for i in inputs]}"
            )
        inp = inputs[0]
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelError(f"{self.path}: expected an image input of shape (1, 3, H, W); found {shape}")
        dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        if inp.type not in dtypes:
            raise ModelError(f"{self.path}: input type {inp.type} is not supported (float32 or float16)")
        h, w = shape[2], shape[3]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            if input_size_px is not None and (h, w) != (input_size_px, input_size_px):
                raise ModelError(
                    f"{self.path}: the model has a fixed input of {w}x{h} px but input_size_px is "
                    f"{input_size_px}; remove input_size_px or pick the model exported at that size"
                )
            return inp.name, (h, w), dtypes[inp.type]
        size = input_size_px or 640
        if size % 32 != 0:
            raise ModelError(f"{self.path}: input_size_px must be a multiple of 32; got {size}")
        return inp.name, (size, size), dtypes[inp.type]

    def _check_layout(self, shape: tuple[int, ...], layout: Layout | None) -> tuple[Layout, int]:
        """Validate (or detect) the layout from the output shape; return it and the class count."""
        # The class dimension is the short one: (1, 84, 8400) vs (1, 3549, 85). Requiring that
        # keeps a yolov8 file from being read as a YOLOX one with 2095 classes, and vice versa.
        is3 = len(shape) == 3 and shape[0] == 1
        fits = {
            "yolov8": is3 and 4 < shape[1] < shape[2],
            "yolox": is3 and 5 < shape[2] < shape[1],
        }
        if layout is None:
            coco_dim = {"yolov8": (1, 84), "yolox": (2, 85)}  # 80 COCO classes
            coco = [n for n in LAYOUTS if fits[n] and shape[coco_dim[n][0]] == coco_dim[n][1]]
            if len(coco) != 1:
                raise ModelError(
                    f"{self.path}: unsupported detector output shape {shape}; supported: {SUPPORTED_SHAPES}. "
                    "For a model with another number of classes set model.layout explicitly"
                )
            chosen: Layout = coco[0]
        else:
            if not fits[layout]:
                raise ModelError(
                    f"{self.path}: output shape {shape} does not fit layout {layout!r}; "
                    f"supported: {SUPPORTED_SHAPES}"
                )
            chosen = layout
        num_classes = shape[1] - 4 if chosen == "yolov8" else shape[2] - 5
        too_high = [c for c in self.classes if c >= num_classes]
        if too_high:
            raise ModelError(f"{self.path}: classes {too_high} requested but the model has {num_classes} classes")
        return chosen, num_classes

    def _yolox_grid(self, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        in_h, in_w = self.input_hw_px
        xy, strides = [], []
        for s in YOLOX_STRIDES:
            gh, gw = in_h // s, in_w // s
            ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            xy.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
            strides.append(np.full(gh * gw, s))
        grid = np.concatenate(xy).astype(np.float32)
        stride = np.concatenate(strides).astype(np.float32)
        if grid.shape[0] != n:
            raise ModelError(
                f"{self.path}: YOLOX output has {n} anchors but strides {YOLOX_STRIDES} on a "
                f"{in_w}x{in_h} input give {grid.shape[0]}; is input_size_px right?"
            )
        return grid, stride

    # ------------------------------------------------------------------ per frame

    def _geometry(self, width_px: int, height_px: int) -> tuple[int, int, int, int, float]:
        """(new_w, new_h, left, top, scale) of the letterbox; cached per frame size because the
        cameras sharing this detector keep their sizes."""
        key = (width_px, height_px)
        cached = self._geometry_cache.get(key)
        if cached is not None:
            return cached
        in_h, in_w = self.input_hw_px
        r = min(in_h / height_px, in_w / width_px)
        if self.layout == "yolox":
            # YOLOX's own preproc: truncating resize, image at the top-left corner
            new_w, new_h = max(1, int(width_px * r)), max(1, int(height_px * r))
            left = top = 0
        else:
            # Ultralytics LetterBox(center=True)
            new_w, new_h = max(1, round(width_px * r)), max(1, round(height_px * r))
            left = round((in_w - new_w) / 2 - 0.1)
            top = round((in_h - new_h) / 2 - 0.1)
        geom = (min(new_w, in_w), min(new_h, in_h), max(0, left), max(0, top), r)
        if len(self._geometry_cache) >= 64:  # bounded: sizes only change on reconfiguration
            self._geometry_cache.clear()
        self._geometry_cache[key] = geom
        return geom

    def preprocess(self, image_bgr: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], Letterbox]:
        """Letterbox one BGR frame into the reused input tensor (see the class docstring)."""
        img = _as_bgr(image_bgr)
        h, w = img.shape[:2]
        new_w, new_h, left, top, scale = self._geometry(w, h)
        canvas = self._canvas
        geom = (new_w, new_h, left, top)
        if geom != self._canvas_geometry:
            canvas.fill(PAD_VALUE)
            self._canvas_geometry = geom
        view = canvas[top : top + new_h, left : left + new_w]
        if (new_w, new_h) == (w, h):
            view[...] = img
        else:
            out = cv2.resize(img, (new_w, new_h), dst=view, interpolation=cv2.INTER_LINEAR)
            if not np.shares_memory(out, canvas):  # older OpenCV may not resize into a view
                view[...] = out
        if self.layout == "yolox":
            # BGR, 0..255. Per-plane copies of cv2.split are ~3x faster here than one strided
            # transposed copy (0.12 vs 0.33 ms at 416 px): this runs on every frame.
            for plane, channel in zip(self._tensor[0], cv2.split(canvas), strict=True):
                np.copyto(plane, channel, casting="unsafe")
        else:
            np.multiply(canvas.transpose(2, 0, 1)[::-1], np.float32(1.0 / 255.0), out=self._tensor[0], casting="unsafe")
        tensor: npt.NDArray[Any] = self._tensor
        if self._input_dtype is not np.float32:
            tensor = tensor.astype(self._input_dtype)
        return tensor, Letterbox(scale, float(left), float(top), w, h)

    def infer(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Run the session; return the raw output tensor (layout-specific)."""
        try:
            out = self._session.run([self._output_name], {self._input_name: tensor})[0]
        except Exception as exc:
            raise ModelError(f"{self.path}: inference failed: {str(exc).strip().splitlines()[0]}") from None
        return np.asarray(out, dtype=np.float32)

    def postprocess(self, raw: npt.NDArray[np.float32], letterbox: Letterbox) -> Detections:
        """Threshold, decode, NMS; boxes back in original image pixels, clipped to the image."""
        found = self._candidates_yolox(raw) if self.layout == "yolox" else self._candidates_yolov8(raw)
        if found is None:
            return Detections.empty()
        xywh, conf, cls = found  # xywh: top-left x, y, w, h in model input pixels
        finite = np.isfinite(xywh).all(axis=1) & np.isfinite(conf)
        if not finite.all():
            xywh, conf, cls = xywh[finite], conf[finite], cls[finite]
            if conf.size == 0:
                return Detections.empty()
        nms_boxes = xywh
        if len(self.classes) > 1:
            nms_boxes = xywh.copy()
            nms_boxes[:, :2] += (cls * _CLASS_OFFSET_PX)[:, None].astype(np.float32)
        kept = cv2.dnn.NMSBoxes(
            nms_boxes,  # type: ignore[arg-type]  # the binding takes (N, 4) arrays
            conf,  # type: ignore[arg-type]
            self.confidence_threshold,
            self.nms_iou_threshold,
            top_k=self.max_detections,
        )
        keep = np.asarray(kept, dtype=np.int64).reshape(-1)[: self.max_detections]
        if keep.size == 0:
            return Detections.empty()
        b = xywh[keep]
        xyxy = np.empty((keep.size, 4), dtype=np.float32)
        inv = 1.0 / letterbox.scale
        xyxy[:, 0] = (b[:, 0] - letterbox.pad_x_px) * inv
        xyxy[:, 1] = (b[:, 1] - letterbox.pad_y_px) * inv
        xyxy[:, 2] = (b[:, 0] + b[:, 2] - letterbox.pad_x_px) * inv
        xyxy[:, 3] = (b[:, 1] + b[:, 3] - letterbox.pad_y_px) * inv
        np.clip(xyxy[:, 0::2], 0.0, float(letterbox.image_width_px), out=xyxy[:, 0::2])
        np.clip(xyxy[:, 1::2], 0.0, float(letterbox.image_height_px), out=xyxy[:, 1::2])
        return Detections(xyxy, conf[keep], cls[keep])

    def detect(self, image_bgr: npt.NDArray[Any]) -> Detections:
        tensor, letterbox = self.preprocess(image_bgr)
        return self.postprocess(self.infer(tensor), letterbox)

    # ------------------------------------------------------------------ layout decoders

    def _candidates_yolov8(
        self, raw: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]] | None:
        p = raw[0]  # (4 + classes, N): each row is contiguous, so thresholding one row is cheap
        thr = self.confidence_threshold
        if len(self.classes) == 1:
            scores = p[4 + self.classes[0]]
            idx = np.flatnonzero(scores > thr)
            if idx.size == 0:
                return None
            conf = scores[idx]
            cls = np.full(idx.size, self.classes[0], dtype=np.int64)
        else:
            rows = p[4 + self._classes_arr]  # (k, N)
            best = rows.max(axis=0)
            idx = np.flatnonzero(best > thr)
            if idx.size == 0:
                return None
            conf = best[idx]
            cls = self._classes_arr[rows[:, idx].argmax(axis=0)]
        cxcywh = p[:4, idx]
        xywh = np.empty((idx.size, 4), dtype=np.float32)
        xywh[:, 0] = cxcywh[0] - cxcywh[2] * 0.5
        xywh[:, 1] = cxcywh[1] - cxcywh[3] * 0.5
        xywh[:, 2] = cxcywh[2]
        xywh[:, 3] = cxcywh[3]
        return xywh, conf.astype(np.float32, copy=False), cls

    def _candidates_yolox(
        self, raw: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]] | None:
        p = raw[0]  # (N, 5 + classes)
        thr = self.confidence_threshold
        idx = np.flatnonzero(p[:, 4] > thr)  # score = obj * cls <= obj: a cheap first cut
        if idx.size == 0:
            return None
        rows = p[idx]
        if len(self.classes) == 1:
            conf = rows[:, 4] * rows[:, 5 + self.classes[0]]
            cls = np.full(idx.size, self.classes[0], dtype=np.int64)
        else:
            sc = rows[:, 5 + self._classes_arr] * rows[:, 4:5]
            arg = sc.argmax(axis=1)
            conf = sc[np.arange(sc.shape[0]), arg]
            cls = self._classes_arr[arg]
        ok = conf > thr
        if not ok.any():
            return None
        rows, conf, cls, idx = rows[ok], conf[ok], cls[ok], idx[ok]
        if self.yolox_decoded:
            cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        else:
            stride = self._grid_stride[idx]
            cx = (rows[:, 0] + self._grid_xy[idx, 0]) * stride
            cy = (rows[:, 1] + self._grid_xy[idx, 1]) * stride
            w = np.exp(np.minimum(rows[:, 2], _MAX_LOG_SIZE)) * stride
            h = np.exp(np.minimum(rows[:, 3], _MAX_LOG_SIZE)) * stride
        xywh = np.empty((idx.size, 4), dtype=np.float32)
        xywh[:, 0] = cx - w * 0.5
        xywh[:, 1] = cy - h * 0.5
        xywh[:, 2] = w
        xywh[:, 3] = h
        return xywh, conf.astype(np.float32, copy=False), cls


def _as_bgr(image: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Accept what cameras deliver (BGR, grey, BGRA uint8); reject anything else clearly."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"expected an HxWx3 BGR image, got shape {image.shape}")


__all__ = ["Letterbox", "ModelError", "OnnxDetector", "SUPPORTED_SHAPES"]
