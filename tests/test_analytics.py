"""StoreAnalytics end to end on synthetic tracks (Tracks built directly, no detector).

The scene (normalised image coordinates, 1000x1000 px frames):

    y 0.1-0.5   queue lane-1 (x 0-0.4) | till t1 (x 0.4-0.6) | dwell "table" (x 0.65-0.85)
    y 0.5-0.9   queue lane-2 (x 0-0.4) | till t2 (x 0.4-0.6) | entrance (x 0.7-0.9, y 0.6-0.9)
    backroom (staff_only) x 0.9-1.0, y 0.1-0.3: whoever spends 2 s there is staff.

People follow piecewise-linear paths; a track is reported while its path is defined (minus
occlusion intervals) and ended ``LOST_S`` after it was last seen, like the tracker does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from edge.config import ConfigError, StoreConfig, parse_config
from edge.contract import Message, Tracks
from edge.errors import UserFacingError
from mqtt_bridge.topics import Topics
from zones.analytics import StoreAnalytics, UnknownLaneError
from zones.config import QueueModelConfig, RecommendationConfig

T0 = 1_714_550_400.0  # 2024-05-01 08:00 UTC
W = H = 1000
LOST_S = 1.0

QUEUE1 = (0.2, 0.3)
TILL1 = (0.5, 0.3)
QUEUE2 = (0.2, 0.7)
TILL2 = (0.5, 0.7)
TABLE = (0.75, 0.25)
ENTRANCE = (0.8, 0.75)
BACKROOM = (0.95, 0.2)
OUTSIDE = (0.62, 0.95)  # in no zone

ZONES_CAM1 = """
      - {id: q1, kind: queue, lane: lane-1, label: "Lane 1", service_zone: t1,
         polygon: [[0.0, 0.1], [0.4, 0.1], [0.4, 0.5], [0.0, 0.5]]}
      - {id: t1, kind: service, lane: lane-1, polygon: [[0.4, 0.1], [0.6, 0.1], [0.6, 0.5], [0.4, 0.5]]}
      - {id: q2, kind: queue, lane: lane-2, label: "Lane 2", service_zone: t2,
         polygon: [[0.0, 0.5], [0.4, 0.5], [0.4, 0.9], [0.0, 0.9]]}
      - {id: t2, kind: service, lane: lane-2, polygon: [[0.4, 0.5], [0.6, 0.5], [0.6, 0.9], [0.4, 0.9]]}
      - {id: table, kind: dwell, label: "Table", stop_after_s: 10, response_sla_s: 30,
         polygon: [[0.65, 0.1], [0.85, 0.1], [0.85, 0.4], [0.65, 0.4]]}
      - {id: entrance, kind: entrance, greet_radius_m: 1.5,
         polygon: [[0.7, 0.6], [0.9, 0.6], [0.9, 0.9], [0.7, 0.9]]}
      - {id: backroom, kind: staff_only, polygon: [[0.9, 0.1], [1.0, 0.1], [1.0, 0.3], [0.9, 0.3]]}
"""


def make_config(extra: str = "", zones: str = ZONES_CAM1, cameras_extra: str = "", staff: bool = True) -> StoreConfig:
    text = f"""
