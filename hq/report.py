"""``storesense hq report``: the chain view, one self-contained HTML file.

Every store's numbers come from the store report's own code: a :class:`PgStoreReader` serves
one store's rows out of PostgreSQL through the same ``payloads(schema, start_s, end_s)``
interface as the on-box history, and ``edge.report.collect_report_data`` +
``summary_numbers`` turn them into the store's figures. So a store's footfall, waits and SLA
counts at HQ are, by construction, those of its own report for the same period; the chain
totals are their sums. Rendering reuses the store report's stylesheet and formatting helpers;
the page is a Jinja2 template (hq/templates/chain_report.html.j2), no script, no external
resource.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import psycopg

from edge.ops_cli import parse_range, store_zone
from edge.report import (
    CSS,
    bi,
    clock_label,
    collect_report_data,
    local_hour_starts,
    peak_hours,
    period_text,
    summary_numbers,
)
from edge.templating import fmt_s
from hq.config import HqConfig, StoreEntry
from zones.config import QueueModelConfig

TEMPLATES = Path(__file__).resolve().parent / "templates"


class PgStoreReader:
    """One store's rows in PostgreSQL, read like ``edge.history.HistoryReader.payloads``.

    Events come back as the edge sent them. Live state exists at HQ only per minute: a lane or
    zone state is one synthetic payload per minute carrying the minute's means (booleans as
    ``mean >= 0.5``), enough for the report's queue and staffing figures."""

    def __init__(self, conn: psycopg.Connection, store_id: str) -> None:
        self.conn = conn
        self.store_id = store_id

    def payloads(self, schema: str, *, start_s: float | None = None, end_s: float | None = None) -> list[dict[str, Any]]:
        lo = dt.datetime.fromtimestamp(start_s if start_s is not None else 0.0, dt.timezone.utc)
        hi = dt.datetime.fromtimestamp(end_s if end_s is not None else 4e9, dt.timezone.utc)
        name = schema.split("/")[0]
        if name.startswith("storesense.event."):
            rows = self.conn.execute(
                "SELECT payload FROM events WHERE store_id = %s AND type = %s AND ts >= %s AND ts < %s "
                "ORDER BY ts, event_id", (self.store_id, name.removeprefix("storesense.event."), lo, hi)).fetchall()
            return [r[0] for r in rows]
        kind = {"storesense.lane_state": "lane", "storesense.zone_state": "zone"}.get(name)
        return self._state(kind, lo, hi) if kind else []

    def _state(self, kind: str, lo: dt.datetime, hi: dt.datetime) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT entity_id, minute, jsonb_object_agg(metric, sum / n) FROM state_minute "
            "WHERE store_id = %s AND kind = %s AND minute >= %s AND minute < %s GROUP BY 1, 2 ORDER BY 2, 1",
            (self.store_id, kind, lo, hi)).fetchall()
        out = []
        for entity, minute, metrics in rows:
            p: dict[str, Any] = {k: v for k, v in metrics.items()}
            for flag in ("open", "stale", "staff_present", "server_busy"):
                if flag in p:
                    p[flag] = p[flag] >= 0.5
            p[f"{kind}_id"] = entity
            p["timestamp_s"] = minute.timestamp()
            p.setdefault("service_rate_source", "observed")
            out.append(p)
        return out


@dataclass
class StoreFigures:
    store_id: str
    name: str
    customers_waited: int = 0
    waits_over_sla: int = 0
    wait_mean_s: float | None = None
    footfall: int = 0
    greeted: int = 0
    greeted_in_sla: int = 0
    peak_hour: str = "–"
    offline_h: float = 0.0
    dropped_pct: float | None = None  # of the frames due at the cameras' fps; None: no camera rows
    mean_wait_by_hour: dict[float, float] = field(default_factory=dict)  # chain-tz hour start -> mean wait s
    footfall_by_hour: dict[float, int] = field(default_factory=dict)  # chain-tz hour start -> entries
    summary: dict[str, Any] = field(default_factory=dict)  # edge.report.summary_numbers of the store

    @property
    def wait_sla_miss_pct(self) -> float | None:
        return 100.0 * self.waits_over_sla / self.customers_waited if self.customers_waited else None

    @property
    def greeting_pct(self) -> float | None:
        return 100.0 * self.greeted_in_sla / self.greeted if self.greeted else None


def store_entries(cfg: HqConfig, conn: psycopg.Connection) -> list[StoreEntry]:
    """The configured stores, plus any store that sent data without being listed."""
    known = {s.id: s for s in cfg.stores}
    seen = [r[0] for r in conn.execute(
        "SELECT store_id FROM events UNION SELECT store_id FROM availability ORDER BY 1").fetchall()]
    for sid in seen:
        known.setdefault(sid, StoreEntry(id=sid, timezone=cfg.report.timezone))
    return list(known.values())


