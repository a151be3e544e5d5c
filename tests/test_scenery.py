"""Static scenery suppression (edge/scenery.py): unit cases on synthetic frames, then the poster test on
real footage (a still photo of a person pasted into the sample clip, in a dwell zone and in a queue
zone), with the control run that shows the same footage counts the poster when the stage is off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import ConfigError, parse_config
from edge.contract import Detections, Tracks
from edge.scenery import SceneryFilter

W, H = 320, 240
POSTER = (40.0, 60.0, 80.0, 180.0)


def _frame(rng: np.random.Generator, poster: np.ndarray | None = None, person: np.ndarray | None = None,
           person_xyxy: tuple[float, float, float, float] | None = None) -> np.ndarray:
    img = np.full((H, W, 3), 128, np.uint8)
    img += rng.integers(0, 3, img.shape, dtype=np.uint8)  # sensor noise, a few grey levels
    if poster is not None:
        x1, y1, x2, y2 = (int(v) for v in POSTER)
        img[y1:y2, x1:x2] = poster
    if person is not None and person_xyxy is not None:
        x1, y1, x2, y2 = (int(v) for v in person_xyxy)
        img[y1:y2, x1:x2] = person
    return img


def _tracks(ts: float, rows: list[tuple[int, tuple[float, float, float, float]]], ended: tuple[int, ...] = ()) -> Tracks:
    return Tracks("c", int(ts * 5), ts, (W, H), np.array([b for _, b in rows], np.float32).reshape(-1, 4),
                  np.full(len(rows), 0.9, np.float32), np.array([i for i, _ in rows], np.int64), ended_ids=ended)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_poster_never_counts_and_is_remembered() -> None:
    rng = np.random.default_rng(1)
    poster = _texture(rng, 120, 40)
    f = SceneryFilter(static_after_s=20.0)
    for k in range(200):  # 40 s at 5 fps
        ts = k * 0.2
        jitter = float(rng.normal(0, 1.0))  # detector box jitter, px
        box = (POSTER[0] + jitter, POSTER[1], POSTER[2] + jitter, POSTER[3] + jitter)
        out = f.update(_tracks(ts, [(1, box)]), _frame(rng, poster))
        assert len(out) == 0, f"the poster was counted at {ts:.1f} s"
    assert f.is_static(1) and len(f.places) == 1
    # the track ends (detector flicker); a new one on the same sign is static from its first frame
    f.update(_tracks(40.2, [], ended=(1,)), _frame(rng, poster))
    assert f.tracked_count == 0
    out = f.update(_tracks(40.4, [(2, POSTER)]), _frame(rng, poster))
    assert len(out) == 0
    # somebody walks past in front of it: the box shows motion for a moment, and it stays out after
    for k in range(10):
        ts = 40.6 + 0.2 * k
        walker = _texture(rng, 100, 30)
        img = _frame(rng, poster, walker, (50.0 + 5 * k, 70.0, 80.0 + 5 * k, 170.0))
        f.update(_tracks(ts, [(2, POSTER)]), img)
    out = f.update(_tracks(43.0, [(2, POSTER)]), _frame(rng, poster))
    assert len(out) == 0 and f.is_withheld(2)


def _standing_person(f: SceneryFilter, rng: np.random.Generator, seconds: float, still_gap_s: float,
                     start_s: float = 0.0, tid: int = 7) -> tuple[int, int]:
    """Walks in for 2 s, then stands for ``seconds``; some part of the body moves every
    ``still_gap_s`` (a head turn, an arm, breathing). Returns (frames counted, frames seen)."""
    body = _texture(rng, 100, 36)
    x, counted, seen = 150.0, 0, 0
    n = int((2.0 + seconds) * 5)
    last_move = start_s
    for k in range(n):
        ts = start_s + k * 0.2
        if ts < start_s + 2.0:
            x += 6.0  # walking in
        elif ts - last_move >= still_gap_s:
            last_move = ts
            part = rng.integers(0, 60)
            body[part:part + 30] = _texture(rng, body[part:part + 30].shape[0], 36)  # something moved
        box = (x, 100.0, x + 36.0, 200.0)
        out = f.update(_tracks(ts, [(tid, box)]), _frame(rng, None, body, box))
        seen += 1
        counted += len(out)
    return counted, seen


def test_a_person_standing_in_a_queue_for_minutes_still_counts() -> None:
    """Five minutes standing; something moves every 8 s (the quietest real person measured went
    7.4 s without pixel change): counted in every frame after the first one or two."""
    rng = np.random.default_rng(2)
    f = SceneryFilter(static_after_s=20.0)
    counted, seen = _standing_person(f, rng, seconds=300.0, still_gap_s=8.0)
    assert counted >= seen - 2, (counted, seen)
    assert not f.is_static(7)


def test_a_frozen_person_becomes_static_and_comes_back_when_they_move() -> None:
    """The rule is the rule: no step and no pixel change for static_after_s is static. The re-check
    brings the track back on the first frame it moves."""
    rng = np.random.default_rng(3)
    f = SceneryFilter(static_after_s=20.0)
    counted, seen = _standing_person(f, rng, seconds=30.0, still_gap_s=1e9)
    assert f.is_static(7)
    body = _texture(rng, 100, 36)
    box = (162.0, 100.0, 198.0, 200.0)  # same place, a different picture: they turned round
    out = f.update(_tracks(32.2, [(7, box)]), _frame(rng, None, body, box))
    assert out.track_id.tolist() == [7] and not f.is_static(7)


def test_static_off_passes_everything_through() -> None:
    rng = np.random.default_rng(4)
    poster = _texture(rng, 120, 40)
    f = SceneryFilter(static_after_s=0.0)
    for k in range(200):
        out = f.update(_tracks(k * 0.2, [(1, POSTER)]), _frame(rng, poster))
        assert len(out) == 1


def test_state_is_evicted_with_the_track_and_places_are_bounded() -> None:
    """10,000 frames (~33 min at 5 fps): a visitor every 6 s standing 4 s, and a new poster-like
    still box somewhere every 30 s. Per-track state follows the tracker's ended_ids; places stay bounded."""
    rng = np.random.default_rng(5)
    f = SceneryFilter(static_after_s=2.0)
    bg = _frame(rng)
    live: dict[int, tuple[float, tuple[float, float, float, float]]] = {}
    next_id, peak = 1, 0
    for k in range(10_000):
        ts = k * 0.2
        ended = tuple(t for t, (end, _) in live.items() if ts >= end)
        for t in ended:
            del live[t]
        if k % 30 == 0:
            x = float(rng.integers(0, W - 40))
            live[next_id] = (ts + 4.0, (x, 50.0, x + 30.0, 150.0))
            next_id += 1
        f.update(_tracks(ts, [(t, b) for t, (_, b) in live.items()], ended), bg)
        peak = max(peak, f.tracked_count)
    f.update(_tracks(10_000 * 0.2, [], tuple(live)), bg)
    assert f.tracked_count == 0
    assert peak <= 2
    assert len(f.places) <= 32