version: 1
store: {{id: test-store, timezone: UTC}}
cameras:
  - id: cam-1
    source: none.mp4
    fps: 10
    zones:{zones}
{cameras_extra}
{"staff: {methods: [staff_only_zone], staff_only_zone: {min_time_s: 2}}" if staff else ""}
{extra}
"""
    return parse_config(text)


@dataclass
class Walker:
    """One person: waypoints (t offset s, x, y) in normalised coordinates; present between the
    first and last waypoint except during ``hidden`` intervals."""

    track_id: int
    path: list[tuple[float, float, float]]
    hidden: list[tuple[float, float]] = field(default_factory=list)
    camera: str = "cam-1"

    def at(self, t: float) -> tuple[float, float] | None:
        if t < self.path[0][0] - 1e-9 or t > self.path[-1][0] + 1e-9:
            return None
        if any(a <= t < b for a, b in self.hidden):
            return None
        for (ta, xa, ya), (tb, xb, yb) in zip(self.path, self.path[1:], strict=False):
            if ta - 1e-9 <= t <= tb + 1e-9:
                f = 0.0 if tb == ta else (t - ta) / (tb - ta)
                return xa + f * (xb - xa), ya + f * (yb - ya)
        return self.path[-1][1], self.path[-1][2]


def stay(track_id: int, at: tuple[float, float], t_from: float, t_to: float, **kw: object) -> Walker:
    return Walker(track_id, [(t_from, *at), (t_to, *at)], **kw)  # type: ignore[arg-type]


def staff_member(track_id: int, t_from: float, then: Sequence[tuple[float, float, float]]) -> Walker:
    """Starts 2.5 s in the backroom (so it is identified as staff), then follows ``then``."""
    return Walker(track_id, [(t_from, *BACKROOM), (t_from + 2.5, *BACKROOM), *then])


def run_scene(
    analytics: StoreAnalytics,
    walkers: Sequence[Walker],
    duration_s: float,
    fps: float = 10.0,
    camera: str = "cam-1",
    on_frame: Callable[[float, list[Message]], None] | None = None,
    finish: bool = True,
) -> list[Message]:
    out: list[Message] = []
    last_seen: dict[int, float] = {}
    ended_done: set[int] = set()
    n = int(round(duration_s * fps)) + 1
    pending = sorted((w for w in walkers if w.camera == camera), key=lambda w: w.path[0][0])
    active: list[Walker] = []
    for i in range(n):
        t = round(i / fps, 6)
        ids, boxes = [], []
        while pending and pending[0].path[0][0] <= t + 1e-9:
            active.append(pending.pop(0))
        active = [w for w in active if w.path[-1][0] >= t - 1e-9]
        for w in active:
            p = w.at(t)
            if p is None:
                continue
            x, y = p[0] * W, p[1] * H
            ids.append(w.track_id)
            boxes.append([x - 20, max(0.0, y - 100), x + 20, y])
            last_seen[w.track_id] = t
        ended = tuple(tid for tid, seen in last_seen.items()
                      if tid not in ids and tid not in ended_done and t - seen >= LOST_S - 1e-9)
        ended_done.update(ended)
        for tid in ended:
            last_seen.pop(tid)
        tracks = Tracks(camera, i, T0 + t, (W, H), np.array(boxes, np.float32).reshape(-1, 4),
                        np.full(len(ids), 0.9, np.float32), np.array(ids, np.int64), ended)
        msgs = analytics.update(tracks)
        out.extend(msgs)
        if on_frame is not None:
            on_frame(t, msgs)
    if finish:
        out.extend(analytics.finish(T0 + duration_s))
    return out


def events(msgs: Sequence[Message], etype: str) -> list[dict[str, object]]:
    return [m.payload for m in msgs if not m.is_state and m.payload.get("type") == etype]


def last_state(msgs: Sequence[Message], topic: str) -> dict[str, object]:
    states = [m.payload for m in msgs if m.is_state and TOPICS.of(m) == topic]
    assert states, f"no state on {topic}"
    return states[-1]


TOPICS = Topics("test-store")


# ---------------------------------------------------------------------------------------------
# queues


@pytest.mark.parametrize("n_customers", [0, 1, 3, 6])
@pytest.mark.parametrize("with_staff_in_queue", [False, True])
def test_queue_length_exact(n_customers: int, with_staff_in_queue: bool) -> None:
    a = StoreAnalytics(make_config())
    walkers = [stay(10 + k, (0.05 + 0.05 * k, 0.2 + 0.04 * k), 0.0, 30.0) for k in range(n_customers)]
    if with_staff_in_queue:
        walkers.append(staff_member(99, 0.0, [(4.0, *QUEUE1), (30.0, *QUEUE1)]))
    seen: list[tuple[float, int]] = []

    def check(t: float, msgs: list[Message]) -> None:
        for m in msgs:
            if TOPICS.of(m) == TOPICS.lane_state("lane-1"):
                seen.append((t, int(m.payload["queue_length"])))

    run_scene(a, walkers, 30.0, on_frame=check, finish=False)
    # from enter_after_s (1 s) on, every state shows exactly the customers (never the staff)
    assert all(q == n_customers for t, q in seen if t >= 1.0)
    assert seen[-1][1] == n_customers
    assert a.lane_metrics("lane-1").queue_length_smoothed == pytest.approx(n_customers, abs=0.01)


@pytest.mark.parametrize("fps", [5.0, 10.0])
def test_measured_wait_equals_true_wait_within_one_frame(fps: float) -> None:
    """Customers join lane 1 at irregular times and step into the till after a known wait."""
    rng = np.random.default_rng(7)
    a = StoreAnalytics(make_config())
    walkers, truth = [], {}
    t_free = 5.0  # till free from
    for k in range(8):
        join = 3.0 + 17.3 * k + float(rng.uniform(0, 1))
        reach = max(join + 4.0 + float(rng.uniform(0, 20)), t_free)
        service = 15.0 + float(rng.uniform(0, 10))
        t_free = reach + service + 1.0
        truth[100 + k] = reach - join
        walkers.append(Walker(100 + k, [
            (join, *QUEUE1),
            (reach - 0.7, 0.33, 0.3),
            (reach, 0.4, 0.3),  # on the till boundary at the true moment
            (reach + 0.3, *TILL1),
            (reach + service, *TILL1),
            (reach + service + 0.5, *OUTSIDE),
        ]))
    msgs = run_scene(a, walkers, t_free + 10.0, fps=fps)
    waits = {e["track_id"]: e for e in events(msgs, "queue_wait")}
    assert sorted(waits) == sorted(truth)
    for tid, true_wait in truth.items():
        e = waits[tid]
        assert e["outcome"] == "served"
        assert abs(float(e["wait_s"]) - true_wait) <= 1.0 / fps + 1e-6, (tid, e["wait_s"], true_wait)
    state = last_state(msgs, TOPICS.lane_state("lane-1"))
    assert state["services_observed"] == 8
    assert state["measured_wait_recent_s"] is not None


def test_abandoned_customer_is_reported_and_forgotten() -> None:
    a = StoreAnalytics(make_config())
    w = Walker(5, [(0.0, *QUEUE1), (12.0, *QUEUE1), (12.5, *OUTSIDE), (20.0, *OUTSIDE)])
    msgs = run_scene(a, [w], 25.0)
    (e,) = events(msgs, "queue_wait")
    assert e["outcome"] == "abandoned" and e["served_s"] is None
    assert float(e["wait_s"]) == pytest.approx(12.0, abs=0.2)
    assert a.per_track_state_sizes()["lane_pending"] == 0


def test_predicted_wait_in_state_follows_the_formula() -> None:
    """4 waiting, nobody at the till, no service observed yet: 4 x 60 s (default service time).
    Then a customer steps up to the till (one service start after 20 s of busy lane):
    μ = (1 + 1) / (60 + 20) per s with the prior, W = 4 / μ + (1/μ − time since that start)."""
    a = StoreAnalytics(make_config())
    walkers = [stay(k, (0.05 + 0.07 * k, 0.3), 0.0, 40.0) for k in range(4)]
    walkers.append(Walker(50, [(20.0, *OUTSIDE), (20.5, *TILL1), (40.0, *TILL1)]))
    msgs = run_scene(a, walkers, 19.9, finish=False)
    s = last_state(msgs, TOPICS.lane_state("lane-1"))
    assert s["queue_length"] == 4 and s["server_busy"] is False
    assert s["predicted_wait_s"] == pytest.approx(240.0)
    assert s["predicted_wait_low_s"] < 240.0 < s["predicted_wait_high_s"]
    assert s["service_rate_per_min"] is None and s["service_rate_source"] == "default"
    msgs = run_scene(a, walkers, 30.0, finish=False)
    s = last_state(msgs, TOPICS.lane_state("lane-1"))
    assert s["server_busy"] is True and s["services_observed"] == 1
    # busy from t=0 (first customer confirmed at 1 s) to 30 s; decay over 30 s with half-life 300 s
    mu_per_s = 2.0 / (60.0 + 29.0)
    elapsed_s = 30.0 - 20.25  # the till edge (x 0.4) is crossed a quarter second into the step
    assert s["predicted_wait_s"] == pytest.approx(4.0 / mu_per_s + (1.0 / mu_per_s - elapsed_s), rel=0.06)
    assert s["service_rate_per_min"] == pytest.approx(mu_per_s * 60, rel=0.06)


def test_stale_when_the_lane_camera_stops() -> None:
    """Lane 3 lives on cam-2; when cam-2 stops delivering frames, cam-1 updates flag it stale."""
    cam2 = """
  - id: cam-2
    source: none2.mp4
    zones:
      - {id: q3, kind: queue, lane: lane-3, service_zone: t3, polygon: [[0.0, 0.1], [0.4, 0.1], [0.4, 0.5], [0.0, 0.5]]}
      - {id: t3, kind: service, lane: lane-3, polygon: [[0.4, 0.1], [0.6, 0.1], [0.6, 0.5], [0.4, 0.5]]}
