"""Detector: real ONNX models from ../shared/models on the reference images bus.jpg and zidane.jpg.

Reference boxes were measured once with this detector (conf 0.25, NMS IoU 0.45, ONNX Runtime
1.32, 2 threads) and checked by eye; yolov8n-640 reproduces the numbers of MODELS.md
exactly (bus: 0.91, 0.90, 0.90, 0.37; zidane: 0.88, 0.86). A regression in letterboxing,
channel order, normalisation or YOLOX grid decoding moves these boxes by tens of pixels or
drops the confidences, far beyond the tolerances below.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edge.config import ModelConfig
from edge.detector import PAD_VALUE, Letterbox, ModelError, OnnxDetector
from edge.resources import models_dir
from models import export
from models.registry import REGISTRY, ModelResolveError, resolve_model, sha256_file

CONF = 0.25
BOX_TOL_PX = 4.0
CONF_TOL = 0.02

Box = tuple[int, int, int, int]
# persons at conf 0.25, sorted by x1: (x1, y1, x2, y2) in original image pixels, confidence
REFERENCE: dict[tuple[str, str], list[tuple[Box, float]]] = {
    ("yolov8n-640", "bus"): [((0, 550, 57, 871), 0.37), ((50, 397, 243, 904), 0.90), ((221, 408, 343, 857), 0.90), ((672, 375, 810, 879), 0.91)],
    ("yolov8n-640", "zidane"): [((111, 197, 1114, 711), 0.88), ((750, 43, 1135, 708), 0.86)],
    ("yolov8n-320", "bus"): [((52, 388, 230, 904), 0.79), ((222, 402, 347, 854), 0.66), ((671, 396, 810, 867), 0.60)],
    ("yolov8n-320", "zidane"): [((131, 200, 1098, 715), 0.87), ((740, 37, 1140, 707), 0.78)],
    ("yolov8n-640-int8", "bus"): [((0, 562, 56, 868), 0.31), ((50, 398, 244, 903), 0.90), ((221, 408, 343, 856), 0.90), ((672, 372, 810, 879), 0.89)],
    ("yolov8n-640-int8", "zidane"): [((109, 197, 1113, 711), 0.86), ((751, 45, 1126, 708), 0.86)],
    ("yolo11n-640", "bus"): [((0, 551, 69, 872), 0.57), ((47, 398, 244, 903), 0.90), ((221, 403, 346, 860), 0.83), ((671, 393, 810, 881), 0.83)],
    ("yolo11n-640", "zidane"): [((142, 202, 1136, 712), 0.74), ((750, 41, 1150, 712), 0.87)],
    ("yolo11n-320", "bus"): [((0, 574, 80, 870), 0.32), ((50, 390, 245, 906), 0.85), ((218, 400, 345, 854), 0.78), ((666, 396, 810, 869), 0.71)],
    ("yolo11n-320", "zidane"): [((120, 201, 1082, 710), 0.85), ((745, 43, 1144, 712), 0.84)],
    ("yolox-nano-416", "bus"): [((0, 560, 82, 882), 0.26), ((50, 394, 214, 898), 0.85), ((219, 403, 347, 855), 0.81), ((686, 451, 810, 874), 0.69)],
    ("yolox-nano-416", "zidane"): [((150, 201, 681, 713), 0.85), ((712, 39, 1152, 707), 0.83)],
}
MODELS = sorted({m for m, _ in REFERENCE})
IMAGES = ("bus", "zidane")


@pytest.fixture(scope="module")
def detectors(models_path: Path) -> dict[str, OnnxDetector]:
    return {
        name: OnnxDetector(models_path / REGISTRY[name].filename, REGISTRY[name].layout, confidence_threshold=CONF)
        for name in MODELS
    }


@pytest.fixture(scope="module")
def images(images_path: Path) -> dict[str, np.ndarray]:
    out = {}
    for name in IMAGES:
        img = cv2.imread(str(images_path / f"{name}.jpg"))
        assert img is not None, name
        out[name] = img
    return out


def _sorted(det_xyxy: np.ndarray, conf: np.ndarray) -> list[tuple[np.ndarray, float]]:
    order = np.argsort(det_xyxy[:, 0], kind="stable")
    return [(det_xyxy[i], float(conf[i])) for i in order]


def _iou(a: np.ndarray | Box, b: np.ndarray | Box) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


def _inside_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box a's area that lies inside box b."""
    iw = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    ih = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    return iw * ih / float((a[2] - a[0]) * (a[3] - a[1]))


