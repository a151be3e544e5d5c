"""``storesense`` command line. Each subcommand lives next to the code it drives and registers
itself through a ``register(subparsers)`` function, so the CLI stays a thin index."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

# module paths that expose register(subparsers); order = order in --help
COMMAND_MODULES = [
    "edge.commands",  # validate-config, run, analyze, bench, demo
    "calibration.cli",  # calibrate
    "mqtt_bridge.display",  # display
    "edge.ops_cli",  # heatmap, report
    "edge.evaluate",  # evaluate
    "models.quantize",  # models quantize
]
# Separately deployed parts (e.g. `hq`, the chain's central ingester, extra `[hq]`) add their
# commands through this entry-point group, so nothing here imports them.
PLUGIN_GROUP = "storesense.commands"


def build_parser(extra_modules: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storesense",
        description="Edge computer vision for stores: queues, waits, dwell, staff response. "
        "Only aggregated metrics leave the box.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    registered = set(sub.choices)
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name not in registered:
            try:
                ep.load()(sub)
            except ImportError as exc:  # the extra is not installed on this box: the command is absent
                logging.getLogger("storesense").debug("command %s unavailable: %s", ep.name, exc)
            registered = set(sub.choices)
    for name in extra_modules:
        if name.rsplit(".", 1)[0] not in registered:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None, extra_modules: Sequence[str] = ()) -> int:
    from edge.config import ConfigError
    from edge.errors import UserFacingError
    from edge.host import MALLOC_ARENAS, cap_malloc_arenas
    from edge.logs import setup_logging

    # before any camera or detector thread exists: an arena, once made, stays (edge/host.py)
    cap_malloc_arenas(MALLOC_ARENAS)
    from edge.ops_cli import relative_time_values

    parser = build_parser(extra_modules)
    args = parser.parse_args(relative_time_values(sys.argv[1:] if argv is None else argv))
    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except UserFacingError as exc:
        logging.getLogger("storesense").error("%s", exc)
        return 2
    except OSError as exc:
        # a path the operator gave that the system refuses (a file where a folder must be, no
        # permission, a full disk at start-up): say which and why; the traceback stays at DEBUG
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        log = logging.getLogger("storesense")
        log.error("cannot use %s: %s", where or "a file", exc.strerror or exc)
        log.debug("traceback", exc_info=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
