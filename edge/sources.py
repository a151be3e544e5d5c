"""Video sources: files (deterministic, every frame in order) and live streams (newest frame only).

Why two kinds: a recording must give the same tracks every time it is analysed, so a file is
read frame by frame and time comes from ``start + frame_index / fps``; a live camera must
never fall behind, so a capture thread keeps only the newest frame and the analysis takes
what is there. A live stream that drops reconnects with exponential backoff on its own
thread, so one broken camera never blocks the others.

Both implement :class:`Source`: the runtime asks ``next_frame()`` and never looks at which
kind it has. A source picks the frames due at its analysis fps itself, so frames that will not
be analysed are only ``grab``-bed (demuxed and decoded) and never ``retrieve``-d (no colour
conversion, no new image array).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import cv2
import numpy as np

from edge.contract import Frame
from edge.errors import UserFacingError
from edge.pipeline import FpsGate

log = logging.getLogger("storesense.sources")
# FFmpeg's probe of an RTSP stream waits for the stream's parameters, which cameras with long
# keyframe intervals ("smart" H.264+/H.265 codecs) send only every several seconds: an open is
# never cut shorter than this, so a healthy slow camera is not refused over and over
OPEN_TIMEOUT_MIN_MS = 10_000

SourceState = Literal["starting", "running", "stalled", "reconnecting", "ended", "error"]


class SourceError(UserFacingError):
    """A source that cannot be opened at all (wrong path, unsupported file)."""


def valid_image(image: object) -> bool:
    """A decoded frame we can analyse: a non-empty HxWx3 uint8 array (corrupt frames are not)."""
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] >= 8
        and image.shape[1] >= 8
    )


class Source(Protocol):
    """What the runtime needs of a camera: the next frame due for analysis, and its status."""

    camera_id: str
    stats: SourceStats
    # live: frames overwritten before analysis are lost (reported as dropped); files lose none
    drops_frames: bool

    def next_frame(self) -> Frame | None:
        """The next frame due for analysis now, or None (none due yet, or ``stats.state`` is
        "ended")."""
        ...

    def close(self) -> None: ...


@dataclass
class SourceStats:
    frames_read: int = 0
    frames_corrupt: int = 0
    frames_skipped: int = 0  # live: overwritten before analysis; file: not due at the analysis fps
    reconnects: int = 0
    state: SourceState = "starting"
    reason: str = ""


def open_file_capture(path: Path) -> Any:
    """A recording opened with FFmpeg decoding on one thread, else with whatever backend OpenCV
    picks (an image sequence, say).

    Why one thread: FFmpeg otherwise decodes on as many threads as there are cores, while the
    detector already keeps every core busy; on the 2-core box `analyze` with yolov8n int8 went
    2.04-2.08x -> 2.13-2.14x the floor (interleaved A/B) on a 25 frames/s MPEG-4 recording
    analysed at 5 fps, where four of every five frames are decoded only to be skipped. Many
    cameras decode in parallel anyway, one thread each."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if cap.isOpened():
        return cap
    cap.release()
    return cv2.VideoCapture(str(path))


