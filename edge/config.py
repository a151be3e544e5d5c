"""Store configuration: one YAML file per store, validated with errors that name the line.

The shape follows Frigate: pydantic models with ``extra="forbid"`` (a typo is an error, not an
ignored setting) and every error reported as ``file:line: field.path: what was expected,
what was found``. Relative paths in the file are resolved against the file's directory, and
``${VAR}`` / ``${VAR:-default}`` are expanded in strings so one file works on several boxes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from calibration.config import CalibrationConfig
from edge.config_base import BOOL_FOR_NUMBER, Strict
from edge.config_checks import RawCheck, Where, did_you_mean, raw_problems, short
from edge.errors import UserFacingError
from mqtt_bridge.config import DisplayConfig, HistoryConfig, MqttConfig
from zones.config import ZONE_MODELS, AnalyticsConfig, StaffConfig, ZoneConfig

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class StoreInfo(Strict):
    id: str = Field(pattern=ID_PATTERN, description="store id; part of every MQTT topic")
    name: str | None = Field(default=None, description="store name shown on reports")
    timezone: str = Field(default="UTC", description="IANA zone for hourly reports, e.g. Asia/Shanghai")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            from edge.config_checks import did_you_mean, short

            hint = did_you_mean(v, zoneinfo.available_timezones())
            raise ValueError(f"unknown time zone {short(v)}{hint}; use an IANA name such as Asia/Shanghai") from None
        return v


class ModelConfig(Strict):
    """Which detector to run. ``name`` picks a file from the model registry (models/registry.py);
    ``path`` points at any exported file and then ``layout`` says how to read its output.

    The default is YOLOX-Nano (Apache-2.0) with its input shaped per camera: the square 416x416
    file spends a quarter (4:3) to two fifths (16:9) of every run on letterbox padding, for the
    same pixels of the picture and the same tracks. YOLOv8n/YOLO11n are AGPL-3.0: fine for
    evaluation, a closed commercial deployment needs an Ultralytics licence.
    """

    name: str | None = Field(default="yolox-nano", description="registry name (models/registry.py): yolox-nano (Apache-2.0, input shaped per camera), yolox-nano-416 (square) or an AGPL-3.0 YOLOv8n/YOLO11n")
    path: str | None = Field(default=None, description="an exported .onnx file instead of a registry name; needs layout")
    layout: Literal["yolov8", "yolox"] | None = Field(default=None, description="how to read a custom model's output")
    input_size_px: int | None = Field(default=None, ge=32, le=4096, description="network input side; default: the registry's or the file's")
    input_width_px: int | None = Field(
        default=None,
        ge=64,
        le=4096,
        multiple_of=32,
        description="families (yolov8n, yolo11n, yolox-nano): the long side of the model input; each camera "
        "gets the smallest multiple-of-32 rectangle that holds its frame at this width (default: the "
        "family's, 640 for YOLOv8n/YOLO11n, 416 for YOLOX-Nano). Smaller is faster and misses far people",
    )
    precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="int8: a static int8 copy of the model, quantised once on this box's own frames and "
        "cached in data_dir (`storesense models quantize NAME`); about the accuracy of fp32, faster on CPUs with "
        "VNNI/AMX. A copy that finds under 80 % of fp32's people on frames kept out of calibration is refused "
        "(YOLOX-Nano's: use YOLOv8n/YOLO11n for int8)",
    )
    batch_cameras: bool = Field(
        default=False,
        description="cameras due in the same tick with the same input geometry share one batched "
        "session.run (the resizable graphs take any batch); measure with `storesense bench --cameras N "
        "--batch` first: on some CPUs one image per run is as fast per frame",
    )
    # low on purpose: ByteTrack's second stage keeps partly hidden people alive with 0.1-0.5 scores;
    # only confirmed tracks (tracker.new_track_threshold) ever reach the analytics
    confidence_threshold: float = Field(default=0.1, gt=0.0, lt=1.0, description="lowest detector score kept; low on purpose, the tracker filters")
    nms_iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0, description="boxes overlapping more than this are one detection")
    classes: list[int] = Field(default_factory=lambda: [0], min_length=1, description="detector class ids kept (0 = person in COCO)")
    threads: int = Field(default=2, ge=1, le=64, description="ONNX Runtime threads in all (shared by every camera)")
    parallel_frames: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="frames on the detector at once, each on threads/parallel_frames threads: more frames/s, "
        "more latency per frame. Default: `threads` when several cameras (or a file analysed as fast as "
        "possible) can have frames due together, 1 for a single live camera",
    )

    @model_validator(mode="after")
    def _name_or_path(self) -> ModelConfig:
        if self.name is None and self.path is None:
            raise ValueError("give a model 'name' from the registry or a 'path' to an .onnx file")
        return self


class TrackerConfig(Strict):
    """ByteTrack knobs. Lifetimes are in seconds so the tracker behaves the same at any fps."""

    # the score thresholds default to the model's (models/registry.py, measured per model by
    # scripts/score_calibration.py): YOLOX and YOLOv8/YOLO11 score the same people differently
    high_score_threshold: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="first-stage detections (default: the model's, docs/tracker.md)"
    )
    low_score_threshold: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="second-stage floor (default: the model's)"
    )
    new_track_threshold: float | None = Field(
        default=None, gt=0.0, le=1.0, description="score to start a track (default: the model's)"
    )
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
    occlusion_hold_s: float = Field(
        default=30.0,
        ge=0.0,
        le=600.0,
        description="a confirmed track lost while (nearly) standing still is held this long instead of "
        "max_lost_s: it keeps its zone membership while hidden and is re-associated when it reappears "
        "nearby; 0 turns it off (docs/tracker.md)",
    )
    appearance_min_similarity: float = Field(
        default=0.65,
        ge=0.0,
        lt=1.0,
        description="re-association after a gap (a lost or held track taking a detection again) also compares "
        "colour histograms of the upper and lower body: the better-looking candidate wins, and one below this "
        "similarity (Bhattacharyya coefficient, 1 = same colours) is refused; 0 turns the cue off (docs/tracker.md)",
    )
    static_after_s: float = Field(
        default=20.0,
        ge=0.0,
        le=3600.0,
        description="a track whose feet stay put and whose box shows no pixel change for this long is static "
        "scenery (poster, mannequin, sign) and is left out of every metric until it moves; 0 turns it off "
        "(docs/tracker.md)",
    )

    @model_validator(mode="after")
    def _order(self) -> TrackerConfig:
        low, high = self.low_score_threshold, self.high_score_threshold
        if low is not None and high is not None and low >= high:
            raise ValueError("low_score_threshold must be below high_score_threshold")
        return self

    def with_model_scores(self, high: float, new_track: float, low: float) -> TrackerConfig:
        """This config with the score thresholds it leaves unset taken from the model's defaults."""
        given = {"high_score_threshold": high, "new_track_threshold": new_track, "low_score_threshold": low}
        out = self.model_copy(update={k: v for k, v in given.items() if getattr(self, k) is None})
        assert out.low_score_threshold is not None and out.high_score_threshold is not None
        if out.low_score_threshold >= out.high_score_threshold:
            raise ValueError(
                f"tracker.low_score_threshold ({out.low_score_threshold}) must be below high_score_threshold "
                f"({out.high_score_threshold}, the model's default unless set): set both"
            )
        return out


