"""Config validation: every bad config gets a message with file, line, field, expected and found."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config, parse_config

GOOD = """\
version: 1
store:
  id: shop-1
cameras:
  - id: cam-1
    source: clip.mp4
    fps: 5
    zones:
      - id: lane-1-queue
        kind: queue
        service_zone: lane-1-till
        polygon: [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]
      - id: lane-1-till
        kind: service
        polygon: [[0.4, 0.5], [0.6, 0.5], [0.6, 0.9], [0.4, 0.9]]
"""


def _error_for(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "store.yaml")
    return str(info.value)


def test_good_config_parses() -> None:
    cfg = parse_config(GOOD, "store.yaml")
    assert cfg.store.id == "shop-1"
    assert cfg.cameras[0].zones[0].lane_id == "lane-1-queue"
    assert cfg.model.name == "yolox-nano"  # the permissive (Apache-2.0) default, shaped per camera


# (description, yaml text, expected fragments of the message: file:line, field path, meaning)
BAD_CONFIGS = [
    (
        "unknown top-level key",
        GOOD + "colour: red\n",
        ["store.yaml:16:", "colour", "unknown key"],
    ),
    (
        "typo in a camera key",
        GOOD.replace("    fps: 5", "    fsp: 5"),
        ["store.yaml:7:", "cameras[0].fsp", "unknown key"],
    ),
    (
        "fps out of range",
        GOOD.replace("fps: 5", "fps: -2"),
        ["store.yaml:7:", "cameras[0].fps", "greater than 0", "found -2"],
    ),
    (
        "fps not a number",
        GOOD.replace("fps: 5", "fps: fast"),
        ["store.yaml:7:", "cameras[0].fps", "found 'fast'"],
    ),
    (
        "missing store",
        GOOD.replace("store:\n  id: shop-1\n", ""),
        ["store.yaml:", "store", "required field is missing"],
    ),
    (
        "unsupported version",
        GOOD.replace("version: 1", "version: 2"),
        ["store.yaml:1:", "version", "found 2"],
    ),
    (
        "no cameras",
        "version: 1\nstore: {id: s}\ncameras: []\n",
        ["store.yaml:3:", "cameras", "at least 1"],
    ),
    (
        "unknown zone kind",
        GOOD.replace("kind: service", "kind: till"),
        ["store.yaml:14:", "cameras[0].zones[1].kind", "'queue'", "found 'till'"],
    ),
    (
        "normalised polygon outside 0..1",
        GOOD.replace("[0.6, 0.9], [0.4, 0.9]]", "[0.6, 1.9], [0.4, 0.9]]"),
        ["store.yaml:15:", "cameras[0].zones[1]", "outside 0..1", "units: m"],
    ),
    (
        "polygon with two points",
        GOOD.replace("polygon: [[0.4, 0.5], [0.6, 0.5], [0.6, 0.9], [0.4, 0.9]]", "polygon: [[0.4, 0.5], [0.6, 0.5]]"),
        ["store.yaml:15:", "cameras[0].zones[1].polygon", "at least 3"],
    ),
    (
        "self-intersecting polygon",
        GOOD.replace("[[0.4, 0.5], [0.6, 0.5], [0.6, 0.9], [0.4, 0.9]]", "[[0.4, 0.5], [0.6, 0.9], [0.6, 0.5], [0.4, 0.9]]"),
        ["store.yaml:15:", "polygon", "self-intersecting"],
    ),
    (
        "service_zone that does not exist",
        GOOD.replace("service_zone: lane-1-till", "service_zone: lane-9-till"),
        ["store.yaml:11:", "cameras[0].zones[0].service_zone", "lane-9-till", "not a zone of camera",
         "did you mean 'lane-1-till'?"],
    ),
    (
        "floor-metre zone without calibration",
        GOOD.replace("        kind: service\n", "        kind: service\n        units: m\n").replace(
            "[[0.4, 0.5], [0.6, 0.5], [0.6, 0.9], [0.4, 0.9]]", "[[4, 5], [6, 5], [6, 9], [4, 9]]"
        ),
        ["store.yaml:15:", "cameras[0].zones[1].units", "floor metres", "no calibration"],
    ),
    (
        "duplicate camera ids",
        GOOD + "  - id: cam-1\n    source: other.mp4\n",
        ["store.yaml:16:", "cameras[1].id", "'cam-1' is the same id at line 5", "unique"],
    ),
    (
        "bad camera id characters",
        GOOD.replace("id: cam-1", "id: cam/1"),
        ["store.yaml:5:", "cameras[0].id", "found 'cam/1'"],
    ),
    (
        "calibration with three pairs",
        GOOD.replace(
            "    fps: 5\n",
            "    fps: 5\n    calibration:\n      image_points_px: [[0, 0], [1, 0], [1, 1]]\n"
            "      floor_points_m: [[0, 0], [1, 0], [1, 1]]\n",
        ),
        ["store.yaml:8:", "cameras[0].calibration", "at least 4 point pairs"],
    ),
    (
        "tracker thresholds in the wrong order",
        GOOD + "tracker:\n  high_score_threshold: 0.3\n  low_score_threshold: 0.4\n",
        ["store.yaml:16:", "tracker", "low_score_threshold must be below"],
    ),
    (
        "both password sources",
        GOOD + "mqtt:\n  password_env: X\n  password_file: /run/secret\n",
        ["store.yaml:16:", "mqtt", "not both"],
    ),
    (
        "not yaml",
        "version: 1\nstore: {id: [\n",
        ["store.yaml:3:", "not valid YAML"],
    ),
    (
        "not a mapping",
        "- just\n- a list\n",
        ["store.yaml:1:", "expected a mapping"],
    ),
    (
        "unset environment variable",
        GOOD.replace("source: clip.mp4", "source: ${STORESENSE_TEST_UNSET_VAR}/clip.mp4"),
        ["store.yaml", "STORESENSE_TEST_UNSET_VAR", "not set"],
    ),
]


@pytest.mark.parametrize(("description", "text", "fragments"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_message(description: str, text: str, fragments: list[str]) -> None:
    message = _error_for(text)
    for fragment in fragments:
        assert fragment in message, f"{description}: {fragment!r} not in message:\n{message}"


def test_env_expansion_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORESENSE_TEST_DIR", "/videos")
    cfg = parse_config(GOOD.replace("source: clip.mp4", "source: ${STORESENSE_TEST_DIR}/a.mp4"), "s.yaml")
    assert cfg.cameras[0].source == "/videos/a.mp4"
    cfg = parse_config(GOOD.replace("source: clip.mp4", "source: ${STORESENSE_NOPE:-/d}/a.mp4"), "s.yaml")
    assert cfg.cameras[0].source == "/d/a.mp4"


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "store.yaml"
    path.parent.mkdir()
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.resolve_path("clip.mp4") == tmp_path / "conf" / "clip.mp4"


def test_validate_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], table_video: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD.replace("clip.mp4", str(table_video)))
    assert main(["validate-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("fps: 5", "fps: 500"))
    assert main(["validate-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: cameras[0].fps: expected a value less than or equal to 60; found 500" in err
    assert "Traceback" not in err


def test_missing_config_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_demo_config_is_valid() -> None:
    from edge.commands import DEMO_CONFIG

    cfg = load_config(DEMO_CONFIG)
    kinds = sorted(z.kind for z in cfg.cameras[0].zones)
    assert kinds.count("queue") == 2 and "entrance" in kinds and "dwell" in kinds
