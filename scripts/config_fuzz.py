#!/usr/bin/env python3
"""Config mutation fuzzer: mutated store configs must be refused cleanly or run cleanly.

Every mutation (key deletions, renames, type swaps, out-of-range values, duplicate keys,
broken YAML, bad ids) of a rich base config goes through exactly what ``validate-config`` does.
Outcomes:

* ``refused``   a ConfigError: the operator gets file:line messages (good);
* ``traceback`` anything else escaped (a bug: printed with the mutation);
* ``accepted``  the config validates. Distinct accepted configs (by their parsed model) are then
  run with ``storesense run`` against a real Mosquitto for ``--run-s`` seconds on the sample
  clip. A run *misbehaves* if it crashes, prints a traceback, refuses to publish, exits with
  anything but 0, or publishes nothing (the seconds count from "running store", not start-up). 0 misbehaving runs is the target.

    python scripts/config_fuzz.py --n 1000 --run-s 10 --max-runs 40
    python scripts/config_fuzz.py --n 100 --max-runs 0      # validation only (what CI runs)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.commands import VALIDATE_CHECKS  # noqa: E402
from edge.config import ConfigError, parse_config  # noqa: E402

BASE = """\
version: 1
store: {id: fuzz-store, name: "Fuzz 店", timezone: Asia/Shanghai}
model: {name: yolox-nano-416, threads: 2}
tracker: {max_lost_s: 2.0, confirm_after_s: 0.2}
cameras:
  - id: cam-1
    source: ${STORESENSE_VIDEOS_DIR}/one-by-one-person-detection.mp4
    fps: 5
    calibration:
      image_points_px: [[100, 700], [1800, 700], [1500, 300], [400, 300]]
      floor_points_m: [[0, 0], [6, 0], [5, 8], [1, 8]]
      reference_size_px: [1920, 1080]
    zones:
      - {id: lane-1-queue, kind: queue, lane: lane-1, label: "Lane 1", service_zone: lane-1-till,
         polygon: [[0.72, 0.55], [1.0, 0.55], [1.0, 1.0], [0.72, 1.0]]}
      - {id: lane-1-till, kind: service, lane: lane-1, polygon: [[0.42, 0.55], [0.72, 0.55], [0.72, 1.0], [0.42, 1.0]]}
      - {id: entrance, kind: entrance, polygon: [[0.85, 0.5], [1.0, 0.5], [1.0, 1.0], [0.85, 1.0]]}
      - {id: display-table, kind: dwell, stop_after_s: 10, polygon: [[0.42, 0.6], [0.75, 0.6], [0.75, 1.0], [0.42, 1.0]]}
analytics:
  state_interval_s: 1.0
  heatmap: {cell_m: 0.25, min_tracks_per_cell: 3}
  alerts:
    - {id: long-wait, lane: lane-1, metric: predicted_wait_s, above: 300, for_s: 60, hours: [8, 22]}