"""
    a = StoreAnalytics(make_config(cameras_extra=cam2, staff=False))
    run_scene(a, [stay(1, QUEUE1, 0.0, 2.0, camera="cam-2")], 2.0, camera="cam-2", finish=False)
    msgs = run_scene(a, [], 15.0, camera="cam-1", finish=False)
    lane3 = [m.payload for m in msgs if TOPICS.of(m) == TOPICS.lane_state("lane-3")]
    assert lane3, "a lane whose camera went silent must be re-published when it turns stale"
    assert lane3[-1]["stale"] is True and lane3[-1]["stale_reason"] == "no_frames"
    store = last_state(msgs, TOPICS.store_state())
    assert store["recommended_lane"] in ("lane-1", "lane-2")  # fresh lanes beat the stale one


def test_lane_open_by_staff_and_by_command() -> None:
    a = StoreAnalytics(make_config())
    # cashier at till 1 from t=3 to t=20, then gone
    cashier = staff_member(90, 0.0, [(3.0, *TILL1), (20.0, *TILL1)])
    opened: list[tuple[float, bool, str]] = []

    def check(t: float, msgs: list[Message]) -> None:
        for m in msgs:
            if TOPICS.of(m) == TOPICS.lane_state("lane-1") and (not opened or opened[-1][1] != m.payload["open"]):
                opened.append((t, bool(m.payload["open"]), str(m.payload["open_source"])))

    run_scene(a, [cashier], 20.0 + QueueModelConfig().lane_close_hold_s + 5.0, on_frame=check, finish=False)
    assert [(o, s) for _, o, s in opened] == [(False, "staff"), (True, "staff"), (False, "staff")]
    assert 2.5 <= opened[1][0] <= 3.5  # as soon as the identified cashier reaches the till
    assert opened[2][0] == pytest.approx(20.0 + QueueModelConfig().lane_close_hold_s, abs=0.25)

    ts = T0 + 100.0
    msgs = a.set_lane_state("lane-1", "open", ts)
    (cmd,) = events(msgs, "lane_command")
    assert (cmd["lane_id"], cmd["state"], cmd["open"], cmd["open_source"]) == ("lane-1", "open", True, "command")
    assert last_state(msgs, TOPICS.lane_state("lane-1"))["open"] is True
    # the camera's last frame was 55 s before the command: the lane is stale, so the badge stays
    # off it (never a stale lane, zones/recommend.py) although it is open
    assert last_state(msgs, TOPICS.lane_state("lane-1"))["stale"] is True
    assert last_state(msgs, TOPICS.store_state())["recommended_lane"] is None
    msgs = a.set_lane_state("lane-1", "auto", ts + 1)
    assert last_state(msgs, TOPICS.lane_state("lane-1"))["open_source"] == "staff"
    assert last_state(msgs, TOPICS.lane_state("lane-1"))["open"] is False


@pytest.mark.parametrize(("lane", "state", "match"), [
    ("lane-9", "open", r"unknown lane 'lane-9'.*lane-1.*lane-2"),
    ("lane-1", "half-open", r"'open', 'closed' or 'auto'"),
])
def test_bad_lane_command(lane: str, state: str, match: str) -> None:
    a = StoreAnalytics(make_config())
    with pytest.raises(UserFacingError, match=match):
        a.set_lane_state(lane, state, T0)


def test_unknown_lane_is_also_a_value_error() -> None:
    a = StoreAnalytics(make_config())
    with pytest.raises(ValueError):
        a.set_lane_state("nope", "open", T0)
    assert issubclass(UnknownLaneError, UserFacingError)


@pytest.mark.parametrize(
    ("q1", "q2", "open1", "open2", "expected"),
    [
        (3, 1, "open", "open", "lane-2"),
        (1, 3, "open", "open", "lane-1"),
        (3, 1, "open", "closed", "lane-1"),  # a closed lane is never recommended
        (2, 2, "open", "open", "lane-1"),  # tie: config order
        (0, 0, "closed", "closed", None),
    ],
)
def test_recommended_lane(q1: int, q2: int, open1: str, open2: str, expected: str | None) -> None:
    a = StoreAnalytics(make_config())
    a.set_lane_state("lane-1", open1, T0)
    a.set_lane_state("lane-2", open2, T0)
    # 25 s: a lane that becomes better by more than the badge's margin takes it after hold_s (10 s)
    walkers = [stay(k, (0.05 + 0.08 * k, 0.3), 0.0, 25.0) for k in range(q1)]
    walkers += [stay(20 + k, (0.05 + 0.08 * k, 0.7), 0.0, 25.0) for k in range(q2)]
    msgs = run_scene(a, walkers, 25.0, finish=False)
    assert last_state(msgs, TOPICS.store_state())["recommended_lane"] == expected
    for lane in ("lane-1", "lane-2"):
        assert last_state(msgs, TOPICS.lane_state(lane))["recommended"] is (lane == expected)


def test_recommended_lane_change_is_published_at_once() -> None:
    """State interval 60 s, but the recommendation flips when lane 1 fills up: both lanes and the
    store are re-published on that very frame (the frame the badge's hold time runs out)."""
    a = StoreAnalytics(make_config(extra="analytics: {state_interval_s: 60}"))
    a.set_lane_state("lane-1", "open", T0)
    a.set_lane_state("lane-2", "open", T0)
    walkers = [stay(k, (0.05 + 0.08 * k, 0.3), 5.0, 20.0) for k in range(3)]
    flips: list[tuple[float, str]] = []

    def check(t: float, msgs: list[Message]) -> None:
        for m in msgs:
            if TOPICS.of(m) == TOPICS.store_state():
                flips.append((t, str(m.payload["recommended_lane"])))

    run_scene(a, walkers, 20.0, on_frame=check, finish=False)
    # at T0 both lanes had no frame yet (stale: no badge); the first frame gives lane-1 the badge
    # (tie: config order); lane 1 is worse by more than margin_s from 6 s (first customer
    # confirmed in the queue), so lane-2 takes it when hold_s (10 s) ran out, at 16 s, and
    # nothing after within the 60 s interval
    hold_s = RecommendationConfig().hold_s
    assert [f[1] for f in flips] == ["lane-1", "lane-2"]
    assert flips[0][0] == pytest.approx(0.0, abs=0.25)
    assert flips[1][0] == pytest.approx(6.0 + hold_s, abs=0.25)


@pytest.mark.parametrize(
    ("rule", "people", "expect_raise_at", "expect_clear_at"),
    [
        # 5 in the queue from t=0 to t=100; queue > 4 for 60 s → raised at ~61 s (smoothed
        # queue crosses 4 a few seconds after the people arrive), cleared for_s after it drops
        ("{id: busy, metric: queue_length, above: 4, for_s: 60}", 5, 65.0, 165.0),
        ("{id: wait, metric: predicted_wait_s, above: 300, for_s: 60}", 6, 61.0, 162.0),
        ("{id: wait, metric: predicted_wait_s, above: 300, for_s: 0}", 6, 1.0, 102.0),
        ("{id: wait, metric: predicted_wait_s, above: 300, for_s: 60}", 5, None, None),  # 300 is not above
    ],
)
def test_alert_raise_and_clear(rule: str, people: int, expect_raise_at: float | None,
                               expect_clear_at: float | None) -> None:
    a = StoreAnalytics(make_config(extra=f"analytics: {{alerts: [{rule}]}}", staff=False))
    walkers = [stay(k, (0.05 + 0.06 * k, 0.3), 0.0, 100.0) for k in range(people)]
    msgs = run_scene(a, walkers, 200.0, finish=False)
    alerts = events(msgs, "alert")
    if expect_raise_at is None:
        assert alerts == []
        return
    assert [e["state"] for e in alerts if e["lane_id"] == "lane-1"] == ["raised", "cleared"]
    raised, cleared = (e for e in alerts if e["lane_id"] == "lane-1")
    assert float(raised["timestamp_s"]) - T0 == pytest.approx(expect_raise_at, abs=5.0)
    assert float(cleared["timestamp_s"]) - T0 == pytest.approx(expect_clear_at, abs=5.0)
    assert raised["action"] == "open_lane" and raised["alert_id"].endswith(":lane-1")
    # the store state listed the alert while it was active and not after
    store_states = [m.payload for m in msgs if TOPICS.of(m) == TOPICS.store_state()]
    assert any(raised["alert_id"] in s["active_alerts"] for s in store_states)
    assert store_states[-1]["active_alerts"] == []


def test_alert_rule_on_unknown_lane_is_refused() -> None:
    # since issue 12 the config itself refuses it (validate-config, with its line)
    with pytest.raises((UserFacingError, ConfigError), match="lane-7"):
        StoreAnalytics(make_config(extra="analytics: {alerts: [{id: x, lane: lane-7, metric: queue_length, above: 1}]}"))


# ---------------------------------------------------------------------------------------------
# dwell


def test_dwell_visits_and_stats() -> None:
    dwell = [4.0, 8.0, 12.0, 20.0, 30.0]
    walkers = []
    t = 1.0
    for k, d in enumerate(dwell):
        walkers.append(Walker(200 + k, [(t, *OUTSIDE), (t + 0.5, *TABLE), (t + 0.5 + d, *TABLE), (t + 1.0 + d, *OUTSIDE)]))
        t += d + 3.0
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, walkers, t + 5.0)
    visits = sorted(events(msgs, "visit"), key=lambda e: float(e["enter_s"]))
    assert len(visits) == len(dwell)
    for v, d in zip(visits, dwell, strict=True):
        # the path crosses the zone edge between the waypoints: within 0.6 s
        assert float(v["dwell_s"]) == pytest.approx(d + 0.25, abs=0.35)
        assert v["stop"] is (float(v["dwell_s"]) >= 10.0)
        assert v["closed_by"] in ("exit", "track_end")
    z = last_state(msgs, TOPICS.zone_state("table"))
    got = sorted(float(v["dwell_s"]) for v in visits)
    assert z["dwell_median_s"] == pytest.approx(float(np.median(got)), abs=0.05)
    assert z["dwell_p90_s"] == pytest.approx(float(np.percentile(got, 90)), abs=0.05)
    assert z["visits_last_hour"] == 5 and z["stops_last_hour"] == 3
    assert z["occupancy"] == 0


