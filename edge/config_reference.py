"""The store-config reference (docs/config.md) and JSON Schema, generated from the pydantic models.

Installers pieced keys together from the README, the demo config and the operations guide; this
reads the models themselves, so a key, default or range cannot drift from what
``validate-config`` accepts (tests/test_config_reference.py regenerates and compares).

Meaning comes from each field's ``description``. Fields without one take it from
:data:`MEANINGS` below (keys are ``Model.field`` with shell-style wildcards, so per-kind zone
models match ``*Zone*.field``); the test fails on a field with neither, and on a stale entry.
Moving a sentence into its ``Field(description=...)`` is always the better fix.

    python -m edge.config_reference --write     # regenerate docs/config.md + docs/store-config.schema.json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from edge.config import StoreConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
MARKDOWN_PATH = DOCS / "config.md"
SCHEMA_PATH = DOCS / "store-config.schema.json"
SCHEMA_ID = "https://storesense.invalid/schemas/store-config.schema.json"
HIDDEN = {"StoreConfig.source_path"}  # set by the loader, not by the operator

MEANINGS: dict[str, str] = {
    "StoreConfig.version": "config format version; always 1",
    "StoreConfig.store": "the store: id, name, time zone",
    "StoreConfig.model": "which person detector runs",
    "StoreConfig.tracker": "ByteTrack settings (docs/tracker.md)",
    "StoreConfig.cameras": "every camera of the store with its zones",
    "StoreConfig.staff": "how staff are told apart from customers",
    "StoreConfig.analytics": "queue model, heatmaps, alert rules",
    "StoreConfig.mqtt": "the broker link metrics are published on",
    "StoreConfig.display": "the checkout wait-time screen",
    "StoreConfig.history": "the on-box history database for reports",
    "StoreConfig.metrics": "Prometheus /metrics of `storesense run`",
    "StoreInfo.id": "store id; part of every MQTT topic",
    "StoreInfo.name": "store name shown on reports",
    "ModelConfig.name": "registry name (models/registry.py): yolox-nano-416 (Apache-2.0) or an AGPL-3.0 YOLOv8n/YOLO11n",
    "ModelConfig.path": "an exported .onnx file instead of a registry name; needs layout",
    "ModelConfig.layout": "how to read a custom model's output",
    "ModelConfig.input_size_px": "network input side; default: the registry's or the file's",
    "ModelConfig.confidence_threshold": "lowest detector score kept; low on purpose, the tracker filters",
    "ModelConfig.nms_iou_threshold": "boxes overlapping more than this are one detection",
    "ModelConfig.classes": "detector class ids kept (0 = person in COCO)",
    "ModelConfig.threads": "ONNX Runtime intra-op threads (shared by every camera)",
    "CameraConfig.id": "camera id; part of MQTT topics",
    "CameraConfig.enabled": "false: keep the camera in the file but do not run it",
    "CameraConfig.reconnect_max_backoff_s": "longest wait between reconnection attempts of a live stream",
    "CameraConfig.calibration": "image px to floor m pairs (optional; needed for distances)",
    "CameraConfig.zones": "the camera's zones",
    "CalibrationConfig.image_points_px": "where floor marks are in the image",
    "CalibrationConfig.floor_points_m": "the same marks on the floor, same order",
    "CalibrationConfig.file": "a YAML file with the two point lists instead (relative to this file)",
    "CalibrationConfig.max_reprojection_error_m": "validate-config refuses a calibration worse than this",
    "*Zone*.id": "zone id, unique within the camera",
    "*Zone*.kind": "queue, service (till), dwell, entrance or staff_only",
    "*Zone*.polygon": "3 or more points, in `units`",
    "*Zone*.enter_after_s": "a person is in the zone after being inside this long",
    "*Zone*.leave_after_s": "and out of it after being outside this long",
    "*Zone*.stop_after_s": "dwell: a visit longer than this counts as a stop (attention)",
    "*Zone*.greet_radius_m": "a staff member this close counts as a greeting/approach",
    "HsvRange.lower": "lowest H, S, V (OpenCV scale: H 0-179, S and V 0-255)",
    "HsvRange.upper": "highest H, S, V",
    "UniformConfig.hsv_ranges": "uniform colours",
    "UniformConfig.min_pixel_fraction": "share of torso pixels in a range for one staff vote",
    "UniformConfig.staff_vote_fraction": "share of staff votes that makes a track staff",
    "StaffConfig.methods": "staff identification methods, combined",
    "StaffConfig.uniform": "settings of the uniform method",
    "StaffConfig.staff_only_zone": "settings of the staff_only_zone method",
    "StaffConfig.onnx": "settings of the onnx classifier method",
    "StaffOnlyConfig.min_time_s": "time in a staff_only zone that makes a track staff",
    "OnnxClassifierConfig.path": "the staff/customer classifier (.onnx)",
    "OnnxClassifierConfig.staff_class": "output index of the staff class",
    "OnnxClassifierConfig.input_size_px": "classifier input (width, height)",
    "OnnxClassifierConfig.min_votes": "frames classified before deciding",
    "OnnxClassifierConfig.staff_vote_fraction": "share of staff votes that makes a track staff",
    "AlertRule.id": "alert id (in the store state's active_alerts)",
    "AlertRule.metric": "what is compared with `above`",
    "AlertRule.above": "threshold, in the metric's unit",
    "AlertRule.for_s": "the metric must stay above the threshold this long",
    "AlertRule.message": "text for staff screens and apps",
    "AnalyticsConfig.state_interval_s": "live state is published at most this often",
    "AnalyticsConfig.queue": "queue and wait model",
    "AnalyticsConfig.heatmap": "heatmap grid and privacy",
    "AnalyticsConfig.alerts": "alert rules",
    "HeatmapConfig.cell_m": "grid cell on the floor (calibrated cameras)",
    "HeatmapConfig.cell_norm": "grid cell as a fraction of the image (uncalibrated cameras)",
    "QueueModelConfig.stale_after_s": "a lane with no fresh data this long is shown as stale",
    "QueueModelConfig.smoothing_s": "queue length smoothing window",
    "QueueModelConfig.default_service_time_s": "service time assumed before a lane has served anyone",
    "MqttConfig.enabled": "false: run without a broker (history and --events only)",
    "MqttConfig.host": "broker host",
    "MqttConfig.port": "broker port",
    "MqttConfig.prefix": "first topic level",
    "MqttConfig.device_id": "this box's id: client id and availability topic",
    "MqttConfig.keepalive_s": "MQTT keepalive; a dead link is noticed within 1.5x this",
    "MqttConfig.protocol": "MQTT version; 3.1.1 for old brokers (no message expiry)",
    "MqttConfig.username": "broker user",
    "MqttConfig.password_env": "environment variable holding the broker password",
    "MqttConfig.password_file": "file holding the broker password (e.g. a systemd credential)",
    "MqttConfig.tls": "TLS to the broker",
    "MqttConfig.outbox_max_messages": "durable events kept while the broker is away; oldest dropped beyond",
    "MqttConfig.reconnect_max_backoff_s": "longest wait between reconnection attempts",
    "TlsConfig.ca_file": "CA bundle that signed the broker's certificate",
    "TlsConfig.cert_file": "client certificate (mutual TLS)",
    "TlsConfig.key_file": "client key (mutual TLS)",
    "TlsConfig.insecure_skip_verify": "accept any broker certificate (testing only)",
    "DisplayConfig.host": "listen address of the display server",
    "DisplayConfig.port": "listen port of the display server",
    "DisplayConfig.languages": "languages shown on the screen, in order",
    "DisplayConfig.stale_after_s": "a lane whose data is older than this shows as unavailable",
    "DisplayConfig.title": "page title",
    "HistoryConfig.enabled": "keep metrics on the box for reports",
    "HistoryConfig.retention_days": "older history is deleted",
    "HistoryConfig.max_size_mb": "the oldest history is deleted beyond this size",
}

UNIT_SUFFIXES = [
    ("_per_min", "1/min"), ("_days", "days"), ("_mb", "MB"), ("_px", "px"), ("_m", "m"), ("_s", "s"),
    ("_norm", "fraction of the image"), ("_fraction", "fraction"), ("fps", "frames/s"),
]


@dataclass
class Row:
    key: str
    type: str
    default: str
    unit: str
    range: str
    meaning: str


@dataclass
class Section:
    path: str
    model: type[BaseModel]
    title: str


def meaning_of(model: type[BaseModel], name: str, info: FieldInfo) -> str | None:
    if info.description:
        return info.description
    qual = f"{model.__name__}.{name}"
    for pattern, text in MEANINGS.items():
        if fnmatch.fnmatchcase(qual, pattern):
            return text
    return None


def unit_of(name: str) -> str:
    for suffix, unit in UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return ""


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return tp, False


def type_name(tp: Any) -> str:
    tp, optional = _strip_optional(tp)
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return type_name(get_args(tp)[0])
    if origin is Literal:
        text = " \\| ".join(f"`{a}`" for a in get_args(tp))
    elif origin is list:
        inner = type_name(get_args(tp)[0])
        text = "list of sections (below)" if inner == "section" else f"list of {inner}"
    elif origin is tuple:
        text = "[" + ", ".join(type_name(a) for a in get_args(tp)) + "]"
    elif origin in (Union, types.UnionType):
        text = " or ".join(dict.fromkeys(type_name(a) for a in get_args(tp)))  # zone kinds: one "section"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        text = "section (below)"
    elif isinstance(tp, type):
        text = {"str": "text", "int": "integer", "float": "number", "bool": "true/false", "Path": "path"}.get(
            tp.__name__, tp.__name__)
    else:
        text = str(tp)
    return text + (" or null" if optional else "")


def range_of(info: FieldInfo) -> str:
    parts = []
    for m in info.metadata:
        if isinstance(m, at.Ge):
            parts.append(f"≥ {m.ge}")
        elif isinstance(m, at.Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, at.Le):
            parts.append(f"≤ {m.le}")
        elif isinstance(m, at.Lt):
            parts.append(f"< {m.lt}")
        elif isinstance(m, at.MinLen):
            parts.append(f"at least {m.min_length} item(s)")
        elif isinstance(m, at.MaxLen):
            parts.append(f"at most {m.max_length} item(s)")
        elif getattr(m, "pattern", None):
            parts.append("id: letters, digits, - and _ (up to 64)" if "{0,63}" in m.pattern else f"matches `{m.pattern}`")
    return ", ".join(parts)


def default_of(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if value is None:
        return "—"
    if value is PydanticUndefined:
        return ""
    return f"`{json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value}`"


def nested_models(tp: Any) -> list[type[BaseModel]]:
    """Config sections inside an annotation: Model, Model | None, list[Model], unions of models."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in get_args(tp):
        out.extend(nested_models(arg))
    return out


