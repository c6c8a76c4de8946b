from __future__ import annotations

import numpy as np
import pytest

from router.domain.types import OrdType, Side, TimeInForce
from sim.book import Fill, SubmitResult
from sim.dark import CONTRA_ID, CONTRA_OWNER, DarkPool

BUY, SELL = Side.BUY, Side.SELL
LMT, MKT = OrdType.LIMIT, OrdType.MARKET
DAY, IOC = TimeInForce.DAY, TimeInForce.IOC


def _pool(prob: float, size_mean: int = 1_000_000_000, seed: int = 0, min_qty: int = 1) -> DarkPool:
    return DarkPool(
        np.random.default_rng(seed), contra_prob=prob, contra_size_mean=size_mean, min_qty=min_qty
    )


def test_fills_at_mid_when_within_limit() -> None:
    pool = _pool(1.0)
    r = pool.submit("b", "r", BUY, 300, LMT, 101, IOC, mid_ticks=100, ts_ns=0)
    assert r == SubmitResult(
        fills=[Fill("b", CONTRA_ID, CONTRA_OWNER, "r", 300, 100)], rested_qty=0, canceled_qty=0
    )
    # Limit exactly at the mid is within the limit.
    assert pool.submit("s", "r", SELL, 10, LMT, 100, IOC, 100, 0).filled_qty == 10
    # Market orders always qualify.
    assert pool.submit("m", "r", SELL, 10, MKT, None, IOC, 100, 0).fills[0].price_ticks == 100


def test_no_fill_when_mid_outside_limit() -> None:
    pool = _pool(1.0)
    r = pool.submit("b", "r", BUY, 300, LMT, 99, IOC, mid_ticks=100, ts_ns=0)
    assert r == SubmitResult(fills=[], rested_qty=0, canceled_qty=300)
    r = pool.submit("s", "r", SELL, 300, LMT, 101, DAY, mid_ticks=100, ts_ns=0)
    assert r == SubmitResult(fills=[], rested_qty=300, canceled_qty=0)
    assert pool.resting("s") == 300


def test_no_contra_means_no_fill() -> None:
    pool = _pool(0.0)
    assert pool.submit("b", "r", BUY, 50, MKT, None, IOC, 100, 0).canceled_qty == 50
    # A market order never rests, even DAY.
    r = pool.submit("b2", "r", BUY, 50, MKT, None, DAY, 100, 0)
    assert r.canceled_qty == 50 and pool.resting("b2") is None


def test_partial_contra_then_remainder_rests_or_cancels() -> None:
    # Geometric with mean 1 is always exactly 1 share of contra.
    pool = _pool(1.0, size_mean=1)
    r = pool.submit("day", "r", BUY, 10, LMT, 100, DAY, 100, 0)
    assert r.filled_qty == 1 and r.rested_qty == 9 and r.canceled_qty == 0
    assert pool.resting("day") == 9
    r = pool.submit("ioc", "r", BUY, 10, LMT, 100, IOC, 100, 0)
    assert r.filled_qty == 1 and r.rested_qty == 0 and r.canceled_qty == 9


def test_day_rest_then_fill_on_contra_arrival() -> None:
    pool = _pool(0.0)
    pool.submit("b1", "r1", BUY, 100, LMT, 100, DAY, 99, 0)
    pool.submit("b2", "r2", BUY, 100, LMT, 105, DAY, 99, 1)
    assert pool.resting_qty(BUY) == 200
    # Mid 102 is above b1's limit: b1 is skipped, b2 (later) fills.
    fills = pool.on_contra_arrival(SELL, 60, mid_ticks=102, ts_ns=2)
    assert fills == [Fill(CONTRA_ID, "b2", "r2", CONTRA_OWNER, 60, 102)]
    # Mid back at 100: time priority, b1 first, then the rest of b2.
    fills = pool.on_contra_arrival(SELL, 130, mid_ticks=100, ts_ns=3)
    assert [(f.maker_id, f.qty, f.price_ticks) for f in fills] == [
        ("b1", 100, 100),
        ("b2", 30, 100),
    ]
    assert pool.resting("b1") is None and pool.resting("b2") == 10
    # Contra on the same side as the resting orders does nothing.
    assert pool.on_contra_arrival(BUY, 100, 100, 4) == []
    assert pool.on_contra_arrival(SELL, 0, 100, 4) == []


def test_incoming_crosses_resting_dark_order_first() -> None:
    pool = _pool(0.0)
    pool.submit("s1", "r1", SELL, 100, LMT, 98, DAY, 100, 0)
    r = pool.submit("b1", "r2", BUY, 40, LMT, 101, IOC, 100, 1)
    assert r.fills == [Fill("b1", "s1", "r1", "r2", 40, 100)]
    assert pool.resting("s1") == 60


def test_cancel_and_validation() -> None:
    pool = _pool(0.0, min_qty=10)
    pool.submit("b", "r", BUY, 100, LMT, 100, DAY, 100, 0)
    with pytest.raises(ValueError, match="duplicate"):
        pool.submit("b", "r", BUY, 100, LMT, 100, DAY, 100, 0)
    with pytest.raises(ValueError):
        pool.submit("q", "r", BUY, 0, LMT, 100, DAY, 100, 0)
    with pytest.raises(ValueError):
        pool.submit("small", "r", BUY, 5, LMT, 100, DAY, 100, 0)
    with pytest.raises(ValueError):
        pool.submit("nopx", "r", BUY, 100, LMT, None, DAY, 100, 0)
    assert pool.owner_orders("r") == ["b"]
    assert pool.cancel("b") == 100
    assert pool.cancel("b") is None and pool.resting("b") is None
    assert pool.on_contra_arrival(SELL, 100, 100, 1) == []


def test_deterministic_given_seed() -> None:
    def run(seed: int) -> list[int]:
        pool = DarkPool(np.random.default_rng(seed), contra_prob=0.5, contra_size_mean=200)
        return [
            pool.submit(f"o{i}", "r", BUY, 500, MKT, None, IOC, 100, i).filled_qty
            for i in range(50)
        ]

    a = run(9)
    assert a == run(9)
    assert a != run(10)
    assert 0 < sum(1 for q in a if q) < 50
