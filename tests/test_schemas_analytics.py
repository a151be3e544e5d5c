"""Every payload StoreAnalytics produces validates against its JSON Schema in mqtt_bridge/schemas,
and every analytics schema is exercised (so the catalogue cannot drift from the code)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from test_analytics import (
    BACKROOM,
    ENTRANCE,
    OUTSIDE,
    QUEUE1,
    T0,
    TABLE,
    TILL1,
    TOPICS,
    ZONES_CAM1,
    Walker,
    make_config,
    run_scene,
    staff_member,
    stay,
)

from edge.contract import Message
from zones.analytics import StoreAnalytics

SCHEMAS = Path(__file__).resolve().parent.parent / "mqtt_bridge" / "schemas"
ANALYTICS_SCHEMAS = [
    "lane_state", "store_state", "zone_state", "event_queue_wait", "event_visit", "event_greeting",
    "event_assist", "event_alert", "event_lane_command", "event_entry",
]


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_file(payload: dict[str, object]) -> str:
    # "storesense.event.visit/1" -> "event_visit"
    name = str(payload["schema"]).removeprefix("storesense.").split("/")[0]
    return name.replace(".", "_")


def _busy_scene(calibrated: bool) -> list[Message]:
    cal = """
    calibration:
      image_points_px: [[0, 0], [1000, 0], [1000, 1000], [0, 1000]]
      floor_points_m: [[0, 0], [10, 0], [10, 10], [0, 10]]
""" if calibrated else ""
    alerts = ("analytics: {alerts: [{id: busy, metric: queue_length, above: 1, for_s: 5},"
              " {id: all-busy, metric: open_lanes_busy, above: 0}]}")
    cfg = make_config(zones=ZONES_CAM1 + cal, extra=alerts)
    a = StoreAnalytics(cfg)
    msgs = a.set_lane_state("lane-2", "open", T0)
    walkers = [
        # two customers queue and get served, one abandons
        Walker(1, [(1.0, *QUEUE1), (15.0, *QUEUE1), (15.5, *TILL1), (30.0, *TILL1), (30.5, *OUTSIDE)]),
        Walker(2, [(2.0, 0.1, 0.3), (31.0, 0.1, 0.3), (31.5, *TILL1), (45.0, *TILL1), (45.5, *OUTSIDE)]),
        Walker(3, [(3.0, 0.05, 0.2), (20.0, 0.05, 0.2), (20.5, *OUTSIDE), (25.0, *OUTSIDE)]),
        # a browser stops at the table and is assisted; another is not
        stay(4, TABLE, 0.0, 40.0),
        stay(5, (0.7, 0.35), 50.0, 100.0),
        # entrance: two walk in from the image border; one greeted, one missed
        Walker(6, [(4.9, 0.8, 0.97), (5.0, *ENTRANCE), (25.0, *ENTRANCE)]),
        Walker(7, [(59.9, 0.75, 0.97), (60.0, 0.75, 0.85), (80.0, 0.75, 0.85)]),
        # staff: cashier at till 1, greeter, assistant
        staff_member(90, 0.0, [(3.0, 0.55, 0.45), (100.0, 0.55, 0.45)]),
        staff_member(91, 0.0, [(3.0, *BACKROOM), (7.0, 0.82, 0.76), (20.0, 0.82, 0.76), (21.0, 0.77, 0.26),
                               (40.0, 0.77, 0.26), (41.0, *BACKROOM), (100.0, *BACKROOM)]),
    ]
    msgs += run_scene(a, walkers, 100.0)
    msgs += a.set_lane_state("lane-2", "auto", T0 + 101.0)
    return msgs


@pytest.mark.parametrize("calibrated", [False, True])
def test_every_analytics_payload_validates(calibrated: bool) -> None:
    msgs = _busy_scene(calibrated)
    validators = {name: _validator(name) for name in ANALYTICS_SCHEMAS}
    seen: dict[str, int] = {}
    for m in msgs:
        name = _schema_file(m.payload)
        if name == "heatmap":
            continue  # owned and validated by the heatmap tests
        assert name in validators, f"no schema for {m.payload['schema']}"
        errors = sorted(validators[name].iter_errors(m.payload), key=lambda e: list(e.path))
        assert not errors, f"{TOPICS.of(m)}: {[f'{list(e.path)}: {e.message}' for e in errors]}"
        seen[name] = seen.get(name, 0) + 1
        # routing rule of the publisher: state retained, events durable
        assert TOPICS.route(m).retain is (not name.startswith("event_")) and TOPICS.route(m).qos == 1
    assert set(seen) == set(ANALYTICS_SCHEMAS), f"not exercised: {set(ANALYTICS_SCHEMAS) - set(seen)}"
    outcomes = {(p["type"], p["outcome"]) for p in (m.payload for m in msgs) if "outcome" in p}
    assert {("greeting", "greeted"), ("greeting", "missed"), ("assist", "greeted"), ("assist", "missed"),
            ("queue_wait", "served"), ("queue_wait", "abandoned")} <= outcomes


@pytest.mark.parametrize("name", ANALYTICS_SCHEMAS)
def test_schema_rejects_a_wrong_payload(name: str) -> None:
    """The schemas are strict: a missing field or an unknown one is an error."""
    v = _validator(name)
    msgs = _busy_scene(False)
    payload = next(m.payload for m in msgs if _schema_file(m.payload) == name)
    broken = dict(payload)
    broken.pop("store_id")
    assert not v.is_valid(broken)
    extra = dict(payload, image_jpeg="...")
    assert not v.is_valid(extra)
