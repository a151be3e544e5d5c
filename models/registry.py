"""The detector files StoreSense knows by name, and how a config picks one.

A store config says ``model: {name: yolox-nano-416}`` instead of a path so that the same file
works on every box: the file is looked up in :func:`edge.resources.models_dir` (environment
variable ``STORESENSE_MODELS_DIR``, else ``../shared/models``). ``model.path`` is the escape
hatch for any other export and always wins over ``name``.

Two kinds of names:

* a *file* name (``yolov8n-640``, ``yolox-nano-416``...): one export at one fixed square size;
* a *family* name (``yolov8n``, ``yolo11n``, ``yolox-nano``): the detector picks the input
  geometry per camera (the smallest multiple-of-32 rectangle holding the frame at
  ``model.input_width_px``), using an exact-shape static export when one exists (static graphs
  run faster than the dynamic one at the same shape) and otherwise the resizable graph with
  its input dimensions fixed in memory. ``precision: int8`` swaps the resizable graph for its
  static int8 copy (:mod:`models.quantize`).

The sha256 values let an installer (or a test) prove that a box runs exactly the weights that
were validated; the licence travels with the spec because YOLOv8/YOLO11 (AGPL-3.0) and YOLOX
(Apache-2.0) have very different consequences for a closed commercial deployment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from edge.config import ModelConfig
from edge.errors import UserFacingError

Layout = Literal["yolov8", "yolox"]
Precision = Literal["fp32", "int8"]

AGPL = "AGPL-3.0 (Ultralytics; closed commercial use needs an Ultralytics licence)"
APACHE = "Apache-2.0 (YOLOX, Megvii)"


class ModelResolveError(UserFacingError):
    """The config names a model that is unknown or whose file cannot be found.

    :meth:`edge.detector.OnnxDetector.from_config` re-raises it as ``ModelError``.
    """


@dataclass(frozen=True)
class ScoreThresholds:
    """The tracker's score thresholds for one model (``tracker.*_threshold`` in the config override
    them). Measured per model by ``scripts/score_calibration.py`` on the shared footage: the same
    share of each model's people (4.7 %) scores below its ``high`` as below ByteTrack's 0.5 on
    YOLOX-Nano; ``new_track`` is high + 0.1 (ByteTrack's rule); ``low`` is the detector floor.
    Families take their default-width file's."""

    high: float
    new_track: float
    low: float = 0.1


# ByteTrack's published values, for YOLOX; also what a custom model.path of unknown layout gets
BYTETRACK_SCORES = ScoreThresholds(0.5, 0.6)

# measured (models/quantize.py, MIN_RECALL_VS_FP32): the edge would refuse the copy at start-up
_YOLOX_NO_INT8 = ("its int8 copy finds 49 % of the people fp32 finds (depthwise convolutions share one int8 scale "
                  "across channels of very different ranges) and runs no faster")


@dataclass(frozen=True)
class ModelSpec:
    """One known detector file: how to read its output and what it may be used for."""

    name: str
    filename: str
    layout: Layout
    input_size_px: int
    licence: str
    sha256: str
    description: str = ""
    scores: ScoreThresholds = BYTETRACK_SCORES
    no_int8: str = ""  # why precision: int8 is refused for this model (measured); "" = offered


@dataclass(frozen=True)
class Family:
    """A model family: one resizable graph plus exact-shape static exports of the same weights.

    ``resizable_file`` runs at any multiple-of-32 input once its input dimensions are set (the
    Ultralytics dynamic exports; YOLOX-Nano's fixed 416 graph, whose reshapes are dynamic).
    ``static_files`` maps an input (height, width) to a file exported at exactly that shape.
    """

    name: str
    layout: Layout
    licence: str
    default_width_px: int
    resizable_file: str
    static_files: dict[tuple[int, int], str]
    sha256: dict[str, str]
    description: str = ""
    scores: ScoreThresholds = BYTETRACK_SCORES
    no_int8: str = ""  # as ModelSpec.no_int8


@dataclass(frozen=True)
class ResolvedModel:
    """A concrete file to load, with what the registry (or the config) says about it.

    ``layout`` / ``input_size_px`` are ``None`` when a custom ``path`` did not state them; the
    detector then reads them from the model itself. ``input_width_px`` is set for families: the
    detector then chooses the geometry per camera and may use ``static_variants`` (fp32 files
    at exact shapes) instead of ``path`` (the resizable graph).
    """

    path: Path
    layout: Layout | None
    input_size_px: int | None
    licence: str
    name: str | None = None
    sha256: str | None = None
    input_width_px: int | None = None
    static_variants: dict[tuple[int, int], Path] = field(default_factory=dict)
    precision: Precision = "fp32"


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "yolov8n-640",
            "yolov8n-640.onnx",
            "yolov8",
            640,
            AGPL,
            "6d36a03978f217aef0dc06e1afe1d1d6b9c830cc9f413b951a264ff7e38a784b",
            "YOLOv8n fp32, best small-person recall of the YOLOv8 files",
            ScoreThresholds(0.5, 0.6),
        ),
        ModelSpec(
            "yolov8n-320",
            "yolov8n-320.onnx",
            "yolov8",
            320,
            AGPL,
            "9490a92472a38ff039dd36677d1364bd17433cc7f1129d7edb237b87099eee35",
            "YOLOv8n fp32 at 320: 4x cheaper, misses small/far people",
            ScoreThresholds(0.35, 0.45),
        ),
        ModelSpec(
            "yolov8n-640-int8",
            "yolov8n-640-int8.onnx",
            "yolov8",
            640,
            AGPL,
            "83de8f0d2cd521e00ae2b138c340a03dece35b060b3898509bdc69afff417312",
            "YOLOv8n dynamic int8 as published; slower than fp32 on x86 CPUs",
            ScoreThresholds(0.5, 0.6),
        ),
        ModelSpec(
            "yolo11n-640",
            "yolo11n-640.onnx",
            "yolov8",
            640,
            AGPL,
            "b8b081e74f18b0754070766ab4cc4ad5c9acde9cd15144014202bbef0afe07f2",
            "YOLO11n fp32 (same output layout as YOLOv8)",
            ScoreThresholds(0.6, 0.7),
        ),
        ModelSpec(
            "yolo11n-320",
            "yolo11n-320.onnx",
            "yolov8",
            320,
            AGPL,
            "f5b5094a1d6f660775688c20e555db9d89d9ff7e80c8ec525dee01208b29d408",
            "YOLO11n fp32 at 320",
            ScoreThresholds(0.45, 0.55),
        ),
        ModelSpec(
            "yolox-nano-416",
            "yolox-nano-416.onnx",
            "yolox",
            416,
            APACHE,
            "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
            "YOLOX-Nano at a fixed square 416x416 (the default until the per-camera family)",
            BYTETRACK_SCORES,
            no_int8=_YOLOX_NO_INT8,
        ),
    )
}


