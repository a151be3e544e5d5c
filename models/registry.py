"""The detector files StoreSense knows by name, and how a config picks one.

A store config says ``model: {name: yolox-nano-416}`` instead of a path so that the same file
works on every box: the file is looked up in :func:`edge.resources.models_dir` (environment
variable ``STORESENSE_MODELS_DIR``, else ``../shared/models``). ``model.path`` is the escape
hatch for any other export and always wins over ``name``.

The sha256 values let an installer (or a test) prove that a box runs exactly the weights that
were validated; the licence travels with the spec because YOLOv8/YOLO11 (AGPL-3.0) and YOLOX
(Apache-2.0) have very different consequences for a closed commercial deployment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.config import ModelConfig
from edge.errors import UserFacingError

Layout = Literal["yolov8", "yolox"]

AGPL = "AGPL-3.0 (Ultralytics; closed commercial use needs an Ultralytics licence)"
APACHE = "Apache-2.0 (YOLOX, Megvii)"


class ModelResolveError(UserFacingError):
    """The config names a model that is unknown or whose file cannot be found.

    :meth:`edge.detector.OnnxDetector.from_config` re-raises it as ``ModelError``.
    """


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


@dataclass(frozen=True)
class ResolvedModel:
    """A concrete file to load, with what the registry (or the config) says about it.

    ``layout`` / ``input_size_px`` are ``None`` when a custom ``path`` did not state them; the
    detector then reads them from the model itself.
    """

    path: Path
    layout: Layout | None
    input_size_px: int | None
    licence: str
    name: str | None = None
    sha256: str | None = None


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
        ),
        ModelSpec(
            "yolov8n-320",
            "yolov8n-320.onnx",
            "yolov8",
            320,
            AGPL,
            "9490a92472a38ff039dd36677d1364bd17433cc7f1129d7edb237b87099eee35",
            "YOLOv8n fp32 at 320: 4x cheaper, misses small/far people",
        ),
        ModelSpec(
            "yolov8n-640-int8",
            "yolov8n-640-int8.onnx",
            "yolov8",
            640,
            AGPL,
            "83de8f0d2cd521e00ae2b138c340a03dece35b060b3898509bdc69afff417312",
            "YOLOv8n dynamic int8 as published; slower than fp32 on x86 CPUs",
        ),
        ModelSpec(
            "yolo11n-640",
            "yolo11n-640.onnx",
            "yolov8",
            640,
            AGPL,
            "b8b081e74f18b0754070766ab4cc4ad5c9acde9cd15144014202bbef0afe07f2",
            "YOLO11n fp32 (same output layout as YOLOv8)",
        ),
        ModelSpec(
            "yolo11n-320",
            "yolo11n-320.onnx",
            "yolov8",
            320,
            AGPL,
            "f5b5094a1d6f660775688c20e555db9d89d9ff7e80c8ec525dee01208b29d408",
            "YOLO11n fp32 at 320",
        ),
        ModelSpec(
            "yolox-nano-416",
            "yolox-nano-416.onnx",
            "yolox",
            416,
            APACHE,
            "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
            "YOLOX-Nano, permissive licence, fastest; the default",
        ),
    )
}


def sha256_file(path: Path) -> str:
    """Full hex sha256 of a file, read in chunks (model files are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def known_names() -> str:
    return ", ".join(sorted(REGISTRY))


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
    """Turn ``model:`` of a store config into a file that exists.

    ``cfg.path`` (relative to ``base_dir``, the config file's folder) wins over ``cfg.name``:
    the default config carries a name, so a user who adds a path must not have to delete it.
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
        return ResolvedModel(p, cfg.layout, cfg.input_size_px, "unknown (custom model.path; check its licence)")

    assert cfg.name is not None  # ModelConfig guarantees name or path
    spec = lookup(cfg.name)
    directory = models_dir()
    p = directory / spec.filename
    if not p.is_file():
        raise ModelResolveError(
            f"model file for {spec.name!r} not found: {p}. Put {spec.filename} into {directory}, "
            "or set the environment variable STORESENSE_MODELS_DIR to the folder that holds it "
            "(or set model.path in the store config)"
        )
    return ResolvedModel(
        p,
        cfg.layout or spec.layout,
        cfg.input_size_px or spec.input_size_px,
        spec.licence,
        name=spec.name,
        sha256=spec.sha256,
    )


__all__ = [
    "REGISTRY",
    "Layout",
    "ModelResolveError",
    "ModelSpec",
    "ResolvedModel",
    "known_names",
    "lookup",
    "resolve_model",
    "sha256_file",
]
