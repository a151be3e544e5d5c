#!/usr/bin/env python3
"""Accuracy of queue lengths, measured waits and predicted waits on simulated checkouts.

Runs the unchanged StoreAnalytics on zones.simulator scenes (noise-free and with the realistic
noise model) at several utilisations and prints the tables of docs/validation.md. Example:

    python scripts/eval_queue.py --hours 4 --rho 0.5 --rho 0.8 --rho 0.95
    python scripts/eval_queue.py --hours 1 --what-if   # also the proposed analytics fixes

``--what-if`` replays the same scenes through *patched* analytics that implement the fixes
proposed in docs/validation.md (they are not the product): ``dedup`` counts a service start only
for a track that was seen outside the service zone before (an id switch at the till is not a
new customer).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from zones.analytics import StoreAnalytics
from zones.simulator import (
    NOISE_FREE,
    REALISTIC_NOISE,
    QueueReport,
    QueueScenario,
    evaluate_queue,
    replay,
    simulate_queue,
)


class DedupServiceStarts(StoreAnalytics):
    """What-if: a track born inside the service zone (an id switch or a re-acquired track of the
    customer already at the till) does not count as a new service start."""

    def _on_transition(self, cam: Any, tr: Any, staff: bool, ts: float, closed_by: str | None = None) -> Any:
        zone = cam.zones[tr.zone_id]
        rec = cam.tracks.get(tr.track_id)
        born_inside = (rec.first_seen_s if rec is not None else tr.time_s) >= tr.time_s - 1e-6
        if tr.kind == "enter" and zone.kind == "service" and not staff and born_inside:
            lane = cam.lane_of_zone(zone.id)
            if lane is not None:
                lane.service_start = lambda time_s: None  # type: ignore[method-assign]
                try:
                    return super()._on_transition(cam, tr, staff, ts, closed_by)
                finally:
                    del lane.service_start
        return super()._on_transition(cam, tr, staff, ts, closed_by)


HEADER = (
    "| rho | noise | analytics | customers | mean true wait s | pred MAE s | pred MAE / mean | oracle MAE / mean "
    "| pred bias s | band coverage | measured-wait MAE (median) s | measured missing (short) | queue len exact | queue len MAE |"
)


def row(rho: float, noise: str, variant: str, r: QueueReport) -> str:
    return (
        f"| {rho:.2f} | {noise} | {variant} | {r.customers_evaluated} | {r.mean_true_wait_s:.1f} | {r.pred_mae_s:.1f} "
        f"| {100 * r.pred_rel_mae:.0f} % | {100 * r.oracle_rel_mae:.0f} % | {r.pred_bias_s:+.1f} "
        f"| {100 * r.pred_band_coverage:.0f} % | {r.measured_mae_s:.2f} ({r.measured_median_abs_err_s:.2f}) | {r.measured_missing} ({r.measured_missing_short}) "
        f"| {100 * r.queue_length_exact_share:.1f} % | {r.queue_length_mae:.3f} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=4.0, help="simulated hours per run (default 4)")
    ap.add_argument("--rho", type=float, action="append", help="utilisation(s) (default 0.5 0.8 0.95)")
    ap.add_argument("--tills", type=int, default=2)
    ap.add_argument("--service-cv", type=float, default=0.6, help="coefficient of variation of service times")
    ap.add_argument("--mean-service-s", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--seed", type=int, action="append", help="seed(s) (default 1)")
    ap.add_argument("--noise", choices=["free", "realistic", "both"], default="both")
    ap.add_argument("--what-if", action="store_true", help="also run the proposed analytics fixes")
    ap.add_argument("--halflife-s", type=float, default=None, help="override analytics.queue.service_rate_halflife_s")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rhos = args.rho or [0.5, 0.8, 0.95]
    seeds = args.seed or [1]
    noises = {"free": [("free", NOISE_FREE)], "realistic": [("realistic", REALISTIC_NOISE)],
              "both": [("free", NOISE_FREE), ("realistic", REALISTIC_NOISE)]}[args.noise]
    print(f"# {args.hours:g} h per run at {args.fps:g} fps, {args.tills} tills, service mean {args.mean_service_s:g} s "
          f"cv {args.service_cv:g}, seeds {seeds}")
    print(f"# realistic noise: {REALISTIC_NOISE}")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for rho in rhos:
        for name, noise in noises:
            for seed in seeds:
                sc = QueueScenario(duration_s=args.hours * 3600.0, rho=rho, tills=args.tills, seed=seed,
                                   service_cv=args.service_cv, mean_service_s=args.mean_service_s, fps=args.fps,
                                   noise=noise)
                t0 = time.perf_counter()
                sim = simulate_queue(sc)
                if args.halflife_s is not None:
                    sim.config.analytics.queue.service_rate_halflife_s = args.halflife_s
                variants: list[tuple[str, Any]] = [("product", None)]
                if args.what_if:
                    variants.append(("what-if dedup", DedupServiceStarts))
                for vname, cls in variants:
                    an = None if cls is None else cls(sim.config)
                    rep = replay(sim, analytics=an)
                    r = evaluate_queue(sim, rep)
                    label = name if len(seeds) == 1 else f"{name} s{seed}"
                    print(row(rho, label, vname, r), flush=True)
                logging.getLogger("eval").info("run took %.1f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