class CameraConfig(Strict):
    id: str = Field(pattern=ID_PATTERN, description="camera id; part of MQTT topics")
    source: str | int = Field(description="file path, rtsp://, http(s):// URL, or a USB index")
    fps: float = Field(default=5.0, gt=0.0, le=60.0, description="analysis frames per second")
    source_fps: float | None = Field(
        default=None, gt=0.0, le=240.0, description="override a wrong container frame rate (files)"
    )
    enabled: bool = Field(default=True, description="false: keep the camera in the file but do not run it")
    reconnect_max_backoff_s: float = Field(default=30.0, gt=0.0, le=600.0, description="longest wait between reconnection attempts of a live stream")
    read_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        le=120.0,
        description="live: a stream that stays connected but sends no frame this long is reported "
        "'stalled' and reconnected (OpenCV alone would wait ~30 s); opening a stream gives up after "
        "this long, 10 s at least",
    )
    idle_refresh_s: float | None = Field(
        default=None,
        gt=0.0,
        le=60.0,
        description="skip the detector while the downscaled picture is unchanged since the last detection, "
        "reusing its detections (a standing person stays tracked), and detect anyway after this many "
        "seconds; off when unset",
    )
    calibration: CalibrationConfig | None = Field(default=None, description="image px to floor m pairs (optional; needed for distances)")
    zones: list[ZoneConfig] = Field(default_factory=list, description="the camera's zones")
    ignore: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="polygons (normalised image coordinates 0..1) where detections are dropped before tracking: "
        "a poster, a screen or a mirror that the static-scenery test cannot rule out",
    )

    @field_validator("ignore")
    @classmethod
    def _ignore_ok(cls, v: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for k, poly in enumerate(v):
            if len(poly) < 3:
                raise ValueError(f"ignore[{k}]: a polygon needs at least 3 points, found {len(poly)}")
            for x, y in poly:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(f"ignore[{k}]: point ({x}, {y}) is outside 0..1 (fractions of the image)")
        return v

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


@dataclass(frozen=True)
class LaneConfig:
    """A checkout lane as configured: its queue zone and (optionally) the service zone at its till."""

    lane_id: str
    label: str
    camera_id: str
    queue_zone: str
    service_zone: str | None


def resolve_secret(env_name: str | None, file_name: str | None, *, key: str, base_dir: Path | None) -> str | None:
    """A secret named by the config (never inline): the value of environment variable ``env_name``,
    or the content of ``file_name`` (relative paths are relative to the config file's folder
    ``base_dir``, like every path in the config; one trailing newline is ignored). An unset or
    empty variable, an unreadable or empty file is an error: a missing secret must not quietly
    become "no password". None when neither is given."""
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise UserFacingError(f"{key}_env names the environment variable {env_name}, but it is not set or empty")
        return value
    if file_name:
        path = Path(file_name).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = (base_dir / path).resolve()
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UserFacingError(f"{key}_file {path}: cannot read it ({exc.strerror})") from None
        if not value:
            raise UserFacingError(f"{key}_file {path} is empty")
        return value
    return None


class StoreConfig(Strict):
    version: Literal[1] = Field(description="config format version; always 1")
    store: StoreInfo = Field(description="the store: id, name, time zone")
    model: ModelConfig = Field(default_factory=ModelConfig, description="which person detector runs")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="ByteTrack settings (docs/tracker.md)")
    cameras: list[CameraConfig] = Field(min_length=1, description="every camera of the store with its zones")
    staff: StaffConfig = Field(default_factory=StaffConfig, description="how staff are told apart from customers")
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig, description="queue model, heatmaps, alert rules")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="the broker link metrics are published on")
    display: DisplayConfig = Field(default_factory=DisplayConfig, description="the checkout wait-time screen")
    history: HistoryConfig = Field(default_factory=HistoryConfig, description="the on-box history database for reports")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus /metrics of `storesense run`")
    data_dir: str = Field(
        default="storesense-data",
        description="local folder (relative to this file) for the outbox, history, heatmaps and reference "
        "frames; none of it leaves the box except through MQTT metrics",
    )
    # where the file came from; set by load_config, not by the user
    source_path: Path | None = Field(default=None, exclude=True)

    def lanes(self) -> list[LaneConfig]:
        """Every checkout lane: one per queue zone of an enabled camera, in config order. The one
        definition of "the store's lanes" used by the analytics, lane commands, screens and reports."""
        out: dict[str, LaneConfig] = {}
        for cam in self.cameras:
            if not cam.enabled:
                continue
            for z in cam.zones:
                if z.kind != "queue":
                    continue
                if z.lane_id in out:
                    raise UserFacingError(
                        f"lane {z.lane_id!r} has more than one queue zone (camera {cam.id}, zone {z.id}); give "
                        "each queue zone its own 'lane' id"
                    )
                service = z.service_zone
                if service is None:  # a service zone of the same lane on this camera
                    service = next((s.id for s in cam.zones if s.kind == "service" and s.lane_id == z.lane_id), None)
                out[z.lane_id] = LaneConfig(z.lane_id, z.label or z.lane_id, cam.id, z.id, service)
        return list(out.values())

    def mqtt_password(self) -> str | None:
        """The broker password (``mqtt.password_env`` or ``mqtt.password_file``); see :func:`resolve_secret`."""
        base = self.source_path.parent if self.source_path is not None else None
        return resolve_secret(self.mqtt.password_env, self.mqtt.password_file, key="mqtt.password", base_dir=base)

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