mqtt: {host: 127.0.0.1, port: 1883, device_id: fuzz-edge, prefix: storesense/v1}
history: {enabled: true, retention_days: 30}
data_dir: /tmp/storesense-fuzz
"""

WEIRD_VALUES: list[Any] = [
    -1, 0, 1e308, -1e308, float("nan"), float("inf"), "", " ", "x" * 5000, [], {}, None, True, "lane+1", "a/b",
    "#", "ÄÖ", "CAM-1", 10**20, -0.0, "${NOT_SET_VAR_X}", "1e3", [1, 2], {"a": 1}, 3.5, "../../etc/passwd",
]
TYPO_KEYS = ["fsp", "sourc", "zone", "kinds", "polygons", "lanes", "idd", "mqt", "prefx", "timezon", "above_", "hour"]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate(base: dict[str, Any], base_text: str, rng: random.Random) -> tuple[str, str]:
    """One mutated config text and a short description of the mutation."""
    kind = rng.choice(["delete", "rename", "type", "value", "value", "duplicate", "broken", "id", "id"])
    if kind == "duplicate":
        lines = base_text.splitlines()
        i = rng.randrange(1, len(lines))
        return "\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :]) + "\n", f"duplicate line {i + 1}"
    if kind == "broken":
        choice = rng.choice(["truncate", "bracket", "tab", "colon", "bytes"])
        if choice == "truncate":
            cut = rng.randrange(10, len(base_text))
            return base_text[:cut], f"truncated at {cut}"
        if choice == "bracket":
            i = base_text.index("[", rng.randrange(0, len(base_text) // 2))
            return base_text[:i] + base_text[i + 1 :], "removed a ["
        if choice == "tab":
            lines = base_text.splitlines()
            i = rng.randrange(1, len(lines))
            lines[i] = "\t" + lines[i].lstrip(" ")
            return "\n".join(lines) + "\n", f"tab on line {i + 1}"
        if choice == "colon":
            return base_text.replace(":", "", 1 + rng.randrange(5)), "removed colons"
        return base_text + "\x00\x01", "control bytes"
    doc = copy.deepcopy(base)
    path = rng.choice(_paths(doc))
    parent = _get(doc, path[:-1])
    key = path[-1]
    if kind == "delete":
        if isinstance(parent, list):
            parent.pop(key)
        else:
            del parent[key]
        desc = f"delete {path}"
    elif kind == "rename" and isinstance(parent, dict):
        parent[rng.choice(TYPO_KEYS)] = parent.pop(key)
        desc = f"rename {path}"
    elif kind == "id":
        ids = [p for p in _paths(doc) if p[-1] in ("id", "lane", "service_zone", "device_id", "prefix")]
        path = rng.choice(ids)
        value = rng.choice(["lane+1", "a/b", "x#", "", "LANE-1", "Lane-1-Queue", "CAM-1", "ö", "a" * 70, "lane-2",
                            "display-table", "entrance", "cam-1", "lane-1-till"])
        _get(doc, path[:-1])[path[-1]] = value
        desc = f"id {path} = {value!r}"
    else:
        value = rng.choice(WEIRD_VALUES)
        if kind == "type":
            old = parent[key]
            value = [old] if not isinstance(old, list) else (old[0] if old else "x")
        parent[key] = value
        desc = f"{kind} {path} = {str(value)[:40]!r}"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), desc


def validate(text: str) -> tuple[str, str]:
    try:
        parse_config(text, "fuzz.yaml", Path(tempfile.gettempdir()) / "fuzz.yaml", extra_checks=VALIDATE_CHECKS)
    except ConfigError as exc:
        return "refused", exc.problems[0][:160] if exc.problems else ""
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        import traceback

        return "traceback", "".join(traceback.format_exception(exc))[-1500:]
    return "accepted", ""


def run_once(text: str, broker_port: int, run_s: float, workdir: Path) -> tuple[bool, str]:
    """Run ``storesense run`` for ``run_s`` seconds; True if it behaved."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    doc = yaml.safe_load(text)
    doc.setdefault("mqtt", {})
    if isinstance(doc["mqtt"], dict):
        doc["mqtt"].update({"host": "127.0.0.1", "port": broker_port})
    doc["data_dir"] = str(workdir / "data")
    path = workdir / "store.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    received: list[str] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, *a: c.subscribe("#", qos=0)
    sub.on_message = lambda _c, _u, m: received.append(m.topic)
    sub.connect("127.0.0.1", broker_port)
    sub.loop_start()
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    err_lines: list[str] = []
    running = threading.Event()

    def read_err() -> None:  # the 10 s count from "running store": start-up is not the run
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            if "running store" in line:
                running.set()
        running.set()

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    running.wait(180)
    time.sleep(run_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False, "did not stop within 60 s of SIGINT"
    finally:
        reader.join(timeout=5)
        time.sleep(0.3)
        sub.disconnect()
        sub.loop_stop()
    err = "".join(err_lines)
    problems = []
    if proc.returncode != 0:  # 1 would be processing errors: a config that validated must not cause them
        problems.append(f"exit {proc.returncode}")
    if "Traceback" in err:
        problems.append("traceback")
    if "refused to publish" in err:
        problems.append("refused to publish")
    if not received:
        problems.append("published nothing")
    return not problems, "; ".join(problems) + (f"\n{err[-800:]}" if problems else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="mutated configs")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--run-s", type=float, default=10.0, help="seconds each accepted config runs")
    ap.add_argument("--max-runs", type=int, default=40, help="distinct accepted configs to run (0: none)")
    args = ap.parse_args()
    from edge.resources import videos_dir

    os.environ.setdefault("STORESENSE_VIDEOS_DIR", str(videos_dir()))
    rng = random.Random(args.seed)
    base = yaml.safe_load(BASE)
    outcome: Counter[str] = Counter()
    accepted: dict[str, tuple[str, str]] = {}
    t0 = time.monotonic()
    for i in range(args.n):
        text, desc = mutate(base, BASE, rng)
        result, detail = validate(text)
        outcome[result] += 1
        if result == "traceback":
            print(f"TRACEBACK #{i} ({desc}):\n{detail}\n", flush=True)
        elif result == "accepted":
            cfg = parse_config(text, "fuzz.yaml", extra_checks=VALIDATE_CHECKS)
            accepted.setdefault(cfg.model_dump_json(), (text, desc))
    print(f"{args.n} mutated configs in {time.monotonic() - t0:.1f} s: refused {outcome['refused']}, "
          f"accepted {outcome['accepted']} ({len(accepted)} distinct), tracebacks {outcome['traceback']}")
    runs = bad = 0
    if args.max_runs > 0 and accepted:
        from mqtt_bridge.broker import start_mosquitto

        broker = start_mosquitto()
        try:
            for text, desc in list(accepted.values())[: args.max_runs]:
                with tempfile.TemporaryDirectory(prefix="storesense-fuzz-") as tmp:
                    ok, why = run_once(text, broker.port, args.run_s, Path(tmp))
                runs += 1
                bad += not ok
                print(f"run {runs:3d} {'ok ' if ok else 'BAD'} {desc}" + ("" if ok else f": {why}"), flush=True)
        finally:
            broker.stop()
        print(f"runs: {runs} distinct accepted configs for {args.run_s:g} s each; misbehaved: {bad}")
    print(json.dumps({"mutated": args.n, "refused": outcome["refused"], "accepted": outcome["accepted"],
                      "accepted_distinct": len(accepted), "tracebacks": outcome["traceback"], "runs": runs,
                      "runs_misbehaved": bad}))
    return 1 if outcome["traceback"] or bad else 0


if __name__ == "__main__":
    sys.exit(main())