class FileSource:
    """Reads a video file in order. ``fps_override`` replaces a wrong container frame rate.

    ``analysis_fps`` selects the frames :meth:`next_frame` returns (from their timestamps);
    ``realtime`` paces them at the file's own rate, as a camera would deliver them.
    """

    drops_frames = False

    def __init__(
        self,
        camera_id: str,
        path: str | Path,
        *,
        fps_override: float | None = None,
        start_epoch_s: float | None = None,
        loop: bool = False,
        prefetch: int = 4,
        analysis_fps: float | None = None,
        realtime: bool = False,
    ) -> None:
        self.camera_id = camera_id
        self.realtime = realtime
        self._gate = FpsGate(analysis_fps) if analysis_fps is not None else None
        self._frames: Iterator[Frame] | None = None
        self._pace_anchor: tuple[float, float] | None = None  # (monotonic, first frame timestamp)
        self._pending: Frame | None = None
        self.prefetch = prefetch
        self._stop = threading.Event()
        self.path = Path(path)
        self.loop = loop
        if not self.path.exists():
            raise SourceError(f"camera {camera_id}: video file not found: {self.path}")
        self._cap = open_file_capture(self.path)
        if not self._cap.isOpened():
            raise SourceError(f"camera {camera_id}: OpenCV cannot open {self.path} (unsupported or corrupt file)")
        container_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if fps_override is not None:
            self.fps = float(fps_override)
        elif 0.5 <= container_fps <= 240.0:
            self.fps = container_fps
        else:
            raise SourceError(
                f"camera {camera_id}: {self.path} reports frame rate {container_fps!r}, which is not usable; "
                "give the real rate with --fps (analyze) or source_fps (config)"
            )
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # (width, height) as the container states it; (0, 0) when it does not say
        self.frame_size_px = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                              int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
        self.start_epoch_s = time.time() if start_epoch_s is None else float(start_epoch_s)
        # paced like a camera with no --start: the clock starts when the first frame is asked for
        # (below), not here, or every frame would carry the model's load time as MQTT latency
        self._restart_clock = realtime and start_epoch_s is None
        self.stats = SourceStats(state="running")
        self._index = 0
        self._loops = 0
        self._last_good_index = -1

    def next_frame(self) -> Frame | None:
        if self._frames is None:
            if self._restart_clock:
                self.start_epoch_s = time.time()
            self._frames = self.frames()
        if self._pending is None:
            self._pending = next(self._frames, None)
            if self._pending is None:
                # keep what the decoder found (e.g. a truncated file's last good frame)
                self.stats.state, self.stats.reason = "ended", self.stats.reason or "end of file"
                return None
        if self.realtime:
            now = time.monotonic()
            if self._pace_anchor is None:
                self._pace_anchor = (now, self._pending.timestamp_s)
            anchor_mono, anchor_ts = self._pace_anchor
            if now < anchor_mono + (self._pending.timestamp_s - anchor_ts):
                return None
        frame, self._pending = self._pending, None
        return frame

    def frames(self) -> Iterator[Frame]:
        """Every decodable frame due at the analysis fps (all of them without one), in order.
        Corrupt frames are counted and skipped, not fatal.

        With ``prefetch`` > 0 a background thread decodes up to that many frames ahead (OpenCV
        releases the GIL while decoding), so decoding overlaps inference instead of adding to it.
        Order and content are unchanged: the result is as deterministic as without prefetch.
        """
        if self.prefetch <= 0:
            yield from self._decode()
            self.stats.state = "ended"
            return
        q: queue.Queue[Frame | None | BaseException] = queue.Queue(maxsize=self.prefetch)

        def produce() -> None:
            try:
                for frame in self._decode():
                    while not self._stop.is_set():
                        try:
                            q.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
                q.put(None)
            except BaseException as exc:  # surfaced to the consumer, not lost in the thread
                q.put(exc)

        thread = threading.Thread(target=produce, name=f"decode-{self.camera_id}", daemon=True)
        self._decode_thread = thread
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    # set here, when the last prefetched frame has been handed out: set by the
                    # decode thread, a camera read 'ended' with frames still queued
                    self.stats.state = "ended"
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            thread.join(timeout=2)

    def _decode(self) -> Iterator[Frame]:
        consecutive_failures = 0
        gate = self._gate
        while True:
            ok = self._cap.grab()
            if ok and gate is not None and not gate.due(self.start_epoch_s + self._index / self.fps):
                # not analysed: demuxed/decoded by grab() only, never converted or copied
                self._index += 1
                self.stats.frames_skipped += 1
                continue
            image = None
            if ok:
                ok, image = self._cap.retrieve()
            if not ok:
                # OpenCV gives one False at the end; a corrupt packet in the middle is usually skipped
                # by the decoder. Tolerate a few failed reads before calling it the end.
                if self.frame_count and self._index < self.frame_count and consecutive_failures < 5:
                    consecutive_failures += 1
                    self.stats.frames_corrupt += 1
                    self._index += 1
                    continue
                if self.loop and self._index > 0:
                    self._loops += 1
                    self._cap.release()
                    self._cap = open_file_capture(self.path)
                    consecutive_failures = 0
                    continue
                self._check_complete()  # 'ended' is set by the consumer (frames()), not this decode thread
                return
            consecutive_failures = 0
            index = self._index
            self._index += 1
            if image is None or not valid_image(image):
                self.stats.frames_corrupt += 1
                continue
            self.stats.frames_read += 1
            self._last_good_index = index
            yield Frame(self.camera_id, index, self.start_epoch_s + index / self.fps, image)

    def _check_complete(self) -> None:
        """A file that ends before the frame count its container promised was cut short: say so,
        naming the last good frame, and count the missing frames as corrupt (exit status 1)."""
        missing = self.frame_count - self._index
        if self.loop or self.frame_count <= 0 or missing <= 1:  # containers may count one frame too many
            return
        self.stats.frames_corrupt += missing
        last = self._last_good_index
        where = f"frame {last} at {last / self.fps:.1f} s" if last >= 0 else "none"
        self.stats.reason = f"file ends early: {missing} of {self.frame_count} frames missing; last good {where}"
        log.warning("camera %s: %s ends after %d of the %d frames its header announces (truncated or corrupt); "
                    "last good frame: %s; the %d missing frames are counted as corrupt",
                    self.camera_id, self.path, self._index, self.frame_count, where, missing)

    def close(self) -> None:
        self._stop.set()
        thread = getattr(self, "_decode_thread", None)
        if thread is not None:
            thread.join(timeout=5)  # never release the capture under a decoding thread
        self._cap.release()


