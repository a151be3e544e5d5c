"""Queue model of one lane (service rate, predicted wait, band, staleness, open/closed) and
the alert rules, fed directly (no tracks): the formulas of zones/queues.py, table by table."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from edge.payloads import LaneMetrics
from zones.config import AlertRule, QueueModelConfig
from zones.queues import BAND_Z, AlertEngine, LaneQueue

T0 = 1_700_000_000.0


def _lane(**cfg: float) -> LaneQueue:
    # model_construct: the tests may use half-lives beyond the config limit to switch decay off
    return LaneQueue("lane-1", "Lane 1", "cam-1", "q", "t", QueueModelConfig.model_construct(**{**QueueModelConfig().model_dump(), **cfg}))


@pytest.mark.parametrize(
    ("queue_length", "busy", "expected_s"),
    [(0, False, 0.0), (0, True, 30.0), (1, False, 60.0), (1, True, 90.0), (4, True, 270.0), (10, False, 600.0)],
)
def test_predicted_wait_before_any_service_uses_default(queue_length: int, busy: bool, expected_s: float) -> None:
    lane = _lane(default_service_time_s=60.0)
    lane.advance(T0, queue_length, busy, False)
    wait, low, high = lane.predicted_wait()
    assert wait == pytest.approx(expected_s)
    m = lane.metrics(T0)
    assert m.service_rate_per_min is None and m.service_rate_source == "default"
    if expected_s == 0:
        assert (low, high) == (0.0, 0.0)
    else:
        assert low < wait < high
        rel = math.sqrt(1.0 / (queue_length + 0.5 * busy) + 1.0 / 2.0)  # prior: one service
        assert high == pytest.approx(wait * (1 + BAND_Z * rel))
        assert low == pytest.approx(max(0.0, wait * (1 - BAND_Z * rel)))


@pytest.mark.parametrize(
    ("service_time_s", "halflife_s", "frame_s"),
    [(30.0, 300.0, 0.2), (90.0, 300.0, 0.5), (45.0, 60.0, 0.2), (20.0, 7200.0, 1.0)],
)
def test_service_rate_is_the_documented_weighted_ratio(service_time_s: float, halflife_s: float, frame_s: float) -> None:
    """Steady busy lane, one service start every ``service_time_s``: μ = D / B where D counts
    service starts and B busy seconds, both starting with the prior (1 service, S0 seconds) and
    decayed by the half-life; the predicted wait for 3 waiting with one at the till is 3 / μ plus
    the residual of the current service, max(1/μ − elapsed, 0.3/μ)."""
    prior_s = 60.0
    lane = _lane(default_service_time_s=prior_s, service_rate_halflife_s=halflife_s, stale_after_s=600.0)
    n_frames = int(round(1800.0 / frame_s))
    starts: list[float] = []
    next_start = T0 + service_time_s
    lane.advance(T0, 3, True, False)
    for i in range(1, n_frames + 1):
        t = T0 + i * frame_s
        lane.advance(t, 3, True, False)
        if t >= next_start - 1e-9:
            lane.service_start(t)
            starts.append(t)
            next_start += service_time_s
    now = T0 + n_frames * frame_s
    decay = [0.5 ** ((now - T0 - i * frame_s) / halflife_s) for i in range(1, n_frames + 1)]
    prior_decay = 0.5 ** ((now - T0) / halflife_s)
    busy_w = sum(frame_s * d for d in decay) + prior_s * prior_decay
    services_w = sum(0.5 ** ((now - s) / halflife_s) for s in starts) + prior_decay
    mu = services_w / busy_w
    assert lane.service_rate_per_s == pytest.approx(mu, rel=1e-6)
    # the weighted count jumps by one at each service start (a sawtooth that averages out), so the
    # instantaneous estimate is within x/(1-e^-x), x = S·ln2/h, of the true rate
    x = service_time_s * math.log(2) / halflife_s
    assert lane.service_rate_per_s == pytest.approx(1.0 / service_time_s, rel=x / (1 - math.exp(-x)) - 1 + 0.02)
    wait, _, _ = lane.predicted_wait()
    elapsed_s = now - starts[-1]
    assert wait == pytest.approx(3.0 / mu + max(1.0 / mu - elapsed_s, 0.3 / mu), rel=1e-6)
    assert lane.metrics(now).service_rate_per_min == pytest.approx(mu * 60.0, abs=1e-3)


def test_idle_time_does_not_slow_the_rate() -> None:
    """An hour without customers between two busy spells leaves μ as it was (busy-time only)."""
    lane = _lane(default_service_time_s=60.0, service_rate_halflife_s=600.0, stale_after_s=600.0)
    t = T0
    for _ in range(10):
        for _ in range(30):
            lane.advance(t, 1, True, False)
            t += 1.0
        lane.service_start(t)
    lane.advance(t, 0, False, False)  # closes the last busy second
    before = lane.service_rate_per_s
    for _ in range(3600):
        lane.advance(t, 0, False, False)
        t += 1.0
    assert lane.service_rate_per_s == pytest.approx(before, rel=1e-3)
    assert before == pytest.approx(1 / 30.0, rel=0.1)


@pytest.mark.parametrize(
    ("name", "frames", "now_offset_s", "expected"),
    [
        ("fresh", [(0.0, 2, True)], 1.0, None),
        ("camera silent", [(0.0, 2, True)], 10.5, "no_frames"),
        ("silent but not yet", [(0.0, 2, True)], 9.9, None),
        # waiting customers and no service for 3 expected services (3 x 60 s)
        ("no service while waiting", [(i * 1.0, 2, True) for i in range(182)], 181.0, "no_service"),
        ("no service but nobody waiting", [(i * 1.0, 0, True) for i in range(182)], 181.0, None),
        ("just under 3 services", [(i * 1.0, 2, True) for i in range(179)], 178.0, None),
    ],
)
def test_staleness(name: str, frames: list[tuple[float, int, bool]], now_offset_s: float, expected: str | None) -> None:
    lane = _lane(stale_after_s=10.0, default_service_time_s=60.0)
    for off, q, busy in frames:
        lane.advance(T0 + off, q, busy, False)
    assert lane.stale_reason(T0 + now_offset_s) == expected, name
    assert lane.metrics(T0 + now_offset_s).stale is (expected is not None)


def test_service_resets_the_no_service_clock() -> None:
    lane = _lane(stale_after_s=10.0, default_service_time_s=10.0)
    for i in range(25):
        lane.advance(T0 + i, 2, True, False)
    assert lane.stale_reason(T0 + 24) is None  # 24 s < max(3 x 10 s, 10 s)
    for i in range(25, 35):
        lane.advance(T0 + i, 2, True, False)
    assert lane.stale_reason(T0 + 34) == "no_service"
    lane.service_start(T0 + 34)
    assert lane.stale_reason(T0 + 34) is None


@pytest.mark.parametrize(
    ("staff_detection", "staff_at", "now_s", "command", "hold_s", "expected"),
    [
        (True, None, 5.0, "auto", 15.0, (False, "staff")),
        (True, 0.0, 5.0, "auto", 15.0, (True, "staff")),
        (True, 0.0, 14.0, "auto", 15.0, (True, "staff")),  # cashier stepped away: still open
        (True, 0.0, 16.0, "auto", 15.0, (False, "staff")),
        (True, 0.0, 5.0, "auto", 3.0, (False, "staff")),  # a store that wants a shorter hold
        (True, 0.0, 5.0, "closed", 15.0, (False, "command")),
        (True, None, 5.0, "open", 15.0, (True, "command")),
        (False, None, 5.0, "auto", 15.0, (True, "default")),
        (False, None, 5.0, "closed", 15.0, (False, "command")),
    ],
)
def test_open_closed(staff_detection: bool, staff_at: float | None, now_s: float, command: str,
                     hold_s: float, expected: tuple[bool, str]) -> None:
    lane = _lane(lane_close_hold_s=hold_s)
    lane.staff_detection = staff_detection
    if staff_at is not None:
        lane.advance(T0 + staff_at, 0, False, True)
    lane.advance(T0 + now_s, 0, False, False)
    lane.set_command(command)  # type: ignore[arg-type]
    assert lane.is_open() == expected


def test_measured_waits_and_littles_law() -> None:
    """Customers join every 30 s and wait exactly 45 s: recent wait 45, Little's law Lq/λ = 45."""
    lane = _lane(service_rate_halflife_s=1e6, stale_after_s=600.0)
    joins = {k: T0 + 30.0 * k for k in range(20)}
    t = T0
    while t < T0 + 30.0 * 20 + 60:
        for k, j in joins.items():
            if abs(t - j) < 1e-6:
                lane.join(k, t)
            if abs(t - (j + 45.0)) < 1e-6:
                lane.service_start(t)
                assert lane.served(k, t) is not None
        q = sum(1 for j in joins.values() if j <= t < j + 45.0)
        lane.advance(t, q, True, False)
        t = round(t + 0.5, 6)
    little, measured = lane.littles_law()
    assert measured == pytest.approx(45.0)
    assert little == pytest.approx(45.0, rel=0.03)
    assert lane.measured_wait_recent_s() == pytest.approx(45.0)
    assert lane.pending_count() == 0


