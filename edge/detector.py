"""Person detection with ONNX Runtime on the CPU: one decoder class per output layout, and an
input geometry chosen per camera.

Layouts (one :class:`Decoder` subclass each, so nothing branches on a layout string):

* :class:`Yolov8Decoder` (YOLOv8 / YOLO11 exports from Ultralytics): input RGB scaled to 0..1,
  letterboxed *centred* with grey 114; output ``(B, 4 + classes, N)`` = cx, cy, w, h in input
  pixels and one sigmoid score per class (no objectness).
* :class:`YoloxDecoder` (Megvii YOLOX exports): input BGR 0..255, *not* normalised, padded with
  114 at the right/bottom only; output ``(B, N, 5 + classes)`` = grid-relative cx, cy, log w,
  log h, objectness and class scores. Most exports (including ``yolox-nano-416.onnx``) leave the
  grid/stride decoding to the caller; an export that already decodes is recognised from the
  magnitude of its box values on a warm-up frame, so both kinds work.

Getting the preprocessing of each family right matters more than any threshold: feeding YOLOX
RGB 0..1 input, or shifting its padding to the centre, silently costs most of its recall.

Geometry. A square input wastes a third of the compute on padding for a 16:9 camera and a
quarter for 4:3. With ``input_width_px`` set (model families), each frame size gets the smallest
multiple-of-32 rectangle that holds the frame at that width (1920x1080 -> 384x640, 768x576 ->
480x640). Each geometry has its own ONNX Runtime session (an exact-shape static export when one
exists, otherwise the resizable graph with its input dimensions fixed in memory: a static
shape lets ORT fold the shape arithmetic, and runs faster than the dynamic graph), its own
letterbox canvas and input tensor, allocated once.

This runs on every analysed frame, so post-processing touches only the candidates above the
confidence threshold and NMS is OpenCV's C++ implementation (class-aware via a coordinate
offset per class).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge.contract import Detections
from edge.errors import UserFacingError
from edge.host import int8_dot_product, int8_note
from models.onnx_graph import explicit_inner_softmax, with_input_hw

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
# models already warned about int8 on a CPU without byte dot products: each camera worker and
# frame in flight builds its own detector, and the journal needs the advice once
_INT8_WARNED: set[str] = set()

FloatArray = npt.NDArray[np.float32]
Candidates = tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]


class ModelError(UserFacingError):
    """The detector model cannot be used: missing, not ONNX, or an output layout we cannot read."""


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed into the model input: ``model_px = image_px * scale + pad``.

    ``input_hw_px`` names the geometry (session) the image went into; ``None`` means the
    detector's primary one.
    """

    scale: float
    pad_x_px: float
    pad_y_px: float
    image_width_px: int
    image_height_px: int
    input_hw_px: tuple[int, int] | None = None


def input_geometry(width_px: int, height_px: int, long_side_px: int) -> tuple[int, int]:
    """(height, width) of the smallest multiple-of-32 rectangle holding the frame scaled so that
    its long side is ``long_side_px``: 1920x1080 at 640 -> (384, 640); 768x576 -> (480, 640)."""
    r = long_side_px / max(width_px, height_px)
    return _ceil32(height_px * r), _ceil32(width_px * r)


def _ceil32(v: float) -> int:
    return max(32, int(math.ceil(v / 32.0 - 1e-6)) * 32)


# ------------------------------------------------------------------------------ layout decoders


