"""Ops report: a synthetic day of documented messages → history DB → HTML checked in Chromium."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from edge.cli import main as cli_main
from edge.config import StoreConfig, parse_config
from edge.contract import Message
from edge.errors import UserFacingError
from edge.history import HistoryReader, HistorySink
from edge.ops_cli import parse_range, parse_when
from edge.report import cjk_font_name, collect_report_data, peak_hours, summary_numbers
from mqtt_bridge.topics import Topics
from tests.browser import Browser
from zones.heatmap import HeatmapAccumulator, heatmap_png_size

ARTIFACTS = Path("/tmp/storesense-test-artifacts")

TZ = "Asia/Shanghai"
DAY = "2024-05-01"
OPEN_HOUR, CLOSE_HOUR = 9, 21
FOOTFALL = [20, 35, 50, 80, 95, 60, 45, 50, 70, 100, 85, 40]  # entries per hour 09..20
ASSIST_PER_HOUR = [3, 4, 6, 8, 9, 6, 5, 5, 7, 9, 8, 4]

STORE_YAML = f"""
version: 1
store: {{id: syn-store, name: "Synthetic Store 合成店", timezone: {TZ}}}
cameras:
  - id: cam-1
    source: cam-1.mp4
    calibration:
      image_points_px: [[200, 700], [1080, 700], [900, 300], [380, 300]]
      floor_points_m: [[0, 0], [8, 0], [8, 10], [0, 10]]
      reference_size_px: [1280, 720]
    zones:
      - {{id: lane-1-queue, kind: queue, lane: lane-1, label: "Lane 1 一号通道", service_zone: lane-1-till,
         polygon: [[0.6, 0.5], [0.8, 0.5], [0.8, 1.0], [0.6, 1.0]]}}
      - {{id: lane-1-till, kind: service, lane: lane-1, polygon: [[0.8, 0.5], [1.0, 0.5], [1.0, 1.0], [0.8, 1.0]]}}
      - {{id: lane-2-queue, kind: queue, lane: lane-2, label: "Lane 2 二号通道", service_zone: lane-2-till,
         polygon: [[0.2, 0.5], [0.4, 0.5], [0.4, 1.0], [0.2, 1.0]]}}
      - {{id: lane-2-till, kind: service, lane: lane-2, polygon: [[0.4, 0.5], [0.6, 0.5], [0.6, 1.0], [0.4, 1.0]]}}
      - {{id: entrance, kind: entrance, label: "Entrance 入口", polygon: [[0.0, 0.0], [0.2, 0.0], [0.2, 0.4], [0.0, 0.4]]}}
      - {{id: wine, kind: dwell, label: "Wine 葡萄酒", polygon: [[0.3, 0.0], [0.6, 0.0], [0.6, 0.4], [0.3, 0.4]]}}
      - {{id: snacks, kind: dwell, label: "Snacks 零食", polygon: [[0.6, 0.0], [0.9, 0.0], [0.9, 0.4], [0.6, 0.4]]}}
