"""Per-model tracker score thresholds: defaults from the model registry (measured by
scripts/score_calibration.py), overridable in the config, resolved where the tracker is built."""

from __future__ import annotations

import pytest

from edge.config import ConfigError, parse_config
from edge.runtime import build_tracker
from models.registry import BYTETRACK_SCORES, FAMILIES, REGISTRY, score_thresholds

BASE = "version: 1\nstore: {id: s}\ncameras:\n  - {id: c, source: x.mp4}\nmqtt: {enabled: false}\n"


def _thresholds(extra: str) -> tuple[float, float, float]:
    t = build_tracker(parse_config(BASE + extra, "store.yaml"))
    return t._high, t._new, t._low


@pytest.mark.parametrize("name", sorted([*REGISTRY, *FAMILIES]))
def test_each_model_gets_its_measured_thresholds(name: str) -> None:
    spec = REGISTRY.get(name) or FAMILIES[name]
    assert _thresholds(f"model: {{name: {name}}}\n") == (spec.scores.high, spec.scores.new_track, spec.scores.low)
    assert spec.scores.low < spec.scores.high < spec.scores.new_track <= 1.0


def test_the_measured_thresholds_differ_between_model_families() -> None:
    # YOLOX (objectness x class) and YOLOv8/YOLO11 at a small input score the same people differently
    assert REGISTRY["yolox-nano-416"].scores == BYTETRACK_SCORES
    assert REGISTRY["yolov8n-320"].scores.high < REGISTRY["yolox-nano-416"].scores.high
    assert REGISTRY["yolo11n-320"].scores.high < REGISTRY["yolox-nano-416"].scores.high


def test_the_config_overrides_each_threshold_and_the_rest_stay_the_models() -> None:
    m = REGISTRY["yolov8n-320"].scores
    assert _thresholds("model: {name: yolov8n-320}\ntracker: {high_score_threshold: 0.7, new_track_threshold: 0.8}\n") == (
        0.7, 0.8, m.low)
    assert _thresholds("model: {name: yolov8n-320}\ntracker: {low_score_threshold: 0.2}\n") == (m.high, m.new_track, 0.2)


def test_an_override_that_crosses_the_models_default_is_a_clear_error() -> None:
    high = REGISTRY["yolov8n-320"].scores.high
    with pytest.raises(ConfigError) as err:
        _thresholds(f"model: {{name: yolov8n-320}}\ntracker: {{low_score_threshold: {high + 0.05:.2f}}}\n")
    msg = str(err.value)
    assert "tracker.low_score_threshold (0.4)" in msg and "model's default" in msg and "set both" in msg


def test_a_custom_file_gets_its_layouts_thresholds() -> None:
    from edge.config import ModelConfig

    assert score_thresholds(ModelConfig(name=None, path="my.onnx", layout="yolov8")) == REGISTRY["yolov8n-640"].scores
    assert score_thresholds(ModelConfig(name=None, path="my.onnx", layout="yolox")) == BYTETRACK_SCORES
    assert score_thresholds(ModelConfig(name=None, path="my.onnx")) == BYTETRACK_SCORES
