"""Per-camera input geometry, model families and static int8 (real models on real images).

The int8 tests quantise the small yolov8n-320 on a handful of real frames: the point is the
mechanics (decode kept in float, cache, first-use quantisation), not calibration quality.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge.config import ModelConfig
from edge.detector import OnnxDetector, input_geometry
from models.quantize import Quantised, cached, check_agreement, decode_tail, int8_variant, quantize
from models.registry import REGISTRY, ModelResolveError, resolve_model


@pytest.fixture(scope="module")
def bus(images_path: Path) -> np.ndarray:
    img = cv2.imread(str(images_path / "bus.jpg"))
    assert img is not None
    return img


@pytest.fixture(scope="module")
def zidane(images_path: Path) -> np.ndarray:
    img = cv2.imread(str(images_path / "zidane.jpg"))
    assert img is not None
    return img


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    ih = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = iw * ih
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_input_geometry_is_the_smallest_multiple_of_32_rectangle() -> None:
    assert input_geometry(1920, 1080, 640) == (384, 640)  # 16:9: 640x360 + padding
    assert input_geometry(768, 576, 640) == (480, 640)  # 4:3
    assert input_geometry(384, 288, 640) == (480, 640)  # small 4:3 is scaled up
    assert input_geometry(1080, 1920, 640) == (640, 384)  # portrait
    assert input_geometry(1280, 720, 416) == (256, 416)
    assert input_geometry(640, 640, 640) == (640, 640)


def test_family_picks_geometry_per_frame_and_static_export_when_it_matches(
    bus: np.ndarray, zidane: np.ndarray
) -> None:
    det = OnnxDetector.from_config(ModelConfig(name="yolov8n", confidence_threshold=0.25))
    square = OnnxDetector.from_config(ModelConfig(name="yolov8n-640", confidence_threshold=0.25))
    wide = det.detect(zidane)  # 1280x720 -> the static 384x640 export
    assert det.geometry_for(1280, 720) == (384, 640)
    assert det._slots[(384, 640)].source == "yolov8n-384x640.onnx"
    tall = det.detect(bus)  # 810x1080 -> 640x480 (portrait) from the dynamic graph, dims fixed in memory
    assert det._slots[(640, 480)].source == "yolov8n-dynamic.onnx"
    assert det._slots[(640, 480)].session.get_inputs()[0].shape[2:] == [640, 480]
    # same weights as the square model: the confident persons are found at the same places
    for got, ref in ((wide, square.detect(zidane)), (tall, square.detect(bus))):
        confident = ref.xyxy[ref.confidence > 0.5]
        assert len(confident) >= 2
        for box in confident:
            assert max(_iou(box, g) for g in got.xyxy) > 0.8


def test_yolox_family_runs_at_a_rectangular_size(zidane: np.ndarray) -> None:
    det = OnnxDetector.from_config(ModelConfig(name="yolox-nano", confidence_threshold=0.25))
    found = det.detect(zidane)
    assert det.geometry_for(1280, 720) == (256, 416)
    slot = det._slots[(256, 416)]
    assert slot.output_shape == (1, (32 * 52 + 16 * 26 + 8 * 13), 85)  # anchors of a 256x416 input
    assert int((found.confidence > 0.5).sum()) == 2  # the two men, as at 416x416


def test_names_of_fixed_files_keep_their_square_input() -> None:
    r = resolve_model(ModelConfig(name="yolov8n-640"))
    assert r.input_width_px is None and r.input_size_px == 640
    det = OnnxDetector.from_config(ModelConfig(name="yolox-nano-416"))
    assert det.geometry_for(1280, 720) == (416, 416)


def test_decode_tail_keeps_the_head_decode_in_float(models_path: Path) -> None:
    model = onnx.load(str(models_path / "yolov8n-320.onnx"))
    tail = set(decode_tail(model))
    by_name = {n.name: n for n in model.graph.node}
    last = next(n for n in model.graph.node if "output0" in n.output)
    assert last.name in tail  # the Concat of boxes and scores
    assert any(by_name[n].op_type == "Sigmoid" and "model.22" in n for n in tail)
    assert any("dfl" in n for n in tail)
    # no feature convolution of the backbone or the head's branches is excluded
    assert not any(by_name[n].op_type == "Conv" and "dfl" not in n for n in tail)


@pytest.fixture(scope="module")
def int8_320(tmp_path_factory: pytest.TempPathFactory, table_video: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("int8")
    resolved = resolve_model(ModelConfig(name="yolov8n-320"))
    q = quantize(resolved, out / "models", [table_video], frames=6)
    return q.path, q.meta


def test_int8_finds_the_same_people_as_fp32(int8_320: tuple[Path, dict], bus: np.ndarray, models_path: Path) -> None:
    path, meta = int8_320
    fp32 = OnnxDetector(models_path / "yolov8n-320.onnx", "yolov8", confidence_threshold=0.25)
    int8 = OnnxDetector(path, "yolov8", confidence_threshold=0.25)
    a, b = fp32.detect(bus), int8.detect(bus)
    assert len(a) == 3
    for box, score in zip(a.xyxy, a.confidence, strict=True):
        j = int(np.argmax([_iou(box, g) for g in b.xyxy]))
        assert _iou(box, b.xyxy[j]) > 0.8
        assert abs(float(b.confidence[j]) - float(score)) < 0.15  # 6 calibration frames of another scene
    # the sidecar records where it came from and how close it is
    assert meta["source"] == "yolov8n-320.onnx" and meta["source_sha256"] == REGISTRY["yolov8n-320"].sha256
    assert meta["calibration"]["videos"] == ["one-by-one-person-detection.mp4"]
    assert meta["accuracy_delta"]["recall_vs_fp32"] >= 0.8
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == meta["sha256"]
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


def test_int8_on_first_use_is_cached_and_redone_when_damaged(
    int8_320: tuple[Path, dict], caplog: pytest.LogCaptureFixture, table_video: Path
) -> None:
    path, _ = int8_320
    data_dir = path.parent.parent
    resolved = resolve_model(ModelConfig(name="yolov8n-320", precision="int8"))
    with caplog.at_level(logging.WARNING, logger="storesense.quantize"):
        got = int8_variant(resolved, data_dir)
    assert got.path == path and "quantising it now" not in caplog.text  # cached: no work
    mtime = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes()[:-10])  # damaged copy: detected by its sha256
    assert cached(resolved, data_dir / "models") is None
    with caplog.at_level(logging.WARNING, logger="storesense.quantize"):
        again = int8_variant(resolved, data_dir, [table_video], frames=6)
    assert "quantising it now" in caplog.text
    assert "pre-processing" not in caplog.text  # ORT's advice, measured to change nothing here
    assert again.path == path and path.stat().st_mtime_ns != mtime
    assert cached(resolved, data_dir / "models") is not None


def test_the_int8_speed_warning_is_logged_once_for_all_workers(
    int8_320: tuple[Path, dict], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every camera worker and frame in flight builds its own detector; the journal said the
    same 'no VNNI' advice once per detector."""
    import edge.detector as detector_module
    import edge.host

    # a CPU without VNNI, whatever this machine has (the advice and its text both read the flags)
    monkeypatch.setattr(edge.host, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(detector_module, "_INT8_WARNED", set())
    data_dir = int8_320[0].parent.parent
    with caplog.at_level(logging.WARNING, logger="edge.detector"):
        for _ in range(3):
            OnnxDetector.from_config(ModelConfig(name="yolov8n-320", precision="int8"), data_dir=data_dir)
    assert sum("no VNNI" in r.getMessage() for r in caplog.records) == 1


def test_an_old_opset_model_quantises_to_a_file_onnx_runtime_loads(tmp_path: Path, table_video: Path) -> None:
    """YOLOX-Nano is opset 11; per-channel int8 needs DequantizeLinear's axis (opset 13). Without
    the conversion ONNX Runtime refused the copy ("Unrecognized attribute: axis")."""
    import onnxruntime as ort

    q = quantize(resolve_model(ModelConfig(name="yolox-nano")), tmp_path / "models", [table_video], frames=6)
    model = onnx.load(str(q.path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    ort.InferenceSession(str(q.path), providers=["CPUExecutionProvider"])  # loads: it raised before
    assert 0.0 <= q.meta["accuracy_delta"]["recall_vs_fp32"] <= 1.0


def test_an_int8_copy_that_loses_people_is_refused_with_its_figure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def copy(recall: float, boxes: float = 37.0) -> Quantised:
        delta = {"frames": 24.0, "fp32_boxes": boxes, "recall_vs_fp32": recall}
        return Quantised(tmp_path / "m-int8.onnx", {"accuracy_delta": delta})

    check_agreement(copy(0.97), "yolov8n")  # YOLOv8n's copy: used
    with pytest.raises(ModelResolveError, match=r"yolox-nano: its int8 copy finds 49% of the people fp32 finds on "
                       r"24 frames .*at least 80% needed.*m-int8.json.*set precision: fp32"):
        check_agreement(copy(0.4865), "yolox-nano")
    # a handful of boxes cannot judge a copy: one miss in five is not a broken model
    with caplog.at_level(logging.WARNING, logger="storesense.quantize"):
        check_agreement(copy(0.6, boxes=5.0), "yolov8n")
    assert "on only 5 boxes: too few to judge it" in caplog.text


def _short_clip(src: Path, dst: Path, frames: int, skip: int = 0) -> Path:
    cap = cv2.VideoCapture(str(src))
    for _ in range(skip):
        cap.grab()
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 432))
    for _ in range(frames):
        ok, img = cap.read()
        assert ok
        out.write(img)
    out.release()
    cap.release()
    return dst


def test_cameras_due_together_share_one_batched_run_with_the_same_tracks(tmp_path: Path, table_video: Path) -> None:
    """Two cameras, one batched session.run per tick: the same tracks as one run per camera."""
    from edge.config import parse_config
    from edge.runtime import Runtime, build_detector, build_tracker, open_worker
    from edge.sinks import MemorySink

    clip = _short_clip(table_video, tmp_path / "clip.avi", 40, skip=80)  # someone walks in
    text = (
        "version: 1\nstore: {id: s}\nmodel: {name: yolov8n, input_width_px: 320, batch_cameras: %s}\ncameras:\n"
        f"  - {{id: a, source: {clip}, fps: 5}}\n  - {{id: b, source: {clip}, fps: 5}}\ndata_dir: {tmp_path / 'data'}\n"
    )
    results = {}
    for batch in ("true", "false"):
        cfg = parse_config(text % batch)
        detector = build_detector(cfg)
        calls = []
        if batch == "true":
            real = detector.preprocess_batch
            detector.preprocess_batch = lambda imgs, real=real, calls=calls: calls.append(len(imgs)) or real(imgs)  # type: ignore[method-assign]
        workers = [open_worker(cfg, cam, detector, build_tracker(cfg), start_epoch_s=0.0) for cam in cfg.cameras]
        seen: list[tuple[str, int, list[int], np.ndarray]] = []
        runtime = Runtime(cfg, workers, MemorySink(), None, save_reference_frames=False,
                          on_tracks=lambda t, f, seen=seen: seen.append((t.camera_id, f.index, t.track_id.tolist(), t.xyxy.copy())))
        summary = runtime.run()
        assert summary.frames_processed == {"a": 20, "b": 20}
        results[batch] = sorted(seen, key=lambda r: (r[0], r[1]))
        if batch == "true":
            assert calls and set(calls) == {2}  # every tick: both cameras in one run
    assert len(results["true"]) == len(results["false"]) == 40
    assert any(len(r[2]) for r in results["false"])  # people were tracked at all
    for (ca, ia, ids_a, box_a), (cb, ib, ids_b, box_b) in zip(results["true"], results["false"], strict=True):
        assert (ca, ia, ids_a) == (cb, ib, ids_b)
        np.testing.assert_allclose(box_a, box_b, atol=0.5)


def test_idle_camera_skips_the_detector_but_keeps_standing_people(bus: np.ndarray) -> None:
    """10 s of an unchanged picture at 5 fps: the detector runs on refresh only (every 2 s), the
    people standing in it stay tracked on every frame, and a change runs it at once."""
    from edge.config import TrackerConfig
    from edge.contract import Frame
    from edge.pipeline import CameraPipeline, IdleGate
    from edge.tracker import ByteTracker

    det = OnnxDetector.from_config(ModelConfig(name="yolox-nano-416"))
    runs = []
    real_infer = det.infer
    det.infer = lambda t: runs.append(1) or real_infer(t)  # type: ignore[method-assign]
    pipe = CameraPipeline("c", det, ByteTracker(TrackerConfig()), idle=IdleGate(refresh_s=2.0))
    counts = []
    for i in range(50):
        tracks = pipe.process(Frame("c", i, 1000.0 + i * 0.2, bus))
        counts.append(len(tracks))
    assert len(runs) == 5  # t = 0, 2, 4, 6, 8 s
    assert pipe.idle is not None and pipe.idle.skipped == 45
    confirmed = counts[5:]
    assert min(confirmed) == max(confirmed) >= 3  # nobody dropped while the detector idled
    moved = np.roll(bus, 40, axis=1)  # someone walks: the picture changes
    pipe.process(Frame("c", 50, 1010.0, moved))
    assert len(runs) == 6


def test_family_name_and_precision_pass_config_validation(tmp_path: Path, table_video: Path) -> None:
    from edge.config import ConfigError, load_config

    good = tmp_path / "store.yaml"
    good.write_text(f"version: 1\nstore: {{id: s}}\nmodel: {{name: yolov8n, precision: int8}}\n"
                    f"cameras: [{{id: c, source: {table_video}}}]\n")
    cfg = load_config(good)
    assert (cfg.model.name, cfg.model.precision) == ("yolov8n", "int8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("int8", "int4"))
    with pytest.raises(ConfigError):
        load_config(bad)


def test_a_file_cameras_geometry_is_opened_before_its_first_frame(tmp_path: Path, table_video: Path) -> None:
    """The per-camera session (seconds on a small CPU) is opened when the file opens, so the
    first frame does not stall the loop and the run's frames/s counts frames, not start-up."""
    from edge.config import parse_config
    from edge.runtime import build_detector, build_tracker, open_worker

    cfg = parse_config(
        "version: 1\nstore: {id: s}\nmodel: {name: yolox-nano}\ncameras:\n"
        f"  - {{id: a, source: {table_video}, fps: 5}}\n"
    )
    detector = build_detector(cfg)
    assert (256, 416) not in detector.geometries  # 768x432 at width 416
    worker = open_worker(cfg, cfg.cameras[0], detector, build_tracker(cfg), start_epoch_s=0.0)
    try:
        assert (256, 416) in detector.geometries
    finally:
        worker.source.close()


@pytest.mark.parametrize("opset", [17, 18])
def test_inner_softmax_is_rewritten_to_the_same_values(opset: int) -> None:
    """ORT's Softmax over an inner axis (YOLOv8's DFL) is slow; the rewrite must keep its values,
    large logits included, and leave a last-axis Softmax (YOLO11's attention) alone."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from models.onnx_graph import explicit_inner_softmax

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Softmax", ["s"], ["y"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, "anchors"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    x = (np.random.default_rng(0).standard_normal((1, 16, 4, 300)) * 40).astype(np.float32)
    x[0, 3, 0, 0] = 500.0  # exp(500) overflows float32 unless the max is subtracted first

    def run(m: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"x": x})[0])

    expected = run(model)
    assert explicit_inner_softmax(model) == 1
    assert [n.op_type for n in model.graph.node].count("Softmax") == 1  # the last-axis one stays
    got = run(model)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_detector_runs_yolov8_without_the_inner_softmax_and_gives_the_exported_output(
    zidane: np.ndarray, models_path: Path
) -> None:
    import onnxruntime as ort

    for name in ("yolov8n-640", "yolov8n"):
        det = OnnxDetector.from_config(ModelConfig(name=name))
        tensor, _ = det.preprocess(zidane)
        slot = det._slots[det.geometry_for(zidane.shape[1], zidane.shape[0])]
        ours = det.infer(tensor)
        source = models_path / slot.source
        exported = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        assert any(n.op_type == "Softmax" for n in onnx.load(str(source)).graph.node)
        reference = exported.run(None, {exported.get_inputs()[0].name: tensor})[0]
        np.testing.assert_allclose(ours[:, 4:], reference[:, 4:], atol=1e-5)  # scores
        np.testing.assert_allclose(ours[:, :4], reference[:, :4], atol=1e-2)  # box px
        assert slot.source in det.inner_softmax_rewritten