class Decoder:
    """What one output layout needs: how to fill the input tensor and how to read the output.

    One instance per input geometry (YOLOX's anchor grid depends on it).
    """

    layout: ClassVar[Layout]
    centred: ClassVar[bool]  # Ultralytics centres the letterbox; YOLOX pads right/bottom
    pad_input_value: ClassVar[float]  # the grey 114 in the tensor's own scale

    def __init__(self, classes: tuple[int, ...], input_hw_px: tuple[int, int]) -> None:
        self.classes = classes
        self._classes_arr = np.asarray(classes, dtype=np.int64)
        self.input_hw_px = input_hw_px
        self.num_classes = 0

    @staticmethod
    def fits(shape: tuple[int, ...]) -> bool:
        raise NotImplementedError

    @staticmethod
    def is_coco(shape: tuple[int, ...]) -> bool:
        raise NotImplementedError

    def bind(self, output_shape: tuple[int, ...], warmup_raw: FloatArray, path: Path) -> None:
        """Learn what the output of a warm-up run says (class count, anchors)."""

    def fill(self, canvas: npt.NDArray[np.uint8], plane: FloatArray) -> None:
        """Write the letterboxed BGR canvas into one (3, H, W) slot of the input tensor."""
        raise NotImplementedError

    def candidates(self, raw: FloatArray, thr: float) -> Candidates | None:
        """Boxes (top-left x, y, w, h in input pixels), scores and classes above ``thr``, of one
        image's output (the batch dimension already removed)."""
        raise NotImplementedError


class Yolov8Decoder(Decoder):
    layout = "yolov8"
    centred = True
    pad_input_value = PAD_VALUE / 255.0

    @staticmethod
    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) == 3 and 4 < shape[1] < shape[2]

    @staticmethod
    def is_coco(shape: tuple[int, ...]) -> bool:
        return shape[1] == 84

    def bind(self, output_shape: tuple[int, ...], warmup_raw: FloatArray, path: Path) -> None:
        self.num_classes = output_shape[1] - 4

    def fill(self, canvas: npt.NDArray[np.uint8], plane: FloatArray) -> None:
        # RGB, 0..1. Per-plane, as YOLOX's fill below: 0.19 against 0.30 ms at 480x640 for one
        # strided transposed multiply, the same values
        for dst, channel in zip(plane[::-1], cv2.split(canvas), strict=True):  # B, G, R -> planes 2, 1, 0
            np.multiply(channel, np.float32(1.0 / 255.0), out=dst, casting="unsafe")

    def candidates(self, raw: FloatArray, thr: float) -> Candidates | None:
        p = raw  # (4 + classes, N): each row is contiguous, so thresholding one row is cheap
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


class YoloxDecoder(Decoder):
    layout = "yolox"
    centred = False
    pad_input_value = float(PAD_VALUE)

    def __init__(self, classes: tuple[int, ...], input_hw_px: tuple[int, int]) -> None:
        super().__init__(classes, input_hw_px)
        self.decoded = False
        self._grid_xy: FloatArray = np.empty((0, 2), np.float32)
        self._grid_stride: FloatArray = np.empty(0, np.float32)

    @staticmethod
    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) == 3 and 5 < shape[2] < shape[1]

    @staticmethod
    def is_coco(shape: tuple[int, ...]) -> bool:
        return shape[2] == 85

    def bind(self, output_shape: tuple[int, ...], warmup_raw: FloatArray, path: Path) -> None:
        self.num_classes = output_shape[2] - 5
        in_h, in_w = self.input_hw_px
        xy, strides = [], []
        for s in YOLOX_STRIDES:
            gh, gw = in_h // s, in_w // s
            ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            xy.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
            strides.append(np.full(gh * gw, s))
        self._grid_xy = np.concatenate(xy).astype(np.float32)
        self._grid_stride = np.concatenate(strides).astype(np.float32)
        if self._grid_xy.shape[0] != output_shape[1]:
            raise ModelError(
                f"{path}: YOLOX output has {output_shape[1]} anchors but strides {YOLOX_STRIDES} on a "
                f"{in_w}x{in_h} input give {self._grid_xy.shape[0]}; is input_size_px right?"
            )
        # Raw outputs are offsets of a few cells; decoded ones are input pixels. The warm-up
        # frame is grey 114, which this check relies on.
        limit = max(in_h, in_w) / YOLOX_STRIDES[0] / 2.0
        self.decoded = bool(np.max(np.abs(warmup_raw[0, :, 0:2])) > limit)

    def fill(self, canvas: npt.NDArray[np.uint8], plane: FloatArray) -> None:
        # BGR, 0..255. Per-plane copies of cv2.split are ~3x faster here than one strided
        # transposed copy (0.12 vs 0.33 ms at 416 px): this runs on every frame.
        for dst, channel in zip(plane, cv2.split(canvas), strict=True):
            np.copyto(dst, channel, casting="unsafe")

    def candidates(self, raw: FloatArray, thr: float) -> Candidates | None:
        p = raw  # (N, 5 + classes)
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
        if self.decoded:
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