# libyaml when present: 30x faster on a large (or hostile) file
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, path: tuple[Any, ...], where: Where) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a loaded YAML document; an
    unset variable without a default is a problem at its line (``where``). Public: the HQ
    config (hq/config.py) expands its file by the same rule."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            where.add(path, f"environment variable ${{{name}}} is not set and has no default "
                      f"(write ${{{name}:-value}} for a default)")
            return m.group(0)

        return _ENV_RE.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, (*path, i), where) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_env(v, (*path, k), where) for k, v in value.items()}
    return value


MAX_YAML_DEPTH = 64
MAX_YAML_ENTRIES = 200_000


def _line_index(
    node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int], problems: list[str], filename: str
) -> None:
    """Map every key path to its 1-based line, so validation errors can point at it.

    Also the duplicate-key check: PyYAML keeps the last of two equal keys without a word, so a
    second ``mqtt:`` block would silently replace the first.
    """
    out[path] = node.start_mark.line + 1
    # aliases make the node tree a graph: `a: &a [*a]` is a cycle, nine nested lists of nine
    # aliases are 9^9 entries; both would otherwise recurse forever / exhaust memory here
    if len(path) > MAX_YAML_DEPTH:
        raise ConfigError([f"{filename}:{out[path]}: not valid YAML here: nested more than {MAX_YAML_DEPTH} "
                           "levels (an alias that contains itself?)"])
    if len(out) > MAX_YAML_ENTRIES:
        raise ConfigError([f"{filename}:{out[path]}: not valid YAML here: the file expands to more than "
                           f"{MAX_YAML_ENTRIES} entries (aliases of aliases?)"])
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key in first_line and key != "<<":
                where = _format_loc((*path, key))
                problems.append(f"{filename}:{line}: {where}: key {short(key)} appears twice, at lines "
                                f"{first_line[key]} and {line}; keep one")
            first_line.setdefault(key, line)
            _line_index(value_node, (*path, key), out, problems, filename)
            out[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out, problems, filename)


