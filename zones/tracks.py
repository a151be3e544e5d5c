"""One record per track: everything the analytics of one camera remember about a person.

Every per-track fact that is not owned by a zone-keyed component (zone membership, a lane's
pending joins, a response clock) lives in one :class:`TrackRecord`. A track that ends is
dropped with one statement (:meth:`TrackBook.drop`), so memory stays flat on a 24/7 box and no
dict can be forgotten by a new feature.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.contract import Message
    from zones.response import ResponseOutcome

HeldEvents = list[tuple["ResponseOutcome | None", "Message"]]


@dataclass
class HeldEntrance:
    """Entrance events (entry, greeting outcome) of a track not yet seen for the zone's
    ``entering_min_seen_s``: released once it has been seen that long, dropped if it ends first
    (a flicker is not a customer). ``seq`` keeps the release order of the order of holding."""

    threshold_s: float
    items: HeldEvents
    seq: int


@dataclass
class TrackRecord:
    first_seen_s: float
    last_seen_s: float
    # first sighting of a re-acquired person under their earlier id (for entering_min_seen_s)
    seen_from_s: float | None = None
    # last anchor point (floor m, or image widths without calibration)
    last_pt: tuple[float, float] | None = None
    # staff: the staff stage's decision on the last frame the track was in (pixels: uniform,
    # classifier), or marked here after staff_only_zone.min_time_s inside staff-only zones (final)
    staff: bool = False
    staff_marked: bool = False
    # seconds spent inside staff_only zones (staff_only_zone identification); None: never inside
    staff_only_s: float | None = None
    # entrance greeting clock: None not started; False started, membership not confirmed yet;
    # True membership confirmed (entry emitted)
    greeting: bool | None = None
    # born inside an entrance zone next to a just-lost track: re-acquired, not entering
    reacquired: bool = False
    # ... that lost track, whose greeting clock this one takes over (None once handed over)
    reacquired_from: int | None = None
    held: HeldEntrance | None = None
    # dwell zones where the current visit has become a stop
    stopped_in: set[str] = field(default_factory=set)

    def seen_for_s(self) -> float:
        """How long this person has been seen, across re-acquisitions."""
        first = self.seen_from_s if self.seen_from_s is not None else self.first_seen_s
        return self.last_seen_s - first


class TrackBook:
    """The records of one camera's live tracks, in order of first sighting."""

    def __init__(self) -> None:
        self._records: dict[int, TrackRecord] = {}
        self._held_seq = itertools.count()

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, track_id: int) -> TrackRecord | None:
        return self._records.get(track_id)

    def items(self) -> Iterator[tuple[int, TrackRecord]]:
        return iter(list(self._records.items()))

    def ids(self) -> list[int]:
        return list(self._records)

    def see(self, track_id: int, timestamp_s: float) -> bool:
        """Note a sighting; True if the track is new."""
        rec = self._records.get(track_id)
        if rec is None:
            self._records[track_id] = TrackRecord(timestamp_s, timestamp_s)
            return True
        rec.last_seen_s = timestamp_s
        return False

    def is_staff(self, track_id: int) -> bool:
        """Staff by the stage's decision or by a staff-only-zone mark; a forgotten track is not."""
        rec = self._records.get(track_id)
        return rec is not None and (rec.staff or rec.staff_marked)

    def seen_for_s(self, track_id: int) -> float:
        rec = self._records.get(track_id)
        return 0.0 if rec is None else rec.seen_for_s()

    def hold(self, rec: TrackRecord, threshold_s: float, items: HeldEvents) -> None:
        rec.held = HeldEntrance(threshold_s, items, next(self._held_seq))

    def held(self) -> list[tuple[int, TrackRecord]]:
        """Tracks with held entrance events, in the order they were held."""
        found = [(tid, r) for tid, r in self._records.items() if r.held is not None]
        return sorted(found, key=lambda item: item[1].held.seq if item[1].held is not None else 0)

    def drop(self, track_id: int) -> TrackRecord | None:
        """Forget everything about a track (it ended)."""
        return self._records.pop(track_id, None)

    def clear(self) -> None:
        self._records.clear()

    def sizes(self) -> dict[str, int]:
        """Per-track facts held, by kind; for memory-flatness checks."""
        recs = list(self._records.values())
        return {
            "tracks": len(recs),
            "staff_only": sum(r.staff_only_s is not None for r in recs),
            "greeting_started": sum(r.greeting is not None for r in recs),
            "born_inside_entrance": sum(r.reacquired for r in recs),
            "entrance_held": sum(r.held is not None for r in recs),
            "seen_from": sum(r.seen_from_s is not None for r in recs),
            "last_pt": sum(r.last_pt is not None for r in recs),
            "stopped": sum(len(r.stopped_in) for r in recs),
        }