def test_ignore_polygons_drop_detections_before_tracking() -> None:
    f = SceneryFilter(ignore_polygons_norm=[[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]])
    dets = Detections(np.array([[10, 10, 50, 100], [200, 10, 240, 100]], np.float32), np.array([0.9, 0.8]), np.zeros(2))
    kept = f.filter_detections(dets, (W, H))
    assert kept.xyxy[:, 0].tolist() == [200.0]


def test_ignore_polygon_config_errors_name_the_line() -> None:
    text = ("version: 1\nstore: {id: s}\ncameras:\n  - id: c\n    source: x.mp4\n"
            "    ignore: [[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]]\n")
    with pytest.raises(ConfigError, match=r"<t>:6: cameras\[0\]\.ignore: .*outside 0\.\.1"):
        parse_config(text, "<t>")


# -- real footage: the poster test ---------------------------------------------------------------

POSTER_CFG = """
version: 1
store: {{id: poster-test}}
tracker: {{static_after_s: {static}}}
cameras:
  - id: cam
    source: {video}
    fps: 5
    zones:
      - {{id: poster-dwell, kind: dwell, polygon: [[0.0, 0.6], [0.21, 0.6], [0.21, 1.0], [0.0, 1.0]]}}
      - {{id: poster-queue, kind: queue, lane: poster-lane, polygon: [[0.21, 0.6], [0.40, 0.6], [0.40, 1.0], [0.21, 1.0]]}}
      - {{id: table-dwell, kind: dwell, polygon: [[0.42, 0.6], [0.75, 0.6], [0.75, 1.0], [0.42, 1.0]]}}
      - {{id: table-queue, kind: queue, lane: table-lane, polygon: [[0.42, 0.6], [0.75, 0.6], [0.75, 1.0], [0.42, 1.0]]}}
mqtt: {{enabled: false}}
staff: {{methods: []}}
"""