def _format_loc(loc: tuple[Any, ...]) -> str:
    s = ""
    for part in loc:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += ("." if s else "") + str(part)
    return s or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> list[type[BaseModel]]:
    """The config model(s) a location points into, for "did you mean" on unknown keys."""
    models: list[type[BaseModel]] = [StoreConfig]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            field = m.model_fields.get(str(part))
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        if not nxt:
            return models if part == loc[-1] else []
        models = nxt
    return models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _describe_error(err: Any) -> str:
    etype = err["type"]
    found = err.get("input")
    found_s = short(found) if not isinstance(found, dict | list) else type(found).__name__
    loc = tuple(err.get("loc", ()))
    kind = err.get("zone_kind")
    if etype == "extra_forbidden" and kind is not None and loc:
        owners = [k for k, m in ZONE_MODELS.items() if loc[-1] in m.model_fields]
        if owners:
            return f"not a setting of {kind} zones (it belongs to kind {' / '.join(owners)})"
        known = set(ZONE_MODELS[kind].model_fields) | {"kind"}
        return f"unknown key for {kind} zones{did_you_mean(loc[-1], known)}"
    if etype == "extra_forbidden":
        known = {name for m in _model_at(loc[:-1]) for name in m.model_fields if name != "source_path"}
        hint = did_you_mean(loc[-1], known) if loc else ""
        return f"unknown key (not part of the config; check the spelling){hint}"
    if etype == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        options = list(ZONE_MODELS)
        return (f"expected one of {', '.join(repr(o) for o in options)}; found {short(tag)}"
                f"{did_you_mean(tag, options) if isinstance(tag, str) else ''}")
    if etype in ("missing", "union_tag_not_found"):
        return "required field is missing"
    if etype == "too_short" and loc and loc[-1] == "polygon" and isinstance(found, list):
        return f"a polygon needs at least 3 points; found {len(found)}"
    if etype == "finite_number":
        return f"expected a finite number; found {found_s}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if etype in {"value_error", "assertion_error", BOOL_FOR_NUMBER}:
        return msg
    if msg.startswith("Input should be "):
        rest = msg.removeprefix("Input should be ")
        if not rest.startswith(("a ", "an ", "valid", "'")):
            rest = "a value " + rest
        msg = rest
    if etype == "literal_error" and isinstance(found, str) and "expected" in err.get("ctx", {}):
        options = re.findall(r"'([^']*)'", str(err["ctx"]["expected"]))
        close = did_you_mean(found, options)
        if close.startswith(" (did"):
            return f"expected {msg[0].lower() + msg[1:]}; found {found_s}{close}"
    return f"expected {msg[0].lower() + msg[1:]}; found {found_s}"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds union member names ('str', 'int', 'function-after[...]') into locations, and
    # the zone kind (the discriminator's tag) right after a zone's index
    out: list[Any] = []
    for p in loc:
        if not isinstance(p, int) and (p in {"str", "int", "float"} or "[" in str(p)):
            continue
        if p in ZONE_MODELS and len(out) >= 2 and out[-2] == "zones" and isinstance(out[-1], int):
            continue
        out.append(p)
    return tuple(out)


