"""Checkout screens: ``storesense display`` serves a page with the live wait of every lane.

Data path: edge → MQTT (retained lane/store state, edge availability) → a paho subscriber in
this process → :class:`DisplayState` → Server-Sent Events → the page.

The *server* decides what is fresh, not the page: it owns a monotonic clock and the broker
connection, and every snapshot it sends already has the numbers removed for a lane that is
stale or unavailable, so no rendering bug can show an old number with confidence. The page
adds one guard of its own — no snapshot for a few heartbeats means the server is gone, and
every lane turns "unavailable" — and reconnects its EventSource by itself.

A lane is shown with numbers only if all of these hold: the display is connected to the
broker; the edge is not reported offline/stopped; the lane's last payload is younger than
``display.stale_after_s`` (age = time since receipt + age the message already had when it was
delivered, known from the MQTT 5 message-expiry countdown); the payload itself is not marked
stale; the lane is open. The edge republishes lane state every ``analytics.state_interval_s``,
so silence longer than ``stale_after_s`` means something upstream stopped.

Stdlib ``http.server`` is enough here: a handful of routes, a few screens per store, and SSE is
a plain streaming response. A framework would add a dependency for no gain on an edge box.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import mimetypes
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import StoreConfig
from edge.errors import UserFacingError, broker_port_arg, tcp_port_arg
from edge.sd_notify import SystemdNotifier
from mqtt_bridge.http_server import HardenedHttpServer, HardenedRequestHandler
from mqtt_bridge.topics import Topics, topic_id

log = logging.getLogger("storesense.display")

STATIC_DIR = Path(__file__).parent / "static"
SNAPSHOT_SCHEMA = "storesense.display_snapshot/1"
MAX_LANES = 64  # a misbehaving publisher must not grow memory without bound
MAX_DEVICES = 64
_STATIC_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.(html|js|css|svg|png|woff2)$")

# Label texts per language. Every key must exist in every language.
TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "收银台",
        "wait": "预计等候",
        "minutes": "分钟",
        "queue": "人排队",
        "open": "开放",
        "closed": "已关闭",
        "recommended": "推荐",
        "updating": "更新中…",
        "unavailable": "暂不可用",
        "estimating": "估算中",
        "connecting": "连接中…",
        "live": "实时",
        "no_lanes": "暂无收银通道",
        "banner_unavailable": "排队信息暂不可用，请咨询店员",
        "footer": "推荐：预计等候时间最短的通道",
        "free": "个空位",
        "full": "已满",
        "in_use": "使用中",
        "waiting_people": "人等候",
    },
    "en": {
        "title": "Checkout",
        "wait": "Wait",
        "minutes": "min",
        "queue": "in line",
        "open": "Open",
        "closed": "Closed",
        "recommended": "Recommended",
        "updating": "Updating…",
        "unavailable": "Unavailable",
        "estimating": "Estimating",
        "connecting": "Connecting…",
        "live": "Live",
        "no_lanes": "No checkout lanes",
        "banner_unavailable": "Queue information unavailable — please ask our staff",
        "footer": "Recommended: the lane with the shortest expected wait",
        "free": "free",
        "full": "Full",
        "in_use": "in use",
        "waiting_people": "waiting",
    },
}

RouteHandler = Callable[["DisplayRequestHandler"], None]


def format_wait_minutes(
    wait_s: float | None, queue_length: int | None = None, server_busy: bool | None = None
) -> str | None:
    """The number a shopper reads, by one rule for every lane:

    * ``"0"``: nobody ahead of you (nobody in line and the till free);
    * ``"<1"``: someone ahead, but the predicted wait is under a minute (also when the model
      predicts 0 s: a customer still at the till is some wait, so it never reads "0");
    * a whole number of minutes otherwise, rounded to the nearest (the estimate is not better
      than that, and a decimal is unreadable from across the store).

    The earlier rule read only the predicted seconds, so two empty lanes with a busy till showed
    "<1" and "0" side by side depending on the model's residual-service estimate. A payload
    without ``server_busy`` (an older edge) falls back to the seconds: under 1 s reads "0".
    """
    if wait_s is None or not math.isfinite(wait_s):
        return None
    if queue_length is not None and server_busy is not None:
        nobody_ahead = queue_length == 0 and not server_busy
    else:
        nobody_ahead = wait_s < 1.0
    if nobody_ahead:
        return "0"
    if wait_s < 60.0:
        return "<1"
    return str(max(1, int(wait_s / 60.0 + 0.5)))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def validate_lane_payload(payload: Any) -> str | None:
    """Why a lane payload cannot be shown (None if it can). Only the fields the screen uses."""
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    if not isinstance(payload.get("open"), bool):
        return "'open' must be true or false"
    ql: Any = payload.get("queue_length")
    if not _is_number(ql) or ql < 0 or float(ql) != int(ql):
        return "'queue_length' must be a whole number >= 0"
    wait = payload.get("predicted_wait_s")
    if wait is not None and (not _is_number(wait) or wait < 0):
        return "'predicted_wait_s' must be a number >= 0 or null"
    if not isinstance(payload.get("stale", False), bool):
        return "'stale' must be true or false"
    if not isinstance(payload.get("server_busy", False), bool):
        return "'server_busy' must be true or false"
    if not isinstance(payload.get("recommended", False), bool):
        return "'recommended' must be true or false"
    label = payload.get("label")
    if label is not None and not isinstance(label, str):
        return "'label' must be a string"
    return None


def _whole(v: Any, minimum: int) -> bool:
    return _is_number(v) and float(v) == int(v) and int(v) >= minimum


def validate_zone_payload(payload: Any) -> str | None:
    """Why a capacity zone's state cannot be shown on its card (None if it can)."""
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    if not _whole(payload.get("capacity"), 1):
        return "'capacity' must be a whole number >= 1 (is the zone configured with a capacity?)"
    for key in ("occupancy", "free_places"):
        if not _whole(payload.get(key), 0):
            return f"'{key}' must be a whole number >= 0"
    if not isinstance(payload.get("full"), bool):
        return "'full' must be true or false"
    waiting = payload.get("waiting")
    if waiting is not None and not _whole(waiting, 0):
        return "'waiting' must be a whole number >= 0 or null"
    label = payload.get("label")
    if label is not None and not isinstance(label, str):
        return "'label' must be a string"
    return None


