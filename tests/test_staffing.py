"""Erlang C / M/M/c staffing against known values and closed forms."""

from __future__ import annotations

import math

import pytest

from zones.staffing import (
    HourLoad,
    erlang_b,
    erlang_c,
    mean_wait_s,
    prob_wait_over,
    servers_for_mean_wait,
    servers_for_service_level,
    staffing_by_hour,
)


def erlang_c_direct(c: int, a: float) -> float:
    """Textbook sum formula: an independent oracle for small c."""
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) * c / (c - a)
    return tail / (head + tail)


@pytest.mark.parametrize(
    ("servers", "load_erl", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (1, 0.9, 0.9),
        (2, 1.0, 1 / 3),  # M/M/2: 2 rho^2 / (1 + rho) with rho = 0.5
        (3, 2.0, 4 / 9),
        (5, 4.0, 0.554113),
        (10, 8.0, 0.409180),
        (12, 10.0, 0.449388),
        (20, 15.0, 0.160429),
        (100, 90.0, 0.216940),
        (4, 0.0, 0.0),
        (3, 3.0, 1.0),  # unstable: everyone waits
        (3, 7.5, 1.0),
    ],
)
def test_erlang_c_known_values(servers: int, load_erl: float, expected: float) -> None:
    assert erlang_c(servers, load_erl) == pytest.approx(expected, abs=1e-6)
    if 0 < load_erl < servers and servers <= 20:
        assert erlang_c(servers, load_erl) == pytest.approx(erlang_c_direct(servers, load_erl), rel=1e-9)


@pytest.mark.parametrize(("servers", "load_erl", "expected"), [(1, 1.0, 0.5), (2, 1.0, 0.2), (5, 3.0, 0.110054)])
def test_erlang_b_known_values(servers: int, load_erl: float, expected: float) -> None:
    assert erlang_b(servers, load_erl) == pytest.approx(expected, abs=1e-6)


def test_erlang_c_stays_finite_for_large_systems() -> None:
    # a**c / c! would overflow a float here; the recursion does not
    value = erlang_c(180, 170.0)
    assert 0.0 < value < 1.0


@pytest.mark.parametrize(
    ("servers", "arrivals_per_h", "service_s", "expected_wait_s"),
    [
        (1, 30.0, 60.0, 60.0),  # M/M/1: Wq = rho / (mu - lambda) = 0.5 / (1/120 s)
        (1, 0.0, 60.0, 0.0),
        (2, 60.0, 60.0, (1 / 3) * 60.0 / (2 - 1)),  # C(2, 1) * s / (c - a)
        (1, 60.0, 60.0, math.inf),
    ],
)
def test_mean_wait(servers: int, arrivals_per_h: float, service_s: float, expected_wait_s: float) -> None:
    assert mean_wait_s(servers, arrivals_per_h, service_s) == pytest.approx(expected_wait_s)


def test_wait_tail_probability() -> None:
    # M/M/1, rho 0.5, s = 60 s: P(W > t) = 0.5 * exp(-(1/60 - 1/120) t)
    assert prob_wait_over(1, 30.0, 60.0, 0.0) == pytest.approx(0.5)
    assert prob_wait_over(1, 30.0, 60.0, 120.0) == pytest.approx(0.5 * math.exp(-1.0))


@pytest.mark.parametrize(
    ("arrivals_per_h", "service_s", "target_s", "expected"),
    [
        (0.0, 90.0, 60.0, 0),
        (10.0, 90.0, 60.0, 1),  # light traffic: one till; Wq = 0.25 * 90 / 0.75 = 30 s
        (40.0, 90.0, 60.0, 2),  # a = 1.0: one till unstable; two: Wq = 1/3 * 90 / 1 = 30 s
        (120.0, 90.0, 60.0, 4),  # a = 3.0: three tills saturate, four give 45.8 s
        (120.0, 90.0, 30.0, 5),  # five give 10.6 s
        (120.0, 90.0, 5.0, 6),  # six give 3.0 s
    ],
)
def test_servers_for_mean_wait(arrivals_per_h: float, service_s: float, target_s: float, expected: int) -> None:
    c = servers_for_mean_wait(arrivals_per_h, service_s, target_s)
    assert c == expected
    if c:
        assert mean_wait_s(c, arrivals_per_h, service_s) <= target_s
        if c > 1:
            assert mean_wait_s(c - 1, arrivals_per_h, service_s) > target_s  # and not one more than needed


def test_service_level_for_greeters() -> None:
    # 360 customers/h through the door, 30 s per greeting, 80 % greeted within 10 s
    c = servers_for_service_level(360.0, 30.0, 10.0, 0.8)
    assert 1.0 - prob_wait_over(c, 360.0, 30.0, 10.0) >= 0.8
    assert 1.0 - prob_wait_over(c - 1, 360.0, 30.0, 10.0) < 0.8
    assert c == 5


def test_staffing_by_hour_uses_default_service_time_and_compares_with_actual() -> None:
    hours = [
        HourLoad(0.0, arrivals=0, mean_service_time_s=None, servers_open=1.0),
        HourLoad(3600.0, arrivals=40, mean_service_time_s=90.0, servers_open=1.0),
        HourLoad(7200.0, arrivals=120, mean_service_time_s=None, servers_open=4.0),
    ]
    rows = staffing_by_hour(hours, target_wait_s=60.0, default_service_time_s=90.0)
    assert [r.needed for r in rows] == [0, 2, 4]
    assert [r.gap for r in rows] == [-1.0, 1.0, 0.0]
    assert rows[1].predicted_wait_s is None  # one till for a = 1.0 is unstable
    assert rows[2].predicted_wait_s == pytest.approx(mean_wait_s(4, 120, 90.0))
    assert rows[2].service_time_s == 90.0


@pytest.mark.parametrize("bad", [(-1, 1.0), (1, -0.5)])
def test_bad_input_is_rejected(bad: tuple[int, float]) -> None:
    with pytest.raises(ValueError):
        erlang_c(*bad) if bad[0] >= 1 else erlang_b(*bad)
