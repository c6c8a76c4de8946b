"""Training data: the scenarios played by an exploring policy.

``ExploringPlanner`` sends each parent's first wave to a random subset of the
venues up, with random weights, shaped as the ML planner shapes slices (IOC
at the limit on lit venues, a bounded DAY rest in dark pools), then sweeps
the residual down the static list. Random first waves make every venue's
outcome observable in every market state, which a greedy policy would not.

Each first-wave child becomes one row: its venue's feature row at the
parent's arrival (``router.features``, the serving code) and its outcome:
filled fraction, cost of its fills in bps against the arrival mid including
the venue's fee, and the quantity-weighted 1 s markout of its fills.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.dataset import Dataset
from models.labels import label_rows
from models.progress import Progress
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import OrdType, TimeInForce, VenueKind
from router.routing.policy import RulePlanner
from sim.backtest import Backtest
from sim.config import SimClusterConfig


class ExploringPlanner(RulePlanner):
    name = "explore"

    def __init__(self, cfg: SimClusterConfig, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 4242])
        self._lit = {v.name for v in cfg.venues if v.kind is VenueKind.LIT}
        self._static = list(cfg.waterfall.venues)
        self._rest_ms = cfg.waterfall.dark_rest_ms

    def _slice(self, venue: str, weight: float, limit: int | None) -> Slice:
        if venue in self._lit:
            return Slice(venue=venue, weight=weight, tif=TimeInForce.IOC, limit_ticks=limit)
        return Slice(venue=venue, weight=weight, tif=TimeInForce.DAY, limit_ticks=limit, timeout_ms=self._rest_ms)

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        limit = order.price_ticks if order.ord_type is OrdType.LIMIT else None
        up = sorted(venues_up)
        rng = self._rng
        # Mostly one or two venues, so each row's outcome is mostly its own.
        k = min(len(up), 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1))
        chosen = list(rng.choice(up, size=k, replace=False))
        weights = rng.dirichlet(np.ones(k)) if k > 1 else np.ones(1)
        waves = [Wave(slices=tuple(self._slice(str(v), float(w), limit) for v, w in zip(chosen, weights)))]
        waves += [Wave(slices=(Slice(venue=v, tif=TimeInForce.IOC, limit_ticks=limit),))
                  for v in self._static if v in venues_up and v in self._lit]
        return Plan(waves=tuple(waves), name="explore", final="cancel")


def explore_run(cfg: SimClusterConfig, seed: int, parents: int | None = None) -> Dataset:
    """One exploring backtest of a scenario; its first-wave children as rows."""
    bt = Backtest(cfg, "explore", planner=ExploringPlanner(cfg, seed), record=True, seed=seed)
    bt.run()
    return label_rows(bt.children.values(), bt.results, {k: r.features for k, r in bt.rows.items()},
                    {v.name: i for i, v in enumerate(bt.cfg.venues)}, {v.name: v.take_fee_bps for v in bt.cfg.venues},
                    bt.true_mid, bt.cfg.scenario.name if bt.cfg.scenario else "")


def explore(cfgs: Iterable[SimClusterConfig], seeds: Iterable[int], parents: int | None = None,
            progress: bool = True) -> Dataset:
    jobs = [(c, s) for c in cfgs for s in seeds]
    bar = Progress(len(jobs), "simulating") if progress else None
    parts = []
    for c, s in jobs:
        parts.append(explore_run(c, s, parents))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Dataset.concat(parts)
