"""An overloaded box says so: one warning when a live camera starts losing due frames, one line
when it keeps up again (OverloadWatch), on a real MJPEG camera and the real detector."""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import edge.runtime as runtime_module
from edge.config import parse_config
from edge.contract import Detections
from edge.runtime import OverloadWatch, Runtime, build_detector, build_tracker, open_worker
from edge.sinks import MemorySink
from tests.mjpeg import MjpegServer, jpegs_of


def test_overload_is_said_once_each_way_with_hysteresis() -> None:
    watch = OverloadWatch(window_s=60.0, share=0.10)
    assert watch.update(0.0, 0, 0) is None  # the baseline
    assert watch.update(30.0, 150, 50) is None  # mid-window: no verdict yet
    assert watch.update(60.0, 270, 30) is None  # exactly 10 % dropped is not over the line
    assert watch.overloaded is False
    verdict = watch.update(120.0, 270 + 250, 30 + 50)
    assert verdict is not None and verdict[0] is True and verdict[1] == pytest.approx(50 / 300)
    # still 8 % dropped: above half the line, so still overloaded and nothing new to say
    assert watch.update(180.0, 520 + 276, 80 + 24) is None and watch.overloaded
    verdict = watch.update(240.0, 796 + 297, 104 + 3)
    assert verdict is not None and verdict[0] is False and verdict[1] == pytest.approx(0.01)
    assert watch.update(300.0, 1093, 107) is None  # nothing due at all (camera idle): no change


class SlowWhileSet:
    """The real detector, slowed to ``delay_s`` a frame while ``slow`` is set: a box with more
    cameras than it can analyse, then one that keeps up."""

    def __init__(self, inner: object, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.slow = threading.Event()
        self.slow.set()

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, object]:
        if self.slow.is_set():
            time.sleep(self.delay_s)
        return self.inner.preprocess(image)  # type: ignore[attr-defined,no-any-return]

    def infer(self, tensor: np.ndarray) -> object:
        return self.inner.infer(tensor)  # type: ignore[attr-defined]

    def postprocess(self, raw: object, letterbox: object) -> Detections:
        return self.inner.postprocess(raw, letterbox)  # type: ignore[attr-defined,no-any-return]


def test_an_overloaded_live_camera_is_reported_once_and_its_recovery_too(
    tmp_path: Path, videos_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "STATUS_INTERVAL_S", 0.2)
    server = MjpegServer(jpegs_of(videos_path / "one-by-one-person-detection.mp4", 20), frame_interval_s=0.05)
    try:
        cfg = parse_config(textwrap.dedent(f"""\
            version: 1
            store: {{id: test-store}}
            cameras:
              - {{id: door, source: "{server.url}", fps: 5}}
            mqtt: {{enabled: false}}
            history: {{enabled: false}}
            data_dir: {tmp_path / 'data'}
            """))
        detector = SlowWhileSet(build_detector(cfg), delay_s=0.5)  # 2 of the 5 frames/s due
        worker = open_worker(cfg, cfg.cameras[0], detector, build_tracker(cfg))
        worker.overload = OverloadWatch(window_s=1.5)
        runtime = Runtime(cfg, [worker], MemorySink(), analytics=None, save_reference_frames=False)

        def overloaded_then_not() -> None:
            time.sleep(5.0)
            detector.slow.clear()
            time.sleep(5.0)
            runtime.stop()

        threading.Thread(target=overloaded_then_not, daemon=True).start()
        with caplog.at_level(logging.INFO, logger="storesense.runtime"):
            summary = runtime.run()
    finally:
        server.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "storesense.runtime" and "door" in r.getMessage()]
    warnings = [m for level, m in said if level == logging.WARNING and "cannot keep up" in m]
    recoveries = [m for level, m in said if level == logging.INFO and "keeps up again" in m]
    assert len(warnings) == 1, said
    assert "frames due at 5 frames/s were dropped" in warnings[0] and "Sizing a box" in warnings[0]
    assert len(recoveries) == 1, said
    assert [m for _, m in said].index(warnings[0]) < [m for _, m in said].index(recoveries[0])
    assert summary.frames_processed["door"] > 20  # it analysed all along, slowly and then at its fps
