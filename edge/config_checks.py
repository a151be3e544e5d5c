"""Store-config checks that pydantic's per-field validation cannot make, run in the same pass.

pydantic stops at the first failing layer: a model validator never runs when one of its fields
failed, so cross-references (a zone's ``service_zone``, an alert's ``lane``) and environment
facts (is ``data_dir`` a usable folder, does the time zone exist) would only surface after the
operator fixed the schema errors, one round trip per layer. These checks read the raw YAML
mapping instead, defensively (any value may have the wrong type), so ``validate-config`` lists
schema, cross-reference and environment problems together, each at its own line.

Ids become MQTT topic levels, and topic levels are lowercased (:func:`mqtt_bridge.topics.topic_id`
rules), so ids that differ only in case would overwrite each other's retained topics: they are
compared case-insensitively here.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Lines = dict[tuple[Any, ...], int]
RawCheck = Callable[[dict[str, Any], "Where"], None]
MAX_SHOWN_CHARS = 60


def short(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr`` of a value from the file, cut so a 1 MB string is never echoed back in full."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or a list of the valid ids, or nothing."""
    options = sorted({str(c) for c in choices})
    if not isinstance(value, str) or not options or len(value) > 200:  # difflib is quadratic
        return ""
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    if not close:
        close = [o for o in options if o.lower() == value.lower()]
    if close:
        return f" (did you mean {close[0]!r}?)"
    if len(options) <= 12:
        return f"; valid: {', '.join(options)}"
    return ""


class Where:
    """Collects problems as ``file:line: path: message``, the line looked up from the key path."""

    def __init__(self, filename: str, lines: Lines) -> None:
        self.filename = filename
        self.lines = lines
        self.problems: list[str] = []

    def line(self, path: tuple[Any, ...]) -> int | str:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return self.lines[path[:cut]]
        return "?"

    def add(self, path: tuple[Any, ...], message: str) -> None:
        loc = ""
        for part in path:
            loc += f"[{part}]" if isinstance(part, int) else ("." if loc else "") + str(part)
        self.problems.append(f"{self.filename}:{self.line(path)}: {loc or '(top level)'}: {message}")


