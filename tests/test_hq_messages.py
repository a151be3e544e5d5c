"""Unit tests of one class/function each: the HQ message classifier and hq.yaml validation."""

from __future__ import annotations

import json

import pytest

from edge.config import ConfigError
from hq.config import parse_hq_config
from hq.ingest import subscription_topics
from hq.messages import AvailabilityRow, DeadLetter, EventRow, HeatmapRow, Ignored, StateSample, classify

NOW = 1_800_000_000.0
P = "storesense/v1"


def c(topic: str, payload: bytes | dict) -> object:
    raw = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    return classify(f"{P}/{topic}", raw, prefix=P, now_s=NOW, accept_future_s=86400, retention_days=30)


def test_event_state_heatmap_availability_rows() -> None:
    ev = c("s1/events/greeting", {"schema": "storesense.event.greeting/1", "store_id": "s1", "timestamp_s": NOW,
                                  "event_id": "g-1", "within_sla": True})
    assert isinstance(ev, EventRow) and (ev.store_id, ev.event_id, ev.type) == ("s1", "g-1", "greeting")
    st = c("s1/lane/l1/state", {"schema": "storesense.lane_state/1", "store_id": "s1", "timestamp_s": NOW,
                                "queue_length": 3, "open": True, "predicted_wait_s": None, "label": "L1"})
    assert isinstance(st, StateSample) and dict(st.metrics) == {"queue_length": 3.0, "open": 1.0}
    hm = c("s1/camera/cam-1/heatmap", {"schema": "storesense.heatmap/1", "store_id": "s1", "timestamp_s": NOW,
                                       "event_id": "h-1", "hour_start_s": NOW - 3600})
    assert isinstance(hm, HeatmapRow) and hm.camera_id == "cam-1"
    assert c("s1/edge/box-1/availability", b"offline") == AvailabilityRow("s1", "box-1", "offline")
    assert c("s1/edge/bridge/connection", b"1") == AvailabilityRow("s1", "bridge", "online")
    assert isinstance(c("s1/lane/l1/set", b'{"state": "open"}'), Ignored)
    assert isinstance(c("s1/lane/l1/state", b""), Ignored)  # a cleared retained message


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("s1/events/entry", b"\xff\xfe", "not JSON"),
    ("s1/events/entry", b"[]", "JSON object"),
    ("s1/events/entry", {"schema": "storesense.event.entry/2", "store_id": "s1"}, "unknown schema"),
    ("s1/events/entry", {"schema": "storesense.event.entry/1", "store_id": "s2", "event_id": "x",
                         "timestamp_s": NOW}, "does not match"),
    ("s1/events/entry", {"schema": "storesense.event.entry/1", "store_id": "s1", "event_id": "x",
                         "timestamp_s": "yesterday"}, "epoch seconds"),
    ("s1/events/entry", {"schema": "storesense.event.entry/1", "store_id": "s1", "event_id": "x",
                         "timestamp_s": NOW - 40 * 86400}, "retention"),
    ("s1/zone/z/state", {"schema": "storesense.lane_state/1", "store_id": "s1", "timestamp_s": NOW}, "unknown schema"),
    ("s1/whatever", b"{}", "topic shape"),
    ("s1/edge/box/availability", b"sleeping", "availability"),
])
def test_bad_input_becomes_a_dead_letter_with_a_reason(topic: str, payload: bytes | dict, reason: str) -> None:
    row = c(topic, payload)
    assert isinstance(row, DeadLetter) and reason in row.reason, row
    assert row.topic == f"{P}/{topic}"


def test_outside_the_prefix_is_a_dead_letter() -> None:
    row = classify("other/s1/events/x", b"{}", prefix=P, now_s=NOW, accept_future_s=0, retention_days=1)
    assert isinstance(row, DeadLetter)


def test_config_errors_name_the_line_and_subscriptions() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_hq_config("postgres:\n  dsn: x\nmqtt:\n  port: 99999\n  colour: red\n", "hq.yaml")
    text = "\n".join(exc.value.problems)
    assert "hq.yaml:4: mqtt.port" in text and "hq.yaml:5: mqtt.colour: unknown key" in text
    with pytest.raises(ConfigError, match="stores .* or share_group"):
        parse_hq_config("postgres: {dsn: x}\nmqtt: {stores: [a], share_group: g}\n")
    assert subscription_topics(parse_hq_config("postgres: {dsn: x}\n")) == ["storesense/v1/+/#"]
    cfg = parse_hq_config("postgres: {dsn: x}\nmqtt: {stores: [s1, s2]}\n")
    assert subscription_topics(cfg) == ["storesense/v1/s1/#", "storesense/v1/s2/#"]
    cfg = parse_hq_config("postgres: {dsn: x}\nmqtt: {share_group: hq}\n")
    assert subscription_topics(cfg) == ["$share/hq/storesense/v1/+/#"]


def test_shipped_hq_yaml_example_is_valid() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "mqtt_bridge" / "broker" / "hq.yaml.example"
    cfg = parse_hq_config(path.read_text(), str(path))
    assert cfg.mqtt.share_group is None and cfg.postgres.retention_days == 400


def test_cli_bad_config_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    assert main(["hq", "ingest", "--config", "/nonexistent/hq.yaml"], extra_modules=["hq.cli"]) == 2
    assert "/nonexistent/hq.yaml: config file not found" in capsys.readouterr().err


