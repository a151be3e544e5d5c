#!/usr/bin/env python3
"""Memory soak: does RSS level off on a 24/7 box? (issue 12 item 19)

Runs ``storesense run --loop`` (realtime off: an accelerated day, frame timestamps run ahead of
the wall clock) on looped clips with every sink on (a real Mosquitto, the history DB), samples
the process RSS from /proc, and prints the least-squares slope in MB/min over the last half of
the run, after warm-up. Target: <= 0.05 MB/min.

    python scripts/soak.py --minutes 30 --cameras 2
    python scripts/soak.py --minutes 60 --cameras 2 --frame-step-s 5   # ~10 simulated hours
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIPS = ["one-by-one-person-detection.mp4", "store-aisle-detection.gif", "worker-zone-detection.gif"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    if n < 3:
        return float("nan")
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (r - mr) for t, r in samples) / var * 60.0 if var else float("nan")


def store_config(workdir: Path, videos: Path, cameras: int, port: int, frame_step_s: float | None) -> Path:
    base = yaml.safe_load((REPO / "edge/demo/store.yaml").read_text(encoding="utf-8"))
    cam0 = base["cameras"][0]
    cams = []
    for i in range(cameras):
        cam = dict(cam0) if i == 0 else {"id": f"cam-{i + 1}", "fps": 5, "zones": []}
        cam["id"] = f"cam-{i + 1}"
        cam["source"] = str(videos / CLIPS[i % len(CLIPS)])
        if frame_step_s:  # every frame analysed, each one frame_step_s of frame time apart
            cam["fps"] = cam["source_fps"] = 1.0 / frame_step_s
        cams.append(cam)
    base["cameras"] = cams
    base["mqtt"] = {"host": "127.0.0.1", "port": port, "device_id": "soak-edge"}
    base["data_dir"] = str(workdir / "data")
    path = workdir / "soak.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--warmup-min", type=float, default=3.0, help="ignored before this many minutes")
    ap.add_argument("--frame-step-s", type=float, default=None,
                    help="treat every frame as this many seconds apart (source_fps = fps = 1/S), so the "
                    "frame clock passes the one-hour windows and the day's rollover within minutes; "
                    "people then jump between frames and tracks churn, a harsher test of eviction")
    args = ap.parse_args()
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.resources import videos_dir
    from mqtt_bridge.broker import start_mosquitto

    broker = start_mosquitto()
    workdir = Path(tempfile.mkdtemp(prefix="storesense-soak-"))
    cfg_path = store_config(workdir, videos_dir(), args.cameras, broker.port, args.frame_step_s)
    frames: dict[str, int] = {}
    sim_s: dict[str, float] = {}
    first_ts: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        p = json.loads(m.payload)
        with lock:
            cam = p["camera_id"]
            frames[cam] = p["frames_total"]
            first_ts.setdefault(cam, p["timestamp_s"])
            sim_s[cam] = p["timestamp_s"] - first_ts[cam]

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, *a: c.subscribe("storesense/v1/+/camera/+/status", qos=0)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    # the log goes to a file: a pipe nobody reads fills after 64 KiB and blocks the edge mid-run
    log_path = workdir / "edge.log"
    log_file = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg_path), "--loop"],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    samples: list[tuple[float, float]] = []
    last_total = -1
    t0 = time.monotonic()
    print(f"soak: {args.cameras} camera(s), {args.minutes:g} min, pid {proc.pid}, config {cfg_path}")
    print(f"{'min':>6} {'RSS MB':>8} {'frames':>8} {'simulated h':>11}")
    try:
        while time.monotonic() - t0 < args.minutes * 60 and proc.poll() is None:
            time.sleep(args.sample_s)
            t = time.monotonic() - t0
            try:
                r = rss_mb(proc.pid)
            except OSError:  # the process ended between poll() and the read
                break
            if r != r:  # NaN: no VmRSS line (a zombie), nothing to sample
                break
            samples.append((t, r))
            with lock:
                total = sum(frames.values())
                sim_h = max(sim_s.values(), default=0.0) / 3600.0
            if len(samples) % max(1, int(60 / args.sample_s)) == 0:
                # a flat RSS means nothing if the edge stopped analysing: say so next to it
                stalled = "  no new frames this minute" if total == last_total else ""
                last_total = total
                print(f"{t / 60:6.1f} {r:8.1f} {total:8d} {sim_h:11.2f}{stalled}", flush=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        err = log_path.read_text(encoding="utf-8", errors="replace")
        sub.disconnect()
        sub.loop_stop()
        broker.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    warm = [(t, r) for t, r in samples if t >= args.warmup_min * 60]
    last_half = [(t, r) for t, r in samples if t >= samples[-1][0] / 2] if samples else []
    print(f"exit {proc.returncode}; {len(samples)} samples; RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MB"
          if samples else f"exit {proc.returncode}; no samples")
    print(f"slope after warm-up ({args.warmup_min:g} min): {slope_mb_per_min(warm):.3f} MB/min")
    print(f"slope over the last half: {slope_mb_per_min(last_half):.3f} MB/min (target <= 0.05)")
    if "Traceback" in (err or ""):
        print(err[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
