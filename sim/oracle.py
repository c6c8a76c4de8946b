"""The oracle policy of a scenario: the ML planner scored by the simulator's
hidden parameters instead of a model (``sor backtest --policies oracle``).

Results read as a share of the oracle say how much of what *knowing the
venues* is worth the router gets. The oracle knows, at each parent's
arrival, every venue's sim parameters in force (regimes included): a
pool's contra probability and size, its contra arrival rate, whether and
how far it leaks; a lit venue's half spread and fee. It reads the live
books from the same features the model reads (a lit venue's touch size).
It does not know the draws (whether contra is there for this parent), nor
what the sim's other takers will hit before its child arrives (so it
cannot see that a fading venue's displayed depth is gone), and it builds
its plan with the ML planner's own strategies: it is the best the
router's plan shapes can do with perfect venue knowledge, not the best
any routing could do.

Its rows follow the model's contract (``[V, 3]``: cost of a filled share
incl. fees, fill probability, 1 s markout, bps), so the planner's
expected-cost formula ranks the venues as it ranks the model's:

- a pool: cost its fee (a midpoint fill) plus its leak (what a fill there
  moves the mid against the parent, in bps), markout minus the leak
  decayed to 1 s (the scenario's impact half-life), fill
  probability the expected filled share of the parent in one rest: the
  contra present at arrival (``contra_prob``, geometric sizes) and the
  contra arriving during ``dark_rest_ms`` at ``taker_rate_hz``, half of it
  on our side, each taking ``E[min(size, qty)]``;
- a lit venue: cost its half spread plus fee, fill probability its touch
  over the parent's size, markout 0 (a lit fill's markout against the mid
  is the spread it paid, already in the cost).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from router.domain.decision import Decision
from router.domain.orders import ParentOrder
from router.domain.types import VenueKind
from router.features.catalogue import C_TOUCH
from router.routing.ml import MLPlanner
from sim.config import SimClusterConfig
from sim.exchange import SharedMarket

ORACLE = "oracle"


class OracleScorer:
    """A ``VenueScorer`` whose scores are the scenario's true parameters."""

    def __init__(self, cfg: SimClusterConfig, market: SharedMarket, impact_half_life_ms: float) -> None:
        self._cfg = cfg
        self._market = market
        self._venues = list(cfg.venues)
        self._rest_s = cfg.waterfall.dark_rest_ms / 1e3
        # The share of a leak still in the mid 1 s after the fill.
        self._decay_1s = 0.5 ** (1000.0 / impact_half_life_ms) if impact_half_life_ms > 0 else 1.0
        self.order: ParentOrder | None = None
        self._out = np.zeros((len(self._venues), 3))

    @property
    def version(self) -> str:
        return ORACLE

    @property
    def last_failure(self) -> str | None:
        return None

    def warm(self) -> None:
        return None

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.floating[Any]] | None:
        order = self.order
        if order is None:
            return None
        qty, now = float(order.qty), order.arrival_ns
        mid = self._market.mid_at(order.symbol, now)  # in ticks
        tick_bps = 1e4 / mid if mid > 0 else 0.0
        out = self._out
        for i, v in enumerate(self._venues):
            p = self._market.params(v.name, now)
            if v.kind is VenueKind.DARK:
                s = float(p.contra_size_mean)
                take = s * (1.0 - math.exp(-qty / s))  # E[min(size, qty)] for mean-s sizes
                expected = p.contra_prob * take + 0.5 * p.taker_rate_hz * self._rest_s * take
                leak = p.leak_ticks * tick_bps
                # A leak moves the mid at once, against what the parent
                # still has to buy: the cost of a share there is the fee
                # plus that move, as the model's labels charge it.
                out[i] = (v.take_fee_bps + leak, min(1.0, expected / qty), -leak * self._decay_1s)
            else:
                touch = float(features[i, C_TOUCH])
                out[i] = (p.half_spread_ticks * tick_bps + v.take_fee_bps, min(1.0, touch / qty), 0.0)
        return out


class OrderAware(Protocol):
    order: ParentOrder | None


class OrderAwarePlanner(MLPlanner):
    """The ML planner whose scorer or policy (``reader``) reads the parent
    being decided: the model's contract passes only its features, and the
    simulator's readers (the oracle, the RL experience's recorder) need the
    parent's size, time or ClOrdID."""

    def __init__(self, *args: Any, reader: OrderAware, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._reader = reader

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
        self._reader.order = order
        try:
            return super().decide(order, venues_up)
        finally:
            self._reader.order = None


class OraclePlanner(OrderAwarePlanner):
    """The ML planner with the oracle's scores and no exploration."""

    def __init__(self, cfg: SimClusterConfig, features: Any, market: SharedMarket) -> None:
        import msgspec

        sc = cfg.scenario
        self.oracle = OracleScorer(cfg, market, sc.impact_half_life_ms if sc is not None else 0.0)
        quiet = msgspec.structs.replace(cfg, learning=msgspec.structs.replace(cfg.learning, explore_budget_bps=0.0))
        super().__init__(quiet, features, self.oracle, reader=self.oracle)
