"""Home Assistant MQTT discovery: lanes and zones as sensors, with the edge's availability.

Many small stores already run Home Assistant (Frigate users asked for exactly this). With
``mqtt.home_assistant.enabled`` the edge publishes, retained and on every connection, one
``<prefix>/sensor/<node>/<object>/config`` per sensor:

* each lane: predicted wait (s, device class duration) and queue length (people);
* each zone except staff-only ones: occupancy (people).

They read the retained state topics the product already publishes (no second stream), so
Home Assistant shows exactly what the checkout screens show. ``availability`` follows the
edge's own availability topic (its Last Will says ``offline``; a clean stop says
``stopped``, mapped to offline here), and ``expire_after`` blanks a value the edge stopped
refreshing. Keys and types follow Home Assistant's MQTT sensor schema; tests check them
against that schema and render every template with real payloads.
"""

from __future__ import annotations

import json
from typing import Any

from edge.config import StoreConfig
from mqtt_bridge.display import lanes_from_config
from mqtt_bridge.topics import Topics, topic_id

AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"


def _device(cfg: StoreConfig, node: str) -> dict[str, Any]:
    return {
        "identifiers": [f"storesense_{node}"],
        "name": f"StoreSense {cfg.store.name or cfg.store.id}",
        "manufacturer": "StoreSense",
        "model": "edge box",
        "sw_version": _version(),
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("storesense")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "dev"


def discovery_messages(cfg: StoreConfig, topics: Topics) -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery config, to be published retained (no expiry)."""
    ha = cfg.mqtt.home_assistant
    node = topic_id(f"{cfg.store.id}_{cfg.mqtt.device_id}").replace("-", "_")
    device = _device(cfg, node)
    common = {
        "availability": [{"topic": topics.availability(cfg.mqtt.device_id), "value_template": AVAILABILITY_TEMPLATE,
                          "payload_available": "online", "payload_not_available": "offline"}],
        "device": device,
        "state_class": "measurement",
        "expire_after": int(max(cfg.mqtt.state_expiry_s, 3 * cfg.analytics.state_interval_s)),
        "qos": 1,
    }
    sensors: list[tuple[str, dict[str, Any]]] = []
    for lane_id, label in lanes_from_config(cfg):
        lid = topic_id(lane_id)
        state = topics.lane_state(lid)
        sensors.append((f"{lid}_wait", {
            "name": f"{label} wait", "state_topic": state, "device_class": "duration", "unit_of_measurement": "s",
            "value_template": "{{ value_json.predicted_wait_s }}", "icon": "mdi:timer-sand",
        }))
        sensors.append((f"{lid}_queue", {
            "name": f"{label} queue", "state_topic": state, "unit_of_measurement": "people",
            "value_template": "{{ value_json.queue_length }}", "icon": "mdi:human-queue",
        }))
    for cam in cfg.cameras:
        if not cam.enabled:
            continue
        for zone in cam.zones:
            if zone.kind == "staff_only":
                continue
            zid = topic_id(zone.id)
            sensors.append((f"{zid}_occupancy", {
                "name": f"{zone.label or zone.id} occupancy", "state_topic": topics.zone_state(zid),
                "unit_of_measurement": "people", "value_template": "{{ value_json.occupancy }}",
                "icon": "mdi:account-group",
            }))
    out = []
    for object_id, sensor in sensors:
        obj = object_id.replace("-", "_")
        payload = {**sensor, **common, "unique_id": f"storesense_{node}_{obj}", "object_id": f"storesense_{node}_{obj}"}
        topic = f"{ha.discovery_prefix}/sensor/{node}/{obj}/config"
        out.append((topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")))
    return out
