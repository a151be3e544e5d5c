"""The one data contract between pipeline stages.

Every stage speaks in these types: sources yield :class:`Frame`, the detector returns
:class:`Detections`, the tracker returns :class:`Tracks`, analytics consume ``Tracks`` and
return :class:`Message`. Analytics never import the detector or the tracker; they only see
this module. Arrays are validated once, at construction, so that a shape or dtype bug shows up
where it is made rather than three stages later.

Coordinates are pixels of the *input video frame* (not of the letterboxed model input),
boxes are ``x1, y1, x2, y2``. Times are seconds on the camera's own clock: for files
``start + frame_index / fps``, for live sources a monotonic clock. Never wall-clock
differences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _as_boxes(xyxy: Any) -> FloatArray:
    arr = np.asarray(xyxy, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as x1,y1,x2,y2; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("boxes contain NaN or infinity")
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise ValueError("boxes must satisfy x2 >= x1 and y2 >= y1")
    return arr


def _as_vector(values: Any, n: int, name: str, dtype: Any) -> Any:
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries to match the boxes; got {arr.shape[0]}")
    return arr


@dataclass(frozen=True)
class Frame:
    """One decoded video frame and where it sits in time.

    ``index`` counts frames of the source (0-based, including frames skipped by the analysis
    fps), so the MOT export can refer to frames of the input video.
    """

    camera_id: str
    index: int
    timestamp_s: float
    image: npt.NDArray[Any]  # HxWx3 uint8 BGR, checked by edge.sources.valid_image

    @property
    def width_px(self) -> int:
        return int(self.image.shape[1])

    @property
    def height_px(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Detections:
    """Detector output for one frame: boxes, confidences and COCO class ids."""

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray

    def __post_init__(self) -> None:
        boxes = _as_boxes(self.xyxy)
        n = boxes.shape[0]
        object.__setattr__(self, "xyxy", boxes)
        object.__setattr__(self, "confidence", _as_vector(self.confidence, n, "confidence", np.float32))
        object.__setattr__(self, "class_id", _as_vector(self.class_id, n, "class_id", np.int64))

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def filter(self, mask: npt.NDArray[np.bool_]) -> Detections:
        return Detections(self.xyxy[mask], self.confidence[mask], self.class_id[mask])


@dataclass(frozen=True)
class Track:
    """One tracked person in one frame (a row of :class:`Tracks`)."""

    track_id: int
    xyxy: tuple[float, float, float, float]
    confidence: float

    @property
    def foot_px(self) -> tuple[float, float]:
        """Bottom-centre of the box: where the person touches the floor.

        The box centre is the wrong anchor for floor zones: a person standing just inside a
        queue zone has their box centre outside it when the zone is drawn on the floor.
        """
        x1, _, x2, y2 = self.xyxy
        return ((x1 + x2) / 2.0, y2)


@dataclass(frozen=True)
class Tracks:
    """Confirmed tracks of one camera at one instant.

    ``frame_index`` and ``timestamp_s`` come from the :class:`Frame` the tracks were computed
    on; ``frame_size_px`` is (width, height) of that frame so consumers can normalise
    without access to the image.
    """

    camera_id: str
    frame_index: int
    timestamp_s: float
    frame_size_px: tuple[int, int]
    xyxy: FloatArray
    confidence: FloatArray
    track_id: IntArray
    ended_ids: tuple[int, ...] = field(default=())
    # confirmed tracks not seen in this frame that the tracker believes are still there, hidden
    # (lost while standing still: behind a shelf, a till, another shopper). They have no row (no
    # box was observed) but keep their zone membership; see docs/tracker.md "Occlusion hold".
    held_ids: tuple[int, ...] = field(default=())
    # per-track attribute set by the staff-identification stage (edge/staff.py); False = customer
    # or undecided. Stages after the tracker add columns; they never change the rows.
    staff: BoolArray | None = None

    def __post_init__(self) -> None:
        boxes = _as_boxes(self.xyxy)
        n = boxes.shape[0]
        object.__setattr__(self, "xyxy", boxes)
        object.__setattr__(self, "confidence", _as_vector(self.confidence, n, "confidence", np.float32))
        staff = np.zeros(n, dtype=bool) if self.staff is None else _as_vector(self.staff, n, "staff", np.bool_)
        object.__setattr__(self, "staff", staff)
        ids = _as_vector(self.track_id, n, "track_id", np.int64)
        if len(set(ids.tolist())) != n:
            raise ValueError("track ids must be unique within a frame")
        object.__setattr__(self, "track_id", ids)
        if not np.isfinite(self.timestamp_s):
            raise ValueError("timestamp_s must be finite")
        object.__setattr__(self, "ended_ids", tuple(int(i) for i in self.ended_ids))
        object.__setattr__(self, "held_ids", tuple(int(i) for i in self.held_ids))
        if set(self.held_ids) & set(ids.tolist()):
            raise ValueError("a held track has no row in the frame it is held in")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def with_staff(self, staff: npt.ArrayLike) -> Tracks:
        """The same tracks with the ``staff`` column replaced."""
        return dataclasses.replace(self, staff=np.asarray(staff, dtype=bool))

    @property
    def staff_flags(self) -> BoolArray:
        assert self.staff is not None  # set in __post_init__
        return self.staff

    def __iter__(self) -> Iterator[Track]:
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.xyxy[i])
            yield Track(int(self.track_id[i]), (x1, y1, x2, y2), float(self.confidence[i]))

    @property
    def foot_px(self) -> FloatArray:
        """(N, 2) bottom-centre points of every box, see :meth:`Track.foot_px`."""
        if len(self) == 0:
            return np.zeros((0, 2), np.float32)
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2.0, self.xyxy[:, 3]], axis=1)

    @property
    def foot_norm(self) -> FloatArray:
        """Bottom-centre points in normalised image coordinates (0..1)."""
        w, h = self.frame_size_px
        return (self.foot_px / np.array([w, h], dtype=np.float32)).astype(np.float32)

    @classmethod
    def empty(
        cls, camera_id: str, frame_index: int, timestamp_s: float, frame_size_px: tuple[int, int]
    ) -> Tracks:
        return cls(
            camera_id,
            frame_index,
            timestamp_s,
            frame_size_px,
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )


MessageKind = Literal["lane_state", "zone_state", "store_state", "camera_status", "heatmap", "event"]
"""What a message is about. The transport maps (kind, entity id) to an address, e.g.
``mqtt_bridge.topics.Topics.of``; producers never know topics."""

Durability = Literal["state", "event"]
"""``state``: live state, only the latest per (kind, entity) matters (MQTT: retained, re-sent
after a reconnect). ``event``: every one counts, in order, never lost (MQTT: QoS 1 through the
durable outbox)."""


@dataclass(frozen=True)
class Message:
    """One metric or event, exactly as it is published over MQTT and written to --events.

    ``entity_id`` names the lane, zone or camera; ``"all"`` for the store; the event type for
    ``kind="event"``. ``payload`` is JSON-able and must never carry image data, faces or
    identities: only aggregated numbers and anonymous, per-camera track ids that are forgotten
    when the track ends.
    """

    kind: MessageKind
    entity_id: str
    payload: dict[str, Any]
    durability: Durability

    @property
    def is_state(self) -> bool:
        return self.durability == "state"
