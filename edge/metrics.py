"""Prometheus ``/metrics`` for `storesense run`: what IT watches on a box.

Counters the runtime already keeps (frames, drops, reconnects, outbox) are read at scrape time
by a collector, so the analysis loop pays nothing for them; only the stage latencies are
observed as they happen (histograms need every sample). Names follow Prometheus conventions:
``_total`` counters, base units (seconds, bytes), one ``camera`` label per camera.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge.config import MetricsConfig
from edge.sources import SourceState

log = logging.getLogger("storesense.metrics")

# seconds: from a 1 ms tracker update to a 2.5 s stall of a decoder on a slow box
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CAMERA_STATES: tuple[str, ...] = get_args(SourceState)


class StoreCollector(Collector):
    """Reads the runtime's workers and the publisher when Prometheus scrapes."""

    def __init__(self, store_id: str, data_dir: Path, workers: Sequence[Any], publisher: Any | None,
                 runtime: Any | None = None) -> None:
        self.store_id = store_id
        self.data_dir = data_dir
        self.workers = list(workers)
        self.publisher = publisher
        self.runtime = runtime
        self.started_mono_s = time.monotonic()
        self._fps_prev: dict[str, tuple[float, int]] = {}
        self._fps: dict[str, float] = {}

    def collect(self) -> Iterable[Any]:
        yield InfoMetricFamily("storesense_store", "the store this box serves", value={"store": self.store_id})
        yield from self._cameras()
        yield from self._box()

    def _counter(self, name: str, doc: str, values: Iterable[tuple[str, float]]) -> CounterMetricFamily:
        fam = CounterMetricFamily(name, doc, labels=["camera"])
        for camera, value in values:
            fam.add_metric([camera], value)
        return fam

    def _cameras(self) -> Iterable[Any]:
        ws = [(w.camera.id, w) for w in self.workers]
        yield self._counter("storesense_camera_frames_analysed", "frames that went through detect, track and analytics",
                            ((c, w.pipeline.frames_processed) for c, w in ws))
        yield self._counter("storesense_camera_frames_dropped",
                            "live frames overwritten before analysis (the box could not keep up)",
                            ((c, w.stats.frames_skipped if w.source.drops_frames else 0) for c, w in ws))
        yield self._counter("storesense_camera_frames_corrupt", "frames that could not be decoded",
                            ((c, w.stats.frames_corrupt) for c, w in ws))
        yield self._counter("storesense_camera_reconnects", "times the stream was reopened",
                            ((c, w.stats.reconnects) for c, w in ws))
        yield self._counter("storesense_camera_errors", "frames whose processing failed",
                            ((c, w.errors) for c, w in ws))
        fps = GaugeMetricFamily("storesense_camera_analysis_fps", "frames analysed per second since the last scrape",
                                labels=["camera"])
        state = GaugeMetricFamily("storesense_camera_state", "1 for the camera's current state", labels=["camera", "state"])
        now = time.monotonic()
        for c, w in ws:
            fps.add_metric([c], self._rate(c, w.pipeline.frames_processed, now))
            current = str(w.state)
            for s in (*CAMERA_STATES, *(() if current in CAMERA_STATES else (current,))):
                state.add_metric([c, s], 1.0 if s == current else 0.0)
        yield fps
        yield state

    def _rate(self, camera: str, frames: int, now: float) -> float:
        prev = self._fps_prev.get(camera)
        if prev is None or now - prev[0] >= 1.0:  # scrapes closer than 1 s reuse the last rate
            if prev is not None:
                self._fps[camera] = (frames - prev[1]) / (now - prev[0])
            self._fps_prev[camera] = (now, frames)
        return self._fps.get(camera, 0.0)

    def _box(self) -> Iterable[Any]:
        try:
            free = float(shutil.disk_usage(self.data_dir).free)
        except OSError:
            free = float("nan")
        yield GaugeMetricFamily("storesense_data_dir_free_bytes", "free space where the outbox and history live",
                                value=free)
        if self.runtime is not None:
            yield CounterMetricFamily("storesense_messages", "messages produced by the analytics",
                                      value=self.runtime.summary.messages)
            yield CounterMetricFamily("storesense_sink_errors", "batches a sink failed to take",
                                      value=self.runtime.sink_errors)
        if self.publisher is None:
            return
        st = self.publisher.stats
        yield GaugeMetricFamily("storesense_mqtt_connected", "1 while connected to the broker",
                                value=1.0 if self.publisher.connected else 0.0)
        yield GaugeMetricFamily("storesense_outbox_depth", "durable events waiting for the broker", value=st.queued)
        yield CounterMetricFamily("storesense_events_published", "durable events the broker acknowledged",
                                  value=st.acked)
        yield CounterMetricFamily("storesense_events_dropped", "durable events dropped (outbox full)", value=st.dropped)
        yield CounterMetricFamily("storesense_mqtt_publishes", "PUBLISH packets sent (state, events, availability)",
                                  value=st.published)
        yield CounterMetricFamily("storesense_mqtt_reconnects", "reconnections to the broker", value=st.reconnects)
        last = st.last_ack_mono_s if st.last_ack_mono_s is not None else self.started_mono_s
        yield GaugeMetricFamily("storesense_last_publish_age_seconds",
                                "seconds since the broker last acknowledged a message (since start if never)",
                                value=time.monotonic() - last)


class StoreMetrics:
    """The registry, the latency histogram and the HTTP server of one `storesense run`."""

    def __init__(self, cfg: MetricsConfig) -> None:
        self.cfg = cfg
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "storesense_camera_stage_latency_seconds",
            "time per frame in each stage: decode, preprocess + inference + postprocess (detect), tracking, analytics",
            labelnames=["camera", "stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self._server: Any = None
        self.port: int | None = None

    def stage_observer(self, camera_id: str) -> Callable[[str, float], None]:
        """A StageTimer hook: milliseconds in, seconds into the camera's histogram."""
        children: dict[str, Any] = {}

        def observe(stage: str, ms: float) -> None:
            child = children.get(stage)
            if child is None:
                child = children[stage] = self.latency.labels(camera_id, stage)
            child.observe(ms / 1e3)

        return observe

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def start(self) -> bool:
        """Serve /metrics; a port in use is logged, never fatal (the cameras matter more)."""
        try:
            self._server, _thread = start_http_server(self.cfg.port, self.cfg.host, registry=self.registry)
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%d (%s); /metrics is off for this run",
                      self.cfg.host, self.cfg.port, exc.strerror or exc)
            return False
        self.port = int(self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", self.cfg.host, self.port)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
