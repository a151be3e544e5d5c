"""Zone membership hysteresis on a single track: flicker, occlusion, grace, ended tracks."""

from __future__ import annotations

import numpy as np
import pytest

from zones.geometry import ZoneSet, pairwise_distances
from zones.membership import Hysteresis, Transition, ZoneMembership

FPS = 10.0
DT = 1.0 / FPS


def _run(
    timeline: list[tuple[float, float, str]],
    end_s: float,
    enter_after_s: float = 1.0,
    leave_after_s: float = 2.0,
    ended_at_s: float | None = None,
) -> list[tuple[float, float, bool]]:
    """``timeline``: (from_s, to_s, "in"|"out"|"gone") pieces; returns visits (enter, exit, ended)."""
    m = ZoneMembership({"z": Hysteresis(enter_after_s, leave_after_s)})
    visits: list[tuple[float, float, bool]] = []
    opened: dict[int, float] = {}

    def take(trs: list[Transition]) -> None:
        for tr in trs:
            if tr.kind == "enter":
                opened[tr.track_id] = tr.time_s
            else:
                assert opened.pop(tr.track_id) == tr.entered_s
                visits.append((round(tr.entered_s, 3), round(tr.time_s, 3), tr.ended))

    for i in range(int(round(end_s * FPS))):
        t = round(i * DT, 3)
        state = "gone"
        for a, b, s in timeline:
            if a <= t < b:
                state = s
        ended = (7,) if ended_at_s is not None and abs(t - ended_at_s) < 1e-6 else ()
        if state == "gone" or (ended_at_s is not None and t >= ended_at_s):
            take(m.update(t, [], {"z": []}, ended))
        else:
            take(m.update(t, [7], {"z": [state == "in"]}, ended))
    take(m.close_all(end_s))
    assert m.tracked_count() == 0
    return visits


@pytest.mark.parametrize(
    ("name", "timeline", "kwargs", "expected"),
    [
        ("steady visit", [(1.0, 5.0, "in")], {}, [(1.0, 4.9, False)]),
        ("too short to enter", [(1.0, 1.5, "in")], {}, []),
        ("exactly enter_after_s", [(1.0, 2.1, "in")], {}, [(1.0, 2.0, False)]),
        (
            "boundary flicker does not split",
            [(1.0, 2.0, "in"), (2.0, 2.3, "out"), (2.3, 3.0, "in"), (3.0, 3.1, "out"), (3.1, 6.0, "in")],
            {},
            [(1.0, 5.9, False)],
        ),
        ("short occlusion does not split", [(1.0, 4.0, "in"), (4.0, 5.5, "gone"), (5.5, 8.0, "in")], {},
         [(1.0, 7.9, False)]),
        ("gap longer than grace splits", [(1.0, 4.0, "in"), (4.0, 6.5, "gone"), (6.5, 9.0, "in")], {},
         [(1.0, 3.9, False), (6.5, 8.9, False)]),
        ("walks out: exit at last inside", [(1.0, 4.0, "in"), (4.0, 10.0, "out")], {}, [(1.0, 3.9, False)]),
        ("no grace: exit on first frame outside", [(1.0, 4.0, "in"), (4.0, 4.1, "out"), (4.1, 6.0, "in")],
         {"leave_after_s": 0.0}, [(1.0, 3.9, False), (4.1, 5.9, False)]),
        ("enter at once without hysteresis", [(1.0, 1.2, "in")], {"enter_after_s": 0.0}, [(1.0, 1.1, False)]),
        ("flicker while entering still enters", [(1.0, 1.3, "in"), (1.3, 1.5, "out"), (1.5, 3.0, "in")], {},
         [(1.0, 2.9, False)]),
        ("still inside at the end", [(1.0, 20.0, "in")], {}, [(1.0, 14.9, True)]),
    ],
)
def test_hysteresis(name: str, timeline: list[tuple[float, float, str]], kwargs: dict[str, float],
                    expected: list[tuple[float, float, bool]]) -> None:
    assert _run(timeline, 15.0, **kwargs) == expected, name


@pytest.mark.parametrize("ended_at_s", [4.5, 5.0, 5.5])
def test_ended_track_leaves_at_last_seen_not_after_grace(ended_at_s: float) -> None:
    """Inside until 3.9, hidden after 4.0; the tracker ends it at ``ended_at_s`` (before or
    after the grace would have expired): the visit always ends at 3.9."""
    visits = _run([(1.0, 4.0, "in"), (4.0, 10.0, "gone")], 10.0, leave_after_s=5.0, ended_at_s=ended_at_s)
    assert visits == [(1.0, 3.9, True)]


def test_exit_is_decided_after_grace() -> None:
    m = ZoneMembership({"z": Hysteresis(0.0, 2.0)})
    m.update(0.0, [1], {"z": [True]})
    assert m.members("z") == [1]
    assert m.update(1.0, [1], {"z": [False]}) == []
    assert m.update(2.0, [1], {"z": [False]}) == []  # exactly at the end of grace: still a member
    trs = m.update(2.1, [1], {"z": [False]})
    assert [(t.kind, t.time_s, t.decided_s) for t in trs] == [("exit", 0.0, 2.1)]


def test_many_tracks_many_zones_vectorised() -> None:
    """Membership of hundreds of tracks in a few zones comes out of one call per zone."""
    from zones.config import zone_config

    zs = ZoneSet([
        zone_config(id="left", kind="dwell", polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]),
        zone_config(id="top", kind="queue", polygon=[(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5)]),
    ])
    rng = np.random.default_rng(0)
    pts = rng.uniform(0.01, 0.99, size=(500, 2))
    inside = zs.inside(pts, None)
    assert np.array_equal(inside["left"], pts[:, 0] < 0.5)
    assert np.array_equal(inside["top"], pts[:, 1] < 0.5)


def test_metre_zones_need_floor_points() -> None:
    from zones.config import zone_config

    zs = ZoneSet([zone_config(id="m", kind="dwell", units="m", polygon=[(0.0, 0.0), (2.0, 0.0), (2.0, 2.0)])])
    with pytest.raises(ValueError, match="floor metres"):
        zs.inside(np.zeros((1, 2)), None)
    got = zs.inside(np.zeros((3, 2)), np.array([[1.5, 0.2], [0.2, 1.5], [np.nan, np.nan]]))["m"]
    assert got.tolist() == [True, False, False]


def test_pairwise_distances() -> None:
    d = pairwise_distances([[0, 0], [3, 4]], [[0, 0]])
    assert d.shape == (2, 1) and d[1, 0] == pytest.approx(5.0)
    assert pairwise_distances(np.zeros((0, 2)), [[1, 1]]).shape == (0, 1)
