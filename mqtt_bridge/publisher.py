"""MQTT sink: live state retained, events through a disk outbox, availability with a Last Will.

Routing (docs/architecture.md, docs/mqtt.md; ``Topics.route`` maps a message's kind, entity id and
durability to topic, QoS and retain): ``durability="state"`` is live state. Only the latest
value per topic matters, so it goes into an in-memory cache and is (re-)published, retained,
with an MQTT 5 message expiry, whenever the link is up and after every reconnect.
``durability="event"`` is an event: it is written to a SQLite outbox first and a sender
drains that file in order, deleting rows only on PUBACK (at-least-once; consumers de-duplicate
by ``event_id``).

Threads: paho's network thread (``loop_start``) and one sender thread that does *all*
publishing. One publishing thread means the re-publish of cached state after a reconnect can
never overtake a newer value, and ``emit()`` (called from the analysis loop) only touches
memory and the local SQLite file, never the network.

Failure handling, because paho 2.x lets an exception in a callback end the network thread
while ``is_connected()`` keeps saying True:

* every callback is wrapped: an exception is logged and counted, never propagated;
* the sender thread is a watchdog: ``loop_start()`` returns ``MQTT_ERR_INVAL`` while the
  network thread lives; if it returns success the thread had died and has just been restarted.

After a reconnect, cached state and new events are sent only once the SUBACK of the command
subscription arrived: paho re-sends its own un-acknowledged messages right after CONNACK, and
waiting for the SUBACK puts ours behind them, so an old value can never overwrite a newer one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import resolve_secret
from edge.contract import Message
from edge.errors import UserFacingError
from edge.payloads import EdgeStatus
from mqtt_bridge.commands import CommandHandler
from mqtt_bridge.config import MqttConfig
from mqtt_bridge.outbox import Outbox, OutboxRow
from mqtt_bridge.topics import Routing, Topics, topic_id

log = logging.getLogger("storesense.mqtt")

AVAILABILITY_ONLINE = "online"
AVAILABILITY_OFFLINE = "offline"
AVAILABILITY_STOPPED = "stopped"

EDGE_STATUS_INTERVAL_S = 30.0
SEND_WINDOW = 16  # outbox rows handed to paho and not yet acknowledged
_TICK_S = 0.2

# ---------------------------------------------------------------------------------------------
# privacy guard

MAX_STRING_CHARS = 1024
_IMAGE_KEYS = frozenset(
    {
        "image", "images", "img", "jpeg", "jpg", "png", "frame", "face", "faces", "thumbnail",
        "snapshot", "crop", "crops", "photo", "picture", "pixels", "bitmap", "embedding",
        "embeddings", "video", "mask",
    }
)
_IMAGE_KEY_SUFFIXES = (
    "_image", "_img", "_jpeg", "_jpg", "_png", "_b64", "_base64", "_thumbnail", "_snapshot",
    "_crop", "_face", "_faces", "_photo", "_pixels", "_embedding",
)
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
_IMAGE_MAGIC = ("data:image", "/9j/", "iVBORw0KGgo", "R0lGOD", "UklGR")  # data URI, JPEG, PNG, GIF, WEBP


def find_image_data(obj: Any, path: str = "payload", depth: int = 0) -> str | None:
    """Return where image-like data sits in a payload, or None if it looks like plain metrics.

    This is the last line of the privacy red line: whatever a module puts into a message,
    raw bytes, arrays, base64 blobs and fields named like pictures never reach the broker.
    """
    if depth > 32:
        return f"{path}: nested deeper than 32 levels"
    if isinstance(obj, bytes | bytearray | memoryview):
        return f"{path}: raw bytes ({len(obj)} bytes)"
    if obj is None or isinstance(obj, bool | int | float):
        return None
    if getattr(obj, "ndim", 0) or hasattr(obj, "__array_interface__") and getattr(obj, "size", 0) > 1:
        return f"{path}: array of type {type(obj).__name__}"
    if isinstance(obj, str):
        if obj.startswith(_IMAGE_MAGIC) and len(obj) > 64:
            return f"{path}: string that starts like an encoded image"
        if len(obj) > MAX_STRING_CHARS and _BASE64_RE.match(obj):
            return f"{path}: base64-like string of {len(obj)} characters"
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            k = str(key).lower()
            if k in _IMAGE_KEYS or k.endswith(_IMAGE_KEY_SUFFIXES):
                return f"{path}.{key}: field name suggests image data"
            found = find_image_data(value, f"{path}.{key}", depth + 1)
            if found:
                return found
        return None
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found = find_image_data(value, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


# ---------------------------------------------------------------------------------------------
# secrets


def resolve_password(cfg: MqttConfig, config_dir: Path | None = None) -> str | None:
    """The broker password from the named environment variable or file (never inline); a relative
    ``password_file`` is relative to the config file's folder ``config_dir`` (the same rule as the
    display's, :meth:`edge.config.StoreConfig.mqtt_password`)."""
    return resolve_secret(cfg.password_env, cfg.password_file, key="mqtt.password", base_dir=config_dir)


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PublisherStats:
    published: int = 0  # PUBLISH packets handed to paho (state, events, availability)
    acked: int = 0  # outbox events acknowledged by the broker and deleted
    queued: int = 0  # outbox events waiting (file)
    dropped: int = 0  # outbox events dropped because the outbox was full (this run)
    refused: int = 0  # messages refused by emit(): image-like data, not JSON, bad topic
    rejected: int = 0  # PUBACKs with a failure reason code (e.g. not authorised)
    reconnects: int = 0
    connects: int = 0
    callback_errors: int = 0
    loop_restarts: int = 0  # network thread found dead and restarted by the watchdog
    commands_accepted: int = 0
    commands_rejected: int = 0
    last_ack_mono_s: float | None = None  # monotonic time of the broker's last successful PUBACK
    disk_full: bool = False  # the outbox file cannot be written: events wait in memory
    events_in_memory: int = 0


