"""Golden events: `storesense analyze --events` on every clip in ../shared/videos with the demo config.

They pin "behaviour unchanged" across restructurings (issue 10). When a change alters behaviour
ON PURPOSE (a better tracker, static-scenery suppression, ...), regenerate them and say why in
the commit message:

    PYTHONPATH=$PWD python tests/golden_events.py --update

Normalisation keeps every topic, kind and value of the analytics stream, in order, and drops only
what depends on the wall clock or on a run: `event_id`s, the camera status' measured fps and
its periodic `running` beats (sent every 10 s of monotonic time, so their number and position
vary), and the wall-clock `timestamp_s` of the `starting` status. Floats are rounded to 4
decimals so a different CPU's last-bit differences in ONNX Runtime do not show up.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
DEMO_CONFIG = ROOT / "edge" / "demo" / "store.yaml"
START = "2026-11-23T10:00:00+00:00"  # camera clock of the first frame: timestamps are reproducible
CLIP_SUFFIXES = (".mp4", ".gif")


def clips(videos_dir: Path) -> list[Path]:
    return sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in CLIP_SUFFIXES)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comparable part of an --events stream (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        payload = dict(m["payload"]) if isinstance(m["payload"], dict) else m["payload"]
        if isinstance(payload, dict):
            payload.pop("event_id", None)
            if str(payload.get("schema", "")).startswith("storesense.camera_status/"):
                if payload.get("state") == "running":
                    continue
                payload.pop("fps_measured", None)
                if payload.get("state") == "starting":
                    payload.pop("timestamp_s", None)
        out.append({"topic": m["topic"], "payload": _round(payload)})
    return out


def analyze_events(video: Path, workdir: Path) -> list[dict[str, Any]]:
    """Run `storesense analyze` in-process on one clip with the demo config; the raw messages."""
    from edge.cli import main

    events = workdir / f"{video.name}.jsonl"
    old = os.environ.get("STORESENSE_DATA_DIR")
    os.environ["STORESENSE_DATA_DIR"] = str(workdir / "data")  # the demo config's data_dir
    try:
        code = main(["analyze", str(video), "--config", str(DEMO_CONFIG), "--events", str(events),
                     "--start", START, "--no-progress"])
    finally:
        if old is None:
            os.environ.pop("STORESENSE_DATA_DIR", None)
        else:
            os.environ["STORESENSE_DATA_DIR"] = old
    if code != 0:
        raise RuntimeError(f"storesense analyze {video.name} exited {code}")
    return [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]


def golden_path(video: Path) -> Path:
    return GOLDEN_DIR / f"{video.name}.jsonl"


def read_golden(video: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in golden_path(video).read_text(encoding="utf-8").splitlines()]


def write_golden(video: Path, messages: list[dict[str, Any]]) -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(m, ensure_ascii=False, sort_keys=True) for m in normalise(messages)]
    golden_path(video).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    if sys.argv[1:] != ["--update"]:
        print(__doc__)
        return 2
    sys.path.insert(0, str(ROOT))
    from edge.resources import videos_dir

    with tempfile.TemporaryDirectory() as tmp:
        for video in clips(videos_dir()):
            messages = analyze_events(video, Path(tmp))
            write_golden(video, messages)
            print(f"{golden_path(video).relative_to(ROOT)}: {len(normalise(messages))} messages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
