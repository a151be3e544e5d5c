"""The store-config reference (docs/config.md) and JSON Schema, generated from the pydantic models.

Installers pieced keys together from the README, the demo config and the operations guide; this
reads the models themselves, so a key, default or range cannot drift from what
``validate-config`` accepts (tests/test_config_reference.py regenerates and compares).

Meaning comes from each field's ``Field(description=...)`` in the config models (one strict base,
a description on every field, as in Frigate's config package), so the JSON Schema carries it too
and editors show it. :data:`MEANINGS` (keys ``Model.field``, shell-style wildcards such as
``*Zone*.field``) is only a fallback and is empty; the test fails on a field with no meaning and
on a stale entry.

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

MEANINGS: dict[str, str] = {}  # every field has its description now; keep new ones there too

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
