#!/usr/bin/env python3
"""Chain HQ failure drills on real components; prints one table.

    PYTHONPATH=$PWD python scripts/hq_drills.py                  # 60 s central outage
    PYTHONPATH=$PWD python scripts/hq_drills.py --outage-s 5     # the CI length

Two stores run ``storesense run --loop`` (unpaced: many events per second) on the sample clip, each publishing to its
own edge Mosquitto, bridged over TLS into a central Mosquitto; ``storesense hq ingest`` writes
into PostgreSQL (all on ephemeral loopback ports, tests/hq_lab.py). While the stores keep
producing, in order: the central broker is stopped for ``--outage-s``; the ingester is SIGKILLed
and restarted; PostgreSQL is restarted; store-b's edge is SIGKILLed. After each drill the
script waits until PostgreSQL holds every event the stores handed to their brokers, and at
the end compares per store: produced (a tap on the edge broker; for the edge stopped cleanly
also its --events file), rows in PostgreSQL, lost, duplicated. tests/test_hq_chain.py runs the
same drills with a 5 s outage and asserts on the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hq_lab import HqLab, stop_gracefully, wait_for  # noqa: E402


@dataclass
class DrillRow:
    drill: str
    produced_during: int = 0  # events the stores produced while the component was down
    caught_up_s: float | None = None  # component back -> PostgreSQL holds every produced event
    note: str = ""


@dataclass
class StoreRow:
    store: str
    produced: int = 0
    produced_jsonl: int | None = None
    in_postgres: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # rows in PostgreSQL the store never produced
    availability: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class DrillResult:
    drills: list[DrillRow] = field(default_factory=list)
    stores: list[StoreRow] = field(default_factory=list)
    dead_letters: int = 0


def _produced(lab: HqLab) -> dict[str, set[str]]:
    return {s: e.tap.unique_events() for s, e in lab.edges.items()}


def _caught_up(lab: HqLab) -> bool:
    return all(ids <= set(lab.pg_event_ids(store)) for store, ids in _produced(lab).items())


def _drill(lab: HqLab, name: str, down: Any, up: Any, gap_s: float, timeout_s: float, min_events: int) -> DrillRow:
    """Take a component down for ``gap_s`` and, beyond that, until the stores have produced
    ``min_events`` meanwhile (a drill with nothing in flight proves nothing); then bring it back."""
    before = sum(len(v) for v in _produced(lab).values())
    down()
    time.sleep(gap_s)
    wait_for(lambda: sum(len(v) for v in _produced(lab).values()) - before >= min_events, 90, 0.2)
    during = sum(len(v) for v in _produced(lab).values()) - before
    up()
    t0 = time.monotonic()
    ok = wait_for(lambda: _caught_up(lab), timeout_s, 0.25)
    return DrillRow(name, during, round(time.monotonic() - t0, 2) if ok else None, "" if ok else "NOT caught up")


def run_drills(lab: HqLab, *, outage_s: float, gap_s: float = 3.0, warmup_events: int = 2,
               timeout_s: float = 60.0, min_events: int = 1) -> DrillResult:
    """The four drills on a started lab (edge brokers up, no edge running yet)."""
    assert lab.central is not None and lab.pg is not None
    res = DrillResult()
    for s in lab.stores:
        lab.start_edge_run(s, realtime=False, loop=True)
    if not wait_for(lambda: all(len(lab.pg_event_ids(s)) >= warmup_events for s in lab.stores), 300):
        raise RuntimeError("no events reached PostgreSQL from every store\n" + lab.logs())
    central, pg = lab.central, lab.pg
    res.drills.append(_drill(lab, f"central broker stopped {outage_s:.0f} s", central.stop, central.start,
                             outage_s, timeout_s, min_events))
    res.drills.append(_drill(lab, "ingester SIGKILLed, restarted", lab.kill_ingester,
                             lambda: lab.start_ingester(wait_subscribed=False), gap_s, timeout_s, min_events))
    res.drills.append(_drill(lab, "PostgreSQL restarted", lambda: pg.stop("fast"), pg.start, gap_s, timeout_s,
                             min_events))
    victim = lab.stores[-1]
    device = f"{victim}-edge"
    t0 = time.monotonic()
    proc = lab.edges[victim].proc
    assert proc is not None
    proc.kill()
    proc.wait()
    offline = wait_for(lambda: (lab.availability(victim) or [("", "")])[-1] == (device, "offline")
                       if any(d == device for d, _ in lab.availability(victim)) else False, 30)
    res.drills.append(DrillRow(f"edge {victim} SIGKILLed", 0, round(time.monotonic() - t0, 2) if offline else None,
                               "availability row: offline" if offline else "NO offline row"))
    for s in lab.stores[:-1]:
        p = lab.edges[s].proc
        assert p is not None
        stop_gracefully(p)
    wait_for(lambda: _caught_up(lab), timeout_s, 0.25)
    time.sleep(1.0)  # anything late (a duplicate redelivery) would land now
    res.stores = [_store_row(lab, s) for s in lab.stores]
    res.dead_letters = len(lab.dead_letters())
    return res


def _store_row(lab: HqLab, store: str) -> StoreRow:
    edge = lab.edges[store]
    produced = edge.tap.unique_events()
    pg_ids = lab.pg_event_ids(store)
    counts = Counter(pg_ids)
    clean = edge.proc is not None and edge.proc.returncode == 0
    return StoreRow(
        store=store,
        produced=len(produced),
        produced_jsonl=len(set(edge.jsonl_event_ids())) if clean else None,
        in_postgres=len(pg_ids),
        lost=len(produced - set(pg_ids)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        unexpected=len(set(pg_ids) - produced),
        availability=lab.availability(store),
    )


def print_table(res: DrillResult) -> None:
    print("\n| drill | events produced meanwhile | caught up after (s) | note |\n|---|---|---|---|")
    for d in res.drills:
        print(f"| {d.drill} | {d.produced_during} | {d.caught_up_s if d.caught_up_s is not None else '-'} | {d.note} |")
    print("\n| store | produced (edge broker) | --events file | in PostgreSQL | lost | duplicated | unexpected | availability transitions |")
    print("|---|---|---|---|---|---|---|---|")
    for s in res.stores:
        av = ", ".join(f"{d}:{st}" for d, st in s.availability)
        jl = s.produced_jsonl if s.produced_jsonl is not None else "(killed)"
        print(f"| {s.store} | {s.produced} | {jl} | {s.in_postgres} | {s.lost} | {s.duplicated} | {s.unexpected} | {av} |")
    print(f"\ndead letters: {res.dead_letters}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--gap-s", type=float, default=5.0, help="ingester / PostgreSQL down for this long")
    ap.add_argument("--min-events", type=int, default=3, help="each outage lasts until this many events were produced")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="storesense-hq-drills-"))
    with HqLab(root) as lab:
        lab.start()
        res = run_drills(lab, outage_s=args.outage_s, gap_s=args.gap_s, timeout_s=max(60.0, args.outage_s * 2),
                         min_events=args.min_events)
    print_table(res)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    ok = all(s.lost == 0 and s.duplicated == 0 and s.unexpected == 0 for s in res.stores)
    ok = ok and all(d.caught_up_s is not None for d in res.drills)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
