"""``storesense bench`` rows run through ``Runtime`` (the loop of ``analyze`` and ``run``), so the
frontier table measures what the product runs: frames in flight, every stage, every camera."""

from __future__ import annotations

from pathlib import Path

from edge.bench import _bench_one, format_row, sizing_line
from edge.resources import videos_dir

VIDEO = str(videos_dir() / "one-by-one-person-detection.mp4")


def test_bench_row_runs_the_product_loop(tmp_path: Path) -> None:
    expected_lanes = 2
    row = _bench_one(VIDEO, "yolox-nano", 2, 6, 2, 5.0, str(tmp_path), False, None, floor_runs=3)
    assert row["geometry"] == "416x256"  # the family shapes a 768x432 camera, no square padding
    assert row["parallel_frames"] == expected_lanes  # the product's default for a file: one frame per thread
    assert row["frames"] >= 12  # both cameras reached their frames before the run stopped
    assert row["fps_total"] > 0 and row["floor_ms"] > 0 and row["ref_floor_ms"] > 0
    assert {"decode", "preprocess", "inference", "postprocess", "tracking"} <= set(row["stages"])
    assert f"| {expected_lanes} |" in format_row(row)


def test_sizing_plans_on_four_fifths_of_the_measured_capacity() -> None:
    row = {"model": "yolox-nano fp32", "fps_total": 51.8, "cameras": 12}
    line = sizing_line(row, 5.0)
    assert "at most 8 camera(s) at 5 frames/s" in line  # 0.8 x 51.8 / 5 = 8.3
    assert "at most 4 camera(s) at 10 frames/s" in sizing_line(row, 10.0)