@dataclass
class _Lane:
    lane_id: str
    label: str
    order: int
    payload: dict[str, Any] | None = None
    received_mono_s: float | None = None
    age_at_receipt_s: float = 0.0

    def age_s(self, now_s: float) -> float | None:
        if self.received_mono_s is None:
            return None
        return now_s - self.received_mono_s + self.age_at_receipt_s


def lanes_from_config(cfg: StoreConfig) -> list[tuple[str, str]]:
    """(lane id as in topics, label) of every lane of the store (``StoreConfig.lanes``)."""
    out: dict[str, str] = {}
    for lane in cfg.lanes():
        out.setdefault(topic_id(lane.lane_id), lane.label)
    return list(out.items())


class DisplayState:
    """What the screens should show, kept thread-safe between the MQTT thread and HTTP threads.

    ``clock`` is a monotonic clock (injectable for unit tests). Snapshots are computed on
    demand, so a lane turns stale by the passage of time alone, without any message.
    """

    def __init__(
        self,
        cfg: StoreConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_s: float = 1.0,
        max_streams: int = 64,
    ) -> None:
        self.cfg = cfg
        # one thread per open event stream: bounded so a runaway client cannot exhaust the box
        self._streams = threading.BoundedSemaphore(max_streams)
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = cfg.display.stale_after_s
        # after this much silence "updating…" becomes "unavailable": it is no longer a hiccup
        self.unavailable_after_s = 5.0 * cfg.display.stale_after_s
        self.expiry_s = float(cfg.mqtt.state_expiry_s)
        self.device_id = topic_id(cfg.mqtt.device_id)
        self.languages = list(dict.fromkeys(cfg.display.languages))
        self._cond = threading.Condition()
        self._version = 0
        self._lanes: dict[str, _Lane] = {}
        for i, (lid, label) in enumerate(lanes_from_config(cfg)):
            self._lanes[lid] = _Lane(lid, label, i)
        # capacity zones shown as cards (display.capacity_zones): same freshness rules as a lane
        zones = {z.id: z for cam in cfg.cameras for z in cam.zones}
        self._zones: dict[str, _Lane] = {}
        for i, zid in enumerate(cfg.display.capacity_zones):
            zone = zones.get(zid)
            self._zones[topic_id(zid)] = _Lane(topic_id(zid), (zone.label if zone else None) or zid, i)
        self._store: dict[str, Any] | None = None
        self._store_received_mono_s: float | None = None
        self._store_age_at_receipt_s = 0.0
        self._devices: dict[str, str] = {}
        self._broker_connected = False
        self._connected_since_mono_s: float | None = None
        self._started_mono_s = clock()
        self.invalid_messages = 0
        self.messages = 0

    # -- updates (MQTT thread) ------------------------------------------------------------------
    def _changed(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def age_at_receipt_s(self, expiry_remaining_s: float | None, retained: bool) -> float:
        """How old a message already was when the broker delivered it.

        The publisher sets the MQTT 5 expiry to ``mqtt.state_expiry_s``; the broker counts it
        down while the message sits retained, so the remainder tells the age without comparing
        wall clocks of two machines. A retained message without expiry (MQTT 3.1.1) has an
        unknown age: it is taken as stale until the next live update confirms it.
        """
        if expiry_remaining_s is not None:
            return max(0.0, self.expiry_s - float(expiry_remaining_s))
        return self.stale_after_s + 1.0 if retained else 0.0

    def on_connected(self) -> None:
        with self._cond:
            self._broker_connected = True
            self._connected_since_mono_s = self.clock()
            self._changed()

    def on_disconnected(self) -> None:
        with self._cond:
            self._broker_connected = False
            self._changed()

    def on_lane_state(self, lane_id: str, payload: Any, *, age_at_receipt_s: float = 0.0) -> bool:
        """Take a lane payload; False (and nothing changes) if it is malformed."""
        problem = validate_lane_payload(payload)
        with self._cond:
            self.messages += 1
            if problem is not None:
                self.invalid_messages += 1
                log.warning("ignoring lane state for %s: %s", lane_id, problem)
                return False
            lane = self._lanes.get(lane_id)
            if lane is None:
                if len(self._lanes) >= MAX_LANES:
                    log.warning("ignoring lane %s: more than %d lanes", lane_id, MAX_LANES)
                    return False
                lane = _Lane(lane_id, lane_id, 10_000 + len(self._lanes))
                self._lanes[lane_id] = lane
            lane.payload = dict(payload)
            lane.received_mono_s = self.clock()
            lane.age_at_receipt_s = age_at_receipt_s
            label = payload.get("label")
            if isinstance(label, str) and label.strip():
                lane.label = label.strip()[:40]
            self._changed()
            return True

    def on_zone_state(self, zone_id: str, payload: Any, *, age_at_receipt_s: float = 0.0) -> bool:
        """Take a capacity zone's state; ignored unless the zone is one of ``capacity_zones``."""
        card = self._zones.get(zone_id)
        if card is None:
            return False
        problem = validate_zone_payload(payload)
        with self._cond:
            self.messages += 1
            if problem is not None:
                self.invalid_messages += 1
                log.warning("ignoring zone state for %s: %s", zone_id, problem)
                return False
            card.payload = dict(payload)
            card.received_mono_s = self.clock()
            card.age_at_receipt_s = age_at_receipt_s
            self._changed()
            return True

    @property
    def zone_ids(self) -> list[str]:
        return list(self._zones)

    def on_store_state(self, payload: Any, *, age_at_receipt_s: float = 0.0) -> bool:
        with self._cond:
            self.messages += 1
            rec = payload.get("recommended_lane") if isinstance(payload, dict) else 0
            if not (rec is None or isinstance(rec, str)):
                self.invalid_messages += 1
                log.warning("ignoring store state: 'recommended_lane' must be a lane id or null")
                return False
            self._store = dict(payload)
            self._store_received_mono_s = self.clock()
            self._store_age_at_receipt_s = age_at_receipt_s
            self._changed()
            return True

    def on_availability(self, device: str, status: str) -> None:
        status = status.strip().lower()
        with self._cond:
            if device not in self._devices and len(self._devices) >= MAX_DEVICES:
                return
            if status == "":  # retained message cleared
                self._devices.pop(device, None)
            else:
                self._devices[device] = status
            self._changed()

    # -- reading (HTTP threads) -----------------------------------------------------------------
    def wait_for_change(self, version: int, timeout_s: float) -> int:
        with self._cond:
            if self._version == version:
                self._cond.wait(timeout_s)
            return self._version

    def wake_all(self) -> None:
        with self._cond:
            self._changed()

    @property
    def broker_connected(self) -> bool:
        return self._broker_connected

    def edge_status(self) -> str:
        """online | offline | stopped | unknown, for the edge device of this store config.

        A display may run with a config whose device id differs from the edge's (another
        box): then any device reporting online counts, and all known devices down is down.
        """
        own = self._devices.get(self.device_id)
        if own is not None:
            return own if own in ("online", "offline", "stopped") else "unknown"
        if not self._devices:
            return "unknown"
        if any(s == "online" for s in self._devices.values()):
            return "online"
        if all(s in ("offline", "stopped") for s in self._devices.values()):
            return "offline" if "offline" in self._devices.values() else "stopped"
        return "unknown"

    def _lane_view(self, lane: _Lane, now_s: float, edge: str) -> dict[str, Any]:
        view: dict[str, Any] = {
            "lane_id": lane.lane_id,
            "label": lane.label,
            "status": "unavailable",
            "reason": "",
            "open": None,
            "recommended": False,
            "wait_text": None,
            "wait_min": None,
            "queue_length": None,
            "age_s": None,
        }
        age = lane.age_s(now_s)
        if age is not None:
            view["age_s"] = round(age, 1)
        p = lane.payload
        if not self._broker_connected:
            view["reason"] = "broker_disconnected"
        elif edge in ("offline", "stopped"):
            view["reason"] = f"edge_{edge}"
        elif p is None or age is None:
            since = self._connected_since_mono_s if self._connected_since_mono_s is not None else now_s
            waiting = now_s - since <= self.stale_after_s
            view["status"], view["reason"] = ("stale" if waiting else "unavailable"), "no_data"
        elif age > self.unavailable_after_s:
            view["reason"] = "no_update"
        elif age > self.stale_after_s:
            view["status"], view["reason"] = "stale", "no_update"
        elif p.get("stale", False):
            view["status"], view["reason"] = "stale", "edge_stale"
        elif not p["open"]:
            view["status"], view["open"] = "closed", False
        else:
            wait = p.get("predicted_wait_s")
            view["status"], view["open"] = "ok", True
            view["queue_length"] = int(p["queue_length"])
            view["wait_text"] = format_wait_minutes(wait, int(p["queue_length"]), p.get("server_busy"))
            view["wait_min"] = None if wait is None else round(float(wait) / 60.0, 2)
        return view

    def _freshness(self, card: _Lane, now_s: float, edge: str) -> tuple[str, str]:
        """(status, reason) of a card by the age of its state, as for lanes; ("ok", "") when fresh."""
        age = card.age_s(now_s)
        if not self._broker_connected:
            return "unavailable", "broker_disconnected"
        if edge in ("offline", "stopped"):
            return "unavailable", f"edge_{edge}"
        if card.payload is None or age is None:
            since = self._connected_since_mono_s if self._connected_since_mono_s is not None else now_s
            return ("stale" if now_s - since <= self.stale_after_s else "unavailable"), "no_data"
        if age > self.unavailable_after_s:
            return "unavailable", "no_update"
        if age > self.stale_after_s:
            return "stale", "no_update"
        return "ok", ""

    def _zone_view(self, card: _Lane, now_s: float, edge: str) -> dict[str, Any]:
        status, reason = self._freshness(card, now_s, edge)
        p = card.payload if status == "ok" else None
        label = p.get("label") if p is not None else None
        return {
            "zone_id": card.lane_id,
            "label": label.strip()[:40] if isinstance(label, str) and label.strip() else card.label,
            "status": status,
            "reason": reason,
            "capacity": int(p["capacity"]) if p is not None else None,
            "occupancy": int(p["occupancy"]) if p is not None else None,
            "free_places": int(p["free_places"]) if p is not None else None,
            "full": bool(p["full"]) if p is not None else None,
            "waiting": int(p["waiting"]) if p is not None and p.get("waiting") is not None else None,
        }

    def _recommended(self, views: list[dict[str, Any]], now_s: float) -> str | None:
        ok = {v["lane_id"] for v in views if v["status"] == "ok"}
        store = self._store
        if store is not None and self._store_received_mono_s is not None:
            store_age = now_s - self._store_received_mono_s + self._store_age_at_receipt_s
            if store_age <= self.stale_after_s:
                rec = store.get("recommended_lane")
                if rec is None:
                    return None
                with contextlib.suppress(ValueError):
                    rec = topic_id(rec)
                return rec if rec in ok else None
        for lane in sorted(self._lanes.values(), key=lambda ln: ln.order):
            if lane.lane_id in ok and lane.payload is not None and lane.payload.get("recommended"):
                return lane.lane_id
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            now_s = self.clock()
            edge = self.edge_status()
            lanes = sorted(self._lanes.values(), key=lambda ln: (ln.order, ln.lane_id))
            views = [self._lane_view(lane, now_s, edge) for lane in lanes]
            rec = self._recommended(views, now_s)
            for v in views:
                v["recommended"] = v["lane_id"] == rec
            custom_title = self.cfg.display.title.strip()
            return {
                "schema": SNAPSHOT_SCHEMA,
                "version": self._version,
                "store_id": self.cfg.store.id,
                "store_name": self.cfg.store.name,
                "title": custom_title if custom_title and custom_title != "Checkout" else None,
                "languages": self.languages,
                "text": {key: [TEXTS[lang][key] for lang in self.languages] for key in TEXTS["en"]},
                "server_time_s": round(time.time(), 3),
                "heartbeat_s": self.heartbeat_s,
                "stale_after_s": self.stale_after_s,
                "broker_connected": self._broker_connected,
                "edge_status": edge,
                "devices": dict(self._devices),
                "recommended_lane": rec,
                "lanes": views,
                "zones": [self._zone_view(z, now_s, edge) for z in sorted(self._zones.values(), key=lambda z: z.order)],
            }


# ---------------------------------------------------------------------------------------------
# MQTT subscriber


def _mqtt_password(cfg: StoreConfig) -> str | None:
    return cfg.mqtt_password()  # the same resolver as the edge's publisher


class _Subscriber:
    """paho-mqtt 2.x client feeding a :class:`DisplayState`; reconnects by itself.

    Every callback is wrapped: an exception escaping a paho callback ends the network thread
    of ``loop_start`` silently, and the screen would freeze on its last numbers. A supervisor
    restarts the network thread should it still die.
    """

    def __init__(self, cfg: StoreConfig, state: DisplayState, host: str, port: int) -> None:
        self.cfg = cfg
        self.state = state
        self.host = host
        self.port = port
        self.topics = Topics(cfg.store.id, cfg.mqtt.prefix)
        self.callback_errors = 0
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        v5 = cfg.mqtt.protocol == "5"
        client_id = f"storesense-display-{self.topics.store}-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        # callbacks are wrapped (see _guard); paho's own logger is not enabled because it reports
        # normal reconnect attempts as errors, and our callbacks log what an operator needs
        self.client.suppress_exceptions = True
        self.client.reconnect_delay_set(1, max(1, int(math.ceil(cfg.mqtt.reconnect_max_backoff_s))))
        if cfg.mqtt.username:
            self.client.username_pw_set(cfg.mqtt.username, _mqtt_password(cfg))
        tls = cfg.mqtt.tls
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(cfg.resolve_path(tls.ca_file)) if tls.ca_file else None,
                certfile=str(cfg.resolve_path(tls.cert_file)) if tls.cert_file else None,
                keyfile=str(cfg.resolve_path(tls.key_file)) if tls.key_file else None,
            )
            self.client.tls_insecure_set(tls.insecure_skip_verify)
        self.client.on_connect = self._guard(self._on_connect)
        self.client.on_disconnect = self._guard(self._on_disconnect)
        self.client.on_message = self._guard(self._on_message)
        self.client.on_connect_fail = self._guard(self._on_connect_fail)
        self._connect_failures = 0
        base = self.topics.base
        self._lane_re = re.compile(re.escape(base) + r"/lane/([^/]+)/state$")
        self._zone_re = re.compile(re.escape(base) + r"/zone/([^/]+)/state$")
        self._avail_re = re.compile(re.escape(base) + r"/edge/([^/]+)/availability$")
        self._store_topic = self.topics.store_state()

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - must never reach paho, see class docstring
                self.callback_errors += 1
                log.exception("display MQTT callback %s failed", fn.__name__)

        return wrapped

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the display: %s", self.host, self.port, reason)
            return
        client.subscribe(
            [
                (self.topics.all_lane_states(), 1),
                (self._store_topic, 1),
                (f"{self.topics.base}/edge/+/availability", 1),
                *[(self.topics.zone_state(z), 1) for z in self.state.zone_ids],
            ]
        )
        log.info("display connected to broker %s:%d", self.host, self.port)
        self._connect_failures = 0
        self.state.on_connected()

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._connect_failures += 1
        if self._connect_failures in (1, 10) or self._connect_failures % 100 == 0:
            log.warning(
                "display cannot reach the broker %s:%d (attempt %d); retrying",
                self.host, self.port, self._connect_failures,
            )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.state.broker_connected and not self._stop.is_set():
            log.warning("display lost the broker %s:%d (%s); reconnecting", self.host, self.port, reason)
        self.state.on_disconnected()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        m = self._avail_re.match(topic)
        if m:
            self.state.on_availability(m.group(1), msg.payload.decode("utf-8", "replace")[:32])
            return
        props = getattr(msg, "properties", None)
        remaining = getattr(props, "MessageExpiryInterval", None) if props is not None else None
        age = self.state.age_at_receipt_s(remaining, bool(msg.retain))
        if not msg.payload:  # retained state cleared by the edge
            return
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            self.state.invalid_messages += 1
            log.warning("ignoring %s: payload is not JSON", topic)
            return
        m = self._lane_re.match(topic)
        if m:
            self.state.on_lane_state(m.group(1), payload, age_at_receipt_s=age)
        elif topic == self._store_topic:
            self.state.on_store_state(payload, age_at_receipt_s=age)
        elif (m := self._zone_re.match(topic)) is not None:
            self.state.on_zone_state(m.group(1), payload, age_at_receipt_s=age)

    @property
    def network_thread_alive(self) -> bool:
        thread = getattr(self.client, "_thread", None)
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, self.cfg.mqtt.keepalive_s)
        self.client.loop_start()
        self._supervisor = threading.Thread(target=self._supervise, name="display-mqtt-supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            if not self.network_thread_alive:
                log.error("display MQTT network thread died; restarting it")
                self.state.on_disconnected()
                with contextlib.suppress(Exception):
                    self.client.loop_stop()
                self.client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        self.state.on_disconnected()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> bool:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS


# ---------------------------------------------------------------------------------------------
# HTTP


class _HttpServer(HardenedHttpServer):
    display: DisplayServer


class DisplayRequestHandler(HardenedRequestHandler):
    """Routes: ``/`` page, ``/static/*``, ``/events`` (SSE), ``/api/state``, ``/healthz``, extras.

    An extra route handler gets this object: ``handler.display`` is the :class:`DisplayServer`,
    ``handler.command``/``path``/``headers``/``rfile`` the request, and :meth:`send_body`
    writes a complete response.
    """

    server: _HttpServer
    server_version = "StoreSenseDisplay/1"

    @property
    def display(self) -> DisplayServer:
        return self.server.display

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s " + format, self.client_address[0], *args)

    def send_body(self, status: int, body: bytes | str, content_type: str, *, cache: bool = False) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status: int, obj: Any) -> None:
        self.send_body(status, json.dumps(obj, ensure_ascii=False), "application/json; charset=utf-8")

    def _extra_route(self, path: str) -> RouteHandler | None:
        for prefix, fn in self.display.extra_routes.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return fn
        return None

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        extra = self._extra_route(path)
        if extra is not None:
            extra(self)
            return
        if self.command not in ("GET", "HEAD"):
            self.send_body(405, "method not allowed\n", "text/plain; charset=utf-8")
            return
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/events":
            self._events()
        elif path == "/api/state":
            self.send_json(200, self.display.state.snapshot())
        elif path == "/favicon.ico":  # the pages declare no icon; answer quietly instead of a 404
            self.send_response(204)
            self.send_header("Cache-Control", "max-age=86400")
            self.end_headers()
        elif path == "/healthz":
            health = self.display.health()
            self.send_json(200 if health["ok"] else 503, health)
        else:
            self.send_body(404, "not found\n", "text/plain; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def _static(self, name: str) -> None:
        if not _STATIC_NAME_RE.match(name):
            self.send_body(404, "not found\n", "text/plain; charset=utf-8")
            return
        path = STATIC_DIR / name
        try:
            data = path.read_bytes()
        except OSError:
            self.send_body(404, "not found\n", "text/plain; charset=utf-8")
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "text/javascript"):
            ctype += "; charset=utf-8"
        # no caching: after an update every screen must load the new page at its next reconnect
        self.send_body(200, data, ctype)

    def _events(self) -> None:
        """SSE: a full snapshot at once, on every change, and at least every heartbeat."""
        display = self.display
        if not display.acquire_stream():
            self.send_body(503, "too many screens connected\n", "text/plain; charset=utf-8")
            return
        try:
            self._stream(display)
        finally:
            display.release_stream()

    def _stream(self, display: DisplayServer) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        version = -1
        try:
            self.wfile.write(b"retry: 1000\n\n")
            while not display.stopping:
                snap = display.state.snapshot()
                version = snap["version"]
                line = json.dumps(snap, ensure_ascii=False, separators=(",", ":"))
                self.wfile.write(b"data: " + line.encode("utf-8") + b"\n\n")
                self.wfile.flush()
                display.state.wait_for_change(version, display.heartbeat_s)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            pass  # the screen went away; it reconnects by itself


