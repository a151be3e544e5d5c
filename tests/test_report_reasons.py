"""The report with thin data (issue 13 item 11): each headline card says why it shows a dash, a zero
or an assumption, charts keep sensible axes when every value is 0, heatmap captions never round
person-time to 0.0 and zone labels stay on the map; greeters at their counter count as present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import StoreConfig, parse_config
from edge.contract import Message
from edge.history import HistoryReader, HistorySink
from edge.report import collect_report_data, person_time_text, write_report
from mqtt_bridge.topics import Topics
from tests.browser import Browser

DAY_S = 1_714_521_600.0  # 2024-05-01T00:00:00Z
THIN = """
version: 1
store: {id: thin-store, name: Thin Store, timezone: UTC}
cameras:
  - id: cam-1
    source: cam-1.mp4
    zones:
      - {id: q1, kind: queue, lane: lane-1, label: "Lane 1", polygon: [[0.1, 0.1], [0.4, 0.1], [0.4, 0.9], [0.1, 0.9]]}
      - {id: shelf, kind: dwell, label: "Shelf", polygon: [[0.5, 0.1], [0.9, 0.1], [0.9, 0.9], [0.5, 0.9]]}
"""


def _store(tmp_path: Path, text: str) -> StoreConfig:
    path = tmp_path / "store.yaml"
    path.write_text(text + f"data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    return parse_config(path.read_text(), str(path), path)


def _lane_state(ts: float, queue: int, source: str = "default") -> Message:
    return Message("lane_state", "lane-1", {
        "schema": "storesense.lane_state/1", "store_id": "thin-store", "lane_id": "lane-1", "label": "Lane 1",
        "camera_id": "cam-1", "timestamp_s": ts, "open": True, "open_source": source, "queue_length": queue,
        "queue_length_smoothed": float(queue), "predicted_wait_s": 30.0 * queue, "predicted_wait_low_s": None,
        "predicted_wait_high_s": None, "service_rate_per_min": None, "measured_wait_recent_s": None, "stale": False,
        "recommended": True}, "state")


def _thin_history(cfg: StoreConfig, *, waits: bool, missed_assists: int = 0) -> None:
    msgs = [_lane_state(DAY_S + 10 * 3600 + 60 * k, 0) for k in range(60)]
    if waits:
        for k in range(3):
            t = DAY_S + 10 * 3600 + 600 * (k + 1)
            msgs.append(Message("event", "queue_wait", {
                "schema": "storesense.event.queue_wait/1", "store_id": "thin-store", "timestamp_s": t,
                "event_id": f"w{k}", "type": "queue_wait", "lane_id": "lane-1", "camera_id": "cam-1",
                "joined_s": t - 40, "served_s": t, "wait_s": 40.0, "outcome": "served"}, "event"))
    # customers who stopped at the shelf: with nobody identifying staff, each one comes out "missed"
    for k in range(missed_assists):
        t = DAY_S + 11 * 3600 + 300 * k
        msgs.append(Message("event", "assist", {
            "schema": "storesense.event.assist/1", "store_id": "thin-store", "timestamp_s": t,
            "event_id": f"a{k}", "type": "assist", "zone_id": "shelf", "camera_id": "cam-1", "track_id": k,
            "outcome": "missed", "started_s": t - 40, "latency_s": None, "sla_s": 30.0, "within_sla": False,
            "customer_left": True, "distance_method": "image_approx"}, "event"))
    with HistorySink(cfg.data_path("history.db"), topics=Topics(cfg.store.id, cfg.mqtt.prefix)) as sink:
        sink.emit(msgs)


def _report(cfg: StoreConfig) -> Any:
    with HistoryReader(cfg.data_path("history.db")) as reader:
        return collect_report_data(reader, cfg, DAY_S, DAY_S + 86400)


def test_each_card_says_why_next_to_it_in_chromium(tmp_path: Path) -> None:
    """No entrance zone, no staff identification, one lane left at its default state: the cards
    show what they can and say why beside each dash or assumption."""
    cfg = _store(tmp_path, THIN)
    _thin_history(cfg, waits=True, missed_assists=4)
    data = _report(cfg)
    out = write_report(data, tmp_path / "report.html")
    with Browser(width_px=1280, height_px=900) as b:
        page = b.new_page(out.as_uri())
        cards = {c[0]: c[1:] for c in page.evaluate(
            "Array.from(document.querySelectorAll('.card')).map(c => [c.dataset.card, c.querySelector('.v').innerText,"
            " (c.querySelector('.why') || {innerText: ''}).innerText])")}
        lane_row = page.evaluate("Array.from(document.querySelectorAll('#queues table tr'))[1].innerText")
        assert page.console_errors() == []
    assert cards["footfall"] == ["0", "未配置入口区域 no entrance zone configured"]
    assert cards["peak"] == ["–", "未配置入口区域 no entrance zone configured"]
    assert cards["greeting"] == ["–", "未配置入口区域 no entrance zone configured"]
    assert cards["wait"][0] == "40 s" and cards["wait"][1].endswith("no staff identification: lanes assumed open")
    # four "missed" outcomes, but nobody identifies staff: a dash with the reason, not 0 %
    assert data.sla["assist"] and not any(ok for _, ok in data.sla["assist"].values())
    assert cards["assist"] == ["–", "未识别员工：无法测量导购响应 no staff identification: assistance cannot be measured"]
    assert "100% (假定 assumed)" in lane_row
    for value, why in cards.values():  # every dash is explained
        assert value != "–" or why


def test_reasons_follow_what_is_missing(tmp_path: Path) -> None:
    cfg = _store(tmp_path, THIN.replace("store: {id: thin-store", "staff: {methods: [staff_only_zone]}\nstore: {id: thin-store"))
    _thin_history(cfg, waits=False)
    why = _report(cfg).why
    assert why["wait"] == "此时段没有顾客完成结账 no customer served in this period"
    assert why["assist"].endswith("no customer stopped long enough in a dwell zone (stop_after_s)")


def test_a_config_without_cameras_gets_only_the_datas_reasons() -> None:
    """The chain report hands over a stand-in without cameras, zones or staff settings (HQ knows
    none): no 'not configured' claims, and no crash (test_hq_chain failed on the missing 'staff')."""
    from types import SimpleNamespace

    from edge.report import ReportData, card_reasons

    data = ReportData("s", "s", "UTC", DAY_S, DAY_S + 86400, [DAY_S + 3600 * h for h in range(24)])
    why = card_reasons(data, SimpleNamespace(cameras=[], lanes=list))
    assert why["footfall"].endswith("nobody counted at the entrance in this period")
    assert why["wait"].endswith("no customer served in this period")
    assert not any("configured" in w or "staff identification" in w for w in why.values()), why


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures the report draws, kept for inspection instead of being closed."""
    import edge.report as report

    kept: list[Any] = []
    monkeypatch.setattr(report, "fig_png", lambda fig: kept.append(fig) or b"png")
    return kept


