"""How many tills (and greeters) an hour of traffic needs: Erlang C, the M/M/c queue.

Ops staff plan the rota by hour. From the measured arrival rate and mean service time of an
hour, M/M/c gives the probability that a customer has to wait and the mean wait; the smallest
number of servers that keeps the predicted wait under a target is the recommendation, shown
next to the number of lanes that were actually open. The same model sizes greeters at the
entrance, where the target is a service level ("80 % greeted within the 10 s SLA").

Numerics: Erlang C is computed through the Erlang B recursion, which never forms ``a**c`` or
``c!`` and so stays exact for hundreds of servers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SERVERS = 200


def erlang_b(servers: int, offered_load_erl: float) -> float:
    """Blocking probability of M/M/c/c with ``offered_load_erl`` = arrival rate × service time."""
    if servers < 0:
        raise ValueError("servers must be 0 or more")
    if offered_load_erl < 0:
        raise ValueError("offered load must be 0 or more")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load_erl * b / (k + offered_load_erl * b)
    return b


def erlang_c(servers: int, offered_load_erl: float) -> float:
    """Probability that an arriving customer waits (all ``servers`` busy) in M/M/c.

    1.0 when the queue is unstable (load ≥ servers): everyone eventually waits.
    """
    if servers < 1:
        raise ValueError("servers must be 1 or more")
    if offered_load_erl < 0:
        raise ValueError("offered load must be 0 or more")
    if offered_load_erl == 0:
        return 0.0
    if offered_load_erl >= servers:
        return 1.0
    b = erlang_b(servers, offered_load_erl)
    return servers * b / (servers - offered_load_erl * (1.0 - b))


def mean_wait_s(servers: int, arrivals_per_h: float, service_time_s: float) -> float:
    """Mean time in the queue (before service starts); ``inf`` when unstable."""
    if service_time_s <= 0:
        raise ValueError("service_time_s must be positive")
    lam_per_s = arrivals_per_h / 3600.0
    load = lam_per_s * service_time_s
    if load >= servers:
        return math.inf
    if load == 0:
        return 0.0
    return erlang_c(servers, load) * service_time_s / (servers - load)


def prob_wait_over(servers: int, arrivals_per_h: float, service_time_s: float, wait_s: float) -> float:
    """P(queue wait > ``wait_s``) = C · exp(-(c·μ − λ)·t) in M/M/c."""
    if service_time_s <= 0:
        raise ValueError("service_time_s must be positive")
    lam_per_s = arrivals_per_h / 3600.0
    load = lam_per_s * service_time_s
    if load >= servers:
        return 1.0
    if load == 0:
        return 0.0
    rate = servers / service_time_s - lam_per_s
    return erlang_c(servers, load) * math.exp(-rate * max(wait_s, 0.0))


def servers_for_mean_wait(arrivals_per_h: float, service_time_s: float, target_wait_s: float) -> int:
    """Fewest servers whose M/M/c mean wait is ≤ ``target_wait_s`` (0 when nobody arrives)."""
    if target_wait_s < 0:
        raise ValueError("target_wait_s must be 0 or more")
    if arrivals_per_h <= 0:
        return 0
    load = arrivals_per_h / 3600.0 * service_time_s
    c = max(1, math.floor(load) + 1)
    while c <= MAX_SERVERS:
        if mean_wait_s(c, arrivals_per_h, service_time_s) <= target_wait_s:
            return c
        c += 1
    raise ValueError(f"more than {MAX_SERVERS} servers needed for {arrivals_per_h:.0f} arrivals/h")


def servers_for_service_level(
    arrivals_per_h: float, service_time_s: float, answer_within_s: float, level: float = 0.8
) -> int:
    """Fewest servers such that at least ``level`` of customers wait ≤ ``answer_within_s``."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1 (e.g. 0.8 for 80 %)")
    if arrivals_per_h <= 0:
        return 0
    load = arrivals_per_h / 3600.0 * service_time_s
    c = max(1, math.floor(load) + 1)
    while c <= MAX_SERVERS:
        if 1.0 - prob_wait_over(c, arrivals_per_h, service_time_s, answer_within_s) >= level:
            return c
        c += 1
    raise ValueError(f"more than {MAX_SERVERS} servers needed for {arrivals_per_h:.0f} arrivals/h")


@dataclass(frozen=True)
class HourLoad:
    """What was measured in one local hour."""

    hour_start_s: float
    arrivals: int  # customers that reached a till (or passed the entrance) in the hour
    mean_service_time_s: float | None  # None: not measured this hour (a default is used)
    servers_open: float | None = None  # mean number of lanes open (or staff present), measured


@dataclass(frozen=True)
class HourStaffing:
    hour_start_s: float
    arrivals: int
    service_time_s: float
    needed: int
    actual: float | None
    predicted_wait_s: float | None  # M/M/c mean wait with the *actual* count (None if unknown/0)

    @property
    def gap(self) -> float | None:
        """Servers missing (positive) or spare (negative) against the recommendation."""
        return None if self.actual is None else self.needed - self.actual


def staffing_by_hour(
    hours: Sequence[HourLoad],
    *,
    target_wait_s: float,
    default_service_time_s: float,
    service_level: float | None = None,
) -> list[HourStaffing]:
    """Recommendation per hour. ``service_level`` None: keep the *mean* wait under the target
    (tills); a fraction: keep that share of customers under the target (greeters)."""
    out: list[HourStaffing] = []
    for h in hours:
        service_s = h.mean_service_time_s if h.mean_service_time_s and h.mean_service_time_s > 0 else default_service_time_s
        if service_level is None:
            needed = servers_for_mean_wait(h.arrivals, service_s, target_wait_s)
        else:
            needed = servers_for_service_level(h.arrivals, service_s, target_wait_s, service_level)
        predicted: float | None = None
        if h.servers_open is not None and h.servers_open >= 1 and h.arrivals > 0:
            w = mean_wait_s(max(1, round(h.servers_open)), h.arrivals, service_s)
            predicted = None if math.isinf(w) else w
        out.append(HourStaffing(h.hour_start_s, h.arrivals, service_s, needed, h.servers_open, predicted))
    return out