CaptureFactory = Callable[[], "cv2.VideoCapture"]


@dataclass
class LiveSource:
    """A live camera (RTSP/HTTP URL or USB index) read on its own thread; keeps the newest frame.

    Timestamps: a wall-clock anchor taken once at start plus ``time.monotonic()`` elapsed, so
    differences are monotonic durations even if NTP steps the clock. With ``analysis_fps`` the
    capture thread still grabs every frame (a stream must be drained) but converts only those
    due at that rate, plus one fresher frame just before a lagging loop comes back for it
    (:meth:`_wanted`).
    """

    camera_id: str
    source: str | int
    max_backoff_s: float = 30.0
    initial_backoff_s: float = 0.5
    read_timeout_s: float = 10.0
    on_state: Callable[[str, SourceState, str], None] | None = None
    capture_factory: CaptureFactory | None = None
    stats: SourceStats = field(default_factory=SourceStats)
    analysis_fps: float | None = None
    drops_frames = True
    # smoothing of the loop's interval between takes and of the stream's frame interval
    INTERVAL_EWMA: ClassVar[float] = 0.3

    def __post_init__(self) -> None:
        self._gate = FpsGate(self.analysis_fps) if self.analysis_fps is not None else None
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._taken_index = -1
        # the loop's takes and the stream's frames: when the next take is due, for _wanted()
        self._last_take_mono: float | None = None
        self._take_interval_s: float | None = None
        self._grab_interval_s: float | None = None
        self._refreshed = False  # the waiting frame is already a just-in-time replacement
        self._refreshes = 0  # replacements since the last take: fresher, not dropped, frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # a stalled read cannot be interrupted (OpenCV's FFmpeg backend blocks ~30 s whatever
        # CAP_PROP_READ_TIMEOUT_MSEC says): the watchdog starts a new capture thread with a new
        # generation and the blocked one discards its frame and exits when its read returns
        self._generation = 0
        self._last_frame_mono = time.monotonic()
        self.stalls = 0
        self._anchor_epoch_s = time.time()
        self._anchor_mono_s = time.monotonic()
        self._index = 0

    # -- public ------------------------------------------------------------------------------
    def start(self) -> LiveSource:
        self._last_frame_mono = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(self._generation,),
                                        name=f"capture-{self.camera_id}", daemon=True)
        self._thread.start()
        return self

    def check_stalled(self) -> bool:
        """``running`` with no frame for ``read_timeout_s``: report ``stalled`` and reconnect."""
        with self._lock:
            idle_s = time.monotonic() - self._last_frame_mono
            if self.stats.state != "running" or idle_s <= self.read_timeout_s or self._stop.is_set():
                return False
            self._generation += 1
            self._last_frame_mono = time.monotonic()
            self.stalls += 1
            self.stats.reconnects += 1
        self._set_state("stalled", f"no frame from {self._describe()} for {idle_s:.1f} s "
                        f"(read timeout {self.read_timeout_s:g} s); reconnecting")
        self.start()
        return True

    def next_frame(self) -> Frame | None:
        return self.latest()

    def latest(self) -> Frame | None:
        """The newest frame not yet taken, or None. Frames overwritten meanwhile count as skipped."""
        self.check_stalled()
        with self._lock:
            f = self._latest
            if f is None or f.index == self._taken_index:
                return None
            if self._taken_index >= 0:
                self.stats.frames_skipped += max(0, f.index - self._taken_index - 1 - self._refreshes)
            self._taken_index = f.index
            self._refreshes = 0
            now = time.monotonic()
            if self._last_take_mono is not None:
                self._take_interval_s = _ewma(self._take_interval_s, now - self._last_take_mono, self.INTERVAL_EWMA)
            self._last_take_mono = now
            return f

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- capture thread ----------------------------------------------------------------------
    def _now_s(self) -> float:
        return self._anchor_epoch_s + (time.monotonic() - self._anchor_mono_s)

    def _set_state(self, state: SourceState, reason: str = "") -> None:
        if state == self.stats.state and reason == self.stats.reason:
            return
        self.stats.state, self.stats.reason = state, reason
        level = logging.INFO if state == "running" else logging.WARNING
        log.log(level, "camera %s: %s %s", self.camera_id, state, reason, extra={"camera": self.camera_id})
        if self.on_state is not None:
            try:
                self.on_state(self.camera_id, state, reason)
            except Exception:  # a status listener must never kill capture
                log.exception("camera %s: state listener failed", self.camera_id)

    def _open(self) -> cv2.VideoCapture:
        if self.capture_factory is not None:
            return self.capture_factory()
        # bounded waits so a dead or silent server cannot hang the thread: they must be given to
        # the constructor, which is where FFmpeg opens and probes the stream. Set afterwards (as
        # before) they came too late for the open, and a server that answered but sent no frame
        # kept the camera 'starting' for ~30 s whatever read_timeout_s said. Not every backend
        # honours them: check_stalled() covers a running stream.
        timeout_ms = int(self.read_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(timeout_ms, OPEN_TIMEOUT_MIN_MS),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if isinstance(self.source, int) or str(self.source).startswith("/dev/"):
            return cv2.VideoCapture(self.source)  # a USB camera (V4L2): local, no network waits
        return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)

    def _run(self, generation: int) -> None:
        backoff_s = self.initial_backoff_s

        def current() -> bool:
            return generation == self._generation and not self._stop.is_set()

        while current():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                if not current():
                    break
                self._set_state("reconnecting", f"cannot open {self._describe()}; retry in {backoff_s:.1f} s")
                self.stats.reconnects += 1
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
                continue
            with self._lock:
                self._last_frame_mono = time.monotonic()
            if not current():
                cap.release()
                break
            self._set_state("running")
            got_frame = False
            last_grab_mono: float | None = None
            while current():
                if not cap.grab() or not current():
                    break
                grabbed_mono = time.monotonic()
                if last_grab_mono is not None:
                    self._grab_interval_s = _ewma(self._grab_interval_s, grabbed_mono - last_grab_mono,
                                                  self.INTERVAL_EWMA)
                last_grab_mono = grabbed_mono
                why = "due" if self._gate is None else self._wanted(self._gate, self._now_s())
                if why is None:
                    with self._lock:  # the stream is alive: not a stall
                        self._last_frame_mono = time.monotonic()
                    continue  # not due at the analysis fps: not a drop, and never converted
                ok, image = cap.retrieve()
                if not ok or not current():
                    break
                if not valid_image(image):
                    self.stats.frames_corrupt += 1
                    continue
                got_frame = True
                with self._lock:
                    self._refreshed = why == "refresh"
                    self._refreshes += why == "refresh"
                    frame = Frame(self.camera_id, self._index, self._now_s(), image)
                    self._index += 1
                    self.stats.frames_read += 1
                    self._latest = frame
                    self._last_frame_mono = time.monotonic()
            cap.release()
            if not current():
                break  # stopped, or superseded by the stall watchdog
            if got_frame:
                backoff_s = self.initial_backoff_s  # it worked for a while: start backoff afresh
            with self._lock:
                idle_s = time.monotonic() - self._last_frame_mono
                # the read timeout ended a silent stream (connected, no frames): call it what it is
                silent = idle_s >= 0.9 * self.read_timeout_s
                self.stalls += int(silent)
                self.stats.reconnects += 1
            if silent:
                self._set_state("stalled", f"no frame from {self._describe()} for {idle_s:.1f} s "
                                f"(read timeout {self.read_timeout_s:g} s); reconnecting in {backoff_s:.1f} s")
            else:
                self._set_state("reconnecting", f"stream from {self._describe()} dropped; retry in {backoff_s:.1f} s")
            self._stop.wait(backoff_s)
            backoff_s = min(backoff_s * 2, self.max_backoff_s)
        if self._stop.is_set() and generation == self._generation:  # superseded threads just leave
            self._set_state("ended", "stopped")

    def _wanted(self, gate: FpsGate, now_s: float) -> Literal["due", "refresh"] | None:
        """Convert this grabbed frame? ``due`` at the analysis fps, as always (a due frame that
        overwrites one the loop never took counts as dropped); ``refresh`` once per due frame,
        just before the loop is expected back, while that frame still waits for it.

        Why: when the loop falls behind (more cameras than the box analyses at their fps), each
        camera's frame is converted when due but taken up to a loop round later, so the loop
        detected on frames already ~100-250 ms old, all of it frame-to-MQTT latency. The loop's
        takes come at a steady interval (it visits the cameras in turn), so the frame grabbed
        within about one stream frame of the next expected take replaces the waiting one. It
        costs at most one extra conversion per due frame, and only on a box that lags: one that
        keeps up takes each frame within a few ms, before the refresh is due. Every frame
        converted before still is, so no frame the loop takes is older than before."""
        if gate.due(now_s):
            return "due"
        with self._lock:
            pending = self._latest
            waiting = pending is not None and pending.index != self._taken_index
            refreshed, last_take, take_iv, grab_iv = (self._refreshed, self._last_take_mono,
                                                      self._take_interval_s, self._grab_interval_s)
        if not waiting or refreshed or last_take is None or take_iv is None or grab_iv is None:
            return None
        # the loop is due within about one stream frame: this may be the last frame before it comes
        return "refresh" if time.monotonic() >= last_take + take_iv - 1.5 * grab_iv else None

    def _describe(self) -> str:
        if isinstance(self.source, int):
            return f"USB camera {self.source}"
        # never log credentials embedded in an RTSP URL
        s = str(self.source)
        if "@" in s and "://" in s:
            scheme, rest = s.split("://", 1)
            s = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return s


