"""Market-data hot path: update throughput, per-update latency, allocation.

Prints figures and asserts only that the work was done, never on time (the
machine is shared and noisy). Run with ``pytest -s tests/perf/test_marketdata_bench.py``.

What was tried for set_level + commit_book (3 venues x 2 symbols, depth 5,
ring 1024, 200k updates, CPython 3.11, numpy 2.4, the 2-core dev box; the
``_NumpyIndexed`` baseline below is kept so the comparison can be re-run):

====================================================  ===============
variant                                               updates/s
====================================================  ===============
numpy scalar indexing, four separate book arrays,     ~270,000
slice copies into four ring arrays, no validation
flat ``memoryview`` casts of the same four arrays,    ~600,000
precomputed flat offsets, four slice copies
one packed ``[V, S, 4, depth]`` block and one packed  ~670,000
ring block: a commit is a single memoryview memmove
(public arrays are strided views of the blocks)
+ index check by one lookup in exact nested dicts     ~750,000
(``_lit_k[v][s]``, zero-cost ``try``) instead of
range comparisons, commit body inlined
====================================================  ===============

Where the time goes now (timeit, ns per call): set_level ~315, commit_book
~760 (of which the 4*depth memmove with its two slice objects ~170 and ten
memoryview item reads/writes ~30 each), apply_trade ~490. What is left is
CPython call and bytecode overhead; the next step would be batching a whole
FIX message per call, or a compiled extension. numpy scalar indexing costs
~100 ns per element access because it builds an index tuple and a numpy
scalar; a memoryview item access is a bounds check and a C load/store that
yields a plain int.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import numpy as np
import pytest

from router.market.rings import MarketData

pytestmark = pytest.mark.perf

N = 200_000
ALLOC_N = 10_000
VENUES = ["LIT1", "LIT2", "LIT3"]
SYMBOLS = ["AAPL", "MSFT"]
DEPTH = 5


def _updates(n: int) -> list[tuple[int, int, int, int, int, int]]:
    """Preallocated (v, s, side, level, px, sz), so the timed loop measures
    MarketData rather than argument arithmetic."""
    rng = np.random.default_rng(7)
    levels = rng.integers(0, DEPTH, n)
    dpx = rng.integers(0, 5, n)
    szs = rng.integers(1, 1_000, n)
    out = []
    for i in range(n):
        side = i & 1
        px = (19_000 - int(levels[i]) - int(dpx[i])) if side == 0 else (19_002 + int(levels[i]) + int(dpx[i]))
        out.append((i % 3, (i // 3) % 2, side, int(levels[i]), px, int(szs[i])))
    return out


def _make() -> MarketData:
    return MarketData(VENUES, [True] * 3, SYMBOLS, depth=DEPTH, book_capacity=1024, trade_capacity=4096)


class _NumpyIndexed:
    """Baseline for the docstring's table: the obvious implementation with
    numpy scalar indexing (no validation, so it flatters itself)."""

    def __init__(self, nv: int, ns: int, depth: int, cb: int) -> None:
        z = np.zeros
        self.cb = cb
        self.book = [z((nv, ns, depth), np.int64) for _ in range(4)]
        self.ring = [z((nv, ns, cb, depth), np.int64) for _ in range(4)]
        self.ring_ts, self.ring_mid2 = z((nv, ns, cb), np.int64), z((nv, ns, cb), np.int64)
        self.head, self.count, self.book_ts = (z((nv, ns), np.int64) for _ in range(3))

    def set_level(self, v: int, s: int, side: int, level: int, px: int, sz: int) -> None:
        if px <= 0 or sz <= 0:
            px = sz = 0
        self.book[2 * side][v, s, level] = px
        self.book[2 * side + 1][v, s, level] = sz

    def commit_book(self, v: int, s: int, ts_ns: int) -> None:
        h = int(self.head[v, s])
        for src, dst in zip(self.book, self.ring):
            dst[v, s, h] = src[v, s]
        bid, ask = int(self.book[0][v, s, 0]), int(self.book[2][v, s, 0])
        self.ring_mid2[v, s, h] = bid + ask if bid and ask else 0
        self.ring_ts[v, s, h] = ts_ns
        self.book_ts[v, s] = ts_ns
        self.head[v, s] = (h + 1) % self.cb
        if self.count[v, s] < self.cb:
            self.count[v, s] += 1


def _throughput(md: MarketData | _NumpyIndexed, updates: list[tuple[int, int, int, int, int, int]]) -> float:
    set_level, commit = md.set_level, md.commit_book
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for ts, (v, s, side, level, px, sz) in enumerate(updates, 1):
            set_level(v, s, side, level, px, sz)
            commit(v, s, ts)
        dt = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return len(updates) / (dt / 1e9)


def test_update_throughput_and_latency() -> None:
    updates = _updates(N)
    md = _make()
    _throughput(md, updates[:10_000])  # warm the specialising interpreter and the pages
    rates = [_throughput(md, updates) for _ in range(3)]
    rate = max(rates)

    # Latency per update, timed one at a time (the clock reads add ~50-100 ns).
    samples = np.empty(N, dtype=np.int64)
    clock = time.perf_counter_ns
    set_level, commit = md.set_level, md.commit_book
    gc.disable()
    try:
        for i, (v, s, side, level, px, sz) in enumerate(updates):
            t0 = clock()
            set_level(v, s, side, level, px, sz)
            commit(v, s, i + 1)
            samples[i] = clock() - t0
    finally:
        gc.enable()
    us = samples / 1e3
    print(f"\n  marketdata: set_level+commit  {N} updates  {rate:,.0f} updates/s  "
          f"p50 {np.percentile(us, 50):.2f} us p99 {np.percentile(us, 99):.2f} us  "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")

    base = _NumpyIndexed(3, 2, DEPTH, 1024)
    _throughput(base, updates[:10_000])
    base_rate = max(_throughput(base, updates) for _ in range(2))
    print(f"  baseline: numpy scalar indexing  {N} updates  {base_rate:,.0f} updates/s  "
          f"(MarketData x{rate / base_rate:.1f})")

    # Other entry points, for the features/engine budget.
    snap = ([19_000, 18_999, 18_998, 18_997, 18_996], [100, 200, 300, 400, 500],
            [19_002, 19_003, 19_004, 19_005, 19_006], [100, 200, 300, 400, 500])
    out = np.zeros(3)
    for name, fn in (
        ("apply_book (5x5 snapshot)", lambda i: md.apply_book(i % 3, 0, i, *snap)),
        ("apply_trade", lambda i: md.apply_trade(i % 3, 1, i, 19_001, 100, 1)),
        ("nbbo", lambda i: md.nbbo(i & 1)),
        ("touch_share", lambda i: md.touch_share(i & 1, 0, out)),
        ("depth_size (5 levels)", lambda i: md.depth_size(i & 1, 1, 5)),
    ):
        n = 50_000
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            for i in range(1, n + 1):
                fn(i)
            dt = time.perf_counter_ns() - t0
        finally:
            gc.enable()
        print(f"  marketdata: {name:<28} {n} calls  {n / (dt / 1e9):,.0f} calls/s  {dt / n / 1e3:.2f} us/call "
              f"(incl. ~0.1 us lambda)")

    assert md.ring_count.min() == 1024  # every (venue, symbol) ring wrapped
    assert int(md.ring_mid2[0, 0, 0]) > 0
    assert md.trade_count[:, 1].min() == 4096
    assert md.dropped_updates == 0


def test_update_allocation() -> None:
    updates = _updates(ALLOC_N)
    md = _make()
    out = np.zeros(3)
    tracemalloc.start()
    try:
        # Warm-up: the same work, unmeasured, so one-time costs (specialised
        # bytecode, freelists) stay out of the figures.
        for ts, (v, s, side, level, px, sz) in enumerate(updates, 1):
            md.set_level(v, s, side, level, px, sz)
            md.commit_book(v, s, ts)
        for i in range(ALLOC_N):
            md.nbbo(i & 1)
            md.touch_share(i & 1, i & 1, out)
        gc.collect()
        flt = [tracemalloc.Filter(True, "*router/marketdata.py")]
        before = tracemalloc.take_snapshot().filter_traces(flt)
        tracemalloc.reset_peak()
        cur0 = tracemalloc.get_traced_memory()[0]
        for ts, (v, s, side, level, px, sz) in enumerate(updates, ALLOC_N + 1):
            md.set_level(v, s, side, level, px, sz)
            md.commit_book(v, s, ts)
        cur1, peak = tracemalloc.get_traced_memory()
        for i in range(ALLOC_N):
            md.nbbo(i & 1)
            md.touch_share(i & 1, i & 1, out)
        cur2 = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.take_snapshot().filter_traces(flt)
    finally:
        tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    grown = [st for st in stats if st.size_diff > 0]
    size_diff = sum(st.size_diff for st in stats)
    count_diff = sum(st.count_diff for st in stats)
    print(f"\n  marketdata: alloc  {ALLOC_N} updates  {(cur1 - cur0) / ALLOC_N:.2f} bytes/update retained  "
          f"transient peak {peak - cur0} bytes  |  {ALLOC_N} nbbo+touch_share  "
          f"{(cur2 - cur1) / ALLOC_N:.2f} bytes/call retained")
    print(f"  marketdata: tracemalloc compare_to (router/marketdata.py)  {size_diff:+d} bytes  "
          f"{count_diff:+d} blocks" + "".join(f"\n    {st}" for st in grown[:5]))
    assert md.ring_count.sum() == 6 * 1024
    assert md.book_ts.max() == 2 * ALLOC_N
