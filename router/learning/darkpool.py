"""How much each dark pool holds: a censored estimate with forgetting, and
the allocation it implies (after Ganchev, Kearns, Nevmyvaka and Vaughan,
"Censored exploration and the dark pool problem", CACM 2010).

A dark child of s units that fills f < s says the pool had exactly f for
us; one that fills completely says only that the pool had *at least* s: a
censored observation, not a measurement. Treating a full fill as "the pool
had s" (or an unfilled child as "the pool is empty" when it rested too
briefly) biases every estimate downward, so the pool that was sent the most
looks the deepest and the others never get a chance.

Per pool, liquidity in whole units (``unit`` shares, a lot) is estimated by
its Kaplan-Meier tail ``T(k) = P(L >= k) = prod_{j<k} (1 - h(j))`` with the
discrete hazard ``h(j) = (d_j + a h0) / (r_j + a)``: ``d_j`` the exact
observations at j, ``r_j`` the observations at risk at j (exact at >= j,
or censored above j), shrunk toward a prior hazard ``h0`` with weight
``a`` where a level has little data. Each observation of a pool first
multiplies that pool's counts by ``forget`` (an effective memory of
``1 / (1 - forget)`` children), and a detected change (``router.learning.
changes``) multiplies them by a small keep factor: the estimate follows a
pool whose liquidity moved instead of averaging over the day.

Allocation is the greedy of the paper: the v-th unit sent to pool i fills
with probability ``T_i(v)``, which falls with v, so the expected-fill
maximising split of Q units gives each unit to the pool with the highest
next ``T``; with every ``T_i`` non-increasing that is the Q largest values
across pools, counted per pool.

Sizes past ``max_units`` share the last level: the estimate says nothing
finer there, and the arrays stay small (one order's allocation is a few
microseconds of numpy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CensoredLiquidity:
    """Kaplan-Meier tails of each pool's liquidity, with forgetting."""

    def __init__(self, n_venues: int, *, max_units: int = 64, unit: int = 100, forget: float = 0.98,
                 prior_hazard: float = 0.1, prior_weight: float = 1.0) -> None:
        if max_units < 1 or unit < 1:
            raise ValueError("max_units and unit must be >= 1")
        if not 0.0 < forget <= 1.0:
            raise ValueError(f"forget must be in (0, 1], got {forget}")
        if not 0.0 < prior_hazard < 1.0 or prior_weight <= 0.0:
            raise ValueError("prior_hazard must be in (0, 1) and prior_weight > 0")
        self.max_units = max_units
        self.unit = unit
        self.forget = float(forget)
        self.prior_hazard = float(prior_hazard)
        self.prior_weight = float(prior_weight)
        nb = max_units + 1  # levels 0..max_units
        self.exact = np.zeros((n_venues, nb))
        """d_j: decayed count of children that filled exactly j units (j < sent)."""
        self.at_risk = np.zeros((n_venues, nb))
        """r_j: decayed count of children whose liquidity is known to be >= j."""
        self.observations = np.zeros(n_venues)
        """Decayed count of children behind each pool's estimate."""
        self._tail = np.ones((n_venues, nb))
        self._dirty = np.ones(n_venues, dtype=bool)

    def units(self, qty: int) -> int:
        return min(qty // self.unit, self.max_units)

    def observe(self, v: int, sent_qty: int, filled_qty: int) -> None:
        """One finished dark child: ``filled < sent`` is an exact
        observation of the pool's liquidity, a full fill a censored one."""
        s = self.units(sent_qty)
        if s <= 0:
            return
        f = min(self.units(filled_qty), s)
        g = self.forget
        if g < 1.0:
            self.exact[v] *= g
            self.at_risk[v] *= g
            self.observations[v] *= g
        if filled_qty < sent_qty:
            self.exact[v, f] += 1.0
            self.at_risk[v, : f + 1] += 1.0
        else:
            # L >= s: no event at any level below s; whether L = s is
            # unknown, so level s is not at risk, unless the child was
            # larger than the last level (then L is past it too).
            self.at_risk[v, : s + 1 if sent_qty // self.unit > s else s] += 1.0
        self.observations[v] += 1.0
        self._dirty[v] = True

    def shrink(self, v: int, keep: float) -> None:
        """Keep only ``keep`` of the pool's evidence (a detected change)."""
        self.exact[v] *= keep
        self.at_risk[v] *= keep
        self.observations[v] *= keep
        self._dirty[v] = True

    def tail(self, v: int) -> np.ndarray:
        """``T(k) = P(L >= k)`` for k = 0..max_units (a view: do not keep it
        past the next observation)."""
        if self._dirty[v]:
            a = self.prior_weight
            h = (self.exact[v] + a * self.prior_hazard) / (self.at_risk[v] + a)
            t = self._tail[v]
            t[0] = 1.0
            np.cumprod(1.0 - h[:-1], out=t[1:])
            self._dirty[v] = False
        return self._tail[v]

    def expected_fill(self, v: int, qty: int) -> float:
        """Expected units filled by sending ``qty`` shares to pool ``v``."""
        n = self.units(qty)
        return float(self.tail(v)[1 : n + 1].sum()) if n else 0.0

    def allocate(self, pools: Sequence[int], qty: int) -> list[int]:
        """Units for each of ``pools`` (same order) out of ``qty`` shares:
        the greedy, expected-fill maximising split. Ties go to the pool
        listed first (the planner lists them by rank)."""
        # Each pool's levels stop at max_units; the order does not.
        q = qty // self.unit
        if q <= 0 or not pools:
            return [0] * len(pools)
        m = self.max_units
        # Level k of each pool (k = 1..m) is its k-th unit's fill
        # probability; the q largest across pools is the greedy split.
        marg = np.stack([self.tail(v)[1:] for v in pools])
        flat = marg.ravel()
        if q >= flat.size:
            return [m] * len(pools)
        # A stable sort on the negated values keeps the earlier pool (and
        # lower level) first among equals.
        top = np.argsort(-flat, kind="stable")[:q]
        return np.bincount(top // m, minlength=len(pools)).tolist()  # type: ignore[no-any-return]
