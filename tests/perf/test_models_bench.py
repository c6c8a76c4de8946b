"""What the learning loop costs on the order path, in-process: one ML
decision (features, scoring, planning) with exploration, without it, and
with a challenger in shadow (two decisions per parent), on the shipped
model over a real feature engine fed by the backtest's market. Prints
p50/p99 (us); asserts only that the work was done (README, the learning
loop: shadow's price)."""

from __future__ import annotations

import gc
import logging
import time

import msgspec
import numpy as np

from router.config import LearningConfig
from router.domain.events import ModelsChanged
from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from router.routing.models import ModelRouter
from sim.backtest import Backtest
from sim.report import make_scorer, scenario_config

N = 5_000
WARMUP = 500


def _stats(ns: list[int]) -> tuple[float, float]:
    a = np.asarray(ns[WARMUP:], dtype=np.float64) / 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def test_decision_cost_with_exploration_and_shadow() -> None:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    cfg = scenario_config("calm")
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=40, seed=1)
    bt.run()  # books, prints and venue statistics as a session leaves them
    up = frozenset(v.name for v in bt.cfg.venues)
    results = {}
    for label, budget, shadow in (("ml, exploration off", 0.0, False), ("ml, exploring (default budget)", 0.1, False),
                                  ("ml + challenger in shadow", 0.1, True)):
        c = msgspec.structs.replace(bt.cfg, learning=LearningConfig(explore_budget_bps=budget))
        r = ModelRouter(c, bt.fe, make_scorer(c, None), clock_ns=time.perf_counter_ns)
        if shadow:
            twin = make_scorer(c, None)
            r.stage(_Renamed(twin, "twin-1"))
            assert r.apply_models(ModelsChanged(champion=r.model_version or "", challenger="twin-1", mode="shadow",
                                                who="bench", ts_ns=0)) is None
        ns: list[int] = []
        clock = time.perf_counter_ns
        gc.disable()
        try:
            for i in range(N):
                o = ParentOrder(order_id=f"P{i}", session="OMS", cl_ord_id=f"c{i}", symbol="XYZ", side=Side.BUY,
                                qty=800, ord_type=OrdType.LIMIT, price_ticks=2010, tif=TimeInForce.IOC,
                                arrival_ns=bt.now)
                t0 = clock()
                d = r.decide(o, up)
                ns.append(clock() - t0)
                assert d.plan.waves and (d.shadow is not None) == shadow
        finally:
            gc.enable()
        results[label] = _stats(ns)
    for label, (p50, p99) in results.items():
        print(f"\n  {label:<36} p50 {p50:7.1f} us  p99 {p99:7.1f} us")
    base = results["ml, exploration off"][0]
    print(f"  shadow costs {results['ml + challenger in shadow'][0] - results['ml, exploring (default budget)'][0]:.1f}"
          f" us a parent at p50; exploring {results['ml, exploring (default budget)'][0] - base:.1f} us")


class _Renamed:
    def __init__(self, inner: object, version: str) -> None:
        self._inner = inner
        self.version = version

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
