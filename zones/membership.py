"""Zone membership with hysteresis: who is in which zone, and since when.

Raw point-in-polygon flickers: a foot point on a zone edge jumps in and out, a person is hidden
behind a shelf for a second, the detector misses a frame. Counting those raw transitions would
split one visit into many and make queue lengths jitter. So a track becomes a *member* only
after ``enter_after_s`` of (almost) continuous presence, and stops being one only after
``leave_after_s`` without being seen inside (a grace period that bridges occlusions and flicker).

The reported times are the true ones, not the delayed decisions: a visit starts when the track
was first seen inside (start of the candidacy) and ends when it was last seen inside. A track
that ends (``Tracks.ended_ids``) leaves at once, at its last-inside time, instead of waiting for
the grace period. All per-track state is dropped when the track leaves or ends, so memory does
not grow over a 24/7 run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

TransitionKind = Literal["enter", "exit"]


@dataclass(frozen=True)
class Transition:
    """A confirmed membership change. ``time_s`` is when it really happened (see module doc);
    ``decided_s`` is the frame time at which hysteresis confirmed it."""

    kind: TransitionKind
    zone_id: str
    track_id: int
    time_s: float
    decided_s: float
    entered_s: float  # start of the membership (equals time_s for enters)
    ended: bool = False  # exit caused by the track ending, not by walking out


@dataclass
class _State:
    first_inside_s: float
    last_inside_s: float
    member: bool = False


@dataclass(frozen=True)
class Hysteresis:
    enter_after_s: float
    leave_after_s: float


class ZoneMembership:
    """Membership of every track in every zone of one camera."""

    def __init__(self, rules: Mapping[str, Hysteresis]) -> None:
        self.rules = dict(rules)
        # zone id → track id → state (candidates and members)
        self._state: dict[str, dict[int, _State]] = {z: {} for z in self.rules}
        # track id → last frame it was held through an occlusion (dropped when seen again or ended)
        self._held_until_s: dict[int, float] = {}

    def update(
        self,
        timestamp_s: float,
        track_ids: npt.ArrayLike,
        inside: Mapping[str, npt.ArrayLike],
        ended_ids: Iterable[int] = (),
        held_ids: Iterable[int] = (),
    ) -> list[Transition]:
        """Advance to ``timestamp_s`` with this frame's inside masks (aligned with ``track_ids``).

        Tracks absent from this frame are treated as not seen inside: their grace runs, except for
        ``held_ids``, tracks the tracker holds through an occlusion (lost while standing still):
        they stay where they are, candidates or members, without their last-inside time moving, so
        a visit that ends while hidden ends when the person was last seen; when the held track is
        seen again, the hidden time counts as inside (up to the frame before it reappeared).
        Returns the transitions confirmed by this frame, exits before enters.
        """
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        ended = set(int(i) for i in ended_ids)
        held = set(int(i) for i in held_ids) - ended
        # a held track seen again was there, hidden, until the previous frame: bridge the gap in every
        # zone it was in (it may reappear just outside, walking away)
        for tid in set(ids.tolist()) & set(self._held_until_s):
            bridged_s = self._held_until_s.pop(tid)
            for states in self._state.values():
                st = states.get(tid)
                if st is not None:
                    st.last_inside_s = max(st.last_inside_s, bridged_s)
        for tid in ended:
            self._held_until_s.pop(tid, None)
        for tid in held:
            self._held_until_s[tid] = timestamp_s
        exits: list[Transition] = []
        enters: list[Transition] = []
        for zone_id, rule in self.rules.items():
            states = self._state[zone_id]
            mask = np.asarray(inside.get(zone_id, np.zeros(ids.shape[0], dtype=bool)), dtype=bool)
            if mask.shape[0] != ids.shape[0]:
                raise ValueError(f"inside mask of zone {zone_id!r} has {mask.shape[0]} entries for {ids.shape[0]} tracks")
            for tid in ids[mask].tolist():
                if tid in ended:
                    continue
                st = states.get(tid)
                if st is None:
                    states[tid] = st = _State(timestamp_s, timestamp_s)
                else:
                    st.last_inside_s = max(st.last_inside_s, timestamp_s)
                if not st.member and timestamp_s - st.first_inside_s >= rule.enter_after_s - 1e-9:
                    st.member = True
                    enters.append(Transition("enter", zone_id, tid, st.first_inside_s, timestamp_s, st.first_inside_s))
            # grace expiry and ended tracks
            expired = [t for t, st in states.items()
                       if t in ended or (t not in held and timestamp_s - st.last_inside_s > rule.leave_after_s)]
            for tid in expired:
                st = states.pop(tid)
                if st.member:
                    exits.append(
                        Transition("exit", zone_id, tid, st.last_inside_s, timestamp_s, st.first_inside_s, tid in ended)
                    )
        return exits + enters

    def members(self, zone_id: str) -> list[int]:
        return [t for t, st in self._state[zone_id].items() if st.member]

    def present(self, zone_id: str) -> list[int]:
        """Members and candidates of a zone."""
        return list(self._state[zone_id])

    def is_member(self, zone_id: str, track_id: int) -> bool:
        st = self._state[zone_id].get(track_id)
        return st is not None and st.member

    def is_present(self, zone_id: str, track_id: int) -> bool:
        """Member or candidate: the track is (or was just) inside this zone."""
        return track_id in self._state[zone_id]

    def first_inside_s(self, zone_id: str, track_id: int) -> float | None:
        """Start of the current candidacy or membership."""
        st = self._state[zone_id].get(track_id)
        return st.first_inside_s if st is not None else None

    def entered_s(self, zone_id: str, track_id: int) -> float | None:
        st = self._state[zone_id].get(track_id)
        return st.first_inside_s if st is not None and st.member else None

    def last_inside_s(self, zone_id: str, track_id: int) -> float | None:
        st = self._state[zone_id].get(track_id)
        return st.last_inside_s if st is not None else None

    def close_all(self, timestamp_s: float) -> list[Transition]:
        """End of the source: every member leaves at its last-inside time."""
        out = []
        for zone_id, states in self._state.items():
            for tid, st in states.items():
                if st.member:
                    out.append(Transition("exit", zone_id, tid, st.last_inside_s, timestamp_s, st.first_inside_s, True))
            states.clear()
        self._held_until_s.clear()
        return out

    def tracked_count(self) -> int:
        """Number of (zone, track) states held; for memory-flatness checks."""
        return sum(len(s) for s in self._state.values()) + len(self._held_until_s)
