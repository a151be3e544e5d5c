"""``storesense demo --day``: a simulated trading day in a demo history, then the manager's report.

A newcomer's first report is otherwise empty. This fills a history database with one day of the
simulator's scenes (zones/simulator.py), run through the unchanged analytics exactly as a live box
would: a morning trickle, lunch and evening peaks, two checkout lanes (lane 2 closed by command in
the quiet hours, opened for the peaks), an entrance with greeters whose number follows the traffic,
and a shop floor where customers browse two displays and the fitting rooms while floor staff come
over to help. Then it writes the report (``storesense report``) on that day.

Three cameras, each a scene whose truth is known:

* ``checkout-cam``: the queue simulation. The store has two lanes all day; in an hour with one
  till open the one-till scene is simulated and its tracks are carried onto the two-lane camera
  through the floor (image → floor with the one-till calibration → image with the two-lane one:
  lane 1 stands on the same floor spot in both), so lane 2 is seen closed and empty.
* ``door-cam``: the entrance/greeting simulation.
* ``floor-cam``: built here from the simulator's parts (floor paths, the noise model, the stream
  builder): browsing visits with pass-bys and stops, staff approaches (assist SLA), a capacity zone.

Every hour is simulated on its own (fresh analytics, ``finish`` at the end of the hour), as a
recording of that hour would be analysed. Runtime: about a minute per simulated hour at 1 fps on
a quiet core.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.config import StoreConfig, parse_config
from edge.contract import Message, Tracks

log = logging.getLogger("storesense.demo_day")

STORE_ID = "demo-day"
OPEN_HOUR = 8


@dataclass(frozen=True)
class HourProfile:
    """One trading hour: checkout utilisation, customers per minute at the door, staff on duty."""

    rho: float
    per_min: float
    greeters: int
    lane2_open: bool
    floor_staff: int


# 08:00-21:00: a morning trickle, the lunch peak (12-14), an afternoon lull, the evening peak (18-20)
PROFILE = [
    HourProfile(0.25, 0.5, 1, False, 1), HourProfile(0.35, 0.8, 1, False, 1), HourProfile(0.45, 1.0, 1, False, 1),
    HourProfile(0.6, 1.4, 2, True, 1), HourProfile(0.85, 2.2, 2, True, 2), HourProfile(0.9, 2.4, 2, True, 2),
    HourProfile(0.6, 1.4, 2, True, 1), HourProfile(0.45, 1.0, 1, False, 1), HourProfile(0.5, 1.2, 1, False, 1),
    HourProfile(0.7, 1.8, 2, True, 2), HourProfile(0.9, 2.5, 2, True, 2), HourProfile(0.8, 2.0, 2, True, 2),
    HourProfile(0.35, 0.7, 1, False, 1),
]


def _analytics(cfg: StoreConfig) -> Any:
    from zones.analytics import StoreAnalytics

    return StoreAnalytics(cfg)


def _run(analytics: Any, frames: Iterator[Tracks], start_s: float) -> list[Message]:
    out: list[Message] = []
    last = start_s
    for tracks in frames:
        out.extend(analytics.update(tracks))
        last = tracks.timestamp_s
    out.extend(analytics.finish(last))
    return out


def _hour_frames(stream: Any) -> Iterator[Tracks]:
    """The hour's frames without the last one, which falls exactly on the next hour (the report
    would show an empty hour after closing time)."""
    return stream.frames(0, stream.n_frames - 1)


# ---------------------------------------------------------------------------------------------
# checkout: two lanes, lane 2 opened and closed by command


def _carry(tracks: Tracks, src: Any, dst: Any) -> Tracks:
    """Tracks of the one-till scene seen by the two-lane camera: feet through the floor, boxes
    scaled by the local floor scale of each camera."""
    if len(tracks) == 0:
        return Tracks(tracks.camera_id, tracks.frame_index, tracks.timestamp_s, tracks.frame_size_px,
                      tracks.xyxy, tracks.confidence, tracks.track_id, ended_ids=tracks.ended_ids)
    xyxy = tracks.xyxy.astype(np.float64)
    foot = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]], axis=1)
    floor = src.image_to_floor(foot)
    step = np.array([0.5, 0.0])
    new_foot = dst.floor_to_image(floor)
    scale = (np.linalg.norm(dst.floor_to_image(floor + step) - new_foot, axis=1)
             / np.maximum(np.linalg.norm(src.floor_to_image(floor + step) - src.floor_to_image(floor), axis=1), 1e-6))
    half_w = (xyxy[:, 2] - xyxy[:, 0]) / 2.0 * scale
    height = (xyxy[:, 3] - xyxy[:, 1]) * scale
    boxes = np.stack([new_foot[:, 0] - half_w, new_foot[:, 1] - height, new_foot[:, 0] + half_w, new_foot[:, 1]], axis=1)
    return Tracks(tracks.camera_id, tracks.frame_index, tracks.timestamp_s, tracks.frame_size_px,
                  boxes.astype(np.float32), tracks.confidence, tracks.track_id, ended_ids=tracks.ended_ids)


def checkout_hour(start_s: float, hour: HourProfile, fps: float, seed: int) -> tuple[StoreConfig, list[Message]]:
    from zones.simulator import REALISTIC_NOISE, QueueScenario, simulate_queue

    def scenario(tills: int) -> QueueScenario:
        return QueueScenario(tills=tills, rho=hour.rho, duration_s=3600.0, fps=fps, noise=REALISTIC_NOISE, seed=seed,
                             start_epoch_s=start_s, store_id=STORE_ID, camera_id="checkout-cam")

    two = simulate_queue(scenario(2))
    sim = two if hour.lane2_open else simulate_queue(scenario(1))
    a = _analytics(two.config)
    msgs = a.set_lane_state("lane-1", "open", start_s) + a.set_lane_state(
        "lane-2", "open" if hour.lane2_open else "closed", start_s)
    frames = _hour_frames(sim.stream)
    if sim is not two:
        frames = (_carry(t, sim.calibration, two.calibration) for t in frames)
    return two.config, msgs + _run(a, frames, start_s)


def door_hour(start_s: float, hour: HourProfile, fps: float, seed: int) -> tuple[StoreConfig, list[Message]]:
    from zones.simulator import REALISTIC_NOISE, EntranceScenario, simulate_entrance

    e = simulate_entrance(EntranceScenario(
        duration_s=3600.0, fps=fps, customers_per_min=hour.per_min, greeters=hour.greeters, noise=REALISTIC_NOISE,
        seed=seed, start_epoch_s=start_s, store_id=STORE_ID, camera_id="door-cam"))
    return e.config, _run(_analytics(e.config), _hour_frames(e.stream), start_s)


# ---------------------------------------------------------------------------------------------
# shop floor: displays, fitting rooms, floor staff


FLOOR_M = (12.0, 9.0)
STOP_AFTER_S = 20.0
ASSIST_SLA_S = 30.0
# zone id -> (label, rect (xmin, ymin, xmax, ymax) m, chance a customer visits, median linger s)
FLOOR_ZONES: dict[str, tuple[str, tuple[float, float, float, float], float, float]] = {
    "promo": ("Promo table 促销台", (1.0, 2.0, 4.0, 4.5), 0.55, 35.0),
    "new-arrivals": ("New arrivals 新品", (8.0, 2.0, 11.0, 4.5), 0.45, 45.0),
    "fitting-rooms": ("Fitting rooms 试衣间", (4.5, 6.0, 8.5, 8.0), 0.25, 150.0),
}
STOCK_ROOM = (0.3, 7.3, 1.8, 8.7)
# the floor staff wait at a service desk (staff-only), so a track that lost its identity (an id
# switch) is known as staff again when they get back to it, as a real desk would make them
SERVICE_DESK = (5.3, 4.6, 6.7, 5.4)
STAFF_HOME = (6.0, 5.0)


def floor_config(start_fps: float) -> dict[str, Any]:
    """The floor camera as an installer would configure it (zones in floor metres)."""
    from zones.simulator import DEFAULT_FRAME_SIZE_PX, calibration_pairs

    img, flo = calibration_pairs(FLOOR_M[0], FLOOR_M[1], DEFAULT_FRAME_SIZE_PX)

    def rect(r: tuple[float, float, float, float]) -> list[list[float]]:
        return [[r[0], r[1]], [r[2], r[1]], [r[2], r[3]], [r[0], r[3]]]

    zones: list[dict[str, Any]] = [
        {"id": zid, "kind": "dwell", "label": label, "units": "m", "polygon": rect(r), "stop_after_s": STOP_AFTER_S,
         "response_sla_s": ASSIST_SLA_S, **({"capacity": 4} if zid == "fitting-rooms" else {})}
        for zid, (label, r, _, _) in FLOOR_ZONES.items()
    ]
    zones.append({"id": "stock-room", "kind": "staff_only", "units": "m", "polygon": rect(STOCK_ROOM)})
    zones.append({"id": "service-desk", "kind": "staff_only", "units": "m", "polygon": rect(SERVICE_DESK)})
    return {"id": "floor-cam", "source": "simulated-floor-cam.mp4", "fps": start_fps,
            "calibration": {"image_points_px": [list(p) for p in img], "floor_points_m": [list(p) for p in flo],
                            "reference_size_px": list(DEFAULT_FRAME_SIZE_PX)},
            "zones": zones}


class _Staff:
    def __init__(self, pid: int, path: Any) -> None:
        self.pid, self.path, self.free_at_s = pid, path, 8.0  # first in the stock room, known as staff


def _inside(rng: np.random.Generator, r: tuple[float, float, float, float], margin_m: float = 0.4) -> tuple[float, float]:
    return float(rng.uniform(r[0] + margin_m, r[2] - margin_m)), float(rng.uniform(r[1] + margin_m, r[3] - margin_m))


def _linger_s(rng: np.random.Generator, median_s: float) -> float:
    if rng.random() < 0.35:  # a glance on the way past: no stop
        return float(rng.uniform(3.0, 12.0))
    return float(min(max(rng.lognormal(math.log(median_s), 0.6), STOP_AFTER_S + 5.0), 900.0))


def _approach(staff: list[_Staff], rng: np.random.Generator, spot: tuple[float, float], stop_s: float,
              leave_s: float) -> float:
    """A free floor assistant walks over to a customer who stopped; returns when the talk ends
    (or ``leave_s`` when nobody comes). Latency U(5, 55) s: some beyond the 30 s SLA."""
    v = 1.0
    free = [s for s in staff if s.free_at_s <= stop_s]
    if not free or rng.random() > 0.75:
        return leave_s
    s = min(free, key=lambda x: x.free_at_s)
    arrive_at = stop_s + float(rng.uniform(5.0, 55.0))
    meet = (spot[0] + 0.8, spot[1])
    d = math.hypot(meet[0] - STAFF_HOME[0], meet[1] - STAFF_HOME[1])
    depart = max(stop_s, s.free_at_s, arrive_at - d / v)
    s.path.hold(depart)
    arrived = s.path.go(depart, [meet], v)[0]
    talk_end = arrived + float(rng.uniform(20.0, 60.0))
    s.path.hold(talk_end)
    s.free_at_s = s.path.go(talk_end, [STAFF_HOME], v)[0] + 1.0
    return max(leave_s, talk_end)


def _floor_people(hour: HourProfile, rng: np.random.Generator) -> list[Any]:
    from zones.simulator import FloorPath, Person

    staff = []
    for k in range(hour.floor_staff):
        path = FloorPath(0.0, STOCK_ROOM[0] + 0.5 + 0.5 * k, STOCK_ROOM[1] + 0.6)
        path.hold(6.0)
        path.go(6.0, [STAFF_HOME], 1.0)
        staff.append(_Staff(k + 1, path))
    people = []
    t, pid = 0.0, len(staff) + 1
    rate = 0.8 * hour.per_min / 60.0  # most of the people who come in browse the floor
    while True:
        t += float(rng.exponential(1.0 / rate))
        if t > 3600.0 - 60.0:
            break
        path = FloorPath(t, float(rng.uniform(4.5, 7.5)), 0.3)
        now = t
        picks = [zid for zid, (_, _, p, _) in FLOOR_ZONES.items() if rng.random() < p] or ["promo"]
        for zid in picks:
            _, r, _, median = FLOOR_ZONES[zid]
            spot = _inside(rng, r)
            arrived = path.go(now, [spot], 1.0)[0]
            leave = arrived + _linger_s(rng, median)
            if leave - arrived > STOP_AFTER_S + 2.0:
                leave = _approach(staff, rng, spot, arrived + STOP_AFTER_S, leave)
            path.hold(leave)
            now = leave
        gone = path.go(now, [(float(rng.uniform(4.5, 7.5)), 0.25)], 1.0)[-1]
        people.append(Person(pid, "customer", path, t, gone))
        pid += 1
    for s in staff:
        s.path.hold(3600.0)
    return [Person(s.pid, "staff", s.path, 0.0, 3600.0) for s in staff] + people


def floor_hour(start_s: float, hour: HourProfile, fps: float, seed: int) -> tuple[StoreConfig, list[Message]]:
    from calibration.homography import Calibration
    from zones.simulator import DEFAULT_FRAME_SIZE_PX, REALISTIC_NOISE, Rect, build_stream

    rng = np.random.default_rng([seed, 30])
    cam = floor_config(fps)
    cfg = parse_config(yaml.safe_dump(_store_doc([cam], Path(tempfile.gettempdir()) / "storesense-sim")), "<demo floor>")
    cal = Calibration.from_pairs(cam["calibration"]["image_points_px"], cam["calibration"]["floor_points_m"],
                                 reference_size_px=DEFAULT_FRAME_SIZE_PX, source="demo floor")
    stream = build_stream(
        _floor_people(hour, rng), cal, camera_id="floor-cam", fps=fps, duration_s=3600.0, start_epoch_s=start_s,
        frame_size_px=DEFAULT_FRAME_SIZE_PX, floor_bounds=Rect(0.2, 0.2, FLOOR_M[0] - 0.2, FLOOR_M[1] - 0.2),
        noise=REALISTIC_NOISE, rng=np.random.default_rng([seed, 31]))
    return cfg, _run(_analytics(cfg), _hour_frames(stream), start_s)


# ---------------------------------------------------------------------------------------------
# the day


def _store_doc(cameras: list[dict[str, Any]], data_dir: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "store": {"id": STORE_ID, "name": "Demo day store 演示门店", "timezone": "UTC"},
        "cameras": cameras,
        "staff": {"methods": ["staff_only_zone"]},
        "mqtt": {"enabled": False},
        "data_dir": str(data_dir),
    }


SCENES: list[Callable[[float, HourProfile, float, int], tuple[StoreConfig, list[Message]]]] = [
    checkout_hour, door_hour, floor_hour]


def simulate_day(out: Path, day: str, *, hours: int = len(PROFILE), fps: float = 1.0,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Write ``out/store.yaml`` and ``out/data/history.db`` (replaced) with one simulated day;
    returns the config path."""
    from edge.history import HistorySink
    from mqtt_bridge.topics import Topics

    out = out.resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    history = out / "data" / "history.db"
    for stale in (history, history.with_name("history.db-wal"), history.with_name("history.db-shm")):
        stale.unlink(missing_ok=True)
    day_epoch_s = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()
    sink = HistorySink(history, retention_days=3650.0, topics=Topics(STORE_ID))
    cams: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    try:
        for h, hour in enumerate(PROFILE[:hours]):
            start = day_epoch_s + (OPEN_HOUR + h) * 3600.0
            for k, scene in enumerate(SCENES):
                cfg, msgs = scene(start, hour, fps, 100 * (k + 1) + h)
                sink.emit(msgs)
                for cam in cfg.model_dump(mode="json", exclude_none=True)["cameras"]:
                    cams[cam["id"]] = cam
            if progress is not None:
                progress(f"{OPEN_HOUR + h:02d}:00-{OPEN_HOUR + h + 1:02d}:00 simulated ({time.monotonic() - t0:.0f} s)")
    finally:
        sink.close()
    path = out / "store.yaml"
    doc = _store_doc(list(cams.values()), out / "data")
    path.write_text("# written by `storesense demo --day`: the simulated store of the demo report\n"
                    + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


__all__ = ["OPEN_HOUR", "PROFILE", "HourProfile", "simulate_day"]
