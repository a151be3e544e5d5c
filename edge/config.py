"""Store configuration: one YAML file per store, validated with errors that name the line.

The shape follows Frigate: pydantic models with ``extra="forbid"`` (a typo is an error, not an
ignored setting) and every error reported as ``file:line: field.path: what was expected,
what was found``. Relative paths in the file are resolved against the file's directory, and
``${VAR}`` / ``${VAR:-default}`` are expanded in strings so one file works on several boxes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calibration.config import CalibrationConfig
from mqtt_bridge.config import DisplayConfig, HistoryConfig, MqttConfig
from zones.config import AnalyticsConfig, StaffConfig, ZoneConfig

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreInfo(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    timezone: str = Field(default="UTC", description="IANA zone for hourly reports, e.g. Asia/Shanghai")


class ModelConfig(Strict):
    """Which detector to run. ``name`` picks a file from the model registry (models/registry.py);
    ``path`` points at any exported file and then ``layout`` says how to read its output.

    The default is YOLOX-Nano (Apache-2.0). YOLOv8n/YOLO11n are AGPL-3.0: fine for evaluation,
    a closed commercial deployment needs an Ultralytics licence.
    """

    name: str | None = "yolox-nano-416"
    path: str | None = None
    layout: Literal["yolov8", "yolox"] | None = None
    input_size_px: int | None = Field(default=None, ge=32, le=4096)
    # low on purpose: ByteTrack's second stage keeps partly hidden people alive with 0.1-0.5 scores;
    # only confirmed tracks (tracker.new_track_threshold) ever reach the analytics
    confidence_threshold: float = Field(default=0.1, gt=0.0, lt=1.0)
    nms_iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    classes: list[int] = Field(default_factory=lambda: [0], min_length=1)
    threads: int = Field(default=2, ge=1, le=64)

    @model_validator(mode="after")
    def _name_or_path(self) -> ModelConfig:
        if self.name is None and self.path is None:
            raise ValueError("give a model 'name' from the registry or a 'path' to an .onnx file")
        return self


class TrackerConfig(Strict):
    """ByteTrack knobs. Lifetimes are in seconds so the tracker behaves the same at any fps."""

    high_score_threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="first-stage detections")
    low_score_threshold: float = Field(default=0.1, gt=0.0, lt=1.0, description="second-stage floor")
    new_track_threshold: float = Field(default=0.6, gt=0.0, le=1.0, description="score to start a track")
    match_iou_threshold: float = Field(default=0.2, ge=0.0, lt=1.0, description="min IoU, first stage")
    low_match_iou_threshold: float = Field(default=0.5, ge=0.0, lt=1.0, description="min IoU, second stage")
    confirm_after_s: float = Field(default=0.2, ge=0.0, le=10.0, description="tentative until seen this long")
    max_lost_s: float = Field(default=2.0, gt=0.0, le=60.0, description="keep a lost track this long")
    kalman_accel_std: float = Field(
        default=1.0, gt=0.0, le=100.0, description="how fast speed may change, box heights/s per sqrt(s)"
    )
    kalman_measurement_std: float = Field(
        default=0.05, gt=0.0, le=1.0, description="detector box jitter, fraction of box height"
    )

    @model_validator(mode="after")
    def _order(self) -> TrackerConfig:
        if self.low_score_threshold >= self.high_score_threshold:
            raise ValueError("low_score_threshold must be below high_score_threshold")
        return self


class CameraConfig(Strict):
    id: str = Field(pattern=ID_PATTERN)
    source: str | int = Field(description="file path, rtsp://, http(s):// URL, or a USB index")
    fps: float = Field(default=5.0, gt=0.0, le=60.0, description="analysis frames per second")
    source_fps: float | None = Field(
        default=None, gt=0.0, le=240.0, description="override a wrong container frame rate (files)"
    )
    enabled: bool = True
    reconnect_max_backoff_s: float = Field(default=30.0, gt=0.0, le=600.0)
    calibration: CalibrationConfig | None = None
    zones: list[ZoneConfig] = Field(default_factory=list)

    @field_validator("source")
    @classmethod
    def _source_ok(cls, v: str | int) -> str | int:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("a USB camera index must be 0 or more")
            return v
        if not v.strip():
            raise ValueError("source must not be empty")
        return v

    @model_validator(mode="after")
    def _zones_ok(self) -> CameraConfig:
        ids = [z.id for z in self.zones]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"zone ids must be unique within a camera; repeated: {sorted(dup)}")
        by_id = {z.id: z for z in self.zones}
        for z in self.zones:
            if z.service_zone is not None:
                target = by_id.get(z.service_zone)
                if target is None:
                    raise ValueError(f"zone {z.id!r}: service_zone {z.service_zone!r} is not a zone of this camera")
                if target.kind != "service":
                    raise ValueError(f"zone {z.id!r}: service_zone {z.service_zone!r} has kind {target.kind!r}, expected 'service'")
            if z.units == "m" and self.calibration is None:
                raise ValueError(f"zone {z.id!r} is in floor metres (units: m) but camera {self.id!r} has no calibration")
        return self

    @property
    def is_live(self) -> bool:
        return isinstance(self.source, int) or bool(re.match(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", self.source))


class MetricsConfig(Strict):
    """Prometheus ``/metrics`` of `storesense run`: per-camera frames, latency and state, and the
    box's outbox, publishing and disk. Loopback by default: scrape it from a Prometheus on the box,
    or set ``host: 0.0.0.0`` behind the store's firewall."""

    enabled: bool = Field(default=True, description="serve /metrics while `storesense run` runs")
    host: str = Field(default="127.0.0.1", description="listen address; 0.0.0.0 exposes it to the network")
    port: int = Field(default=9464, ge=0, le=65535, description="listen port; 0 picks a free one (tests)")


