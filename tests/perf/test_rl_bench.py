"""The RL planner's cost per decision against the ML planner's, in process.

Both planners decide the same parents on the same market: ``calm`` after a
100-parent backtest has filled the books and venue statistics. Prints p50 /
p99 (us) of ``decide`` and of the policy's own share (state, one batched
ONNX run of the Q-model over the six actions, the choice), and asserts
only that the decisions were made: time is never asserted. Run with
``pytest -s tests/perf/test_rl_bench.py``.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from sim.backtest import Backtest
from sim.report import make_scorer, scenario_config

N = 3_000
Q_MODEL = Path(__file__).resolve().parents[2] / "models" / "rl" / "q.onnx"


def _orders(bt: Backtest) -> list[ParentOrder]:
    return [ParentOrder(order_id=f"B{i}", session="OMS", cl_ord_id=f"b{i}", symbol="XYZ",
                        side=Side.BUY if i % 2 else Side.SELL, qty=500 + 100 * (i % 25), ord_type=OrdType.LIMIT,
                        price_ticks=2012 if i % 2 else 1988, tif=TimeInForce.IOC, arrival_ns=bt.now)
            for i in range(N)]


def _time(bt: Backtest) -> tuple[np.ndarray, int]:
    orders = _orders(bt)
    up = frozenset(v.name for v in bt.cfg.venues)
    for o in orders[:200]:
        bt.planner.decide(o, up)
    out = np.empty(N)
    chose = 0
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i, o in enumerate(orders):
            t0 = clock()
            d = bt.planner.decide(o, up)
            out[i] = clock() - t0
            chose += getattr(d, "action_values", None) is not None
    finally:
        gc.enable()
    return out / 1e3, chose


@pytest.mark.skipif(not Q_MODEL.exists(), reason="no shipped Q-model (sor train-rl writes models/rl/q.onnx)")
def test_rl_decision_cost_against_ml() -> None:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    cfg = scenario_config("calm")
    rows = []
    for pol in ("ml", "rl"):
        bt = Backtest(cfg, pol, make_scorer(cfg, None), parents=100, seed=1)
        bt.run()
        t, chose = _time(bt)
        rows.append((pol, float(np.percentile(t, 50)), float(np.percentile(t, 99)), chose))
    print(f"\n{'planner':<8} {'decide p50 us':>14} {'p99 us':>8}  decisions the policy chose")
    for pol, p50, p99, chose in rows:
        print(f"{pol:<8} {p50:14.1f} {p99:8.1f}  {chose}/{N}")
    assert rows[0][3] == 0 and rows[1][3] > 0
    print(f"rl - ml at p50: {rows[1][1] - rows[0][1]:+.1f} us")
