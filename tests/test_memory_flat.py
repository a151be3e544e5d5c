"""Rolling windows that a 24/7 box keeps are allocated once, so RSS is flat from the first
frame rather than creeping until each window fills (issue 12 item 19)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from edge.pipeline import STAGES, SampleRing, StageTimer


def _bytes_grown(fn: object, n: int) -> int:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(n):
            fn(i)  # type: ignore[operator]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


def test_stage_timer_memory_does_not_grow_as_its_window_fills() -> None:
    timer = StageTimer(window=5000)
    for stage in STAGES:  # every stage's window exists, as after the first frame
        timer.add(stage, 1.0)

    def one_frame(i: int) -> None:
        for stage in STAGES:
            timer.add(stage, 1.0 + (i % 7) * 0.5)

    grown = _bytes_grown(one_frame, 4000)
    # a deque of Python floats grew ~32 B per sample: 4000 frames x 6 stages ~ 770 kB
    assert grown < 20_000, f"StageTimer grew {grown} bytes over 4000 frames"
    s = timer.summary()
    assert s["inference"]["n"] == 4001


def test_sample_ring_keeps_the_last_samples_in_order() -> None:
    ring = SampleRing(4)
    assert len(ring) == 0 and ring.values().size == 0
    for v in (1.0, 2.0, 3.0):
        ring.append(v)
    assert ring.values().tolist() == [1.0, 2.0, 3.0]
    for v in (4.0, 5.0, 6.0):
        ring.append(v)
    assert len(ring) == 4
    assert ring.values().tolist() == [3.0, 4.0, 5.0, 6.0]
    assert list(ring) == [3.0, 4.0, 5.0, 6.0]


def test_stage_timer_summary_is_over_the_window_only() -> None:
    timer = StageTimer(window=100)
    for _ in range(1000):
        timer.add("inference", 50.0)
    for _ in range(100):
        timer.add("inference", 10.0)
    s = timer.summary()["inference"]
    assert s["n"] == 100 and s["median_ms"] == 10.0 and s["p95_ms"] == 10.0
    merged = timer.merge([timer])
    assert merged.summary()["inference"]["n"] == 200
    assert np.isclose(merged.summary()["inference"]["median_ms"], 10.0)
