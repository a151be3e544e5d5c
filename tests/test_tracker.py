"""Life cycle of the ByteTrack tracker on synthetic boxes: birth, confirmation, occlusion gap,
re-association, removal, at several frame rates with one config (lifetimes are in seconds).

A "person" is a box of height ``h`` and width ``0.4 h`` whose bottom centre (foot point) moves
at a constant velocity; the scenarios feed ``Detections`` frame by frame and look at the ids.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import TrackerConfig
from edge.contract import Detections, Tracks
from edge.errors import UserFacingError
from edge.tracker import BoxKalman, ByteTracker, TrackerInputError, iou_matrix, match_by_iou

FRAME_SIZE = (1920, 1080)
T0 = 1_700_000_000.0  # epoch seconds, as the camera clock gives them: exposes float round-off


@dataclass
class Person:
    """A box moving at constant velocity between ``start_s`` and ``end_s`` (relative times)."""

    foot_x_px: float
    foot_y_px: float
    vx_px_s: float = 0.0
    vy_px_s: float = 0.0
    height_px: float = 200.0
    start_s: float = 0.0
    end_s: float = math.inf
    score: float = 0.9
    hidden: list[tuple[float, float]] = field(default_factory=list)  # (from_s, to_s) no detection
    dimmed: list[tuple[float, float, float]] = field(default_factory=list)  # (from_s, to_s, score)
    stop_s: float = math.inf  # stands still from then on

    def box(self, t_s: float) -> list[float]:
        dt = min(t_s, self.stop_s) - self.start_s
        fx, fy = self.foot_x_px + self.vx_px_s * dt, self.foot_y_px + self.vy_px_s * dt
        w = 0.4 * self.height_px
        return [fx - w / 2, fy - self.height_px, fx + w / 2, fy]

    def detection(self, t_s: float) -> tuple[list[float], float] | None:
        if not (self.start_s <= t_s + 1e-9 and t_s < self.end_s - 1e-9):
            return None
        if any(a <= t_s + 1e-9 and t_s < b - 1e-9 for a, b in self.hidden):
            return None
        score = self.score
        for a, b, s in self.dimmed:
            if a <= t_s + 1e-9 and t_s < b - 1e-9:
                score = s
        return self.box(t_s), score


def detections(items: list[tuple[list[float], float]]) -> Detections:
    if not items:
        return Detections.empty()
    return Detections(
        np.array([b for b, _ in items], np.float32),
        np.array([s for _, s in items], np.float32),
        np.zeros(len(items), np.int64),
    )


@dataclass
class Run:
    """Per frame: which person (index) got which output id; and every ended id."""

    times_s: list[float] = field(default_factory=list)
    ids_by_person: list[dict[int, int]] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    outputs: list[Tracks] = field(default_factory=list)

    def ids_of(self, person: int) -> list[int]:
        return [f[person] for f in self.ids_by_person if person in f]

    def frames_with(self, person: int) -> list[float]:
        return [t for t, f in zip(self.times_s, self.ids_by_person, strict=True) if person in f]


def simulate(
    people: list[Person],
    times_s: list[float] | np.ndarray,
    cfg: TrackerConfig | None = None,
    extra: dict[int, list[tuple[list[float], float]]] | None = None,
    tracker: ByteTracker | None = None,
    clock_offset_s: float = 0.0,
) -> Run:
    """Feed the people's detections at ``times_s``; attribute each output row to the person whose
    detection box it is (the tracker outputs the detection box itself)."""
    tracker = tracker or ByteTracker(cfg or TrackerConfig())
    run = Run()
    for i, t in enumerate(times_s):
        items, owners = [], []
        for k, p in enumerate(people):
            d = p.detection(float(t))
            if d is not None:
                items.append(d)
                owners.append(k)
        for d in (extra or {}).get(i, []):
            items.append(d)
            owners.append(-1)
        out = tracker.update(
            detections(items),
            camera_id="cam-1",
            frame_index=i,
            timestamp_s=T0 + clock_offset_s + float(t),
            frame_size_px=FRAME_SIZE,
        )
        frame: dict[int, int] = {}
        for row, tid in zip(out.xyxy, out.track_id, strict=True):
            hits = [o for (b, _), o in zip(items, owners, strict=True) if np.allclose(b, row, atol=1e-3)]
            assert len(hits) == 1, "every output box is exactly one input detection box"
            frame[hits[0]] = int(tid)
        run.times_s.append(float(t))
        run.ids_by_person.append(frame)
        run.ended.extend(out.ended_ids)
        run.outputs.append(out)
    return run


def frame_times(fps: float, duration_s: float) -> np.ndarray:
    return np.arange(round(duration_s * fps)) / fps


FPS = [5.0, 10.0, 15.0]


# ---------------------------------------------------------------------------------------------
# birth and confirmation


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize("confirm_after_s", [0.0, 0.2, 0.5, 1.0])
def test_high_score_detection_is_confirmed_after_confirm_after_s_not_before(
    fps: float, confirm_after_s: float
) -> None:
    cfg = TrackerConfig(confirm_after_s=confirm_after_s)
    run = simulate([Person(500, 800)], frame_times(fps, 3.0), cfg)
    first_output_s = run.frames_with(0)[0]
    assert first_output_s >= confirm_after_s - 1e-6
    assert first_output_s < confirm_after_s + 1.0 / fps - 1e-6  # at the first frame that qualifies
    assert run.frames_with(0) == [t for t in run.times_s if t >= first_output_s]  # then in every frame
    assert set(run.ids_of(0)) == {1}


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize(
    "score, why",
    [
        (0.3, "low-score: only for keeping tracks"),
        (0.55, "high-score but under new_track_threshold"),
        (0.05, "noise"),
    ],
)
def test_detection_below_new_track_threshold_never_starts_a_track(fps: float, score: float, why: str) -> None:
    tracker = ByteTracker(TrackerConfig())
    run = simulate([Person(500, 800, score=score)], frame_times(fps, 5.0), tracker=tracker)
    assert run.frames_with(0) == [], why
    assert tracker.active_track_count == 0


@pytest.mark.parametrize("fps", FPS)
def test_false_positive_for_one_frame_never_appears(fps: float) -> None:
    times = frame_times(fps, 6.0)
    fp_frames = {
        i: [([1500.0, 200.0, 1560.0, 350.0], 0.95)] for i in range(3, len(times) - 2, 7)
    }  # isolated blips
    tracker = ByteTracker(TrackerConfig())
    run = simulate([Person(200, 900, vx_px_s=150)], times, extra=fp_frames, tracker=tracker)
    assert all(set(f) <= {0} for f in run.ids_by_person), "a blip was output"
    assert set(run.ids_of(0)) == {1}
    assert tracker.active_track_count == 1


# ---------------------------------------------------------------------------------------------
# keeping ids


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize(
    "vx_px_s, vy_px_s, height_px",
    [
        (200.0, 0.0, 200.0),  # walking across at one body height per second
        (400.0, 0.0, 200.0),  # brisk, two heights per second
        (150.0, -60.0, 300.0),  # diagonal, near the camera
        (80.0, 0.0, 60.0),  # far away, small box
        (0.0, 0.0, 250.0),  # standing
    ],
)
def test_steady_walker_keeps_one_id(fps: float, vx_px_s: float, vy_px_s: float, height_px: float) -> None:
    times = frame_times(fps, 8.0)
    run = simulate([Person(100, 1000, vx_px_s, vy_px_s, height_px)], times, TrackerConfig())
    assert set(run.ids_of(0)) == {1}
    assert len(run.frames_with(0)) >= len(times) - math.ceil(0.2 * fps)  # only the confirmation delay missing
    assert run.ended == []


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize("speed_px_s", [150.0, 300.0])
def test_two_people_crossing_keep_their_ids(fps: float, speed_px_s: float) -> None:
    # A walks right in front; B walks left slightly behind (smaller, higher foot point).
    # Around t=4 s their boxes overlap with IoU ~0.7: only the motion model tells them apart.
    a = Person(960 - 4 * speed_px_s, 700, vx_px_s=speed_px_s, height_px=240)
    b = Person(960 + 4 * speed_px_s, 660, vx_px_s=-speed_px_s, height_px=220)
    crossing = iou_matrix(np.array([a.box(4.0)], float), np.array([b.box(4.0)], float))[0, 0]
    assert crossing > 0.6
    run = simulate([a, b], frame_times(fps, 8.0), TrackerConfig())
    assert len(set(run.ids_of(0))) == 1
    assert len(set(run.ids_of(1))) == 1
    assert run.ids_of(0)[0] != run.ids_of(1)[0]


# ---------------------------------------------------------------------------------------------
# occlusion gap, re-association, removal


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize(
    "gap_s, vx_px_s, same_id",
    [
        (0.6, 0.0, True),
        (1.6, 0.0, True),  # shorter than max_lost_s = 2 s
        (1.0, 120.0, True),  # walking behind a pillar: the prediction carries on
        (2.6, 0.0, False),  # longer: a new id, the old one ended
        (5.0, 0.0, False),
    ],
)
def test_occlusion_gap(fps: float, gap_s: float, vx_px_s: float, same_id: bool) -> None:
    # max_lost_s alone: the occlusion hold of still people (tests/test_occlusion.py) is off here
    cfg = TrackerConfig(max_lost_s=2.0, occlusion_hold_s=0.0)
    person = Person(500, 900, vx_px_s=vx_px_s, hidden=[(3.0, 3.0 + gap_s)], end_s=6.0 + gap_s)
    times = frame_times(fps, 6.0 + gap_s + 3.0)  # and 3 s of empty frames at the end
    run = simulate([person], times, cfg)
    before = {i for t, f in zip(run.times_s, run.ids_by_person, strict=True) if t < 3.0 for i in f.values()}
    after = {i for t, f in zip(run.times_s, run.ids_by_person, strict=True) if t >= 3.0 for i in f.values()}
    assert len(before) == 1 and len(after) == 1
    assert (before == after) is same_id
    ended = Counter(run.ended)
    assert all(n == 1 for n in ended.values()), f"an id ended twice: {ended}"
    assert set(ended) == before | after  # everyone ends exactly once after leaving
    if not same_id:
        # the old id ends once its gap passes max_lost_s, before the person comes back
        (old,) = before
        t_end = next(t for t, out in zip(run.times_s, run.outputs, strict=True) if old in out.ended_ids)
        last_seen = max(t for t in run.frames_with(0) if t < 3.0)
        assert 2.0 < t_end - last_seen <= 2.0 + 1.0 / fps + 1e-6


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize("speed_px_s", [100.0, 200.0])  # 0.5 and 1 body height per second
@pytest.mark.parametrize("gap_s", [0.6, 1.5])
def test_person_who_stops_while_hidden_keeps_their_id(fps: float, speed_px_s: float, gap_s: float) -> None:
    # walks to a shelf and stops there just as someone steps in front: the constant-velocity
    # prediction runs away by speed * gap (120-300 px, several box widths); the last box does not
    person = Person(200, 900, vx_px_s=speed_px_s, stop_s=3.0, hidden=[(3.0, 3.0 + gap_s)])
    run = simulate([person], frame_times(fps, 7.0), TrackerConfig())
    assert set(run.ids_of(0)) == {1}
    assert run.frames_with(0)[-1] == run.times_s[-1]


@pytest.mark.parametrize("fps", FPS)
def test_ended_ids_are_reported_once_and_state_is_evicted(fps: float) -> None:
    tracker = ByteTracker(TrackerConfig(max_lost_s=1.0, occlusion_hold_s=0.0))  # hold tested elsewhere
    run = simulate(
        [Person(500, 900, end_s=2.0), Person(1200, 900, start_s=0.5, end_s=3.0)],
        frame_times(fps, 6.0),
        tracker=tracker,
    )
    assert sorted(run.ended) == [1, 2]
    assert tracker.active_track_count == 0


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize(
    "low_score_threshold, kept",
    [(0.1, True), (0.3, False)],  # 0.3: the 0.2 detections are ignored, the track is lost meanwhile
)
def test_second_stage_keeps_a_person_whose_score_drops(
    fps: float, low_score_threshold: float, kept: bool
) -> None:
    cfg = TrackerConfig(low_score_threshold=low_score_threshold, max_lost_s=1.0)
    person = Person(
        500, 900, vx_px_s=60.0, dimmed=[(2.0, 5.0, 0.2)]
    )  # 3 s half hidden: longer than max_lost_s
    run = simulate([person], frame_times(fps, 8.0), cfg)
    dim = [f for t, f in zip(run.times_s, run.ids_by_person, strict=True) if 2.0 <= t < 5.0]
    if kept:
        assert all(f == {0: 1} for f in dim), "the person must stay tracked through the low-score stage"
        assert set(run.ids_of(0)) == {1}
        low_conf = [
            float(o.confidence[0]) for t, o in zip(run.times_s, run.outputs, strict=True) if 2.0 <= t < 5.0
        ]
        assert np.allclose(low_conf, 0.2)
    else:
        assert all(f == {} for f in dim)
        assert len(set(run.ids_of(0))) == 2  # lost for 3 s > max_lost_s: a new id afterwards


def test_low_score_detection_does_not_revive_a_lost_track() -> None:
    # ByteTrack: stage 2 is for tracks followed until the previous frame; a lost track needs a
    # confident detection to come back (a 0.2 blob near where someone vanished is weak evidence).
    person = Person(500, 900, hidden=[(2.0, 3.0)], dimmed=[(3.0, 3.6, 0.2)])
    run = simulate([person], frame_times(10.0, 5.0), TrackerConfig())
    assert all(f == {} for t, f in zip(run.times_s, run.ids_by_person, strict=True) if 2.0 <= t < 3.6)
    assert set(run.ids_of(0)) == {1}  # and comes back with the same id when the score recovers


# ---------------------------------------------------------------------------------------------
# time


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_irregular_frame_spacing_keeps_one_id(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dts = rng.choice([1 / 15, 1 / 10, 0.2, 0.3, 0.5], size=60, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    times = np.concatenate([[0.0], np.cumsum(dts)])
    times[30:] += 0.8  # a live source stalled: a 0.8 s hole
    run = simulate([Person(100, 950, vx_px_s=180.0, vy_px_s=-20.0)], times, TrackerConfig())
    assert set(run.ids_of(0)) == {1}
    assert len(run.frames_with(0)) >= len(times) - 3


@pytest.mark.parametrize("fps", FPS)
def test_velocity_is_estimated_in_px_per_second(fps: float) -> None:
    kf = BoxKalman(accel_std=1.0, measurement_std=0.05)
    mean, cov = kf.initiate(np.array([100.0, 500.0, 80.0, 200.0]))
    for k in range(1, round(3 * fps) + 1):
        mean, cov = kf.predict(mean, cov, 1 / fps)
        mean, cov = kf.update(
            mean, cov, np.array([100.0 + 150.0 * k / fps, 500.0 - 30.0 * k / fps, 80.0, 200.0])
        )
    assert mean[4] == pytest.approx(150.0, rel=0.05)
    assert mean[5] == pytest.approx(-30.0, abs=7.5)


def test_process_noise_scales_with_dt() -> None:
    # one 0.2 s step == two 0.1 s steps: the uncertainty depends on elapsed time, not frames
    kf = BoxKalman(accel_std=1.0, measurement_std=0.05)
    mean, cov = kf.initiate(np.array([300.0, 400.0, 80.0, 200.0]))
    mean[4:6] = [50.0, -20.0]
    m1, c1 = kf.predict(mean, cov, 0.2)
    m2, c2 = kf.predict(*kf.predict(mean, cov, 0.1), 0.1)
    np.testing.assert_allclose(m1, m2)
    np.testing.assert_allclose(c1, c2, rtol=1e-9)
    assert c1[0, 0] > cov[0, 0]


@pytest.mark.parametrize(
    "times_s, ok",
    [
        ([0.0, 0.1, 0.2], True),
        ([0.0, 0.1, 0.1, 0.2], True),  # a repeated timestamp is a zero-length step
        ([0.0, 0.2, 0.1], False),
        ([5.0, 4.0], False),
    ],
)
def test_timestamp_going_backwards_is_a_clear_error(times_s: list[float], ok: bool) -> None:
    tracker = ByteTracker(TrackerConfig())
    det = detections([([10.0, 10.0, 50.0, 110.0], 0.9)])

    def feed() -> None:
        for i, t in enumerate(times_s):
            tracker.update(
                det, camera_id="cam-1", frame_index=i, timestamp_s=T0 + t, frame_size_px=FRAME_SIZE
            )

    if ok:
        feed()
    else:
        with pytest.raises(ValueError, match="timestamp went backwards") as info:
            feed()
        assert isinstance(info.value, UserFacingError)
        tracker.reset()  # a restarted clock is accepted after reset
        tracker.update(det, camera_id="cam-1", frame_index=0, timestamp_s=T0, frame_size_px=FRAME_SIZE)


@pytest.mark.parametrize(
    "camera_id, timestamp_s, message",
    [("cam-2", T0 + 1.0, "one ByteTracker per camera"), ("cam-1", float("nan"), "must be finite")],
)
def test_bad_input_is_a_clear_error(camera_id: str, timestamp_s: float, message: str) -> None:
    tracker = ByteTracker(TrackerConfig())
    tracker.update(
        Detections.empty(), camera_id="cam-1", frame_index=0, timestamp_s=T0, frame_size_px=FRAME_SIZE
    )
    with pytest.raises(TrackerInputError, match=message):
        tracker.update(
            Detections.empty(),
            camera_id=camera_id,
            frame_index=1,
            timestamp_s=timestamp_s,
            frame_size_px=FRAME_SIZE,
        )


# ---------------------------------------------------------------------------------------------
# ids and memory


def test_ids_are_positive_increasing_and_never_reused_even_after_reset() -> None:
    tracker = ByteTracker(TrackerConfig(max_lost_s=0.5, occlusion_hold_s=0.0))  # ids end after max_lost_s
    seen: list[int] = []
    for rnd in range(3):
        people = [Person(300 + 400 * k, 900, start_s=0.7 * k, end_s=0.7 * k + 1.0) for k in range(3)]
        run = simulate(people, frame_times(10.0, 4.0), tracker=tracker, clock_offset_s=10.0 * rnd)
        first_seen = []
        for f in run.ids_by_person:
            first_seen += [i for i in sorted(f.values()) if i not in first_seen]
        seen += first_seen
        if rnd == 1:
            tracker.reset()
    assert seen == list(range(1, 10))


def test_output_box_is_the_detection_box_and_fields_are_passed_through() -> None:
    tracker = ByteTracker(TrackerConfig(confirm_after_s=0.0))
    det = detections([([10.0, 20.0, 50.0, 120.0], 0.8)])
    out = tracker.update(det, camera_id="cam-9", frame_index=42, timestamp_s=T0, frame_size_px=(640, 480))
    assert (out.camera_id, out.frame_index, out.timestamp_s, out.frame_size_px) == (
        "cam-9",
        42,
        T0,
        (640, 480),
    )
    np.testing.assert_array_equal(out.xyxy, det.xyxy)
    assert out.confidence.tolist() == pytest.approx([0.8])


def test_state_stays_bounded_over_10000_frames_of_people_coming_and_going() -> None:
    """10,000 frames at 10 fps (~17 min): visitors walk in and out, some pause or are hidden
    briefly, false positives blink. Internal state must track the scene, not the history."""
    rng = np.random.default_rng(7)
    fps, n_frames = 10.0, 10_000
    cfg = TrackerConfig()
    tracker = ByteTracker(cfg)
    people: list[Person] = []
    t = 0.0
    while t < n_frames / fps - 20:
        t += float(rng.exponential(4.0))
        speed = float(rng.uniform(60, 250)) * (1 if rng.random() < 0.5 else -1)
        start_x = 100.0 if speed > 0 else 1800.0
        dur = 1700.0 / abs(speed)
        hidden = [(t + dur / 2, t + dur / 2 + float(rng.uniform(0.2, 1.5)))] if rng.random() < 0.3 else []
        people.append(
            Person(
                start_x,
                float(rng.uniform(500, 1050)),
                speed,
                0.0,
                float(rng.uniform(120, 320)),
                t,
                t + dur,
                hidden=hidden,
            )
        )
    counts, max_live = [], 0
    confirmed: set[int] = set()
    ended: list[int] = []
    for i in range(n_frames + 50):  # and 5 s of empty frames to let the last ones end
        ts = i / fps
        items = [d for p in people if (d := p.detection(ts)) is not None] if i < n_frames else []
        max_live = max(max_live, len(items))
        if rng.random() < 0.05:
            x, y = rng.uniform(0, 1800), rng.uniform(0, 900)
            items.append(([x, y, x + 50, y + 120], float(rng.uniform(0.6, 0.9))))
        out = tracker.update(
            detections(items), camera_id="cam-1", frame_index=i, timestamp_s=T0 + ts, frame_size_px=FRAME_SIZE
        )
        confirmed.update(out.track_id.tolist())
        ended.extend(out.ended_ids)
        counts.append(tracker.active_track_count)
    assert len(people) > 200
    # bounded by the scene: people in view, a blip, and those lost < max_lost_s ago
    assert max(counts) <= max_live + 6
    assert np.mean(counts[-3000:-50]) < max_live + 3
    assert tracker.active_track_count == 0  # everyone ended after the empty tail
    assert sorted(ended) == sorted(confirmed)  # every confirmed id ended exactly once
    assert len(confirmed) < 1.5 * len(people)  # and ids were not fragmenting wildly


# ---------------------------------------------------------------------------------------------
# assignment


@pytest.mark.parametrize(
    "iou, min_iou, expected",
    [
        ([[0.9, 0.1], [0.8, 0.0]], 0.2, [(0, 0)]),  # track 1 has no acceptable partner
        ([[0.6, 0.5], [0.55, 0.0]], 0.2, [(0, 1), (1, 0)]),  # more pairs beat one greedy best pair
        ([[0.1]], 0.2, []),
        (np.zeros((0, 3)), 0.2, []),
    ],
)
def test_match_by_iou(iou: list[list[float]], min_iou: float, expected: list[tuple[int, int]]) -> None:
    assert sorted(match_by_iou(np.asarray(iou, float), min_iou)) == expected


# ---------------------------------------------------------------------------------------------
# real detector on real video


# Visits counted by eye on one-by-one-person-detection.mp4 (frames sampled with OpenCV): six
# people, one at a time, walk in from the bottom edge, stand at the table and leave to the right.
TABLE_VIDEO_VISITS_S = [(6.0, 20.0), (22.0, 45.0), (50.0, 70.0), (74.0, 87.0), (92.0, 120.0), (123.0, 139.5)]


@pytest.fixture(scope="module")
def table_video_detections(table_video: Path) -> tuple[float, list[Detections], tuple[int, int]]:
    """YOLOX-Nano (the default: 416x256 on this 16:9 clip) on every frame, once; the scenarios
    subsample it. The detector floor is the tracker's low_score_threshold (0.1) so the second
    stage sees what it is meant to see."""
    from edge.config import ModelConfig
    from edge.detector import OnnxDetector

    detector = OnnxDetector.from_config(ModelConfig(name="yolox-nano", confidence_threshold=0.1), None)
    cap = cv2.VideoCapture(str(table_video))
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    out: list[Detections] = []
    size = (0, 0)
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            size = (int(image.shape[1]), int(image.shape[0]))
            out.append(detector.detect(image))
    finally:
        cap.release()
    assert fps == pytest.approx(10.0) and len(out) == 1394
    return fps, out, size


@pytest.mark.slow
@pytest.mark.parametrize("analysis_fps", [5.0, 10.0])
def test_one_id_per_visit_on_real_video(
    table_video_detections: tuple[float, list[Detections], tuple[int, int]], analysis_fps: float
) -> None:
    source_fps, dets, size = table_video_detections
    step = round(source_fps / analysis_fps)
    tracker = ByteTracker(TrackerConfig())
    seen_s: dict[int, list[float]] = {}
    ended: list[int] = []
    max_state = 0
    last_i = 0
    for i in range(0, len(dets), step):
        out = tracker.update(
            dets[i], camera_id="cam-1", frame_index=i, timestamp_s=T0 + i / source_fps, frame_size_px=size
        )
        for tid in out.track_id.tolist():
            seen_s.setdefault(tid, []).append(i / source_fps)
        ended.extend(out.ended_ids)
        max_state = max(max_state, tracker.active_track_count)
        last_i = i
    for k in range(1, 40):  # the file ends: 4 s of nothing lets the last visitor's track end
        out = tracker.update(
            Detections.empty(),
            camera_id="cam-1",
            frame_index=last_i + k,
            timestamp_s=T0 + (last_i + k * step) / source_fps,
            frame_size_px=size,
        )
        ended.extend(out.ended_ids)
    ids_per_visit = [
        sorted(tid for tid, ts in seen_s.items() if any(a <= t < b for t in ts))
        for a, b in TABLE_VIDEO_VISITS_S
    ]
    assert [len(v) for v in ids_per_visit] == [1] * len(TABLE_VIDEO_VISITS_S), ids_per_visit
    assert len(seen_s) == len(TABLE_VIDEO_VISITS_S)
    for tid, ts in seen_s.items():  # each id is present for (almost) the whole visit
        visit = next(v for v, ids in zip(TABLE_VIDEO_VISITS_S, ids_per_visit, strict=True) if ids == [tid])
        assert max(ts) - min(ts) > 0.8 * (visit[1] - visit[0]) - 3.0
    assert sorted(ended) == sorted(seen_s)
    assert max_state <= 2 and tracker.active_track_count == 0
