"""Capacity zones (fitting rooms): free places, full and for how long, people waiting at the
entrance, and a "full for N s" alert; on simulated tracks, with every payload schema-checked."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from test_analytics import TOPICS, last_state, make_config, run_scene, stay

from edge.config import ConfigError, parse_config
from edge.contract import Message
from zones.analytics import StoreAnalytics

SCHEMAS = Path(__file__).resolve().parent.parent / "mqtt_bridge" / "schemas"

FITTING = """
      - {id: fitting, kind: dwell, label: "Fitting rooms", capacity: 3, waiting_zone: fitting-wait,
         polygon: [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]}
      - {id: fitting-wait, kind: dwell, label: "Fitting queue", polygon: [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5], [0.5, 0.5]]}
"""
ALERT = "analytics: {alerts: [{id: fitting-full, metric: zone_occupancy_pct, zone: fitting, above: 99, for_s: 20, message: 'Fitting rooms full'}]}"


def _validate(m: Message) -> None:
    name = str(m.payload["schema"]).removeprefix("storesense.").split("/")[0].replace(".", "_")
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(m.payload)


def test_fitting_rooms_full_waiting_and_alert_on_simulated_tracks() -> None:
    a = StoreAnalytics(make_config(zones=FITTING, extra=ALERT, staff=False))
    # 2 people from 0 s, a 3rd from 10 s (full), 2 more wait outside from 15 s; one leaves at 60 s
    walkers = [stay(1, (0.1, 0.1), 0.0, 90.0), stay(2, (0.2, 0.2), 0.0, 90.0), stay(3, (0.3, 0.3), 10.0, 60.0),
               stay(4, (0.7, 0.2), 15.0, 90.0), stay(5, (0.8, 0.3), 15.0, 90.0)]
    states: list[tuple[float, dict[str, object]]] = []
    alerts: list[tuple[float, str]] = []

    def on_frame(t: float, msgs: list[Message]) -> None:
        for m in msgs:
            _validate(m)
            if m.is_state and TOPICS.of(m) == TOPICS.zone_state("fitting"):
                states.append((t, m.payload))
            if not m.is_state and m.payload.get("type") == "alert":
                alerts.append((t, str(m.payload["state"])))
                assert m.payload["lane_id"] == "fitting" and m.payload["metric"] == "zone_occupancy_pct"

    msgs = run_scene(a, walkers, 100.0, on_frame=on_frame, finish=False)
    early = next(p for t, p in states if 5 <= t < 10)
    assert (early["capacity"], early["free_places"], early["full"], early["waiting"]) == (3, 1, False, 0)
    full = next(t for t, p in states if p["full"])
    assert full == pytest.approx(11.0, abs=0.6)  # the 3rd person confirmed inside (enter_after_s 1 s)
    mid = next(p for t, p in states if t >= 40)
    assert (mid["occupancy"], mid["free_places"], mid["full"], mid["waiting"]) == (3, 0, True, 2)
    assert mid["full_for_s"] == pytest.approx(40 - full, abs=1.1)
    # full for 20 s → raised; not full any more → cleared after for_s
    assert [s for _, s in alerts] == ["raised", "cleared"]
    assert alerts[0][0] == pytest.approx(full + 20.0, abs=0.6)
    assert alerts[1][0] > 60.0 + 20.0 - 0.6
    after = next(p for t, p in states if 65 <= t < 85)  # the 3rd person left at 60 s
    assert (after["free_places"], after["full"], after["full_for_s"]) == (1, False, 0.0)
    assert last_state(msgs, TOPICS.zone_state("fitting"))["free_places"] == 3  # everyone gone at 90 s
    assert last_state(msgs, TOPICS.store_state())["active_alerts"] == []


@pytest.mark.parametrize(("zone", "problem"), [
    ("{id: z, kind: queue, capacity: 3, polygon: [[0, 0], [1, 0], [1, 1]]}", "not a setting of queue zones (it belongs to kind dwell)"),
    ("{id: z, kind: dwell, waiting_zone: w, polygon: [[0, 0], [1, 0], [1, 1]]}", "waiting_zone needs capacity"),
    ("{id: z, kind: dwell, capacity: 0, polygon: [[0, 0], [1, 0], [1, 1]]}", "greater than or equal to 1"),
    ("{id: z, kind: dwell, capacity: 2, waiting_zone: nope, polygon: [[0, 0], [1, 0], [1, 1]]}", "must be another dwell zone"),
    ("{id: z, kind: dwell, capacity: 2, waiting_zone: z, polygon: [[0, 0], [1, 0], [1, 1]]}", "must be another dwell zone"),
])
def test_capacity_config_errors(zone: str, problem: str) -> None:
    text = f"version: 1\nstore: {{id: s}}\ncameras:\n  - id: c\n    source: x.mp4\n    zones:\n      - {zone}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "store.yaml")
    assert problem in str(err.value) and "store.yaml:" in str(err.value)


def test_alert_on_a_zone_without_capacity_is_a_config_error() -> None:
    text = ("version: 1\nstore: {id: s}\ncameras:\n  - id: c\n    source: x.mp4\n    zones:\n"
            "      - {id: fitting, kind: dwell, capacity: 2, polygon: [[0, 0], [1, 0], [1, 1]]}\n"
            "analytics: {alerts: [{id: full, metric: zone_occupancy_pct, zone: fiting, above: 99}]}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "store.yaml")
    assert "store.yaml:8:" in str(err.value) and "did you mean 'fitting'" in str(err.value), str(err.value)
