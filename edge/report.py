"""The ops report: one self-contained HTML file that store managers look at, not read.

Everything comes from the on-box history (:mod:`edge.history`), i.e. the same messages that
were published over MQTT: entrance entries (footfall), lane states (queue length, predicted
wait, open/closed), measured waits, greeting/assist outcomes, zone visits (dwell, stops) and
the hourly heatmaps. Plots are matplotlib PNGs embedded as ``data:`` URIs, so the file can be
mailed or opened from a USB stick with no network and no other files.

Labels are bilingual (中文 + English); a CJK font is looked up with fontconfig and given to
matplotlib as a fallback after DejaVu Sans, so Latin text keeps its usual look.
"""

from __future__ import annotations

import io
import logging
import math
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from edge.templating import bi, fmt_s, render
from zones.staffing import HourLoad, HourStaffing, staffing_by_hour

log = logging.getLogger("storesense.report")

# -------------------------------------------------------------------------------------------
# look

PALETTE = {
    "ink": "#1f2933",
    "muted": "#7b8794",
    "grid": "#e4e7eb",
    "blue": "#2f6fde",
    "teal": "#14a38b",
    "orange": "#f08c00",
    "red": "#d64545",
    "purple": "#7c5cc4",
    "peak": "#f08c00",
    "bar": "#4c8bf5",
    "closed": "#f1f3f5",
}
SERIES = ["#2f6fde", "#14a38b", "#f08c00", "#7c5cc4", "#d64545", "#0b7285", "#a61e4d", "#5c940d"]
FIG_W_IN = 10.0
DPI = 110