_V8_SHA = {
    "yolov8n-dynamic.onnx": "0c0daa01d11e4b6fd689b2a42a958c9a701b60e3f31f21211b876f101d713789",
    "yolov8n-384x640.onnx": "decb99d4f3cea555f2cdf319fd9cf6233fc8f56fe198e861100b099213a2fb04",
}
_V11_SHA = {
    "yolo11n-dynamic.onnx": "81f251713cd8f97be0fdb9de358bae6078a690c438ad999e111300c252d31566",
    "yolo11n-384x640.onnx": "a381e1c37258a6ee14e1ee486769569713dac4b20c15d81416f2bdb2b3189579",
}

FAMILIES: dict[str, Family] = {
    fam.name: fam
    for fam in (
        Family(
            "yolov8n",
            "yolov8",
            AGPL,
            640,
            "yolov8n-dynamic.onnx",
            {(640, 640): "yolov8n-640.onnx", (384, 640): "yolov8n-384x640.onnx", (320, 320): "yolov8n-320.onnx"},
            {**_V8_SHA, **{s.filename: s.sha256 for s in REGISTRY.values() if s.name.startswith("yolov8n-")}},
            "YOLOv8n, input shaped per camera (16:9 -> 384x640, 4:3 -> 480x640 at width 640)",
            REGISTRY["yolov8n-640"].scores,
        ),
        Family(
            "yolo11n",
            "yolov8",
            AGPL,
            640,
            "yolo11n-dynamic.onnx",
            {(640, 640): "yolo11n-640.onnx", (384, 640): "yolo11n-384x640.onnx", (320, 320): "yolo11n-320.onnx"},
            {**_V11_SHA, **{s.filename: s.sha256 for s in REGISTRY.values() if s.name.startswith("yolo11n-")}},
            "YOLO11n, input shaped per camera",
            REGISTRY["yolo11n-640"].scores,
        ),
        Family(
            "yolox-nano",
            "yolox",
            APACHE,
            416,
            "yolox-nano-416.onnx",
            {(416, 416): "yolox-nano-416.onnx"},
            {"yolox-nano-416.onnx": REGISTRY["yolox-nano-416"].sha256},
            "YOLOX-Nano (Apache-2.0), input shaped per camera (16:9 -> 256x416, 4:3 -> 320x416); the default",
            REGISTRY["yolox-nano-416"].scores,
            no_int8=_YOLOX_NO_INT8,
        ),
    )
}