def test_queue_length_smoothing() -> None:
    lane = _lane(smoothing_s=3.0)
    lane.advance(T0, 0, False, False)
    for i in range(1, 31):
        lane.advance(T0 + i * 0.1, 6, False, False)
    # first-order lag: after one time constant (3 s) 63 % of the step
    assert lane.queue_length_smoothed == pytest.approx(6 * (1 - math.exp(-1.0)), rel=1e-6)
    assert lane.queue_length == 6


# ---------------------------------------------------------------------------------------------
# alerts


def _metrics(q: float, wait: float, open_: bool = True, stale: bool = False) -> LaneMetrics:
    return LaneMetrics(open=open_, open_source="default", command="auto", queue_length=round(q), queue_length_smoothed=q,
                       server_busy=False, predicted_wait_s=wait, predicted_wait_low_s=wait, predicted_wait_high_s=wait,
                       service_rate_per_min=None, service_rate_source="default", services_observed=0,
                       measured_wait_recent_s=None, measured_wait_mean_s=None, littles_law_wait_s=None, stale=stale,
                       stale_reason="no_frames" if stale else None)


@pytest.mark.parametrize(
    ("name", "rule", "series", "expected"),
    [
        ("wait over 300 for 60 s",
         AlertRule(id="long-wait", metric="predicted_wait_s", above=300, for_s=60),
         [(0, 350), (30, 350), (59, 350), (60, 350), (100, 200), (159, 200), (160, 200)],
         [(60, "raised"), (160, "cleared")]),
        ("dip resets the for_s clock",
         AlertRule(id="long-wait", metric="predicted_wait_s", above=300, for_s=60),
         [(0, 350), (50, 200), (51, 350), (100, 350), (111, 350)],
         [(111, "raised")]),
        ("queue > 4 at once",
         AlertRule(id="q", metric="queue_length", above=4),
         [(0, 4), (1, 5), (2, 3)],
         [(1, "raised"), (2, "cleared")]),
        ("equal to the threshold is not above",
         AlertRule(id="q", metric="queue_length", above=4),
         [(0, 4), (1, 4)],
         []),
    ],
)
def test_alert_rules(name: str, rule: AlertRule, series: list[tuple[float, float]],
                     expected: list[tuple[float, str]]) -> None:
    eng = AlertEngine([rule])
    got = []
    for off, value in series:
        m = _metrics(value, value)
        for ch in eng.evaluate(T0 + off, [("lane-1", m)]):
            assert ch.alert_id == f"{rule.id}:lane-1" and ch.lane_id == "lane-1"
            got.append((round(ch.time_s - T0, 3), ch.state))
    assert got == expected, name