DECODERS: dict[Layout, type[Decoder]] = {"yolov8": Yolov8Decoder, "yolox": YoloxDecoder}


# ------------------------------------------------------------------------------ one geometry


class _Slot:
    """One input geometry: its session, decoder, letterbox canvas and input tensor (batch 1),
    plus a batch tensor grown on demand for shared inference across cameras."""

    def __init__(self, session: ort.InferenceSession, hw: tuple[int, int], dtype: Any, source: str) -> None:
        self.session = session
        self.hw = hw
        self.dtype = dtype
        self.source = source  # file name, for the log
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.batchable = not isinstance(inp.shape[0], int) or inp.shape[0] != 1
        self.output_name = session.get_outputs()[0].name
        self.canvas = np.full((hw[0], hw[1], 3), PAD_VALUE, dtype=np.uint8)
        self.tensor = np.empty((1, 3, hw[0], hw[1]), dtype=np.float32)
        self.batch_tensor: FloatArray | None = None
        self.canvas_geometry: tuple[int, int, int, int] | None = None
        self.geometry_cache: dict[tuple[int, int], tuple[int, int, int, int, float]] = {}
        self.decoder: Decoder | None = None
        self.output_shape: tuple[int, ...] = ()

    def batch(self, n: int) -> FloatArray:
        if self.batch_tensor is None or self.batch_tensor.shape[0] < n:
            self.batch_tensor = np.empty((n, 3, self.hw[0], self.hw[1]), dtype=np.float32)
        return self.batch_tensor