def _ewma(previous: float | None, sample: float, alpha: float) -> float:
    return sample if previous is None else (1.0 - alpha) * previous + alpha * sample


class PendingSource:
    """A camera whose file could not be opened yet: reports ``error`` and retries with backoff
    (the other cameras run meanwhile); once open, it is that source."""

    drops_frames = False

    def __init__(self, camera_id: str, reopen: Callable[[], Source], reason: str, max_backoff_s: float) -> None:
        self.camera_id = camera_id
        self._reopen = reopen
        self._max_backoff_s = max_backoff_s
        self._backoff_s = 1.0
        self._retry_at_mono = time.monotonic() + self._backoff_s
        self.opened: Source | None = None
        self.stats = SourceStats(state="error", reason=reason)

    def next_frame(self) -> Frame | None:
        if self.opened is not None:
            return self.opened.next_frame()
        now = time.monotonic()
        if now < self._retry_at_mono:
            return None
        try:
            self.opened = self._reopen()
        except SourceError as exc:
            self._backoff_s = min(self._backoff_s * 2, self._max_backoff_s)
            self._retry_at_mono = now + self._backoff_s
            self.stats.reason = f"{exc}; retry in {self._backoff_s:.0f} s"
            return None
        log.warning("camera %s: source opened after %s", self.camera_id, self.stats.reason or "an error")
        self.stats = self.opened.stats
        self.drops_frames = self.opened.drops_frames
        return self.opened.next_frame()

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()