def test_stale_lane_never_triggers_a_wait_alert() -> None:
    eng = AlertEngine([AlertRule(id="w", metric="predicted_wait_s", above=10)])
    assert eng.evaluate(T0, [("a", _metrics(0, 999, stale=True))]) == []


def test_open_lanes_busy_is_store_wide() -> None:
    eng = AlertEngine([AlertRule(id="busy", metric="open_lanes_busy", above=3)])
    lanes = [("a", _metrics(5, 0)), ("b", _metrics(2, 0)), ("c", _metrics(9, 0, open_=False))]
    assert eng.evaluate(T0, lanes) == []  # lane b has room
    lanes[1] = ("b", _metrics(4, 0))
    (ch,) = eng.evaluate(T0 + 1, lanes)
    assert (ch.alert_id, ch.lane_id, ch.state, ch.value) == ("busy", None, "raised", 4.0)
    assert [a[0] for a in eng.active()] == ["busy"]


@pytest.mark.parametrize(("hour", "raised"), [(9, False), (11, True), (13, True), (14, False)])
def test_alert_hours_window_in_store_timezone(hour: int, raised: bool) -> None:
    tz = "Asia/Shanghai"
    from zoneinfo import ZoneInfo

    ts = dt.datetime(2024, 5, 1, hour, 30, tzinfo=ZoneInfo(tz)).timestamp()
    eng = AlertEngine([AlertRule(id="peak", metric="queue_length", above=2, hours=(11, 14))], tz)
    changes = eng.evaluate(ts, [("sco", _metrics(3, 0))])
    assert bool(changes) is raised


