"""The oracle policy: scores from the scenario's hidden parameters."""

from __future__ import annotations

import numpy as np
import pytest

from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from router.features.catalogue import C_TOUCH, N_FEATURES
from sim.backtest import EPOCH_NS, Backtest
from sim.oracle import ORACLE, OraclePlanner
from sim.report import scenario_config

S = 1_000_000_000


def _order(qty: int, at_ns: int) -> ParentOrder:
    return ParentOrder(order_id="O1", session="OMS", cl_ord_id="P1", symbol="XYZ", side=Side.BUY, qty=qty,
                       ord_type=OrdType.LIMIT, price_ticks=2100, tif=TimeInForce.IOC, arrival_ns=at_ns)


def test_scores_follow_the_regime_in_force() -> None:
    bt = Backtest(scenario_config("swap_pools"), ORACLE, seed=1)
    assert isinstance(bt.planner, OraclePlanner)
    sc = bt.planner.oracle
    names = [v.name for v in bt.cfg.venues]
    d1, d2, lit1 = names.index("DARK1"), names.index("DARK2"), names.index("LIT1")
    feats = np.zeros((len(names), N_FEATURES), dtype=np.float32)
    feats[lit1, C_TOUCH] = 500.0
    assert sc.score(feats) is None, "no order, no score"
    sc.order = _order(1000, EPOCH_NS + 10 * S)
    before = np.array(sc.score(feats))
    mid = bt.market.mid_at("XYZ", EPOCH_NS + 10 * S)
    leak_bps = 2 * 1e4 / mid
    # Before the swap DARK2 leaks two ticks: its share costs the fee plus the move.
    assert before[d2, 0] == pytest.approx(0.10 + leak_bps)
    assert before[d1, 0] == pytest.approx(0.10) and before[d1, 2] == 0.0
    assert before[d2, 2] == pytest.approx(-leak_bps * 0.25), "the impact halves every 500 ms: a quarter at 1 s"
    assert before[lit1, 1] == pytest.approx(0.5), "touch over size"
    assert 0.0 < before[d2, 1] < before[d1, 1] <= 1.0, "DARK1 is the deeper pool before the swap"
    sc.order = _order(1000, EPOCH_NS + 60 * S)
    after = np.array(sc.score(feats))
    assert after[d1, 0] > after[d2, 0] and after[d2, 1] > after[d1, 1], "after the swap the roles are swapped"


def test_the_oracle_keeps_off_the_leaking_pool_and_does_not_explore() -> None:
    bt = Backtest(scenario_config("swap_pools"), ORACLE, seed=1, parents=40)  # all before the swap
    res = bt.run()
    by_venue: dict[str, int] = {}
    for p in res.parents:
        for _, venue, q, _ in p.fills:
            by_venue[venue] = by_venue.get(venue, 0) + q
    dark1 = next(v.last_mkt for v in bt.cfg.venues if v.name == "DARK1")
    dark2 = next(v.last_mkt for v in bt.cfg.venues if v.name == "DARK2")
    assert by_venue.get(dark1, 0) > 0 and by_venue.get(dark2, 0) == 0, by_venue
    d = bt.planner.decide(_order(1000, bt.now), frozenset(v.name for v in bt.cfg.venues))
    assert d.model_version == ORACLE and d.propensity == 1.0 and d.lead_probs is None, "no exploration"
    assert d.ranking[0] == "DARK1"
