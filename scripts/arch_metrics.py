"""Print the architecture figures of issue 10: largest classes and functions, long functions,
and import arrows between our top-level packages (both directions).

Re-run after a restructuring to compare with the "before" figures in the release note:
    python scripts/arch_metrics.py [--top N]
"""

from __future__ import annotations

import argparse
import ast
import itertools
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge", "zones", "calibration", "mqtt_bridge", "models")
LONG_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(tree: ast.AST, module: str) -> set[str]:
    """Our modules that `module` imports (absolute and relative), anywhere in the file."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _layers() -> list[list[str]]:
    """Layers of [tool.importlinter] in pyproject.toml, bottom first (empty before they existed)."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in cfg.get("tool", {}).get("importlinter", {}).get("contracts", []):
        if contract.get("type") == "layers":
            return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in reversed(contract["layers"])]
    return []


def _layer_of(module: str, layers: list[list[str]]) -> int | None:
    for i, layer in enumerate(layers):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return i
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    classes: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    arrows: Counter[tuple[str, str]] = Counter()
    layers = _layers()
    layer_arrows: Counter[str] = Counter()
    for path in _sources():
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                name = f"{path.relative_to(ROOT)}:{node.name}"
                (classes if isinstance(node, ast.ClassDef) else functions).append((lines, name))
        src_pkg = module.split(".")[0]
        for target in _imported_modules(tree, module):
            a, b = _layer_of(module, layers), _layer_of(target, layers)
            if a is not None and b is not None and a != b:
                layer_arrows["up" if b > a else "down"] += 1
            dst_pkg = target.split(".")[0]
            if dst_pkg != src_pkg:
                arrows[(src_pkg, dst_pkg)] += 1
    print("largest classes (lines):")
    for lines, name in sorted(classes, reverse=True)[: args.top]:
        print(f"  {lines:5d}  {name}")
    print("largest functions (lines):")
    for lines, name in sorted(functions, reverse=True)[: args.top]:
        print(f"  {lines:5d}  {name}")
    long = [f for f in functions if f[0] > LONG_FUNCTION_LINES]
    print(f"functions over {LONG_FUNCTION_LINES} lines: {len(long)}")
    for lines, name in sorted(long, reverse=True):
        print(f"  {lines:5d}  {name}")
    print("import arrows between packages (importing module -> imported module, a->b / b->a):")
    for a, b in itertools.combinations(PACKAGES, 2):
        ab, ba = arrows[(a, b)], arrows[(b, a)]
        if ab or ba:
            print(f"  {a:12s} <-> {b:12s} {ab:3d} / {ba:3d}{'   (both ways)' if ab and ba else ''}")
    if layers:
        print(f"import arrows between layers (pyproject.toml): down {layer_arrows['down']}, up {layer_arrows['up']}")


if __name__ == "__main__":
    main()
