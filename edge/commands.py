"""Subcommands of the edge runtime: validate-config, run, analyze, bench, demo."""

from __future__ import annotations

import argparse
from typing import Any

from edge.config import load_config


def cmd_validate_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    zones = sum(len(c.zones) for c in cfg.cameras)
    print(f"{args.config}: OK — store {cfg.store.id}, {len(cfg.cameras)} camera(s), {zones} zone(s)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("validate-config", help="check a store config and report problems with line numbers")
    p.add_argument("config")
    p.set_defaults(func=cmd_validate_config)
