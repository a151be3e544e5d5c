"""``storesense hq ...``: the central side of a chain (ingest, migrate, report).

Registered through the ``storesense.commands`` entry point (pyproject.toml), never imported by
the edge code: an edge box installs storesense without the ``[hq]`` extra and never sees it.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from edge.errors import UserFacingError

log = logging.getLogger("storesense.hq")


def _pg_problem(what: str, cfg: Any, exc: Exception) -> str:
    """Same wording as hq ingest: the DSN without its password, and libpq's reason."""
    return (f"{what}: cannot use PostgreSQL ({cfg.postgres.redacted_dsn()}): "
            f"{str(exc).strip()} (check postgres.dsn in the config and that the server is up)")


def cmd_ingest(args: argparse.Namespace) -> int:
    from hq.config import load_hq_config
    from hq.ingest import Ingester

    cfg = load_hq_config(args.config)
    ingester = Ingester(cfg)

    def _stop(signum: int, frame: Any) -> None:
        log.info("hq ingest: signal %d, stopping after the batch in hand", signum)
        ingester.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ingester.run_forever()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg

    from hq.config import load_hq_config
    from hq.schema import migrate

    cfg = load_hq_config(args.config)
    try:
        with psycopg.connect(cfg.postgres.dsn, autocommit=True) as conn:
            version = migrate(conn)
    except psycopg.Error as exc:
        raise UserFacingError(_pg_problem("hq migrate", cfg, exc)) from None
    print(f"hq schema version {version}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import psycopg

    from hq.config import load_hq_config
    from hq.report import write_chain_report

    cfg = load_hq_config(args.config)
    try:
        out = write_chain_report(cfg, args.out, start=args.start, end=args.end)
    except psycopg.Error as exc:
        raise UserFacingError(_pg_problem("hq report", cfg, exc)) from None
    print(out)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("hq", help="chain head office: ingest every store's stream into PostgreSQL, chain report")
    hq_sub = p.add_subparsers(dest="hq_command", metavar="HQ_COMMAND", required=True)
    ing = hq_sub.add_parser("ingest", help="central broker -> PostgreSQL, nothing lost (runs until SIGTERM)")
    ing.add_argument("--config", required=True, help="hq.yaml")
    ing.set_defaults(func=cmd_ingest)
    mig = hq_sub.add_parser("migrate", help="apply pending schema migrations and print the version")
    mig.add_argument("--config", required=True)
    mig.set_defaults(func=cmd_migrate)
    rep = hq_sub.add_parser("report", help="one self-contained HTML chain report for a period")
    rep.add_argument("--config", required=True)
    rep.add_argument("--from", dest="start", default="yesterday",
                     help="start, chain time zone: YYYY-MM-DD[THH:MM], today, yesterday, or -24h / -7d")
    rep.add_argument("--to", dest="end", default=None,
                     help="end; a bare date includes that day (default: the end of --from's day)")
    rep.add_argument("--out", default="chain-report.html")
    rep.set_defaults(func=cmd_report)