def test_occlusion_does_not_split_a_visit_and_track_end_closes_at_last_seen() -> None:
    w = Walker(1, [(0.0, *TABLE), (30.0, *TABLE)], hidden=[(10.0, 10.9)])  # shorter than LOST_S
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, [w], 40.0)
    (v,) = events(msgs, "visit")
    assert float(v["enter_s"]) == pytest.approx(T0)
    assert float(v["exit_s"]) == pytest.approx(T0 + 30.0)  # last seen, not end of grace or track end
    assert v["closed_by"] in ("exit", "track_end")


def test_staff_visits_are_not_customer_dwell() -> None:
    a = StoreAnalytics(make_config())
    staff = staff_member(77, 0.0, [(4.0, *TABLE), (40.0, *TABLE), (41.0, *OUTSIDE)])
    msgs = run_scene(a, [staff], 45.0)
    assert events(msgs, "visit") == []
    z = last_state(msgs, TOPICS.zone_state("table"))
    assert z["visits_last_hour"] == 0
    mid = [m.payload for m in msgs if TOPICS.of(m) == TOPICS.zone_state("table") and m.payload["staff_present"]]
    assert mid and all(p["occupancy"] == 0 for p in mid)


def test_finish_closes_open_visits() -> None:
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, [stay(3, TABLE, 2.0, 50.0)], 20.0)
    (v,) = events(msgs, "visit")
    assert v["closed_by"] == "end_of_source"
    assert float(v["dwell_s"]) == pytest.approx(18.0, abs=0.01)


