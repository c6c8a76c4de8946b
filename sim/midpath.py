"""A seeded random walk of the mid price that is a pure function of time.

Several processes (each simulated venue, the simulated OMS, a backtest) build
a ``MidPath`` from the same parameters and agree on the mid at any instant
without talking to each other. That only works if the value at step ``n``
does not depend on which steps were asked for before, so the increments are
generated in fixed-size chunks, chunk ``k`` from its own generator seeded
with ``(seed, k)``, and chunks are always produced in order.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import numpy.typing as npt

__all__ = ["MidPath"]

# 16k steps per chunk: big enough that generator construction (~30 us) is
# noise next to the draws, small enough that a cached chunk is 128 KiB.
_CHUNK_STEPS = 16_384
# Cumulative arrays kept for recently used chunks: queries cluster in time, so
# a handful covers the hot window while memory stays O(steps / chunk).
_CACHED_CHUNKS = 8


class MidPath:
    """Mid price in whole ticks: ``start_ticks`` plus a random walk of rounded
    ``normal(0, vol_ticks)`` steps, one step every ``step_ns`` after ``epoch_ns``.

    The walk itself is unbounded; what ``mid_at`` returns is clamped to
    ``floor_ticks`` so prices stay positive. Clamping the output rather than
    the walk keeps the path a pure sum of its increments.

    Cost: the first query past the furthest point seen so far draws every
    step up to it once, vectorised (a day of 1 ms steps is a few seconds);
    after that any query is O(1) within a cached chunk, and memory grows by
    one int per 16k steps.
    """

    __slots__ = (
        "_chunk_cache",
        "_chunk_totals",
        "epoch_ns",
        "floor_ticks",
        "seed",
        "start_ticks",
        "step_ns",
        "vol_ticks",
    )

    def __init__(
        self,
        seed: int,
        start_ticks: int,
        step_ns: int,
        vol_ticks: float,
        epoch_ns: int,
        floor_ticks: int = 10,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if step_ns <= 0:
            raise ValueError(f"step_ns must be > 0, got {step_ns}")
        if vol_ticks < 0:
            raise ValueError(f"vol_ticks must be >= 0, got {vol_ticks}")
        self.seed = seed
        self.start_ticks = start_ticks
        self.step_ns = step_ns
        self.vol_ticks = float(vol_ticks)
        self.epoch_ns = epoch_ns
        self.floor_ticks = floor_ticks
        # _chunk_totals[k] = sum of all increments in chunks 0..k-1 (so [0] == 0).
        self._chunk_totals: list[int] = [0]
        self._chunk_cache: OrderedDict[int, npt.NDArray[np.int64]] = OrderedDict()

    def steps_at(self, ts_ns: int) -> int:
        """Number of increments applied by ``ts_ns``."""
        return max(0, (ts_ns - self.epoch_ns) // self.step_ns)

    def mid_at(self, ts_ns: int) -> int:
        """The mid in ticks at ``ts_ns`` (never below ``floor_ticks``)."""
        return max(self.floor_ticks, self.start_ticks + self._walk(self.steps_at(ts_ns)))

    def _walk(self, n: int) -> int:
        """Sum of the first ``n`` increments."""
        k, r = divmod(n, _CHUNK_STEPS)
        self._extend_totals(k)
        total = self._chunk_totals[k]
        if r:
            total += int(self._chunk_cumsum(k)[r - 1])
        return total

    def _extend_totals(self, k: int) -> None:
        # A far-ahead query pays the draws of every chunk before it once (about
        # 30 ns a step); chunks only passed through are summed, not cached.
        while len(self._chunk_totals) <= k:
            j = len(self._chunk_totals) - 1
            cached = self._chunk_cache.get(j)
            chunk_sum = int(cached[-1]) if cached is not None else int(self._increments(j).sum())
            self._chunk_totals.append(self._chunk_totals[j] + chunk_sum)

    def _chunk_cumsum(self, k: int) -> npt.NDArray[np.int64]:
        cached = self._chunk_cache.get(k)
        if cached is not None:
            self._chunk_cache.move_to_end(k)
            return cached
        cum = np.cumsum(self._increments(k), dtype=np.int64)
        self._chunk_cache[k] = cum
        if len(self._chunk_cache) > _CACHED_CHUNKS:
            self._chunk_cache.popitem(last=False)
        return cum

    def _increments(self, k: int) -> npt.NDArray[np.int64]:
        rng = np.random.default_rng([self.seed, k])
        return np.rint(rng.normal(0.0, self.vol_ticks, _CHUNK_STEPS)).astype(np.int64)