@dataclasses.dataclass
class _InFlight:
    row: OutboxRow
    info: mqtt.MQTTMessageInfo
    sent_mono_s: float


class _PahoLogger(logging.Logger):
    """paho's log for one client, at DEBUG once its publisher is closing (the disconnect noise
    of paho's last loop turns is expected). Not registered with the logging manager, so it goes
    away with the publisher; it propagates to ``storesense.mqtt`` like a child logger."""

    def __init__(self, closing: Callable[[], bool]) -> None:
        super().__init__("storesense.mqtt.paho")
        self.parent = logging.getLogger("storesense.mqtt")
        self._closing = closing

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if self._closing() else level, msg, *args, **kwargs)


class MqttPublisher:
    """The MQTT Sink. ``start()`` connects in the background; ``emit()`` never blocks on the network."""

    def __init__(
        self,
        cfg: MqttConfig,
        topics: Topics,
        *,
        data_dir: Path,
        on_lane_command: Callable[[str, str], None] | None = None,
        known_lanes: Iterable[str] | None = None,
        client_id: str | None = None,
        inflight_timeout_s: float | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        config_dir: Path | None = None,
        retained_on_connect: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self.cfg = cfg
        self._status_extra = status_extra  # e.g. history drops, for the edge status
        self.config_dir = config_dir  # a relative mqtt.password_file is relative to it
        self.topics = topics
        self.device_id = topic_id(cfg.device_id)
        self.availability_topic = topics.availability(self.device_id)
        self.client_id = client_id or f"storesense-{topics.store}-{self.device_id}"
        self.outbox = Outbox(Path(data_dir) / cfg.outbox_path, cfg.outbox_max_messages)
        self._known_lanes_cfg = {topic_id(x) for x in known_lanes} if known_lanes is not None else None
        self._seen_lanes: set[str] = set()
        self._commands = CommandHandler(topics, on_lane_command, known_lanes=self._known_lanes)
        self._v5 = cfg.protocol == "5"
        self._inflight_timeout_s = inflight_timeout_s or max(30.0, 3.0 * cfg.keepalive_s)

        self._lock = threading.Lock()
        self._state: dict[str, tuple[bytes, int]] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set of topics to (re)publish
        self._volatile: list[tuple[str, bytes]] = []  # qos 0, not retained: best effort
        self._inflight: list[_InFlight] = []
        # mids whose PUBACK arrived (on_publish), consumed by the sender. Not info.is_published():
        # that raises for a message paho queued while reporting "not connected" (the link dropped
        # as it was sent), which would stop the sender on every tick.
        self._acked_mids: set[int] = set()
        self._acked_lock = threading.Lock()
        self._cursor = 0  # highest outbox row id handed to paho
        self._stats = PublisherStats(queued=len(self.outbox), dropped=0)

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = False
        self._ready = False  # connected and the command SUBACK arrived
        self._generation = 0  # connections that became ready
        self._handled_generation = 0
        self._sub_mid: int | None = None
        self._connected_mono_s = 0.0
        self._down_logged = False
        self._started = False
        self._closed = False
        self._sender: threading.Thread | None = None
        self._status_key: tuple[Any, ...] = ("ok", 0, 0)
        self._status_mono = 0.0
        # configs others discover us by (Home Assistant): retained, no expiry, sent on every connection
        self._retained_on_connect = list(retained_on_connect)
        self._client = self._make_client()

    def __repr__(self) -> str:  # no secrets: neither the password nor its source value
        return f"MqttPublisher(host={self.cfg.host!r}, port={self.cfg.port}, client_id={self.client_id!r})"

    # -- setup ---------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        protocol = mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {}
        if not self._v5:
            kwargs["clean_session"] = True  # commands are live: never queue them while we are away
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol, **kwargs)
        # one logger adapter per client: once close() has begun, paho's "not connected" errors
        # from its last loop turns are expected, and an operator must not see ERROR on a clean stop
        client.enable_logger(_PahoLogger(lambda: self._closed))
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(round(self.cfg.reconnect_max_backoff_s))))
        client.will_set(self.availability_topic, AVAILABILITY_OFFLINE, qos=1, retain=True)
        client.on_connect = self._guard("on_connect", self._on_connect)
        client.on_connect_fail = self._guard("on_connect_fail", self._on_connect_fail)
        client.on_disconnect = self._guard("on_disconnect", self._on_disconnect)
        client.on_subscribe = self._guard("on_subscribe", self._on_subscribe)
        client.on_publish = self._guard("on_publish", self._on_publish)
        client.on_message = self._guard("on_message", self._on_message)
        return client

    def _configure_security(self) -> None:
        password = resolve_password(self.cfg, self.config_dir)
        if self.cfg.username is not None:
            self._client.username_pw_set(self.cfg.username, password)
        elif password is not None:
            raise UserFacingError("mqtt: a password is configured but no username")
        tls = self.cfg.tls
        if tls is not None:
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(tls, name)
                if value is not None and not Path(value).expanduser().is_file():
                    raise UserFacingError(f"mqtt.tls.{name}: file {value} does not exist")
            self._client.tls_set(
                ca_certs=tls.ca_file,
                certfile=tls.cert_file,
                keyfile=tls.key_file,
            )
            if tls.insecure_skip_verify:
                log.warning("mqtt.tls.insecure_skip_verify is on: the broker's certificate name is not checked")
                self._client.tls_insecure_set(True)

    def _guard(self, name: str, fn: Callable[..., None]) -> Callable[..., None]:
        """Wrap a paho callback so that no exception can reach (and end) the network loop."""

        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except Exception:  # noqa: BLE001 - see module docstring: the loop must survive
                self._stats.callback_errors += 1
                log.exception("MQTT callback %s failed; the network loop keeps running", name)

        return wrapper

    # -- public API ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected and self._client.is_connected()

    @property
    def ready(self) -> bool:
        """Connected and subscribed to lane commands (SUBACK received): commands sent now arrive."""
        return self._ready and self.connected

    @property
    def stats(self) -> PublisherStats:
        snap = dataclasses.replace(self._stats)
        snap.queued = len(self.outbox)
        snap.dropped = self.outbox.dropped
        snap.commands_accepted = self._commands.accepted
        snap.commands_rejected = self._commands.rejected
        snap.disk_full = self.outbox.disk_full
        snap.events_in_memory = self.outbox.in_memory
        return snap

    def start(self) -> None:
        """Connect in the background (retrying with exponential backoff) and start sending."""
        if self._started:
            return
        self._configure_security()
        self._started = True
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._sender_main, name="storesense-mqtt-sender", daemon=True)
        self._sender.start()
        log.info("MQTT publisher for %s connecting to %s:%d as %s", self.topics.base, self.cfg.host,
                 self.cfg.port, self.client_id)

    def emit(self, messages: Sequence[Message]) -> None:
        events: list[tuple[str, bytes, int]] = []
        with self._lock:
            for m in messages:
                routed = self._route(m)
                data = self._encode(m, routed.topic) if routed is not None else None
                if routed is None or data is None:
                    continue
                if routed.retain:
                    self._state[routed.topic] = (data, routed.qos)
                    self._dirty.pop(routed.topic, None)
                    self._dirty[routed.topic] = None
                    self._note_lane(routed.topic)
                elif routed.qos >= 1:
                    events.append((routed.topic, data, 1))
                elif self._ready:
                    self._volatile.append((routed.topic, data))
        if events:
            self.outbox.put_many(events)
        self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Drain the outbox (up to ``timeout_s``), publish ``stopped``, disconnect cleanly.

        ``stopped`` goes out last, after the drain, so a consumer that sees it knows every
        event sent before it has been delivered (or is still in the outbox file for next time).
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        if self._started:
            if self._generation > 0:  # was connected at least once: worth waiting for the drain
                while time.monotonic() < deadline - 0.5 and (len(self.outbox) or self._volatile or self._dirty):
                    self._wake.set()
                    time.sleep(0.05)
            self._stop.set()
            self._wake.set()
            if self._sender is not None:
                self._sender.join(timeout=max(0.5, deadline - time.monotonic()))
            self._collect_acks()
            if self.connected:
                info = self._client.publish(self.availability_topic, AVAILABILITY_STOPPED, qos=1, retain=True)
                self._stats.published += 1
                try:
                    info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    log.warning("could not publish availability 'stopped': %s", exc)
            self._client.disconnect()
            self._client.loop_stop()
        left = len(self.outbox)
        if left:
            log.warning("MQTT publisher closed with %d event(s) still in the outbox %s; they are sent on the next start",
                        left, self.outbox.path)
        self.outbox.close()
        log.info("MQTT publisher closed: %s", self.stats)

    # -- emit helpers (called with self._lock held) ---------------------------------------------
    def _route(self, m: Message) -> Routing | None:
        try:
            return self.topics.route(m)
        except ValueError as exc:
            self._refuse(m, f"no valid topic ({exc})")
            return None

    def _encode(self, m: Message, topic: str) -> bytes | None:
        if not topic or "+" in topic or "#" in topic or topic.startswith("/"):
            self._refuse(m, "topic is empty, starts with '/' or contains a wildcard")
            return None
        reason = find_image_data(m.payload)
        if reason:
            self._refuse(m, f"privacy guard: {reason}")
            return None
        try:
            return json.dumps(m.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            self._refuse(m, f"payload is not JSON-serialisable ({exc})")
            return None

    def _refuse(self, m: Message, reason: str) -> None:
        self._stats.refused += 1
        log.error("refused to publish a %s message for %r: %s (%d refused so far)", m.kind, m.entity_id, reason,
                  self._stats.refused)

    def _note_lane(self, topic: str) -> None:
        prefix = f"{self.topics.base}/lane/"
        if topic.startswith(prefix) and topic.endswith("/state"):
            lane = topic[len(prefix) : -len("/state")]
            if "/" not in lane:
                self._seen_lanes.add(lane)

    def _known_lanes(self) -> set[str]:
        with self._lock:
            lanes = set(self._seen_lanes)
        if self._known_lanes_cfg is not None:
            lanes |= self._known_lanes_cfg
        return lanes

    # -- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            hint = ""
            if self._v5 and str(reason_code) in ("Unsupported protocol version", "Unacceptable protocol version"):
                hint = ' (the broker does not speak MQTT 5: set mqtt.protocol: "3.1.1" in the store config)'
            log.warning("broker %s:%d refused the connection: %s%s", self.cfg.host, self.cfg.port, reason_code, hint)
            return
        self._stats.connects += 1
        if self._stats.connects > 1:
            self._stats.reconnects += 1
        self._connected = True
        self._connected_mono_s = time.monotonic()
        self._down_logged = False
        log.info("connected to MQTT broker %s:%d (%s)", self.cfg.host, self.cfg.port,
                 "reconnect" if self._stats.connects > 1 else "first connection")
        # the SUBACK (see _on_subscribe) tells the sender that paho's own re-sends are queued
        _rc, mid = client.subscribe(self.topics.all_lane_sets(), qos=1)
        self._sub_mid = mid

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if mid != self._sub_mid:
            return
        for rc in reason_codes or []:
            if getattr(rc, "is_failure", False):
                log.warning("broker refused the lane command subscription (%s): lane commands will not arrive", rc)
        self._ready = True
        self._generation += 1
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._down_logged:
            log.warning("MQTT broker %s:%d unreachable; retrying with backoff up to %.0f s (events wait in %s)",
                        self.cfg.host, self.cfg.port, self.cfg.reconnect_max_backoff_s, self.outbox.path)
            self._down_logged = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was = self._connected
        self._connected = False
        self._ready = False
        if was and not self._closed:
            log.warning("disconnected from MQTT broker (%s); reconnecting", reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._acked_lock:
            self._acked_mids.add(int(mid))
        if getattr(reason_code, "is_failure", False):
            self._stats.rejected += 1
            log.error("broker rejected message mid %d: %s (check the ACL for this device)", mid, reason_code)
        else:
            self._stats.last_ack_mono_s = time.monotonic()
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._commands.handle(message.topic, bytes(message.payload), retained=bool(message.retain))

    # -- sender thread -------------------------------------------------------------------------
    def _sender_main(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_TICK_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._watchdog()
                self._collect_acks()
                if self._ready and self.connected:
                    if self._handled_generation != self._generation:
                        self._handled_generation = self._generation
                        self._after_connect()
                    self._update_edge_status()
                    self._send_state()
                    self._send_volatile()
                    self._send_events()
            except Exception:  # noqa: BLE001 - the sender must keep running; the error is logged
                self._stats.callback_errors += 1
                log.exception("MQTT sender iteration failed; retrying")
                time.sleep(_TICK_S)

    def _watchdog(self) -> None:
        """Restart paho's network thread if an exception (or anything else) ended it."""
        if self._stop.is_set() or not self._started:  # still watching while close() drains
            return
        if self._client.loop_start() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._stats.loop_restarts += 1
            log.error("MQTT network thread had stopped (is_connected()=%s); watchdog restarted it",
                      self._client.is_connected())

    def _after_connect(self) -> None:
        for topic, data in self._retained_on_connect:
            self._publish(topic, data, qos=1, retain=True, expire=False)
        self._publish(self.availability_topic, AVAILABILITY_ONLINE.encode(), qos=1, retain=True, expire=False)
        now = time.monotonic()
        with self._lock:
            for topic in self._state:
                self._dirty[topic] = None
            for f in self._inflight:  # paho re-sent these after CONNACK; restart their clocks
                f.sent_mono_s = now
            self._volatile.clear()
        log.info("MQTT link ready: availability online, %d retained state topic(s) re-published, %d event(s) queued",
                 len(self._state), len(self.outbox))

    def _update_edge_status(self) -> None:
        """``{base}/edge/{device}/status``: storage ok or disk_full, and what was dropped.

        Published when it changes and every ``EDGE_STATUS_INTERVAL_S`` while something is wrong
        (live state with expiry: once all is well again it ages out, and absence means ok)."""
        extra = self._status_extra() if self._status_extra is not None else {}
        storage = "disk_full" if self.outbox.disk_full or extra.get("history_disk_full") else "ok"
        key = (storage, self.outbox.dropped, int(extra.get("history_dropped", 0)))
        now = time.monotonic()
        if key == self._status_key and (storage == "ok" or now - self._status_mono < EDGE_STATUS_INTERVAL_S):
            return
        self._status_key, self._status_mono = key, now
        payload = EdgeStatus(
            store_id=self.topics.store,
            device_id=self.device_id,
            timestamp_s=time.time(),
            storage=storage,
            events_in_memory=self.outbox.in_memory,
            events_dropped=self.outbox.dropped,
            history_dropped=int(extra.get("history_dropped", 0)),
            outbox_queued=len(self.outbox),
        ).to_dict()
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        topic = self.topics.edge_status(self.device_id)
        with self._lock:
            self._state[topic] = (data, 1)
            self._dirty.pop(topic, None)
            self._dirty[topic] = None

    def _send_state(self) -> None:
        while True:
            with self._lock:
                if not self._dirty:
                    return
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                data, qos = self._state[topic]
            self._publish(topic, data, qos=qos, retain=True, expire=True)

    def _send_volatile(self) -> None:
        with self._lock:
            items, self._volatile = self._volatile, []
        for topic, data in items:
            self._publish(topic, data, qos=0, retain=False, expire=False)

    def _send_events(self) -> None:
        now = time.monotonic()
        if self._inflight and now - self._inflight[0].sent_mono_s > self._inflight_timeout_s:
            log.warning("no PUBACK for outbox event %d after %.0f s; re-sending from the oldest unacknowledged event",
                        self._inflight[0].row.id, self._inflight_timeout_s)
            self._inflight.clear()
            self._cursor = 0
        if self.outbox.rewind:  # the outbox reopened its file below our cursor (started on a full disk)
            self.outbox.rewind = False
            self._inflight.clear()
            self._cursor = 0
        room = SEND_WINDOW - len(self._inflight)
        if room <= 0:
            return
        for row in self.outbox.peek(after_id=self._cursor, limit=room):
            info = self._publish(row.topic, row.payload, qos=row.qos, retain=False, expire=False)
            self._inflight.append(_InFlight(row, info, now))
            self._cursor = row.id

    def _collect_acks(self) -> None:
        # Runs on the sender thread after any _publish of this tick has been added to _inflight,
        # so an ack that raced ahead of that append is still in the set; acks of state and
        # availability publishes (not in flight) are dropped here, which keeps the set small.
        with self._acked_lock:
            acked, self._acked_mids = self._acked_mids, set()
        done = [f for f in self._inflight if f.info.mid in acked]
        if not done:
            return
        self._inflight = [f for f in self._inflight if f.info.mid not in acked]
        self.outbox.ack([f.row.id for f in done])
        self._stats.acked += len(done)

    def _publish(self, topic: str, data: bytes, *, qos: int, retain: bool, expire: bool) -> mqtt.MQTTMessageInfo:
        props = None
        if expire and self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = int(self.cfg.state_expiry_s)
        info = self._client.publish(topic, data, qos=qos, retain=retain, properties=props)
        self._stats.published += 1
        return info