def test_all_zero_charts_keep_sensible_axes_and_say_why(tmp_path: Path, figures: list[Any]) -> None:
    from edge.report import plot_footfall, plot_queues, plot_sla

    cfg = _store(tmp_path, THIN)
    _thin_history(cfg, waits=False)  # the lane is open all morning with nobody in line
    data = _report(cfg)
    plot_footfall(data)
    plot_queues(data)
    plot_sla(data)
    foot, queues, sla = figures
    ax = foot.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1
    assert all(float(t).is_integer() for t in ax.get_yticks())
    assert any("no entrance zone configured" in t.get_text() for t in ax.texts)
    q_ax = queues.axes[0]
    assert q_ax.get_ylim() == (0.0, 1.1)  # not -0.05..0.05 around the zeros
    assert all(float(t).is_integer() for t in q_ax.get_yticks())
    assert queues.axes[1].get_ylim()[1] >= 2.0  # the wait axis reaches the 2 min target
    assert any("no entrance zone configured" in t.get_text() for t in sla.axes[0].texts)


@pytest.mark.parametrize(("person_s", "text"), [
    (0.0, "0 人·秒 person-seconds"), (45.0, "45 人·秒 person-seconds"), (150.0, "2 人·分钟 person-minutes"),
    (359.0, "6 人·分钟 person-minutes"), (360.0, "0.1 人·小时 person-hours"), (73192.0, "20.3 人·小时 person-hours"),
])
def test_person_time_is_never_rounded_to_nothing(person_s: float, text: str) -> None:
    assert person_time_text(person_s) == text


