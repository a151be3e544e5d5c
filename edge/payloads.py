"""Typed message payloads: one class per JSON schema in mqtt_bridge/schemas/.

Producers build these and send ``payload.to_dict()``; consumers parse with ``Cls.from_dict``.
They live in the foundation so that every layer (analytics, transports, screens, ops review,
the app) shares one definition of each schema without importing upwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Payload")

@dataclass(frozen=True)
class Payload:
    """Base of every payload: the schema name and version go into the ``schema`` field."""

    SCHEMA: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Parse a received payload; unknown keys (newer producers) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class CameraStatus(Payload):
    """``{base}/camera/{camera}/status``: the health of one camera worker."""

    SCHEMA: ClassVar[str] = "storesense.camera_status/1"

    store_id: str
    camera_id: str
    timestamp_s: float
    state: str
    fps_measured: float
    analysis_fps: float
    frames_total: int
    frames_dropped: int
    frames_corrupt: int = 0
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""
    reason: str = ""