class DisplayServer:
    """The checkout display, in-process: HTTP server + MQTT subscriber.

    ``port=0`` picks a free port (see :attr:`url`). ``extra_routes`` maps a path (matching
    itself and everything below it) to a handler taking a :class:`DisplayRequestHandler`, e.g.
    ``{"/setup": setup_page}``; it gets every method and writes the whole response.
    """

    def __init__(
        self,
        cfg: StoreConfig,
        *,
        host: str | None = None,
        port: int | None = None,
        mqtt_host: str | None = None,
        mqtt_port: int | None = None,
        extra_routes: Mapping[str, RouteHandler] | None = None,
        heartbeat_s: float = 1.0,
        max_streams: int = 64,
    ) -> None:
        self.cfg = cfg
        # one thread per open event stream: bounded so a runaway client cannot exhaust the box
        self._streams = threading.BoundedSemaphore(max_streams)
        self.host = cfg.display.host if host is None else host
        self.port = cfg.display.port if port is None else port
        self.mqtt_host = cfg.mqtt.host if mqtt_host is None else mqtt_host
        self.mqtt_port = cfg.mqtt.port if mqtt_port is None else mqtt_port
        self.heartbeat_s = heartbeat_s
        self.extra_routes: dict[str, RouteHandler] = dict(extra_routes or {})
        self.state = DisplayState(cfg, heartbeat_s=heartbeat_s)
        self.stopping = False
        self._httpd: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._subscriber: _Subscriber | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("DisplayServer.url is known after start()")
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._httpd.server_address[1]}/"

    def start(self) -> DisplayServer:
        try:
            httpd = _HttpServer((self.host, self.port), DisplayRequestHandler)
        except OSError as exc:
            raise UserFacingError(
                f"display: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                "pick another port with --port or display.port"
            ) from None
        httpd.display = self
        self._httpd = httpd
        self._subscriber = _Subscriber(self.cfg, self.state, self.mqtt_host, self.mqtt_port)
        self._subscriber.start()
        self._http_thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="display-http", daemon=True
        )
        self._http_thread.start()
        log.info("checkout display on %s (broker %s:%d)", self.url, self.mqtt_host, self.mqtt_port)
        return self

    @property
    def serving(self) -> bool:
        """The HTTP thread is alive (what the systemd watchdog of the display checks)."""
        return self._http_thread is not None and self._http_thread.is_alive() and not self.stopping

    def acquire_stream(self) -> bool:
        return self._streams.acquire(blocking=False)

    def release_stream(self) -> None:
        self._streams.release()

    def health(self) -> dict[str, Any]:
        sub = self._subscriber
        alive = sub is not None and sub.network_thread_alive
        return {
            "ok": bool(alive) and not self.stopping,
            "mqtt_thread_alive": alive,
            "broker_connected": self.state.broker_connected,
            "edge_status": self.state.edge_status(),
            "callback_errors": sub.callback_errors if sub is not None else 0,
            "messages": self.state.messages,
            "invalid_messages": self.state.invalid_messages,
        }

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish through the display's broker connection (for extra routes, e.g. lane commands)."""
        if self._subscriber is None:
            raise RuntimeError("DisplayServer.publish needs start() first")
        return self._subscriber.publish(topic, payload, qos, retain)

    def stop(self) -> None:
        self.stopping = True
        self.state.wake_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
        if self._subscriber is not None:
            self._subscriber.stop()

    def __enter__(self) -> DisplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# CLI


