"""FeatureEngine.compute: latency for one order over all venues, and memory.

Prints p50/p99 (us) and the bytes each compute leaves allocated, and asserts
only that the values are finite: this machine is shared and noisy, so time
is never asserted. Run with ``pytest -s tests/perf/test_features_bench.py``.

Setup: 2 lit venues + 1 dark, depth 5, 20 symbols; the lit venues commit a
book every 25 ms each (40 rows/s per venue: ~200 rows in the 5 s window)
and a trade every third commit, on a random walk. Scenarios:

* quiet: nothing changed since the previous order (the symbol's market block
  is reused; only staleness, order and venue columns are computed);
* busy: one commit (+ trades) on each lit venue between orders; compute
  reads those rows itself. (A ``catch_up`` per market-data message, which
  moved that reading off the order path, was never wired into the daemon
  and was removed in issue 11; its figures below are history.)

What each optimisation bought (p50, 3 venues, on the 2-core dev VM where a
plain Python add-in-a-loop costs ~25 ns; figures move by +-20 % run to run):

* design choices measured by micro-benchmark only: flat memoryviews over
  the MarketData/VenueStats arrays instead of numpy scalar indexing (~25 ns
  vs ~100 ns a read); incremental windows (read positions in the rings,
  running sums, eviction) instead of rescanning the ~200 rows per venue in
  the 5 s window per order (~100 ns a row: ~40 us saved per order).
* first working version (generic per-array offsets, a sync method call per
  ring per compute, per-venue VenueStats reads with 3 exp() each, every
  column recomputed per call): ~36 us quiet.
* MarketData layout offsets resolved at start-up, the "did a ring move"
  checks inlined, VenueStats forward decay (one exp() per order for all
  venues, (sum + c)/(weight + pw_g) with no per-sum multiply) in one batched
  read_all instead of 15 method calls (5.3 -> 2.3 us): 36 -> ~14 us quiet.
* per-symbol market block cached until a ring moves, a window row expires or
  the ATR second turns: quiet 14 -> ~6.3 us; busy then measured ~40 us.
* ATR's completed buckets cached per second (only the current bucket per
  rebuild), book catch-up in one pass with the window state in locals:
  busy ~40 -> ~32 us, ~23 us with catch_up.
* constant columns (fee, dark, a dark venue's touch/staleness) written once
  at construction: ~0.2 us.
* tried and dropped, no measurable change: packing VenueStats' 7 arrays
  into one block per cell for cache locality.

Last run (p50 / p99 us): quiet 6.4 / 11; busy 32 / 45; busy with catch_up
23 / 35, plus catch_up 6.3 / 10 per market-data message; 0.1 B retained per
compute (noise: nothing is kept), transient peak < 1 KB.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from router.features.engine import FeatureEngine
from router.learning.venuestats import VenueStats
from router.market.rings import MarketData

N = 20_000
WARMUP = 2_000
MS = 1_000_000
S = 1_000_000_000
SYMBOLS = [f"S{i:02d}" for i in range(20)]
SYM = 7


class Feed:
    """A deterministic random-walk feed for one symbol on two lit venues."""

    def __init__(self, md: MarketData, seed: int = 1) -> None:
        self.md = md
        self.rng = random.Random(seed)
        self.t = 1_000 * S
        self.mid = 10_000
        self.i = 0

    def step(self) -> int:
        """One commit on the next lit venue (and a trade every third); returns it."""
        self.t += 12_500_000
        self.mid += self.rng.choice((-1, 0, 0, 1))
        v = self.i % 2
        m = self.mid
        sz = 100 + self.i % 50
        self.md.apply_book(v, SYM, self.t, [m - 1, m - 2, m - 3, m - 4, m - 5], [sz, 200, 300, 400, 500],
                           [m + 1, m + 2, m + 3, m + 4, m + 5], [300, sz, 200, 100, 100])
        if self.i % 3 == 0:
            self.md.apply_trade(v, SYM, self.t, m + 1, 100, 1 if self.i % 2 else -1)
        self.i += 1
        return v


def _setup() -> tuple[MarketData, VenueStats, FeatureEngine, Feed]:
    md = MarketData(["LIT1", "LIT2", "DARK"], [True, True, False], SYMBOLS)
    st = VenueStats(md.venues, md.symbols)
    fe = FeatureEngine(md, st, [0.30, 0.25, 0.10], {s: 5e6 for s in SYMBOLS})
    feed = Feed(md)
    for i in range(2_000):  # fill the rings and windows
        feed.step()
        if i % 10 == 0:
            st.record_child(i % 3, 100 + i % 900, i % 100, feed.t - 3 * MS, feed.t - MS, i % 4 == 0, feed.t)
            st.record_fill(i % 3, SYM, 1, feed.mid, 100, feed.t)
            st.update_markouts(feed.t, lambda s: 2 * feed.mid)
    return md, st, fe, feed


def _report(name: str, samples_ns: list[int]) -> None:
    a = np.asarray(samples_ns[WARMUP:], dtype=np.float64) / 1e3
    print(f"\n  {name:<46} n={a.size:>6}  p50 {np.percentile(a, 50):7.2f} us  "
          f"p99 {np.percentile(a, 99):7.2f} us  max {a.max():8.1f} us")


def _timed(before: Callable[[int], None], fn: Callable[[], object], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(n):
            before(i)
            t0 = clock()
            fn()
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def test_compute_quiet_market() -> None:
    _, _, fe, feed = _setup()
    now = feed.t
    out = fe.compute(SYM, 1, 500, True, feed.mid + 2, True, now)
    samples = _timed(lambda i: None, lambda: fe.compute(SYM, 1, 500, True, feed.mid + 2, True, now), N)
    _report("compute, quiet market (block reused)", samples)
    assert np.isfinite(out).all()


def test_compute_busy_market() -> None:
    _, _, fe, feed = _setup()
    fe.compute(SYM, 1, 500, True, feed.mid + 2, True, feed.t)

    def two_commits(i: int) -> None:
        feed.step()
        feed.step()

    samples = _timed(two_commits, lambda: fe.compute(SYM, 1, 500, True, feed.mid + 2, True, feed.t), N)
    _report("compute, 1 commit/lit venue since last order", samples)
    assert np.isfinite(fe.out).all()
    assert fe.resyncs == 0


def test_compute_allocations() -> None:
    _, _, fe, feed = _setup()
    n = 5_000

    def run(busy: bool) -> tuple[float, int]:
        for _ in range(200):  # warm every path and cache first
            if busy:
                feed.step()
                feed.step()
            fe.compute(SYM, 1, 500, True, feed.mid + 2, True, feed.t)
        gc.collect()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(n):
                if busy:
                    feed.step()
                    feed.step()
                fe.compute(SYM, 1, 500, True, feed.mid + 2, True, feed.t)
            cur, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return (cur - base) / n, peak - base

    quiet_retained, quiet_peak = run(False)
    print(f"\n  compute, quiet: retained {quiet_retained:.2f} B/call, transient peak {quiet_peak} B")
    busy_retained, busy_peak = run(True)
    # The busy run includes the feed's own apply_book calls in the window.
    print(f"  compute + 2 commits, busy: retained {busy_retained:.2f} B/call, transient peak {busy_peak} B")
    assert np.isfinite(fe.out).all()
