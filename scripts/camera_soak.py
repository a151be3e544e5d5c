#!/usr/bin/env python3
"""Many cameras on one box: aggregate analysis rate, frame-to-MQTT latency and RSS over time.

    python scripts/camera_soak.py --cameras 12 --duration-s 1800                       # default model
    python scripts/camera_soak.py --cameras 6 --model yolov8n --precision int8 --duration-s 600

Starts a private Mosquitto, writes a store config with N cameras (the sample clip, looped and
paced at its real frame rate like a camera, 5 analysis fps, a dwell and an entrance zone each),
runs ``storesense run`` in a subprocess and subscribes to everything. With ``--live`` each camera
is instead a real HTTP MJPEG stream on loopback (the clip pre-encoded to JPEG, served at its own
frame rate, each camera from its own offset), so the edge reads it through its live path: a
capture thread that drains the stream and keeps only the newest frame. That is how an overloaded
box behaves in a store: it drops frames instead of falling behind, so frame-to-MQTT latency means
something even above capacity (paced files keep every frame, and their backlog only grows).
Printed: analysed
frames/s per camera and in total (from ``camera_status``), frame-to-MQTT latency (arrival wall
time minus the frame timestamp in each zone-state payload) p50/p95, and the RSS of the edge
process sampled every few seconds with its slope (MB per 10 minutes, least squares after a
warm-up): flat memory means a slope near zero. The yolov8n fp32 640x640 ``session.run`` floor is
measured just before the edge starts and just after it stops, so the aggregate rate is also given
as a ratio to it: absolute frames/s on a shared machine change with the hour.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.bench import _floor_ms, _reference_session  # noqa: E402
from edge.resources import videos_dir  # noqa: E402
from mqtt_bridge.broker import start_mosquitto  # noqa: E402
from tests.mjpeg import MjpegServer, jpegs_of  # noqa: E402

CAMERA = """  - id: cam-{i}
    source: {source}
    fps: {fps}
    zones:
      - {{id: table-{i}, kind: dwell, label: "Table {i}", polygon: [[0.42, 0.6], [0.75, 0.6], [0.75, 1.0], [0.42, 1.0]]}}
      - {{id: door-{i}, kind: entrance, label: "Door {i}", polygon: [[0.85, 0.5], [1.0, 0.5], [1.0, 1.0], [0.85, 1.0]]}}
