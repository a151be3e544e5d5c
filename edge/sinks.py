"""Where messages go: the same stream feeds the --events JSONL file, MQTT and the history DB.

A sink is anything with ``emit(messages)`` and ``close()``. Keeping one verb means the
pipeline never knows whether it runs offline (``analyze``) or live (``run``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol

from edge.contract import Message
from edge.errors import open_output
from mqtt_bridge.topics import Topics


class Sink(Protocol):
    def emit(self, messages: Sequence[Message]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line: ``{"topic": ..., "payload": {...}}`` — exactly what MQTT gets."""

    def __init__(self, path: str | Path, topics: Topics) -> None:
        self.path = Path(path)
        self.topics = topics
        self._fh: IO[str] = open_output(self.path, "--events")
        self.count = 0

    def emit(self, messages: Sequence[Message]) -> None:
        for m in messages:
            obj = {"topic": self.topics.of(m), "payload": m.payload}
            self._fh.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.count += 1
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class MemorySink:
    """Keeps messages in a list; for tests and for the in-process display."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def emit(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)

    def close(self) -> None:
        pass


class FanoutSink:
    """Sends every message to several sinks; one failing sink does not starve the others."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)

    def emit(self, messages: Sequence[Message]) -> None:
        errors: list[BaseException] = []
        for s in self.sinks:
            try:
                s.emit(messages)
            except Exception as exc:  # noqa: BLE001 - re-raised below after all sinks ran
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        for s in self.sinks:
            s.close()
