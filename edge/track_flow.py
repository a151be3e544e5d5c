"""Where people appear and where they leave the picture, over the last hour, for /setup.

An installer placed an entrance zone on the wrong edge because nothing showed where people really
come in. This stage counts, per camera, the feet position where each track was born and where it
ended, on a coarse grid of the image (``GRID`` cells, normalised coordinates so any snapshot size
fits), in ``BIN_S`` bins of camera time, keeping only the last ``WINDOW_S``. /setup draws it as a
light overlay over the snapshot.

Privacy and memory: the file holds counts per cell and nothing else (no track ids, no paths, no
times per person); it is written next to the reference frame in the data dir and never published.
Per-track state is one foot position per live track, dropped when the tracker reports the track
ended (or, as a bound, when it has not been seen for ``STALE_S``); the bins are a fixed-size ring.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.contract import Tracks

log = logging.getLogger("storesense.track_flow")

GRID = (32, 18)  # columns x rows: 16:9 cells on a 16:9 camera; coarse enough to say "which edge"
WINDOW_S = 3600.0
BIN_S = 300.0
WRITE_EVERY_S = 10.0
# a live track not seen this long is dropped without counting an end (bound on memory; the tracker
# reports ends well before this, occlusion holds included)
STALE_S = 600.0
MAX_LIVE = 4096


class TrackFlow:
    """One per camera: birth and end counts per grid cell over the last hour."""

    def __init__(self, report_path: Path | None, camera_id: str = "") -> None:
        self.report_path = report_path
        self.camera_id = camera_id
        self._live: dict[int, tuple[float, float, float]] = {}  # id -> (x_norm, y_norm, last seen s)
        self._bins: deque[tuple[float, npt.NDArray[np.int32], npt.NDArray[np.int32]]] = deque()
        self._written_at_s: float | None = None
        self._last_s: float | None = None
        self._dirty = False

    @property
    def tracked_count(self) -> int:
        """Per-track entries held (memory-flatness checks)."""
        return len(self._live)

    def update(self, tracks: Tracks) -> None:
        ts = float(tracks.timestamp_s)
        self._last_s = ts
        w, h = tracks.frame_size_px
        for k in range(len(tracks)):
            x1, _, x2, y2 = (float(v) for v in tracks.xyxy[k])
            tid = int(tracks.track_id[k])
            foot = (min(max((x1 + x2) / 2.0 / w, 0.0), 1.0), min(max(y2 / h, 0.0), 1.0))
            if tid not in self._live:
                self._count(ts, foot, births=True)
            self._live[tid] = (foot[0], foot[1], ts)
        for tid in tracks.ended_ids:
            last = self._live.pop(int(tid), None)
            if last is not None:
                self._count(ts, (last[0], last[1]), births=False)
        self._evict(ts)
        if self._dirty and (self._written_at_s is None or ts - self._written_at_s >= WRITE_EVERY_S):
            self.write(ts)

    def _bin(self, ts: float) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        start = ts - ts % BIN_S
        if not self._bins or self._bins[-1][0] < start:
            cols, rows = GRID
            self._bins.append((start, np.zeros((rows, cols), np.int32), np.zeros((rows, cols), np.int32)))
        return self._bins[-1][1], self._bins[-1][2]

    def _count(self, ts: float, foot: tuple[float, float], *, births: bool) -> None:
        cols, rows = GRID
        col = min(int(foot[0] * cols), cols - 1)
        row = min(int(foot[1] * rows), rows - 1)
        born, ended = self._bin(ts)
        (born if births else ended)[row, col] += 1
        self._dirty = True

    def _evict(self, ts: float) -> None:
        while self._bins and self._bins[0][0] + BIN_S <= ts - WINDOW_S:
            self._bins.popleft()
            self._dirty = True
        if len(self._live) > MAX_LIVE or (self._live and ts - min(v[2] for v in self._live.values()) > STALE_S):
            keep = sorted(self._live.items(), key=lambda kv: kv[1][2])[-MAX_LIVE:]
            self._live = {tid: v for tid, v in keep if ts - v[2] <= STALE_S}

    def summary(self, ts: float) -> dict[str, Any]:
        """The overlay: counts per cell (``[col, row, n]``) of births and ends in the window."""
        cols, rows = GRID
        born = np.zeros((rows, cols), np.int64)
        ended = np.zeros((rows, cols), np.int64)
        for start, b, e in self._bins:
            if start + BIN_S > ts - WINDOW_S:
                born += b
                ended += e
        return {
            "camera_id": self.camera_id,
            "grid": [cols, rows],
            "window_s": WINDOW_S,
            "from_s": self._bins[0][0] if self._bins else None,
            "to_s": ts,
            "births": [[int(c), int(r), int(born[r, c])] for r, c in zip(*np.nonzero(born), strict=True)],
            "ends": [[int(c), int(r), int(ended[r, c])] for r, c in zip(*np.nonzero(ended), strict=True)],
            "births_total": int(born.sum()),
            "ends_total": int(ended.sum()),
        }

    def close(self) -> None:
        """Write what the last frames added (a recording ends between two periodic writes)."""
        if self._dirty and self._last_s is not None:
            self.write(self._last_s)

    def write(self, ts: float) -> None:
        """Atomically replace the camera's overlay file (for /setup)."""
        self._written_at_s = ts
        self._dirty = False
        if self.report_path is None:
            return
        try:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.report_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.summary(ts)), encoding="utf-8")
            tmp.replace(self.report_path)
        except OSError as exc:
            log.warning("could not write %s: %s", self.report_path, exc)


def read_track_flow(path: Path) -> dict[str, Any] | None:
    """The overlay file as /setup serves it, or None when missing or not the expected shape."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("grid"), list) or len(doc["grid"]) != 2:
        return None

    def cells(key: str) -> list[list[int]]:
        out = doc.get(key)
        if not isinstance(out, list):
            return []
        return [c for c in out if isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) for v in c)]

    return {"grid": doc["grid"], "window_s": doc.get("window_s"), "from_s": doc.get("from_s"),
            "to_s": doc.get("to_s"), "births": cells("births"), "ends": cells("ends"),
            "births_total": doc.get("births_total", 0), "ends_total": doc.get("ends_total", 0)}


__all__ = ["GRID", "TrackFlow", "read_track_flow"]