class OnnxDetector:
    """ONNX Runtime sessions (one per input geometry) and the pre/post-processing of a layout.

    ``layout=None`` detects the layout from the output shape. ``input_size_px`` is only needed
    for models with a dynamic input shape; a fixed input shape is read from the model and a
    conflicting value is an error. With ``input_width_px`` the geometry follows each frame's
    aspect ratio (see the module docstring); ``static_variants`` are exact-shape exports of the
    same weights, used when a geometry matches. Boxes are returned in pixels of the image passed
    to :meth:`preprocess` / :meth:`detect`, clipped to it.

    Not thread-safe: :meth:`preprocess` returns a tensor that the next call for the same
    geometry overwrites (one buffer per geometry, no per-frame allocation). The runtime calls
    the detector from its single analysis loop; use one instance per thread otherwise.
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
        *,
        input_width_px: int | None = None,
        static_variants: Mapping[tuple[int, int], Path] | None = None,
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
        if input_width_px is not None and input_width_px % 32 != 0:
            raise ModelError(f"{self.path}: input_width_px must be a multiple of 32; got {input_width_px}")
        self.confidence_threshold = float(confidence_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.classes: tuple[int, ...] = tuple(sorted({int(c) for c in classes}))
        self.threads = int(threads)
        self.max_detections = int(max_detections)
        self.input_width_px = input_width_px
        self.static_variants = {tuple(k): Path(v) for k, v in (static_variants or {}).items()}
        self.name: str | None = None
        self.licence: str | None = None
        self.precision = "fp32"
        self._proto: Any = None  # the resizable graph, parsed once when a geometry needs it
        # files whose inner-axis Softmax (YOLOv8/YOLO11's DFL) runs as explicit nodes (an int8 run 11 % shorter)
        self.inner_softmax_rewritten: set[str] = set()
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._frame_geometry: dict[tuple[int, int], tuple[int, int]] = {}
        self._layout: Layout | None = layout

        session = self._open_session(self.path)
        hw, dtype = self._read_input(session, input_size_px)
        if input_width_px is not None and hw is None:
            hw = (input_width_px, input_width_px)  # the square slot: layout check and fallback
        if hw is None:
            raise ModelError(f"{self.path}: input_size_px must be a multiple of 32; got {input_size_px}")
        self.resizable = self._dynamic_hw
        if self.resizable and hw != self._session_hw(session):
            session = self._session_for(hw)
        primary = self._add_slot(session, hw, dtype, self.path.name)
        if not self.resizable:
            self._proto = None  # only a resizable graph builds more sessions from it
        self.input_hw_px: tuple[int, int] = hw
        self._primary = primary
        assert primary.decoder is not None
        log.info(
            "detector %s: layout=%s%s input=%dx%d%s output=%s threads=%d classes=%s",
            self.path.name,
            primary.decoder.layout,
            " (decoded)" if getattr(primary.decoder, "decoded", False) else "",
            hw[1],
            hw[0],
            f" (per camera at width {input_width_px})" if input_width_px else "",
            primary.output_shape,
            self.threads,
            list(self.classes),
        )

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_config(
        cls,
        cfg: ModelConfig,
        base_dir: Path | None = None,
        data_dir: Path | None = None,
        calibration_videos: Sequence[Path] | None = None,
    ) -> OnnxDetector:
        """Build the detector of a store config (``model:``); ``base_dir`` is the config's folder,
        ``data_dir`` where quantised copies are cached (``precision: int8``), quantised on first
        use from ``calibration_videos`` (default: the shared videos)."""
        from models.registry import ModelResolveError, resolve_model, sha256_file

        try:
            resolved = resolve_model(cfg, base_dir)
            if resolved.precision == "int8":
                from models.quantize import int8_variant

                resolved = int8_variant(resolved, data_dir, calibration_videos)
                if int8_dot_product() is False and str(resolved.path) not in _INT8_WARNED:
                    _INT8_WARNED.add(str(resolved.path))
                    log.warning("model %s: %s; fp32 at the same geometry is the simpler choice",
                                resolved.name, int8_note())
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
            input_width_px=resolved.input_width_px,
            static_variants=resolved.static_variants,
        )
        det.name = resolved.name
        det.licence = resolved.licence
        det.precision = resolved.precision
        if resolved.sha256 is not None and sha256_file(resolved.path) != resolved.sha256:
            # still usable, but not the file whose accuracy and latency were validated
            log.warning("model %s: %s does not match the registry sha256", resolved.name, resolved.path)
        log.info("model %s (%s), licence: %s", resolved.name or resolved.path, resolved.precision, resolved.licence)
        return det

    def _open_session(self, model: Path | bytes, label: str | None = None) -> ort.InferenceSession:
        if isinstance(model, Path):
            if not model.exists():
                raise ModelError(f"model file not found: {model}")
            if not model.is_file():
                raise ModelError(f"model path is not a file: {model}")
            graph = self._proto if model == self.path and self._proto is not None else self._load_graph(model)
            if model == self.path:
                self._proto = graph
            if graph is not None:
                label, model = label or str(model), bytes(graph.SerializeToString())
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # ORT warnings about unused initialisers etc. are noise here
        try:
            source = str(model) if isinstance(model, Path) else model
            return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several pybind types (InvalidProtobuf, Fail, ...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = label or str(model if isinstance(model, Path) else self.path)
            raise ModelError(
                f"cannot load {where} as an ONNX model ({reason}); is it a complete .onnx export?"
            ) from None

    def _load_graph(self, path: Path) -> Any | None:
        """``path`` parsed, with the speed rewrite of
        :func:`models.onnx_graph.explicit_inner_softmax` applied (the file's name then joins
        ``inner_softmax_rewritten``), for ONNX Runtime to load from memory; ``None`` when onnx
        cannot parse the file, so that ONNX Runtime loads it from the path and names the problem."""
        try:
            graph = _load_onnx(path)
        except ModelError:
            raise
        except Exception:  # noqa: BLE001 - a damaged file: ORT's own message is the clearer one
            return None
        try:
            if explicit_inner_softmax(graph):
                self.inner_softmax_rewritten.add(path.name)
        except Exception as exc:  # noqa: BLE001 - an optimisation is never a reason not to run
            log.warning("%s: run as exported (the softmax rewrite failed: %s: %s)", path.name, type(exc).__name__, exc)
            return _load_onnx(path)
        return graph

    @staticmethod
    def _session_hw(session: ort.InferenceSession) -> tuple[int, int] | None:
        shape = list(session.get_inputs()[0].shape)
        h, w = shape[2], shape[3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    def _read_input(
        self, session: ort.InferenceSession, input_size_px: int | None
    ) -> tuple[tuple[int, int] | None, Any]:
        inputs = session.get_inputs()
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
        fixed = self._session_hw(session)
        # YOLOX's reshapes are dynamic: a fixed-size YOLOX graph still runs at any multiple of 32
        # once its input dims are edited, so with input_width_px it is resizable too.
        self._dynamic_hw = fixed is None or self.input_width_px is not None
        if fixed is not None:
            if input_size_px is not None and fixed != (input_size_px, input_size_px):
                raise ModelError(
                    f"{self.path}: the model has a fixed input of {fixed[1]}x{fixed[0]} px but input_size_px is "
                    f"{input_size_px}; remove input_size_px or pick the model exported at that size"
                )
            return fixed, dtypes[inp.type]
        if self.input_width_px is not None and input_size_px is None:
            return None, dtypes[inp.type]
        size = input_size_px or 640
        if size % 32 != 0:
            return None, dtypes[inp.type]
        return (size, size), dtypes[inp.type]

    def _session_for(self, hw: tuple[int, int]) -> ort.InferenceSession:
        """A session at exactly ``hw``: a static export of that shape, else the resizable graph
        with its input height/width fixed in memory (the shared model files are never written)."""
        variant = self.static_variants.get(hw)
        if variant is not None:
            return self._open_session(variant)
        if self._proto is None:
            self._proto = self._load_graph(self.path)
            if self._proto is None:
                raise ModelError(f"{self.path}: onnx cannot parse the model to resize its input; is it a complete export?")
        return self._open_session(with_input_hw(self._proto, hw), label=f"{self.path} at {hw[1]}x{hw[0]}")

    def _add_slot(self, session: ort.InferenceSession, hw: tuple[int, int], dtype: Any, source: str) -> _Slot:
        slot = _Slot(session, hw, dtype, source)
        # Warm-up on a grey frame: the real output shape (dynamic models report symbolic dims),
        # the layout, and the first-run allocation cost paid before the first real frame.
        # Grey is 114 in YOLOX's 0..255 scale, which its decoded-or-not check relies on; a
        # yolov8 graph is only asked for its output shape here.
        pad = DECODERS[self._layout].pad_input_value if self._layout is not None else YoloxDecoder.pad_input_value
        slot.tensor.fill(pad)
        raw = self._run(slot, slot.tensor.astype(dtype, copy=False))
        shape = tuple(int(d) for d in raw.shape)
        self._layout = self._check_layout(shape, self._layout)
        decoder = DECODERS[self._layout](self.classes, hw)
        decoder.bind(shape, raw, self.path)
        too_high = [c for c in self.classes if c >= decoder.num_classes]
        if too_high:
            raise ModelError(
                f"{self.path}: classes {too_high} requested but the model has {decoder.num_classes} classes"
            )
        slot.decoder = decoder
        slot.output_shape = shape
        self._slots[hw] = slot
        return slot

    def _check_layout(self, shape: tuple[int, ...], layout: Layout | None) -> Layout:
        """Validate (or detect) the layout from the output shape."""
        # The class dimension is the short one: (1, 84, 8400) vs (1, 3549, 85). Requiring that
        # keeps a yolov8 file from being read as a YOLOX one with 2095 classes, and vice versa.
        ok_batch = len(shape) == 3 and shape[0] == 1
        if layout is None:
            coco = [n for n in LAYOUTS if ok_batch and DECODERS[n].fits(shape) and DECODERS[n].is_coco(shape)]
            if len(coco) != 1:
                raise ModelError(
                    f"{self.path}: unsupported detector output shape {shape}; supported: {SUPPORTED_SHAPES}. "
                    "For a model with another number of classes set model.layout explicitly"
                )
            return coco[0]
        if not (ok_batch and DECODERS[layout].fits(shape)):
            raise ModelError(
                f"{self.path}: output shape {shape} does not fit layout {layout!r}; supported: {SUPPORTED_SHAPES}"
            )
        return layout

    # ------------------------------------------------------------------ compatibility views

    @property
    def layout(self) -> Layout:
        assert self._layout is not None
        return self._layout

    @property
    def decoder(self) -> Decoder:
        assert self._primary.decoder is not None
        return self._primary.decoder

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._primary.output_shape

    @property
    def _session(self) -> ort.InferenceSession:
        return self._primary.session

    @property
    def yolox_decoded(self) -> bool:
        return bool(getattr(self.decoder, "decoded", False))

    @yolox_decoded.setter
    def yolox_decoded(self, value: bool) -> None:
        for slot in self._slots.values():
            if isinstance(slot.decoder, YoloxDecoder):
                slot.decoder.decoded = value

    @property
    def geometries(self) -> list[tuple[int, int]]:
        """Input (height, width) of every session opened so far."""
        return list(self._slots)

    # ------------------------------------------------------------------ per frame

    def geometry_for(self, width_px: int, height_px: int) -> tuple[int, int]:
        """The input (height, width) this detector uses for frames of this size."""
        key = (width_px, height_px)
        hw = self._frame_geometry.get(key)
        if hw is None:
            if self.input_width_px is None or not self.resizable:
                hw = self.input_hw_px
            else:
                hw = input_geometry(width_px, height_px, self.input_width_px)
            if len(self._frame_geometry) >= 64:  # bounded: sizes only change on reconfiguration
                self._frame_geometry.clear()
            self._frame_geometry[key] = hw
        return hw

    def prepare(self, width_px: int, height_px: int) -> None:
        """Open the session for frames of this size now. A camera's geometry is known when its
        file opens; opening its session (seconds on a small CPU) inside the first frame would
        stall every camera's loop and count against the run's frames/s."""
        self._slot(self.geometry_for(width_px, height_px))

    def _slot(self, hw: tuple[int, int]) -> _Slot:
        slot = self._slots.get(hw)
        if slot is None:
            session = self._session_for(hw)
            slot = self._add_slot(session, hw, self._primary.dtype, self.static_variants.get(hw, self.path).name)
            log.info("detector %s: new input geometry %dx%d from %s", self.path.name, hw[1], hw[0], slot.source)
        return slot

    def _letterbox_geometry(self, slot: _Slot, width_px: int, height_px: int) -> tuple[int, int, int, int, float]:
        """(new_w, new_h, left, top, scale) of the letterbox; cached per frame size because the
        cameras sharing this detector keep their sizes."""
        key = (width_px, height_px)
        cached = slot.geometry_cache.get(key)
        if cached is not None:
            return cached
        in_h, in_w = slot.hw
        r = min(in_h / height_px, in_w / width_px)
        assert slot.decoder is not None
        if slot.decoder.centred:
            # Ultralytics LetterBox(center=True)
            new_w, new_h = max(1, round(width_px * r)), max(1, round(height_px * r))
            left = round((in_w - new_w) / 2 - 0.1)
            top = round((in_h - new_h) / 2 - 0.1)
        else:
            # YOLOX's own preproc: truncating resize, image at the top-left corner
            new_w, new_h = max(1, int(width_px * r)), max(1, int(height_px * r))
            left = top = 0
        geom = (min(new_w, in_w), min(new_h, in_h), max(0, left), max(0, top), r)
        if len(slot.geometry_cache) >= 64:
            slot.geometry_cache.clear()
        slot.geometry_cache[key] = geom
        return geom

    def preprocess(self, image_bgr: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], Letterbox]:
        """Letterbox one BGR frame into the reused input tensor of its geometry."""
        img = _as_bgr(image_bgr)
        h, w = img.shape[:2]
        slot = self._slot(self.geometry_for(w, h))
        letterbox = self._letterbox_into(slot, img, slot.tensor[0])
        tensor: npt.NDArray[Any] = slot.tensor
        if slot.dtype is not np.float32:
            tensor = tensor.astype(slot.dtype)
        return tensor, letterbox

    def preprocess_batch(self, images_bgr: Sequence[npt.NDArray[Any]]) -> tuple[npt.NDArray[Any], list[Letterbox]]:
        """Letterbox frames of the same geometry into one batch tensor (shared inference)."""
        imgs = [_as_bgr(i) for i in images_bgr]
        hws = {self.geometry_for(i.shape[1], i.shape[0]) for i in imgs}
        if len(hws) != 1:
            raise ValueError(f"a batch needs frames of one input geometry; got {sorted(hws)}")
        slot = self._slot(hws.pop())
        batch = slot.batch(len(imgs))
        boxes = [self._letterbox_into(slot, img, batch[k]) for k, img in enumerate(imgs)]
        tensor: npt.NDArray[Any] = batch[: len(imgs)]
        if slot.dtype is not np.float32:
            tensor = tensor.astype(slot.dtype)
        return tensor, boxes

    def can_batch(self, hw: tuple[int, int]) -> bool:
        """True when the session of this geometry takes more than one image per run."""
        return self._slot(hw).batchable

    def _letterbox_into(self, slot: _Slot, img: npt.NDArray[Any], plane: FloatArray) -> Letterbox:
        h, w = img.shape[:2]
        new_w, new_h, left, top, scale = self._letterbox_geometry(slot, w, h)
        canvas = slot.canvas
        geom = (new_w, new_h, left, top)
        if geom != slot.canvas_geometry:
            canvas.fill(PAD_VALUE)
            slot.canvas_geometry = geom
        view = canvas[top : top + new_h, left : left + new_w]
        if (new_w, new_h) == (w, h):
            view[...] = img
        else:
            out = cv2.resize(img, (new_w, new_h), dst=view, interpolation=cv2.INTER_LINEAR)
            if not np.shares_memory(out, canvas):  # older OpenCV may not resize into a view
                view[...] = out
        assert slot.decoder is not None
        slot.decoder.fill(canvas, plane)
        return Letterbox(scale, float(left), float(top), w, h, slot.hw)

    def infer(self, tensor: npt.NDArray[Any]) -> FloatArray:
        """Run the session of the tensor's geometry; return the raw output (layout-specific)."""
        hw = (int(tensor.shape[2]), int(tensor.shape[3]))
        return self._run(self._slot(hw), tensor)

    def _run(self, slot: _Slot, tensor: npt.NDArray[Any]) -> FloatArray:
        try:
            out = slot.session.run([slot.output_name], {slot.input_name: tensor})[0]
        except Exception as exc:
            raise ModelError(f"{self.path}: inference failed: {str(exc).strip().splitlines()[0]}") from None
        return np.asarray(out, dtype=np.float32)

    def postprocess(self, raw: FloatArray, letterbox: Letterbox, index: int = 0) -> Detections:
        """Threshold, decode, NMS for image ``index`` of the batch; boxes back in original image
        pixels, clipped to the image."""
        slot = self._slots.get(letterbox.input_hw_px) if letterbox.input_hw_px else self._primary
        decoder = (slot or self._primary).decoder
        assert decoder is not None
        found = decoder.candidates(raw[index], self.confidence_threshold)
        if found is None:
            return Detections.empty()
        return self._nms_and_map(found, letterbox)

    def _nms_and_map(self, found: Candidates, letterbox: Letterbox) -> Detections:
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


def _load_onnx(path: Path) -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency; this names it if it is missing
        raise ModelError(
            f"{path}: choosing the input geometry per camera needs the 'onnx' package (pip install onnx)"
        ) from None
    return onnx.load(str(path))


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


__all__ = [
    "DECODERS",
    "Decoder",
    "Letterbox",
    "ModelError",
    "OnnxDetector",
    "SUPPORTED_SHAPES",
    "Yolov8Decoder",
    "YoloxDecoder",
    "input_geometry",
]
