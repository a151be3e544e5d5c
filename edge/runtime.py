"""Multi-camera runtime: every camera of a store in one service, one shared detector.

Model: a capture thread per live camera (newest frame only), and a single analysis loop that
visits the cameras round-robin and runs detect → track → analytics on whichever camera has a
frame due at its own analysis fps. One loop means tracking and analytics need no locks. A
failure while processing one camera's frame is logged and counted against that camera; the
others carry on.

With ``model.parallel_frames`` > 1 the detector is an ``edge.inference.ParallelDetector``: the
loop hands due frames to its worker threads (up to one more than there are workers, so a frame
is ready when a worker frees up) and tracks the results in the order the frames were taken, so
each camera's tracker still sees its frames in order. Frames are taken round-robin, one per
camera per pass: a busy camera cannot starve the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2

from edge.config import CameraConfig, ConfigError, StoreConfig
from edge.contract import Detections, Frame, Message, Tracks
from edge.host import release_free_memory
from edge.inference import ParallelDetector
from edge.payloads import CameraStatus
from edge.pipeline import CameraPipeline, Detector, DetectResult, IdleGate, StageTimer, detect_batch
from edge.sinks import Sink
from edge.sources import FileSource, LiveSource, PendingSource, Source, SourceError, SourceState, SourceStats

log = logging.getLogger("storesense.runtime")

STATUS_INTERVAL_S = 10.0
# glibc keeps freed frame buffers resident (edge.host.release_free_memory); trimming this often
# costs a few ms a minute and keeps RSS at what the edge uses (docs/operations.md §8)
MEMORY_TRIM_INTERVAL_S = 60.0
MAX_PENDING_COMMANDS = 1000
# a live camera is overloaded when the box drops more than this share of its due frames over a
# window, and keeps up again below half of it (hysteresis: one line each way, not one per window)
OVERLOAD_DROPPED_SHARE = 0.10
OVERLOAD_WINDOW_S = 60.0


class Analytics(Protocol):
    def update(self, tracks: Tracks) -> list[Message]: ...

    def set_lane_state(self, lane_id: str, state: str, timestamp_s: float) -> list[Message]: ...

    def finish(self, timestamp_s: float) -> list[Message]: ...


@dataclass
class OverloadWatch:
    """Says when a live camera starts, and stops, losing due frames because the box cannot keep up.

    Why: above capacity nothing fails. Each camera is analysed at, say, 3.9 of its 5 frames/s,
    frame-to-MQTT latency rises and service timings get coarser, and only a counter
    (``frames_dropped``) shows it. The person sizing the box needs one line in the journal saying
    which camera, how much and what to do, and one when it recovers; Prometheus alerts on the
    same counters (``StoreSenseOverloaded``)."""

    window_s: float = OVERLOAD_WINDOW_S
    share: float = OVERLOAD_DROPPED_SHARE
    overloaded: bool = False
    _since: tuple[float, int, int] | None = None  # (monotonic s, analysed, dropped) at the window's start

    def update(self, now_s: float, analysed: int, dropped: int) -> tuple[bool, float, float] | None:
        """Feed the camera's counters; returns ``(overloaded, dropped share, window s)`` when the
        verdict changes at the end of a window, else None."""
        if self._since is None:
            self._since = (now_s, analysed, dropped)
            return None
        t0, a0, d0 = self._since
        if now_s - t0 < self.window_s:
            return None
        self._since = (now_s, analysed, dropped)
        due = (analysed - a0) + (dropped - d0)
        share = (dropped - d0) / due if due > 0 else 0.0
        now_overloaded = share > self.share if not self.overloaded else share > self.share / 2
        if now_overloaded == self.overloaded:
            return None
        self.overloaded = now_overloaded
        return now_overloaded, share, now_s - t0


@dataclass
class CameraWorker:
    """One camera: its source, its tracker (inside ``pipeline``) and its status."""

    camera: CameraConfig
    pipeline: CameraPipeline
    source: Source
    errors: int = 0
    last_error: str = ""
    finished: bool = False
    state: SourceState = "starting"
    reason: str = ""
    last_timestamp_s: float | None = None
    reference_saved: bool = False
    _status_counts: tuple[float, int] = (0.0, 0)
    overload: OverloadWatch = field(default_factory=OverloadWatch)

    @property
    def started(self) -> bool:
        """False while the camera's source has never opened (it stays 'error', retried)."""
        return not isinstance(self.source, PendingSource) or self.source.opened is not None

    def next_frame(self) -> Frame | None:
        """The next frame to analyse now, or None (nothing due yet, or the source has ended)."""
        t0 = time.perf_counter()
        frame = self.source.next_frame()
        stats = self.source.stats
        self.state, self.reason = stats.state, stats.reason
        if frame is None:
            self.finished = stats.state == "ended"
            return None
        self.pipeline.timer.add("decode", (time.perf_counter() - t0) * 1e3)
        return frame

    @property
    def stats(self) -> SourceStats:
        return self.source.stats

    def close(self) -> None:
        self.source.close()
        if self.pipeline.flow is not None:
            self.pipeline.flow.close()


