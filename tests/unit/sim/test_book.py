from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.domain.types import OrdType, Side, TimeInForce
from sim.book import BackgroundLiquidity, Fill, LitBook, SubmitResult

BUY, SELL = Side.BUY, Side.SELL
LMT, MKT = OrdType.LIMIT, OrdType.MARKET
DAY, IOC = TimeInForce.DAY, TimeInForce.IOC


def _lim(
    book: LitBook, oid: str, side: Side, qty: int, px: int, tif: TimeInForce = DAY, owner: str = "r"
) -> SubmitResult:
    return book.submit(oid, owner, side, qty, LMT, px, tif, 0)


def _mkt(book: LitBook, oid: str, side: Side, qty: int, owner: str = "r") -> SubmitResult:
    return book.submit(oid, owner, side, qty, MKT, None, IOC, 0)


def test_rest_and_top_of_book() -> None:
    book = LitBook()
    assert book.best_bid() is None and book.best_ask() is None
    r = _lim(book, "b1", BUY, 100, 99)
    assert r == SubmitResult(fills=[], rested_qty=100, canceled_qty=0)
    _lim(book, "b2", BUY, 50, 98)
    _lim(book, "b3", BUY, 25, 99)
    _lim(book, "a1", SELL, 70, 101)
    assert book.best_bid() == 99 and book.best_ask() == 101
    assert book.depth(BUY, 5) == [(99, 125), (98, 50)]
    assert book.depth(SELL, 5) == [(101, 70)]
    assert book.depth(BUY, 1) == [(99, 125)]
    assert book.resting("b3") == 25
    assert book.owner_orders("r") == ["b1", "b2", "b3", "a1"]


def test_price_priority_and_fill_at_resting_price() -> None:
    book = LitBook()
    _lim(book, "a102", SELL, 100, 102, owner="m1")
    _lim(book, "a101", SELL, 100, 101, owner="m2")
    r = _lim(book, "t", BUY, 150, 105)
    assert r.fills == [
        Fill("t", "a101", "m2", "r", 100, 101),
        Fill("t", "a102", "m1", "r", 50, 102),
    ]
    assert r.rested_qty == 0 and r.canceled_qty == 0
    assert book.resting("a102") == 50 and book.resting("a101") is None
    # Sell side mirrors: highest bid first.
    _lim(book, "b97", BUY, 10, 97, owner="m3")
    _lim(book, "b98", BUY, 10, 98, owner="m4")
    r = _lim(book, "s", SELL, 15, 90)
    assert [(f.maker_id, f.qty, f.price_ticks) for f in r.fills] == [
        ("b98", 10, 98),
        ("b97", 5, 97),
    ]


def test_time_priority_within_level() -> None:
    book = LitBook()
    _lim(book, "first", SELL, 30, 100, owner="x")
    _lim(book, "second", SELL, 30, 100, owner="y")
    _lim(book, "third", SELL, 30, 100, owner="z")
    r = _lim(book, "t", BUY, 45, 100)
    assert [(f.maker_id, f.maker_owner, f.qty) for f in r.fills] == [
        ("first", "x", 30),
        ("second", "y", 15),
    ]
    assert book.depth(SELL, 1) == [(100, 45)]
    # A canceled order in the middle of the queue loses its place, others keep theirs.
    assert book.cancel("second") == 15
    _lim(book, "fourth", SELL, 5, 100, owner="w")
    r = _lim(book, "t2", BUY, 40, 100)
    assert [(f.maker_id, f.qty) for f in r.fills] == [("third", 30), ("fourth", 5)]
    assert r.rested_qty == 5
    assert book.best_bid() == 100 and book.best_ask() is None


def test_limit_respected_partial_fill_then_rest() -> None:
    book = LitBook()
    _lim(book, "a100", SELL, 40, 100)
    _lim(book, "a103", SELL, 40, 103)
    r = _lim(book, "t", BUY, 100, 101)
    assert [(f.maker_id, f.qty, f.price_ticks) for f in r.fills] == [("a100", 40, 100)]
    assert r.rested_qty == 60 and r.canceled_qty == 0
    assert book.resting("t") == 60
    assert book.best_bid() == 101 and book.best_ask() == 103