def _store_cfg(entry: StoreEntry) -> Any:
    """What ``collect_report_data`` needs of a store config; HQ has no cameras or zones, so lanes,
    entrances and dwell zones come from the data itself (as for an unconfigured store)."""
    return SimpleNamespace(
        store=SimpleNamespace(id=entry.id, name=entry.name or entry.id, timezone=entry.timezone),
        cameras=[], lanes=list, analytics=SimpleNamespace(queue=QueueModelConfig()))


def store_figures(conn: psycopg.Connection, entry: StoreEntry, start_s: float, end_s: float, cfg: HqConfig,
                  chain_hours: list[float]) -> StoreFigures:
    reader = PgStoreReader(conn, entry.id)
    data = collect_report_data(reader, _store_cfg(entry), start_s, end_s)
    n = summary_numbers(data)
    sla_s = cfg.report.wait_sla_s
    waits = [(t, w) for lane in data.lanes for t, w in lane.waits]
    f = StoreFigures(entry.id, entry.name or entry.id, summary=n)
    f.customers_waited = n["waits_count"]
    f.waits_over_sla = sum(1 for _, w in waits if w > sla_s)
    f.wait_mean_s = n["wait_mean_s"]
    f.footfall = n["footfall_total"]
    greet = data.sla.get("greeting", {})
    f.greeted = sum(c for c, _ in greet.values())
    f.greeted_in_sla = sum(ok for _, ok in greet.values())
    peaks = n["peak_footfall"]
    if peaks:
        a = dt.datetime.fromtimestamp(peaks[0].hour_start_s, data.tz)
        f.peak_hour = f"{a:%H:00}–{(a + dt.timedelta(hours=1)):%H:00} ({int(peaks[0].value)})"
    sums: dict[float, list[float]] = {}
    for t, w in waits:
        i = _hour_index(chain_hours, t)
        if i is not None:
            sums.setdefault(chain_hours[i], []).append(w)
    f.mean_wait_by_hour = {h: sum(v) / len(v) for h, v in sums.items()}
    # footfall per *chain* hour: the store's own hours (summary_numbers) are its local clock hours,
    # which do not line up with the chain's when the offsets differ by a non-whole hour
    for p in reader.payloads("storesense.event.entry", start_s=start_s - 3600.0, end_s=end_s + 3600.0):
        entered = p.get("entered_s")
        i = (_hour_index(chain_hours, float(entered))
             if isinstance(entered, int | float) and start_s <= entered < end_s else None)
        if i is not None:
            f.footfall_by_hour[chain_hours[i]] = f.footfall_by_hour.get(chain_hours[i], 0) + 1
    f.offline_h = offline_hours(conn, entry.id, start_s, end_s)
    f.dropped_pct = dropped_pct(conn.execute(
        "SELECT entity_id, metric, sum / n, min, max FROM state_minute WHERE store_id = %s AND kind = 'camera' "
        "AND metric IN ('fps_measured', 'frames_dropped') AND minute >= %s AND minute < %s ORDER BY entity_id, minute",
        (entry.id, dt.datetime.fromtimestamp(start_s, dt.timezone.utc),
         dt.datetime.fromtimestamp(end_s, dt.timezone.utc))).fetchall())
    return f


def dropped_pct(rows: list[tuple[str, str, float, float, float]]) -> float | None:
    """Share of the frames due at the cameras' analysis fps that a store's box could not analyse.

    Why: a chain compares stores, and a box with more cameras than it can analyse still reports,
    only coarser (each camera at, say, 3.9 of its 5 frames/s). This says which stores' figures
    come from an overloaded box. From the per-minute camera rows ``(camera, metric, mean, min,
    max)`` in time order: analysed ≈ mean ``fps_measured`` x 60 s; dropped from the cumulative
    ``frames_dropped`` counter, minute to minute (a counter that went down is a restarted edge)."""
    analysed = dropped = 0.0
    last_max: dict[str, float] = {}
    for camera, metric, mean, low, high in rows:
        if metric == "fps_measured":
            analysed += float(mean) * 60.0
            continue
        before = last_max.get(camera)
        dropped += float(high) - (before if before is not None and high >= before else float(low))
        last_max[camera] = float(high)
    due = analysed + dropped
    return 100.0 * dropped / due if due > 0 else None


def _hour_index(hours: list[float], t: float) -> int | None:
    for i, h in enumerate(hours):
        if h <= t < h + 3600.0:
            return i
    return None