def open_worker(
    cfg: StoreConfig,
    camera: CameraConfig,
    detector: Detector,
    tracker: Any,
    *,
    realtime: bool = False,
    loop: bool = False,
    fps_override: float | None = None,
    source_override: str | None = None,
    start_epoch_s: float | None = None,
    tolerate_errors: bool = False,
    setup_reports: bool = True,
) -> CameraWorker:
    """``setup_reports=False``: an audit or a benchmark, which must not write the store's /setup
    files (static places, track flow)."""
    idle = IdleGate(camera.idle_refresh_s) if camera.idle_refresh_s is not None else None
    pipeline = CameraPipeline(camera.id, detector, tracker, StageTimer(), idle,
                              scenery=build_scenery(cfg, camera), staff=build_staff_stage(cfg),
                              flow=build_track_flow(cfg, camera))
    if not setup_reports:
        for stage in (pipeline.scenery, pipeline.flow):
            if stage is not None:
                stage.report_path = None
    source = source_override if source_override is not None else camera.source
    is_live = source_override is None and camera.is_live
    if is_live:
        live = LiveSource(camera.id, source, max_backoff_s=camera.reconnect_max_backoff_s,
                          read_timeout_s=camera.read_timeout_s, analysis_fps=camera.fps).start()
        return CameraWorker(camera, pipeline, live)
    path = Path(str(source)) if source_override is not None else cfg.resolve_path(str(source))

    def open_file() -> FileSource:
        return FileSource(
            camera.id,
            path,
            fps_override=fps_override if fps_override is not None else camera.source_fps,
            start_epoch_s=start_epoch_s,
            loop=loop,
            analysis_fps=camera.fps,
            realtime=realtime,
        )

    def open_prepared() -> FileSource:
        src = open_file()
        prepare = getattr(detector, "prepare", None)
        if prepare is not None and min(src.frame_size_px) > 0:
            try:
                prepare(*src.frame_size_px)
            except Exception as exc:  # noqa: BLE001 - the first frame tries again and reports it there
                log.warning("camera %s: could not open the detector for %dx%d frames yet: %s",
                            camera.id, *src.frame_size_px, exc)
        return src

    if not tolerate_errors:
        return CameraWorker(camera, pipeline, open_prepared())
    try:
        return CameraWorker(camera, pipeline, open_prepared())
    except SourceError as exc:
        # one camera that cannot start must not stop the store: it reports 'error' over MQTT
        # and is retried with backoff while the others run
        log.error("camera %s: cannot start: %s; retrying with backoff, the other cameras run", camera.id, exc)
        pending = PendingSource(camera.id, open_file, str(exc), camera.reconnect_max_backoff_s)
        worker = CameraWorker(camera, pipeline, pending)
        worker.state, worker.reason, worker.errors, worker.last_error = "error", str(exc), 1, str(exc)
        return worker