def test_ioc_remainder_canceled() -> None:
    book = LitBook()
    _lim(book, "a", SELL, 40, 100)
    r = _lim(book, "t", BUY, 100, 100, tif=IOC)
    assert r.filled_qty == 40 and r.rested_qty == 0 and r.canceled_qty == 60
    assert book.resting("t") is None and book.best_bid() is None
    # IOC that cannot trade at all is wholly canceled.
    r = _lim(book, "t2", SELL, 10, 200, tif=IOC)
    assert r == SubmitResult(fills=[], rested_qty=0, canceled_qty=10)


def test_market_sweeps_levels_and_never_rests() -> None:
    book = LitBook()
    _lim(book, "a1", SELL, 10, 100)
    _lim(book, "a2", SELL, 20, 105)
    _lim(book, "a3", SELL, 30, 150)
    r = _mkt(book, "m", BUY, 45)
    assert [(f.maker_id, f.qty, f.price_ticks) for f in r.fills] == [
        ("a1", 10, 100),
        ("a2", 20, 105),
        ("a3", 15, 150),
    ]
    assert book.depth(SELL, 3) == [(150, 15)]
    # Runs out of liquidity: remainder canceled even with DAY.
    r = book.submit("m2", "r", BUY, 100, MKT, None, DAY, 0)
    assert r.filled_qty == 15 and r.canceled_qty == 85 and r.rested_qty == 0
    assert book.best_ask() is None and book.resting("m2") is None


def test_cancel() -> None:
    book = LitBook()
    _lim(book, "b", BUY, 100, 99)
    _lim(book, "b2", BUY, 100, 99)
    assert book.cancel("b") == 100
    assert book.cancel("b") is None
    assert book.cancel("never") is None
    assert book.depth(BUY, 5) == [(99, 100)]
    assert book.cancel("b2") == 100
    assert book.best_bid() is None and book.depth(BUY, 5) == []
    assert book.owner_orders("r") == []
    # The canceled order's quantity is gone: a seller finds nothing.
    assert _lim(book, "s", SELL, 10, 90, tif=IOC).canceled_qty == 10


def test_invalid_orders_rejected_without_side_effects() -> None:
    book = LitBook()
    _lim(book, "dup", BUY, 100, 99)
    _lim(book, "ask", SELL, 100, 100)
    with pytest.raises(ValueError, match="duplicate"):
        _lim(book, "dup", SELL, 10, 100)
    with pytest.raises(ValueError):
        _lim(book, "z", BUY, 0, 100)
    with pytest.raises(ValueError):
        book.submit("p", "r", BUY, 10, LMT, None, DAY, 0)
    assert book.resting("ask") == 100 and book.resting("dup") == 100
    # Once no longer live, an id may be reused.
    book.cancel("dup")
    assert _lim(book, "dup", BUY, 5, 98).rested_qty == 5


def _bg(book: LitBook, seed: int = 1, levels: int = 3) -> BackgroundLiquidity:
    return BackgroundLiquidity(
        book,
        np.random.default_rng(seed),
        levels=levels,
        half_spread_ticks=1,
        size_mean=500,
        size_jitter=0.3,
    )


def test_bg_requote_ladder() -> None:
    book = LitBook()
    bg = _bg(book)
    assert bg.requote(1000, 0) == []
    assert [p for p, _ in book.depth(BUY, 10)] == [999, 998, 997]
    assert [p for p, _ in book.depth(SELL, 10)] == [1001, 1002, 1003]
    for _, q in book.depth(BUY, 10) + book.depth(SELL, 10):
        assert q >= 100 and q % 100 == 0
    assert len(book.owner_orders("bg")) == 6
    # Requote replaces, never accumulates.
    bg.requote(1010, 1)
    assert len(book.owner_orders("bg")) == 6
    assert book.best_bid() == 1009 and book.best_ask() == 1011


def test_amend_qty_changes_size_and_level_total_only() -> None:
    book = LitBook()
    _lim(book, "a", SELL, 100, 1001)
    _lim(book, "b", SELL, 50, 1001)
    assert book.amend_qty("a", 30)
    assert book.depth(SELL, 1) == [(1001, 80)]
    assert book.resting("a") == 30
    assert not book.amend_qty("a", 0) and not book.amend_qty("nope", 10)
    # Priority kept: a buyer meets "a" first, with its amended size.
    fills = _mkt(book, "t", BUY, 40).fills
    assert [(f.maker_id, f.qty) for f in fills] == [("a", 30), ("b", 10)]
    assert book.depth(SELL, 1) == [(1001, 40)]


