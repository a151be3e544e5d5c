"""Topic scheme: ``{prefix}/{store}/{kind}/{id}/{leaf}``, constant depth.

Constant depth and the entity kind on its own level let a screen subscribe to
``storesense/v1/{store}/lane/+/state`` and an ACL grant ``storesense/v1/{store}/#`` without
parsing payloads. Ids are lowercased and restricted to ``[a-z0-9_-]`` so they can never
inject ``/``, ``+`` or ``#`` into a topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.contract import Message
from mqtt_bridge.config import DEFAULT_PREFIX

__all__ = ["DEFAULT_PREFIX", "Routing", "Topics", "topic_id"]
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def topic_id(value: str) -> str:
    """Normalise an id for use as one topic level; raise ValueError if it cannot be one."""
    norm = value.strip().lower()
    if not _ID_RE.match(norm):
        raise ValueError(
            f"id {value!r} cannot be used in an MQTT topic: use 1-64 characters from a-z, 0-9, '_' and '-'"
        )
    return norm


@dataclass(frozen=True)
class Routing:
    """How one message travels over MQTT (docs/architecture.md, "Messages")."""

    topic: str
    qos: int
    retain: bool


# live state: retained, QoS 1, only the latest matters; events: not retained, QoS 1, via the outbox
_DELIVERY = {"state": (1, True), "event": (1, False)}


@dataclass(frozen=True)
class Topics:
    """Builds every topic of one store. ``prefix`` has no leading or trailing slash."""

    store: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if self.prefix.startswith("/") or self.prefix.endswith("/") or any(c in self.prefix for c in "+#"):
            raise ValueError(f"MQTT prefix {self.prefix!r} must not start/end with '/' or contain '+' or '#'")
        object.__setattr__(self, "store", topic_id(self.store))

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.store}"

    def lane_state(self, lane: str) -> str:
        return f"{self.base}/lane/{topic_id(lane)}/state"

    def lane_set(self, lane: str) -> str:
        return f"{self.base}/lane/{topic_id(lane)}/set"

    def zone_state(self, zone: str) -> str:
        return f"{self.base}/zone/{topic_id(zone)}/state"

    def camera_status(self, camera: str) -> str:
        return f"{self.base}/camera/{topic_id(camera)}/status"

    def camera_heatmap(self, camera: str) -> str:
        """Hourly person-seconds grid of one camera (aggregated, privacy-suppressed)."""
        return f"{self.base}/camera/{topic_id(camera)}/heatmap"

    def event(self, event_type: str) -> str:
        return f"{self.base}/events/{topic_id(event_type)}"

    def availability(self, device: str) -> str:
        return f"{self.base}/edge/{topic_id(device)}/availability"

    def edge_status(self, device: str) -> str:
        """Health of the edge box itself (storage ok/disk_full, drops): ``storesense.edge_status/1``."""
        return f"{self.base}/edge/{topic_id(device)}/status"

    def store_state(self, leaf: str = "state") -> str:
        """Store-wide state, e.g. the recommended lane and alerts: ``.../store/all/{leaf}``."""
        return f"{self.base}/store/all/{topic_id(leaf)}"

    def of(self, message: Message) -> str:
        """The topic of a message: the one place where (kind, entity id) becomes an address."""
        kind, entity = message.kind, message.entity_id
        if kind == "lane_state":
            return self.lane_state(entity)
        if kind == "zone_state":
            return self.zone_state(entity)
        if kind == "store_state":
            return self.store_state()
        if kind == "camera_status":
            return self.camera_status(entity)
        if kind == "heatmap":
            return self.camera_heatmap(entity)
        if kind == "event":
            return self.event(entity)
        raise ValueError(f"no topic for message kind {kind!r}")

    def route(self, message: Message) -> Routing:
        return Routing(self.of(message), *_DELIVERY[message.durability])

    # wildcard subscriptions
    def all_lane_states(self) -> str:
        return f"{self.base}/lane/+/state"

    def all_lane_sets(self) -> str:
        return f"{self.base}/lane/+/set"

    def all_events(self) -> str:
        return f"{self.base}/events/+"

    def everything(self) -> str:
        return f"{self.base}/#"