def in_flight_capacity(workers: int, *, live: bool) -> int:
    """Frames the loop keeps taken ahead of their tracking: one per detector worker, plus one
    queued so a worker never waits for the loop, unless a camera is live. A live frame queued
    behind busy workers is taken one inference before it is detected, and that wait is pure
    frame-to-MQTT latency: with 12 live cameras on 2 workers, p95 went 164-174 → 143-157 ms
    without it, at the same frames/s (README, Benchmarks)."""
    return workers if live else workers + 1


@dataclass
class RunSummary:
    frames_processed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    frames_corrupt: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    wall_s: float = 0.0
    timers: dict[str, StageTimer] = field(default_factory=dict)


class Runtime:
    """Runs the analysis loop until every file ends or ``stop()`` is called (SIGTERM/SIGINT)."""

    def __init__(
        self,
        cfg: StoreConfig,
        workers: Sequence[CameraWorker],
        sink: Sink,
        analytics: Analytics | None,
        *,
        on_tracks: Callable[[Tracks, Frame], None] | None = None,
        save_reference_frames: bool = True,
        heartbeat: Callable[[], object] | None = None,
    ) -> None:
        self.cfg = cfg
        self.workers = list(workers)
        self.sink = sink
        self.analytics = analytics
        self.on_tracks = on_tracks
        self.save_reference_frames = save_reference_frames
        # called once per loop iteration: the systemd watchdog ping, so a hung loop gets restarted
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        # newest commands win: a deque with maxlen drops the oldest when a flood fills it
        self._commands: deque[tuple[str, str]] = deque(maxlen=MAX_PENDING_COMMANDS)
        self._commands_lock = threading.Lock()
        self.commands_dropped = 0
        self._last_status_mono: dict[str, float] = {}
        self._last_state: dict[str, str] = {}
        self.summary = RunSummary()
        self.sink_errors = 0
        # frames on the detector's worker threads, in the order they were taken
        self._parallel = next((w.pipeline.detector for w in self.workers
                               if isinstance(w.pipeline.detector, ParallelDetector)), None)
        # (camera, frame, its detections or their future, the source's (state, reason) with it);
        # frame None: a state change queued behind that camera's frames
        self._in_flight: deque[tuple[CameraWorker, Frame | None, Future[DetectResult] | Detections | None,
                                     tuple[SourceState, str]]] = deque()
        self._next_camera = 0
        self._trimmed_mono = time.monotonic()

    # -- control, thread-safe ----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def submit_lane_command(self, lane_id: str, state: str) -> None:
        """Called from the MQTT thread; applied in the analysis loop (analytics are single-threaded)."""
        with self._commands_lock:
            full = len(self._commands) == self._commands.maxlen
            if full:
                old_lane, old_state = self._commands[0]
                self.commands_dropped += 1
            self._commands.append((lane_id, state))
        if full and (self.commands_dropped == 1 or self.commands_dropped % 100 == 0):
            log.warning("lane command queue full (%d pending); dropped the oldest, %s=%s (%d dropped so far)",
                        MAX_PENDING_COMMANDS, old_lane, old_state, self.commands_dropped)

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        t_start = time.monotonic()
        for w in self.workers:
            self._emit_status(w, force=True)
        try:
            if self._parallel is not None and not self.cfg.model.batch_cameras:
                self._run_parallel(self._parallel)
                return self.summary
            while not self._stop.is_set():
                self._apply_commands()
                # one frame per camera per tick: a busy camera cannot starve the others
                due: list[tuple[CameraWorker, Frame]] = []
                for w in self.workers:
                    if w.finished:
                        continue
                    frame = w.next_frame()
                    if frame is None:
                        if w.finished:
                            self._emit_status(w, force=True)
                        continue
                    due.append((w, frame))
                worked = bool(due)
                self._process_tick(due)
                for w in self.workers:
                    self._emit_status(w)
                self._housekeeping()
                if self._all_done():
                    break
                if not worked:
                    self._stop.wait(0.005)
        finally:
            self._finish()
            self.summary.wall_s = time.monotonic() - t_start
        return self.summary

    def _run_parallel(self, detector: ParallelDetector) -> None:
        """The loop with frames in flight on the detector's workers (module docstring)."""
        capacity = in_flight_capacity(detector.workers, live=any(w.source.drops_frames for w in self.workers))
        try:
            while not self._stop.is_set():
                self._apply_commands()
                taken = self._take_frames(capacity)
                finished = self._finish_ready(block=self._frames_in_flight() >= capacity or not taken)
                for w in self.workers:
                    self._emit_status(w)
                self._housekeeping()
                if not self._in_flight and self._all_done():
                    break
                if not taken and not finished and not self._in_flight:
                    self._stop.wait(0.005)
        finally:
            # frames already taken are analysed, not dropped, when the run stops
            while self._in_flight:
                self._finish_ready(block=True)

    def _housekeeping(self) -> None:
        """Once per loop pass: the watchdog ping, and now and then the malloc trim."""
        if self.heartbeat is not None:
            self.heartbeat()
        now = time.monotonic()
        if now - self._trimmed_mono >= MEMORY_TRIM_INTERVAL_S:
            self._trimmed_mono = now
            release_free_memory()

    def _frames_in_flight(self) -> int:
        return sum(1 for _, frame, _, _ in self._in_flight if frame is not None)

    def _take_frames(self, capacity: int) -> int:
        """One due frame per camera per pass, starting after the camera that went first last
        time, until ``capacity`` frames are in flight.

        A camera's source state (running, ended, reconnecting...) is shown when the frames taken
        before it are analysed, in order: a status never reports a state with earlier frames
        still uncounted (an 'ended' camera reports every frame)."""
        taken = 0
        n = len(self.workers)
        start = self._next_camera
        in_flight = self._frames_in_flight()
        for k in range(n):
            if in_flight >= capacity:
                break
            w = self.workers[(start + k) % n]
            if w.finished:
                continue
            shown = (w.state, w.reason)
            frame = w.next_frame()
            seen = (w.state, w.reason)
            queued = any(q is w for q, *_ in self._in_flight)
            if frame is None:
                if queued and (seen != shown or w.finished):
                    w.state, w.reason = shown
                    self._in_flight.append((w, None, None, seen))  # a state change, in order
                elif w.finished:
                    self._emit_status(w, force=True)
                continue
            w.state, w.reason = shown  # shown once this frame is analysed
            self._next_camera = (start + k + 1) % n
            reused = w.pipeline.reuse_detections(frame)
            if reused is not None:
                self._in_flight.append((w, frame, reused, seen))
            else:
                detector: Any = w.pipeline.detector  # a ParallelDetector (checked in __init__)
                self._in_flight.append((w, frame, detector.submit(frame.image), seen))
            taken += 1
            in_flight += 1
        return taken

    def _finish_ready(self, block: bool) -> int:
        """Track the frames at the head of the queue whose detections are ready; with ``block``,
        wait for the first one (briefly: a stop or a new frame should not wait long)."""
        done = 0
        while self._in_flight:
            w, frame, pending, seen = self._in_flight[0]
            if isinstance(pending, Future) and not pending.done():
                if not block or done:
                    break
                wait([pending], timeout=0.05, return_when=FIRST_COMPLETED)
                if not pending.done():
                    break
            self._in_flight.popleft()
            w.state, w.reason = seen
            if frame is None:  # a state change queued behind this camera's frames
                if w.finished:
                    self._emit_status(w, force=True)
                continue
            if isinstance(pending, Detections):
                self._process(w, frame, pending)
            elif pending is not None:
                try:
                    result = pending.result()
                except Exception as exc:  # the same accounting as a failure in _process
                    w.errors += 1
                    w.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("camera %s: frame %d failed in the detector: %s", w.camera.id, frame.index,
                              w.last_error, extra={"camera": w.camera.id})
                    continue
                w.pipeline.add_detect_times(result.preprocess_ms, result.inference_ms, result.postprocess_ms)
                self._process(w, frame, result.detections)
            done += 1
        return done

    def _all_done(self) -> bool:
        """Every camera finished; a camera that never started does not keep a run of files alive
        once the others are done (it is counted as an error), but alone it is retried for ever."""
        pending = [w for w in self.workers if not w.finished]
        if not pending:
            return True
        return all(not w.started for w in pending) and any(w.finished for w in self.workers)

    def _process_tick(self, due: list[tuple[CameraWorker, Frame]]) -> None:
        """Cameras due in the same tick whose frames share an input geometry go through one
        batched ``session.run`` (``model.batch_cameras``); the others one by one."""
        singles = due
        if self.cfg.model.batch_cameras and len(due) > 1:
            singles = [(w, f) for w, f in due if w.pipeline.skip_detection(f)]  # idle: no detector
            rest = [(w, f) for w, f in due if not any(w is s for s, _ in singles)]
            for group in _batchable_groups(rest):
                if len(group) == 1:
                    singles.extend(group)
                    continue
                try:
                    dets = detect_batch(group[0][0].pipeline.detector, [w.pipeline for w, _ in group],
                                        [f for _, f in group])
                except Exception:  # the batch failed: give every camera its own chance
                    log.exception("batched inference of %d cameras failed; running them one by one", len(group))
                    singles.extend(group)
                    continue
                for (w, frame), d in zip(group, dets, strict=True):
                    self._process(w, frame, d)
        for w, frame in singles:
            self._process(w, frame)

    def _process(self, w: CameraWorker, frame: Frame, detections: Detections | None = None) -> None:
        cam = w.camera.id
        try:
            tracks = w.pipeline.process(frame) if detections is None else w.pipeline.track(frame, detections)
            w.last_timestamp_s = frame.timestamp_s
            if self.save_reference_frames and not w.reference_saved:
                self._save_reference(w, frame)
            messages: list[Message] = []
            if self.analytics is not None:
                t0 = time.perf_counter()
                messages = self.analytics.update(tracks)
                w.pipeline.timer.add("analytics", (time.perf_counter() - t0) * 1e3)
            if self.on_tracks is not None:
                self.on_tracks(tracks, frame)
        except Exception as exc:  # one bad frame or camera must not stop the store
            w.errors += 1
            w.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: frame %d failed", cam, frame.index, extra={"camera": cam})
            return
        self._emit(messages)

    def _emit(self, messages: list[Message]) -> None:
        if not messages:
            return
        try:
            self.sink.emit(messages)
            self.summary.messages += len(messages)
        except Exception:
            self.sink_errors += 1
            log.exception("sink failed for %d message(s)", len(messages))

    def _apply_commands(self) -> None:
        while True:
            with self._commands_lock:
                if not self._commands:
                    return
                lane_id, state = self._commands.popleft()
            if self.analytics is None:
                continue
            ts = max((w.last_timestamp_s or 0.0 for w in self.workers), default=0.0) or time.time()
            try:
                self._emit(self.analytics.set_lane_state(lane_id, state, ts))
            except Exception as exc:
                log.warning("lane command %s=%s rejected: %s", lane_id, state, exc)

    def _save_reference(self, w: CameraWorker, frame: Frame) -> None:
        """First frame of each camera, kept on the box for heatmap backgrounds; never published."""
        w.reference_saved = True
        try:
            path = self.cfg.data_path("reference", f"{w.camera.id}.jpg")
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), frame.image)
        except Exception as exc:
            log.warning("camera %s: could not save reference frame: %s", w.camera.id, exc)

    def _emit_status(self, w: CameraWorker, force: bool = False) -> None:
        now = time.monotonic()
        last = self._last_status_mono.get(w.camera.id)
        state = w.state
        changed = self._last_state.get(w.camera.id) != state
        if not force and not changed and last is not None and now - last < STATUS_INTERVAL_S:
            return
        self._last_state[w.camera.id] = state
        prev_mono, prev_frames = w._status_counts
        frames = w.pipeline.frames_processed
        fps = (frames - prev_frames) / (now - prev_mono) if prev_mono and now > prev_mono else 0.0
        w._status_counts = (now, frames)
        self._last_status_mono[w.camera.id] = now
        st = w.stats
        status = CameraStatus(
            store_id=self.cfg.store.id,
            camera_id=w.camera.id,
            timestamp_s=w.last_timestamp_s if w.last_timestamp_s is not None else time.time(),
            state=state,
            fps_measured=round(fps, 2),
            analysis_fps=w.camera.fps,
            frames_total=frames,
            frames_dropped=int(st.frames_skipped) if w.source.drops_frames else 0,
            frames_corrupt=int(st.frames_corrupt),
            reconnects=int(st.reconnects),
            errors=w.errors,
            last_error=w.last_error,
            reason=w.reason,
        )
        self._emit([Message("camera_status", w.camera.id, status.to_dict(), "state")])
        if w.source.drops_frames and state == "running":
            self._watch_overload(w, now, frames, status.frames_dropped)

    def _watch_overload(self, w: CameraWorker, now_s: float, analysed: int, dropped: int) -> None:
        verdict = w.overload.update(now_s, analysed, dropped)
        if verdict is None:
            return
        overloaded, share, window_s = verdict
        if overloaded:
            log.warning(
                "camera %s: the box cannot keep up: %.0f%% of the frames due at %g frames/s were dropped over "
                "the last %.0f s; latency grows and timings get coarser. Give this box fewer cameras, a lower "
                "cameras[].fps or a lighter model (README, 'Sizing a box')",
                w.camera.id, share * 100, w.camera.fps, window_s, extra={"camera": w.camera.id},
            )
        else:
            log.info("camera %s: keeps up again (%.0f%% of due frames dropped over the last %.0f s)",
                     w.camera.id, share * 100, window_s, extra={"camera": w.camera.id})

    def _finish(self) -> None:
        if self.analytics is not None:
            ts = max((w.last_timestamp_s or 0.0 for w in self.workers), default=0.0) or time.time()
            try:
                self._emit(self.analytics.finish(ts))
            except Exception:
                log.exception("analytics finish failed")
        for w in self.workers:
            if not w.finished and w.started:  # a camera that never started stays 'error'
                w.state, w.reason = "ended", "stopped"
            self._emit_status(w, force=True)
            self.summary.frames_processed[w.camera.id] = w.pipeline.frames_processed
            self.summary.errors[w.camera.id] = w.errors
            self.summary.frames_corrupt[w.camera.id] = int(w.stats.frames_corrupt)
            self.summary.timers[w.camera.id] = w.pipeline.timer
            w.close()
        if self._parallel is not None:
            self._parallel.close()