class StoreConfig(Strict):
    version: Literal[1]
    store: StoreInfo
    model: ModelConfig = Field(default_factory=ModelConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    cameras: list[CameraConfig] = Field(min_length=1)
    staff: StaffConfig = Field(default_factory=StaffConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    display: DisplayConfig = Field(default_factory=DisplayConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    data_dir: str = Field(
        default="storesense-data",
        description="local folder (relative to this file) for the outbox, history, heatmaps and reference "
        "frames; none of it leaves the box except through MQTT metrics",
    )
    # where the file came from; set by load_config, not by the user
    source_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _cameras_unique(self) -> StoreConfig:
        ids = [c.id for c in self.cameras]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"camera ids must be unique; repeated: {sorted(dup)}")
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(f"no camera {camera_id!r} in the config; cameras: {[c.id for c in self.cameras]}")

    def data_path(self, *parts: str) -> Path:
        """A path inside ``data_dir`` (created on demand)."""
        base = self.resolve_path(self.data_dir)
        base.mkdir(parents=True, exist_ok=True)
        return base.joinpath(*parts)

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(value).expanduser()
        if p.is_absolute() or self.source_path is None:
            return p
        return (self.source_path.parent / p).resolve()


class ConfigError(Exception):
    """A config problem, already phrased for the operator: file, line, field, expected, found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------------------------------------
# loading

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            problems.append(f"{where}: environment variable ${{{name}}} is not set and has no default")
            return m.group(0)

        return _ENV_RE.sub(sub, value)
    if isinstance(value, list):
        return [_expand_env(v, where, problems) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v, where, problems) for k, v in value.items()}
    return value


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Map every key path to its 1-based line, so validation errors can point at it."""
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), out)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)


def _format_loc(loc: tuple[Any, ...]) -> str:
    s = ""
    for part in loc:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += ("." if s else "") + str(part)
    return s or "(top level)"


def _describe_error(err: Any) -> str:
    etype = err["type"]
    found = err.get("input")
    found_s = repr(found) if not isinstance(found, dict | list) else type(found).__name__
    if etype == "extra_forbidden":
        return "unknown key (not part of the config; check the spelling)"
    if etype == "missing":
        return "required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if etype in {"value_error", "assertion_error"}:
        return msg
    if msg.startswith("Input should be "):
        rest = msg.removeprefix("Input should be ")
        if not rest.startswith(("a ", "an ", "valid", "'")):
            rest = "a value " + rest
        msg = rest
    return f"expected {msg[0].lower() + msg[1:]}; found {found_s}"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds union member names ('str', 'int', 'function-after[...]') into locations
    return tuple(p for p in loc if isinstance(p, int) or not (p in {"str", "int", "float"} or "[" in str(p)))


def validation_problems(exc: ValidationError, filename: str, lines: dict[tuple[Any, ...], int]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        text = f"{filename}:{line if line is not None else '?'}: {_format_loc(loc)}: {_describe_error(err)}"
        if text not in seen:
            seen.add(text)
            problems.append(text)
    return problems


def load_yaml_mapping(text: str, filename: str, expected: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """YAML text → (mapping, line of every key path). Errors are ConfigError with file:line.

    Shared by every YAML file the operator writes (store config, calibration file), so they all
    report problems the same way.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{filename}:{line}: not valid YAML: {problem}"]) from None
    if node is None or not isinstance(data, dict):
        raise ConfigError([f"{filename}:1: expected a mapping with {expected}; found {type(data).__name__}"])
    lines: dict[tuple[Any, ...], int] = {}
    _line_index(node, (), lines)
    return data, lines


def parse_config(text: str, filename: str = "<config>", source_path: Path | None = None) -> StoreConfig:
    """Parse and validate YAML text; raise :class:`ConfigError` with operator-readable problems."""
    data, lines = load_yaml_mapping(text, filename, "version, store and cameras")
    problems: list[str] = []
    data = _expand_env(data, filename, problems)
    if problems:
        raise ConfigError(problems)
    try:
        cfg = StoreConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, filename, lines)) from None
    cfg.source_path = source_path
    return cfg


def load_config(path: str | Path) -> StoreConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read config file: {exc}"]) from None
    return parse_config(text, str(p), p.resolve())
