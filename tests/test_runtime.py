"""Multi-camera runtime on real models and real video: one camera dying or one frame failing never
stops the others; SIGTERM stops cleanly; analyze writes auditable MOT tracks and the messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.commands import run_store
from edge.config import parse_config
from edge.contract import Detections
from edge.runtime import Runtime, build_detector, build_tracker, open_worker
from edge.sinks import MemorySink
from tests.mjpeg import MjpegServer, jpegs_of


def _store(tmp_path: Path, cameras_yaml: str, extra: str = "") -> str:
    cameras = textwrap.indent(textwrap.dedent(cameras_yaml), "  ")
    return (
        "version: 1\nstore: {id: test-store}\ncameras:\n"
        + cameras.rstrip("\n")
        + f"\nmqtt: {{enabled: false}}\nhistory: {{enabled: false}}\ndata_dir: {tmp_path / 'data'}\n"
        + extra
    )


def test_a_dying_camera_does_not_disturb_the_others(tmp_path: Path, videos_path: Path) -> None:
    server = MjpegServer(jpegs_of(videos_path / "people-detection.gif"), frames_per_connection=10)
    gif = videos_path / "people-detection.gif"
    cfg = parse_config(
        _store(
            tmp_path,
            f"""\
            - id: aisle
              source: {gif}
              fps: 12.5
            - id: door
              source: {server.url}
              fps: 5
              reconnect_max_backoff_s: 0.5
            """,
        )
    )
    detector = build_detector(cfg)
    workers = [open_worker(cfg, cam, detector, build_tracker(cfg)) for cam in cfg.cameras]
    server.close()  # the door camera's stream dies for good
    sink = MemorySink()
    runtime = Runtime(cfg, workers, sink, analytics=None)

    def stop_when_file_done() -> None:
        while not workers[0].finished:
            time.sleep(0.05)
        time.sleep(1.0)  # let the live camera report its state
        runtime.stop()

    threading.Thread(target=stop_when_file_done, daemon=True).start()
    summary = runtime.run()
    assert summary.frames_processed["aisle"] == 23  # every frame of the file, in order
    assert summary.errors == {"aisle": 0, "door": 0}
    states = {(m.payload["camera_id"], m.payload["state"]) for m in sink.messages if m.kind == "camera_status"}
    assert ("aisle", "ended") in states
    assert ("door", "reconnecting") in states
    assert all(m.is_state for m in sink.messages if m.kind == "camera_status")
    assert (tmp_path / "data" / "reference" / "aisle.jpg").exists()  # kept on the box, never published


class FailsOnFrame:
    """The real detector, failing on one frame: as a corrupt frame or a decoder bug would."""

    def __init__(self, inner: object, bad_calls: set[int]) -> None:
        self.inner = inner
        self.bad_calls = bad_calls
        self.calls = 0

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, object]:
        self.calls += 1
        if self.calls in self.bad_calls:
            raise ValueError("corrupt frame")
        return self.inner.preprocess(image)  # type: ignore[attr-defined,no-any-return]

    def infer(self, tensor: np.ndarray) -> object:
        return self.inner.infer(tensor)  # type: ignore[attr-defined]

    def postprocess(self, raw: object, letterbox: object) -> Detections:
        return self.inner.postprocess(raw, letterbox)  # type: ignore[attr-defined,no-any-return]


def test_a_failing_frame_is_counted_and_the_camera_goes_on(tmp_path: Path, videos_path: Path) -> None:
    gif = videos_path / "people-detection.gif"
    cfg = parse_config(_store(tmp_path, f"- id: aisle\n  source: {gif}\n  fps: 12.5\n"))
    detector = FailsOnFrame(build_detector(cfg), {5})
    worker = open_worker(cfg, cfg.cameras[0], detector, build_tracker(cfg))
    sink = MemorySink()
    summary = Runtime(cfg, [worker], sink, analytics=None).run()
    assert summary.errors["aisle"] == 1
    assert summary.frames_processed["aisle"] == 22
    last_status = [m.payload for m in sink.messages if m.kind == "camera_status"][-1]
    assert last_status["errors"] == 1 and "corrupt frame" in last_status["last_error"]


def test_run_stops_cleanly_on_sigterm(tmp_path: Path, videos_path: Path) -> None:
    cfg_path = tmp_path / "store.yaml"
    cfg_path.write_text(
        _store(tmp_path, f"- id: aisle\n  source: {videos_path / 'people-detection.gif'}\n  fps: 5\n")
    )
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg_path), "--realtime", "--loop",
         "--events", str(events)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (events.exists() and events.read_text().count("\n") >= 1):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SIGTERM" in err and "Traceback" not in err
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    statuses = [x["payload"]["state"] for x in lines if "/camera/" in x["topic"]]
    assert statuses[-1] == "ended"


def test_run_store_from_python_with_stop_event(tmp_path: Path, videos_path: Path) -> None:
    cfg = parse_config(_store(tmp_path, f"- id: aisle\n  source: {videos_path / 'people-detection.gif'}\n  fps: 5\n"))
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()
    t0 = time.monotonic()
    assert run_store(cfg, realtime=True, loop=True, stop_event=stop) == 0
    assert time.monotonic() - t0 < 20


def test_analyze_keeps_out_of_the_store_history_unless_asked(tmp_path: Path, videos_path: Path) -> None:
    """An installer analysing a recording on a live box must not add it to the store's figures:
    history is opt-in (--history). Before the fix this run wrote data/history.db."""
    cfg = tmp_path / "store.yaml"
    cfg.write_text(_store(tmp_path, "- id: aisle\n  source: unused.gif\n  fps: 2\n").replace(
        "history: {enabled: false}\n", ""))
    clip = videos_path / "people-detection.gif"
    base = [sys.executable, "-m", "edge.cli", "analyze", str(clip), "--config", str(cfg), "--no-progress"]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "data" / "history.db").exists()
    # nor the live camera's /setup files: its reference frame, track flow and static places
    for setup_file in ("reference/aisle.jpg", "flow/aisle.json", "static/aisle.json"):
        assert not (tmp_path / "data" / setup_file).exists(), setup_file
    no_cfg = subprocess.run([*base[:5], "--history", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert no_cfg.returncode == 2 and "--history needs --config" in no_cfg.stderr


# Visits to the standing table counted by eye on 1-second contact sheets (enter, exit), seconds
# from the start of the clip. The product must report the same visits within 2 s.
TABLE_VISITS_BY_EYE_S = [(7, 19), (23, 44), (51, 69), (75, 86), (93, 119), (124, 136)]

TABLE_STORE = """\
version: 1
store: {id: clip-store}
cameras:
  - id: cam-1
    source: unused.mp4
    fps: 5
    zones:
      - {id: table, kind: dwell, stop_after_s: 10, capacity: 1, polygon: [[0.40, 0.55], [0.80, 0.55], [0.80, 1.0], [0.40, 1.0]]}