def _batchable_groups(due: list[tuple[CameraWorker, Frame]]) -> list[list[tuple[CameraWorker, Frame]]]:
    groups: dict[tuple[int, tuple[int, int]], list[tuple[CameraWorker, Frame]]] = {}
    for w, frame in due:
        det: Any = w.pipeline.detector  # batching needs OnnxDetector's geometry_for/can_batch
        hw = det.geometry_for(frame.width_px, frame.height_px) if hasattr(det, "can_batch") else None
        if hw is None or not det.can_batch(hw):
            groups[(id(w), (0, 0))] = [(w, frame)]
        else:
            groups.setdefault((id(det), hw), []).append((w, frame))
    return list(groups.values())


def parallel_frames(cfg: StoreConfig, *, throughput: bool = False) -> int:
    """Frames on the detector at once (``model.parallel_frames``). By default as many as there are
    threads when frames can be due together (several cameras, or ``throughput``: a file analysed
    as fast as it decodes), else 1: a single live camera gets every thread on each frame, the
    lowest latency. Batching cameras into one ``session.run`` is the other way to share the CPU,
    so ``batch_cameras`` keeps one frame at a time."""
    if cfg.model.parallel_frames is not None:
        return min(cfg.model.parallel_frames, cfg.model.threads)
    if cfg.model.batch_cameras or not (throughput or sum(c.enabled for c in cfg.cameras) > 1):
        return 1
    return cfg.model.threads


