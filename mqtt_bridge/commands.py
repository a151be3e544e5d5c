"""Lane commands arriving on ``{base}/lane/{lane}/set``: strict parsing, never a crash.

Anyone allowed to publish on the broker can send a command, so the payload is untrusted: it
is size-limited before decoding, must be a JSON object with exactly one key ``state`` whose
value is one of :data:`LANE_STATES`, and must name a lane the store knows. Anything else is
logged at WARNING with the topic and a truncated payload (so an operator can find the sender)
and ignored. Retained commands are ignored too: a retained "open" would be replayed on every
reconnect, long after whoever sent it has forgotten it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mqtt_bridge.topics import Topics, topic_id

log = logging.getLogger("storesense.mqtt.commands")

LANE_STATES = ("open", "closed", "auto")
MAX_COMMAND_BYTES = 256
_LOG_PAYLOAD_CHARS = 80


class CommandError(ValueError):
    """Why a command was refused; the message is the logged reason."""


@dataclass(frozen=True)
class LaneCommand:
    lane_id: str
    state: str


def truncate_payload(payload: bytes, limit: int = _LOG_PAYLOAD_CHARS) -> str:
    """A printable, bounded rendering of an untrusted payload for logs."""
    text = repr(payload[:limit])
    return text + (f"... ({len(payload)} bytes)" if len(payload) > limit else "")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json's default keeps the last of repeated keys: ``{"state":"open","state":"closed"}`` would
    mean whatever the parser happened to keep, so a repeated key is refused instead."""
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise CommandError(f"field {key[:20]!r} appears more than once")
        seen[key] = value
    return seen


def lane_from_set_topic(topics: Topics, topic: str) -> str:
    prefix = f"{topics.base}/lane/"
    if not topic.startswith(prefix) or not topic.endswith("/set"):
        raise CommandError("not a lane command topic")
    lane = topic[len(prefix) : -len("/set")]
    if "/" in lane:
        raise CommandError("not a lane command topic")
    try:
        return topic_id(lane)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def parse_lane_command(
    topics: Topics, topic: str, payload: bytes, known_lanes: Iterable[str] | None = None
) -> LaneCommand:
    """Validate one command; raise :class:`CommandError` with the reason if it is not acceptable."""
    lane = lane_from_set_topic(topics, topic)
    if known_lanes is not None and lane not in {topic_id(x) for x in known_lanes}:
        raise CommandError(f"unknown lane {lane!r}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"payload too large ({len(payload)} bytes, limit {MAX_COMMAND_BYTES})")
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CommandError('payload is not JSON; expected {"state": "open"|"closed"|"auto"}') from None
    if not isinstance(obj, dict):
        raise CommandError(f"payload must be a JSON object, got {type(obj).__name__}")
    extra = sorted(set(obj) - {"state"})
    if extra:
        raise CommandError(f"unknown field(s) {extra}; only 'state' is allowed")
    if "state" not in obj:
        raise CommandError("missing field 'state'")
    state = obj["state"]
    if not isinstance(state, str):
        raise CommandError(f"'state' must be a string, got {type(state).__name__}")
    if state not in LANE_STATES:
        raise CommandError(f"unknown state {state[:20]!r}; expected one of {list(LANE_STATES)}")
    return LaneCommand(lane, state)


class CommandHandler:
    """Turns raw MQTT messages into ``on_lane_command(lane_id, state)`` calls."""

    def __init__(
        self,
        topics: Topics,
        on_lane_command: Callable[[str, str], None] | None,
        known_lanes: Callable[[], Iterable[str] | None] | None = None,
    ) -> None:
        self.topics = topics
        self.on_lane_command = on_lane_command
        self._known_lanes = known_lanes
        self.accepted = 0
        self.rejected = 0

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> bool:
        """Return True if the command was valid and handed on; never raises."""
        try:
            if retained:
                raise CommandError("retained command ignored: publish lane commands with retain=false")
            known = self._known_lanes() if self._known_lanes is not None else None
            cmd = parse_lane_command(self.topics, topic, payload, known)
        except CommandError as exc:
            # log before counting: whoever watches the counter then finds the reason already logged
            log.warning("lane command rejected: %s (topic %s, payload %s)", exc, topic, truncate_payload(payload))
            self.rejected += 1
            return False
        except Exception:  # noqa: BLE001 - untrusted input must never take the MQTT thread down
            log.exception("lane command rejected: unexpected error (topic %s, payload %s)", topic,
                          truncate_payload(payload))
            self.rejected += 1
            return False
        self.accepted += 1
        log.info("lane command: lane %s -> %s", cmd.lane_id, cmd.state, extra={"lane": cmd.lane_id})
        if self.on_lane_command is None:
            log.info("no lane command handler configured; command for lane %s not applied", cmd.lane_id)
            return True
        try:
            self.on_lane_command(cmd.lane_id, cmd.state)
        except Exception:  # noqa: BLE001 - a failing handler must not stop the MQTT loop
            log.exception("lane command handler failed for lane %s -> %s", cmd.lane_id, cmd.state)
        return True
