"""One typed payload per message schema (edge/payloads.py), checked against the JSON Schemas in
mqtt_bridge/schemas: the same fields, the same required ones, the same schema id. A field added to
a type and not to its schema (or the reverse) fails here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge.payloads import (
    EVENT_TYPES,
    PAYLOAD_TYPES,
    CameraStatus,
    GreetingEvent,
    LaneSet,
    Payload,
    ZoneState,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "mqtt_bridge" / "schemas"


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("cls", PAYLOAD_TYPES, ids=lambda c: c.__name__)
def test_type_matches_its_json_schema(cls: type[Payload]) -> None:
    schema = _schema(cls.schema_name())
    assert schema["$id"] == cls.SCHEMA and schema["properties"]["schema"]["const"] == cls.SCHEMA
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields | {"schema"} == set(schema["properties"]), cls.__name__
    required = {f for f in fields if f not in cls.OPTIONAL} | {"schema"}
    assert required == set(schema["required"]), cls.__name__
    assert schema.get("additionalProperties") is False


def test_every_schema_file_has_a_type() -> None:
    typed = {cls.schema_name() for cls in PAYLOAD_TYPES} | {"lane_set", "availability"}
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == typed
    assert set(_schema("lane_set")["properties"]) == {f.name for f in dataclasses.fields(LaneSet)}
    assert set(EVENT_TYPES) == {"queue_wait", "greeting", "assist", "visit", "entry", "alert", "lane_command"}


def test_optional_fields_are_left_out_when_none_and_parse_back() -> None:
    z = ZoneState(store_id="s", zone_id="z", label="Z", kind="queue", camera_id="c", timestamp_s=1.0, occupancy=2,
                  staff_present=False, staff_count=0, visits_last_hour=3, visits_completed_last_hour=1,
                  stops_last_hour=0, dwell_median_s=None, dwell_p90_s=None, dwell_mean_s=None)
    d = z.to_dict()
    assert d["schema"] == "storesense.zone_state/1" and "response_sla_s" not in d and d["dwell_median_s"] is None
    assert ZoneState.from_dict({**d, "from_a_newer_producer": 1}) == z
    g = GreetingEvent(store_id="s", timestamp_s=2.0, event_id="e", zone_id="door", camera_id="c", track_id=4,
                      outcome="greeted", started_s=1.0, latency_s=1.0, sla_s=10.0, within_sla=True,
                      customer_left=False, distance_method="floor_m", distance_m=0.8)
    assert g.to_dict()["type"] == "greeting" and "distance_image_widths" not in g.to_dict()
    with pytest.raises(KeyError, match="camera_id"):
        CameraStatus.from_dict({"store_id": "s"})
