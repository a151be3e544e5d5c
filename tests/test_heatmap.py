"""Heatmaps: person-second totals, hour boundaries, k-suppression, the payload schema, rendering."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from calibration.homography import Calibration
from edge.config import parse_config
from mqtt_bridge.topics import Routing, Topics
from zones.config import zone_config
from zones.heatmap import (
    HeatmapAccumulator,
    HeatmapGrid,
    HourClock,
    heatmap_array_from_payloads,
    heatmap_from_payloads,
    heatmap_png_size,
    render_heatmap_png,
)

SCHEMA = json.loads((Path(__file__).parent.parent / "mqtt_bridge" / "schemas" / "heatmap.schema.json").read_text())
TOPICS = Topics("shop-1")
T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)  # a UTC hour boundary


def acc(grid: HeatmapGrid, k: int = 1, tz: str = "UTC") -> HeatmapAccumulator:
    return HeatmapAccumulator("cam-1", "shop-1", grid, min_tracks_per_cell=k, timezone=tz)


def floor_grid() -> HeatmapGrid:
    return HeatmapGrid.floor(0.0, 0.0, 10.0, 8.0, 0.25)


def validate(payload: dict[str, object]) -> None:
    jsonschema.validate(payload, SCHEMA)


@pytest.mark.parametrize(
    ("grid_kind", "points", "dt_s", "frames", "expect_inside_s", "expect_outside_s"),
    [
        ("m", [[1.0, 1.0]], 0.2, 50, 10.0, 0.0),  # one person, 10 s
        ("m", [[1.0, 1.0], [5.1, 2.2], [9.9, 7.9]], 0.5, 20, 30.0, 0.0),  # three people
        ("m", [[1.0, 1.0], [20.0, 1.0]], 1.0, 10, 10.0, 10.0),  # one off the grid
        ("m", [[1.0, 1.0], [np.nan, np.nan]], 1.0, 10, 10.0, 10.0),  # beyond the horizon
        ("norm", [[0.5, 0.5], [1.0, 1.0], [0.0, 0.999]], 0.1, 100, 30.0, 0.0),  # frame edges count
        ("norm", [[0.5, 0.5], [1.2, 0.5]], 0.25, 8, 2.0, 2.0),
    ],
)
def test_totals_equal_person_seconds_put_in(grid_kind: str, points: list[list[float]], dt_s: float, frames: int,
                                            expect_inside_s: float, expect_outside_s: float) -> None:
    grid = floor_grid() if grid_kind == "m" else HeatmapGrid.image(0.05)
    a = acc(grid)
    ids = list(range(len(points)))
    for i in range(frames):
        a.add(points, ids, dt_s, T0 + 100 + i * dt_s)
    msgs = a.finish(T0 + 100 + frames * dt_s)
    assert len(msgs) == 1
    p = msgs[0].payload
    validate(p)
    assert TOPICS.route(msgs[0]) == Routing(TOPICS.camera_heatmap("cam-1"), qos=1, retain=False)
    assert p["total_person_s"] == pytest.approx(expect_inside_s, abs=1e-6)
    assert sum(c[2] for c in p["cells"]) == pytest.approx(expect_inside_s, abs=1e-3)
    assert p["outside_person_s"] == pytest.approx(expect_outside_s, abs=1e-6)
    assert p["units"] == grid_kind and p["complete"] is False
    assert heatmap_array_from_payloads([p]).sum() == pytest.approx(expect_inside_s, abs=1e-3)


def test_cell_positions() -> None:
    grid = floor_grid()
    rows, cols, inside = grid.cells_of([[0.0, 0.0], [0.26, 0.74], [9.99, 7.99], [10.0, 1.0], [-0.01, 1.0]])
    assert inside.tolist() == [True, True, True, False, False]
    assert (rows[:3].tolist(), cols[:3].tolist()) == ([0, 2, 31], [0, 1, 39])
    assert HeatmapGrid.image(0.02).shape == (50, 50)


@pytest.mark.parametrize(
    ("first_ts_offset_s", "dt_s", "frames", "expected"),
    [
        # from 10 s before the hour to 10 s after it at 1 s steps: 10 s in each hour
        (-9.0, 1.0, 20, [10.0, 10.0]),
        # 0.25 s steps across the boundary
        (-4.75, 0.25, 40, [5.0, 5.0]),
        # one long step straddling the boundary is split by time: 0.4 s before, 0.6 s after
        (0.6, 1.0, 1, [0.4 + 1.0, 0.6]),
        # entirely inside one hour
        (5.5, 0.5, 10, [5.0]),
    ],
)
def test_hour_boundaries_split(first_ts_offset_s: float, dt_s: float, frames: int, expected: list[float]) -> None:
    a = acc(floor_grid())
    h1 = T0 + 3600
    msgs = []
    if frames == 1:
        a.add([[1.0, 1.0]], [1], 1.0, h1 - 0.5)  # the person was already seen in the earlier hour
    for i in range(frames):
        ts = h1 + first_ts_offset_s + i * dt_s
        a.add([[1.0, 1.0]], [1], dt_s, ts)
        msgs += a.flush(ts)
    msgs += a.finish(h1 + 1800)
    totals = [m.payload["total_person_s"] for m in msgs]
    assert totals == pytest.approx(expected, abs=1e-6)
    assert [m.payload["complete"] for m in msgs] == [True] * (len(expected) - 1) + [False]
    for m in msgs:
        p = m.payload
        assert p["hour_start_s"] <= p["observed_from_s"] <= p["observed_to_s"] <= p["hour_end_s"]


def test_flush_emits_each_finished_hour_once() -> None:
    a = acc(floor_grid())
    emitted = []
    ts = T0 + 3000.0
    while ts < T0 + 3 * 3600 + 100:
        a.add([[2.0, 2.0]], [1], 1.0, ts)
        emitted += a.flush(ts)
        ts += 1.0
    emitted += a.finish(ts)
    payloads = [m.payload for m in emitted]
    for p in payloads:
        validate(p)
    # each add credits the interval (ts - 1, ts]: the first covers T0+2999..T0+3000, the add at
    # T0+3600 still belongs to hour 0
    assert [p["hour_start_s"] for p in payloads] == [T0, T0 + 3600, T0 + 7200, T0 + 10800]
    assert [p["complete"] for p in payloads] == [True, True, True, False]
    assert [p["total_person_s"] for p in payloads] == pytest.approx([601.0, 3600.0, 3600.0, 99.0], abs=1e-6)
    assert payloads[0]["timestamp_s"] == T0 + 3600
    assert len({p["event_id"] for p in payloads}) == 4
    assert a.open_hours == 0
    assert heatmap_array_from_payloads(payloads).sum() == pytest.approx(7900.0, abs=1e-3)


def test_hour_split_exact() -> None:
    a = acc(floor_grid())
    h1 = T0 + 3600
    a.add([[1.0, 1.0]], [1], 1.0, h1 - 0.5)  # opens hour 0
    a.add([[1.0, 1.0]], [1], 1.0, h1 + 0.6)  # 0.4 s of this step belong to hour 0
    msgs = a.flush(h1 + 0.6)
    assert len(msgs) == 1 and msgs[0].payload["total_person_s"] == pytest.approx(1.4)
    rest = a.finish(h1 + 1.0)
    assert rest[0].payload["total_person_s"] == pytest.approx(0.6)
    assert rest[0].payload["observed_from_s"] == pytest.approx(h1)


@pytest.mark.parametrize(
    ("tz", "ts_local_hour_start"),
    [("UTC", 0.0), ("Asia/Shanghai", 0.0), ("Asia/Kolkata", 1800.0)],  # +5:30: local hours start at :30 UTC
)
def test_local_hours(tz: str, ts_local_hour_start: float) -> None:
    start, end = HourClock(tz).bounds(T0 + 2000.0)
    assert end - start == 3600.0
    assert (start - T0) % 3600 == ts_local_hour_start


@pytest.mark.parametrize(
    ("visits", "k", "shown_cells", "suppressed_s"),
    [
        ({(1.0, 1.0): 3, (5.0, 5.0): 1}, 1, 2, 0.0),
        ({(1.0, 1.0): 3, (5.0, 5.0): 1}, 2, 1, 10.0),  # the lone visitor's cell is hidden
        ({(1.0, 1.0): 3, (5.0, 5.0): 1}, 5, 0, 40.0),
    ],
)
def test_k_suppression(visits: dict[tuple[float, float], int], k: int, shown_cells: int, suppressed_s: float) -> None:
    a = acc(floor_grid(), k=k)
    tid = 0
    for (x, y), n in visits.items():
        for _ in range(n):
            tid += 1
            for i in range(10):  # 10 s each
                a.add([[x, y]], [tid], 1.0, T0 + 10 + tid * 20 + i)
    p = a.finish(T0 + 1000)[0].payload
    validate(p)
    assert len(p["cells"]) == shown_cells
    assert p["suppressed_person_s"] == pytest.approx(suppressed_s)
    assert p["total_person_s"] == pytest.approx(40.0)  # the total still counts everyone
    assert all(c[3] >= k for c in p["cells"])
    # suppression when combining hours
    b = acc(floor_grid())
    for t in range(1, 4):
        b.add([[1.0, 1.0], [5.0, 5.0]], [t, 100], 1.0, T0 + t)
    arr = heatmap_array_from_payloads([m.payload for m in b.finish(T0 + 10)], min_tracks=2)
    assert arr.sum() == pytest.approx(3.0)  # the (5, 5) cell had only track 100


def test_payloads_with_shifted_grids_combine_on_the_union() -> None:
    a1 = acc(HeatmapGrid.floor(0, 0, 4, 4, 0.5))
    a2 = acc(HeatmapGrid.floor(-2, 1, 3, 6, 0.5))
    a1.add([[1.1, 1.1]], [1], 5.0, T0 + 10)
    a2.add([[1.1, 1.1], [-1.9, 5.9]], [2, 3], 5.0, T0 + 4000)
    p = [m.payload for m in a1.finish(T0 + 20) + a2.finish(T0 + 4010)]
    arr, grid = heatmap_from_payloads(p)
    assert grid.origin == (-2.0, 0.0) and grid.shape == (12, 12)
    r, c, inside = grid.cells_of([[1.1, 1.1], [-1.9, 5.9]])
    assert inside.all()
    assert arr[r[0], c[0]] == pytest.approx(10.0) and arr[r[1], c[1]] == pytest.approx(5.0)
    norm = acc(HeatmapGrid.image(0.1))
    norm.add([[0.5, 0.5]], [1], 1.0, T0 + 5)
    with pytest.raises(Exception, match="mix grids"):
        heatmap_from_payloads(p + [m.payload for m in norm.finish(T0 + 6)])


def test_bad_input_is_a_clear_error() -> None:
    a = acc(floor_grid())
    with pytest.raises(ValueError, match="2 points but 1 track ids"):
        a.add([[1, 1], [2, 2]], [1], 1.0, T0)
    with pytest.raises(ValueError, match="dt_s"):
        a.add([[1, 1]], [1], -1.0, T0)


def test_track_sets_cleared_each_hour() -> None:
    """Distinct-track counts are per hour: 50 new tracks every hour never add up to 100 or 150,
    and no per-track state outlives its hour."""
    a = acc(floor_grid(), k=2)
    payloads = []
    for h in range(3):
        for t in range(50):
            a.add([[3.0, 3.0]], [h * 1000 + t], 1.0, T0 + h * 3600 + 10 + t)
        payloads += [m.payload for m in a.flush(T0 + h * 3600 + 100)]
        assert a.open_hours == 1  # only the current hour is held
    payloads += [m.payload for m in a.finish(T0 + 3 * 3600)]
    assert a.open_hours == 0
    assert [p["tracks"] for p in payloads] == [50, 50, 50]
    assert [p["cells"][0][3] for p in payloads] == [50, 50, 50]


# ----------------------------------------------------------------------------------------------
# config-driven grids and rendering

STORE_YAML = """
version: 1
store: {id: shop-1, timezone: Europe/Berlin}
analytics: {heatmap: {cell_m: 0.5, min_tracks_per_cell: 2}}
cameras:
  - id: cam-1
    source: x.mp4
    calibration:
      image_points_px: [[437.7, 214.2], [290.6, 148.5], [157.6, 197.7], [234.5, 169.0], [352.0, 176.5], [296.0, 206.3]]
      floor_points_m: [[3, 0], [3, 3], [0, 3], [1.5, 3], [3, 1.5], [1.5, 1.5]]
      reference_size_px: [480, 270]
    zones:
      - {id: square, kind: dwell, units: m, label: "Marked square", polygon: [[0.5, 0.5], [2.5, 0.5], [2.5, 2.5], [0.5, 2.5]]}
      - {id: dock, kind: entrance, polygon: [[0.7, 0.1], [0.95, 0.1], [0.95, 0.4], [0.7, 0.4]]}
  - id: cam-2
    source: y.mp4
