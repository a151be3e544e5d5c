"""The simulator itself: exact truth geometry, determinism, queue dynamics and every noise knob.

The accuracy tests (tests/test_accuracy.py) are only as good as the truth they compare with, so
the truth is checked here against hand-solved cases and against the track stream it produced.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from zones.simulator import (
    NOISE_FREE,
    REALISTIC_NOISE,
    EntranceScenario,
    FloorPath,
    NoiseModel,
    QueueScenario,
    Rect,
    first_entry_s,
    first_exit_s,
    first_within_s,
    simulate_entrance,
    simulate_queue,
)

RECT = Rect(0.0, 0.0, 2.0, 1.0)


def _path(*pts: tuple[float, float, float]) -> FloorPath:
    t0, x0, y0 = pts[0]
    p = FloorPath(t0, x0, y0)
    for t, x, y in pts[1:]:
        p.t.append(t)
        p.x.append(x)
        p.y.append(y)
    return p


@pytest.mark.parametrize(
    ("pts", "after", "entry", "exit_"),
    [
        # walk in from the left at 1 m/s: enter at x=0 (t=1), leave at x=2 (t=3)
        (((0.0, -1.0, 0.5), (4.0, 3.0, 0.5)), 0.0, 1.0, 3.0),
        # start inside: entry at once, exit when crossing y=1 (t=0.5)
        (((0.0, 1.0, 0.5), (1.0, 1.0, 1.5)), 0.0, 0.0, 0.5),
        # walk along the boundary y=0: never strictly inside
        (((0.0, -1.0, 0.0), (4.0, 3.0, 0.0)), 0.0, None, 0.0),
        # stand inside after arriving: exit never (within the horizon)
        (((0.0, -1.0, 0.5), (2.0, 1.0, 0.5)), 0.0, 1.0, None),
        # search after the first visit: the second visit starts at t=6
        (((0.0, -1.0, 0.5), (4.0, 3.0, 0.5), (5.0, 3.0, 0.5), (9.0, -1.0, 0.5)), 4.0, 6.0, 8.0),
    ],
)
def test_zone_entry_and_exit_are_solved_exactly(pts, after, entry, exit_) -> None:
    p = _path(*pts)
    got_in = first_entry_s(p, RECT, after, 20.0)
    if entry is None:
        assert got_in is None
    else:
        assert got_in == pytest.approx(entry, abs=1e-9)
    got_out = first_exit_s(p, RECT, got_in if got_in is not None else after, 20.0)
    if exit_ is None:
        assert got_out is None
    else:
        assert got_out == pytest.approx(exit_, abs=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "radius", "expect"),
    [
        # head-on at 1 m/s each from 10 m apart: 1.5 m apart after (10-1.5)/2 s
        (((0.0, 0.0, 0.0), (10.0, 10.0, 0.0)), ((0.0, 10.0, 0.0), (10.0, 0.0, 0.0)), 1.5, 4.25),
        # parallel 2 m apart: never within 1.5 m
        (((0.0, 0.0, 0.0), (10.0, 10.0, 0.0)), ((0.0, 0.0, 2.0), (10.0, 10.0, 2.0)), 1.5, None),
        # already close at the start of the window
        (((0.0, 0.0, 0.0),), ((0.0, 1.0, 0.0),), 1.5, 0.0),
        # b stands still at (5, 1); a passes along y=0: within 1.5 m when |x-5| <= sqrt(1.25)
        (((0.0, 0.0, 0.0), (10.0, 10.0, 0.0)), ((0.0, 5.0, 1.0),), 1.5, 5.0 - math.sqrt(1.25)),
    ],
)
def test_first_within_radius_is_solved_exactly(a, b, radius, expect) -> None:
    got = first_within_s(_path(*a), _path(*b), radius, 0.0, 10.0)
    if expect is None:
        assert got is None
    else:
        assert got == pytest.approx(expect, abs=1e-9)


def test_path_replanning_cuts_the_walk_where_the_person_is() -> None:
    p = FloorPath(0.0, 0.0, 0.0)
    arr = p.go(0.0, [(10.0, 0.0)], 1.0)
    assert arr == [10.0]
    p.go(4.0, [(4.0, 3.0)], 1.0)  # change of plan at t=4, at x=4
    assert p.pos(4.0) == pytest.approx((4.0, 0.0))
    assert p.pos(5.5) == pytest.approx((4.0, 1.5))
    assert p.end_s == pytest.approx(7.0)


def test_same_seed_same_simulation_other_seed_differs() -> None:
    sc = QueueScenario(duration_s=900.0, rho=0.8, seed=7, noise=REALISTIC_NOISE)
    a, b = simulate_queue(sc), simulate_queue(sc)
    assert a.customers == b.customers
    assert np.array_equal(a.stream.track_id, b.stream.track_id)
    assert np.array_equal(a.stream.xyxy, b.stream.xyxy)
    c = simulate_queue(replace(sc, seed=8))
    assert c.customers != a.customers


def test_noise_does_not_change_the_scene() -> None:
    """Scene and noise use separate random streams: the same customers with and without noise."""
    sc = QueueScenario(duration_s=900.0, rho=0.8, seed=3)
    assert simulate_queue(sc).customers == simulate_queue(replace(sc, noise=REALISTIC_NOISE)).customers


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95])
def test_queue_dynamics_are_consistent(rho: float) -> None:
    sc = QueueScenario(duration_s=4 * 3600.0, rho=rho, tills=2, seed=11)
    sim = simulate_queue(sc)
    served = [c for c in sim.customers if c.true_wait_s is not None]
    assert len(served) > 100
    for c in served:
        assert c.join_s is not None and c.service_start_s is not None and c.service_begin_s is not None
        assert c.arrive_s < c.join_s < c.service_start_s < c.service_begin_s
        assert c.true_wait_s == pytest.approx(c.service_start_s - c.join_s)
        assert not c.abandoned
    # FIFO per lane: customers reach the till in the order they joined
    for k in range(sc.tills):
        lane = [c for c in served if c.lane == sc.lane_id(k)]
        order = sorted(lane, key=lambda c: c.join_s or 0.0)
        assert [c.customer_id for c in order] == [c.customer_id for c in sorted(lane, key=lambda c: c.service_start_s or 0.0)]
    # arrivals follow λ and the tills are busy about rho of the time
    rate = len(sim.customers) / sc.duration_s
    assert rate == pytest.approx(sc.arrival_rate_per_s, rel=0.15)
    busy = sum(min(c.service_end_s or sc.duration_s, sc.duration_s) - c.service_begin_s
               for c in sim.customers if c.service_begin_s is not None)
    assert busy / (sc.tills * sc.duration_s) == pytest.approx(rho, abs=0.12)
    # the true queue length never exceeds the slots of a lane
    t = np.arange(0.0, sc.duration_s, 1.0)
    for k in range(sc.tills):
        assert int(sim.true_queue_length(sc.lane_id(k), t).max()) <= sc.max_queue


def test_impatient_customers_give_up_and_are_not_served() -> None:
    sim = simulate_queue(QueueScenario(duration_s=3 * 3600.0, rho=0.95, patience_mean_s=120.0, seed=5))
    quitters = [c for c in sim.customers if c.abandoned and c.join_s is not None]
    assert len(quitters) >= 5
    for c in quitters:
        assert c.service_start_s is None and c.true_wait_s is None
        assert c.queue_exit_s is not None and c.queue_exit_s > c.join_s


def test_noise_free_stream_projects_back_to_the_true_positions() -> None:
    sim = simulate_queue(QueueScenario(duration_s=600.0, rho=0.8, seed=2))
    people = {p.pid: p for p in sim.people}
    n = 0
    for tracks in sim.stream.frames(0, 600 * 5 + 1):
        if not len(tracks):
            continue
        t = tracks.timestamp_s - sim.scenario.start_epoch_s
        floor = sim.calibration.image_to_floor(tracks.foot_px)
        for tid, (x, y) in zip(tracks.track_id.tolist(), floor, strict=True):
            px, py = people[tid].path.pos(t)
            assert math.hypot(x - px, y - py) < 2e-3  # float32 boxes
            n += 1
    assert n > 1000
    assert set(sim.stream.id_owner) == set(sim.stream.id_owner.values())  # ids are the people


def test_ended_ids_are_reported_after_the_last_detection_and_never_reappear() -> None:
    sim = simulate_queue(QueueScenario(duration_s=900.0, rho=0.8, seed=4, noise=REALISTIC_NOISE))
    last_seen: dict[int, int] = {}
    ended: set[int] = set()
    fps = sim.scenario.fps
    for tracks in sim.frames():
        for tid in tracks.track_id.tolist():
            assert tid not in ended, "an ended id came back"
            last_seen[tid] = tracks.frame_index
        for tid in tracks.ended_ids:
            assert tracks.frame_index - last_seen[tid] == math.ceil(REALISTIC_NOISE.end_after_s * fps)
            ended.add(tid)
    assert len(ended) > 20


def _knob_stats(noise: NoiseModel) -> dict[str, float]:
    sim = simulate_queue(QueueScenario(duration_s=1800.0, rho=0.8, seed=9, noise=noise))
    clean = simulate_queue(QueueScenario(duration_s=1800.0, rho=0.8, seed=9))
    people = {p.pid: p for p in sim.people}
    s = sim.stream
    owner = np.array([s.id_owner[int(t)] for t in s.track_id])
    real = owner >= 0
    foot = (s.xyxy[:, [0, 2]].mean(axis=1), s.xyxy[:, 3])
    floor = sim.calibration.image_to_floor(np.stack(foot, axis=1)[real])
    t = s.frame[real] / s.fps
    truth = np.array([people[int(o)].path.pos(float(tt)) for o, tt in zip(owner[real], t, strict=True)])
    err = floor - truth
    track_s = len(clean.stream.frame) / s.fps
    return {
        "kept": float(real.sum()) / len(clean.stream.frame),
        "jitter_sd": float(np.std(err)),
        "switches_per_track_s": (len({int(i) for i in s.track_id[real]}) - len(set(clean.stream.track_id.tolist())))
        / track_s,
        "fp_tracks": float(len({int(i) for i in s.track_id[~real]})),
        "max_gap_s": _max_gap_s(s.frame[real], owner[real], s.fps),
    }


def _max_gap_s(frame: np.ndarray, owner: np.ndarray, fps: float) -> float:
    gap = 0.0
    for o in np.unique(owner):
        f = np.sort(frame[owner == o])
        if f.shape[0] > 1:
            gap = max(gap, float(np.max(np.diff(f)) - 1) / fps)
    return gap


@pytest.mark.parametrize(
    ("noise", "check"),
    [
        (NOISE_FREE, lambda s: s["kept"] == 1.0 and s["jitter_sd"] < 2e-3 and s["fp_tracks"] == 0 and s["max_gap_s"] == 0),
        (NoiseModel(miss_rate=0.2), lambda s: abs(s["kept"] - 0.8) < 0.02 and s["max_gap_s"] > 0),
        (NoiseModel(jitter_m=0.15), lambda s: abs(s["jitter_sd"] - 0.15) < 0.01 and s["kept"] == 1.0),
        (NoiseModel(id_switch_per_track_s=1 / 100), lambda s: 0.5 / 100 < s["switches_per_track_s"] < 1.5 / 100),
        (NoiseModel(false_positive_per_s=1 / 10), lambda s: 130 < s["fp_tracks"] < 230),
        (NoiseModel(occlusion_per_track_s=1 / 30, occlusion_max_s=2.0),
         lambda s: 1.0 < s["max_gap_s"] <= 2.0 and 0.9 < s["kept"] < 1.0),
    ],
    ids=["none", "misses", "jitter", "id-switches", "false-positives", "occlusions"],
)
def test_each_noise_knob_does_what_it_says(noise: NoiseModel, check) -> None:
    stats = _knob_stats(noise)
    assert check(stats), stats


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"miss_rate": 1.0}, "miss_rate"),
        ({"jitter_m": -0.1}, "jitter_m"),
        ({"false_positive_max_s": 0.1}, "false_positive_max_s"),
        ({"id_switch_per_track_s": float("nan")}, "id_switch_per_track_s"),
    ],
)
def test_bad_noise_knobs_are_rejected(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        NoiseModel(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [({"tills": 0}, "tills"), ({"rho": 0.0}, "rho"), ({"max_queue": 1}, "max_queue")])
def test_bad_scenarios_are_rejected(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        QueueScenario(**kwargs)


def test_generated_config_is_a_valid_store_in_floor_metres() -> None:
    sim = simulate_queue(QueueScenario(tills=3, duration_s=60.0))
    cam = sim.config.cameras[0]
    assert cam.calibration is not None
    assert sim.calibration.rms_error_m < 1e-6
    kinds = [z.kind for z in cam.zones]
    assert kinds.count("queue") == 3 and kinds.count("service") == 3 and kinds.count("staff_only") == 3
    assert all(z.units == "m" for z in cam.zones)
    assert sim.config.staff.methods == ["staff_only_zone"]
    # every zone corner is in view
    for z in cam.zones:
        img = sim.calibration.floor_to_image(np.array(z.polygon))
        assert np.all((img >= 0) & (img <= np.array(sim.scenario.frame_size_px)))


def test_entrance_truth_follows_the_plan_and_staff_meet_in_the_zone() -> None:
    sc = EntranceScenario(duration_s=3600.0, seed=1)
    sim = simulate_entrance(sc)
    assert len(sim.greetings) > 50
    on_time = [g for g in sim.greetings if g.planned == "on_time"]
    assert on_time and all(g.outcome == "greeted" for g in on_time)
    # the greeter walks in straight: truth equals the plan unless they could not leave early enough
    assert np.median([abs((g.latency_s or 0) - (g.planned_latency_s or 0)) for g in on_time]) < 0.05
    late = [g for g in sim.greetings if g.planned == "late"]
    assert late and sum(g.outcome == "missed" for g in late) >= len(late) // 2
    never = [g for g in sim.greetings if g.planned == "never"]
    assert never and sum(g.outcome == "missed" for g in never) >= len(never) // 2
    # staff-to-staff contacts really happen inside the entrance zone, within the greeting radius
    assert sim.staff_contacts >= 3
    clerks = [p for p in sim.people if p.role == "staff"]
    greeters = [p for p in sim.people if p.role == "greeter"]
    met = 0
    for c in clerks:
        for g in greeters:
            t = first_within_s(c.path, g.path, sc.greet_radius_m, c.appear_s, c.vanish_s)
            if t is not None and sc.entrance.contains(*c.path.pos(t + 1.0)):
                met += 1
    assert met >= sim.staff_contacts - 1
