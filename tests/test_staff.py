"""Staff identification: consensus voting on synthetic crops, eviction, the ONNX hook, and the
uniform method on real footage (hi-vis vest in the warehouse clip vs shoppers in the aisle clip)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import ModelConfig, TrackerConfig
from edge.contract import Tracks
from edge.detector import OnnxDetector
from edge.errors import UserFacingError
from edge.staff import (
    HI_VIS_HSV_RANGES,
    MAX_OCCLUDED_FRACTION,
    StaffIdentifier,
    StaffModelError,
    StaffStage,
    torso_box,
    uniform_pixel_fraction,
)
from edge.tracker import ByteTracker
from zones.config import StaffConfig

FRAME_W, FRAME_H = 320, 240
BOX = (100.0, 20.0, 180.0, 220.0)  # one person, 80x200 px
# BGR colours: hi-vis yellow (H 30, S 255, V 255), hi-vis orange (H ~8), a blue shirt, a brown coat
COLOURS = {
    "Y": (0, 255, 255),
    "O": (0, 100, 255),
    "B": (200, 60, 20),
    "brown": (40, 70, 110),
}


def uniform_cfg(**kw: object) -> StaffConfig:
    uni = {"hsv_ranges": HI_VIS_HSV_RANGES, "min_pixel_fraction": 0.2, "min_votes": 5, "staff_vote_fraction": 0.6}
    uni.update(kw)
    return StaffConfig.model_validate({"methods": ["uniform"], "uniform": uni})


def frame_with(colour: str, box: tuple[float, float, float, float] = BOX) -> np.ndarray:
    """Grey frame with a person whose whole box is painted ``colour`` (the torso band is what counts)."""
    img = np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    img[y1:y2, x1:x2] = COLOURS[colour]
    return img


def tracks_of(boxes: list[tuple[float, float, float, float]], ids: list[int], frame: int = 0,
              ended: tuple[int, ...] = ()) -> Tracks:
    return Tracks("cam", frame, 1000.0 + frame * 0.2, (FRAME_W, FRAME_H), np.array(boxes, np.float32).reshape(-1, 4),
                  np.full(len(ids), 0.9, np.float32), np.array(ids, np.int64), ended)


def run_sequence(ident: StaffIdentifier, seq: str) -> list[str]:
    """Feed one track through frames coloured by the letters of ``seq``; '-' = occluded/no image."""
    out: list[str] = []
    for i, c in enumerate(seq):
        if c == "-":
            ident.observe(tracks_of([BOX], [7], i), None)
        else:
            ident.observe(tracks_of([BOX], [7], i), frame_with({"y": "Y", "o": "O", "b": "B", "r": "brown"}[c]))
        out.append(ident.decision(7))
    return out


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        ("y", "undecided"),  # one yellow frame does not make staff
        ("yyyy", "undecided"),  # below min_votes
        ("yyyyy", "staff"),
        ("ooooo", "staff"),  # orange vest range
        ("bbbbb", "customer"),
        ("rrrrrrrrrr", "customer"),  # brown coat: orange hue but too dark
        ("ybybybybyb", "customer"),  # flicker 50 % < 60 %
        ("yyybyyybyyyb", "staff"),  # 75 %: a staff member turning away now and then stays staff
        ("ybbbbyb", "customer"),
        ("y----", "undecided"),  # frames without an image give no votes
        ("yyyyy" + "b" * 60, "customer"),  # votes are a bounded window: an early mistake is corrected
    ],
)
def test_uniform_consensus(seq: str, expected: str) -> None:
    ident = StaffIdentifier(uniform_cfg(), None)
    decisions = run_sequence(ident, seq)
    assert decisions[-1] == expected
    assert ident.is_staff(7) == (expected == "staff")
    st = ident._tracks[7]
    if st.uniform is not None:
        assert len(st.uniform.votes) <= st.uniform.window  # bounded memory per track


def test_single_yellow_frame_never_staff_before_min_votes() -> None:
    ident = StaffIdentifier(uniform_cfg(min_votes=8), None)
    assert "staff" not in run_sequence(ident, "yyyyyyy")
    assert run_sequence(ident, "y")[-1] == "staff"


@pytest.mark.parametrize(
    ("colour", "fraction_range"),
    [("Y", (0.99, 1.0)), ("O", (0.99, 1.0)), ("B", (0.0, 0.0)), ("brown", (0.0, 0.0))],
)
def test_pixel_fraction(colour: str, fraction_range: tuple[float, float]) -> None:
    ranges = [(np.array(r["lower"], np.uint8), np.array(r["upper"], np.uint8)) for r in HI_VIS_HSV_RANGES]
    crop = np.full((20, 10, 3), COLOURS[colour], np.uint8)
    lo, hi = fraction_range
    assert lo <= uniform_pixel_fraction(crop, ranges) <= hi


def test_torso_box_is_central_band_and_clipped() -> None:
    assert torso_box(BOX, (FRAME_W, FRAME_H)) == (120, 60, 160, 140)
    # a box hanging off the left edge is clipped to the frame
    x1, y1, x2, y2 = torso_box((-40.0, 0.0, 40.0, 200.0), (FRAME_W, FRAME_H))  # type: ignore[misc]
    assert x1 == 0 and x2 == 20
    assert torso_box((10.0, 10.0, 13.0, 15.0), (FRAME_W, FRAME_H)) is None  # a few pixels: no vote


def test_occluded_torso_gives_no_vote() -> None:
    """A customer in front (lower box bottom) covering the staff member's vest: their pixels, no vote."""
    ident = StaffIdentifier(uniform_cfg(), None)
    back = BOX
    front = (90.0, 50.0, 190.0, 235.0)  # nearer the camera, covers the torso band of `back`
    for i in range(10):
        img = frame_with("Y", back)
        x1, y1, x2, y2 = (int(v) for v in front)
        img[y1:y2, x1:x2] = COLOURS["B"]
        ident.observe(tracks_of([back, front], [1, 2], i), img)
    assert ident._tracks[1].uniform is None or ident._tracks[1].uniform.total == 0
    assert ident.decision(1) == "undecided"
    assert ident.decision(2) == "customer"
    assert MAX_OCCLUDED_FRACTION < 1.0


