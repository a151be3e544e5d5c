"""The layering of docs/architecture.md is complete: every module of ours sits in exactly one
import-linter layer, so a new module cannot escape the contracts (`lint-imports` checks the arrows)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def _our_modules(packages: list[str]) -> set[str]:
    found = set()
    for pkg in packages:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] != "__init__":
                found.add(".".join(parts))
    return found


def _layered_modules() -> list[str]:
    (layers,) = [c for c in _config()["contracts"] if c["type"] == "layers"]
    out: list[str] = []
    for layer in layers["layers"]:
        out.extend(m.strip() for m in layer.replace("|", ":").split(":"))
    return out


def test_every_module_is_in_exactly_one_layer() -> None:
    layered = _layered_modules()
    duplicates = sorted({m for m in layered if layered.count(m) > 1})
    assert not duplicates, f"modules in more than one layer: {duplicates}"
    modules = _our_modules(_config()["root_packages"])
    missing = sorted(m for m in modules if not any(m == x or m.startswith(x + ".") for x in layered))
    assert not missing, f"place these modules in a layer of [tool.importlinter] in pyproject.toml: {missing}"
    stale = sorted(x for x in layered if not any(m == x or m.startswith(x + ".") for m in modules))
    assert not stale, f"layers name modules that do not exist: {stale}"
