"""docs/config.md and docs/store-config.schema.json are generated from the config models: they
must match what the models say today (regenerate: python -m edge.config_reference --write)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from edge import config_reference as ref

REPO = Path(__file__).resolve().parents[1]


def test_every_key_has_a_meaning_and_no_meaning_is_stale() -> None:
    assert ref.undocumented() == []


def test_reference_and_schema_match_the_models() -> None:
    hint = "docs drifted from the config models: run `python -m edge.config_reference --write`"
    assert ref.MARKDOWN_PATH.read_text(encoding="utf-8") == ref.render_markdown(), hint
    assert ref.SCHEMA_PATH.read_text(encoding="utf-8") == ref.render_schema(), hint


def test_reference_lists_every_section_key_default_unit_and_range() -> None:
    md = ref.MARKDOWN_PATH.read_text(encoding="utf-8")
    for heading in ("## `cameras[]`", "## `cameras[].zones[] (kind: queue)`", "## `cameras[].zones[] (kind: entrance)`", "## `mqtt`", "## `metrics`", "## `analytics.queue`"):
        assert heading in md
    row = next(line for line in md.splitlines() if line.startswith("| `stop_after_s`"))
    assert "`20.0`" in row and "| s |" in row and "> 0.0, ≤ 3600.0" in row and "stop" in row


def test_json_schema_accepts_shipped_configs_and_refuses_a_typo() -> None:
    import json

    schema = json.loads(ref.SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for path in (REPO / "edge/demo/store.yaml", REPO / "scripts/systemd/store.yaml"):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
        assert errors == [], (path, [e.message for e in errors])
    bad = yaml.safe_load((REPO / "edge/demo/store.yaml").read_text(encoding="utf-8"))
    bad["cameras"][0]["fsp"] = 5
    bad["mqtt"]["port"] = 70000
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("fsp" in m for m in messages) and any("70000" in m for m in messages), messages