def test_mark_staff_is_final_and_forget_evicts() -> None:
    ident = StaffIdentifier(uniform_cfg(), None)
    run_sequence(ident, "bbbbb")
    assert ident.decision(7) == "customer"
    ident.mark_staff(7)
    run_sequence(ident, "bbbbb")
    assert ident.is_staff(7)
    ident.forget([7])
    assert ident.tracked_count == 0
    assert ident.decision(7) == "undecided" and not ident.is_staff(7)


def test_ended_tracks_forgotten_on_next_observe() -> None:
    """The caller can still ask about a track in the update where it ended; after that it is gone."""
    ident = StaffIdentifier(uniform_cfg(), None)
    run_sequence(ident, "yyyyy")
    ident.observe(tracks_of([], [], 10, ended=(7,)), frame_with("B"))
    assert ident.is_staff(7)
    ident.observe(tracks_of([], [], 11), frame_with("B"))
    assert ident.tracked_count == 0


def test_staff_stage_fills_the_tracks_column_and_is_timed() -> None:
    """The stage sits between tracker and analytics: same rows, a staff column, its own timer entry."""
    from edge.contract import Detections
    from edge.pipeline import CameraPipeline, StageTimer

    class OneBox:  # detector and tracker stand-ins: this tests the stage's place in the pipeline
        def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, None]:
            return image, None

        def infer(self, tensor: np.ndarray) -> None:
            return None

        def postprocess(self, raw: None, letterbox: None) -> Detections:
            return Detections.empty()

        def update(self, detections: Detections, *, camera_id: str, frame_index: int, timestamp_s: float,
                   frame_size_px: tuple[int, int], image: np.ndarray | None = None) -> Tracks:
            return tracks_of([BOX, (10.0, 20.0, 60.0, 200.0)], [7, 8], frame_index)

    from edge.contract import Frame

    stage = StaffStage(uniform_cfg(), None)
    assert StaffStage.wanted(uniform_cfg()) and not StaffStage.wanted(StaffConfig())
    pipe = CameraPipeline("cam", OneBox(), OneBox(), StageTimer(), staff=stage)
    for i in range(6):
        out = pipe.process(Frame("cam", i, 1000.0 + i * 0.2, frame_with("Y")))
    assert out.track_id.tolist() == [7, 8] and out.staff_flags.tolist() == [True, False]
    assert pipe.timer.summary()["staff"]["n"] == 6
    assert tracks_of([BOX], [1]).staff_flags.tolist() == [False]  # no stage: nobody is staff


def test_memory_is_bounded_without_forget() -> None:
    ident = StaffIdentifier(uniform_cfg(), None, max_tracks=50)
    img = frame_with("B")
    for i in range(500):
        ident.observe(tracks_of([BOX], [i], i), img)
    assert ident.tracked_count == 50


def test_no_methods_keeps_no_state_but_marks_work() -> None:
    ident = StaffIdentifier(StaffConfig(), None)
    assert not ident.needs_image
    ident.observe(tracks_of([BOX], [3]), frame_with("Y"))
    assert ident.tracked_count == 0
    ident.mark_staff(3)
    assert ident.is_staff(3) and ident.staff_ids() == {3}


# ----------------------------------------------------------------------------------------------
# ONNX hook: a real ONNX file, written by hand (the onnx package is not a dependency). The model
# averages each RGB channel: "class" = the dominant channel, so an orange person is class 0 (red).


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _value_info(name: str, dims: list[int]) -> bytes:
    shape = b"".join(_ld(1, _int(1, d)) for d in dims)
    tensor_type = _int(1, 1) + _ld(2, shape)  # elem_type FLOAT
    return _ld(1, name.encode()) + _ld(2, _ld(1, tensor_type))