"""


def write_config(path: Path, args: argparse.Namespace, port: int, live: MjpegServer | None = None) -> None:
    video = args.video or str(videos_dir() / "one-by-one-person-detection.mp4")
    parallel = f", parallel_frames: {args.parallel_frames}" if args.parallel_frames else ""
    model = f"model: {{name: {args.model}, precision: {args.precision}, threads: {args.threads}{parallel}}}\n"
    cams = "".join(CAMERA.format(i=i, source=live.camera_url(i) if live is not None else video, fps=args.fps)
                   for i in range(args.cameras))
    path.write_text(
        "version: 1\nstore: {id: soak}\n" + model + "cameras:\n" + cams
        + f"mqtt: {{host: 127.0.0.1, port: {port}, device_id: soak-edge}}\n"
        + f"data_dir: {args.data_dir or path.parent / 'data'}\n"
    )


def smaps_kb(pid: int) -> dict[str, int]:
    """Resident KB of the process by kind of mapping: the heap, anonymous mappings (glibc's 64 MB
    per-thread arenas apart from the rest), each shared library, other files. A step in RSS then
    names its owner: a new arena means a new thread allocating, a library means code paged in."""
    out: collections.Counter[str] = collections.Counter()
    key = "[anon]"
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            name = head[5].strip() if len(head) > 5 else ""
            size_kb = (hi - lo) // 1024
            if not name:
                key = "[anon] arena-sized" if 60000 <= size_kb <= 65536 else "[anon]"
            elif name.startswith("/"):
                key = ("lib " if ".so" in name else "file ") + name.rsplit("/", 1)[-1]
            else:
                key = name
        elif line.startswith("Rss:"):
            out[key] += int(line.split()[1])
    return dict(out)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=12)
    ap.add_argument("--fps", type=float, default=5.0, help="analysis fps per camera")
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel-frames", type=int, help="model.parallel_frames (default: the config's default)")
    ap.add_argument("--duration-s", type=float, default=300.0)
    ap.add_argument("--warmup-s", type=float, default=30.0, help="excluded from latency and the RSS slope")
    ap.add_argument("--video")
    ap.add_argument("--json")
    ap.add_argument("--data-dir", help="reuse a data dir that already holds the int8 copy (quantising on "
                    "first use would fall inside the measured run)")
    ap.add_argument("--no-floor", action="store_true", help="skip the session.run floor before and after")
    ap.add_argument("--live", action="store_true", help="cameras are MJPEG streams on loopback (the edge's live "
                    "path: newest frame kept, frames dropped when behind) instead of paced files")
    ap.add_argument("--smaps", action="store_true", help="also attribute RSS to mappings (heap, arenas, libraries) "
                    "at each minute's lowest sample, and print what grew over the last half")
    args = ap.parse_args()

    if args.live:  # read the clip first: a bad --video is a clear error, before any broker starts
        video = Path(args.video or videos_dir() / "one-by-one-person-detection.mp4")
        cap = cv2.VideoCapture(str(video))
        stream_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 10.0
        cap.release()
        jpegs = jpegs_of(video, None, None, quality=90)
        if not jpegs:
            raise SystemExit(f"camera_soak: --live: no frame could be read from {video} (expected a video file)")
    reference = None if args.no_floor else _reference_session(args.threads)
    floor_before_ms = _floor_ms(reference, 20) if reference is not None else None
    broker = start_mosquitto()
    tmp = Path(tempfile.mkdtemp(prefix="storesense-soak-"))
    cfg = tmp / "store.yaml"
    cameras = None
    if args.live:
        cameras = MjpegServer(jpegs, frame_interval_s=1.0 / stream_fps, cameras=args.cameras)
    write_config(cfg, args, broker.port, cameras)
    latencies: list[tuple[float, float]] = []  # (arrival, latency_s)
    status: dict[str, list[float]] = {}
    last_status: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        with lock:
            if payload.get("schema", "").startswith("storesense.camera_status") and payload.get("state") == "running":
                status.setdefault(payload["camera_id"], []).append(float(payload.get("fps_measured", 0.0)))
                last_status[payload["camera_id"]] = payload
            elif payload.get("schema", "").startswith("storesense.zone_state") and not msg.retain:
                latencies.append((now, now - float(payload["timestamp_s"])))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-probe")
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe("#", qos=0)
    client.loop_start()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edge.cli", "--log-level", "WARNING", "run", "--config", str(cfg)]
    if not args.live:
        cmd += ["--realtime", "--loop"]
    t0 = time.time()
    # cwd: ``-m`` puts the working directory first on sys.path, ahead of PYTHONPATH, so from any other
    # directory (another checkout, say) the edge measured would not be this checkout's
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True, bufsize=1)
    # the edge's log goes on to this script's stderr, and its overload warnings are counted per camera
    overloaded: dict[str, int] = {}

    def relay_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            m = re.search(r"camera (\S+): the box cannot keep up", line)
            if m:
                overloaded[m.group(1)] = overloaded.get(m.group(1), 0) + 1

    relay = threading.Thread(target=relay_log, daemon=True)
    relay.start()
    rss: list[tuple[float, float]] = []
    maps: list[dict[str, int]] = []  # with --smaps, one per RSS sample
    try:
        while time.time() - t0 < args.duration_s and proc.poll() is None:
            time.sleep(5.0)
            v = rss_mb(proc.pid)
            if v is not None:
                if args.smaps:
                    maps.append(smaps_kb(proc.pid))
                rss.append((time.time() - t0, v))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        relay.join(timeout=5)
        client.loop_stop()
        client.disconnect()
        broker.stop()
        if cameras is not None:
            cameras.close()

    floor_fps = None
    if reference is not None and floor_before_ms is not None:
        floor_fps = 1e3 / ((floor_before_ms + _floor_ms(reference, 20)) / 2.0)
    with lock:
        lat = np.array([v for t, v in latencies if t - t0 >= args.warmup_s])
        fps = {cam: float(np.median(v[-5:])) for cam, v in status.items() if v}
    r = np.array([(t, v) for t, v in rss if t >= args.warmup_s])
    slope = float(np.polyfit(r[:, 0], r[:, 1], 1)[0] * 600.0) if len(r) >= 3 else float("nan")
    # the same slope over the last half only: warm-up (ORT arenas, SQLite caches, hourly windows
    # filling) is over by then, so this is the figure that says whether memory levels off
    half = r[r[:, 0] >= r[-1, 0] / 2] if len(r) else r
    slope_half = float(np.polyfit(half[:, 0], half[:, 1], 1)[0] * 60.0) if len(half) >= 3 else float("nan")
    every_5min = [round(float(v), 1) for t, v in rss if int(t) % 300 < 5]
    # the edge trims malloc once a minute, so raw RSS is a sawtooth of freed-but-not-returned
    # memory; the lowest sample of each minute is what it holds, and its slope is the leak test
    by_minute: dict[int, list[tuple[float, int]]] = {}
    for k, (t, v) in enumerate(rss):
        if t >= args.warmup_s:
            by_minute.setdefault(int(t // 60), []).append((v, k))
    # whole minutes only: a minute cut short by the warm-up or the end may hold no trim
    lowest = [(m, min(vs)) for m, vs in sorted(by_minute.items()) if len(vs) >= 11]
    minima = np.array([(m, v) for m, (v, _) in lowest], dtype=float)
    late = minima[minima[:, 0] >= minima[-1, 0] / 2] if len(minima) else minima
    floor_slope = float(np.polyfit(late[:, 0], late[:, 1], 1)[0]) if len(late) >= 3 else float("nan")
    result = {
        "cameras": args.cameras,
        "model": f"{args.model} {args.precision}",
        "duration_s": round(time.time() - t0, 1),
        "fps_per_camera": fps,
        "fps_total": round(sum(fps.values()), 2),
        "fps_target_total": args.cameras * args.fps,
        # yolov8n fp32 640x640 session.run frames/s (mean of before and after) and the ratio to it
        "floor_fps": round(floor_fps, 2) if floor_fps else None,
        "fps_total_over_floor": round(sum(fps.values()) / floor_fps, 2) if floor_fps else None,
        "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1) if lat.size else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1e3, 1) if lat.size else None,
        "latency_samples": int(lat.size),
        "rss_start_mb": round(float(r[0, 1]), 1) if len(r) else None,
        "rss_end_mb": round(float(r[-1, 1]), 1) if len(r) else None,
        "rss_slope_mb_per_10min": round(slope, 2),
        "rss_slope_last_half_mb_per_min": round(slope_half, 3),
        "rss_every_5min_mb": every_5min,
        "rss_min_per_minute_mb": [round(float(v), 1) for _, v in minima],
        "rss_min_slope_last_half_mb_per_min": round(floor_slope, 3),
        "exit_code": proc.returncode,
        # from each camera's last status: live frames the loop could not keep up with, and reconnects
        "frames_dropped_total": sum(int(p.get("frames_dropped") or 0) for p in last_status.values()),
        "reconnects_total": sum(int(p.get("reconnects") or 0) for p in last_status.values()),
        # "the box cannot keep up" warnings in the edge's log, per camera (one per overload episode)
        "overload_warnings": dict(sorted(overloaded.items())),
    }
    if args.live:
        result["source"] = f"live MJPEG over HTTP, {stream_fps:g} frames/s per camera"
    if args.smaps and len(lowest) >= 2 and maps:
        # the mappings at the lowest sample of the middle minute and of the last one: what grew
        mid, last = maps[lowest[len(lowest) // 2][1][1]], maps[lowest[-1][1][1]]
        grew = {k: last.get(k, 0) - mid.get(k, 0) for k in set(mid) | set(last)}
        result["smaps_growth_last_half_kb"] = dict(sorted(((k, v) for k, v in grew.items() if abs(v) >= 64),
                                                          key=lambda kv: -abs(kv[1])))
        result["smaps_per_minute_kb"] = [
            {"minute": m, **{k: v for k, v in sorted(maps[k_].items(), key=lambda kv: -kv[1])[:8]}}
            for m, (_, k_) in lowest]
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
