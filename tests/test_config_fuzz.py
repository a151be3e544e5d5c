"""CI sample of scripts/config_fuzz.py (issue 12): mutated configs are refused with a ConfigError
or accepted, never a traceback. The full 1000 plus 10 s runs of the accepted ones is the script."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "config_fuzz.py"


def test_mutated_configs_never_give_a_traceback(videos_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("config_fuzz", SCRIPT)
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules["config_fuzz"] = fuzz
    spec.loader.exec_module(fuzz)
    base = yaml.safe_load(fuzz.BASE)
    assert fuzz.validate(fuzz.BASE.replace("${STORESENSE_VIDEOS_DIR}", str(videos_path)))[0] == "accepted"
    rng = random.Random(2026)
    outcomes: dict[str, int] = {}
    for _ in range(150):
        text, desc = fuzz.mutate(base, fuzz.BASE, rng)
        result, detail = fuzz.validate(text)
        outcomes[result] = outcomes.get(result, 0) + 1
        assert result != "traceback", f"{desc}:\n{detail}"
    assert outcomes.get("refused", 0) > 50  # the mutations do bite