@dataclass(frozen=True)
class ModelChoice:
    """``NAME[:fp32|int8[:WIDTH_PX]]``: one point of the speed/accuracy frontier, as the command
    lines that compare models take it (``storesense bench --model``, ``storesense evaluate
    --model``), so the row a user picks in one is the audit they run in the other."""

    name: str
    precision: Literal["fp32", "int8"] = "fp32"
    width_px: int | None = None

    SYNTAX: ClassVar[str] = "NAME[:fp32|int8[:WIDTH_PX]], e.g. yolov8n:int8 or yolov8n:fp32:512"

    @classmethod
    def parse(cls, spec: str) -> ModelChoice:
        parts = spec.split(":")
        name = parts[0].strip()
        if not name or len(parts) > 3 or (len(parts) > 1 and parts[1] not in ("fp32", "int8")):
            raise ModelResolveError(f"model {spec!r}: expected {cls.SYNTAX}")
        width: int | None = None
        if len(parts) == 3:
            try:
                width = int(parts[2])
            except ValueError:
                width = None
            if width is None or width % 32 or not 64 <= width <= 4096:
                raise ModelResolveError(
                    f"model {spec!r}: the width must be a multiple of 32 from 64 to 4096 px; found {parts[2]!r}"
                )
        return cls(name, cast(Literal["fp32", "int8"], parts[1] if len(parts) > 1 else "fp32"), width)

    def update(self) -> dict[str, Any]:
        """The ``model:`` fields this choice sets; the config's other model settings stay."""
        return {"name": self.name, "path": None, "precision": self.precision,
                **({"input_width_px": self.width_px} if self.width_px is not None else {})}

    def label(self) -> str:
        return f"{self.name} {self.precision}" + (f" w{self.width_px}" if self.width_px else "")


def score_thresholds(cfg: ModelConfig) -> ScoreThresholds:
    """The tracker thresholds measured for the configured model. A custom ``model.path`` gets those of
    its layout's registry model (YOLOv8-style outputs: YOLOv8n-640's), else ByteTrack's."""
    if cfg.path is None and cfg.name is not None:
        if cfg.name in FAMILIES:
            return FAMILIES[cfg.name].scores
        if cfg.name in REGISTRY:
            return REGISTRY[cfg.name].scores
    if cfg.layout == "yolov8":
        return REGISTRY["yolov8n-640"].scores
    return BYTETRACK_SCORES


