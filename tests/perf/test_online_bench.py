"""The online learners' cost per order (issue 15's target: under 10 us).

Prints p50/p99 (us) of what each learner adds to an order's path and to a
child's outcome, and asserts only that the results are sane: this machine
is shared and noisy, so time is never asserted. Run with
``pytest -s tests/perf/test_online_bench.py``.

Per parent, on the planner's path (4 venues, 2 of them pools):
* ``evidence``: the bandit's per-venue evidence read (one exp for all);
* ``lead_probs``: exploration's distribution with the bonus and the boost;
* ``allocate``: the censored split of a dark-first wave across 2 pools.
Per outcome, on the report path:
* ``observe fill``: one Page-Hinkley update (no alarm);
* ``record_child``: VenueStats with the detector and the liquidity learner
  against the same without them (the learners' share is the difference).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np

from router.config import LearningConfig
from router.learning.changes import STREAM_FILL, PageHinkley
from router.learning.darkpool import CensoredLiquidity
from router.learning.venuestats import VenueStats
from router.routing.explore import lead_probabilities

N = 20_000
VENUES = ["LIT1", "LIT2", "DARK1", "DARK2"]
DARK = [False, False, True, True]
T0 = 1_000_000_000_000


def _time(fn: Callable[[int], object], n: int = N) -> tuple[float, float]:
    for i in range(500):
        fn(i)
    gc.disable()
    try:
        out = np.empty(n)
        clock = time.perf_counter_ns
        for i in range(n):
            t0 = clock()
            fn(i)
            out[i] = clock() - t0
    finally:
        gc.enable()
    return float(np.percentile(out, 50)) / 1e3, float(np.percentile(out, 99)) / 1e3


def _stats(online: bool) -> VenueStats:
    kw: dict[str, object] = {}
    if online:
        kw = {"detector": PageHinkley(len(VENUES)), "liquidity": CensoredLiquidity(len(VENUES)), "dark": DARK}
    st = VenueStats(VENUES, ["XYZ"], half_life_s=15.0, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    for i in range(2_000):
        v = int(rng.integers(len(VENUES)))
        q = 100 * int(rng.integers(5, 30))
        st.record_child(v, q, min(q, 100 * int(rng.integers(0, 30))), T0 + i * 1_000_000, None, False,
                        T0 + i * 1_000_000)
    return st


def test_online_learners_cost_per_order() -> None:
    rows: list[tuple[str, float, float]] = []
    st = _stats(True)
    plain = _stats(False)
    lc = LearningConfig(explore_uncertainty_bps=1.0)
    costs = [2.0, 2.5, 1.0, 3.0]
    now = T0 + 3_000_000_000

    rows.append(("evidence", *_time(lambda i: st.evidence(1, now + i))))
    ev = st.evidence(1, now)
    bonus = [1.0 * (1.0 - e) for e in ev]
    rows.append(("lead_probs, no bonus", *_time(lambda i: lead_probabilities(costs, [0, 1, 2, 3], 2, lc))))
    rows.append(("lead_probs, bonus + boost",
                 *_time(lambda i: lead_probabilities(costs, [0, 1, 2, 3], 2, lc, bonus, 4.0))))
    liq = st.liquidity
    assert liq is not None
    rows.append(("allocate, 2 pools, 1,500 sh", *_time(lambda i: liq.allocate([2, 3], 1_500))))
    # A fresh observation each time marks the pool's tail dirty: the split
    # then rebuilds it, as after a pool's child ends.
    rows.append(("observe + allocate", *_time(lambda i: (liq.observe(2, 1_000, 400), liq.allocate([2, 3], 1_500)))))
    ph = PageHinkley(len(VENUES), threshold=1e9)  # never alarms: the steady cost
    rng = np.random.default_rng(5)
    xs = rng.normal(0.5, 0.2, N + 500).tolist()
    rows.append(("page-hinkley observe", *_time(lambda i: ph.observe(2, STREAM_FILL, xs[i]))))
    rows.append(("record_child, pool, plain",
                 *_time(lambda i: plain.record_child(2, 1_000, 400, now, now + 1, True, now + i))))
    rows.append(("record_child, pool, learners",
                 *_time(lambda i: st.record_child(2, 1_000, 400, now, now + 1, True, now + i))))

    print()
    print(f"{'online learners':<32} {'p50 us':>8} {'p99 us':>8}")
    for name, p50, p99 in rows:
        print(f"{name:<32} {p50:8.2f} {p99:8.2f}")
        assert np.isfinite(p50) and np.isfinite(p99) and p50 > 0
    assert sum(liq.allocate([2, 3], 1_500)) == 15