# ---------------------------------------------------------------------------------------------
# staff response


@pytest.mark.parametrize(
    ("name", "staff_arrives_at", "expected_outcome", "expected_latency"),
    [
        ("greeted after 4 s", 4.0, "greeted", 4.0),
        ("greeted at once", 0.0, "greeted", 0.0),
        ("never comes", None, "missed", None),
        ("comes too late", 14.0, "missed", None),
    ],
)
def test_greeting(name: str, staff_arrives_at: float | None, expected_outcome: str,
                  expected_latency: float | None) -> None:
    """Customer walks in from the image border, is in the entrance at t=10 and stays 20 s; a staff
    member walks up."""
    walkers = [Walker(1, [(9.9, 0.8, 0.97), (10.0, *ENTRANCE), (30.0, *ENTRANCE)])]
    if staff_arrives_at is not None:
        arrive = 10.0 + staff_arrives_at
        walkers.append(staff_member(90, 0.0, [(3.0, 0.95, 0.95), (arrive - 0.1, 0.95, 0.95),
                                              (arrive, 0.82, 0.75), (40.0, 0.82, 0.75)]))
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, walkers, 45.0)
    greetings = events(msgs, "greeting")
    assert len(greetings) == 1, name  # one event per customer, never one for the staff member
    g = greetings[0]
    assert g["track_id"] == 1 and g["outcome"] == expected_outcome
    assert g["distance_method"] == "image_approx"
    if expected_latency is None:
        assert g["latency_s"] is None and g["within_sla"] is False
    else:
        assert float(g["latency_s"]) == pytest.approx(expected_latency, abs=0.11)
        assert g["within_sla"] is True
    z = last_state(msgs, TOPICS.zone_state("entrance"))
    assert z["response_compliance_pct"] == (100.0 if expected_outcome == "greeted" else 0.0)


@pytest.mark.parametrize(
    ("in_store_s", "max_age_s", "entering"),
    [
        (60.0, None, False),  # a minute in the store, crossing the entrance on the way out
        (5.0, None, True),  # appeared 5 s before stepping in (the default allows 10 s)
        (15.0, None, False),
        (15.0, 30.0, True),  # a wide shop window: the store allows 30 s of approach
    ],
)
def test_only_young_tracks_are_entering(in_store_s: float, max_age_s: float | None, entering: bool) -> None:
    """A track seen for ``in_store_s`` elsewhere steps into the entrance zone and stays 10 s."""
    zones = ZONES_CAM1
    if max_age_s is not None:
        zones = zones.replace("{id: entrance, kind: entrance,", f"{{id: entrance, kind: entrance, entering_max_track_age_s: {max_age_s},")
    w = Walker(4, [(0.0, *TABLE), (in_store_s, *TABLE), (in_store_s + 1.0, *ENTRANCE), (in_store_s + 10.0, *ENTRANCE)])
    a = StoreAnalytics(make_config(zones=zones))
    msgs = run_scene(a, [w], in_store_s + 15.0)
    assert len(events(msgs, "greeting")) == int(entering)
    assert len(events(msgs, "entry")) == int(entering)


def test_staff_to_staff_never_counts() -> None:
    """Two staff members enter together and stand side by side in the entrance and at the table."""
    a = StoreAnalytics(make_config())
    s1 = staff_member(91, 0.0, [(3.0, *ENTRANCE), (20.0, *ENTRANCE), (21.0, *TABLE), (60.0, *TABLE)])
    s2 = staff_member(92, 0.0, [(3.0, 0.81, 0.75), (20.0, 0.81, 0.75), (21.0, 0.76, 0.25), (60.0, 0.76, 0.25)])
    msgs = run_scene(a, [s1, s2], 65.0)
    assert events(msgs, "greeting") == [] and events(msgs, "assist") == []
    assert a.per_track_state_sizes()["responses"] == 0


