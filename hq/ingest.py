"""``storesense hq ingest``: the chain's MQTT stream into PostgreSQL, nothing lost.

Delivery: one MQTT 5 session per ingester on the central broker, ``clean_start=False`` with a
long session expiry, QoS 1. Several ingesters split the load by store lists (``mqtt.stores``,
each a plain persistent subscription), or by a shared subscription (``mqtt.share_group``) on a
broker that queues for a group while none of its members is connected (Mosquitto 2.0 does not). paho runs with ``manual_ack=True``: a message's PUBACK is
sent only after the transaction holding its row has COMMITted. Until then the broker keeps it
in the session and sends it again after any crash (ingester SIGKILL, PostgreSQL restart,
broker restart with persistence on). The redelivered copy is absorbed by idempotent writes
(hq/store.py), so the outcome is exactly-once rows from at-least-once delivery.

Back-pressure: the broker sends at most ``receive_maximum`` unacknowledged messages (MQTT 5
Receive Maximum); the in-process queue is bounded by that window, so when PostgreSQL is slow
or down the broker holds the backlog (on disk, persistence), not this process's memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.errors import UserFacingError
from hq.config import HqConfig
from hq.messages import DeadLetter, Ignored, Row, classify
from hq.store import BatchResult, PgWriter
from mqtt_bridge.config import MqttConfig
from mqtt_bridge.publisher import resolve_password

log = logging.getLogger("storesense.hq")


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which MQTT connection delivered it: a PUBACK only ever goes back on that one


@dataclass
class IngestStats:
    received: int = 0
    committed: int = 0
    events_new: int = 0
    events_duplicate: int = 0
    state_samples: int = 0
    state_samples_duplicate: int = 0
    state_rows: int = 0
    availability_changes: int = 0
    heatmaps_new: int = 0
    dead_letters: int = 0
    ignored: int = 0
    batches: int = 0
    db_errors: int = 0
    connects: int = 0
    last_event_lag_s: float | None = None
    queue_depth: int = 0
    started_monotonic_s: float = field(default_factory=time.monotonic)

    def add(self, r: BatchResult) -> None:
        for f in fields(BatchResult):  # every batch counter, so a new one cannot be forgotten here
            if f.name != "max_event_lag_s":
                setattr(self, f.name, getattr(self, f.name) + getattr(r, f.name))
        if r.max_event_lag_s is not None:
            self.last_event_lag_s = r.max_event_lag_s


def subscription_topics(cfg: HqConfig) -> list[str]:
    m = cfg.mqtt
    if m.stores is not None:
        return [f"{m.prefix}/{s}/#" for s in m.stores]
    base = f"{m.prefix}/+/#"
    return [f"$share/{m.share_group}/{base}" if m.share_group else base]


class Ingester:
    def __init__(self, cfg: HqConfig) -> None:
        self.cfg = cfg
        self.stats = IngestStats()
        self.writer = PgWriter(cfg.postgres.dsn, cfg.postgres.retention_days)
        # the broker never has more than receive_maximum unacknowledged messages out, so this
        # bound is never hit in normal operation; if it were, put() blocks paho's network thread
        # (TCP back-pressure) rather than growing memory
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=cfg.mqtt.receive_maximum + 100)
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._client = self._make_client()

    # -- MQTT -----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if m.username:
            password = resolve_password(MqttConfig(password_env=m.password_env, password_file=m.password_file))
            client.username_pw_set(m.username, password)
        if m.tls is not None:
            client.tls_set(ca_certs=m.tls.ca_file, certfile=m.tls.cert_file, keyfile=m.tls.key_file)
            client.tls_insecure_set(m.tls.insecure_skip_verify)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.mqtt.session_expiry_s
        props.ReceiveMaximum = self.cfg.mqtt.receive_maximum
        return props

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.error("hq ingest: central broker refused the connection: %s", rc)
            return
        with self._gen_lock:
            self._generation += 1
        self.stats.connects += 1
        log.info("hq ingest: connected to %s:%d (session present: %s)", self.cfg.mqtt.host, self.cfg.mqtt.port,
                 flags.session_present)
        # retain_handling=1: retained messages only for a new subscription, not on every resume
        opts = SubscribeOptions(qos=1, retainHandling=1)
        client.subscribe([(t, opts) for t in subscription_topics(self.cfg)])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        if any(rc.is_failure for rc in rcs):
            log.error("hq ingest: the central broker refused the subscription %s: %s (ACL?)",
                      subscription_topics(self.cfg), rcs)
            return
        log.info("hq ingest: subscribed to %s", ", ".join(subscription_topics(self.cfg)))
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not self._stop.is_set():
            log.warning("hq ingest: lost the central broker (%s); paho reconnects, the session keeps the backlog", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        self.inbox.put(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))

    def _ack(self, items: list[Inbound]) -> None:
        # PUBACKs in the order the PUBLISHes arrived (MQTT requires it); messages of an earlier
        # connection are not acknowledged: the broker resends them and the writes absorb them
        with self._gen_lock:
            for it in items:
                if it.qos > 0 and it.generation == self._generation:
                    self._client.ack(it.mid, it.qos)

    # -- the writer loop --------------------------------------------------------------------------

    def _next_batch(self) -> list[Inbound]:
        ing = self.cfg.ingest
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + ing.batch_wait_s
        while len(batch) < ing.batch_max_messages:
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _classify(self, batch: list[Inbound]) -> list[Row]:
        now_s = time.time()
        ing, m = self.cfg.ingest, self.cfg.mqtt
        rows: list[Row] = []
        for it in batch:
            row = classify(it.topic, it.payload, prefix=m.prefix, now_s=now_s, accept_future_s=ing.accept_future_s,
                           retention_days=self.cfg.postgres.retention_days, state_metrics=ing.state_metrics)
            if isinstance(row, Ignored):
                self.stats.ignored += 1
                continue
            rows.append(row)
        return rows

    def _write_with_retry(self, rows: list[Row]) -> BatchResult | None:
        """Retry the same batch until it commits; nothing is acknowledged meanwhile."""
        backoff_s = 0.2
        while True:
            try:
                return self.writer.write(rows)
            except psycopg.OperationalError as exc:
                self.stats.db_errors += 1
                log.warning("hq ingest: PostgreSQL unavailable (%s); retrying the batch in %.1f s",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, backoff_s)
                self.writer.close()
            except psycopg.Error as exc:  # a row PostgreSQL refuses: park the batch row by row
                self.stats.db_errors += 1
                log.error("hq ingest: batch refused (%s); writing its rows one by one", exc)
                self.writer.close()
                return self._write_one_by_one(rows)
            if self._stop.wait(backoff_s):
                return None
            backoff_s = min(backoff_s * 2, self.cfg.postgres.reconnect_max_backoff_s)

    def _write_one_by_one(self, rows: list[Row]) -> BatchResult:
        total = BatchResult()
        for row in rows:
            try:
                r = self.writer.write([row])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                self.writer.close()
                r = self.writer.write([DeadLetter(getattr(row, "store_id", "?"), f"refused by PostgreSQL: {exc}",
                                                  repr(row).encode())])
            for k, v in asdict(r).items():
                if k != "max_event_lag_s":
                    setattr(total, k, getattr(total, k) + v)
        return total

    def run_writer(self) -> None:
        next_stats = time.monotonic() + self.cfg.ingest.stats_interval_s
        next_retention = time.monotonic()
        # on stop: the batch in hand is finished; what is still queued was never acknowledged and
        # the broker sends it again to this session
        while not self._stop.is_set():
            batch = self._next_batch()
            now = time.monotonic()
            if now >= next_retention and self.writer.conn is not None:
                try:
                    self.writer.apply_retention()
                except psycopg.Error as exc:
                    log.warning("hq retention failed (will retry): %s", exc)
                next_retention = now + 3600.0
            if now >= next_stats:
                self.log_stats()
                next_stats = now + self.cfg.ingest.stats_interval_s
            if not batch:
                continue
            result = self._write_with_retry(self._classify(batch))
            if result is None:  # stopping while PostgreSQL is down: the broker keeps the batch
                return
            self.stats.add(result)
            self.stats.batches += 1
            self.stats.committed += len(batch)
            self._ack(batch)

    def log_stats(self) -> None:
        self.stats.queue_depth = self.inbox.qsize()
        fields = {k: v for k, v in asdict(self.stats).items() if k != "started_monotonic_s"}
        log.info("hq ingest stats %s", " ".join(f"{k}={v}" for k, v in fields.items()), extra={"hq_stats": fields})

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.writer.connect()
        except psycopg.OperationalError as exc:
            raise UserFacingError(f"hq ingest: cannot reach PostgreSQL ({self.cfg.postgres.redacted_dsn()}): "
                                  f"{str(exc).strip()}") from None
        m = self.cfg.mqtt
        try:
            self._client.connect(m.host, m.port, keepalive=m.keepalive_s, clean_start=False,
                                 properties=self._connect_properties())
        except OSError as exc:
            log.warning("hq ingest: central broker %s:%d not reachable yet (%s); retrying", m.host, m.port, exc)
            self._client.connect_async(m.host, m.port, keepalive=m.keepalive_s, clean_start=False,
                                       properties=self._connect_properties())
        self._client.loop_start()

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()
        self.writer.close()
        self.log_stats()

    def run_forever(self) -> None:
        self.start()
        try:
            self.run_writer()
        finally:
            self.close()