def _run_store(video: Path, static_after_s: float, tmp: Path) -> tuple[list, list]:
    from edge.runtime import Runtime, build_analytics, build_detector, build_tracker, open_worker
    from edge.sinks import MemorySink

    cfg = parse_config(POSTER_CFG.format(static=static_after_s, video=str(video)), str(tmp / "store.yaml"))
    cfg.data_dir = str(tmp / f"data-{static_after_s}")
    worker = open_worker(cfg, cfg.cameras[0], build_detector(cfg), build_tracker(cfg), start_epoch_s=0.0)
    sink, rows = MemorySink(), []
    rt = Runtime(cfg, [worker], sink, build_analytics(cfg), save_reference_frames=False,
                 on_tracks=lambda t, fr: rows.append(t))
    rt.run()
    return [m.payload for m in sink.messages], rows


@pytest.fixture(scope="module")
def poster_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge.resources import images_dir, videos_dir
    from tests.footage import edit_video, person_crop

    crop = person_crop(images_dir())
    out = tmp_path_factory.mktemp("poster") / "poster.avi"
    # 22 s: the first visitor walks in and stands at the table (6-20 s); two posters of a person,
    # one in a dwell zone and one in a queue zone, are there from the first frame
    return edit_video(videos_dir() / "one-by-one-person-detection.mp4", out, max_frames=220,
                      posters=[(crop, (40, 140, 131, 420)), (crop, (190, 150, 281, 420))])


def _zone_figures(payloads: list[dict]) -> dict[str, float]:
    occ: dict[str, float] = {}
    for p in payloads:
        if p.get("schema") == "storesense.zone_state/1":
            occ[p["zone_id"]] = max(occ.get(p["zone_id"], 0), p["occupancy"])
        if p.get("schema") == "storesense.lane_state/1":
            key = "queue:" + p["lane_id"]
            occ[key] = max(occ.get(key, 0), p["queue_length"])
    return occ


def _visits(payloads: list[dict], zone: str) -> list[float]:
    return [p["dwell_s"] for p in payloads if p.get("schema") == "storesense.event.visit/1" and p["zone_id"] == zone]