def test_customer_later_identified_as_staff_gets_no_event() -> None:
    """Appears in the entrance (clock starts), then walks to the backroom and is identified as staff."""
    w = Walker(5, [(0.0, *ENTRANCE), (3.0, *ENTRANCE), (3.5, *BACKROOM), (12.0, *BACKROOM)])
    a = StoreAnalytics(make_config())
    assert events(run_scene(a, [w], 20.0), "greeting") == []


@pytest.mark.parametrize(("staff_after_stop_s", "outcome"), [(5.0, "greeted"), (None, "missed")])
def test_assist_after_a_stop(staff_after_stop_s: float | None, outcome: str) -> None:
    """Customer stands at the table from t=0 to t=60; the stop starts at 10 s; SLA 30 s."""
    walkers = [stay(1, TABLE, 0.0, 60.0)]
    if staff_after_stop_s is not None:
        t = 10.0 + staff_after_stop_s
        walkers.append(staff_member(90, 0.0, [(3.0, 0.95, 0.5), (t - 0.1, 0.95, 0.5), (t, 0.77, 0.26), (50.0, 0.77, 0.26)]))
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, walkers, 70.0)
    (e,) = events(msgs, "assist")
    assert e["outcome"] == outcome and float(e["started_s"]) == pytest.approx(T0 + 10.0)
    if staff_after_stop_s is not None:
        assert float(e["latency_s"]) == pytest.approx(staff_after_stop_s, abs=0.11)
    else:
        assert float(e["timestamp_s"]) - T0 == pytest.approx(40.1, abs=0.11)  # SLA passed
        assert e["customer_left"] is False


def test_short_visit_is_not_a_stop_and_needs_no_assist() -> None:
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, [stay(1, TABLE, 0.0, 8.0)], 15.0)
    assert events(msgs, "assist") == []
    (v,) = events(msgs, "visit")
    assert v["stop"] is False


def test_greeting_in_floor_metres_with_calibration() -> None:
    """Calibrated camera: 1 px = 1 cm on the floor; radius 1.5 m. Staff 1.2 m away greets, 2 m does not."""
    cal = """    calibration:
      image_points_px: [[0, 0], [1000, 0], [1000, 1000], [0, 1000]]
      floor_points_m: [[0, 0], [10, 0], [10, 10], [0, 10]]
"""
    zones = """
      - {id: entrance, kind: entrance, greet_radius_m: 1.5, polygon: [[0.7, 0.6], [0.9, 0.6], [0.9, 0.9], [0.7, 0.9]]}
      - {id: backroom, kind: staff_only, polygon: [[0.9, 0.1], [1.0, 0.1], [1.0, 0.3], [0.9, 0.3]]}
"""
    for dx, outcome in ((0.12, "greeted"), (0.2, "missed")):
        cfg = make_config(zones=zones + cal)
        a = StoreAnalytics(cfg)
        staff = staff_member(90, 0.0, [(3.0, 0.8 - dx, 0.75), (40.0, 0.8 - dx, 0.75)])
        customer = Walker(1, [(4.9, 0.8, 0.97), (5.0, 0.8, 0.75), (30.0, 0.8, 0.75)])
        msgs = run_scene(a, [customer, staff], 40.0)
        (g,) = events(msgs, "greeting")
        assert g["outcome"] == outcome and g["distance_method"] == "floor_m"
        if outcome == "greeted":
            assert float(g["distance_m"]) == pytest.approx(100 * dx * 0.1 * 10 / 10, abs=0.01)


# ---------------------------------------------------------------------------------------------
# messages, ids, memory


def test_state_rate_limit_and_event_ids_are_deterministic() -> None:
    rng = np.random.default_rng(3)
    walkers = []
    for k in range(30):
        t = float(rng.uniform(0, 100))
        target = [QUEUE1, QUEUE2, TABLE, ENTRANCE, TILL1][k % 5]
        walkers.append(Walker(300 + k, [(t, *OUTSIDE), (t + 1, *target), (t + 1 + float(rng.uniform(2, 40)), *target),
                                        (t + 45, *OUTSIDE)]))
    runs = []
    for _ in range(2):
        a = StoreAnalytics(make_config())
        runs.append(run_scene(a, walkers, 160.0))
    ids = [[m.payload["event_id"] for m in msgs if "/events/" in TOPICS.of(m)] for msgs in runs]
    assert ids[0] == ids[1] and len(ids[0]) > 20
    assert len(set(ids[0])) == len(ids[0])
    assert json.dumps([m.payload for m in runs[0]]) == json.dumps([m.payload for m in runs[1]])
    # at most one state per entity per state_interval_s (1 s) unless a significant change
    by_topic: dict[str, list[float]] = {}
    for m in runs[0][:-20]:
        if m.is_state and "/zone/" in TOPICS.of(m):
            by_topic.setdefault(TOPICS.of(m), []).append(float(m.payload["timestamp_s"]))
    for topic, times in by_topic.items():
        gaps = np.diff(times)
        assert (gaps >= 0.999).mean() > 0.95, topic


def test_payloads_are_json_and_carry_schema_store_and_time() -> None:
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, [stay(1, QUEUE1, 0.0, 5.0), stay(2, TABLE, 0.0, 15.0)], 20.0)
    for m in msgs:
        assert TOPICS.of(m).startswith("storesense/v1/test-store/")
        p = json.loads(json.dumps(m.payload))
        assert p["schema"].startswith("storesense.") and p["store_id"] == "test-store"
        assert isinstance(p["timestamp_s"], float)
        assert TOPICS.route(m).qos == 1
        if not m.is_state and "/events/" in TOPICS.of(m):
            assert TOPICS.of(m) == TOPICS.event(p["type"]) and p["schema"] == f"storesense.event.{p['type']}/1"


