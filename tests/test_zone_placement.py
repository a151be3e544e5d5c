"""Placing zones (issue 13 item 6): /setup shows where tracks are born and end over the last hour,
and warns about zones that overlap in ways that double count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.config import load_config
from edge.contract import Tracks
from edge.track_flow import BIN_S, GRID, WINDOW_S, TrackFlow
from mqtt_bridge.display import DisplayServer
from mqtt_bridge.setup_page import SetupPage
from tests.browser import Browser
from tests.test_setup_page import (  # noqa: F401
    ARTIFACTS,
    PASSWORD,
    basic,
    open_setup_logged_in,
    request,
    setup_server,
    write_store,
)
from zones.overlaps import ZoneShape, double_counting_overlaps
from zones.simulator import QueueScenario, simulate_queue


def _grid(cells: list[list[int]]) -> np.ndarray:
    out = np.zeros((GRID[1], GRID[0]), int)
    for c, r, n in cells:
        out[r, c] += n
    return out


def test_track_flow_shows_where_simulated_customers_appear_and_leave(tmp_path: Path) -> None:
    """Simulated checkout: customers appear at the near edge (bottom of the picture) and leave past
    the tills (top). The overlay must say so, hold no identities, and keep memory flat."""
    sim = simulate_queue(QueueScenario(duration_s=2 * 3600.0, fps=1.0, rho=0.7, seed=3))
    path = tmp_path / "flow" / "sim-cam.json"
    flow = TrackFlow(path, "sim-cam")
    live_max = 0
    last = None
    for tracks in sim.frames():
        flow.update(tracks)
        live_max = max(live_max, flow.tracked_count)
        last = tracks
    assert last is not None
    flow.close()
    doc = json.loads(path.read_text())
    assert set(doc) == {"camera_id", "grid", "window_s", "from_s", "to_s", "births", "ends", "births_total",
                        "ends_total"}  # counts per cell, nothing per person
    born, ended = _grid(doc["births"]), _grid(doc["ends"])
    rows = GRID[1]
    assert doc["births_total"] >= 20
    assert born[rows * 3 // 4:].sum() >= 0.9 * born.sum(), born.sum(axis=1)  # the near edge: bottom quarter
    assert ended[: rows // 4].sum() >= 0.8 * ended.sum(), ended.sum(axis=1)  # past the tills: top quarter
    # the window is the last hour: customers of the first hour are gone from the overlay
    assert doc["to_s"] - doc["from_s"] <= WINDOW_S + BIN_S
    assert doc["births_total"] < sum(1 for c in sim.customers) * 0.75
    # flat memory: per-track state only for tracks on screen, bins a fixed ring
    assert flow.tracked_count == len(last) + len(getattr(last, "held_ids", ()))
    assert live_max <= 40
    assert len(flow._bins) <= WINDOW_S / BIN_S + 1


def test_track_flow_forgets_tracks_the_tracker_never_ends() -> None:
    """A track that vanishes without an end report (a bug upstream) must not be held forever."""
    flow = TrackFlow(None)
    for k in range(2000):
        ts = k * 1.0
        flow.update(Tracks("c", k, ts, (640, 360), np.array([[10, 10, 50, 100]], np.float32),
                           np.array([0.9], np.float32), np.array([k])))  # a new id every frame, never ended
    assert flow.tracked_count <= 601


@pytest.mark.parametrize(
    ("kinds", "offset", "warned"),
    [
        (("dwell", "service"), 0.0, "dwell zone over a till"),
        (("dwell", "queue"), 0.0, "dwell zone over a till"),
        (("queue", "service"), 0.5, "customer being served also counts in the line"),
        (("queue", "queue"), 0.5, "two queue zones"),
        (("dwell", "dwell"), 0.5, "two dwell zones"),
        (("staff_only", "queue"), 0.5, "taken for staff"),
        (("dwell", "service"), 0.97, None),  # hand-drawn neighbours touching: 3 % of the smaller zone
        (("dwell", "service"), 1.0, None),  # side by side
        (("entrance", "dwell"), 0.0, None),  # harmless: footfall and dwell are different counts
        (("entrance", "queue"), 0.0, None),
    ],
)
def test_overlap_rules(kinds: tuple[str, str], offset: float, warned: str | None) -> None:
    a = ZoneShape("a", kinds[0], [(0, 0), (1, 0), (1, 1), (0, 1)], lane="l1")
    b = ZoneShape("b", kinds[1], [(offset, 0), (offset + 1, 0), (offset + 1, 1), (offset, 1)], lane="l1")
    found = double_counting_overlaps([a, b])
    if warned is None:
        assert found == []
    else:
        assert len(found) == 1 and warned in found[0].message, found
        assert found[0].share == pytest.approx(1.0 - offset)


def test_a_self_crossing_zone_is_checked_not_crashed() -> None:
    bowtie = ZoneShape("bow", "dwell", [(0, 0), (1, 1), (1, 0), (0, 1)])
    till = ZoneShape("till", "service", [(0, 0), (1, 0), (1, 1), (0, 1)])
    assert [o.b for o in double_counting_overlaps([bowtie, till])] == ["till"]
    assert double_counting_overlaps([ZoneShape("line", "dwell", [(0, 0), (1, 1), (2, 2)]), till]) == []


def test_save_warns_about_a_dwell_zone_over_the_till(setup_server: tuple[DisplayServer, Path]) -> None:  # noqa: F811
    server, path = setup_server
    headers = {**basic(PASSWORD), "Content-Type": "application/json"}
    zones = [
        {"id": "lane-1-queue", "kind": "queue", "lane": "lane-1", "polygon_px": [[120, 50], [160, 50], [160, 100], [120, 100]]},
        {"id": "lane-1-till", "kind": "service", "lane": "lane-1", "polygon_px": [[160, 50], [200, 50], [200, 100], [160, 100]]},
        {"id": "promo", "kind": "dwell", "polygon_px": [[150, 40], [200, 40], [200, 100], [150, 100]]},
    ]
    status, _, answer = request(server.url + "setup/api/check", method="POST",
                                body=json.dumps({"zones": zones}).encode(), headers=headers)
    assert status == 200, answer
    pairs = {(o["a"], o["b"]) for o in json.loads(answer)["overlaps"]}
    assert pairs == {("lane-1-queue", "promo"), ("lane-1-till", "promo")}
    body = {"camera_id": "cam-1", "frame_size_px": [200, 100], "zones": zones}
    status, _, answer = request(server.url + "setup/api/save", method="POST", body=json.dumps(body).encode(),
                                headers=headers)
    assert status == 200, answer
    warnings = json.loads(answer)["warnings"]
    assert any("lane-1-till and promo" in w and "dwell zone over a till" in w for w in warnings), warnings
    status, _, answer = request(server.url + "setup/api/check", method="POST",
                                body=json.dumps({"zones": [{"id": "x", "polygon_px": "no"}]}).encode(), headers=headers)
    assert status == 400 and b"polygon_px" in answer


def _write_flow(tmp_path: Path) -> TrackFlow:
    """People appear along the bottom edge and leave on the right, as on the table clip."""
    flow = TrackFlow(tmp_path / "data" / "flow" / "cam-1.json", "cam-1")
    t0 = 1_795_428_000.0
    for k in range(6):
        start = t0 + 30.0 * k
        born = Tracks("cam-1", 0, start, (768, 432), np.array([[330, 300, 400, 430]], np.float32),
                      np.array([0.9], np.float32), np.array([k + 1]))
        flow.update(born)
        seen = Tracks("cam-1", 1, start + 10, (768, 432), np.array([[680, 200, 740, 360]], np.float32),
                      np.array([0.9], np.float32), np.array([k + 1]))
        flow.update(seen)
        flow.update(Tracks("cam-1", 2, start + 11, (768, 432), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                           np.zeros(0, np.int64), ended_ids=(k + 1,)))
    flow.close()
    return flow


def test_setup_describe_carries_the_flow_overlay(tmp_path: Path, table_video: Path) -> None:
    cfg = load_config(write_store(tmp_path, table_video))
    page = SetupPage(cfg, password=PASSWORD)
    assert page.describe()["cameras"][0]["track_flow"] is None
    _write_flow(tmp_path)
    flow = page.describe()["cameras"][0]["track_flow"]
    assert flow["births_total"] == 6 and flow["ends_total"] == 6
    assert all(r == GRID[1] - 1 for _, r, _ in flow["births"])
    (tmp_path / "data" / "flow" / "cam-1.json").write_text("[1, 2", encoding="utf-8")
    assert page.describe()["cameras"][0]["track_flow"] is None  # a torn file shows nothing, never a 500


def test_installer_sees_where_people_appear_and_an_overlap_warning_in_chromium(
    setup_server: tuple[DisplayServer, Path], tmp_path: Path  # noqa: F811
) -> None:
    server, _ = setup_server
    _write_flow(tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Browser(width_px=1500, height_px=1000) as b:
        page = open_setup_logged_in(b, server.url)
        page.clear_console()
        legend = page.evaluate("document.getElementById('flow-legend').textContent")
        assert "appear 6" in legend and "leave 6" in legend, legend
        # the overlay is drawn: the bottom-edge cell where everyone appeared turns green
        probe = """(() => { const c = document.getElementById('canvas'); const [cols, rows] = window.setupState.flow.grid;
            const cell = window.setupState.flow.births.reduce((a, x) => x[2] > a[2] ? x : a);
            const x = Math.round((cell[0] + 0.42) * c.width / cols), y = Math.round((cell[1] + 0.5) * c.height / rows);
            return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data); })()"""
        with_flow = page.evaluate(probe)
        page.click_element("#show-flow")
        without = page.evaluate(probe)
        assert with_flow[1] - without[1] >= 30 and with_flow[1] > with_flow[0], (with_flow, without)
        page.click_element("#show-flow")
        assert page.evaluate("document.querySelectorAll('.overlap-warning').length") == 0  # queue | till side by side

        # draw a dwell zone over the till (x 0.8-1.0, y 0.5-1.0) with real clicks
        rect = page.evaluate("(() => { const r = document.getElementById('canvas').getBoundingClientRect();"
                             " return [r.width, r.height]; })()")
        page.click_element("#mode-zone")
        for fx, fy in [(0.78, 0.55), (0.98, 0.55), (0.98, 0.95), (0.78, 0.95)]:
            page.click_at("#canvas", fx * rect[0], fy * rect[1])
        page.click_element("#finish-zone")
        warning = page.wait_for("Array.from(document.querySelectorAll('.overlap-warning')).map((w) => w.textContent)"
                                ".find((t) => t.includes('lane-1-till'))", 10)
        assert "zone-3" in warning and "dwell zone over a till" in warning, warning
        page.screenshot(ARTIFACTS / "setup_placing_zones.png", full_page=True)
        # an entrance there is harmless: the warning goes away
        page.select_option("#zone-list li:last-child select.zone-kind", "entrance")
        page.wait_for("document.querySelectorAll('.overlap-warning').length === 0", 10)
        assert page.console_errors() == []