def _variant_title(model: type[BaseModel]) -> str:
    kind = model.model_fields.get("kind")
    if kind is not None and get_origin(kind.annotation) is Literal and len(get_args(kind.annotation)) == 1:
        return f" (kind: {get_args(kind.annotation)[0]})"
    return ""


def sections(model: type[BaseModel] = StoreConfig, path: str = "") -> Iterator[Section]:
    yield Section(path or "(top level)", model, model.__name__)
    for name, info in model.model_fields.items():
        if f"{model.__name__}.{name}" in HIDDEN:
            continue
        subs = nested_models(info.annotation)
        is_list = get_origin(_strip_optional(info.annotation)[0]) is list
        child = f"{path}.{name}" if path else name
        if is_list:
            child += "[]"
        for sub in subs:
            for s in sections(sub, child):
                if s.path == child and len(subs) > 1:
                    s.path += _variant_title(sub)
                yield s


def rows(model: type[BaseModel]) -> list[Row]:
    out = []
    for name, info in model.model_fields.items():
        if f"{model.__name__}.{name}" in HIDDEN:
            continue
        out.append(Row(name, type_name(info.annotation), default_of(info), unit_of(name), range_of(info),
                       meaning_of(model, name, info) or ""))
    return out


def undocumented() -> list[str]:
    """Fields with no meaning, and MEANINGS entries that match no field (both fail the test)."""
    missing, used = [], set()
    seen: set[type[BaseModel]] = set()
    for s in sections():
        if s.model in seen:
            continue
        seen.add(s.model)
        for name, info in s.model.model_fields.items():
            qual = f"{s.model.__name__}.{name}"
            if qual in HIDDEN:
                continue
            if not info.description:
                hits = [p for p in MEANINGS if fnmatch.fnmatchcase(qual, p)]
                used.update(hits)
                if not hits:
                    missing.append(f"{qual}: no description")
    return missing + [f"MEANINGS[{p!r}] matches no field" for p in MEANINGS if p not in used]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if "\\|" not in text else text.replace("\n", " ")