def test_bg_flicker_changes_sizes_not_prices_and_returns() -> None:
    book = LitBook()
    bg = _bg(book)
    bg.requote(1000, 0)
    before = book.depth(BUY, 10) + book.depth(SELL, 10)
    assert bg.flicker() == 6
    after = book.depth(BUY, 10) + book.depth(SELL, 10)
    assert [p for p, _ in after] == [p for p, _ in before]
    assert all(q2 - q1 == 100 for (_, q1), (_, q2) in zip(before, after, strict=True))
    assert bg.flicker() == 6
    assert book.depth(BUY, 10) + book.depth(SELL, 10) == before, "up one call, back down the next"
    # A quote that traded away is skipped; a requote starts a fresh set.
    _mkt(book, "t", BUY, 10**6)
    assert bg.flicker() == 3
    bg.requote(1000, 1)
    assert bg.flicker() == 6


def test_bg_requote_crosses_resting_router_order() -> None:
    book = LitBook()
    bg = _bg(book)
    bg.requote(1000, 0)
    _lim(book, "router-sell", SELL, 100, 1005, owner="router")
    # Mid moves up through the router's ask: bg's best bid at 1009 trades with it.
    fills = bg.requote(1010, 1)
    assert len(fills) == 1
    f = fills[0]
    assert (f.maker_id, f.maker_owner, f.taker_owner, f.qty, f.price_ticks) == (
        "router-sell",
        "router",
        "bg",
        100,
        1005,
    )
    assert book.resting("router-sell") is None
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None and ask is not None and bid < ask


def test_bg_take_hits_router_order() -> None:
    book = LitBook()
    _lim(book, "rb", BUY, 300, 999, owner="router")
    bg = _bg(book, levels=0)
    fills = bg.take(SELL, 200, 5)
    assert [(f.maker_id, f.maker_owner, f.qty, f.price_ticks) for f in fills] == [
        ("rb", "router", 200, 999)
    ]
    assert book.resting("rb") == 100
    assert bg.take(SELL, 500, 6)[0].qty == 100
    assert bg.take(SELL, 500, 7) == []


def test_bg_deterministic_given_seed() -> None:
    def run(seed: int) -> list[tuple[int, int]]:
        book = LitBook()
        bg = _bg(book, seed=seed, levels=5)
        for i, mid in enumerate((1000, 1003, 998)):
            bg.requote(mid, i)
        return book.depth(BUY, 10) + book.depth(SELL, 10)

    assert run(42) == run(42)
    assert run(42) != run(43)


# ------------------------------------------------------------------ property test

_submit = st.tuples(
    st.just("submit"),
    st.sampled_from([BUY, SELL]),
    st.integers(min_value=1, max_value=50),
    st.sampled_from([LMT, LMT, LMT, MKT]),
    st.integers(min_value=95, max_value=105),
    st.sampled_from([DAY, IOC]),
)
_cancel = st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=60))
_ops = st.lists(st.one_of(_submit, _submit, _cancel), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_book_invariants(ops: list[tuple[object, ...]]) -> None:
    book = LitBook()
    qty_of: dict[str, int] = {}
    filled: dict[str, int] = {}
    for n, op in enumerate(ops):
        if op[0] == "cancel":
            target = f"o{op[1]}"
            before = book.resting(target)
            assert book.cancel(target) == before
            assert book.resting(target) is None
        else:
            _, side, qty, ord_type, px, tif = op
            assert isinstance(side, Side) and isinstance(qty, int) and isinstance(px, int)
            assert isinstance(ord_type, OrdType) and isinstance(tif, TimeInForce)
            oid = f"o{n}"
            qty_of[oid] = qty
            r = book.submit(
                oid, f"own{n % 3}", side, qty, ord_type, px if ord_type is LMT else None, tif, n
            )
            assert qty == r.filled_qty + r.rested_qty + r.canceled_qty
            assert book.resting(oid) == (r.rested_qty or None)
            for f in r.fills:
                assert f.qty > 0 and f.taker_id == oid
                if ord_type is LMT:
                    assert f.price_ticks <= px if side is BUY else f.price_ticks >= px
                filled[f.taker_id] = filled.get(f.taker_id, 0) + f.qty
                filled[f.maker_id] = filled.get(f.maker_id, 0) + f.qty
        for oid, total in filled.items():
            assert total + (book.resting(oid) or 0) <= qty_of[oid]
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            assert bid < ask
        for s in (BUY, SELL):
            levels = book.depth(s, 1000)
            assert all(q > 0 for _, q in levels)
            prices = [p for p, _ in levels]
            assert prices == sorted(prices, reverse=s is BUY)