def installer_routes(cfg: StoreConfig) -> dict[str, RouteHandler]:
    """The /setup page for installers, only when a password is configured (off by default)."""
    if not cfg.display.setup_password_env:
        return {}
    from mqtt_bridge.setup_page import setup_routes

    return setup_routes(cfg)


def cmd_display(args: argparse.Namespace) -> int:
    from edge.config import load_config

    cfg = load_config(args.config)
    server = DisplayServer(
        cfg,
        host=args.host,
        port=args.port,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        extra_routes=installer_routes(cfg),
    ).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"StoreSense checkout display: open {server.url} (Ctrl-C to stop)", flush=True)
    notifier = SystemdNotifier()
    notifier.ready(f"serving {server.url}")
    try:
        while not stop.wait(0.5):
            # the watchdog vouches for both halves: the HTTP server and the MQTT network thread
            if server.serving and server.health()["mqtt_thread_alive"]:
                notifier.watchdog()
    finally:
        notifier.stopping()
        server.stop()
        notifier.close()
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("display", help="serve the checkout screen page (live wait per lane from MQTT)")
    p.add_argument("--config", required=True, help="store config (lanes, mqtt, display sections)")
    p.add_argument("--host", default=None, help="listen address (default: display.host)")
    p.add_argument("--port", type=tcp_port_arg, default=None, help="listen port, 0 = any free (default: display.port)")
    p.add_argument("--mqtt-host", default=None, help="broker host (default: mqtt.host)")
    p.add_argument("--mqtt-port", type=broker_port_arg, default=None, help="broker port (default: mqtt.port)")
    p.set_defaults(func=cmd_display)
