#!/usr/bin/env python3
"""The product's wait predictor on the floor's own scenario, like for like.

``scripts/wait_floor.py`` computes the best-informed prediction on one isolated lane (M/G/1,
gamma services, cv 0.6): it knows the queue and the elapsed service at the till and the true
service-time distribution. This script replays *the same customers* (same seed, same random
numbers) through the product's queue model, :class:`zones.queues.LaneQueue`, exactly as the
analytics feed it (``advance`` every tick and at every event, ``join`` on arrival,
``service_start`` + ``served`` when a customer reaches the till), reads ``predicted_wait()`` the
moment each customer joins, and reports its error against the floor's on the same customers,
plus how often the true wait fell inside the product's ~80 % band.

Vision is left out on purpose: this isolates the predictor. (The tracked-scene figures are in
docs/validation.md.)

    python scripts/wait_vs_floor.py [--customers 20000] [--cv 0.6] [--rho 0.5 0.8 0.95]
"""

from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wait_floor import floor_predictions, simulate_mg1  # noqa: E402

from zones.config import QueueModelConfig  # noqa: E402
from zones.queues import LaneQueue  # noqa: E402

TICK_S = 5.0  # the analytics call advance() every frame; integrals need ticks under stale_after_s


def product_predictions(
    rho: float, cv: float, n_customers: int, mean_service_s: float, seed: int,
    cfg: QueueModelConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted, low, high) for every customer at the moment they join, from LaneQueue."""
    arrive_s, start_s, end_s, _service_s, _rng = simulate_mg1(rho, cv, n_customers, mean_service_s, seed)
    lane = LaneQueue("lane-1", "Lane 1", "cam", "queue", "till", cfg or QueueModelConfig(), staff_detection=False)
    # events: (time, order, kind, customer); at equal times: ends, then arrivals, then starts (a
    # customer who finds the till free arrives and starts at the same instant)
    events: list[tuple[float, int, str, int]] = []
    for i in range(n_customers):
        events += [(arrive_s[i], 1, "arrive", i), (start_s[i], 2, "start", i), (end_s[i], 0, "end", i)]
    heapq.heapify(events)
    pred = np.zeros(n_customers)
    low = np.zeros(n_customers)
    high = np.zeros(n_customers)
    waiting: set[int] = set()
    at_till: int | None = None
    next_tick_s = 0.0
    while events:
        t, _, kind, i = heapq.heappop(events)
        while next_tick_s < t:
            lane.advance(next_tick_s, len(waiting), at_till is not None, True)
            next_tick_s += TICK_S
        lane.advance(t, len(waiting), at_till is not None, True)
        if kind == "arrive":
            pred[i], low[i], high[i] = lane.predicted_wait()
            waiting.add(i)
            lane.join(i, t)
        elif kind == "start":
            waiting.discard(i)
            at_till = i
            lane.service_start(t)
            lane.served(i, t)
        elif at_till == i:
            at_till = None
    return pred, low, high


def compare(rho: float, cv: float, n_customers: int, mean_service_s: float, seed: int,
            cfg: QueueModelConfig | None = None) -> dict[str, float]:
    """Floor and product MAE / mean wait on the same customers, their ratio, bias, band coverage."""
    idx, true_s, best_s = floor_predictions(rho, cv, n_customers, mean_service_s, seed)
    pred, low, high = product_predictions(rho, cv, n_customers, mean_service_s, seed, cfg)
    mean_wait = float(true_s.mean())
    floor = float(np.abs(best_s - true_s).mean()) / mean_wait
    prod = float(np.abs(pred[idx] - true_s).mean()) / mean_wait
    return {"mean_wait_s": mean_wait, "floor": floor, "product": prod, "ratio": prod / floor,
            "bias_s": float((pred[idx] - true_s).mean()),
            "coverage": float(((true_s >= low[idx] - 1.0) & (true_s <= high[idx] + 1.0)).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--mean-service-s", type=float, default=60.0)
    ap.add_argument("--cv", type=float, default=0.6)
    ap.add_argument("--rho", type=float, nargs="+", default=[0.5, 0.8, 0.95])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print("| utilisation | mean wait s | floor MAE / mean | product MAE / mean | product / floor "
          "| product bias s | band coverage |")
    print("|---|---|---|---|---|---|---|")
    for rho in args.rho:
        r = compare(rho, args.cv, args.customers, args.mean_service_s, args.seed)
        print(f"| {rho:.2f} | {r['mean_wait_s']:.1f} | {100 * r['floor']:.1f} % | {100 * r['product']:.1f} % "
              f"| {r['ratio']:.2f}x | {r['bias_s']:+.1f} | {100 * r['coverage']:.0f} % |")


if __name__ == "__main__":
    main()
