#!/usr/bin/env python3
"""A simulated trading day in a demo history, then the manager's report on it.

A newcomer's first report is otherwise empty. This fills a history database with one day
(08:00-21:00, store time UTC) of the existing simulator's scenes, run through the unchanged
analytics: a morning trickle, lunch and evening peaks at two checkout lanes (lane 2 closed in
the quiet hours and opened by command for the peaks), and an entrance with greeters whose
number follows the traffic. Then it writes ``report.html`` with ``storesense report``.

    python scripts/demo_day.py --out /tmp/demo-day            # ~5-10 min on 2 cores
    python scripts/demo_day.py --out /tmp/demo-day --hours 3  # a shorter day
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from edge.contract import Message
from edge.history import HistorySink
from mqtt_bridge.topics import Topics
from zones.analytics import StoreAnalytics
from zones.simulator import (
    REALISTIC_NOISE,
    EntranceScenario,
    QueueScenario,
    replay,
    simulate_entrance,
    simulate_queue,
)

STORE_ID = "demo-day"
OPEN_HOUR = 8
# per hour from 08:00: checkout utilisation, entrance customers per minute, greeters on duty,
# and whether lane 2 is open (by command)
PROFILE = [
    (0.25, 0.5, 1, False), (0.35, 0.8, 1, False), (0.45, 1.0, 1, False), (0.6, 1.4, 2, True),
    (0.85, 2.2, 2, True), (0.9, 2.4, 2, True), (0.6, 1.4, 2, True), (0.45, 1.0, 1, False),
    (0.5, 1.2, 1, False), (0.7, 1.8, 2, True), (0.9, 2.5, 2, True), (0.8, 2.0, 2, True), (0.35, 0.7, 1, False),
]


def _hour(day_epoch_s: float, h: int, fps: float, sink: HistorySink) -> tuple[dict[str, Any], dict[str, Any]]:
    rho, per_min, greeters, lane2_open = PROFILE[h]
    start = day_epoch_s + (OPEN_HOUR + h) * 3600.0
    # quiet hours: one till (lane 2 closed, nobody queues there); peaks: lane 2 opened by command
    q = simulate_queue(QueueScenario(
        tills=2 if lane2_open else 1, rho=rho, duration_s=3600.0, fps=fps, noise=REALISTIC_NOISE, seed=100 + h,
        start_epoch_s=start, store_id=STORE_ID, camera_id="checkout-cam"))
    a = StoreAnalytics(q.config)
    msgs: list[Message] = []
    msgs += a.set_lane_state("lane-1", "open", start)
    if lane2_open:
        msgs += a.set_lane_state("lane-2", "open", start)
    rep = replay(q, analytics=a)
    sink.emit(msgs + rep.messages)
    e = simulate_entrance(EntranceScenario(
        duration_s=3600.0, fps=fps, customers_per_min=per_min, greeters=greeters, noise=REALISTIC_NOISE,
        seed=200 + h, start_epoch_s=start, store_id=STORE_ID, camera_id="door-cam"))
    sink.emit(replay(e).messages)
    return q.config.model_dump(mode="json", exclude_none=True), e.config.model_dump(mode="json", exclude_none=True)


def write_config(out: Path, queue_cfg: dict[str, Any], door_cfg: dict[str, Any]) -> Path:
    """One store with both simulated cameras, so the report knows every lane and zone."""
    doc = {
        "version": 1,
        "store": {"id": STORE_ID, "name": "Demo day store", "timezone": "UTC"},
        "cameras": queue_cfg["cameras"] + door_cfg["cameras"],
        "staff": {"methods": ["staff_only_zone"]},
        "mqtt": {"enabled": False},
        "data_dir": str(out / "data"),
    }
    path = out / "store.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", required=True, help="folder for store.yaml, data/history.db and report.html")
    ap.add_argument("--day", default="2026-11-26", help="the simulated date (store time UTC)")
    ap.add_argument("--hours", type=int, default=len(PROFILE), help=f"hours from 08:00 (max {len(PROFILE)})")
    ap.add_argument("--fps", type=float, default=2.0, help="simulated camera frame rate (lower is faster)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out).resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    history = out / "data" / "history.db"
    if history.exists():
        history.unlink()
    day_epoch_s = dt.datetime.fromisoformat(args.day).replace(tzinfo=dt.timezone.utc).timestamp()
    sink = HistorySink(history, retention_days=3650.0, topics=Topics(STORE_ID))
    t0 = time.monotonic()
    cfgs: tuple[dict[str, Any], dict[str, Any]] | None = None
    for h in range(min(args.hours, len(PROFILE))):
        hour_cfgs = _hour(day_epoch_s, h, args.fps, sink)
        if cfgs is None or PROFILE[h][3]:  # the report's config: a two-lane hour's, if any
            cfgs = hour_cfgs
        print(f"{OPEN_HOUR + h:02d}:00 simulated ({time.monotonic() - t0:.0f} s)", flush=True)
    sink.close()
    assert cfgs is not None
    cfg_path = write_config(out, *cfgs)
    from edge.cli import main as cli

    report = out / "report.html"
    rc = cli(["report", "--config", str(cfg_path), "--from", args.day, "--to", args.day, "--out", str(report)])
    print(f"report: {report} (exit {rc})")


if __name__ == "__main__":
    main()
