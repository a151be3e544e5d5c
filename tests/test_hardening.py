"""Issue 12 (fault-injection pass): lane commands, command floods, heatmap privacy default.

Each test here failed before its fix (noted per test)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edge.config import parse_config
from edge.runtime import MAX_PENDING_COMMANDS, Runtime
from edge.sinks import MemorySink
from mqtt_bridge.commands import CommandError, CommandHandler, parse_lane_command
from mqtt_bridge.topics import Topics

T = Topics("s1", "storesense")


@pytest.mark.parametrize(
    "payload", [b'{"state":"open","state":"closed"}', b'{"state":"closed","state":"closed"}']
)
def test_lane_command_with_a_repeated_key_is_refused(payload: bytes) -> None:
    # item 16: json.loads kept the last "state" and the command was applied
    with pytest.raises(CommandError, match="more than once"):
        parse_lane_command(T, T.lane_set("l1"), payload, ["l1"])
    applied: list[tuple[str, str]] = []
    handler = CommandHandler(T, lambda lane, state: applied.append((lane, state)), lambda: ["l1"])
    assert handler.handle(T.lane_set("l1"), payload) is False
    assert applied == [] and handler.rejected == 1


class _RecordingAnalytics:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []

    def update(self, tracks: object, image_bgr: object) -> list:
        return []

    def set_lane_state(self, lane_id: str, state: str, timestamp_s: float) -> list:
        self.applied.append((lane_id, state))
        return []

    def finish(self, timestamp_s: float) -> list:
        return []


def test_command_flood_keeps_the_newest_commands(tmp_path: Path) -> None:
    # item 17: a full queue.Queue refused the newest command, so the last word was lost
    cfg = parse_config(
        f"version: 1\nstore: {{id: s1}}\ncameras: [{{id: c1, source: x.mp4}}]\ndata_dir: {tmp_path}\n"
    )
    analytics = _RecordingAnalytics()
    runtime = Runtime(cfg, [], MemorySink(), analytics)
    flood = MAX_PENDING_COMMANDS + 500
    for i in range(flood):
        runtime.submit_lane_command(f"l{i}", "open")
    runtime.submit_lane_command("l1", "closed")  # the operator's final word
    runtime._apply_commands()
    assert analytics.applied[-1] == ("l1", "closed")
    assert len(analytics.applied) == MAX_PENDING_COMMANDS
    assert analytics.applied[0] == (f"l{flood + 1 - MAX_PENDING_COMMANDS}", "open")
    assert runtime.commands_dropped == flood + 1 - MAX_PENDING_COMMANDS


def test_heatmap_privacy_default_is_k3(tmp_path: Path) -> None:
    # item 18: the default was k=1, so a cell could describe a single person
    from zones.heatmap import HeatmapAccumulator

    cfg = parse_config("version: 1\nstore: {id: s1}\ncameras: [{id: c1, source: x.mp4}]\n")
    assert cfg.analytics.heatmap.min_tracks_per_cell == 3
    acc = HeatmapAccumulator.for_camera(cfg, "c1", T, floor=False)
    t0 = 1_700_000_000.0
    for i in range(50):  # two people alone in their own corners, three sharing one cell
        acc.add(np.array([[0.1, 0.1], [0.9, 0.9], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),
                [1, 2, 3, 4, 5], 0.2, t0 + i * 0.2)
    (msg,) = acc.finish(t0 + 20)
    assert msg.payload["min_tracks_per_cell"] == 3
    assert len(msg.payload["cells"]) == 1 and msg.payload["suppressed_cells"] == 2


def test_truncated_recording_is_reported_and_exits_1(
    tmp_path: Path, videos_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # item 5: a recording cut in half gave exit 0 and "686 frames analysed" without a word
    import logging

    from edge.cli import main
    from edge.sources import FileSource

    data = (videos_path / "one-by-one-person-detection.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    caplog.set_level(logging.WARNING, logger="storesense.sources")
    src = FileSource("cam-1", cut, prefetch=0)
    frames = sum(1 for _ in src.frames())
    src.close()
    assert 600 < frames < 800 and src.stats.frames_corrupt >= src.frame_count - frames - 1
    (warning,) = [r.getMessage() for r in caplog.records if "ends after" in r.getMessage()]
    assert re.search(r"last good frame: frame (\d+) at [\d.]+ s", warning) and "truncated" in warning
    code = main(["analyze", str(cut), "--analysis-fps", "0.5", "--no-analytics"])
    out = capsys.readouterr().out
    assert code == 1 and "frames_corrupt" in out and "last good frame" in out, out
