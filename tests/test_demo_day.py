"""`storesense demo --day` (issue 13 item 12): a simulated trading day in a demo history, then the
report. Run as a newcomer would, through the real CLI, into a real SQLite history."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from edge.demo_day import OPEN_HOUR, PROFILE
from edge.history import HistoryReader
from tests.browser import Browser

ARTIFACTS = Path("/tmp/storesense-test-artifacts")

DAY = "2026-11-26"
DAY_EPOCH_S = 1_795_651_200.0  # 2026-11-26T00:00:00Z
HOURS = 4  # 08:00-12:00: three quiet hours with lane 2 closed, then the lunch build-up with it open


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo-day")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--day", "--out", str(out), "--date", DAY, "--hours", str(HOURS),
         "--sim-fps", "0.25"],
        capture_output=True, text=True, timeout=600,
    )
    return out, proc


def _hour(ts: float) -> int:
    return int((ts - DAY_EPOCH_S) // 3600)


def test_demo_day_fills_a_history_with_a_trading_day(demo_day: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, proc = demo_day
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (out / "report.html").stat().st_size > 50_000
    assert str(out / "report.html") in proc.stdout
    with HistoryReader(out / "data" / "history.db") as reader:
        # footfall follows the profile: the 11:00 hour is busier than the 08:00 trickle
        entries = Counter(_hour(p["entered_s"]) for p in reader.payloads("storesense.event.entry"))
        assert set(entries) == set(range(OPEN_HOUR, OPEN_HOUR + HOURS)), entries
        assert entries[OPEN_HOUR + 3] > 1.4 * entries[OPEN_HOUR], entries
        # lanes opening and closing: lane 2 closed (by command) in the quiet hours, open at 11:00
        lane2 = [(_hour(p["timestamp_s"]), p["open"]) for p in reader.payloads("storesense.lane_state")
                 if p["lane_id"] == "lane-2"]
        assert {o for h, o in lane2 if h < OPEN_HOUR + 3} == {False}
        at_11 = [o for h, o in lane2 if h == OPEN_HOUR + 3]
        assert sum(at_11) > 0.99 * len(at_11), Counter(at_11)
        waits = Counter(p["lane_id"] for p in reader.payloads("storesense.event.queue_wait"))
        assert waits["lane-1"] >= 30 and waits["lane-2"] >= 5, waits
        # greetings at the door, assistance on the floor, some on time and some late
        for kind in ("greeting", "assist"):
            outcomes = Counter(bool(p["within_sla"]) for p in reader.payloads(f"storesense.event.{kind}"))
            assert outcomes[True] >= 5 and outcomes[False] >= 1, (kind, outcomes)
        # dwell: all three floor zones visited, with pass-bys and stops
        visits = list(reader.payloads("storesense.event.visit"))
        by_zone = Counter(p["zone_id"] for p in visits)
        assert {"promo", "new-arrivals", "fitting-rooms"} <= set(by_zone), by_zone
        assert 0.2 < sum(bool(p["stop"]) for p in visits) / len(visits) < 0.95
        # heatmaps of every camera, every hour
        heat = Counter(p["camera_id"] for p in reader.payloads("storesense.heatmap"))
        assert heat == {"checkout-cam": HOURS, "door-cam": HOURS, "floor-cam": HOURS}, heat


def test_demo_day_config_knows_every_lane_and_zone(demo_day: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The report reads lanes and zones from the written config (its cameras are simulated, so
    their sources are placeholders that validate-config would rightly report as missing)."""
    from edge.config import load_config

    out, _ = demo_day
    cfg = load_config(out / "store.yaml")
    kinds = Counter(z.kind for cam in cfg.cameras for z in cam.zones)
    assert [c.id for c in cfg.cameras] == ["checkout-cam", "door-cam", "floor-cam"]
    assert kinds["queue"] == 2 and kinds["service"] == 2 and kinds["entrance"] == 1 and kinds["dwell"] == 3, kinds


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hours", "0"], f"--hours: expected 1..{len(PROFILE)}"),
        (["--date", "26/11/2026"], "--date: expected a date like 2026-11-26"),
        (["--sim-fps", "100"], "--sim-fps: expected 0.2..10"),
    ],
)
def test_demo_day_bad_arguments_are_clear_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--day", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_day_report_reads_like_a_full_day_in_chromium(
    demo_day: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The manager's page: every headline card has a figure (no dash, no reason needed), every chart
    has data, lane 2 is open only part of the day, the three floor zones have dwell figures, each
    camera has a heatmap, and no dash is left unexplained anywhere on the page."""
    out, _ = demo_day
    with Browser(width_px=1280, height_px=900) as b:
        page = b.new_page((out / "report.html").as_uri())
        cards = page.evaluate("Array.from(document.querySelectorAll('.card')).map(c => [c.dataset.card,"
                              " c.querySelector('.v').innerText, !!c.querySelector('.why')])")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        lanes = page.evaluate("Array.from(document.querySelectorAll('#queues table tr')).slice(1)"
                              ".map(r => Array.from(r.cells).map(c => c.innerText))")
        zones = page.evaluate("Array.from(document.querySelectorAll('#dwell table tr')).slice(1)"
                              ".map(r => Array.from(r.cells).map(c => c.innerText))")
        text = page.text()
        assert page.console_errors() == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(ARTIFACTS / "demo_day_report.png", full_page=True)
    assert [c[0] for c in cards] == ["footfall", "peak", "wait", "greeting", "assist"]
    assert all(v not in ("–", "0", "") and not why for _, v, why in cards), cards
    assert "–" not in text.replace("p25–p75", "").replace("p10–p90", "").replace(":00–", ""), \
        [ln for ln in text.splitlines() if "–" in ln]
    assert len(images) == 5 + 3 and all(ok and w > 0 for _, ok, w in images), images
    open_pct = {row[0]: int(row[-1].rstrip("%").split("%")[0]) for row in lanes}
    assert open_pct["Lane 1"] == 100 and 10 <= open_pct["Lane 2"] <= 40, lanes  # 1 of 4 hours
    assert {row[0] for row in zones} == {"Promo table 促销台", "New arrivals 新品", "Fitting rooms 试衣间"}
    assert all(int(row[1]) > 0 for row in zones), zones