"""


def test_for_camera_grids() -> None:
    cfg = parse_config(STORE_YAML)
    floor = HeatmapAccumulator.for_camera(cfg, "cam-1", floor=True)
    assert floor.grid.units == "m" and floor.grid.cell_size == 0.5 and floor.min_tracks_per_cell == 2
    x0, x1, y0, y1 = floor.grid.extent
    assert x0 <= 0 and y0 <= 0 and x1 >= 3 and y1 >= 3  # covers the marks and the zone
    assert max(x1 - x0, y1 - y0) <= 50.0 + 0.5
    image = HeatmapAccumulator.for_camera(cfg, "cam-2", floor=False)
    assert image.grid.units == "norm" and image.grid.shape == (50, 50)


def _png_size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path))
    assert img is not None
    return img.shape[1], img.shape[0]


@pytest.mark.parametrize("variant", ["floor+camera", "floor-only", "image+camera", "image-only"])
def test_render_png(tmp_path: Path, videos_path: Path, variant: str) -> None:
    cfg = parse_config(STORE_YAML)
    cam = cfg.camera("cam-1")
    assert cam.calibration is not None
    cal = Calibration.from_config(cam.calibration, cfg.resolve_path)
    cap = cv2.VideoCapture(str(videos_path / "worker-zone-detection.gif"))
    ok, reference = cap.read()
    cap.release()
    assert ok
    floor = variant.startswith("floor")
    with_ref = variant.endswith("camera")
    a = HeatmapAccumulator.for_camera(cfg, "cam-1", floor=floor)
    a.min_tracks_per_cell = 1
    rng = np.random.default_rng(0)
    for i in range(300):
        pts = np.array([[1.5, 1.5], [4.0, 2.0]]) + rng.normal(0, 0.4, (2, 2))
        if not floor:
            pts = np.array([[0.5, 0.8], [0.75, 0.6]]) + rng.normal(0, 0.03, (2, 2))
        a.add(pts, [i % 7, 100 + i % 5], 0.2, T0 + i * 0.2)
    payloads = [m.payload for m in a.finish(T0 + 60)]
    arr, grid = heatmap_from_payloads(payloads)
    zones = cam.zones
    out = render_heatmap_png(arr, grid, tmp_path / f"{variant}.png", reference_bgr=reference if with_ref else None,
                             calibration=cal if floor else None, zones=zones, title=f"cam-1 {variant}")
    assert out.exists()
    expected = heatmap_png_size(grid, reference=with_ref, calibration=floor)
    assert _png_size(out) == expected
    panels = 2 if variant == "floor+camera" else 1
    assert expected == (960 * panels, 720)  # 6.4 x 4.8 in per panel at 150 dpi (sharp in the report)
    # the heat is drawn: the PNG is not just the background
    img = cv2.imread(str(out))
    assert img is not None
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    assert np.count_nonzero((hsv[..., 1] > 150) & (hsv[..., 2] > 150)) > 200


def test_render_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        render_heatmap_png(np.zeros((3, 3)), floor_grid(), tmp_path / "x.png")


def test_zone_config_used_in_render_is_the_real_model() -> None:
    z = zone_config(id="a", kind="dwell", polygon=[(0.1, 0.1), (0.2, 0.1), (0.2, 0.2)])
    assert z.units == "norm"