def render_markdown() -> str:
    lines = [
        "# Store config reference",
        "",
        "<!-- generated by `python -m edge.config_reference --write` from the pydantic models; do not edit -->",
        "",
        "One YAML file per store; check it with `storesense validate-config store.yaml`. Unknown keys are",
        "errors. Relative paths are relative to the file. `${VAR}` and `${VAR:-default}` are expanded in",
        "every value, so secrets and per-box values can stay in the environment (systemd: `STATE_DIRECTORY`,",
        "`CREDENTIALS_DIRECTORY`). Editors with the YAML language server check and complete the file with",
        "[store-config.schema.json](store-config.schema.json): put",
        "`# yaml-language-server: $schema=<path or URL of store-config.schema.json>` on its first line.",
        "",
        "Units come from the key's name: `_s` seconds, `_m` metres, `_px` pixels, `_mb` megabytes.",
        "",
    ]
    done: set[tuple[str, type[BaseModel]]] = set()
    for s in sections():
        if (s.path, s.model) in done:
            continue
        done.add((s.path, s.model))
        lines += [f"## `{s.path}`", ""]
        doc = (s.model.__doc__ or "").strip()
        if doc and not doc.startswith(("Usage docs", "!!! abstract", "A base class")):
            lines += [" ".join(doc.split("\n\n")[0].split()), ""]
        lines += ["| key | type | default | unit | range | meaning |", "|---|---|---|---|---|---|"]
        for r in rows(s.model):
            lines.append(f"| `{r.key}` | {_cell(r.type)} | {_cell(r.default)} | {r.unit} | {r.range} | {_cell(r.meaning)} |")
        lines.append("")
    return "\n".join(lines)


def render_schema() -> str:
    schema = StoreConfig.model_json_schema()
    schema["properties"].pop("source_path", None)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
              "title": "StoreSense store config", **{k: v for k, v in schema.items() if k != "title"}}
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="write docs/config.md and docs/store-config.schema.json")
    args = parser.parse_args(argv)
    problems = undocumented()
    if problems:
        print("\n".join(problems))
        return 1
    if args.write:
        MARKDOWN_PATH.write_text(render_markdown(), encoding="utf-8")
        SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
        print(f"wrote {MARKDOWN_PATH} and {SCHEMA_PATH}")
    else:
        print(render_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
