"""Issue 12 items 6-8: configs that validated but broke or misled at run time are now errors in
``validate-config``, at the offending line, in one pass. Every case here was accepted before."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.cli import main
from edge.commands import load_run_config
from edge.config import ConfigError, load_config, parse_config

BASE = """\
version: 1
store:
  id: shop-1
  timezone: Asia/Shanghai
cameras:
  - id: cam-1
    source: clip.mp4
    zones:
      - {id: lane-1, kind: queue, service_zone: till-1, polygon: [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9]]}
      - {id: till-1, kind: service, lane: lane-1, polygon: [[0.4, 0.5], [0.6, 0.5], [0.6, 0.9]]}
      - {id: entrance, kind: entrance, polygon: [[0.0, 0.0], [0.3, 0.0], [0.3, 0.2]]}
"""


def _problems(text: str, tmp_path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "store.yaml", (tmp_path / "store.yaml") if tmp_path else None)
    return str(info.value)


CASES = [
    ("lane id with '+'", BASE.replace("lane: lane-1,", "lane: lane+1,"), ["store.yaml:10:", "lane", "lane+1"]),
    ("lane id with '/'", BASE.replace("lane: lane-1,", "lane: a/b,"), ["store.yaml:10:", "lane"]),
    ("zone id with '#'", BASE.replace("id: entrance,", "id: 'door#1',"), ["store.yaml:11:", "zones[2].id"]),
    ("empty prefix", BASE + "mqtt: {prefix: ''}\n", ["store.yaml:12:", "mqtt.prefix", "non-empty levels"]),
    ("prefix with wildcard", BASE + "mqtt: {prefix: 'a/#'}\n", ["mqtt.prefix", "'#'"]),
    ("data_dir under a file", BASE + "data_dir: /dev/null/x\n", ["store.yaml:12:", "data_dir", "/dev/null is a file"]),
    # audit: the same faults through the other paths run opens at start passed and crashed in run
    ("outbox_path under a file", BASE + "mqtt: {outbox_path: /dev/null/x/outbox.db}\n",
     ["store.yaml:12:", "mqtt.outbox_path", "/dev/null is a file"]),
    ("outbox_path is a folder", BASE + "mqtt: {outbox_path: /tmp}\n", ["store.yaml:12:", "mqtt.outbox_path", "is a folder"]),
    ("history.path under a file", BASE + "history: {path: /dev/null/x/history.db}\n",
     ["store.yaml:12:", "history.path", "/dev/null is a file"]),
    ("data_dir where no file can be made", BASE + "data_dir: /proc/storesense\n", ["store.yaml:12:", "data_dir", "/proc"]),
    ("zone ids differing in case across cameras",
     BASE + "  - id: cam-2\n    source: b.mp4\n    zones:\n"
     "      - {id: ENTRANCE, kind: entrance, polygon: [[0.0, 0.0], [0.3, 0.0], [0.3, 0.2]]}\n",
     ["store.yaml:15:", "cameras[1].zones[0].id", "'ENTRANCE'", "once lowercased", "line 11"]),
    ("camera ids differing in case", BASE + "  - id: CAM-1\n    source: b.mp4\n",
     ["store.yaml:12:", "cameras[1].id", "'CAM-1'", "line 6"]),
    ("alert on a lane that does not exist",
     BASE + "analytics:\n  alerts:\n    - {id: a1, lane: lane-2, metric: queue_length, above: 3}\n",
     ["store.yaml:14:", "analytics.alerts[0].lane", "lane-2", "did you mean 'lane-1'?"]),
    ("alert hours out of range",
     BASE + "analytics:\n  alerts:\n    - {id: a1, metric: queue_length, above: 3, hours: [25, -3]}\n",
     ["store.yaml:14:", "hours", "[25, -3]"]),
    ("alert threshold NaN", BASE + "analytics:\n  alerts:\n    - {id: a1, metric: queue_length, above: .nan}\n",
     ["store.yaml:14:", "above", "finite number"]),
    ("threshold inf", BASE + "tracker: {max_lost_s: .inf}\n", ["store.yaml:12:", "tracker.max_lost_s", "finite"]),
    ("calibration point inf",
     BASE.replace("    source: clip.mp4\n", "    source: clip.mp4\n    calibration:\n"
                  "      image_points_px: [[0, 0], [1, 0], [1, 1], [0, .inf]]\n"
                  "      floor_points_m: [[0, 0], [1, 0], [1, 1], [0, 1]]\n"),
     ["store.yaml:9:", "image_points_px", "finite"]),
    ("calibration point 1e308",
     BASE.replace("    source: clip.mp4\n", "    source: clip.mp4\n    calibration:\n"
                  "      image_points_px: [[0, 0], [1, 0], [1, 1], [0, 1]]\n"
                  "      floor_points_m: [[0, 0], [1, 0], [1, 1], [0, 1.0e+308]]\n"),
     ["store.yaml:10:", "floor_points_m", "beyond"]),
    ("unknown time zone", BASE.replace("Asia/Shanghai", "Mars/Olympus"),
     ["store.yaml:4:", "store.timezone", "unknown time zone 'Mars/Olympus'"]),
    ("time zone typo", BASE.replace("Asia/Shanghai", "Asia/Shangai"), ["did you mean 'Asia/Shanghai'?"]),
    ("service_zone typo on the zone's own line", BASE.replace("service_zone: till-1", "service_zone: till-l"),
     ["store.yaml:9:", "zones[0].service_zone", "did you mean 'till-1'?"]),
    ("unknown key suggestion", BASE.replace("  timezone:", "  timezon:"),
     ["store.yaml:4:", "store.timezon", "did you mean 'timezone'?"]),
    ("zone kind typo", BASE.replace("kind: entrance", "kind: entrence"), ["did you mean 'entrance'?"]),
    # YAML's true/false where a number goes: pydantic read them as 1/0 and the config validated
    ("camera fps true", BASE.replace("    source: clip.mp4\n", "    source: clip.mp4\n    fps: true\n"),
     ["store.yaml:8:", "cameras[0].fps", "found true"]),
    ("calibration point true",
     BASE.replace("    source: clip.mp4\n", "    source: clip.mp4\n    calibration:\n"
                  "      image_points_px: [[0, 0], [100, 0], [100, 100], [true, 100]]\n"
                  "      floor_points_m: [[0, 0], [1, 0], [1, 1], [0, 1]]\n"),
     ["store.yaml:9:", "cameras[0].calibration.image_points_px[3][0]", "found true"]),
    ("zone polygon point false", BASE.replace("[[0.0, 0.0], [0.3, 0.0], [0.3, 0.2]]", "[[false, 0.0], [0.3, 0.0], [0.3, 0.2]]"),
     ["store.yaml:11:", "zones[2].polygon[0][0]", "found false"]),
    ("broker port true", BASE + "mqtt: {port: true}\n", ["store.yaml:12:", "mqtt.port", "found true"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_runtime_failures_are_config_errors_at_their_line(text: str, fragments: list[str]) -> None:
    message = _problems(text)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_duplicate_keys_rejected_with_both_lines() -> None:
    # item 6: a second mqtt: block silently dropped device_id
    text = BASE + "mqtt:\n  device_id: edge-7\nmqtt:\n  host: broker\n"
    message = _problems(text)
    assert "store.yaml:14: mqtt: key 'mqtt' appears twice, at lines 12 and 14" in message
    nested = BASE.replace("  id: shop-1\n", "  id: shop-1\n  id: shop-2\n")
    assert "store.yaml:4: store.id: key 'id' appears twice, at lines 3 and 4" in _problems(nested)


def test_all_layers_reported_in_one_pass(tmp_path: Path) -> None:
    """Schema, cross-reference and environment problems together, each at its own line."""
    text = (BASE.replace("Asia/Shanghai", "Mars/Olympus").replace("service_zone: till-1", "service_zone: nope")
            + "tracker: {max_lost_s: -1}\ndata_dir: /dev/null/x\n")
    message = _problems(text)
    assert "store.yaml:4: store.timezone" in message  # schema
    assert "store.yaml:12: tracker.max_lost_s" in message  # schema
    assert "store.yaml:9: cameras[0].zones[0].service_zone" in message  # cross-reference
    assert "store.yaml:13: data_dir" in message  # environment


def test_huge_value_is_never_echoed_in_full() -> None:
    huge = "x" * 1_000_000
    message = _problems(BASE.replace("Asia/Shanghai", huge) + f"colour: {huge}\n"
                        + f"analytics:\n  alerts:\n    - {{id: a1, lane: {huge}, metric: queue_length, above: 3}}\n")
    assert len(message) < 2000, len(message)
    assert "characters)" in message


def test_friendlier_messages(tmp_path: Path) -> None:
    # item 8
    tab = "version: 1\nstore:\n\tid: shop-1\n"
    assert "store.yaml:3: tabs are not allowed for indentation, use spaces (line 3, column 1)" in _problems(tab)
    two = BASE.replace("[[0.0, 0.0], [0.3, 0.0], [0.3, 0.2]]", "[[0.0, 0.0], [0.3, 0.0]]")
    assert "store.yaml:11: cameras[0].zones[2].polygon: a polygon needs at least 3 points; found 2" in _problems(two)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(BASE.replace("shop-1", "shop-1\n  name: Caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml:4: not a UTF-8 text file"):
        load_config(latin1)
    unset = BASE.replace("source: clip.mp4", "source: ${STORESENSE_SURELY_UNSET}/clip.mp4")
    assert "store.yaml:7: cameras[0].source: environment variable ${STORESENSE_SURELY_UNSET} is not set" in (
        _problems(unset))


def test_unknown_model_name_is_a_validate_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "store.yaml"
    path.write_text(BASE + "model: {name: yolox-nano-41}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'yolox-nano-416'"):
        load_run_config(path)
    assert main(["validate-config", str(path)]) != 0
    err = capsys.readouterr().err
    assert "store.yaml:12: model.name: unknown model name 'yolox-nano-41'" in err and "Traceback" not in err


def test_int8_of_a_model_whose_copy_is_refused_is_a_validate_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """YOLOX-Nano's int8 copy loses half its people: say so at validate-config, with the line,
    not after a minute of quantising at start-up."""
    path = tmp_path / "store.yaml"
    path.write_text(BASE + "model: {name: yolox-nano, precision: int8}\n", encoding="utf-8")
    assert main(["validate-config", str(path)]) != 0
    err = capsys.readouterr().err
    assert "store.yaml:12: model.precision: precision int8 is not offered for yolox-nano: its int8 copy finds 49 %" in err
    assert "use precision: fp32, or name: yolov8n / yolo11n for int8" in err and "Traceback" not in err
    path.write_text(BASE + "model: {name: yolov8n, precision: int8}\n", encoding="utf-8")
    load_run_config(path)  # offered for YOLOv8n


def test_good_base_is_valid() -> None:
    cfg = parse_config(textwrap.dedent(BASE), "store.yaml")
    assert [z.id for z in cfg.cameras[0].zones] == ["lane-1", "till-1", "entrance"]


def test_lane_rules_match_the_analytics() -> None:
    # found by scripts/config_fuzz.py: these validated, then `run` exited 2 in StoreAnalytics
    two_queues = BASE.replace("kind: entrance,", "kind: queue, lane: lane-1,")
    assert "store.yaml:11: cameras[0].zones[2].lane: lane 'lane-1' already has a queue zone (line 9)" in (
        _problems(two_queues))
    alert = "analytics:\n  alerts:\n    - {id: a1, lane: till-1, metric: queue_length, above: 3}\n"
    assert "alert on lane 'till-1', which does not exist" in _problems(BASE + alert)  # a service zone is no lane
    disabled = BASE.replace("    source: clip.mp4\n", "    source: clip.mp4\n    enabled: false\n")
    assert "lane-1" in _problems(disabled + alert.replace("till-1", "lane-1"))


def test_zone_settings_belong_to_their_kind() -> None:
    # issue 10: ZoneConfig was one flat model, so stop_after_s on a queue zone was accepted silently
    queue_stop = BASE.replace("kind: queue, service_zone: till-1,", "kind: queue, service_zone: till-1, stop_after_s: 5,")
    assert ("store.yaml:9: cameras[0].zones[0].stop_after_s: not a setting of queue zones (it belongs to kind dwell)"
            in _problems(queue_stop))
    entrance_lane = BASE.replace("{id: entrance, kind: entrance,", "{id: entrance, kind: entrance, lane: l9,")
    assert "store.yaml:11: cameras[0].zones[2].lane: not a setting of entrance zones (it belongs to kind queue / service)" in (
        _problems(entrance_lane))
    typo = BASE.replace("{id: entrance, kind: entrance,", "{id: entrance, kind: entrance, greet_radius: 2,")
    assert "unknown key for entrance zones (did you mean 'greet_radius_m'?)" in _problems(typo)
    assert "cameras[0].zones[2].kind: expected one of 'queue'" in _problems(BASE.replace("kind: entrance", "kind: door"))
    cfg = parse_config(BASE, "store.yaml")
    entrance = cfg.cameras[0].zones[2]
    assert type(entrance).__name__ == "EntranceZone" and entrance.stop_after_s == 20.0 and entrance.lane is None


def test_found_by_the_fuzzer_host_and_calibration(tmp_path: Path, videos_path: Path) -> None:
    # config_fuzz.py: these validated, then published nothing (host '#') or failed every frame
    assert "mqtt.host: host '#' is neither an IP address nor a host name" in _problems(BASE + "mqtt: {host: '#'}\n")
    clip = videos_path / "one-by-one-person-detection.mp4"
    cal = ("    calibration:\n      image_points_px: [[100, 400], [700, 400], [600, 100], [200, 100]]\n"
           "      floor_points_m: [[0, 0], [6, 0], [5, 8], [1, 8]]\n      reference_size_px: [1, 2]\n")
    path = tmp_path / "store.yaml"
    path.write_text(BASE.replace("    source: clip.mp4\n", f"    source: {clip}\n{cal}"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"store.yaml:8: cameras\[0\].calibration: .*different aspect ratio"):
        load_run_config(path)
    flat = cal.replace("[[0, 0], [6, 0], [5, 8], [1, 8]]", "[[0, 0], [6, 0], [5, 0], [1, 0]]").replace(
        "      reference_size_px: [1, 2]\n", "")
    path.write_text(BASE.replace("    source: clip.mp4\n", f"    source: {clip}\n{flat}"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cameras\[0\].calibration: .*one line"):
        load_run_config(path)


def test_validate_config_refuses_an_unusable_file_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # config_fuzz.py: a source cut to '.../one-by-one-person-detection' validated, then the camera
    # could only report 'error' at run time (run keeps the others going; validate-config says why)
    (tmp_path / "empty.mp4").write_bytes(b"")
    path = tmp_path / "store.yaml"
    path.write_text(BASE.replace("source: clip.mp4", "source: empty.mp4"), encoding="utf-8")
    assert main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "store.yaml:7: cameras[0].source: OpenCV cannot open" in err
    load_run_config(path)  # run itself starts: the other cameras must not wait for this one