def _items(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    seq = data.get(key) if isinstance(data, dict) else None
    if not isinstance(seq, list):
        return []
    return [(i, item) for i, item in enumerate(seq) if isinstance(item, dict)]


def _fold(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


def _unique_ids(items: list[tuple[tuple[Any, ...], Any]], what: str, where: Where) -> None:
    """Ids equal after lowercasing name the same topic: report every repeat at its own line."""
    first: dict[str, tuple[tuple[Any, ...], Any]] = {}
    for path, value in items:
        key = _fold(value)
        if key is None:
            continue
        if key in first:
            other_path, other = first[key]
            same = "the same id" if other == value else f"the same id as {other!r} once lowercased (MQTT topics)"
            where.add(path, f"{what} {short(value)} is {same} at line {where.line(other_path)}; ids must be unique")
        else:
            first[key] = (path, value)


def check_ids(data: dict[str, Any], where: Where) -> None:
    cams = _items(data, "cameras")
    _unique_ids([(("cameras", i, "id"), c.get("id")) for i, c in cams], "camera id", where)
    zones = [(("cameras", i, "zones", j, "id"), z.get("id")) for i, c in cams for j, z in _items(c, "zones")]
    # zone state is published on {base}/zone/{id}/state: store-wide, not per camera
    _unique_ids(zones, "zone id", where)
    alerts = _items(data.get("analytics"), "alerts")
    _unique_ids([(("analytics", "alerts", k, "id"), a.get("id")) for k, a in alerts], "alert id", where)
    lanes: dict[str, tuple[tuple[Any, ...], str]] = {}
    for i, c in cams:
        for j, z in _items(c, "zones"):
            lane = z.get("lane") if z.get("lane") is not None else z.get("id")
            if z.get("kind") not in ("queue", "service") or not isinstance(lane, str):
                continue
            path = ("cameras", i, "zones", j, "lane" if "lane" in z else "id")
            seen = lanes.setdefault(lane.lower(), (path, lane))
            if seen[1] != lane:
                where.add(path, f"lane {short(lane)} differs from lane {seen[1]!r} (line {where.line(seen[0])}) "
                          "only in case; they would share one MQTT topic: spell them the same or rename one")


def lane_ids(data: dict[str, Any]) -> set[str]:
    """Lanes as the analytics build them: one per queue zone (its ``lane``, else its id), of
    enabled cameras only."""
    out = set()
    for _i, c in _items(data, "cameras"):
        if c.get("enabled", True) is False:
            continue
        for _j, z in _items(c, "zones"):
            lane = z.get("lane") if z.get("lane") is not None else z.get("id")
            if z.get("kind") == "queue" and isinstance(lane, str):
                out.add(lane)
    return out


def check_lanes(data: dict[str, Any], where: Where) -> None:
    """A lane has exactly one queue zone; a service zone's lane must have one."""
    first: dict[str, tuple[Any, ...]] = {}
    for i, c in _items(data, "cameras"):
        for j, z in _items(c, "zones"):
            lane = z.get("lane") if z.get("lane") is not None else z.get("id")
            if z.get("kind") != "queue" or not isinstance(lane, str):
                continue
            path = ("cameras", i, "zones", j, "lane" if "lane" in z else "id")
            if lane in first:
                where.add(path, f"lane {short(lane)} already has a queue zone (line {where.line(first[lane])}); "
                          "give each queue zone its own 'lane' id")
            first.setdefault(lane, path)


def check_zone_refs(data: dict[str, Any], where: Where) -> None:
    for i, c in _items(data, "cameras"):
        zones = _items(c, "zones")
        kinds: dict[str, Any] = {z["id"]: z.get("kind") for _j, z in zones if isinstance(z.get("id"), str)}
        for j, z in zones:
            svc = z.get("service_zone")
            path = ("cameras", i, "zones", j)
            if isinstance(svc, str):
                if svc not in kinds:
                    services = [k for k, v in kinds.items() if v == "service"] or list(kinds)
                    where.add((*path, "service_zone"), f"service_zone {short(svc)} is not a zone of camera "
                              f"{c.get('id')!r}{did_you_mean(svc, services)}")
                elif kinds[svc] != "service":
                    where.add((*path, "service_zone"),
                              f"service_zone {svc!r} has kind {kinds[svc]!r}, expected 'service'")
            wait = z.get("waiting_zone")
            if isinstance(wait, str) and (kinds.get(wait) != "dwell" or wait == z.get("id")):
                dwell = [k for k, v in kinds.items() if v == "dwell" and k != z.get("id")]
                where.add((*path, "waiting_zone"), f"waiting_zone {short(wait)} must be another dwell zone of camera "
                          f"{c.get('id')!r}{did_you_mean(wait, dwell) if dwell else '; it has no other dwell zone'}")
            if z.get("units") == "m" and c.get("calibration") is None:
                where.add((*path, "units"), f"zone {z.get('id')!r} is in floor metres (units: m) but camera "
                          f"{c.get('id')!r} has no calibration")


def check_alert_refs(data: dict[str, Any], where: Where) -> None:
    lanes = lane_ids(data)
    capacity_zones = [z["id"] for _i, c in _items(data, "cameras") for _j, z in _items(c, "zones")
                      if z.get("capacity") is not None and isinstance(z.get("id"), str)]
    for k, a in _items(data.get("analytics"), "alerts"):
        zone = a.get("zone", "*")
        if isinstance(zone, str) and zone != "*" and zone not in capacity_zones:
            hint = did_you_mean(zone, capacity_zones) if capacity_zones else "; no zone has a capacity"
            where.add(("analytics", "alerts", k, "zone"), f"alert on zone {short(zone)}, which is not a zone with "
                      f"a capacity{hint}")
        lane = a.get("lane", "*")
        if isinstance(lane, str) and lane != "*" and lane not in lanes:
            hint = did_you_mean(lane, lanes) if lanes else "; this store has no queue/service zones, so no lanes"
            where.add(("analytics", "alerts", k, "lane"), f"alert on lane {short(lane)}, which does not exist{hint} "
                      "(use '*' for every lane)")


def check_display_zones(data: dict[str, Any], where: Where) -> None:
    """``display.capacity_zones`` name zones with a capacity (the card shows free places)."""
    capacity_zones = [z["id"] for _i, c in _items(data, "cameras") for _j, z in _items(c, "zones")
                      if z.get("capacity") is not None and isinstance(z.get("id"), str)]
    display = data.get("display")
    names = display.get("capacity_zones") if isinstance(display, dict) else None
    for k, zone in enumerate(names if isinstance(names, list) else []):
        if isinstance(zone, str) and zone not in capacity_zones:
            hint = did_you_mean(zone, capacity_zones) if capacity_zones else "; no zone has a capacity"
            where.add(("display", "capacity_zones", k), f"{short(zone)} is not a zone with a capacity{hint}")


def _folder_problem(p: Path) -> str | None:
    """Why folder ``p`` cannot be created (or written), or None: the nearest existing ancestor
    must be a folder in which a file can really be created (root passes os.access on /proc)."""
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"cannot be a folder: {probe} is a file"
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".storesense-probe-")
    except OSError as exc:
        return f"cannot create files in {probe}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(tmp)
    return None


def check_data_dir(data: dict[str, Any], where: Where, base_dir: Path | None) -> None:
    """``data_dir`` must be a folder we can create and write: the outbox lives there; so must the
    folders of ``mqtt.outbox_path`` and ``history.path`` (relative to it, or absolute)."""
    value = data.get("data_dir", "storesense-data")
    if not isinstance(value, str) or not value.strip():
        return
    p = Path(value).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    problem = _folder_problem(p)
    if problem is not None:
        where.add(("data_dir",), f"{short(value)} {problem}")
        return
    mqtt, history = data.get("mqtt"), data.get("history")
    files = [(("mqtt", "outbox_path"), "outbox.db", mqtt.get("outbox_path") if isinstance(mqtt, dict) else None),
             (("history", "path"), "history.db", history.get("path") if isinstance(history, dict) else None)]
    for key, default, name in files:
        if not isinstance(name, str) or not name.strip():
            continue
        f = p / Path(name).expanduser()  # an absolute name replaces data_dir
        if f.is_dir():
            where.add(key, f"{short(name)} is a folder; give a file name (e.g. {default})")
            continue
        problem = _folder_problem(f.parent)
        if problem is not None:
            where.add(key, f"{short(name)}: its folder {problem}")


def check_files(data: dict[str, Any], where: Where, base_dir: Path | None) -> None:
    """Files the runtime opens at start: a missing one is a config error, not a crash at run time."""

    def exists(value: Any) -> bool:
        p = Path(str(value)).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        return p.is_file()

    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str) and not exists(model["path"]):
        where.add(("model", "path"), f"model file {short(model['path'])} not found")
    for i, c in _items(data, "cameras"):
        cal = c.get("calibration")
        if isinstance(cal, dict) and isinstance(cal.get("file"), str) and not exists(cal["file"]):
            where.add(("cameras", i, "calibration", "file"), f"calibration file {short(cal['file'])} not found")
    staff = data.get("staff")
    onnx = staff.get("onnx") if isinstance(staff, dict) else None
    if isinstance(onnx, dict) and isinstance(onnx.get("path"), str) and not exists(onnx["path"]):
        where.add(("staff", "onnx", "path"), f"classifier file {short(onnx['path'])} not found")
    mqtt = data.get("mqtt")
    if isinstance(mqtt, dict) and mqtt.get("enabled", True) is not False:
        env = mqtt.get("password_env")
        if isinstance(env, str) and not os.environ.get(env):
            where.add(("mqtt", "password_env"), f"environment variable {short(env)} is not set or empty")
        pw_file = mqtt.get("password_file")
        if isinstance(pw_file, str) and not exists(pw_file):
            where.add(("mqtt", "password_file"), f"password file {short(pw_file)} not found")
        tls = mqtt.get("tls")
        for name in ("ca_file", "cert_file", "key_file"):
            value = tls.get(name) if isinstance(tls, dict) else None
            if isinstance(value, str) and not exists(value):
                where.add(("mqtt", "tls", name), f"file {short(value)} not found")


def raw_problems(
    data: dict[str, Any], filename: str, lines: Lines, base_dir: Path | None, extra: Iterable[RawCheck] = ()
) -> list[str]:
    """Cross-reference and environment problems of a raw config mapping, each at its line."""
    where = Where(filename, lines)
    check_ids(data, where)
    check_zone_refs(data, where)
    check_lanes(data, where)
    check_alert_refs(data, where)
    check_display_zones(data, where)
    check_data_dir(data, where, base_dir)
    check_files(data, where, base_dir)
    for check in extra:
        check(data, where)
    return where.problems