def sha256_file(path: Path) -> str:
    """Full hex sha256 of a file, read in chunks (model files are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def known_names() -> str:
    return ", ".join(sorted([*REGISTRY, *FAMILIES]))


def lookup(name: str) -> ModelSpec:
    """The spec of a registry name; an unknown name is an error that lists the known ones."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ModelResolveError(
            f"unknown model name {name!r} in model.name; known models: {known_names()} "
            "(or set model.path to an .onnx file)"
        )
    return spec


def resolve_model(cfg: ModelConfig, base_dir: Path | None = None) -> ResolvedModel:
    """Turn ``model:`` of a store config into a file that exists (the fp32 source).

    ``cfg.path`` (relative to ``base_dir``, the config file's folder) wins over ``cfg.name``:
    the default config carries a name, so a user who adds a path must not have to delete it.
    ``precision: int8`` is applied afterwards by :func:`models.quantize.int8_variant`, which
    needs the data dir; the returned record says which precision was asked for.
    """
    from edge.resources import models_dir

    if cfg.path is not None:
        p = Path(cfg.path).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        p = p.resolve()
        if not p.is_file():
            where = f" (relative paths are resolved against {base_dir})" if base_dir is not None else ""
            raise ModelResolveError(f"model file not found: {p} (from model.path {cfg.path!r}{where})")
        return ResolvedModel(
            p,
            cfg.layout,
            cfg.input_size_px,
            "unknown (custom model.path; check its licence)",
            input_width_px=cfg.input_width_px,
            precision=cfg.precision,
        )

    assert cfg.name is not None  # ModelConfig guarantees name or path
    directory = models_dir()
    family = FAMILIES.get(cfg.name)
    if family is not None:
        return _resolve_family(family, cfg, directory)
    spec = lookup(cfg.name)
    p = _existing(directory, spec.filename, spec.name)
    return ResolvedModel(
        p,
        cfg.layout or spec.layout,
        cfg.input_size_px or spec.input_size_px,
        spec.licence,
        name=spec.name,
        sha256=spec.sha256,
        input_width_px=cfg.input_width_px,
        precision=cfg.precision,
    )


def _existing(directory: Path, filename: str, name: str) -> Path:
    p = directory / filename
    if not p.is_file():
        raise ModelResolveError(
            f"model file for {name!r} not found: {p}. Put {filename} into {directory}, "
            "or set the environment variable STORESENSE_MODELS_DIR to the folder that holds it "
            "(or set model.path in the store config)"
        )
    return p


def _resolve_family(family: Family, cfg: ModelConfig, directory: Path) -> ResolvedModel:
    resizable = _existing(directory, family.resizable_file, family.name)
    # a missing static export only costs speed: the resizable graph covers that shape too
    statics = {hw: directory / f for hw, f in family.static_files.items() if (directory / f).is_file()}
    return ResolvedModel(
        resizable,
        cfg.layout or family.layout,
        None,
        family.licence,
        name=family.name,
        sha256=family.sha256.get(family.resizable_file),
        input_width_px=cfg.input_width_px or family.default_width_px,
        static_variants=statics,
        precision=cfg.precision,
    )


def with_file(resolved: ResolvedModel, path: Path, sha256: str | None) -> ResolvedModel:
    """The same model served from another file (its int8 copy): static fp32 exports no longer apply."""
    return replace(resolved, path=path, sha256=sha256, static_variants={})


__all__ = [
    "FAMILIES",
    "Family",
    "Precision",
    "REGISTRY",
    "Layout",
    "ModelResolveError",
    "ModelSpec",
    "ResolvedModel",
    "ScoreThresholds",
    "known_names",
    "lookup",
    "resolve_model",
    "score_thresholds",
    "sha256_file",
    "with_file",
]