def test_zone_labels_stay_on_the_map_and_only_where_needed() -> None:
    """A zone at the right edge of the floor plan: its label is centred in it (it ran under the
    colour bar); tills and staff-only areas are told by colour, not by crowded names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon as MplPolygon

    from zones.config import zone_config as make_zone
    from zones.heatmap import _zone_patch

    zones = [
        make_zone(id="new-arrivals", kind="dwell", label="New arrivals 新品", units="m",
                  polygon=[(8.0, 2.0), (11.0, 2.0), (11.0, 4.5), (8.0, 4.5)]),
        make_zone(id="desk", kind="staff_only", units="m", polygon=[(5.3, 4.6), (6.7, 4.6), (6.7, 5.4), (5.3, 5.4)]),
    ]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)  # the report's panel size
    try:
        for z in zones:
            _zone_patch(ax, np.asarray(z.polygon, dtype=float), z, MplPolygon)
        ax.set_xlim(0, 11.2)
        ax.set_ylim(0, 9)
        fig.canvas.draw()
        (label,) = ax.texts
        assert label.get_text() == "New arrivals 新品"
        assert 8.0 < label.xy[0] < 11.0 and label.get_horizontalalignment() == "center"
        assert label.get_window_extent().x1 <= ax.get_window_extent().x1 + 1 and label.get_clip_on()
    finally:
        plt.close(fig)


def test_greeters_at_their_counter_count_as_present(tmp_path: Path) -> None:
    """Two greeters wait at the counter (a staff-only zone on the door camera) and step into the
    entrance zone to greet: both are on duty the whole hour."""
    cfg = _store(tmp_path, """
version: 1
store: {id: door-store, timezone: UTC}
cameras:
  - id: door
    source: door.mp4
    zones:
      - {id: entrance, kind: entrance, polygon: [[0.1, 0.1], [0.6, 0.1], [0.6, 0.9], [0.1, 0.9]]}
      - {id: counter, kind: staff_only, polygon: [[0.7, 0.1], [0.9, 0.1], [0.9, 0.9], [0.7, 0.9]]}
staff: {methods: [staff_only_zone]}
""")
    msgs = []
    for k in range(360):
        t = DAY_S + 10 * 3600 + 10 * k
        at_door = 1 if k % 4 == 0 else 0  # now and then one of them greets someone
        for zid, staff in (("entrance", at_door), ("counter", 2 - at_door)):
            msgs.append(Message("zone_state", zid, {
                "schema": "storesense.zone_state/1", "store_id": "door-store", "zone_id": zid, "camera_id": "door",
                "kind": "entrance" if zid == "entrance" else "staff_only", "label": zid, "timestamp_s": t,
                "occupancy": 0, "staff_count": staff, "staff_present": staff > 0}, "state"))
    msgs.append(Message("event", "entry", {"schema": "storesense.event.entry/1", "store_id": "door-store",
                                           "timestamp_s": DAY_S + 36100, "event_id": "e1", "type": "entry",
                                           "zone_id": "entrance", "camera_id": "door", "entered_s": DAY_S + 36100}, "event"))
    with HistorySink(cfg.data_path("history.db"), topics=Topics(cfg.store.id, cfg.mqtt.prefix)) as sink:
        sink.emit(msgs)
    data = _report(cfg)
    present = {g.hour_start_s: g.actual for g in data.greeters if g.actual is not None}
    assert present == {DAY_S + 36000: pytest.approx(2.0)}