def test_alert_clears_when_the_window_closes() -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("UTC")
    eng = AlertEngine([AlertRule(id="peak", metric="queue_length", above=2, for_s=600, hours=(11, 14))])
    t1 = dt.datetime(2024, 5, 1, 13, 40, tzinfo=tz).timestamp()
    eng.evaluate(t1, [("sco", _metrics(3, 0))])
    assert [c.state for c in eng.evaluate(t1 + 600, [("sco", _metrics(3, 0))])] == ["raised"]
    assert [c.state for c in eng.evaluate(t1 + 1200, [("sco", _metrics(3, 0))])] == ["cleared"]


@pytest.mark.parametrize(
    ("queue_length", "busy", "elapsed_s", "expected_s"),
    [
        (0, True, 0.0, 60.0),  # service just started: a whole mean service is left
        (0, True, 15.0, 45.0),
        (2, True, 15.0, 165.0),
        (2, True, 42.0, 138.0),  # 1/μ − elapsed = 18 s = 0.3/μ: the floor starts here
        (2, True, 50.0, 138.0),  # floor: 0.3 of a mean service, however long it has run
        (2, True, 600.0, 138.0),
        (2, False, 15.0, 120.0),  # nobody at the till: no residual
    ],
)
def test_residual_service_of_the_customer_at_the_till(queue_length: int, busy: bool, elapsed_s: float,
                                                      expected_s: float) -> None:
    """μ = 1/60 s exactly (no decay, prior and observations agree); one service started
    ``elapsed_s`` ago. W = n/μ + max(1/μ − elapsed, 0.3/μ) if busy, else n/μ."""
    lane = _lane(default_service_time_s=60.0, service_rate_halflife_s=1e12, stale_after_s=1e6)
    start = T0 + 60.0
    lane.advance(T0, 1, True, False)
    lane.advance(start, 1, True, False)
    lane.service_start(start)
    lane.advance(start + elapsed_s, queue_length, busy, False)
    assert lane.service_rate_per_s == pytest.approx(2.0 / (120.0 + elapsed_s), rel=1e-9)
    # pin μ to 1/60 s to read the formula directly
    lane._busy_w_s = 60.0 * lane._services_w
    wait, low, high = lane.predicted_wait()
    assert wait == pytest.approx(expected_s, rel=1e-9)
    assert low <= wait <= high