"""


def store_config(tmp_path: Path) -> StoreConfig:
    path = tmp_path / "store.yaml"
    text = STORE_YAML + f"data_dir: {tmp_path / 'data'}\n"
    path.write_text(text, encoding="utf-8")
    return parse_config(text, str(path), path)


@dataclass
class Truth:
    """What the synthetic day contains, computed while generating it."""

    footfall: dict[float, int] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    waits_by_lane: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    greet_ok: int = 0
    greet_n: int = 0
    assist_ok: int = 0
    assist_n: int = 0
    dwell: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    stops: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lane_states: int = 0
    heatmap_person_s: float = 0.0
    heatmap_hours: int = 0


def hour_start(hour: int) -> float:
    return datetime.fromisoformat(f"{DAY}T{hour:02d}:00").replace(tzinfo=ZoneInfo(TZ)).timestamp()


HOTSPOTS_M = [((2.0, 8.0), 0.8), ((6.0, 7.5), 0.7), ((3.0, 2.0), 0.5), ((6.5, 2.0), 0.5), ((4.0, 5.0), 1.5)]


def heatmap_hours(cfg: StoreConfig, topics: Topics, rng: random.Random, truth: Truth) -> list[Message]:
    """Real HeatmapAccumulator messages: shoppers linger at a few hotspots on the floor."""
    acc = HeatmapAccumulator.for_camera(cfg, "cam-1", floor=True)
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    out: list[Message] = []
    dt_s = 5.0
    for i, entries in enumerate(FOOTFALL):
        h0 = hour_start(OPEN_HOUR + i)
        people = max(2, entries // 8)
        ids = np.arange(people) + 1000 * i
        spot = nrng.integers(0, len(HOTSPOTS_M), size=people)
        for step in range(int(3600 / dt_s)):
            if step % 60 == 0:  # every 5 minutes everybody moves on to another hotspot
                spot = nrng.integers(0, len(HOTSPOTS_M), size=people)
            centres = np.array([HOTSPOTS_M[k][0] for k in spot])
            spread = np.array([HOTSPOTS_M[k][1] for k in spot])[:, None]
            pts = centres + nrng.normal(0.0, 1.0, size=(people, 2)) * spread
            acc.add(pts, ids, dt_s, h0 + (step + 1) * dt_s)
        out.extend(acc.flush(h0 + 3600.0 + 1.0))
    for m in out:
        truth.heatmap_person_s += float(m.payload["total_person_s"])
        truth.heatmap_hours += 1
    return out


def synthetic_day(cfg: StoreConfig, state_interval_s: float = 10.0, seed: int = 7) -> tuple[list[Message], Truth]:
    """A day with the payload shapes of docs/messages.md (zones/analytics.py, zones/heatmap.py)."""
    rng = random.Random(seed)
    topics = Topics("syn-store")
    truth = Truth()
    msgs: list[Message] = heatmap_hours(cfg, topics, rng, truth)

    def event(kind: str, ts: float, body: dict[str, Any]) -> None:
        payload = {"schema": f"storesense.event.{kind}/1", "store_id": "syn-store", "timestamp_s": round(ts, 3),
                   "event_id": f"{kind}-{len(msgs)}", "type": kind}
        payload.update(body)
        msgs.append(Message("event", kind, payload, "event"))

    for i, (entries, assists) in enumerate(zip(FOOTFALL, ASSIST_PER_HOUR, strict=True)):
        h0 = hour_start(OPEN_HOUR + i)
        truth.footfall[h0] = entries
        for _ in range(entries):
            t = h0 + rng.uniform(0, 3599)
            greeted = rng.random() < 0.8
            latency = rng.uniform(1, 9) if greeted else None
            within = greeted and rng.random() < 0.9
            if within is False and greeted:
                latency = rng.uniform(11, 25)
            truth.greet_n += 1
            truth.greet_ok += int(within)
            event("greeting", t + (latency or 10.0), {
                "zone_id": "entrance", "camera_id": "cam-1", "track_id": len(msgs), "outcome": "greeted" if greeted else "missed",
                "started_s": round(t, 3), "latency_s": latency, "sla_s": 10.0, "within_sla": within,
                "customer_left": False, "distance_method": "floor_m"})
        for _ in range(assists):
            t = h0 + rng.uniform(0, 3500)
            within = rng.random() < 0.6
            truth.assist_n += 1
            truth.assist_ok += int(within)
            event("assist", t + 5, {
                "zone_id": "wine", "camera_id": "cam-1", "track_id": len(msgs), "outcome": "greeted" if within else "missed",
                "started_s": round(t, 3), "latency_s": 12.0 if within else None, "sla_s": 30.0, "within_sla": within,
                "customer_left": not within, "distance_method": "floor_m"})
        for zone, scale in (("wine", 45.0), ("snacks", 20.0)):
            for _ in range(entries // 2):
                enter = h0 + rng.uniform(0, 3000)
                d = round(rng.expovariate(1 / scale) + 2, 2)
                truth.dwell[zone].append(d)
                truth.stops[zone] += int(d >= 20.0)
                event("visit", enter + d, {
                    "zone_id": zone, "camera_id": "cam-1", "track_id": len(msgs), "enter_s": round(enter, 3),
                    "exit_s": round(enter + d, 3), "dwell_s": d, "stop": d >= 20.0, "stop_after_s": 20.0,
                    "closed_by": "exit"})
        # lanes: lane-1 always open, lane-2 at the busy hours
        for lane_id in ("lane-1", "lane-2"):
            lane_open = lane_id == "lane-1" or i in (3, 4, 9, 10)
            if not lane_open:
                continue
            served = max(1, int(entries * (0.45 if lane_id == "lane-1" else 0.35)))
            for _ in range(served):
                joined = h0 + rng.uniform(0, 3300)
                wait = round(rng.gammavariate(2.0, 30.0 + entries), 2)
                t_served = joined + wait
                if t_served >= hour_start(CLOSE_HOUR):
                    continue
                truth.waits.append(wait)
                truth.waits_by_lane[lane_id].append(wait)
                event("queue_wait", t_served, {
                    "lane_id": lane_id, "camera_id": "cam-1", "track_id": len(msgs), "outcome": "served",
                    "joined_s": round(joined, 3), "served_s": round(t_served, 3), "wait_s": wait,
                    "queue_length_at_join": 2})
            # an abandoned customer: not a measured wait
            event("queue_wait", h0 + 1800, {
                "lane_id": lane_id, "camera_id": "cam-1", "track_id": len(msgs), "outcome": "abandoned",
                "joined_s": h0 + 1700, "served_s": None, "wait_s": 100.0, "queue_length_at_join": 4})
    # lane and zone state snapshots across the whole day, including closed hours
    t = hour_start(OPEN_HOUR)
    end = hour_start(CLOSE_HOUR)
    while t < end:
        i = int((t - hour_start(OPEN_HOUR)) // 3600)
        load = FOOTFALL[i] / 100.0
        phase = math.sin((t % 1800) / 1800 * 2 * math.pi)
        for lane_id in ("lane-1", "lane-2"):
            lane_open = lane_id == "lane-1" or i in (3, 4, 9, 10)
            q = max(0, round((5 * load + 1.5 * phase) if lane_open else 0))
            rate = 1.0 / (1.0 + 0.5 * load)  # customers per minute
            payload = {
                "schema": "storesense.lane_state/1", "store_id": "syn-store", "lane_id": lane_id,
                "label": "Lane 1 一号通道" if lane_id == "lane-1" else "Lane 2 二号通道", "camera_id": "cam-1",
                "timestamp_s": round(t, 3), "open": lane_open, "open_source": "staff", "command": "auto",
                "queue_length": q, "queue_length_smoothed": q, "server_busy": q > 0,
                "predicted_wait_s": round(q / rate * 60.0, 1), "predicted_wait_low_s": 0.0,
                "predicted_wait_high_s": round(q / rate * 90.0, 1), "service_rate_per_min": round(rate, 3),
                "service_rate_source": "observed", "services_observed": 10, "measured_wait_recent_s": None,
                "measured_wait_mean_s": None, "littles_law_wait_s": None, "stale": False, "stale_reason": None,
                "recommended": lane_id == "lane-1",
            }
            msgs.append(Message("lane_state", lane_id, payload, "state"))
            truth.lane_states += 1
        msgs.append(Message("zone_state", "entrance", {
            "schema": "storesense.zone_state/1", "store_id": "syn-store", "zone_id": "entrance", "label": "Entrance",
            "kind": "entrance", "camera_id": "cam-1", "timestamp_s": round(t, 3), "occupancy": 1,
            "staff_present": True, "staff_count": 1 if i < 6 else 2}, "state"))
        t += state_interval_s
    msgs.sort(key=lambda m: m.payload["timestamp_s"])
    return msgs, truth


def reference_frame(path: Path) -> None:
    """A plain drawing standing in for the camera's first frame (floor, shelves, tills)."""
    img = np.full((720, 1280, 3), (200, 205, 210), np.uint8)
    cv2.fillPoly(img, [np.array([[200, 700], [1080, 700], [900, 300], [380, 300]], np.int32)], (120, 140, 160))
    for x in (420, 620, 820):
        cv2.rectangle(img, (x, 120), (x + 120, 300), (90, 110, 60), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def load_day(tmp_path: Path) -> tuple[StoreConfig, Path, Truth]:
    cfg = store_config(tmp_path)
    msgs, truth = synthetic_day(cfg)
    reference_frame(cfg.data_path("reference", "cam-1.jpg"))
    db = cfg.data_path(cfg.history.path)
    with HistorySink(db, topics=Topics(cfg.store.id, cfg.mqtt.prefix)) as sink:
        for k in range(0, len(msgs), 500):
            sink.emit(msgs[k : k + 500])
    return cfg, db, truth


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[StoreConfig, Path, Truth]:
    return load_day(tmp_path_factory.mktemp("day"))


def test_report_numbers_match_the_synthetic_day(day: tuple[StoreConfig, Path, Truth]) -> None:
    cfg, db, truth = day
    start, end = parse_range(DAY, DAY, ZoneInfo(TZ))
    assert end - start == 86400
    with HistoryReader(db) as reader:
        data = collect_report_data(reader, cfg, start, end)
    n = summary_numbers(data)
    assert n["footfall_total"] == sum(FOOTFALL)
    assert {h: c for h, c in n["footfall_per_hour"].items() if c} == truth.footfall
    assert n["waits_count"] == len(truth.waits)
    assert n["wait_mean_s"] == pytest.approx(float(np.mean(truth.waits)))
    for lane in data.lanes:
        assert sorted(w for _, w in lane.waits) == pytest.approx(sorted(truth.waits_by_lane[lane.lane_id]))
    assert sum(len(lane.times_s) for lane in data.lanes) == truth.lane_states
    assert n["sla_count"] == {"greeting": truth.greet_n, "assist": truth.assist_n}
    assert n["sla_pct"]["greeting"] == pytest.approx(100.0 * truth.greet_ok / truth.greet_n)
    assert n["sla_pct"]["assist"] == pytest.approx(100.0 * truth.assist_ok / truth.assist_n)
    dwell = {z.zone_id: z for z in data.dwell}
    for zone, values in truth.dwell.items():
        assert sorted(dwell[zone].dwell_s) == pytest.approx(sorted(values))
        assert dwell[zone].stops == truth.stops[zone]
    assert [p.hour_start_s for p in n["peak_footfall"]] == [hour_start(18), hour_start(13), hour_start(19)]
    assert [p.hour_start_s for p in peak_hours({h: float(c) for h, c in truth.footfall.items()}, 1)] == [hour_start(18)]
    # staffing: one recommendation per hour; lane-2 was closed in hours where M/M/c asks for 2+ tills
    by_hour = {t.hour_start_s: t for t in data.tills}
    assert by_hour[hour_start(9)].arrivals == len([1 for lane in data.lanes for t, _ in lane.waits
                                                    if hour_start(9) <= t < hour_start(10)])
    assert by_hour[hour_start(9)].actual == pytest.approx(1.0)
    assert by_hour[hour_start(13)].actual == pytest.approx(2.0)
    assert all(t.needed >= 1 for h, t in by_hour.items() if t.arrivals > 0)
    assert len(data.greeters) == len(data.hours) == 24


def test_report_cli_writes_a_self_contained_page_that_renders_in_chromium(
    day: tuple[StoreConfig, Path, Truth], tmp_path: Path
) -> None:
    cfg, _, truth = day
    out = tmp_path / "report.html"
    assert cfg.source_path is not None
    code = cli_main(["report", "--config", str(cfg.source_path), "--from", DAY, "--to", DAY, "--out", str(out)])
    assert code == 0
    html = out.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # nothing to fetch: one file
    assert f">{sum(FOOTFALL):,}<" in html
    assert "18:00–19:00" in html
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Browser(width_px=1280, height_px=900) as b:
        page = b.new_page(out.as_uri())  # returns once document.readyState is 'complete'
        sections = page.evaluate("Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
        assert sections[:7] == ["peaks", "footfall", "queues", "sla", "dwell", "staffing", "heatmaps"]
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) == 6  # five plots and the camera's heatmap
        for alt, complete, width, height in images:
            assert complete and width > 0 and height > 0, alt
        external = page.evaluate(
            "performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
        )
        assert external == []
        assert page.console_errors() == []
        page.screenshot(ARTIFACTS / "report.png", full_page=True)
    heat = next(img for img in images if img[0].startswith("heatmap"))
    assert heat[2] >= 700  # camera view and floor plan side by side


def test_heatmap_cli_renders_the_period_over_the_reference_frame(
    day: tuple[StoreConfig, Path, Truth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _, truth = day
    assert cfg.source_path is not None
    out = tmp_path / "heat.png"
    code = cli_main(["heatmap", "--config", str(cfg.source_path), "--camera", "cam-1", "--from", f"{DAY} 12:00",
                     "--to", f"{DAY} 15:00", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 hour(s)" in printed and "floor plane (m)" in printed and "over the reference frame" in printed
    image = cv2.imread(str(out))
    from zones.heatmap import HeatmapGrid

    grid = HeatmapGrid.floor(0, 0, 1, 1, 0.25)
    w, h = heatmap_png_size(grid, reference=True, calibration=True)
    assert image.shape[:2] == (h, w)  # two panels: camera view and floor plan
    assert image.std() > 20  # not a blank canvas
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(ARTIFACTS / "heatmap.png"), image)
    # a week with no data is a clear error, not an empty picture
    code = cli_main(["heatmap", "--config", str(cfg.source_path), "--camera", "cam-1", "--from", "2024-06-01",
                     "--to", "2024-06-07", "--out", str(tmp_path / "none.png")])
    assert code == 2 and not (tmp_path / "none.png").exists()
    code = cli_main(["heatmap", "--config", str(cfg.source_path), "--camera", "nope", "--out", str(tmp_path / "x.png")])
    assert code == 2
    # relative times as the docs write them: "--from -7d" was read as an option ("expected one argument")
    code = cli_main(["heatmap", "--config", str(cfg.source_path), "--camera", "cam-1", "--from", "-20000d",
                     "--to", "-1h", "--out", str(tmp_path / "rel.png")])
    assert code == 0 and (tmp_path / "rel.png").exists()


def test_heatmap_privacy_threshold_hides_sparse_cells(day: tuple[StoreConfig, Path, Truth], tmp_path: Path) -> None:
    from edge.report import render_camera_heatmap

    cfg, db, _ = day
    start, end = parse_range(DAY, DAY, ZoneInfo(TZ))
    with HistoryReader(db) as reader:
        loose = render_camera_heatmap(reader, cfg, "cam-1", start, end, tmp_path / "a.png", min_tracks=1)
        strict = render_camera_heatmap(reader, cfg, "cam-1", start, end, tmp_path / "b.png", min_tracks=10_000)
    assert loose is not None and strict is not None
    a = cv2.imread(str(tmp_path / "a.png")).astype(np.int32)
    b = cv2.imread(str(tmp_path / "b.png")).astype(np.int32)
    assert np.abs(a - b).mean() > 1.0  # with every cell under the threshold, no heat is drawn


NOW = datetime.fromisoformat("2024-05-10T15:30:00+08:00").timestamp()


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2024-05-01", False, "2024-05-01T00:00:00+08:00"),
        ("2024-05-01", True, "2024-05-02T00:00:00+08:00"),
        ("2024-05-01T09:30", False, "2024-05-01T09:30:00+08:00"),
        ("2024-05-01 09:30", True, "2024-05-01T09:30:00+08:00"),
        ("2024-05-01T09:30:00+00:00", False, "2024-05-01T17:30:00+08:00"),
        ("today", False, "2024-05-10T00:00:00+08:00"),
        ("today", True, "2024-05-11T00:00:00+08:00"),
        ("yesterday", False, "2024-05-09T00:00:00+08:00"),
        ("now", True, "2024-05-10T15:30:00+08:00"),
        ("-24h", False, "2024-05-09T15:30:00+08:00"),
        ("-7d", False, "2024-05-03T15:30:00+08:00"),
        ("-30m", False, "2024-05-10T15:00:00+08:00"),
        ("-2w", False, "2024-04-26T15:30:00+08:00"),
    ],
)
def test_time_arguments_are_store_local(text: str, end: bool, expected: str) -> None:
    assert parse_when(text, ZoneInfo(TZ), end=end, now_s=NOW) == datetime.fromisoformat(expected).timestamp()


@pytest.mark.parametrize(("start", "stop", "message"), [
    ("2024-05-02", "2024-05-01", "must be after"),
    ("last tuesday", None, "cannot read the time"),
    ("2024-13-01", None, "not a valid date"),
])
def test_bad_time_arguments_are_clear_errors(start: str, stop: str | None, message: str) -> None:
    with pytest.raises(UserFacingError, match=message):
        parse_range(start, stop, ZoneInfo(TZ), now_s=NOW)


def test_cjk_font_is_installed_for_chinese_labels() -> None:
    name = cjk_font_name()
    assert name is not None, "install fonts-wqy-zenhei (scripts/setup.sh does)"
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
    from matplotlib.ft2font import FT2Font

    assert FT2Font(path).get_char_index(ord("客")) != 0  # the glyph for 客 (footfall) exists


def test_report_without_history_is_a_clear_error(tmp_path: Path) -> None:
    cfg = store_config(tmp_path)
    assert cfg.source_path is not None
    run = subprocess.run([sys.executable, "-m", "edge.cli", "report", "--config", str(cfg.source_path),
                          "--out", str(tmp_path / "r.html")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "history database" in run.stderr and "Traceback" not in run.stderr


def test_footfall_counts_entry_events_when_the_history_has_them(tmp_path: Path) -> None:
    """Entry events are the footfall source; greeting outcomes only for histories without them."""
    cfg = store_config(tmp_path)
    topics = Topics(cfg.store.id)
    h9, h10 = hour_start(9), hour_start(10)
    msgs = []
    for i, t in enumerate([h9 + 60, h9 + 120, h10 + 30]):
        msgs.append(Message("event", "entry", {
            "schema": "storesense.event.entry/1", "event_id": f"e{i}", "store_id": cfg.store.id,
            "timestamp_s": t + 1, "camera_id": "cam-1", "zone_id": "door", "entered_s": t, "track_age_s": 0.5}, "event"))
    # a greeting outcome in another hour must not add footfall once entry events exist
    msgs.append(Message("event", "greeting", {
        "schema": "storesense.event.greeting/1", "event_id": "g1", "store_id": cfg.store.id,
        "timestamp_s": hour_start(11) + 5, "started_s": hour_start(11), "zone_id": "door", "within_sla": True}, "event"))
    db = tmp_path / "h.db"
    sink = HistorySink(db, retention_days=30, max_size_mb=10, topics=topics)
    sink.emit(msgs)
    sink.close()
    with HistoryReader(db) as reader:
        data = collect_report_data(reader, cfg, hour_start(8), hour_start(12))
    assert data.footfall.get(h9) == 2 and data.footfall.get(h10) == 1
    assert data.footfall.get(hour_start(11), 0) == 0
    assert data.sla["greeting"][hour_start(11)] == (1, 1)  # the greeting was read, for the SLA only


def test_the_hour_repeated_when_daylight_saving_ends_is_told_apart() -> None:
    """On 2026-11-01 New York's clocks go 01:59 EDT -> 01:00 EST: the report and the chain
    report labelled both hours "01:00"; now the hours next to the change carry the zone."""
    from zoneinfo import ZoneInfo

    from edge.report import clock_label

    tz = ZoneInfo("America/New_York")
    first = datetime.fromisoformat("2026-11-01T05:00:00+00:00").timestamp()  # 01:00 EDT
    labels = [clock_label(first + k * 3600.0, tz) for k in (-1, 0, 1, 2)]
    assert labels == ["00:00", "01:00 EDT", "01:00 EST", "02:00"], labels
    assert clock_label(datetime.fromisoformat("2026-07-01T16:00:00+00:00").timestamp(), tz) == "12:00"