def write_channel_mean_model(path: Path, width: int = 128, height: int = 256) -> Path:
    pool = _ld(1, b"images") + _ld(2, b"pooled") + _ld(3, b"pool") + _ld(4, b"GlobalAveragePool")
    flat = _ld(1, b"pooled") + _ld(2, b"scores") + _ld(3, b"flat") + _ld(4, b"Flatten")
    graph = (_ld(1, pool) + _ld(1, flat) + _ld(2, b"channel_mean")
             + _ld(11, _value_info("images", [1, 3, height, width])) + _ld(12, _value_info("scores", [1, 3])))
    model = _int(1, 7) + _ld(2, b"storesense-test") + _ld(7, graph) + _ld(8, _ld(1, b"") + _int(2, 13))
    path.write_bytes(model)
    return path


def onnx_cfg(path: str, **kw: object) -> StaffConfig:
    onnx = {"path": path, "staff_class": 0, "min_votes": 3}
    onnx.update(kw)
    return StaffConfig.model_validate({"methods": ["onnx"], "onnx": onnx})


@pytest.mark.parametrize(("colour", "expected"), [("O", "staff"), ("B", "customer")])
def test_onnx_classifier_votes(tmp_path: Path, colour: str, expected: str) -> None:
    write_channel_mean_model(tmp_path / "staff.onnx")
    ident = StaffIdentifier(onnx_cfg("staff.onnx"), tmp_path)  # relative to base_dir
    for i in range(3):
        ident.observe(tracks_of([BOX], [5], i), frame_with(colour))
    assert ident.decision(5) == expected


@pytest.mark.parametrize(
    ("setup", "kw", "message"),
    [
        ("missing", {}, "classifier model not found"),
        ("garbage", {}, "not a usable ONNX model"),
        ("model", {"input_size_px": (64, 64)}, "input_size_px: [128, 256]"),
    ],
)
def test_onnx_classifier_errors(tmp_path: Path, setup: str, kw: dict[str, object], message: str) -> None:
    path = tmp_path / "staff.onnx"
    if setup == "garbage":
        path.write_bytes(b"not a model")
    elif setup == "model":
        write_channel_mean_model(path)
    with pytest.raises(StaffModelError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        StaffIdentifier(onnx_cfg(str(path), **kw), None)
    assert isinstance(info.value, UserFacingError)


# ----------------------------------------------------------------------------------------------
# real footage: the real detector and tracker


def _decisions_on(video: Path, ident: StaffIdentifier, detector: OnnxDetector) -> dict[int, list[str]]:
    tracker = ByteTracker(TrackerConfig())
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    seen: dict[int, list[str]] = {}
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        tracks = tracker.update(detector.detect(img), camera_id="cam", frame_index=i, timestamp_s=1000.0 + i / fps,
                                frame_size_px=(img.shape[1], img.shape[0]))
        ident.observe(tracks, img)
        for tid in tracks.track_id.tolist():
            seen.setdefault(int(tid), []).append(ident.decision(int(tid)))
        i += 1
    cap.release()
    assert i > 60, f"{video.name}: decoded only {i} frames"
    return seen


@pytest.fixture(scope="module")
def detector(models_path: Path) -> OnnxDetector:
    return OnnxDetector.from_config(ModelConfig(), None)


def test_hi_vis_vest_is_staff_shoppers_are_not(videos_path: Path, detector: OnnxDetector) -> None:
    """Warehouse clip: one worker in an orange hi-vis vest and yellow helmet (checked by eye on
    frames 0/35/70). Aisle clip: three shoppers, one in a brown coat (orange hue, dark), one in
    teal, one in olive: none is staff."""
    cfg = uniform_cfg(min_pixel_fraction=0.15)
    worker = _decisions_on(videos_path / "worker-zone-detection.gif", StaffIdentifier(cfg, None), detector)
    long_tracks = {t: d for t, d in worker.items() if len(d) >= 20}
    assert long_tracks, f"no long track of the worker: {[(t, len(d)) for t, d in worker.items()]}"
    for tid, ds in long_tracks.items():
        assert ds[-1] == "staff", f"worker track {tid}: {ds}"
        assert ds.count("staff") >= len(ds) - cfg.uniform.min_votes  # type: ignore[union-attr]
        assert "customer" not in ds

    shoppers = _decisions_on(videos_path / "store-aisle-detection.gif", StaffIdentifier(cfg, None), detector)
    assert len([t for t, d in shoppers.items() if len(d) >= 20]) >= 3
    for tid, ds in shoppers.items():
        assert "staff" not in ds, f"shopper track {tid} taken for staff: {ds}"