# ---------------------------------------------------------------------------------------------
# accuracy on the reference images


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("model", MODELS)
def test_person_boxes_match_reference(
    detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray], model: str, image: str
) -> None:
    det = detectors[model].detect(images[image])
    expected = REFERENCE[(model, image)]
    assert len(det) == len(expected), f"{model} on {image}: {len(det)} persons, expected {len(expected)}"
    assert set(det.class_id.tolist()) == {0}
    for (box, conf), (ref_box, ref_conf) in zip(_sorted(det.xyxy, det.confidence), expected, strict=True):
        assert np.abs(box - np.asarray(ref_box, np.float32)).max() <= BOX_TOL_PX, (box, ref_box)
        assert abs(conf - ref_conf) <= CONF_TOL, (conf, ref_conf)


def test_yolov8n_reproduces_models_md(detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray]) -> None:
    """MODELS.md: YOLOv8n at 640, conf 0.25: bus 4 persons (0.91, 0.90, 0.90, 0.37), zidane 2 (0.88, 0.86)."""
    bus = detectors["yolov8n-640"].detect(images["bus"])
    zidane = detectors["yolov8n-640"].detect(images["zidane"])
    np.testing.assert_allclose(np.sort(bus.confidence)[::-1], [0.91, 0.90, 0.90, 0.37], atol=0.006)
    np.testing.assert_allclose(np.sort(zidane.confidence)[::-1], [0.88, 0.86], atol=0.006)


# YOLOX-Nano draws zidane's left person without the outstretched arm that the Ultralytics models
# include (checked by eye): same person, box inside the reference box, but IoU only ~0.52.
KNOWN_NARROWER = {("yolox-nano-416", "zidane", 0)}


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("model", [m for m in MODELS if m != "yolov8n-640"])
def test_models_agree_on_confident_persons(
    detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray], model: str, image: str
) -> None:
    ref = detectors["yolov8n-640"].detect(images[image])
    det = detectors[model].detect(images[image])
    confident = _sorted(det.xyxy, det.confidence)
    checked = 0
    for i, (box, conf) in enumerate(confident):
        if conf < 0.5:
            continue
        checked += 1
        ious = [_iou(box, r) for r in ref.xyxy]
        best = int(np.argmax(ious))
        if (model, image, i) in KNOWN_NARROWER:
            assert _inside_fraction(box, ref.xyxy[best]) > 0.95 and ious[best] > 0.45, (box, ious[best])
        else:
            assert ious[best] > 0.7, f"{model} box {box} best IoU {ious[best]:.2f} with yolov8n-640"
    assert checked >= 2


@pytest.mark.parametrize("model", ["yolov8n-640", "yolox-nano-416"])
def test_boxes_are_in_original_image_pixels(
    detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray], model: str
) -> None:
    """Same scene at 2x size and shifted inside a larger frame: boxes follow in image pixels."""
    bus = images["bus"]
    ref = detectors[model].detect(bus)
    h, w = bus.shape[:2]
    assert (ref.xyxy >= 0).all() and (ref.xyxy[:, 2] <= w).all() and (ref.xyxy[:, 3] <= h).all()

    big = cv2.resize(bus, (w * 2, h * 2), interpolation=cv2.INTER_LINEAR)
    det2 = detectors[model].detect(big)
    assert len(det2) == len(ref)
    for (box, _), (rbox, _) in zip(_sorted(det2.xyxy, det2.confidence), _sorted(ref.xyxy, ref.confidence), strict=True):
        assert np.abs(box - 2 * rbox).max() <= 2 * BOX_TOL_PX + 2, (box, 2 * rbox)

    dx, dy = 300, 120
    framed = np.full((h + 2 * dy, w + 2 * dx, 3), PAD_VALUE, np.uint8)
    framed[dy : dy + h, dx : dx + w] = bus
    det3 = detectors[model].detect(framed)
    shifted = ref.xyxy + np.array([dx, dy, dx, dy], np.float32)
    for box, conf in zip(shifted, ref.confidence, strict=True):
        if conf < 0.5:
            continue  # weak detections may come and go when the person gets smaller
        assert max(_iou(box, b) for b in det3.xyxy) > 0.75, box
    assert (det3.xyxy[:, 2] <= framed.shape[1]).all() and (det3.xyxy[:, 3] <= framed.shape[0]).all()


