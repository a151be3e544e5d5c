"""``storesense heatmap`` and ``storesense report``: ops review from the on-box history.

``--from`` / ``--to`` are in the store's own timezone (``store.timezone``): ops staff think in
local shop hours. A bare date in ``--to`` means *through the end of that day*, so
``--from 2024-05-01 --to 2024-05-07`` is the whole week; ``today``/``yesterday`` are whole days;
``-24h``, ``-7d``, ``-30m``, ``-2w`` count back from now.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.errors import UserFacingError

_REL_RE = re.compile(r"^-\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMS = (
    "an ISO date (2024-05-01), an ISO date-time (2024-05-01T09:00 or '2024-05-01 09:00'), now, today, "
    "yesterday, or -24h / -7d / -30m / -2w"
)


def relative_time_values(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--from -7d`` written ``--from=-7d``.

    argparse takes a token starting with ``-`` for an option unless it is a plain negative
    number, so the documented ``--from -7d`` failed with "expected one argument"."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--from", "--to") and i + 1 < len(argv) and _REL_RE.match(argv[i + 1].strip().lower()):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def store_zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserFacingError(f"unknown store.timezone {timezone!r}: use an IANA name such as Asia/Shanghai") from None


def _midnight(day: date, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def parse_when(text: str, tz: ZoneInfo, *, end: bool = False, now_s: float | None = None) -> float:
    """Epoch seconds of one ``--from``/``--to`` value; with ``end`` whole days are inclusive."""
    try:
        value_s = _parse_when(text, tz, end=end, now_s=now_s)
        datetime.fromtimestamp(value_s, tz)  # must also print back as a date (years 1..9999)
    except (OverflowError, OSError, ValueError):
        raise UserFacingError(f"{text!r} is too far in the past or future to be a date; expected {FORMS}") from None
    return value_s


def _parse_when(text: str, tz: ZoneInfo, *, end: bool = False, now_s: float | None = None) -> float:
    value = text.strip().lower()
    now = time.time() if now_s is None else now_s
    today = datetime.fromtimestamp(now, tz).date()
    if value == "now":
        return now
    if value in {"today", "yesterday"}:
        day = today if value == "today" else today - timedelta(days=1)
        return _midnight(day + timedelta(days=1) if end else day, tz)
    m = _REL_RE.match(value)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    if _DATE_RE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise UserFacingError(f"{text!r} is not a valid date; expected {FORMS}") from None
        return _midnight(day + timedelta(days=1) if end else day, tz)
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserFacingError(f"cannot read the time {text!r}; expected {FORMS}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def parse_range(
    start: str | None,
    stop: str | None,
    tz: ZoneInfo,
    *,
    now_s: float | None = None,
    default_start: str = "today",
    default_stop: str = "now",
) -> tuple[float, float]:
    """(start_s, end_s) with end exclusive; a clear error when the range is empty or reversed."""
    start_s = parse_when(start or default_start, tz, now_s=now_s)
    end_s = parse_when(stop or default_stop, tz, end=True, now_s=now_s)
    if end_s <= start_s:
        a = datetime.fromtimestamp(start_s, tz).isoformat(timespec="minutes")
        b = datetime.fromtimestamp(end_s, tz).isoformat(timespec="minutes")
        raise UserFacingError(f"--to ({b}) must be after --from ({a})")
    return start_s, end_s


def _open(args: argparse.Namespace) -> tuple[Any, Any, ZoneInfo]:
    from edge.config import load_config
    from edge.history import HistoryReader, history_path

    cfg = load_config(args.config)
    tz = store_zone(cfg.store.timezone)
    path = Path(args.history) if args.history else history_path(cfg)
    return cfg, HistoryReader(path), tz


def cmd_heatmap(args: argparse.Namespace) -> int:
    from edge.report import render_camera_heatmap

    cfg, reader, tz = _open(args)
    with reader:
        try:
            cfg.camera(args.camera)
        except KeyError as exc:
            raise UserFacingError(str(exc.args[0])) from None
        start_s, end_s = parse_range(args.start, args.stop, tz)
        out = Path(args.out or f"heatmap-{args.camera}.png")
        res = render_camera_heatmap(reader, cfg, args.camera, start_s, end_s, out,
                                    sharp_reference=args.sharp_reference, min_tracks=args.min_tracks)
    a = datetime.fromtimestamp(start_s, tz).isoformat(timespec="minutes")
    b = datetime.fromtimestamp(end_s, tz).isoformat(timespec="minutes")
    if res is None:
        raise UserFacingError(
            f"no heatmap data for camera {args.camera} between {a} and {b} (hours are written when they end; "
            "check --from/--to and that the pipeline ran)"
        )
    print(
        f"{out}: camera {args.camera}, {res.hours} hour(s) {a} → {b}, {res.total_person_s / 3600:.2f} person-hours ({res.total_person_s:.0f} person-seconds), "
        f"{'floor plane (m)' if res.units == 'm' else 'image grid'}"
        f"{', over the reference frame' if res.reference else ', plain background (no reference frame yet)'}"
        f"{f', {res.suppressed_cells} sparse cell(s) hidden' if res.suppressed_cells else ''}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edge.report import add_heatmaps, collect_report_data, summary_numbers, write_report

    if not (math.isfinite(args.target_wait_s) and args.target_wait_s >= 0):
        raise UserFacingError(f"--target-wait-s: expected 0 or more seconds, found {args.target_wait_s}")
    if not 0 < args.greet_time_s <= 3600:
        raise UserFacingError(f"--greet-time-s: expected 0 < seconds <= 3600, found {args.greet_time_s}")
    if not 0.0 < args.greet_level < 1.0:
        raise UserFacingError(f"--greet-level: expected a share between 0 and 1 (e.g. 0.8), found {args.greet_level}")
    if Path(args.out).is_dir():
        raise UserFacingError(f"--out {args.out} is a folder; give the HTML file to write, e.g. {Path(args.out) / 'report.html'}")
    cfg, reader, tz = _open(args)
    with reader:
        start_s, end_s = parse_range(args.start, args.stop, tz)
        data = collect_report_data(
            reader, cfg, start_s, end_s, target_wait_s=args.target_wait_s, greet_time_s=args.greet_time_s,
            greet_level=args.greet_level,
        )
        if not args.no_heatmaps:
            add_heatmaps(data, reader, cfg, sharp_reference=args.sharp_reference)
    out = write_report(data, args.out)
    n = summary_numbers(data)
    mean = n["wait_mean_s"]
    print(
        f"{out}: {n['footfall_total']} entries, {n['waits_count']} measured waits"
        f"{f' (mean {mean:.0f} s)' if mean is not None else ''}, {len(data.lanes)} lane(s), "
        f"{len(data.dwell)} dwell zone(s), {len(data.heatmaps)} heatmap(s)"
    )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="store config (timezone, zones, data_dir)")
    p.add_argument("--from", dest="start", default=None, help=f"start, store time: {FORMS} (default: today)")
    p.add_argument("--to", dest="stop", default=None, help="end, store time; a bare date includes that day (default: now)")
    p.add_argument("--history", default=None, help="history database (default: data_dir/history.path from the config)")
    p.add_argument("--sharp-reference", action="store_true",
                   help="draw the reference frame unblurred (default: blurred so nobody is recognisable)")


def register(sub: Any) -> None:
    p = sub.add_parser("heatmap", help="render a camera's accumulated person-seconds for a period as a PNG")
    _common(p)
    p.add_argument("--camera", required=True, help="camera id from the config")
    p.add_argument("--out", default=None, help="PNG to write (default: heatmap-CAMERA.png)")
    p.add_argument("--min-tracks", type=int, default=None,
                   help="privacy: hide cells visited by fewer tracks in the period (default: analytics.heatmap.min_tracks_per_cell)")
    p.set_defaults(func=cmd_heatmap)

    r = sub.add_parser("report", help="write the ops report: one self-contained HTML file with plots")
    _common(r)
    r.add_argument("--out", required=True, help="HTML file to write, e.g. report.html")
    r.add_argument("--target-wait-s", type=float, default=120.0, help="staffing: keep the mean predicted wait under this")
    r.add_argument("--greet-time-s", type=float, default=20.0, help="staffing: time a greeter spends per customer")
    r.add_argument("--greet-level", type=float, default=0.8, help="staffing: share of customers greeted within the SLA")
    r.add_argument("--no-heatmaps", action="store_true", help="leave the heatmap section empty (faster)")
    r.set_defaults(func=cmd_report)