def offline_hours(conn: psycopg.Connection, store_id: str, start_s: float, end_s: float) -> float:
    """Hours of the period in which the store's box was not reporting: its edge process not
    ``online`` (Last Will ``offline``, or ``stopped``) or its bridge to HQ down. Before the first
    transition ever seen the state is unknown and not counted."""
    end_s = min(end_s, time.time())  # the future is not offline
    if end_s <= start_s:
        return 0.0
    lo = dt.datetime.fromtimestamp(start_s, dt.timezone.utc)
    hi = dt.datetime.fromtimestamp(end_s, dt.timezone.utc)
    rows = conn.execute(
        "SELECT device_id, state, ts FROM (SELECT DISTINCT ON (device_id) device_id, state, %s::timestamptz AS ts "
        "FROM availability WHERE store_id = %s AND ts < %s ORDER BY device_id, ts DESC, id DESC) AS before "
        "UNION ALL SELECT device_id, state, ts FROM availability WHERE store_id = %s AND ts >= %s AND ts < %s "
        "ORDER BY ts", (lo, store_id, lo, store_id, lo, hi)).fetchall()
    state: dict[str, str] = {}
    down_s = 0.0
    last = start_s
    for device, st, ts in [*rows, (None, None, hi)]:
        t = ts.timestamp()
        if any(v != "online" for v in state.values()):
            down_s += max(0.0, t - last)
        last = t
        if device is not None:
            state["bridge" if device == "bridge" else "edge"] = st
    return down_s / 3600.0


def _cell_colour(v: float | None, sla_s: float) -> str:
    if v is None:
        return ""
    x = min(v / sla_s, 1.5) / 1.5  # 0 -> green, SLA -> orange, 1.5 x SLA and more -> red
    hue = int(120 * (1 - x))
    return f"background: hsl({hue}, 70%, 85%)"


def build_context(cfg: HqConfig, figures: list[StoreFigures], start_s: float, end_s: float,
                  hours: list[float]) -> dict[str, Any]:
    tz = ZoneInfo(cfg.report.timezone)
    sla_s = cfg.report.wait_sla_s
    ranked = sorted(figures, key=lambda f: (-(f.wait_sla_miss_pct or 0.0), f.store_id))
    waited = sum(f.customers_waited for f in figures)
    over = sum(f.waits_over_sla for f in figures)
    greeted = sum(f.greeted for f in figures)
    greeted_ok = sum(f.greeted_in_sla for f in figures)
    busy = sorted({h for f in figures for h in f.mean_wait_by_hour})
    view = [h for h in hours if busy and busy[0] <= h <= busy[-1]]
    footfall_by_hour: dict[float, float] = {}
    for f in figures:
        for h, c in f.footfall_by_hour.items():
            footfall_by_hour[h] = footfall_by_hour.get(h, 0.0) + c
    return {
        "title": cfg.report.title,
        "css": CSS,
        "period": f"{period_text(start_s, end_s, tz)} ({cfg.report.timezone})",
        "generated": dt.datetime.now(tz).strftime("%Y-%m-%d %H:%M"),
        "bi": bi,
        "fmt_s": fmt_s,
        "pct": lambda v: "–" if v is None else f"{v:.0f}%",
        "sla_s": sla_s,
        "totals": {
            "stores": len(figures),
            "footfall": sum(f.footfall for f in figures),
            "customers_waited": waited,
            "waits_over_sla": over,
            "wait_sla_miss_pct": 100.0 * over / waited if waited else None,
            "greeted": greeted,
            "greeted_in_sla": greeted_ok,
            "greeting_pct": 100.0 * greeted_ok / greeted if greeted else None,
            "offline_h": sum(f.offline_h for f in figures),
        },
        "ranked": ranked,
        "hour_labels": [clock_label(h, tz, "%H:00") for h in view],
        "matrix": [(f, [(f.mean_wait_by_hour.get(h), _cell_colour(f.mean_wait_by_hour.get(h), sla_s)) for h in view])
                   for f in sorted(figures, key=lambda f: f.store_id)],
        "peaks": [(clock_label(p.hour_start_s, tz, "%m-%d %H:00"), int(p.value))
                  for p in peak_hours(footfall_by_hour)],
    }


def render_chain_report(context: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("chain_report.html.j2").render(**context)


def chain_report(cfg: HqConfig, start_s: float, end_s: float) -> tuple[str, list[StoreFigures]]:
    tz = ZoneInfo(cfg.report.timezone)
    hours = local_hour_starts(start_s, end_s, tz)
    with psycopg.connect(cfg.postgres.dsn, autocommit=True) as conn:
        figures = [store_figures(conn, e, start_s, end_s, cfg, hours) for e in store_entries(cfg, conn)]
    return render_chain_report(build_context(cfg, figures, start_s, end_s, hours)), figures


def write_chain_report(cfg: HqConfig, out_path: str | Path, *, start: str | None, end: str | None) -> Path:
    tz = store_zone(cfg.report.timezone)
    start_s, end_s = parse_range(start, end, tz, default_start="yesterday", default_stop=start or "yesterday")
    html, _ = chain_report(cfg, start_s, end_s)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".chain-report-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:  # atomically: a half-written report never replaces a good one
        fh.write(html)
    os.replace(tmp, out)
    return out

