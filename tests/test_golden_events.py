"""Behaviour unchanged: `storesense analyze --events` on every clip in ../shared/videos with the demo
config gives the same messages as the recorded goldens (tests/golden/; see tests/golden_events.py for
the normalisation and the one command that regenerates them after an intended behaviour change)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden_events import analyze_events, clips, golden_path, normalise, read_golden


def _first_difference(got: list[dict], want: list[dict]) -> str:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return f"message {i}:\n got  {json.dumps(g, sort_keys=True)}\n want {json.dumps(w, sort_keys=True)}"
    return f"{len(got)} messages, golden has {len(want)}"


@pytest.mark.slow
def test_every_clip_gives_the_golden_events(tmp_path: Path, videos_path: Path) -> None:
    videos = clips(videos_path)
    assert len(videos) >= 5, videos
    for video in videos:
        assert golden_path(video).exists(), f"no golden for {video.name}: python tests/golden_events.py --update"
        got = json.loads(json.dumps(normalise(analyze_events(video, tmp_path))))
        want = read_golden(video)
        assert got == want, f"{video.name}: {_first_difference(got, want)}"


def test_normalisation_keeps_values_and_drops_only_run_dependent_fields() -> None:
    status = {"schema": "storesense.camera_status/1", "state": "starting", "timestamp_s": 1.0, "fps_measured": 3.0}
    beat = {"schema": "storesense.camera_status/1", "state": "running", "fps_measured": 3.0}
    event = {"schema": "storesense.event.visit/1", "event_id": "x", "dwell_s": 3.123456, "timestamp_s": 9.0}
    out = normalise([{"topic": "s", "payload": status}, {"topic": "s", "payload": beat}, {"topic": "v", "payload": event}])
    assert out == [
        {"topic": "s", "payload": {"schema": "storesense.camera_status/1", "state": "starting"}},
        {"topic": "v", "payload": {"schema": "storesense.event.visit/1", "dwell_s": 3.1235, "timestamp_s": 9.0}},
    ]
