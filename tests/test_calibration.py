"""Calibration: homography fit on a synthetic pinhole camera, bad point sets, the horizon, frame
scaling, the YAML file variant, and `storesense calibrate` on the warehouse clip."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from calibration.config import CalibrationConfig
from calibration.homography import MAX_DEPTH_RATIO, Calibration, CalibrationError
from edge.cli import main
from edge.config import ConfigError


def pinhole(width_px: int = 1280, height_px: int = 720, f_px: float = 900.0, tilt_deg: float = 35.0,
            height_m: float = 3.0, position_m: tuple[float, float] = (0.0, -2.0),
            yaw_deg: float = 0.0) -> Callable[[npt.ArrayLike], tuple[np.ndarray, np.ndarray]]:
    """Floor (x, y, 0) metres → image pixels and depth, for a camera looking along +y, tilted down."""
    k = np.array([[f_px, 0, width_px / 2], [0, f_px, height_px / 2], [0, 0, 1.0]])
    t = np.deg2rad(tilt_deg)
    c, s = np.cos(t), np.sin(t)
    tilt = np.array([[1, 0, 0], [0, -s, -c], [0, c, -s]], dtype=np.float64)
    y = np.deg2rad(yaw_deg)
    yaw = np.array([[np.cos(y), np.sin(y), 0], [-np.sin(y), np.cos(y), 0], [0, 0, 1.0]])
    rot = tilt @ yaw
    centre = np.array([position_m[0], position_m[1], height_m])

    def project(floor_m: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(floor_m, dtype=np.float64).reshape(-1, 2)
        cam = (np.c_[pts, np.zeros(len(pts))] - centre) @ rot.T
        uv = cam @ k.T
        return uv[:, :2] / uv[:, 2:3], cam[:, 2]

    return project


MARKS_M = np.array([[-2, 2], [2, 2], [2, 6], [-2, 6], [0, 4], [1, 3]], dtype=np.float64)


@pytest.mark.parametrize(
    "camera",
    [
        {},  # 3 m high, 35° down
        {"tilt_deg": 60.0, "height_m": 4.0},  # steep ceiling camera
        {"tilt_deg": 20.0, "height_m": 2.5, "yaw_deg": 25.0},  # shallow and turned
        {"width_px": 640, "height_px": 480, "f_px": 500.0, "position_m": (3.0, -4.0), "yaw_deg": -15.0},
    ],
)
def test_exact_pairs_round_trip(camera: dict[str, object]) -> None:
    project = pinhole(**camera)  # type: ignore[arg-type]
    img, depth = project(MARKS_M)
    assert np.all(depth > 0)
    cal = Calibration.from_pairs(img, MARKS_M)
    assert cal.rms_error_m < 1e-6 and cal.max_error_m < 1e-6
    probe_m = np.array([[0.3, 2.7], [-1.5, 5.5], [1.0, 4.4]])
    probe_px, _ = project(probe_m)
    np.testing.assert_allclose(cal.image_to_floor(probe_px), probe_m, atol=1e-6)
    np.testing.assert_allclose(cal.floor_to_image(probe_m), probe_px, atol=1e-4)
    assert cal.on_floor(probe_px).all()


@pytest.mark.parametrize(("noise_px", "max_rms_m"), [(0.5, 0.03), (2.0, 0.1)])
def test_click_noise_shows_as_reprojection_error(noise_px: float, max_rms_m: float) -> None:
    project = pinhole()
    img, _ = project(MARKS_M)
    rng = np.random.default_rng(1)
    cal = Calibration.from_pairs(img + rng.normal(0, noise_px, img.shape), MARKS_M)
    assert 0.0 < cal.rms_error_m <= max_rms_m
    assert cal.max_error_m >= cal.rms_error_m


def test_one_bad_mark_fails_tolerance_and_is_named() -> None:
    project = pinhole()
    img, _ = project(MARKS_M)
    floor = MARKS_M.copy()
    floor[4] += [1.0, 0.0]  # mark #5 measured 1 m off
    cal = Calibration.from_pairs(img, floor, max_reprojection_error_m=0.25)
    assert cal.max_error_m > 0.25 and not cal.within_tolerance
    with pytest.raises(CalibrationError, match=r"pair #5") as info:
        cal.check_tolerance()
    assert "max_reprojection_error_m" in str(info.value)


@pytest.mark.parametrize(
    ("image_px", "floor_m", "message"),
    [
        ([[0, 0], [100, 0], [100, 100]], [[0, 0], [1, 0], [1, 1]], "at least 4 point pairs"),
        ([[0, 0], [100, 0], [100, 100], [0, 100]], [[0, 0], [1, 0], [1, 1]], "4 image points but 3 floor points"),
        ([[0, 0], [100, 0], [200, 0], [300, 1]], [[0, 0], [1, 0], [1, 1], [0, 1]], "image_points_px lie .*on one line"),
        ([[0, 0], [100, 0], [100, 100], [0, 100]], [[0, 0], [1, 0], [2, 0], [3, 0]], "floor_points_m lie .*on one line"),
        ([[0, 0], [100, 0], [100, 100], [100, 100]], [[0, 0], [1, 0], [1, 1], [0, 1]], "#3 and #4 are the same point"),
        # three marks in a row and one off it: no quadrilateral in general position
        ([[0, 0], [50, 0], [100, 0], [50, 80]], [[0, 0], [1, 0], [2, 0], [1, 1]], "on one line"),
        ([[0, 0], [100, 0], [100, np.nan], [0, 100]], [[0, 0], [1, 0], [1, 1], [0, 1]], "NaN or infinity"),
        ([[0, 0, 1], [100, 0, 1], [100, 100, 1], [0, 100, 1]], [[0, 0], [1, 0], [1, 1], [0, 1]], r"\[x, y\] pairs"),
    ],
)
def test_unusable_points_are_explained(image_px: list[list[float]], floor_m: list[list[float]], message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_pairs(image_px, floor_m)


def test_collinear_triples_are_fine_with_a_general_quad() -> None:
    project = pinhole()
    floor = np.array([[0, 2], [1, 2], [2, 2], [2, 4], [0, 4]], dtype=np.float64)  # first three in a row
    img, _ = project(floor)
    assert Calibration.from_pairs(img, floor).max_error_m < 1e-6


def test_points_above_the_horizon_are_nan_not_nonsense() -> None:
    project = pinhole(tilt_deg=15.0)  # the horizon is in the picture: 360 - 900*tan(15°) ≈ 119 px
    img, _ = project(MARKS_M)
    cal = Calibration.from_pairs(img, MARKS_M)
    horizon = cal.horizon_y_px(640.0)
    assert horizon is not None and 119 < horizon < 200  # the usable-floor limit is a bit below the true horizon
    pts = np.array([[640, 0], [640, 100], [640, 119.0], [640, horizon + 2], [640, 700]])
    floor = cal.image_to_floor(pts)
    assert np.isnan(floor[:3]).all()  # sky, the horizon itself: no floor position
    assert np.isfinite(floor[3:]).all()
    depth_far = floor[3, 1] - (-2.0)
    assert depth_far < MAX_DEPTH_RATIO * 6.0  # bounded, not thousands of metres
    assert cal.on_floor(pts).tolist() == [False, False, False, True, True]
    # behind the camera (and far beyond the limit) the other way round
    back = cal.floor_to_image([[0.0, -10.0], [0.0, 5000.0], [0.0, 3.0]])
    assert np.isnan(back[:2]).all() and np.isfinite(back[2]).all()
    # a floor line across the horizon is cut, never joined through infinity
    runs = cal.floor_path_to_image([[0.0, 1.0], [0.0, 5000.0]], step_m=1.0)
    assert len(runs) == 1 and np.isfinite(runs[0]).all() and runs[0][:, 1].min() > horizon - 2


@pytest.mark.parametrize(("frame", "ok"), [((640, 360), True), ((1920, 1080), True), ((1280, 720), True), ((640, 480), False)])
def test_reference_size_scaling(frame: tuple[int, int], ok: bool) -> None:
    project = pinhole()
    img, _ = project(MARKS_M)
    cal = Calibration.from_pairs(img, MARKS_M, reference_size_px=(1280, 720))
    if not ok:
        with pytest.raises(CalibrationError, match="aspect ratio"):
            cal.for_frame_size(frame)
        return
    scaled = cal.for_frame_size(frame)
    sx = frame[0] / 1280
    probe_m = np.array([[0.5, 3.5], [1.5, 5.0]])
    probe_px, _ = project(probe_m)
    np.testing.assert_allclose(scaled.image_to_floor(probe_px * sx), probe_m, atol=1e-6)
    assert scaled.max_error_m < 1e-6
    if frame == (1280, 720):
        assert scaled is cal


# ----------------------------------------------------------------------------------------------
# config: inline and file

WAREHOUSE_IMAGE_PX: list[tuple[float, float]] = [(437.7, 214.2), (290.6, 148.5), (157.6, 197.7), (234.5, 169.0), (352.0, 176.5), (296.0, 206.3)]
WAREHOUSE_FLOOR_M: list[tuple[float, float]] = [(3, 0), (3, 3), (0, 3), (1.5, 3), (3, 1.5), (1.5, 1.5)]


def _yaml(points: list[tuple[float, float]]) -> str:
    return json.dumps([list(p) for p in points])


IMG_YAML, FLOOR_YAML = _yaml(WAREHOUSE_IMAGE_PX), _yaml(WAREHOUSE_FLOOR_M)


def _resolver(base: Path) -> Callable[[str], Path]:
    return lambda p: (base / p).resolve()


def test_from_config_inline_and_file_agree(tmp_path: Path) -> None:
    inline = CalibrationConfig(image_points_px=WAREHOUSE_IMAGE_PX, floor_points_m=WAREHOUSE_FLOOR_M,
                               reference_size_px=(480, 270))
    (tmp_path / "cal.yaml").write_text(
        "# marks on the red tape\n"
        f"image_points_px: {IMG_YAML}\n"
        f"floor_points_m: {FLOOR_YAML}\n"
        "reference_size_px: [480, 270]\n"
        "notes: measured 2024-05-01\n"
    )
    a = Calibration.from_config(inline, _resolver(tmp_path))
    b = Calibration.from_config(CalibrationConfig(file="cal.yaml"), _resolver(tmp_path))
    np.testing.assert_allclose(a.homography / a.homography[2, 2], b.homography / b.homography[2, 2])
    assert b.reference_size_px == (480, 270)
    assert a.max_error_m < 0.05  # marks consistent to a pixel
    assert "cal.yaml" in b.source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "calibration file not found"),
        ("image_points_px: [[1, 2]\n", "cal.yaml:2: not valid YAML"),
        ("- 1\n- 2\n", "cal.yaml:1: expected a mapping"),
        (f"image_points_px: {IMG_YAML}\nfloor_points_m: {FLOOR_YAML}\nimage_size: [1, 2]\n",
         "cal.yaml:3: image_size: unknown key"),
        (f"image_points_px: {_yaml(WAREHOUSE_IMAGE_PX[:3])}\nfloor_points_m: {_yaml(WAREHOUSE_FLOOR_M[:3])}\n",
         "cal.yaml:1: image_points_px: expected .*at least 4"),
        (f"image_points_px: {IMG_YAML}\nfloor_points_m:\n  - [0, 0]\n  - [1, 0]\n  - [1, 1]\n  - [0, 1]\n",
         "must pair up"),
        (f"image_points_px: {IMG_YAML}\nfloor_points_m:\n  - [0, 0]\n  - [a, 0]\n", r"cal.yaml:4: floor_points_m\[1\]\[0\]"),
        (f"image_points_px: {IMG_YAML}\nfloor_points_m: {FLOOR_YAML}\nreference_size_px: [640, 360]\n",
         "differs from the store config"),
    ],
)
def test_calibration_file_errors_name_file_and_line(tmp_path: Path, text: str | None, message: str) -> None:
    if text is not None:
        (tmp_path / "cal.yaml").write_text(text)
    cfg = CalibrationConfig(file="cal.yaml", reference_size_px=(480, 270))
    with pytest.raises(ConfigError) as info:
        Calibration.from_config(cfg, _resolver(tmp_path))
    assert any(re.search(message, p) for p in info.value.problems), info.value.problems


# ----------------------------------------------------------------------------------------------
# storesense calibrate on the warehouse clip (red tape square assumed 3 m x 3 m)


def _store(tmp_path: Path, videos_path: Path, floor_m: list[tuple[float, float]] | None = None, calibrated: bool = True) -> Path:
    floor = floor_m or WAREHOUSE_FLOOR_M
    cal = (
        "    calibration:\n      file: cal.yaml\n      max_reprojection_error_m: 0.2\n" if calibrated else ""
    )
    (tmp_path / "cal.yaml").write_text(
        f"image_points_px: {IMG_YAML}\nfloor_points_m: {_yaml(floor)}\nreference_size_px: [480, 270]\n"
    )
    cfg = tmp_path / "store.yaml"
    cfg.write_text(
        "version: 1\nstore: {id: wh}\ncameras:\n  - id: wh-1\n"
        f"    source: {videos_path / 'worker-zone-detection.gif'}\n{cal}"
        "    zones:\n"
        + ("      - {id: square, kind: dwell, units: m, label: Square, polygon: [[0.5, 0.5], [2.5, 0.5], [2.5, 2.5], [0.5, 2.5]]}\n"
           if calibrated else "")
        + "      - {id: dock, kind: entrance, polygon: [[0.7, 0.1], [0.95, 0.1], [0.95, 0.4], [0.7, 0.4]]}\n"
    )
    return cfg


def test_calibrate_cli_draws_grid_and_passes(tmp_path: Path, videos_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _store(tmp_path, videos_path)
    out = tmp_path / "grid.png"
    rc = main(["calibrate", "--config", str(cfg), "--camera", "wh-1", "--frame-index", "70", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "RMS error" in printed and "calibration OK" in printed
    assert printed.count("error ") >= 6  # one line per mark
    img = cv2.imread(str(out))
    assert img is not None and img.shape[:2] == (720, 1280)  # 480x270 drawn at 1280 px wide
    # the Y axis (x = 0, green) runs through floor (0, 1.5), which is on the red tape in the frame
    cal = Calibration.from_pairs(WAREHOUSE_IMAGE_PX, WAREHOUSE_FLOOR_M)
    u, v = (cal.floor_to_image([[0.0, 1.5]])[0] * (1280 / 480)).round().astype(int)
    patch = img[v - 3 : v + 4, u - 3 : u + 4].reshape(-1, 3).astype(int)
    assert np.any((patch[:, 1] > patch[:, 2] + 40) & (patch[:, 1] > patch[:, 0] + 40)), patch


def test_calibrate_cli_fails_on_a_bad_mark(tmp_path: Path, videos_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    floor = list(WAREHOUSE_FLOOR_M)
    floor[5] = (1.5, 2.5)  # mark #6 measured 1 m off
    cfg = _store(tmp_path, videos_path, floor_m=floor)
    out = tmp_path / "bad.png"
    rc = main(["calibrate", "--config", str(cfg), "--camera", "wh-1", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "calibration FAILED" in captured.err and "max_reprojection_error_m 0.2" in captured.err
    assert out.exists()  # the picture is what shows the installer which mark is off


@pytest.mark.parametrize(
    ("args", "calibrated", "message"),
    [
        (["--camera", "wh-1"], False, "has no calibration"),
        (["--camera", "nope"], True, "no camera 'nope'"),
        (["--camera", "wh-1", "--frame-index", "500"], True, "past its end"),
        (["--camera", "wh-1", "--image", "missing.png"], True, "cannot read image"),
    ],
)
def test_calibrate_cli_errors(tmp_path: Path, videos_path: Path, capsys: pytest.CaptureFixture[str],
                              args: list[str], calibrated: bool, message: str) -> None:
    cfg = _store(tmp_path, videos_path, calibrated=calibrated)
    rc = main(["calibrate", "--config", str(cfg), "--out", str(tmp_path / "x.png"), *args])
    assert rc == 2
    assert message in capsys.readouterr().err