def test_state_metrics_keep_only_the_listed_fields() -> None:
    payload = {"schema": "storesense.lane_state/1", "store_id": "s1", "timestamp_s": NOW, "queue_length": 2,
               "open": False, "services_observed": 9}
    row = classify(f"{P}/s1/lane/l1/state", json.dumps(payload).encode(), prefix=P, now_s=NOW, accept_future_s=0,
                   retention_days=1, state_metrics={"lane": ["queue_length", "open"]})
    assert isinstance(row, StateSample) and dict(row.metrics) == {"queue_length": 2.0, "open": 0.0}


def test_dropped_share_follows_the_cameras_counters_across_minutes_and_restarts() -> None:
    from hq.report import dropped_pct

    assert dropped_pct([]) is None  # no camera rows: unknown, not 0 %
    steady = [("cam-1", "fps_measured", 5.0, 5.0, 5.0), ("cam-1", "frames_dropped", 0.0, 0.0, 0.0)]
    assert dropped_pct(steady) == 0.0
    # 3.9 of 5 frames/s for two minutes: the counter goes 0 -> 60 in the first, 70 -> 130 in the second
    # (the 10 dropped between the minutes' samples count too); then the edge restarts (counter 0 -> 10)
    over = [("cam-1", "fps_measured", 3.9, 3.8, 4.0), ("cam-1", "frames_dropped", 30.0, 0.0, 60.0),
            ("cam-1", "fps_measured", 3.9, 3.8, 4.0), ("cam-1", "frames_dropped", 100.0, 70.0, 130.0),
            ("cam-1", "fps_measured", 3.9, 3.8, 4.0), ("cam-1", "frames_dropped", 5.0, 0.0, 10.0)]
    analysed, dropped = 3 * 3.9 * 60.0, 60.0 + 70.0 + 10.0
    assert dropped_pct(over) == pytest.approx(100.0 * dropped / (analysed + dropped))
    # cameras are counted apart: cam-2's counter is not cam-1's
    both = [*over[:2], ("cam-2", "fps_measured", 5.0, 5.0, 5.0), ("cam-2", "frames_dropped", 500.0, 500.0, 500.0)]
    assert dropped_pct(both) == pytest.approx(100.0 * 60.0 / (3.9 * 60.0 + 5.0 * 60.0 + 60.0))


@pytest.mark.parametrize("raw", [
    b'{"schema": "storesense.event.entry/1", "store_id": "s1", "event_id": "x", "timestamp_s": 1800000000, "track_age_s": NaN}',
    b'{"schema": "storesense.event.entry/1", "store_id": "s1", "event_id": "x", "timestamp_s": 1800000000, "track_age_s": 1e999}',
    b'{"schema": "storesense.event.entry/1", "store_id": "s1", "event_id": "x", "timestamp_s": 1800000000, "track_age_s": 1'
    + b"0" * 5000 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"schema": "storesense.heatmap/1", "store_id": "s1", "event_id": "h", "hour_start_s": 1799996400, "total_person_s": Infinity}',
], ids=["NaN", "1e999", "5001-digit-int", "deep-nesting", "Infinity"])
def test_poison_json_is_a_dead_letter_not_an_ingester_crash(raw: bytes) -> None:
    # json.loads accepts these, json.dumps(allow_nan=False) / int() / the recursion limit then raised in
    # the ingester: it exited, the unacknowledged message came back on restart, and it exited again
    topic = "s1/camera/c1/heatmap" if b"heatmap" in raw else "s1/events/entry"
    row = c(topic, raw)
    assert isinstance(row, DeadLetter), row


def test_fields_outside_the_published_schema_never_reach_hq() -> None:
    ev = {"schema": "storesense.event.entry/1", "store_id": "s1", "timestamp_s": NOW, "event_id": "e-1",
          "type": "entry", "camera_id": "c", "zone_id": "door", "entered_s": NOW, "track_age_s": 1.0}
    assert isinstance(c("s1/events/entry", ev), EventRow)
    row = c("s1/events/entry", {**ev, "face_jpeg_b64": "/9j/4AAQSkZJRg==", "customer_name": "Alice Example"})
    assert isinstance(row, DeadLetter) and "face_jpeg_b64" in row.reason, row
    assert b"Alice" not in row.payload and b"/9j/" not in row.payload  # parked without the values


def test_store_in_a_half_hour_zone_counts_only_the_chain_period() -> None:
    import datetime as dt

    from edge.report import collect_report_data, summary_numbers
    from hq.config import StoreEntry
    from hq.report import _store_cfg

    def z(s: str) -> float:
        return dt.datetime.fromisoformat(s).timestamp()

    class Reader:
        def payloads(self, schema: str, *, start_s: float, end_s: float) -> list[dict]:
            ts = [z("2026-10-31T23:45:00+00:00"), z("2026-11-01T10:10:00+00:00")]  # the first is the day before
            return [{"type": "entry", "zone_id": "door", "entered_s": t, "timestamp_s": t}
                    for t in ts if schema == "storesense.event.entry" and start_s <= t < end_s]

    start, end = z("2026-11-01T00:00:00+00:00"), z("2026-11-02T00:00:00+00:00")  # a UTC chain day
    data = collect_report_data(Reader(), _store_cfg(StoreEntry(id="s1", timezone="Asia/Kolkata")), start, end)
    assert summary_numbers(data)["footfall_total"] == 1
