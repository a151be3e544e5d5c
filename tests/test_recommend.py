"""The "Recommended" badge: hysteresis (margin + hold), stable ties, never a stale or closed lane."""

from __future__ import annotations

import random

from zones.recommend import LaneOption, LaneRecommender


def lanes(*waits: float | None, stale: tuple[bool, ...] = (), open_: tuple[bool, ...] = ()) -> list[LaneOption]:
    return [LaneOption(f"lane-{i + 1}", open_[i] if open_ else True, stale[i] if stale else False, w)
            for i, w in enumerate(waits)]


def test_two_empty_lanes_with_jittering_waits_do_not_flip() -> None:
    """The reported case: both lanes at 0 in line, waits jittering 0-8 s, 2 minutes at 1 Hz.
    Without hysteresis (margin 0, hold 0) the badge flips dozens of times."""
    rng = random.Random(1)
    series = [(rng.choice([0.0, 0.0, 3.5, 8.0]), rng.choice([0.0, 0.0, 4.0, 7.5])) for _ in range(120)]
    rec, bare = LaneRecommender(30.0, 10.0), LaneRecommender(0.0, 0.0)
    for t, (a, b) in enumerate(series):
        rec.update(float(t), lanes(a, b))
        bare.update(float(t), lanes(a, b))
    assert rec.changes == 1  # the first pick only
    assert bare.changes > 20


def test_a_faster_lane_takes_the_badge_only_after_margin_and_hold() -> None:
    rec = LaneRecommender(30.0, 10.0)
    assert rec.update(0.0, lanes(60.0, 60.0)) == "lane-1"  # tie: config order
    assert rec.update(1.0, lanes(60.0, 40.0)) == "lane-1"  # better by 20 s < margin
    for t in range(2, 12):
        assert rec.update(float(t), lanes(120.0, 40.0)) == "lane-1", t  # better by 80 s, held < 10 s
    assert rec.update(12.0, lanes(120.0, 40.0)) == "lane-2"  # held 10 s
    # a short dip back does not restart from scratch on the way back: it resets the hold
    assert rec.update(13.0, lanes(30.0, 100.0)) == "lane-2"
    assert rec.update(14.0, lanes(100.0, 100.0)) == "lane-2"
    assert rec.update(15.0, lanes(10.0, 100.0)) == "lane-2"
    assert rec.changes == 2


def test_never_a_stale_or_closed_lane() -> None:
    rec = LaneRecommender(30.0, 10.0)
    assert rec.update(0.0, lanes(10.0, 200.0)) == "lane-1"
    assert rec.update(1.0, lanes(10.0, 200.0, stale=(True, False))) == "lane-2"  # at once, no hold
    assert rec.update(2.0, lanes(10.0, 200.0, stale=(True, False), open_=(True, False))) is None
    assert rec.update(3.0, lanes(None, 5.0)) == "lane-2"  # no estimate: not eligible
    assert rec.update(4.0, lanes(None, None)) is None