@lru_cache(maxsize=1)
def cjk_font_name() -> str | None:
    """Family name of an installed CJK font (registered with matplotlib), or None.

    Debian: ``apt-get install fonts-wqy-zenhei`` (or fonts-noto-cjk) provides one.
    """
    from matplotlib import font_manager

    paths: list[str] = []
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        paths = [line.split(":")[0].strip() for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        paths = []
    if not paths:
        for root in ("/usr/share/fonts", "/usr/local/share/fonts"):
            for pattern in ("*wqy*", "*NotoSansCJK*", "*NotoSerifCJK*", "*SourceHan*"):
                paths += [str(p) for p in Path(root).rglob(pattern) if p.suffix.lower() in {".ttc", ".ttf", ".otf"}]
    # prefer sans faces
    paths.sort(key=lambda p: (("Sans" not in p and "zenhei" not in p.lower()), "Mono" in p, p))
    for path in paths:
        try:
            font_manager.fontManager.addfont(path)
            return str(font_manager.FontProperties(fname=path).get_name())
        except (OSError, RuntimeError, ValueError):
            continue
    log.warning(
        "no CJK font found (fc-list :lang=zh is empty): Chinese labels will show as boxes; "
        "install the Debian package fonts-wqy-zenhei or fonts-noto-cjk"
    )
    return None


def plot_style() -> Any:
    cjk = cjk_font_name()
    families = ["DejaVu Sans"] + ([cjk] if cjk else [])
    return {
        "font.family": families,
        "font.size": 10,
        "axes.titlesize": 12,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.edgecolor": PALETTE["grid"],
        "axes.labelcolor": PALETTE["ink"],
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.color": PALETTE["grid"],
        "grid.linewidth": 0.8,
        "xtick.color": PALETTE["muted"],
        "ytick.color": PALETTE["muted"],
        "legend.frameon": False,
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "axes.unicode_minus": False,
    }


logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # WQY has one weight: not news


def fig_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------
# data


@dataclass
class LaneDay:
    lane_id: str
    label: str
    times_s: list[float] = field(default_factory=list)
    queue_length: list[float] = field(default_factory=list)
    predicted_wait_s: list[float] = field(default_factory=list)  # NaN when unknown/stale
    is_open: list[bool] = field(default_factory=list)
    waits: list[tuple[float, float]] = field(default_factory=list)  # (served at, measured wait s)
    service_times_s: list[tuple[float, float]] = field(default_factory=list)  # (at, service time s)
    default_states: int = 0  # states whose open/closed was the default, not staff or a command


@dataclass
class ZoneDwell:
    zone_id: str
    label: str
    kind: str
    dwell_s: list[float] = field(default_factory=list)
    stops: int = 0


@dataclass
class HeatmapImage:
    camera_id: str
    caption: str
    png: bytes


@dataclass
class ReportData:
    store_id: str
    store_name: str
    timezone: str
    start_s: float
    end_s: float
    hours: list[float]  # epoch starts of the local hours in the period
    footfall: dict[float, int] = field(default_factory=dict)  # hour start -> entries
    lanes: list[LaneDay] = field(default_factory=list)
    # kind ("greeting"/"assist") -> hour start -> (customers, within SLA)
    sla: dict[str, dict[float, tuple[int, int]]] = field(default_factory=dict)
    sla_target_s: dict[str, float] = field(default_factory=dict)
    dwell: list[ZoneDwell] = field(default_factory=list)
    heatmaps: list[HeatmapImage] = field(default_factory=list)
    tills: list[HourStaffing] = field(default_factory=list)
    greeters: list[HourStaffing] = field(default_factory=list)
    target_wait_s: float = 120.0
    greet_service_level: float = 0.8
    notes: list[str] = field(default_factory=list)
    # why a headline figure is missing, or what it assumes, shown next to its card:
    # card key ("footfall", "peak", "wait", "greeting", "assist") -> reason (issue 13 item 11)
    why: dict[str, str] = field(default_factory=dict)
    # SLA kinds ("greeting", "assist") whose outcomes say nothing: nobody identifies staff, so every
    # customer is "missed"; their cards show a dash with the reason, not 0 %
    unmeasured: set[str] = field(default_factory=set)
    # lanes whose open/closed state was mostly the default (nobody identified staff or sent a command)
    lanes_assumed_open: set[str] = field(default_factory=set)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def view_hours(self) -> list[float]:
        """The hours worth showing: from the first to the last hour with any activity (a store
        is closed at night; 24 empty bars would squeeze the open hours)."""
        busy: set[float] = set(h for h, c in self.footfall.items() if c)
        for lane in self.lanes:
            for t, q, o in zip(lane.times_s, lane.queue_length, lane.is_open, strict=True):
                if o or q:
                    h = self.hour_of(t)
                    if h is not None:
                        busy.add(h)
            busy.update(h for h in (self.hour_of(t) for t, _ in lane.waits) if h is not None)
        for per in self.sla.values():
            busy.update(h for h, (n, _) in per.items() if n)
        if not busy:
            return list(self.hours)
        lo, hi = min(busy), max(busy)
        return [h for h in self.hours if lo <= h <= hi]

    def hour_of(self, timestamp_s: float) -> float | None:
        """Start of the local hour containing ``timestamp_s`` (None outside the period)."""
        # the period's first local hour can start before the period (a chain report's day in a
        # zone whose offset is not a whole hour from the store's): that part is outside it
        if not self.hours or timestamp_s < max(self.hours[0], self.start_s) or timestamp_s >= self.end_s:
            return None
        i = int(np.searchsorted(np.asarray(self.hours), timestamp_s, side="right")) - 1
        return self.hours[max(i, 0)]


def local_hour_starts(start_s: float, end_s: float, tz: ZoneInfo) -> list[float]:
    """Epoch starts of every local clock hour that overlaps [start_s, end_s)."""
    first = datetime.fromtimestamp(start_s, tz).replace(minute=0, second=0, microsecond=0)
    out: list[float] = []
    t = first.timestamp()
    while t < end_s:
        out.append(t)
        t += 3600.0
    return out


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


@dataclass(frozen=True)
class PeakHour:
    hour_start_s: float
    value: float


def peak_hours(series: dict[float, float], n: int = 3) -> list[PeakHour]:
    """The ``n`` busiest hours (ties: the earlier hour first), zero hours excluded."""
    items = sorted(((v, -h) for h, v in series.items() if v > 0), reverse=True)[:n]
    return [PeakHour(-negh, v) for v, negh in items]


def hourly_queue_mean(data: ReportData) -> dict[float, float]:
    """Mean total queue length over all lanes per hour (sample-weighted)."""
    sums: dict[float, float] = defaultdict(float)
    counts: dict[float, int] = defaultdict(int)
    for lane in data.lanes:
        per_lane_sum: dict[float, float] = defaultdict(float)
        per_lane_n: dict[float, int] = defaultdict(int)
        for t, q in zip(lane.times_s, lane.queue_length, strict=True):
            h = data.hour_of(t)
            if h is not None:
                per_lane_sum[h] += q
                per_lane_n[h] += 1
        for h, s in per_lane_sum.items():
            sums[h] += s / per_lane_n[h]
            counts[h] += 1
    return {h: sums[h] for h in sums}


def lane_hourly_stats(data: ReportData, lane: LaneDay) -> dict[float, dict[str, float]]:
    """Per hour: customers served, mean measured wait, mean service time, share of time open."""
    out: dict[float, dict[str, float]] = {}
    served: dict[float, list[float]] = defaultdict(list)
    for t, w in lane.waits:
        h = data.hour_of(t)
        if h is not None:
            served[h].append(w)
    service: dict[float, list[float]] = defaultdict(list)
    for t, s in lane.service_times_s:
        h = data.hour_of(t)
        if h is not None:
            service[h].append(s)
    open_n: dict[float, int] = defaultdict(int)
    all_n: dict[float, int] = defaultdict(int)
    for t, o in zip(lane.times_s, lane.is_open, strict=True):
        h = data.hour_of(t)
        if h is not None:
            all_n[h] += 1
            open_n[h] += int(o)
    for h in data.hours:
        out[h] = {
            "served": float(len(served[h])),
            "mean_wait_s": float(np.mean(served[h])) if served[h] else math.nan,
            "mean_service_s": float(np.mean(service[h])) if service[h] else math.nan,
            "open_fraction": open_n[h] / all_n[h] if all_n[h] else math.nan,
        }
    return out


def compute_staffing(
    data: ReportData,
    *,
    target_wait_s: float,
    default_service_time_s: float,
    greet_time_s: float,
    greet_sla_s: float,
    greet_level: float,
    greeters_present: dict[float, float] | None = None,
) -> None:
    """Fill ``data.tills`` and ``data.greeters`` from the measured hourly loads."""
    stats = [lane_hourly_stats(data, lane) for lane in data.lanes]
    till_hours: list[HourLoad] = []
    for h in data.hours:
        arrivals = int(sum(s[h]["served"] for s in stats))
        svc = [
            (s[h]["mean_service_s"], s[h]["served"])
            for s in stats
            if not math.isnan(s[h]["mean_service_s"]) and s[h]["served"] > 0
        ]
        mean_service = sum(v * n for v, n in svc) / sum(n for _, n in svc) if svc else None
        fractions = [s[h]["open_fraction"] for s in stats if not math.isnan(s[h]["open_fraction"])]
        actual = float(sum(fractions)) if fractions else None
        till_hours.append(HourLoad(h, arrivals, mean_service, actual))
    data.tills = staffing_by_hour(till_hours, target_wait_s=target_wait_s, default_service_time_s=default_service_time_s)
    greet_hours = [
        HourLoad(h, data.footfall.get(h, 0), greet_time_s, (greeters_present or {}).get(h)) for h in data.hours
    ]
    data.greeters = staffing_by_hour(
        greet_hours, target_wait_s=greet_sla_s, default_service_time_s=greet_time_s, service_level=greet_level
    )
    data.target_wait_s = target_wait_s
    data.greet_service_level = greet_level


# -------------------------------------------------------------------------------------------
# plots


def _hour_labels(data: ReportData, hours: Sequence[float]) -> list[str]:
    tz = data.tz
    multi_day = data.end_s - data.start_s > 86400.0 + 3600.0
    fmt = "%m-%d %H:00" if multi_day else "%H:00"
    return [datetime.fromtimestamp(h, tz).strftime(fmt) for h in hours]


def _hour_ticks(ax: Any, data: ReportData, hours: Sequence[float]) -> None:
    x = np.arange(len(hours))
    labels = _hour_labels(data, hours)
    step = _tick_every(len(labels))
    ax.set_xticks(x[::step])
    rotate = len(labels) > 14
    ax.set_xticklabels(labels[::step], rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_xlim(-0.6, len(hours) - 0.4)


def _top_legend(fig: Any, handles: list[Any], labels: list[str], ncol: int | None = None) -> None:
    """One legend for the figure, above the top axes at the right, under the title (never over
    the data)."""
    top = max(fig.axes, key=lambda a: a.get_position().y1)
    top.legend(handles, labels, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=ncol or len(labels),
               fontsize=9, frameon=False, handlelength=1.6, columnspacing=1.2, borderaxespad=0.2)
    # the title goes on its own line above the legend: a long legend ran over it (SLA, tills)
    for loc in ("left", "center"):
        text = top.get_title(loc=loc)
        if text:
            top.set_title(text, loc=loc, pad=22)


def _tick_every(n: int) -> int:
    return max(1, math.ceil(n / 24))


def _local_naive(data: ReportData, ts: Iterable[float]) -> list[datetime]:
    tz = data.tz
    return [datetime.fromtimestamp(t, tz).replace(tzinfo=None) for t in ts]


def _time_axis(ax: Any, data: ReportData) -> None:
    import matplotlib.dates as mdates

    hours = data.view_hours()
    lo = hours[0] if hours else data.start_s
    hi = min(data.end_s, hours[-1] + 3600.0) if hours else data.end_s
    start, end = _local_naive(data, [lo, hi])
    ax.set_xlim(start, end)
    span_h = (hi - lo) / 3600.0
    if span_h <= 36:
        ax.xaxis.set_major_locator(mdates.HourLocator(interval=max(1, int(span_h // 12))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:00"))
    else:
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(span_h // (24 * 10)))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))


def _no_data(ax: Any, reason: str) -> None:
    """An empty chart says why, in its middle, instead of showing bare axes."""
    ax.text(0.5, 0.5, reason, transform=ax.transAxes, ha="center", va="center", fontsize=11, color=PALETTE["muted"],
            bbox={"boxstyle": "round,pad=0.5", "fc": "white", "ec": PALETTE["grid"]})


def _count_axis(ax: Any, top: float) -> None:
    """A count axis from 0 with whole-number ticks; 0-1 when every value is 0 (matplotlib would
    otherwise centre the zeros on a -0.05..0.05 axis)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_ylim(0, max(float(top), 1.0))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=2))


def plot_footfall(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        hours = data.view_hours()
        counts = [data.footfall.get(h, 0) for h in hours]
        peaks = {p.hour_start_s for p in peak_hours({h: float(c) for h, c in zip(hours, counts, strict=True)})}
        fig, ax = plt.subplots(figsize=(FIG_W_IN, 3.6))
        x = np.arange(len(counts))
        colors = [PALETTE["peak"] if h in peaks else PALETTE["bar"] for h in hours]
        bars = ax.bar(x, counts, color=colors, width=0.8)
        if len(counts) <= 48:
            for rect, c in zip(bars, counts, strict=True):
                if c:
                    ax.annotate(str(c), (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                                ha="center", va="bottom", fontsize=8, color=PALETTE["ink"],
                                xytext=(0, 2), textcoords="offset points")
        _hour_ticks(ax, data, hours)
        ax.set_ylabel(bi("进店人数", "entries"))
        ax.set_title(bi("每小时客流", "Footfall per hour"), loc="left")
        ax.grid(axis="x", visible=False)
        _count_axis(ax, max([*counts, 1]) * 1.12)
        if not any(counts):
            _no_data(ax, data.why.get("footfall") or bi("此时段没有进店记录", "no entries in this period"))
        from matplotlib.patches import Patch

        _top_legend(fig, [Patch(color=PALETTE["bar"]), Patch(color=PALETTE["peak"])],
                    [bi("进店", "entries"), bi("高峰时段", "peak hours")])
        return fig_png(fig)


def _resample(times_s: Sequence[float], values: Sequence[float], start_s: float, end_s: float, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean per time bin (NaN where no sample), so a day at 1 Hz plots as smooth minutes."""
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    n_bins = max(1, int(math.ceil((end_s - start_s) / bin_s)))
    idx = np.floor((t - start_s) / bin_s).astype(int)
    ok = (idx >= 0) & (idx < n_bins) & np.isfinite(v)
    sums = np.bincount(idx[ok], weights=v[ok], minlength=n_bins)
    cnt = np.bincount(idx[ok], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    centres = start_s + (np.arange(n_bins) + 0.5) * bin_s
    return centres, mean


def plot_queues(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        n = max(1, len(data.lanes))
        fig, axes = plt.subplots(n, 1, figsize=(FIG_W_IN, 2.6 * n + 0.6), sharex=True, squeeze=False)
        span_s = data.end_s - data.start_s
        bin_s = 60.0 if span_s <= 2 * 86400 else 600.0
        for ax, lane in zip(axes[:, 0], data.lanes or [LaneDay("", "")], strict=True):
            ax2 = ax.twinx()
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            ax2.spines["right"].set_color(PALETTE["grid"])
            # closed periods: light band
            if lane.times_s:
                c, openness = _resample(lane.times_s, [1.0 if o else 0.0 for o in lane.is_open], data.start_s, data.end_s, bin_s)
                closed = np.nan_to_num(openness, nan=1.0) < 0.5
                xs = _local_naive(data, c)
                ax.fill_between(xs, 0, 1, where=closed, transform=ax.get_xaxis_transform(), color=PALETTE["closed"],
                                step="mid", linewidth=0, label=bi("关闭", "closed"))
                c, q = _resample(lane.times_s, lane.queue_length, data.start_s, data.end_s, bin_s)
                ax.fill_between(_local_naive(data, c), 0, np.nan_to_num(q), color=PALETTE["blue"], alpha=0.18, step="mid", linewidth=0)
                ax.step(_local_naive(data, c), q, where="mid", color=PALETTE["blue"], linewidth=1.2, label=bi("排队人数", "queue length"))
                c, w = _resample(lane.times_s, lane.predicted_wait_s, data.start_s, data.end_s, bin_s)
                ax2.plot(_local_naive(data, c), w / 60.0, color=PALETTE["orange"], linewidth=1.3, label=bi("预测等待", "predicted wait"))
            if lane.waits:
                wt, wv = zip(*lane.waits, strict=True)
                ax2.scatter(_local_naive(data, wt), np.asarray(wv) / 60.0, s=10, color=PALETTE["red"], alpha=0.7,
                            zorder=3, label=bi("实测等待", "measured wait"), linewidths=0)
            if data.target_wait_s:
                ax2.axhline(data.target_wait_s / 60.0, color=PALETTE["red"], linestyle=":", linewidth=1,
                            label=bi("目标", "target"))
            _count_axis(ax, max([*lane.queue_length, 1.0]) * 1.1)
            waits_min = [w / 60.0 for w in lane.predicted_wait_s if not math.isnan(w)] + [w / 60.0 for _, w in lane.waits]
            ax2.set_ylim(0, max([*waits_min, data.target_wait_s / 60.0 if data.target_wait_s else 1.0, 1.0]) * 1.1)
            if not lane.times_s and not lane.waits:
                _no_data(ax, data.why.get("wait") or bi("此时段没有通道数据", "no lane data in this period"))
            ax.set_ylabel(bi("人", "people"), color=PALETTE["blue"])
            ax2.set_ylabel(bi("分钟", "min"), color=PALETTE["orange"])
            ax.set_title(f"{lane.label}", loc="left", fontsize=11)
            _time_axis(ax, data)
        handles: dict[str, Any] = {}
        for a in fig.axes:
            for hnd, lab in zip(*a.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, hnd)
        fig.tight_layout()
        _top_legend(fig, list(handles.values()), list(handles.keys()), ncol=3)
        return fig_png(fig)


def plot_sla(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        fig, ax = plt.subplots(figsize=(FIG_W_IN, 3.6))
        kinds = [k for k in ("greeting", "assist") if k in data.sla and k not in data.unmeasured] or ["greeting"]
        names = {"greeting": bi("进店问候", "greeting"), "assist": bi("导购响应", "assistant response")}
        colors = {"greeting": PALETTE["teal"], "assist": PALETTE["purple"]}
        width = 0.8 / len(kinds)
        hours = data.view_hours()
        x = np.arange(len(hours))
        for i, k in enumerate(kinds):
            per_hour = data.sla.get(k, {})
            pct = [100.0 * per_hour[h][1] / per_hour[h][0] if per_hour.get(h, (0, 0))[0] else np.nan for h in hours]
            target = data.sla_target_s.get(k)
            label = names[k] + (f" (≤ {target:g} s)" if target else "")
            ax.bar(x + (i - (len(kinds) - 1) / 2) * width, pct, width=width * 0.95, color=colors[k], label=label)
        ax.axhline(100.0 * data.greet_service_level, color=PALETTE["red"], linestyle=":", linewidth=1,
                   label=bi("目标", "target") + f" {100 * data.greet_service_level:.0f}%")
        _hour_ticks(ax, data, hours)
        ax.set_ylim(0, 105)
        ax.set_ylabel(bi("达标率 %", "within SLA %"))
        ax.set_title(bi("每小时服务达标率", "SLA compliance per hour"), loc="left")
        if not data.sla or set(data.sla) <= data.unmeasured:
            _no_data(ax, data.why.get("greeting") or data.why.get("assist") or bi("此时段没有问候或导购记录", "no greeting or assistance outcomes"))
        ax.grid(axis="x", visible=False)
        _top_legend(fig, *ax.get_legend_handles_labels())
        return fig_png(fig)


def plot_dwell(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        zones = [z for z in data.dwell if z.dwell_s]
        if not zones:
            return _empty_dwell(data)
        fig, ax = plt.subplots(figsize=(FIG_W_IN, 0.7 * len(zones) + 1.4))
        values = [np.asarray(z.dwell_s, dtype=float) for z in zones]
        import matplotlib

        horizontal: dict[str, Any] = (
            {"orientation": "horizontal"} if tuple(int(v) for v in matplotlib.__version__.split(".")[:2]) >= (3, 10)
            else {"vert": False}
        )
        bp = ax.boxplot(values, whis=(10, 90), showfliers=False, patch_artist=True, widths=0.55, **horizontal)
        for i, box in enumerate(bp["boxes"]):
            box.set_facecolor(SERIES[i % len(SERIES)] + "55")
            box.set_edgecolor(SERIES[i % len(SERIES)])
        for med in bp["medians"]:
            med.set_color(PALETTE["ink"])
            med.set_linewidth(2)
        for i, v in enumerate(values, start=1):
            p90 = float(np.percentile(v, 90))
            ax.plot([p90], [i], marker="v", color=PALETTE["red"], markersize=7, zorder=4,
                    label=bi("90分位", "p90") if i == 1 else None)
            ax.annotate(f"{float(np.median(v)):.0f} s", (float(np.median(v)), i + 0.33), ha="center",
                        fontsize=8, color=PALETTE["ink"])
        ax.set_yticks(range(1, len(zones) + 1))
        ax.set_yticklabels([z.label for z in zones])
        ax.set_xlabel(bi("停留时间（秒）", "dwell time (s)"))
        ax.set_xlim(left=0)
        ax.set_title(bi("各区域停留时间分布", "Dwell time per zone") + "  (box: p25–p75, whiskers: p10–p90)", loc="left")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="y", visible=False)
        return fig_png(fig)


def _empty_dwell(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        fig, ax = plt.subplots(figsize=(FIG_W_IN, 2.2))
        ax.set_xlim(0, 120)
        ax.set_yticks([])
        ax.set_xlabel(bi("停留时间（秒）", "dwell time (s)"))
        ax.set_title(bi("各区域停留时间分布", "Dwell time per zone"), loc="left")
        _no_data(ax, bi("未配置停留区域", "no dwell zone configured") if not data.dwell
                 else bi("此时段没有到访", "no visits in this period"))
        return fig_png(fig)


def plot_staffing(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        fig, axes = plt.subplots(2, 1, figsize=(FIG_W_IN, 6.0), sharex=True)
        hours = data.view_hours()
        x = np.arange(len(hours))
        keep = set(hours)
        for ax, all_rows, title, actual_label in (
            (axes[0], data.tills, bi("收银台：需要 vs 实际开放", "Tills: needed vs open"), bi("实际", "actual (measured)")),
            (axes[1], data.greeters, bi("迎宾：需要 vs 在岗", "Greeters: needed vs present"), bi("实际", "actual (measured)")),
        ):
            rows = [r for r in all_rows if r.hour_start_s in keep]
            needed = [r.needed for r in rows] if rows else [0] * len(x)
            actual = [r.actual if r.actual is not None else np.nan for r in rows] if rows else [np.nan] * len(x)
            ax.bar(x, needed, width=0.7, color=PALETTE["teal"], alpha=0.85, label=bi("建议", "needed (M/M/c)"))
            ax.plot(x, actual, color=PALETTE["ink"], marker="o", markersize=4, linewidth=1.4, label=actual_label)
            short = [i for i, (n, a) in enumerate(zip(needed, actual, strict=True)) if not np.isnan(a) and n > a + 0.25]
            if short:
                ax.scatter(short, [needed[i] for i in short], marker="^", s=50, color=PALETTE["red"], zorder=4,
                           label=bi("人手不足", "understaffed"))
            ax.set_title(title, loc="left")
            ax.set_ylabel(bi("数量", "count"))
            ymax = max([*needed, *[a for a in actual if not np.isnan(a)], 1])
            ax.set_ylim(0, ymax + 1)
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.grid(axis="x", visible=False)
        _hour_ticks(axes[1], data, hours)
        fig.tight_layout()
        handles: dict[str, Any] = {}
        for a in axes:
            for hnd, lab in zip(*a.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, hnd)
        _top_legend(fig, list(handles.values()), list(handles.keys()))
        return fig_png(fig)


# -------------------------------------------------------------------------------------------
# HTML

CSS = """
:root { --ink:#1f2933; --muted:#7b8794; --line:#e4e7eb; --accent:#2f6fde; --peak:#f08c00; }
* { box-sizing: border-box; }
body { margin:0; font-family: "DejaVu Sans", "Noto Sans CJK SC", "WenQuanYi Zen Hei", "PingFang SC",
  "Microsoft YaHei", sans-serif; color:var(--ink); background:#f7f8fa; }
header { background:#1f2933; color:white; padding:24px 40px; }
header h1 { margin:0 0 4px 0; font-size:26px; }
header p { margin:0; color:#cbd2d9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 40px 60px; }
nav { margin: 0 0 20px 0; font-size: 14px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 14px; margin-bottom: 24px; }
.card { background:white; border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.card .k { font-size: 12px; color: var(--muted); }
.card .v { font-size: 26px; font-weight: bold; margin-top: 4px; white-space: nowrap; }
.card .s { font-size: 12px; color: var(--muted); margin-top: 2px; }
.card .why { font-size: 12px; color: #b35c00; margin-top: 6px; }
.card .why::before { content: "ⓘ "; }
section { background:white; border:1px solid var(--line); border-radius:10px; padding: 18px 22px; margin-bottom: 22px; }
section h2 { margin: 0 0 12px 0; font-size: 19px; }
section h2 small { color: var(--muted); font-weight: normal; font-size: 14px; }
img.plot { width: 100%; height: auto; display:block; }
.heatmaps { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
figure { margin:0; } figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 12px; }
th, td { text-align: right; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; white-space: nowrap; }
th { color: var(--muted); font-weight: normal; }
td.short { color: #c92a2a; font-weight: bold; }
tr.short td:first-child { color: #c92a2a; }
.note { color: var(--muted); font-size: 13px; }
.peak { color: var(--peak); font-weight: bold; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 10px; }
"""


def period_text(start_s: float, end_s: float, tz: ZoneInfo) -> str:
    """'2024-05-01', '2024-05-01 → 2024-05-07' for whole local days, else with times."""
    from datetime import timedelta

    a = datetime.fromtimestamp(start_s, tz)
    b = datetime.fromtimestamp(end_s, tz)
    if a.time() == b.time() == datetime.min.time():
        last = (b - timedelta(days=1)).date()
        return f"{a:%Y-%m-%d}" if last == a.date() else f"{a:%Y-%m-%d} → {last:%Y-%m-%d}"
    if a.date() == b.date():
        return f"{a:%Y-%m-%d %H:%M} → {b:%H:%M}"
    return f"{a:%Y-%m-%d %H:%M} → {b:%Y-%m-%d %H:%M}"


def clock_label(ts_s: float, tz: ZoneInfo, fmt: str = "%H:%M") -> str:
    """Local clock time of ``ts_s``; next to a clock change, with the zone's abbreviation, so the
    repeated 01:00 of the day daylight saving ends reads "01:00 EDT" and "01:00 EST", not
    01:00 twice."""
    t = datetime.fromtimestamp(ts_s, tz)
    offsets = {datetime.fromtimestamp(ts_s + d, tz).utcoffset() for d in (-3600.0, 0.0, 3600.0)}
    return t.strftime(fmt) + (f" {t.tzname()}" if len(offsets) > 1 else "")


def _hour_text(data: ReportData, h: float) -> str:
    tz = data.tz
    multi_day = data.end_s - data.start_s > 86400.0 + 3600.0
    date = datetime.fromtimestamp(h, tz).strftime("%m-%d ") if multi_day else ""
    return f"{date}{clock_label(h, tz)}–{clock_label(h + 3600, tz)}"


def summary_numbers(data: ReportData) -> dict[str, Any]:
    """The headline numbers, also used by tests to check the report against its inputs."""
    waits = [w for lane in data.lanes for _, w in lane.waits]
    sla_n = {k: sum(n for n, _ in v.values()) for k, v in data.sla.items()}
    sla_ok = {k: sum(ok for _, ok in v.values()) for k, v in data.sla.items()}
    foot = {h: float(c) for h, c in data.footfall.items()}
    return {
        "footfall_total": int(sum(data.footfall.values())),
        "footfall_per_hour": {h: int(data.footfall.get(h, 0)) for h in data.hours},
        "waits_count": len(waits),
        "wait_mean_s": float(np.mean(waits)) if waits else None,
        "wait_p90_s": _percentile(waits, 90),
        "waits_within_target_pct": (100.0 * sum(w <= data.target_wait_s for w in waits) / len(waits)) if waits else None,
        "sla_count": sla_n,
        "sla_pct": {k: (100.0 * sla_ok[k] / sla_n[k]) if sla_n[k] else None for k in sla_n},
        "peak_footfall": peak_hours(foot),
        "peak_queue": peak_hours(hourly_queue_mean(data)),
    }


def _cards(data: ReportData, numbers: dict[str, Any]) -> list[dict[str, str]]:
    peaks = numbers["peak_footfall"]
    greet, assist = (None if k in data.unmeasured else numbers["sla_pct"].get(k) for k in ("greeting", "assist"))

    def card(key: str, k: str, v: str, s: str = "") -> dict[str, str]:
        return {"key": key, "k": k, "v": v, "s": s, "why": data.why.get(key, "")}

    within = numbers["waits_within_target_pct"]
    wait_sub = (f"{numbers['waits_count']} {bi('位顾客', 'customers')}, p90 {fmt_s(numbers['wait_p90_s'])}"
                + (f", {within:.0f}% ≤ {fmt_s(data.target_wait_s)}" if within is not None else ""))
    return [
        card("footfall", bi("总客流", "Footfall"), f"{numbers['footfall_total']:,}", bi("进店人次", "entries")),
        card("peak", bi("高峰时段", "Peak hour"), _hour_text(data, peaks[0].hour_start_s) if peaks else "–",
             f"{int(peaks[0].value)} {bi('人次', 'entries')}" if peaks else ""),
        card("wait", bi("平均等待", "Mean wait"), fmt_s(numbers["wait_mean_s"]), wait_sub),
        card("greeting", bi("问候达标", "Greeted in SLA"), f"{greet:.0f}%" if greet is not None else "–",
             f"{numbers['sla_count'].get('greeting', 0)} {bi('人', 'customers')}"),
        card("assist", bi("导购响应达标", "Assisted in SLA"), f"{assist:.0f}%" if assist is not None else "–",
             f"{numbers['sla_count'].get('assist', 0)} {bi('人', 'customers')}"),
    ]


def _peak_rows(data: ReportData, numbers: dict[str, Any]) -> list[list[dict[str, str] | None]]:
    """Top hours by footfall and by queue, side by side (None where a column has fewer)."""
    peaks, qpeaks = numbers["peak_footfall"], numbers["peak_queue"]
    rows: list[list[dict[str, str] | None]] = []
    for i in range(max(len(peaks), len(qpeaks), 1)):
        a = {"hour": _hour_text(data, peaks[i].hour_start_s), "value": str(int(peaks[i].value))} if i < len(peaks) else None
        b = ({"hour": _hour_text(data, qpeaks[i].hour_start_s), "value": f"{qpeaks[i].value:.1f}"}
             if i < len(qpeaks) else None)
        rows.append([a, b])
    return rows


def _lane_rows(data: ReportData) -> list[list[str]]:
    rows = []
    for lane in data.lanes:
        ws = [w for _, w in lane.waits]
        pw = [p for p in lane.predicted_wait_s if not math.isnan(p)]
        rows.append([
            lane.label, str(len(ws)), fmt_s(float(np.mean(ws)) if ws else None), fmt_s(_percentile(ws, 50)),
            fmt_s(_percentile(ws, 90)), fmt_s(float(np.mean(pw)) if pw else None),
            f"{max(lane.queue_length) if lane.queue_length else 0:.0f}",
            f"{100.0 * (sum(lane.is_open) / len(lane.is_open)) if lane.is_open else 0:.0f}%"
            + (f" ({bi('假定', 'assumed')})" if lane.lane_id in data.lanes_assumed_open else ""),
        ])
    return rows


def _staff_rows(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    view = set(data.view_hours())
    for t, g in zip(data.tills, data.greeters, strict=True):
        if t.hour_start_s not in view:
            continue
        rows.append({
            "hour": _hour_text(data, t.hour_start_s), "served": t.arrivals, "service_time": fmt_s(t.service_time_s),
            "tills_needed": t.needed, "tills_open": "–" if t.actual is None else f"{t.actual:.1f}",
            "model_wait": fmt_s(t.predicted_wait_s), "entries": g.arrivals, "greeters_needed": g.needed,
            "greeters_present": "–" if g.actual is None else f"{g.actual:.1f}",
            "short_tills": t.actual is not None and t.needed > t.actual + 0.25,
            "short_greeters": g.actual is not None and g.needed > g.actual + 0.25,
        })
    return rows


def render_html(data: ReportData) -> str:
    """The report page (edge/templates/report.html.j2) from the collected data."""
    tz = data.tz
    numbers = summary_numbers(data)
    nav = [("peaks", bi("高峰", "Peaks")), ("footfall", bi("客流", "Footfall")), ("queues", bi("排队", "Queues")),
           ("sla", bi("服务达标", "SLA")), ("dwell", bi("停留", "Dwell")), ("staffing", bi("排班", "Staffing")),
           ("heatmaps", bi("热力图", "Heatmaps"))]
    plots = {"footfall": plot_footfall(data), "queues": plot_queues(data), "sla": plot_sla(data),
             "dwell": plot_dwell(data), "staffing": plot_staffing(data)}
    staff_rows = _staff_rows(data)
    zone_rows = [[z.label, str(len(z.dwell_s)), fmt_s(_percentile(z.dwell_s, 50)), fmt_s(_percentile(z.dwell_s, 90)),
                  str(z.stops)] for z in data.dwell]
    return render(
        "report.html.j2",
        title=f"{data.store_name} — {bi('运营报告', 'operations report')}",
        subtitle=f"{period_text(data.start_s, data.end_s, tz)} ({data.timezone}) · {data.store_id}",
        css=CSS,
        generated=datetime.now(tz).strftime("%Y-%m-%d %H:%M"),
        nav=nav,
        cards=_cards(data, numbers),
        peak_rows=_peak_rows(data, numbers),
        plots=plots,
        lane_rows=_lane_rows(data),
        zone_rows=zone_rows,
        staff_rows=staff_rows,
        staff_note=bi("–：该时段未测到（无通道或入口状态）", "–: not measured in that hour (no lane or entrance state)")
        if any(v == "–" for r in staff_rows for v in r.values()) else "",
        target_wait=fmt_s(data.target_wait_s),
        greet_level_pct=f"{100 * data.greet_service_level:.0f}",
        heatmaps=data.heatmaps,
        notes=data.notes,
    )


# -------------------------------------------------------------------------------------------
# from the history database


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


# slack around the period: events are stamped when emitted, a little after what they describe
_SLACK_S = 3600.0


def collect_report_data(
    reader: Any,
    cfg: Any,
    start_s: float,
    end_s: float,
    *,
    target_wait_s: float = 120.0,
    greet_time_s: float = 20.0,
    greet_level: float = 0.8,
) -> ReportData:
    """Read one period out of a :class:`edge.history.HistoryReader` into a :class:`ReportData`.

    Sources (docs/messages.md): footfall = ``entry`` events (older histories: greeting outcomes at
    entrance zones, also exactly one per customer who walked in); waits and arrivals =
    ``queue_wait`` events; queue length, predicted wait, open/closed and service rate =
    ``lane_state`` snapshots; SLA = ``greeting``/``assist`` events; dwell = ``visit`` events;
    greeters present = staff count in entrance ``zone_state``.
    """
    tz = ZoneInfo(cfg.store.timezone)
    data = ReportData(
        store_id=cfg.store.id,
        store_name=cfg.store.name or cfg.store.id,
        timezone=cfg.store.timezone,
        start_s=start_s,
        end_s=end_s,
        hours=local_hour_starts(start_s, end_s, tz),
    )
    zone_cfg = {z.id: z for cam in cfg.cameras for z in cam.zones}
    lanes: dict[str, LaneDay] = {lc.lane_id: LaneDay(lc.lane_id, lc.label) for lc in cfg.lanes()}
    _read_lane_states(reader, data, lanes)
    _read_waits(reader, data, lanes)
    entrance_zones = {zid for zid, z in zone_cfg.items() if z.kind == "entrance"}
    entrance_zones |= _read_footfall_and_sla(reader, data)
    data.dwell = _read_dwell(reader, data, zone_cfg)
    greeters_present = _greeters_present(reader, data, _door_zones(cfg, entrance_zones))
    data.lanes = list(lanes.values())
    data.lanes_assumed_open = {ld.lane_id for ld in data.lanes if ld.times_s and ld.default_states > len(ld.times_s) / 2}
    compute_staffing(
        data,
        target_wait_s=target_wait_s,
        default_service_time_s=float(cfg.analytics.queue.default_service_time_s),
        greet_time_s=greet_time_s,
        greet_sla_s=data.sla_target_s.get("greeting", 10.0),
        greet_level=greet_level,
        greeters_present=greeters_present or None,
    )
    if not data.footfall:
        data.notes.append(bi("此时段没有入口数据", "No entrance data in this period (no entry events or greeting outcomes)."))
    if not any(ld.times_s for ld in data.lanes):
        data.notes.append(bi("此时段没有收银通道数据", "No lane states in this period."))
    data.why = card_reasons(data, cfg)
    data.unmeasured = set() if _staff_known(cfg) else {"greeting", "assist"}
    return data


def card_reasons(data: ReportData, cfg: Any) -> dict[str, str]:
    """Why each headline card shows a dash, a zero, or a figure with an assumption behind it: said
    next to the card, where the manager looks, not only in the notes at the bottom.

    A config without cameras (the chain report's stand-in: HQ knows no zones) gets only the
    reasons the data gives."""
    configured = bool(cfg.cameras)
    kinds = {z.kind for cam in cfg.cameras for z in cam.zones}
    staff_known = _staff_known(cfg)
    why: dict[str, str] = {}
    if configured and "entrance" not in kinds:
        why["footfall"] = why["peak"] = why["greeting"] = bi("未配置入口区域", "no entrance zone configured")
    elif not data.footfall:
        why["footfall"] = why["peak"] = bi("此时段入口无人进店", "nobody counted at the entrance in this period")
    if configured and not cfg.lanes():
        why["wait"] = bi("未配置收银通道", "no checkout lanes (queue zones) configured")
    elif not any(ld.waits for ld in data.lanes):
        why["wait"] = bi("此时段没有顾客完成结账", "no customer served in this period")
    elif data.lanes_assumed_open:
        why["wait"] = bi("未识别员工：通道视为开放", "no staff identification: lanes assumed open")
    sla_n = {k: sum(n for n, _ in v.values()) for k, v in data.sla.items()}
    if configured and "dwell" not in kinds:
        why["assist"] = bi("未配置停留区域", "no dwell zone configured")
    for key, what, none in (
        ("greeting", bi("未识别员工：无法测量问候", "no staff identification: greetings cannot be measured"),
         bi("此时段没有顾客进店", "no customer walked in")),
        ("assist", bi("未识别员工：无法测量导购响应", "no staff identification: assistance cannot be measured"),
         bi("没有顾客驻足足够久", "no customer stopped long enough in a dwell zone (stop_after_s)")),
    ):
        if key in why:
            continue
        if not staff_known:
            why[key] = what
        elif not sla_n.get(key):
            why[key] = none
    return why


def _staff_known(cfg: Any) -> bool:
    """Whether greeting and assistance outcomes mean anything: some staff identification method is
    configured (a config without cameras is HQ's stand-in, which cannot tell)."""
    staff = getattr(cfg, "staff", None)
    return not cfg.cameras or staff is None or bool(staff.methods)


def _door_zones(cfg: Any, entrance_zones: set[str]) -> set[str]:
    """The entrance zones and the staff-only zones on the same cameras (the greeters' counter):
    greeters on duty wait there between customers."""
    out = set(entrance_zones)
    for cam in cfg.cameras:
        if any(z.id in entrance_zones for z in cam.zones):
            out |= {z.id for z in cam.zones if z.kind == "staff_only"}
    return out


def _lane(lanes: dict[str, LaneDay], lid: str, label: str | None = None) -> LaneDay:
    if lid not in lanes:
        lanes[lid] = LaneDay(lid, label or lid)
    return lanes[lid]


def _read_lane_states(reader: Any, data: ReportData, lanes: dict[str, LaneDay]) -> None:
    """Queue length, predicted wait, open/closed and observed service times per lane."""
    for p in reader.payloads("storesense.lane_state", start_s=data.start_s, end_s=data.end_s):
        ts = _num(p.get("timestamp_s"))
        lid = p.get("lane_id")
        if ts is None or not isinstance(lid, str):
            continue
        ld = _lane(lanes, lid, p.get("label"))
        ld.times_s.append(ts)
        ld.queue_length.append(float(p.get("queue_length") or 0))
        wait = _num(p.get("predicted_wait_s"))
        ld.predicted_wait_s.append(math.nan if wait is None or p.get("stale") else wait)
        is_open = bool(p.get("open"))
        ld.is_open.append(is_open)
        ld.default_states += int(p.get("open_source") == "default")
        rate = _num(p.get("service_rate_per_min"))
        if is_open and rate and rate > 0 and p.get("service_rate_source", "observed") == "observed":
            ld.service_times_s.append((ts, 60.0 / rate))


def _read_waits(reader: Any, data: ReportData, lanes: dict[str, LaneDay]) -> None:
    """Measured waits of the customers served in the period."""
    for p in reader.payloads("storesense.event.queue_wait", start_s=data.start_s - _SLACK_S,
                             end_s=data.end_s + _SLACK_S):
        lid = p.get("lane_id")
        wait = _num(p.get("wait_s"))
        served = _num(p.get("served_s"))
        if not isinstance(lid, str) or wait is None:
            continue
        if p.get("outcome", "served") == "served" and served is not None and data.start_s <= served < data.end_s:
            _lane(lanes, lid).waits.append((served, wait))


def _read_footfall_and_sla(reader: Any, data: ReportData) -> set[str]:
    """Footfall per hour and greeting/assist SLA per hour; the entrance zones seen in the events.

    Footfall: ``entry`` events (one per person walking in); histories written before that event
    existed fall back to greeting outcomes (also exactly one per customer who walked in)."""
    start_s, end_s = data.start_s - _SLACK_S, data.end_s + _SLACK_S
    entrance_zones: set[str] = set()
    sla: dict[str, dict[float, list[int]]] = {"greeting": defaultdict(lambda: [0, 0]), "assist": defaultdict(lambda: [0, 0])}
    entries = reader.payloads("storesense.event.entry", start_s=start_s, end_s=end_s)
    for p in entries:
        entered_s = _num(p.get("entered_s"))
        h = data.hour_of(entered_s) if entered_s is not None else None
        if h is not None:
            data.footfall[h] = data.footfall.get(h, 0) + 1
            entrance_zones.add(str(p.get("zone_id")))
    for kind in ("greeting", "assist"):
        for p in reader.payloads(f"storesense.event.{kind}", start_s=start_s, end_s=end_s):
            started = _num(p.get("started_s"))
            h = data.hour_of(started) if started is not None else None
            if h is None:
                continue
            cell = sla[kind][h]
            cell[0] += 1
            cell[1] += int(bool(p.get("within_sla")))
            sla_s = _num(p.get("sla_s"))
            if sla_s is not None:
                data.sla_target_s[kind] = sla_s
            if kind == "greeting" and not entries:
                data.footfall[h] = data.footfall.get(h, 0) + 1
                entrance_zones.add(str(p.get("zone_id")))
    data.sla = {k: {h: (v[0], v[1]) for h, v in per.items()} for k, per in sla.items() if per}
    return entrance_zones


def _read_dwell(reader: Any, data: ReportData, zone_cfg: dict[str, Any]) -> list[ZoneDwell]:
    """Visits (dwell times, stops) per dwell zone, by the time they ended."""
    dwell: dict[str, ZoneDwell] = {}
    for zid, z in zone_cfg.items():
        if z.kind == "dwell":
            dwell[zid] = ZoneDwell(zid, z.label or zid, z.kind)
    for p in reader.payloads("storesense.event.visit", start_s=data.start_s - _SLACK_S, end_s=data.end_s + _SLACK_S):
        zid = p.get("zone_id")
        d = _num(p.get("dwell_s"))
        exit_s = _num(p.get("exit_s"))
        if not isinstance(zid, str) or d is None or exit_s is None or not (data.start_s <= exit_s < data.end_s):
            continue
        zd = dwell.setdefault(zid, ZoneDwell(zid, zid, "dwell"))
        zd.dwell_s.append(d)
        zd.stops += int(bool(p.get("stop")))
    return list(dwell.values())


def _greeters_present(reader: Any, data: ReportData, door_zones: set[str]) -> dict[float, float]:
    """Staff at the door (in the entrance zone or at the greeters' counter), averaged per hour: per
    camera and instant the staff of those zones are summed, then the instants are averaged.

    Counting the entrance zone alone (before) saw greeters only while they greeted: 0.1-0.3
    "present" against 2 on duty, and the report flagged every hour understaffed."""
    at: dict[tuple[Any, float], float] = defaultdict(float)
    for p in reader.payloads("storesense.zone_state", start_s=data.start_s, end_s=data.end_s):
        ts = _num(p.get("timestamp_s"))
        if p.get("zone_id") not in door_zones or ts is None:
            continue
        at[(p.get("camera_id"), ts)] += float(p.get("staff_count") or (1 if p.get("staff_present") else 0))
    present_sum: dict[float, float] = defaultdict(float)
    present_n: dict[float, int] = defaultdict(int)
    for (_cam, ts), n in at.items():
        h = data.hour_of(ts)
        if h is not None:
            present_sum[h] += n
            present_n[h] += 1
    return {h: present_sum[h] / present_n[h] for h in present_n}


def write_report(data: ReportData, out_path: str | Path) -> Path:
    """Write the HTML atomically (a half-written report never replaces a good one)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(out)
    return out


# -------------------------------------------------------------------------------------------
# heatmaps


@dataclass(frozen=True)
class HeatmapResult:
    camera_id: str
    path: Path
    hours: int
    total_person_s: float
    suppressed_cells: int
    units: str
    reference: bool


def privacy_blur(image_bgr: np.ndarray) -> np.ndarray:
    """Soften the reference frame so faces are unrecognisable while shelves and aisles stay
    readable: the background is there to orient the reader, not to show who was in the shop."""
    import cv2

    h, w = image_bgr.shape[:2]
    sigma = max(4.0, w / 160.0)
    blurred = cv2.GaussianBlur(image_bgr, (0, 0), sigma)
    grey = cv2.cvtColor(cv2.cvtColor(blurred, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return np.asarray(cv2.addWeighted(blurred, 0.45, grey, 0.55, 0), dtype=np.uint8)


def render_camera_heatmap(
    reader: Any,
    cfg: Any,
    camera_id: str,
    start_s: float,
    end_s: float,
    out_path: str | Path,
    *,
    sharp_reference: bool = False,
    min_tracks: int | None = None,
) -> HeatmapResult | None:
    """Sum the hourly ``storesense.heatmap/1`` messages of one camera whose hour starts in
    [start_s, end_s) and draw them over the camera's reference frame (and, when calibrated, on
    the floor plane in metres). None when the period has no heatmap data."""
    import cv2

    from mqtt_bridge.topics import Topics
    from zones.heatmap import heatmap_from_payloads, render_heatmap_png

    cam = cfg.camera(camera_id)
    topic = Topics(cfg.store.id, cfg.mqtt.prefix).camera_heatmap(camera_id)
    payloads = [
        p
        for p in reader.payloads("storesense.heatmap", topic=topic, start_s=start_s - 7200.0, end_s=end_s + 7200.0)
        if isinstance(p.get("hour_start_s"), int | float) and start_s <= float(p["hour_start_s"]) < end_s
    ]
    if not payloads:
        return None
    k = int(min_tracks if min_tracks is not None else cfg.analytics.heatmap.min_tracks_per_cell)
    array, grid = heatmap_from_payloads(payloads, min_tracks=k)
    from calibration.homography import Calibration

    calibration = Calibration.for_camera(cfg, camera_id)
    ref_path = cfg.data_path("reference", f"{camera_id}.jpg")
    reference = cv2.imread(str(ref_path)) if ref_path.exists() else None
    if reference is not None and not sharp_reference:
        reference = privacy_blur(reference)
    period = period_text(start_s, end_s, ZoneInfo(cfg.store.timezone))
    title = f"{bi('热力图', 'Heatmap')} · {camera_id} · {period} ({len(payloads)} h)"
    import matplotlib.pyplot as plt

    with plt.rc_context(plot_style()):
        render_heatmap_png(array, grid, out_path, reference_bgr=reference, calibration=calibration,
                           zones=list(cam.zones), title=title)
    return HeatmapResult(
        camera_id=camera_id,
        path=Path(out_path),
        hours=len(payloads),
        total_person_s=float(sum(float(p.get("total_person_s") or 0.0) for p in payloads)),
        suppressed_cells=int(sum(int(p.get("suppressed_cells") or 0) for p in payloads)),
        units=grid.units,
        reference=reference is not None,
    )


def trim_png(png: bytes, pad_px: int = 12) -> bytes:
    """Crop the white margins of a fixed-size figure so the report shows the map, not paper."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return png
    ink = np.argwhere(img.min(axis=2) < 245)
    if ink.size == 0:
        return png
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0)
    h, w = img.shape[:2]
    crop = img[max(0, y0 - pad_px): min(h, y1 + pad_px + 1), max(0, x0 - pad_px): min(w, x1 + pad_px + 1)]
    ok, buf = cv2.imencode(".png", crop)
    return bytes(buf.tobytes()) if ok else png


def person_time_text(person_s: float) -> str:
    """Person-time in the unit that keeps it readable: a quiet camera's 0.04 person-hours would
    read "0.0" (as it did); 2 person-minutes says what happened."""
    if person_s >= 360.0:
        return f"{person_s / 3600.0:.1f} {bi('人·小时', 'person-hours')}"
    if person_s >= 60.0:
        return f"{person_s / 60.0:.0f} {bi('人·分钟', 'person-minutes')}"
    return f"{person_s:.0f} {bi('人·秒', 'person-seconds')}"


def add_heatmaps(data: ReportData, reader: Any, cfg: Any, *, sharp_reference: bool = False) -> None:
    """Render every camera's heatmap for the report period into ``data.heatmaps``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="storesense-report-") as tmp:
        for cam in cfg.cameras:
            out = Path(tmp) / f"{cam.id}.png"
            res = render_camera_heatmap(reader, cfg, cam.id, data.start_s, data.end_s, out, sharp_reference=sharp_reference)
            if res is None:
                continue
            caption = (
                f"{cam.id}: {person_time_text(res.total_person_s)} · {res.hours} h · "
                + (bi("地面坐标（米）", "floor plane in metres") if res.units == "m" else bi("图像坐标", "image grid"))
                + (f" · {res.suppressed_cells} {bi('个稀疏格已隐藏', 'sparse cells hidden (privacy)')}" if res.suppressed_cells else "")
            )
            data.heatmaps.append(HeatmapImage(cam.id, caption, trim_png(out.read_bytes())))