def build_detector(cfg: StoreConfig, *, throughput: bool = False) -> Detector:
    """The store's detector; with more than one frame in flight (:func:`parallel_frames`), one
    copy per worker thread, each with its share of ``model.threads``."""
    from edge.detector import OnnxDetector

    base = cfg.source_path.parent if cfg.source_path else None
    lanes = parallel_frames(cfg, throughput=throughput)
    model = cfg.model
    if lanes > 1:
        model = model.model_copy(update={"threads": max(1, cfg.model.threads // lanes)})
    if cfg.model.precision != "int8":
        copies = [OnnxDetector.from_config(model, base) for _ in range(lanes)]
    else:
        # int8 is calibrated on the store's own recordings when it has any (live cameras are not
        # sampled here: quantising must not wait for streams)
        videos = [cfg.resolve_path(str(c.source)) for c in cfg.cameras if not c.is_live]
        videos = [v for v in videos if v.is_file()]
        copies = [OnnxDetector.from_config(model, base, cfg.data_path(), videos or None) for _ in range(lanes)]
    if lanes == 1:
        return copies[0]
    log.info("detector: %d frames in flight, %d ORT thread(s) each", lanes, model.threads)
    return ParallelDetector(copies)


def build_staff_stage(cfg: StoreConfig) -> Any:
    """Staff identification from pixels (uniform, classifier) for one camera, or None when the
    config has no image-based method."""
    from edge.staff import StaffStage

    if not StaffStage.wanted(cfg.staff):
        return None
    return StaffStage(cfg.staff, cfg.source_path.parent if cfg.source_path else None)


def build_tracker(cfg: StoreConfig) -> Any:
    """The camera's tracker; score thresholds the config leaves unset are the model's (registry)."""
    from edge.tracker import ByteTracker
    from models.registry import score_thresholds

    s = score_thresholds(cfg.model)
    try:
        tracker_cfg = cfg.tracker.with_model_scores(s.high, s.new_track, s.low)
    except ValueError as exc:
        raise ConfigError([f"{cfg.source_path or 'store config'}: {exc}"]) from None
    return ByteTracker(tracker_cfg)


def build_scenery(cfg: StoreConfig, camera: CameraConfig) -> Any:
    """Per camera: ignore polygons and static-scenery suppression; the places found are written to
    ``data_dir/static/<camera>.json`` for /setup."""
    from edge.scenery import SceneryFilter

    report = cfg.resolve_path(cfg.data_dir) / "static" / f"{camera.id}.json"
    return SceneryFilter(cfg.tracker.static_after_s, camera.ignore, report_path=report)


def build_track_flow(cfg: StoreConfig, camera: CameraConfig) -> Any:
    """Per camera: where tracks are born and end over the last hour, written to
    ``data_dir/flow/<camera>.json`` for the /setup overlay (counts per cell only)."""
    from edge.track_flow import TrackFlow

    return TrackFlow(cfg.resolve_path(cfg.data_dir) / "flow" / f"{camera.id}.json", camera.id)


def build_analytics(cfg: StoreConfig) -> Analytics:
    from zones.analytics import StoreAnalytics

    return StoreAnalytics(cfg)


__all__ = [
    "CameraWorker",
    "Runtime",
    "RunSummary",
    "SourceError",
    "build_analytics",
    "build_detector",
    "build_scenery",
    "build_track_flow",
    "build_tracker",
    "open_worker",
    "parallel_frames",
]