analytics: {alerts: [{id: table-taken, metric: zone_occupancy_pct, zone: table, above: 99, for_s: 5}]}
mqtt: {enabled: false}
"""


@pytest.mark.slow
def test_analyze_real_clip_writes_mot_and_events(tmp_path: Path, table_video: Path) -> None:
    """End to end on the real clip: single people walk to a standing table, stay 12-27 s, leave.
    One run checks the MOT export (one id per visit), the dwell analytics (visits, dwell times), and
    the review path: the run lands in the history and `storesense heatmap` shows heat where people stood."""
    cfg = tmp_path / "store.yaml"
    cfg.write_text(TABLE_STORE + f"data_dir: {tmp_path / 'data'}\n")
    mot = tmp_path / "out.txt"
    events = tmp_path / "events.jsonl"
    start = "2026-11-23T10:00:00+00:00"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "analyze", str(table_video), "--config", str(cfg), "--mot", str(mot),
         "--events", str(events), "--start", start, "--no-progress", "--history"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in mot.read_text().splitlines()]
    assert rows, "no tracks at all"
    assert all(len(r) == 10 and r[7:] == ["-1", "-1", "-1"] for r in rows)
    frames = [int(r[0]) for r in rows]
    assert min(frames) >= 1 and max(frames) <= 1394
    assert frames == sorted(frames)
    boxes = np.array([[float(v) for v in r[2:6]] for r in rows])
    assert (boxes[:, 2] > 0).all() and (boxes[:, 3] > 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= 768 + 1).all() and (boxes[:, 1] + boxes[:, 3] <= 432 + 1).all()
    ids = {int(r[1]) for r in rows}
    assert len(ids) == len(TABLE_VISITS_BY_EYE_S), f"one id per visit expected, got {sorted(ids)}"
    assert f"{len(ids)} track ids" in proc.stdout

    messages = [json.loads(x) for x in events.read_text().splitlines()]
    assert messages and all(set(m) == {"topic", "payload"} for m in messages)
    assert all(m["topic"].startswith("storesense/v1/clip-store/") for m in messages)
    t0 = 1795428000.0  # 2026-11-23T10:00:00Z, the --start of the first frame
    visits = sorted(
        (m["payload"]["enter_s"] - t0, m["payload"]["exit_s"] - t0, m["payload"]["dwell_s"], m["payload"]["stop"])
        for m in messages
        if m["topic"].endswith("/events/visit")
    )
    assert len(visits) == len(TABLE_VISITS_BY_EYE_S), visits
    for (enter_s, exit_s, dwell_s, stop), (eye_enter_s, eye_exit_s) in zip(visits, TABLE_VISITS_BY_EYE_S, strict=True):
        assert abs(enter_s - eye_enter_s) <= 2.0 and abs(exit_s - eye_exit_s) <= 2.0, (enter_s, exit_s)
        assert dwell_s == pytest.approx(exit_s - enter_s, abs=0.01)
        assert stop  # all stayed > 10 s
    # the table as a capacity-1 zone (a one-person fitting cabin): "full for 5 s" is raised 5 s
    # into a visit and cleared once it has been free for 5 s (symmetric, AlertEngine), so a
    # visitor arriving within ~5 s of the last one leaving (visits 2, 4, 6: gaps of 4-6 s by eye,
    # shortened by the zone's leave/enter hysteresis) keeps the alert up: raised for visits 1, 3, 5
    alerts = [(m["payload"]["timestamp_s"] - t0, m["payload"]["state"]) for m in messages
              if m["topic"].endswith("/events/alert")]
    raised = [t for t, state in alerts if state == "raised"]
    # (the clip ends ~3 s after the last visitor leaves: that alert is still up at the end)
    assert [state for _, state in alerts] == ["raised", "cleared", "raised", "cleared", "raised"], alerts
    for r, (eye_enter_s, _) in zip(raised, [TABLE_VISITS_BY_EYE_S[i] for i in (0, 2, 4)], strict=True):
        assert eye_enter_s + 5.0 - 2.0 <= r <= eye_enter_s + 5.0 + 3.0, (r, eye_enter_s)
    table = [m["payload"] for m in messages if m["topic"].endswith("/zone/table/state")]
    mid = [p for p in table if 30 <= p["timestamp_s"] - t0 <= 38]  # inside the 2nd visit (23-44 s)
    assert mid and all(p["full"] and p["free_places"] == 0 and p["capacity"] == 1 for p in mid), mid

    # /setup's "where people appear and leave" overlay (edge/track_flow.py): the six visitors walk in
    # from the bottom edge and leave on the right; only counts per cell are written
    flow = json.loads((tmp_path / "data" / "flow" / "cam-1.json").read_text())
    assert flow["births_total"] == flow["ends_total"] == len(TABLE_VISITS_BY_EYE_S), flow
    assert all(r == flow["grid"][1] - 1 for _, r, _ in flow["births"]), flow["births"]
    assert all(c >= flow["grid"][0] * 3 // 4 for c, _, _ in flow["ends"]), flow["ends"]

    # analyze → history → heatmap: the hottest cell is where people stood, in front of the table
    from edge.cli import main
    from edge.history import HistoryReader

    heat = HistoryReader(tmp_path / "data" / "history.db").payloads("storesense.heatmap/1")
    assert heat, "no heatmap in the history"
    total_s = sum(p["total_person_s"] for p in heat)
    assert 90 <= total_s <= 140  # ~98 s at the table + walking in and out
    cells = [(c[2], c, p) for p in heat for c in p["cells"]]
    _, (row, col, _, _), p = max(cells, key=lambda t: t[0])
    x_norm = p["origin"][0] + (col + 0.5) * p["cell_size"]
    y_norm = p["origin"][1] + (row + 0.5) * p["cell_size"]
    assert 0.45 <= x_norm <= 0.75 and 0.75 <= y_norm <= 1.0, (x_norm, y_norm)  # feet in front of the table
    png = tmp_path / "heat.png"
    assert main(["heatmap", "--config", str(cfg), "--camera", "cam-1", "--from", "2026-11-23", "--to", "2026-11-23",
                 "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