def _zone_kind_at(loc: tuple[Any, ...]) -> str | None:
    for i, p in enumerate(loc[2:], start=2):
        if p in ZONE_MODELS and loc[i - 2] == "zones" and isinstance(loc[i - 1], int):
            return str(p)
    return None


def validation_problems(exc: ValidationError, filename: str, lines: dict[tuple[Any, ...], int]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for err in exc.errors():
        kind = _zone_kind_at(tuple(err["loc"]))
        loc = _clean_loc(tuple(err["loc"]))
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the zone's kind itself
            loc = (*loc, "kind")
        if err["type"] == BOOL_FOR_NUMBER:  # raised by the model, about one of its keys
            ctx = err.get("ctx", {})
            loc = (*loc, ctx.get("key", "?"), *ctx.get("at", ()))
        err = {**err, "loc": loc, "zone_kind": kind}  # type: ignore[typeddict-unknown-key]
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


def _yaml_error(exc: yaml.YAMLError, filename: str, text: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else "?"
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        row = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        indent = row[: len(row) - len(row.lstrip(" \t"))]
        if "\t" in indent or row[mark.column : mark.column + 1] == "\t":
            col = (indent.index("\t") if "\t" in indent else mark.column) + 1
            return f"{filename}:{line}: tabs are not allowed for indentation, use spaces (line {line}, column {col})"
    return f"{filename}:{line}: not valid YAML: {problem}"


def load_yaml_mapping(text: str, filename: str, expected: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """YAML text → (mapping, line of every key path). Errors are ConfigError with file:line.

    Shared by every YAML file the operator writes (store config, calibration file), so they all
    report problems the same way. A key given twice is an error naming both lines.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()  # one parse: the node tree gives lines, then the data
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(exc, filename, text)]) from None
    except RecursionError:
        raise ConfigError([f"{filename}:1: not valid YAML: nested too deeply"]) from None
    finally:
        loader.dispose()
    if node is None or not isinstance(data, dict):
        raise ConfigError([f"{filename}:1: expected a mapping with {expected}; found {type(data).__name__}"])
    lines: dict[tuple[Any, ...], int] = {}
    problems: list[str] = []
    _line_index(node, (), lines, problems, filename)
    if problems:
        raise ConfigError(problems)
    return data, lines


def parse_config(
    text: str,
    filename: str = "<config>",
    source_path: Path | None = None,
    *,
    extra_checks: Iterable[RawCheck] = (),
) -> StoreConfig:
    """Parse and validate YAML text; raise :class:`ConfigError` with operator-readable problems.

    One pass: schema errors (pydantic), cross-references and environment checks
    (:mod:`edge.config_checks`, plus ``extra_checks`` from higher layers, e.g. model names) are
    reported together, so the operator fixes everything in one round.
    """
    data, lines = load_yaml_mapping(text, filename, "version, store and cameras")
    where = Where(filename, lines)
    data = expand_env(data, (), where)
    problems = list(where.problems)
    base_dir = source_path.parent if source_path is not None else None
    cfg = None
    try:
        cfg = StoreConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, filename, lines))
    problems.extend(raw_problems(data, filename, lines, base_dir, extra_checks))
    if problems or cfg is None:
        raise ConfigError(problems)
    cfg.source_path = source_path
    return cfg


def load_config(path: str | Path, *, extra_checks: Iterable[RawCheck] = ()) -> StoreConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{p}: config file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{p}: is a folder, not a config file"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{p}:{line}: not a UTF-8 text file (byte {exc.start}); save it as UTF-8"]) from None
    return parse_config(text, str(p), p.resolve(), extra_checks=extra_checks)
