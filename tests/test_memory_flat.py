"""Rolling windows that a 24/7 box keeps are allocated once, so RSS is flat from the first
frame rather than creeping until each window fills (issue 12 item 19)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

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


def _sqlite_memory_used() -> int:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    assert name, "libsqlite3 not found (Python's sqlite3 module links it)"
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_history_and_outbox_page_caches_stay_small_as_their_files_grow(tmp_path: Path) -> None:
    """SQLite's default cache (2 MB a connection) filled as the history grew: RSS crept for hours."""
    from edge.contract import Message
    from edge.history import HistorySink
    from mqtt_bridge.outbox import Outbox
    from mqtt_bridge.topics import Topics

    topics = Topics("s1")
    before = _sqlite_memory_used()
    body = "x" * 300
    with HistorySink(tmp_path / "h.db", topics=topics, commit_interval_s=0.05) as sink:
        for i in range(40):
            sink.emit([
                Message("lane_state", f"lane-{j}", {"schema": "storesense.lane_state/1", "store_id": "s1",
                                                    "lane_id": f"lane-{j}", "timestamp_s": 1.7e9 + i * 10 + j,
                                                    "pad": body}, "state")
                for j in range(250)
            ])
        sink.flush()
        outbox = Outbox(tmp_path / "outbox.db")
        try:
            outbox.put_many((f"s/{i}", body.encode() * 2, 1) for i in range(10_000))  # an outage's backlog
            grown = _sqlite_memory_used() - before
        finally:
            outbox.close()
    assert (tmp_path / "h.db").stat().st_size > 3_000_000  # the files are well past the caches
    # two connections at SQLite's default cache held ~4 MB here; at 512 KiB each, about 1 MB
    assert grown < 1_800_000, f"SQLite holds {grown / 1e6:.1f} MB for the history and the outbox"