def test_eviction_keeps_per_track_state_flat() -> None:
    """1200 customers and 30 staff come and go over ~1.7 hours; afterwards nothing per track is left,
    and at no time does any container hold more than the people in view."""
    rng = np.random.default_rng(11)
    walkers: list[Walker] = []
    targets = [QUEUE1, QUEUE2, TILL1, TILL2, TABLE, ENTRANCE]
    for k in range(1200):
        t = 2.0 + k * 5.0 + float(rng.uniform(0, 3))
        tgt = targets[k % len(targets)]
        stay_s = float(rng.uniform(1, 25))
        walkers.append(Walker(1000 + k, [(t, *ENTRANCE), (t + 1, *tgt), (t + 1 + stay_s, *tgt), (t + 2 + stay_s, *OUTSIDE)]))
    for k in range(30):
        t = 5.0 + k * 200.0
        walkers.append(staff_member(5000 + k, t, [(t + 4, *TILL1), (t + 60, *TABLE), (t + 61, *OUTSIDE)]))
    a = StoreAnalytics(make_config())
    peak: dict[str, int] = {}

    def check(t: float, msgs: list[Message]) -> None:
        if int(t * 2) % 50 == 0:
            for k, v in a.per_track_state_sizes().items():
                peak[k] = max(peak.get(k, 0), v)

    # 1 fps is enough to see every visit start and end (each lasts >= 4 s); 2 fps only doubled the run time
    run_scene(a, walkers, 6_060.0, fps=1.0, on_frame=check, finish=False)
    sizes = a.per_track_state_sizes()
    assert all(v == 0 for v in sizes.values()), sizes
    assert max(peak.values()) <= 40, peak


# ---------------------------------------------------------------------------------------------
# id switches and re-acquired tracks (docs/validation.md findings)


@pytest.mark.parametrize(
    ("name", "walkers", "services"),
    [
        ("one customer, no switch",
         [Walker(1, [(0.0, *OUTSIDE), (0.5, *TILL1), (20.0, *TILL1), (20.5, *OUTSIDE)])], 1),
        ("one customer, id switch at the till",
         [Walker(1, [(0.0, *OUTSIDE), (0.5, *TILL1), (10.0, *TILL1)]),
          Walker(2, [(10.1, *TILL1), (20.0, *TILL1), (20.5, *OUTSIDE)])], 1),
        ("one customer, two id switches at the till",
         [Walker(1, [(0.0, *OUTSIDE), (0.5, *TILL1), (6.0, *TILL1)]),
          Walker(2, [(6.1, *TILL1), (12.0, *TILL1)]),
          Walker(3, [(12.1, *TILL1), (20.0, *TILL1), (20.5, *OUTSIDE)])], 1),
        ("two customers one after the other",
         [Walker(1, [(0.0, *OUTSIDE), (0.5, *TILL1), (10.0, *TILL1), (10.5, *OUTSIDE)]),
          Walker(2, [(11.0, *OUTSIDE), (11.5, *TILL1), (20.0, *TILL1), (20.5, *OUTSIDE)])], 2),
    ],
)
def test_id_switch_at_the_till_is_not_a_new_service(name: str, walkers: list[Walker], services: int) -> None:
    a = StoreAnalytics(make_config())
    run_scene(a, walkers, 25.0, finish=False)
    assert a.lane_metrics("lane-1").services_observed == services, name


@pytest.mark.parametrize(
    ("name", "path", "expected_wait_s"),
    [
        # steps into the queue zone 0.5 s before the till: no confirmed queue membership
        ("through the queue zone", [(0.0, 0.35, 0.6), (0.2, 0.35, 0.3), (0.7, *TILL1), (15.0, *TILL1),
                                   (15.5, *OUTSIDE)], 0.3),
        ("straight from outside", [(0.0, *OUTSIDE), (0.5, *TILL1), (15.0, *TILL1), (15.5, *OUTSIDE)], 0.0),
        ("queued first", [(0.0, *QUEUE1), (5.0, *QUEUE1), (5.5, *TILL1), (15.0, *TILL1), (15.5, *OUTSIDE)], 5.4),
    ],
)
def test_every_served_customer_has_one_wait_event(name: str, path: list[tuple[float, float, float]],
                                                   expected_wait_s: float) -> None:
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, [Walker(1, path)], 20.0)
    (e,) = events(msgs, "queue_wait")
    assert e["outcome"] == "served", name
    assert float(e["wait_s"]) == pytest.approx(expected_wait_s, abs=0.11), name
    assert a.lane_metrics("lane-1").measured_wait_recent_s == pytest.approx(expected_wait_s, abs=0.11)


def test_re_acquired_customer_at_the_till_gets_no_second_wait_event() -> None:
    a = StoreAnalytics(make_config())
    walkers = [Walker(1, [(0.0, *QUEUE1), (5.0, *QUEUE1), (5.5, *TILL1), (10.0, *TILL1)]),
               Walker(2, [(10.1, *TILL1), (20.0, *TILL1), (20.5, *OUTSIDE)])]
    msgs = run_scene(a, walkers, 25.0)
    assert [(e["track_id"], e["outcome"]) for e in events(msgs, "queue_wait")] == [(1, "served")]


def _served_later(tid: int, born_s: float, at: tuple[float, float], till_s: float) -> Walker:
    """A track born at ``at`` (an id switch of a waiting customer) that reaches till 1 at ``till_s``."""
    return Walker(tid, [(born_s, *at), (till_s - 0.5, *at), (till_s, *TILL1), (till_s + 8.0, *TILL1),
                        (till_s + 8.5, *OUTSIDE)])