# ---------------------------------------------------------------------------------------------
# preprocessing and decoding


def test_letterbox_yolov8_is_centred_rgb_unit_range(detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray]) -> None:
    det = detectors["yolov8n-640"]
    bus = images["bus"]  # 810x1080 -> 480x640, 80 px grey on each side
    tensor, lb = det.preprocess(bus)
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    assert lb.scale == pytest.approx(640 / 1080) and (lb.pad_x_px, lb.pad_y_px) == (80.0, 0.0)
    assert (lb.image_width_px, lb.image_height_px) == (810, 1080)
    assert tensor.max() <= 1.0
    np.testing.assert_allclose(tensor[0, :, :, :80], PAD_VALUE / 255.0, atol=1e-6)
    np.testing.assert_allclose(tensor[0, :, :, 560:], PAD_VALUE / 255.0, atol=1e-6)
    resized = cv2.resize(bus, (480, 640), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(tensor[0, 0, :, 80:560], resized[:, :, 2] / 255.0, atol=1e-6)  # R first
    np.testing.assert_allclose(tensor[0, 2, :, 80:560], resized[:, :, 0] / 255.0, atol=1e-6)


def test_letterbox_yolox_is_top_left_bgr_0_255(detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray]) -> None:
    det = detectors["yolox-nano-416"]
    zidane = images["zidane"]  # 1280x720 -> 416x234, grey below
    tensor, lb = det.preprocess(zidane)
    assert (lb.pad_x_px, lb.pad_y_px) == (0.0, 0.0)
    assert lb.scale == pytest.approx(416 / 1280)
    new_h = int(720 * 416 / 1280)
    resized = cv2.resize(zidane, (416, new_h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(tensor[0, 0, :new_h], resized[:, :, 0].astype(np.float32))  # B first, 0..255
    np.testing.assert_array_equal(tensor[0, :, new_h:], float(PAD_VALUE))
    # a different frame size afterwards must not leave stale pixels in the padding
    tensor2, _ = det.preprocess(images["bus"])
    np.testing.assert_array_equal(tensor2[0, :, :, 312:], float(PAD_VALUE))


def test_yolox_grid_decoding(detectors: dict[str, OnnxDetector]) -> None:
    """One synthetic anchor at stride 16, cell (x=3, y=5): box centre (3.5*16, 5.25*16), 32x48 px."""
    det = detectors["yolox-nano-416"]
    assert det.yolox_decoded is False  # this export leaves decoding to us (raw offsets of a few cells)
    n = det.output_shape[1]
    raw = np.zeros((1, n, 85), np.float32)
    index = 52 * 52 + 5 * 26 + 3  # stride-8 grid first, then row-major stride-16 cells
    raw[0, index, :6] = [0.5, 0.25, np.log(2.0), np.log(3.0), 0.9, 0.8]
    lb = Letterbox(scale=0.5, pad_x_px=0.0, pad_y_px=0.0, image_width_px=832, image_height_px=832)
    out = det.postprocess(raw, lb)
    assert len(out) == 1
    cx, cy = 3.5 * 16, 5.25 * 16
    np.testing.assert_allclose(out.xyxy[0], np.array([cx - 16, cy - 24, cx + 16, cy + 24]) / 0.5, atol=1e-3)
    assert out.confidence[0] == pytest.approx(0.72)
    # an export that already decodes gives input pixels directly
    det.yolox_decoded = True
    try:
        raw[0, index, :4] = [cx, cy, 32.0, 48.0]
        decoded = det.postprocess(raw, lb)
    finally:
        det.yolox_decoded = False
    np.testing.assert_allclose(decoded.xyxy, out.xyxy, atol=1e-3)


def test_class_aware_nms_and_class_filter(models_path: Path, images: dict[str, np.ndarray]) -> None:
    det = OnnxDetector(models_path / "yolov8n-640.onnx", classes=(0, 5), confidence_threshold=CONF)
    # two identical boxes, a person and a bus: class-aware NMS keeps both, each with its class
    raw = np.zeros((1, 84, 8400), np.float32)
    raw[0, :4, 10] = raw[0, :4, 20] = [320, 320, 100, 200]
    raw[0, 4 + 0, 10] = 0.9
    raw[0, 4 + 5, 20] = 0.8
    raw[0, 4 + 2, 30] = 0.99  # a car: not requested
    raw[0, :4, 30] = [100, 100, 50, 50]
    out = det.postprocess(raw, Letterbox(1.0, 0.0, 0.0, 640, 640))
    assert sorted(out.class_id.tolist()) == [0, 5]
    # on the real image: the bus is found next to the same four persons
    real = det.detect(images["bus"])
    assert int((real.class_id == 5).sum()) == 1
    assert int((real.class_id == 0).sum()) == 4
    assert set(real.class_id.tolist()) == {0, 5}


def test_nms_merges_duplicates_and_threshold_filters(detectors: dict[str, OnnxDetector]) -> None:
    det = detectors["yolov8n-640"]
    raw = np.zeros((1, 84, 8400), np.float32)
    raw[0, :4, 0] = [200, 200, 100, 200]
    raw[0, :4, 1] = [204, 202, 100, 200]  # IoU ~0.94 with the first: suppressed
    raw[0, :4, 2] = [500, 300, 80, 160]  # below the threshold: dropped
    raw[0, 4, :3] = [0.8, 0.7, CONF - 0.01]
    out = det.postprocess(raw, Letterbox(1.0, 0.0, 0.0, 640, 640))
    assert len(out) == 1 and out.confidence[0] == pytest.approx(0.8)
    np.testing.assert_allclose(out.xyxy[0], [150, 100, 250, 300])


def test_boxes_are_mapped_through_the_letterbox_and_clipped(detectors: dict[str, OnnxDetector]) -> None:
    det = detectors["yolov8n-640"]
    raw = np.zeros((1, 84, 8400), np.float32)
    raw[0, :4, 0] = [90, 300, 40, 100]  # x 70..110 in the input: starts inside the 80 px padding
    raw[0, :4, 1] = [320, 320, 200, 700]  # taller than the input
    raw[0, 4, :2] = [0.9, 0.8]
    lb = Letterbox(scale=0.5, pad_x_px=80.0, pad_y_px=0.0, image_width_px=960, image_height_px=1280)
    out = det.postprocess(raw, lb)
    got = out.xyxy[np.argsort(out.confidence)[::-1]]
    np.testing.assert_allclose(got[0], [0.0, 500.0, 60.0, 700.0])  # (70-80)/0.5 < 0 -> 0
    np.testing.assert_allclose(got[1], [280.0, 0.0, 680.0, 1280.0])  # clipped at top and bottom


def test_empty_frame_gives_no_detections(detectors: dict[str, OnnxDetector]) -> None:
    for det in detectors.values():
        assert len(det.detect(np.full((480, 640, 3), PAD_VALUE, np.uint8))) == 0


def test_grey_and_bgra_frames_are_accepted_bad_dtype_is_not(
    detectors: dict[str, OnnxDetector], images: dict[str, np.ndarray]
) -> None:
    det = detectors["yolov8n-640"]
    grey = cv2.cvtColor(images["bus"], cv2.COLOR_BGR2GRAY)
    assert len(det.detect(grey)) >= 3
    bgra = cv2.cvtColor(images["bus"], cv2.COLOR_BGR2BGRA)
    assert len(det.detect(bgra)) == 4
    with pytest.raises(ValueError, match="uint8"):
        det.detect(images["bus"].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# session settings


def test_threads_and_session_options(models_path: Path) -> None:
    det = OnnxDetector(models_path / "yolov8n-320.onnx", threads=3)
    opts = det._session.get_session_options()
    assert opts.intra_op_num_threads == 3
    assert opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert det._session.get_providers() == ["CPUExecutionProvider"]
    assert det.input_hw_px == (320, 320)  # read from the model, not from a default


def test_from_config_uses_registry_and_config_settings() -> None:
    det = OnnxDetector.from_config(ModelConfig(name="yolox-nano-416", confidence_threshold=0.5, threads=1))
    assert (det.layout, det.input_hw_px, det.confidence_threshold, det.threads) == ("yolox", (416, 416), 0.5, 1)
    assert det.licence is not None and "Apache-2.0" in det.licence
    assert det.name == "yolox-nano-416"


def test_config_path_wins_over_name_and_layout_is_detected(tmp_path: Path, models_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mine.onnx").symlink_to(models_path / "yolox-nano-416.onnx")
    cfg = ModelConfig(name="yolov8n-640", path="m/mine.onnx")
    resolved = resolve_model(cfg, tmp_path)
    assert resolved.layout is None and resolved.name is None
    det = OnnxDetector.from_config(cfg, tmp_path)
    assert det.layout == "yolox" and det.input_hw_px == (416, 416)


def test_fixed_input_size_conflict_is_an_error(models_path: Path) -> None:
    with pytest.raises(ModelError, match=r"fixed input of 640x640 px but input_size_px is 320"):
        OnnxDetector(models_path / "yolov8n-640.onnx", "yolov8", input_size_px=320)


# ---------------------------------------------------------------------------------------------
# errors


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelError, match=re.escape(str(missing))):
        OnnxDetector(missing, "yolov8")
    with pytest.raises(ModelError, match=re.escape(str(missing))):
        OnnxDetector.from_config(ModelConfig(path=str(missing)))
    rel = ModelConfig(path="models/custom.onnx")
    with pytest.raises(ModelError, match=re.escape(str(tmp_path / "models" / "custom.onnx"))):
        OnnxDetector.from_config(rel, tmp_path)


def test_missing_registry_file_names_the_path_and_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORESENSE_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError) as info:
        OnnxDetector.from_config(ModelConfig(name="yolo11n-320"))
    msg = str(info.value)
    assert str(tmp_path / "yolo11n-320.onnx") in msg and "STORESENSE_MODELS_DIR" in msg


def test_unknown_registry_name_lists_known_names() -> None:
    with pytest.raises(ModelError) as info:
        OnnxDetector.from_config(ModelConfig(name="yolov9-huge"))
    for name in REGISTRY:
        assert name in str(info.value)
    assert "yolov9-huge" in str(info.value)
    with pytest.raises(ModelResolveError):
        resolve_model(ModelConfig(name="yolov9-huge"), None)


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", bytes(range(256)) * 40])
def test_file_that_is_not_onnx_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(ModelError, match=re.escape(str(bad))):
        OnnxDetector(bad)


# A tiny ONNX model built by hand (protobuf wire format) so the test needs no `onnx` package:
# input images (1, 3, 32, 32) -> Reshape -> output0 of the requested shape.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _field_bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint((field << 3) | 2) + _varint(len(data)) + data


def _value_info(name: str, dims: tuple[int, ...]) -> bytes:
    shape = b"".join(_field_bytes(1, _field_int(1, d)) for d in dims)  # TensorShapeProto.dim
    tensor_type = _field_int(1, 1) + _field_bytes(2, shape)  # elem_type FLOAT, shape
    return _field_bytes(1, name) + _field_bytes(2, _field_bytes(1, tensor_type))


def tiny_reshape_onnx(out_dims: tuple[int, ...], in_dims: tuple[int, ...] = (1, 3, 32, 32)) -> bytes:
    shape_tensor = (
        _field_int(1, len(out_dims))  # dims
        + _field_int(2, 7)  # data_type INT64
        + _field_bytes(8, "shape")
        + _field_bytes(9, np.asarray(out_dims, "<i8").tobytes())  # raw_data
    )
    node = (
        _field_bytes(1, "images") + _field_bytes(1, "shape") + _field_bytes(2, "output0")
        + _field_bytes(3, "reshape") + _field_bytes(4, "Reshape")
    )
    graph = (
        _field_bytes(1, node) + _field_bytes(2, "tiny") + _field_bytes(5, shape_tensor)
        + _field_bytes(11, _value_info("images", in_dims)) + _field_bytes(12, _value_info("output0", out_dims))
    )
    opset = _field_bytes(1, "") + _field_int(2, 13)
    return _field_int(1, 8) + _field_bytes(2, "storesense-test") + _field_bytes(7, graph) + _field_bytes(8, opset)


@pytest.mark.parametrize("out_dims", [(1, 96, 32), (1, 3072), (1, 3, 32, 32), (2, 32, 48)])
def test_unknown_output_layout_is_a_model_error(tmp_path: Path, out_dims: tuple[int, ...]) -> None:
    path = tmp_path / "odd.onnx"
    path.write_bytes(tiny_reshape_onnx(out_dims))
    assert ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()[0].shape == list(out_dims)
    with pytest.raises(ModelError) as info:
        OnnxDetector(path)
    msg = str(info.value)
    assert str(path) in msg and str(out_dims) in msg
    assert "(1, 84, N)" in msg and "(1, N, 85)" in msg


def test_explicit_layout_that_does_not_fit_is_a_model_error(models_path: Path) -> None:
    with pytest.raises(ModelError, match=r"\(1, 84, 2100\) does not fit layout 'yolox'"):
        OnnxDetector(models_path / "yolov8n-320.onnx", "yolox")
    with pytest.raises(ModelError, match=r"\(1, 3549, 85\) does not fit layout 'yolov8'"):
        OnnxDetector(models_path / "yolox-nano-416.onnx", "yolov8")


def test_class_beyond_the_model_is_a_model_error(models_path: Path) -> None:
    with pytest.raises(ModelError, match=r"classes \[80\] requested but the model has 80 classes"):
        OnnxDetector(models_path / "yolov8n-320.onnx", classes=(0, 80))


# ---------------------------------------------------------------------------------------------
# registry and export


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_sha256_matches_files_and_models_md(name: str, models_path: Path) -> None:
    spec = REGISTRY[name]
    assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert sha256_file(models_path / spec.filename) == spec.sha256
    row = next(line for line in (models_path / "MODELS.md").read_text().splitlines() if line.startswith(f"| {spec.filename} "))
    assert spec.sha256[:8] in row
    assert ("Apache-2.0" in spec.licence) == ("Apache-2.0" in row)


def test_registry_layout_and_size_match_the_files(detectors: dict[str, OnnxDetector]) -> None:
    for name, det in detectors.items():
        assert det.layout == REGISTRY[name].layout
        assert det.input_hw_px == (REGISTRY[name].input_size_px,) * 2


def test_models_dir_env_variable_is_honoured(monkeypatch: pytest.MonkeyPatch, models_path: Path) -> None:
    monkeypatch.setenv("STORESENSE_MODELS_DIR", str(models_path))
    assert resolve_model(ModelConfig(name="yolov8n-320"), None).path == models_path / "yolov8n-320.onnx"
    assert models_dir() == models_path


def test_export_without_ultralytics_explains_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], models_path: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails as if not installed
    rc = export.main(["--weights", str(models_path / "yolov8n.pt"), "--imgsz", "320", "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install -e '.[export]'" in err
    assert not (tmp_path / "x.onnx").exists()
    rc = export.main(["--weights", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")])
    assert rc == 2 and str(tmp_path / "missing.pt") in capsys.readouterr().err
