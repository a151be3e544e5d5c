"""Issue 12 (fault-injection pass): lane commands, command floods, heatmap privacy default.

Each test here failed before its fix (noted per test)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config import parse_config
from edge.runtime import MAX_PENDING_COMMANDS, Runtime
from edge.sinks import MemorySink
from mqtt_bridge.commands import CommandError, CommandHandler, parse_lane_command
from mqtt_bridge.topics import Topics

T = Topics("s1", "storesense")


@pytest.mark.parametrize(
    "payload", [b'{"state":"open","state":"closed"}', b'{"state":"closed","state":"closed"}']
)
def test_lane_command_with_a_repeated_key_is_refused(payload: bytes) -> None:
    # item 16: json.loads kept the last "state" and the command was applied
    with pytest.raises(CommandError, match="more than once"):
        parse_lane_command(T, T.lane_set("l1"), payload, ["l1"])
    applied: list[tuple[str, str]] = []
    handler = CommandHandler(T, lambda lane, state: applied.append((lane, state)), lambda: ["l1"])
    assert handler.handle(T.lane_set("l1"), payload) is False
    assert applied == [] and handler.rejected == 1


class _RecordingAnalytics:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []

    def update(self, tracks: object) -> list:
        return []

    def set_lane_state(self, lane_id: str, state: str, timestamp_s: float) -> list:
        self.applied.append((lane_id, state))
        return []

    def finish(self, timestamp_s: float) -> list:
        return []


def test_command_flood_keeps_the_newest_commands(tmp_path: Path) -> None:
    # item 17: a full queue.Queue refused the newest command, so the last word was lost
    cfg = parse_config(
        f"version: 1\nstore: {{id: s1}}\ncameras: [{{id: c1, source: x.mp4}}]\ndata_dir: {tmp_path}\n"
    )
    analytics = _RecordingAnalytics()
    runtime = Runtime(cfg, [], MemorySink(), analytics)
    flood = MAX_PENDING_COMMANDS + 500
    for i in range(flood):
        runtime.submit_lane_command(f"l{i}", "open")
    runtime.submit_lane_command("l1", "closed")  # the operator's final word
    runtime._apply_commands()
    assert analytics.applied[-1] == ("l1", "closed")
    assert len(analytics.applied) == MAX_PENDING_COMMANDS
    assert analytics.applied[0] == (f"l{flood + 1 - MAX_PENDING_COMMANDS}", "open")
    assert runtime.commands_dropped == flood + 1 - MAX_PENDING_COMMANDS


def test_heatmap_privacy_default_is_k3(tmp_path: Path) -> None:
    # item 18: the default was k=1, so a cell could describe a single person
    from zones.heatmap import HeatmapAccumulator

    cfg = parse_config("version: 1\nstore: {id: s1}\ncameras: [{id: c1, source: x.mp4}]\n")
    assert cfg.analytics.heatmap.min_tracks_per_cell == 3
    acc = HeatmapAccumulator.for_camera(cfg, "c1", floor=False)
    t0 = 1_700_000_000.0
    for i in range(50):  # two people alone in their own corners, three sharing one cell
        acc.add(np.array([[0.1, 0.1], [0.9, 0.9], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),
                [1, 2, 3, 4, 5], 0.2, t0 + i * 0.2)
    (msg,) = acc.finish(t0 + 20)
    assert msg.payload["min_tracks_per_cell"] == 3
    assert len(msg.payload["cells"]) == 1 and msg.payload["suppressed_cells"] == 2


def test_truncated_recording_is_reported_and_exits_1(
    tmp_path: Path, videos_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # item 5: a recording cut in half gave exit 0 and "686 frames analysed" without a word
    import logging

    from edge.cli import main
    from edge.sources import FileSource

    data = (videos_path / "one-by-one-person-detection.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 6])  # a sixth: fewer frames to decode, same fault
    caplog.set_level(logging.WARNING, logger="storesense.sources")
    src = FileSource("cam-1", cut, prefetch=0)
    frames = sum(1 for _ in src.frames())
    src.close()
    assert 50 < frames < src.frame_count // 2 and src.stats.frames_corrupt >= src.frame_count - frames - 1
    (warning,) = [r.getMessage() for r in caplog.records if "ends after" in r.getMessage()]
    assert re.search(r"last good frame: frame (\d+) at [\d.]+ s", warning) and "truncated" in warning
    code = main(["analyze", str(cut), "--analysis-fps", "0.5", "--no-analytics"])
    out = capsys.readouterr().out
    assert code == 1 and "frames_corrupt" in out and "last good frame" in out, out


class _StallingCamera:
    """A real HTTP MJPEG camera that sends a few frames, then keeps the connection open silently."""

    def __init__(self, jpeg: bytes, frames_before_stall: int) -> None:
        import http.server
        import socketserver
        import threading

        self.connections = 0
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(frames_before_stall):
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                        self.wfile.write(jpeg + b"\r\n")
                        time.sleep(0.03)
                    outer.release.wait(60)  # connected, no frames: a stalled stream
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_stalled_stream_is_reported_within_the_read_timeout_and_reconnected(images_path: Path) -> None:
    # item 4: a stream that stays open without frames showed 'running', fps 0, for 30 s
    import cv2

    from edge.sources import LiveSource

    image = cv2.imread(str(next(p for p in sorted(images_path.iterdir()) if p.suffix.lower() in (".jpg", ".png"))))
    jpeg = cv2.imencode(".jpg", cv2.resize(image, (320, 240)))[1].tobytes()
    cam = _StallingCamera(jpeg, frames_before_stall=15)
    states: list[tuple[float, str]] = []
    src = LiveSource("door", cam.url, read_timeout_s=1.0, initial_backoff_s=0.1,
                     on_state=lambda _c, state, _r: states.append((time.monotonic(), state)))
    try:
        src.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15 and not (src.stalls >= 1 and cam.connections >= 2):
            src.latest()  # the runtime polls like this
            time.sleep(0.05)
        running = [t for t, s in states if s == "running"]
        stalled = [t for t, s in states if s == "stalled"]
        assert stalled, states
        last_frame_s = stalled[0] - running[0]
        assert last_frame_s < 1.0 + 0.5 * 15 * 0.03 + 3.0, states  # within the timeout (+ frames + polling)
        assert cam.connections >= 2 and src.stats.reconnects >= 1  # and it reconnected
    finally:
        src.close()
        cam.close()


def test_a_camera_that_cannot_start_does_not_stop_the_store(
    tmp_path: Path, videos_path: Path, mosquitto: object
) -> None:
    # item 3: one zero-byte/corrupt/missing/directory source made `run` exit 2 before connecting
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.commands import run_store

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00not a video" * 100)
    (tmp_path / "a-dir.mp4").mkdir()
    good = videos_path / "people-detection.gif"
    bad = {"empty": "empty.mp4", "corrupt": "corrupt.mp4", "missing": "missing.mp4", "dir": "a-dir.mp4"}
    cams = "".join(f"  - {{id: {cid}, source: {src}, fps: 5}}\n" for cid, src in bad.items())
    text = (f"version: 1\nstore: {{id: s1}}\ncameras:\n{cams}  - {{id: good, source: {good}, fps: 5}}\n"
            f"mqtt: {{port: {mosquitto.port}}}\nhistory: {{enabled: false}}\ndata_dir: {tmp_path / 'data'}\n")
    path = tmp_path / "store.yaml"
    path.write_text(text)
    status: dict[str, list[dict]] = {}
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, *a: c.subscribe(Topics("s1").base + "/camera/+/status", qos=1)
    sub.on_message = lambda _c, _u, m: status.setdefault(m.topic.split("/")[-2], []).append(json.loads(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        from edge.config import load_config

        code = run_store(load_config(path))
        from tests.waiting import wait_until

        assert wait_until(lambda: set(status) >= {*bad, "good"} and status["good"][-1]["state"] == "ended", 10), status
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert code == 1  # finished with processing errors, not 2 (bad input) before anything ran
    assert status["good"][-1]["frames_total"] > 0
    for cid in bad:
        last = status[cid][-1]
        assert last["state"] == "error" and last["reason"], (cid, last)
    assert "not found" in status["missing"][-1]["reason"]


def test_a_camera_that_could_not_start_is_retried_with_backoff(tmp_path: Path, videos_path: Path) -> None:
    # item 3: the retry half; the file appears later and the camera starts without a restart
    import shutil

    from edge.runtime import open_worker
    from edge.sources import PendingSource

    late = tmp_path / "late.gif"
    cfg = parse_config(f"version: 1\nstore: {{id: s1}}\ncameras: [{{id: c1, source: {late}}}]\n")
    worker = open_worker(cfg, cfg.cameras[0], detector=None, tracker=None, tolerate_errors=True)  # type: ignore[arg-type]
    assert (worker.state, worker.started) == ("error", False) and "not found" in worker.reason
    pending = worker.source
    assert isinstance(pending, PendingSource)
    pending._retry_at_mono = 0.0
    assert worker.next_frame() is None and pending._backoff_s == 2.0  # failed again: backoff doubled
    assert "retry in 2 s" in worker.reason
    shutil.copy(videos_path / "people-detection.gif", late)
    pending._retry_at_mono = 0.0
    worker.next_frame()
    assert worker.started and pending.opened is not None and worker.state == "running"
    assert worker.next_frame() is not None  # frames flow
    worker.close()


def test_a_stream_that_answers_but_never_sends_a_frame_is_not_starting_for_30_s() -> None:
    """An HTTP camera that sends its headers and then nothing: OpenCV's open blocked ~30 s, and the
    camera said 'starting' all along, because the open/read timeouts were set after the open.
    Given to the constructor, the open gives up at the open timeout (10 s at least) and the camera
    reports 'reconnecting' with the reason, then retries."""
    from edge.sources import OPEN_TIMEOUT_MIN_MS, LiveSource

    cam = _StallingCamera(b"", frames_before_stall=0)
    states: list[tuple[float, str, str]] = []
    src = LiveSource("door", cam.url, read_timeout_s=1.0, initial_backoff_s=0.1,
                     on_state=lambda _c, state, reason: states.append((time.monotonic(), state, reason)))
    try:
        t0 = time.monotonic()
        src.start()
        while time.monotonic() - t0 < 20 and src.stats.state in ("starting", "connecting"):
            src.latest()
            time.sleep(0.05)
        elapsed_s = time.monotonic() - t0
        assert src.stats.state == "reconnecting", states
        assert "cannot open" in states[-1][2]
        assert elapsed_s < OPEN_TIMEOUT_MIN_MS / 1000 + 4.0, (elapsed_s, states)  # was ~30 s
    finally:
        src.close()
        cam.close()
