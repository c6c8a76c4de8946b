"""Experience for the RL planner's Q-function (``models/rl.py``): backtests
in which each parent's action (``router.routing.rl.ACTIONS``) is drawn
uniformly at random, so every action is tried in every kind of state, and
each parent's state, action and shortfall are kept."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from router.domain.orders import ParentOrder
from router.routing.rl import ACTIONS, N_ACTIONS, state
from sim.backtest import Backtest
from sim.oracle import OrderAwarePlanner
from sim.report import make_scorer, scenario_config


@dataclass
class Experience:
    states: list[npt.NDArray[np.float32]] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    shortfalls: list[float] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    """scenario:seed of each row (validation splits by run, never by row)."""


class _RandomPolicy:
    """Uniform over the actions; keeps what it saw per ClOrdID."""

    version = "random"

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 4242])
        self.order: ParentOrder | None = None
        self.seen: dict[str, tuple[npt.NDArray[np.float32], int]] = {}

    def choose(self, feats: npt.NDArray[np.float32], rows: Sequence[Sequence[float]], costs: Sequence[float],
               dark: Sequence[bool], qty: int) -> tuple[str, int | None, npt.NDArray[np.float64]] | None:
        x = state(feats, rows, costs, dark, qty)
        a = int(self._rng.integers(N_ACTIONS))
        if self.order is not None:
            self.seen[self.order.cl_ord_id] = (x, a)
        strategy, rest = ACTIONS[a]
        return strategy, rest, np.full(N_ACTIONS, np.nan)


def _recording(cfg: Any, features: Any, *, scorer: Any, policy: _RandomPolicy) -> OrderAwarePlanner:
    return OrderAwarePlanner(cfg, features, scorer, policy=policy, reader=policy)


def collect(scenarios: Sequence[str], seeds: Sequence[int], parents: int | None = None,
            model_path: str | None = None, progress: Any = None) -> Experience:
    exp = Experience()
    for name in scenarios:
        cfg = scenario_config(name)
        for seed in seeds:
            scorer = make_scorer(cfg, model_path)
            pol = _RandomPolicy(seed)
            bt = Backtest(cfg, "ml", scorer, parents=parents, seed=seed,
                          planner_factory=functools.partial(_recording, scorer=scorer, policy=pol))
            run = bt.run()
            for p in run.parents:
                got = pol.seen.get(p.cl_ord_id)
                if got is None:
                    continue  # not planned by the model (a fallback): no action was taken
                exp.states.append(got[0])
                exp.actions.append(got[1])
                exp.shortfalls.append(p.shortfall_bps())
                exp.groups.append(f"{name}:{seed}")
            if progress is not None:
                progress(name, seed, len(exp.actions))
    return exp