@pytest.mark.parametrize(
    ("name", "walkers", "expected"),
    [
        ("no switch",
         [_served_later(1, 0.0, QUEUE1, 20.0)],
         [(1, "served", 0.0, 19.8)]),
        ("id switch in the queue",
         [stay(1, QUEUE1, 0.0, 10.0), _served_later(2, 10.1, (0.22, 0.3), 20.0)],
         [(2, "served", 0.0, 19.8)]),
        ("lost, re-acquired under a new id 2.5 s later",
         [stay(1, QUEUE1, 0.0, 10.0), _served_later(2, 12.5, (0.25, 0.32), 20.0)],
         [(2, "served", 0.0, 19.8)]),
        ("id switch on the step to the till",
         [Walker(1, [(0.0, 0.33, 0.3), (10.0, 0.33, 0.3)]),
          Walker(2, [(10.1, 0.41, 0.3), (10.4, *TILL1), (18.0, *TILL1), (18.5, *OUTSIDE)])],
         [(2, "served", 0.0, 10.1)]),
        ("new track too far away: a different customer",
         [stay(1, QUEUE1, 0.0, 10.0), _served_later(2, 10.1, (0.35, 0.2), 20.0)],
         [(1, "abandoned", 0.0, 10.0), (2, "served", 10.1, 9.7)]),
        ("new track too late: the lost one left",
         [stay(1, QUEUE1, 0.0, 10.0), _served_later(2, 13.6, (0.22, 0.3), 20.0)],
         [(1, "abandoned", 0.0, 10.0), (2, "served", 13.6, 6.2)]),
    ],
)
def test_id_switch_in_the_queue_keeps_the_join_time(
    name: str, walkers: list[Walker], expected: list[tuple[int, str, float, float]]
) -> None:
    a = StoreAnalytics(make_config())
    msgs = run_scene(a, walkers, 40.0, finish=False)
    got = sorted((int(e["track_id"]), str(e["outcome"]), round(float(e["joined_s"]) - T0, 1), float(e["wait_s"]))
                 for e in events(msgs, "queue_wait"))
    assert [g[:3] for g in got] == [x[:3] for x in expected], name
    for g, x in zip(got, expected, strict=True):
        assert g[3] == pytest.approx(x[3], abs=0.21), (name, g)
    assert a.lane_metrics("lane-1").services_observed == 1
    assert a.per_track_state_sizes()["lane_pending"] == 0


ENTRANCE_AT_BORDER = """
      - {id: entrance, kind: entrance, greet_radius_m: 1.5,
         polygon: [[0.7, 0.6], [0.9, 0.6], [0.9, 1.0], [0.7, 1.0]]}
      - {id: backroom, kind: staff_only, polygon: [[0.9, 0.1], [1.0, 0.1], [1.0, 0.3], [0.9, 0.3]]}
"""


@pytest.mark.parametrize(
    ("name", "zones", "walkers", "greeting_tracks", "entries"),
    [
        ("walks in from the image border", ZONES_CAM1,
         [Walker(1, [(0.0, 0.8, 0.97), (0.3, *ENTRANCE), (20.0, *ENTRANCE), (20.5, *OUTSIDE)])], [1], 1),
        ("appears mid-image with nobody lost nearby: a door in the middle of the picture", ZONES_CAM1,
         [stay(1, ENTRANCE, 0.0, 20.0)], [1], 1),
        ("customer's id switches inside the zone", ZONES_CAM1,
         [Walker(1, [(0.0, 0.8, 0.97), (0.3, *ENTRANCE), (5.0, *ENTRANCE)]), stay(2, ENTRANCE, 5.1, 20.0)], [2], 1),
        ("a 1.5 s flicker in the entrance is not a customer", ZONES_CAM1, [stay(1, ENTRANCE, 3.0, 4.5)], [], 0),
        ("a flicker, with entering_min_seen_s lowered to 1 s, is", ZONES_CAM1.replace(
            "{id: entrance, kind: entrance,", "{id: entrance, kind: entrance, entering_min_seen_s: 1.0,"),
         [stay(1, ENTRANCE, 3.0, 4.5)], [1], 1),
        ("born inside a zone that reaches the border: a door at the edge", ENTRANCE_AT_BORDER,
         [Walker(1, [(0.0, 0.8, 0.97), (0.5, *ENTRANCE), (20.0, *ENTRANCE)])], [1], 1),
        ("staff member's id switches inside the zone", ZONES_CAM1,
         [staff_member(91, 0.0, [(3.0, *ENTRANCE), (8.0, *ENTRANCE)]), stay(92, ENTRANCE, 8.1, 30.0)], [], 0),
    ],
    ids=["walks-in", "door-mid-picture", "customer-switch", "flicker", "flicker-allowed", "door-at-border",
         "staff-switch"],
)
def test_only_people_walking_in_start_a_greeting_clock(
    name: str, zones: str, walkers: list[Walker], greeting_tracks: list[int], entries: int
) -> None:
    a = StoreAnalytics(make_config(zones=zones))
    msgs = run_scene(a, walkers, 40.0)
    assert sorted(int(e["track_id"]) for e in events(msgs, "greeting")) == greeting_tracks, name
    entry = events(msgs, "entry")
    assert len(entry) == entries, name
    for e in entry:
        assert e["zone_id"] == "entrance" and 0.0 <= float(e["track_age_s"]) <= 1.0
        assert float(e["timestamp_s"]) - float(e["entered_s"]) == pytest.approx(1.0, abs=0.11)  # enter_after_s
    ignored = last_state(msgs, TOPICS.zone_state("entrance"))["short_tracks_ignored"]
    assert ignored == (1 if name.endswith("is not a customer") else 0), name
    for g, e in zip(events(msgs, "greeting"), entry, strict=True):  # one clock per person, from their entry
        assert float(g["started_s"]) == pytest.approx(float(e["entered_s"]), abs=1e-3)
    sizes = a.per_track_state_sizes()
    assert sizes["born_inside_entrance"] == 0 and sizes["last_pt"] == 0
    assert sizes["entrance_held"] == 0 and sizes["seen_from"] == 0