@pytest.mark.slow
def test_poster_in_a_dwell_and_a_queue_zone_does_not_count(poster_video: Path, tmp_path: Path) -> None:
    on, rows_on = _run_store(poster_video, 20.0, tmp_path)
    off, rows_off = _run_store(poster_video, 0.0, tmp_path)
    fig_on, fig_off = _zone_figures(on), _zone_figures(off)
    # control: the same footage without the stage counts both posters (the test can fail)
    assert fig_off["poster-dwell"] >= 1 and fig_off["queue:poster-lane"] >= 1, fig_off
    # with it: neither poster is ever an occupant, a visitor, a queuer, or a MOT row
    assert fig_on["poster-dwell"] == 0 and fig_on["poster-queue"] == 0, fig_on
    assert fig_on["queue:poster-lane"] == 0 and not _visits(on, "poster-dwell"), fig_on
    poster_feet_x = [(r.xyxy[:, 0] + r.xyxy[:, 2]) / 2 for r in rows_on]
    assert all(((x > 30) & (x < 290)).sum() == 0 for x in poster_feet_x), "a poster reached the MOT export"
    # the real people standing still at the table count exactly as before (dwell and queue)
    assert fig_on["table-dwell"] == 1 and fig_on["queue:table-lane"] == 1
    v_on, v_off = _visits(on, "table-dwell"), _visits(off, "table-dwell")
    assert len(v_on) == len(v_off) == 1, (v_on, v_off)
    assert all(abs(a - b) <= 0.5 for a, b in zip(v_on, v_off, strict=True)), (v_on, v_off)
    assert min(v_on) >= 10.0


def test_box_crops_equal_those_of_the_whole_grey_frame() -> None:
    """The stage blurs only the boxes it compares (with a one-pixel margin); the crops must be
    bit-identical to cropping the whole frame greyed and blurred, at the frame's edges and
    corners too, for fractional boxes and on real footage."""
    import cv2

    from edge.resources import videos_dir
    from edge.scenery import _CROP_WH, _Grey

    cap = cv2.VideoCapture(str(videos_dir() / "one-by-one-person-detection.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 150)
    ok, image = cap.read()
    cap.release()
    assert ok
    h, w = image.shape[:2]
    whole = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (3, 3), 0)

    def reference(xyxy: tuple[float, float, float, float]) -> np.ndarray:
        x1, y1 = max(int(xyxy[0]), 0), max(int(xyxy[1]), 0)
        x2, y2 = min(int(np.ceil(xyxy[2])), w), min(int(np.ceil(xyxy[3])), h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return np.zeros((_CROP_WH[1], _CROP_WH[0]), np.uint8)
        return cv2.resize(whole[y1:y2, x1:x2], _CROP_WH, interpolation=cv2.INTER_AREA)

    rng = np.random.default_rng(7)
    boxes = [(0.0, 0.0, 40.0, 90.0), (w - 30.5, h - 70.2, w + 5.0, h + 3.0), (-4.0, 100.0, 25.0, h),
             (300.2, 0.0, 340.7, 2.9), (10.0, 10.0, 11.5, 50.0), (0.0, 0.0, float(w), float(h))]
    for _ in range(200):
        x1, y1 = rng.uniform(-10, w - 5), rng.uniform(-10, h - 5)
        boxes.append((x1, y1, x1 + rng.uniform(1, 300), y1 + rng.uniform(1, 400)))
    grey = _Grey(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    assert grey.shape == (h, w)
    for box in boxes:
        np.testing.assert_array_equal(grey.crop(box), reference(box), err_msg=str(box))


def test_grey_buffers_are_reused_without_overwriting_the_previous_frames() -> None:
    """Grey frames go into three buffers in turn: the current frame must never overwrite one of
    the two previous frames a newborn track is compared with."""
    import cv2

    rng = np.random.default_rng(3)
    frames = [_texture(rng, H, W) for _ in range(7)]
    f = SceneryFilter(static_after_s=20.0)
    for k, img in enumerate(frames):
        f.update(_tracks(0.2 * k, [(1, POSTER)]), img)
        if k >= 1:
            prev = [g._grey for g in f._prev_greys]
            want = [cv2.cvtColor(frames[j], cv2.COLOR_BGR2GRAY) for j in range(max(0, k - 1), k + 1)]
            assert len(prev) == len(want)
            for got, exp in zip(prev, want, strict=True):
                np.testing.assert_array_equal(got, exp)
    assert len({id(b) for b in f._grey_buffers}) == 3  # allocated once, not per frame
