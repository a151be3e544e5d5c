"""Home Assistant MQTT discovery on a real Mosquitto: a real `storesense run` publishes one retained
config per sensor; each follows Home Assistant's MQTT sensor schema, points at a state topic the
run really published, and its templates (rendered with Jinja2, as Home Assistant does) give a
number from the real payload; availability follows the edge."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.commands import run_store
from edge.config import parse_config
from mqtt_bridge.broker import MosquittoProcess

# Home Assistant's MQTT sensor discovery schema, transcribed from its documentation
# (integrations/sensor.mqtt and the MQTT discovery page): the keys it accepts, their types, the
# availability list and the device map. additionalProperties false: a misspelt key is silently
# ignored by Home Assistant, so it must fail here.
AVAILABILITY = {
    "type": "object", "required": ["topic"], "additionalProperties": False,
    "properties": {"topic": {"type": "string", "minLength": 1}, "payload_available": {"type": "string"},
                   "payload_not_available": {"type": "string"}, "value_template": {"type": "string"}},
}
DEVICE = {
    "type": "object", "additionalProperties": False, "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
    "properties": {
        "identifiers": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "connections": {"type": "array"}, "configuration_url": {"type": "string"}, "hw_version": {"type": "string"},
        "manufacturer": {"type": "string"}, "model": {"type": "string"}, "model_id": {"type": "string"},
        "name": {"type": "string"}, "serial_number": {"type": "string"}, "suggested_area": {"type": "string"},
        "sw_version": {"type": "string"}, "via_device": {"type": "string"},
    },
}
SENSOR_SCHEMA = {
    "type": "object", "required": ["state_topic"], "additionalProperties": False,
    "properties": {
        "availability": {"type": "array", "items": AVAILABILITY, "minItems": 1},
        "availability_mode": {"enum": ["all", "any", "latest"]},
        "availability_template": {"type": "string"}, "availability_topic": {"type": "string"},
        "device": DEVICE,
        "device_class": {"type": ["string", "null"]},
        "enabled_by_default": {"type": "boolean"}, "encoding": {"type": "string"},
        "entity_category": {"enum": ["config", "diagnostic"]},
        "entity_picture": {"type": "string"}, "expire_after": {"type": "integer", "minimum": 0},
        "force_update": {"type": "boolean"}, "icon": {"type": "string", "pattern": "^mdi:[a-z0-9-]+$"},
        "json_attributes_template": {"type": "string"}, "json_attributes_topic": {"type": "string"},
        "last_reset_value_template": {"type": "string"}, "name": {"type": ["string", "null"]},
        "object_id": {"type": "string"}, "default_entity_id": {"type": "string"},
        "options": {"type": "array"}, "payload_available": {"type": "string"},
        "payload_not_available": {"type": "string"}, "platform": {"const": "mqtt"},
        "suggested_display_precision": {"type": "integer", "minimum": 0},
        "qos": {"enum": [0, 1, 2]}, "state_class": {"enum": ["measurement", "measurement_angle", "total", "total_increasing"]},
        "state_topic": {"type": "string", "minLength": 1}, "unique_id": {"type": "string"},
        "unit_of_measurement": {"type": ["string", "null"]}, "value_template": {"type": "string"},
    },
    "not": {"required": ["availability", "availability_topic"]},  # "must not be used together"
    "dependentRequired": {"device": ["unique_id"]},  # the device registry needs a unique_id
}
# units Home Assistant accepts for the duration device class
DURATION_UNITS = {"d", "h", "min", "s", "ms", "µs"}

STORE = """
version: 1
store: {{id: ha-store, name: "HA Shop"}}
cameras:
  - id: cam-1
    source: {clip}
    fps: 1
    zones:
      - {{id: lane-1-queue, kind: queue, lane: lane-1, label: "Lane 1", service_zone: lane-1-till,
         polygon: [[0.5, 0.3], [1.0, 0.3], [1.0, 1.0], [0.5, 1.0]]}}
      - {{id: lane-1-till, kind: service, lane: lane-1, polygon: [[0.0, 0.3], [0.5, 0.3], [0.5, 1.0], [0.0, 1.0]]}}
      - {{id: aisle, kind: dwell, label: "Aisle", polygon: [[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]]}}
      - {{id: back-office, kind: staff_only, polygon: [[0.9, 0.0], [1.0, 0.0], [1.0, 0.1]]}}
mqtt: {{host: 127.0.0.1, port: {port}, device_id: ha-edge, home_assistant: {{enabled: true}}}}
history: {{enabled: false}}
metrics: {{enabled: false}}
data_dir: {data}
"""


def _retained(port: int, pattern: str, timeout_s: float = 3.0) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: got.__setitem__(m.topic, bytes(m.payload)) if m.retain else None
    client.connect("127.0.0.1", port)
    client.subscribe(pattern, qos=1)
    client.loop_start()
    done.wait(timeout_s)  # retained messages arrive right after SUBACK
    client.loop_stop()
    client.disconnect()
    return got


def _render(template: str, payload: bytes) -> str:
    text = payload.decode()
    try:
        value_json: Any = json.loads(text)
    except ValueError:
        value_json = None
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(value=text, value_json=value_json, none=None)


def test_discovery_follows_home_assistant_schema_and_reads_real_state(
    tmp_path: Path, videos_path: Path, mosquitto: MosquittoProcess
) -> None:
    cfg = parse_config(STORE.format(clip=videos_path / "people-detection.gif", port=mosquitto.port, data=tmp_path / "d"))
    assert run_store(cfg) == 0  # the clip to its end; the publisher says "stopped" on the way out
    retained = _retained(mosquitto.port, "#")
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    objects = sorted(t.split("/")[3] for t in configs)
    assert objects == ["aisle_occupancy", "lane_1_queue", "lane_1_queue_occupancy", "lane_1_till_occupancy",
                       "lane_1_wait"], objects  # no sensor for the staff-only zone
    validator = jsonschema.Draft202012Validator(SENSOR_SCHEMA)
    unique_ids = set()
    for topic, sensor in configs.items():
        assert re.fullmatch(r"homeassistant/sensor/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config", topic), topic
        errors = [e.message for e in validator.iter_errors(sensor)]
        assert errors == [], (topic, errors)
        if sensor.get("device_class") == "duration":
            assert sensor["unit_of_measurement"] in DURATION_UNITS
        unique_ids.add(sensor["unique_id"])
        # the state it reads was really published, and its template gives a number (or None: unknown)
        state = retained[sensor["state_topic"]]
        value = _render(sensor["value_template"], state)
        assert value == "None" or float(value) >= 0, (topic, value)
        for avail in sensor["availability"]:
            assert retained[avail["topic"]] == b"stopped"
            assert _render(avail["value_template"], b"stopped") == avail["payload_not_available"]
            assert _render(avail["value_template"], b"online") == avail["payload_available"]
            assert _render(avail["value_template"], b"offline") == avail["payload_not_available"]
    assert len(unique_ids) == len(configs)
    wait = configs["homeassistant/sensor/ha_store_ha_edge/lane_1_wait/config"]
    assert wait["device_class"] == "duration" and wait["unit_of_measurement"] == "s"
    assert wait["state_topic"] == "storesense/v1/ha-store/lane/lane-1/state"
    lane = json.loads(retained[wait["state_topic"]])
    assert _render(wait["value_template"], retained[wait["state_topic"]]) == str(lane["predicted_wait_s"])
