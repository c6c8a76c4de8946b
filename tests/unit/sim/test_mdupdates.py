"""The sim venue's book changes, applied through the router's one market-data
path, rebuild the venue's book exactly: what the backtest and the FIX venue
both rely on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.domain.events import MarketDataReceived
from router.domain.types import Side
from router.market.feed import apply_update
from router.market.rings import MarketData
from sim.mdupdates import Levels, level_changes, snapshot_entries, trade_entry

DEPTH = 5


def levels(side: int) -> st.SearchStrategy[Levels]:
    # Distinct prices, best first, as a book's depth() gives them.
    def build(pxs: list[int], sizes: list[int]) -> Levels:
        ordered = sorted(set(pxs), reverse=side == 0)[:DEPTH]
        return tuple(zip(ordered, sizes[: len(ordered)]))
    return st.builds(build, st.lists(st.integers(1, 60), max_size=8), st.lists(st.integers(1, 999), min_size=8,
                                                                                max_size=8))


def book_of(md: MarketData) -> tuple[Levels, Levels]:
    def side(px: object, sz: object) -> Levels:
        return tuple((int(p), int(z)) for p, z in zip(px, sz) if p)  # type: ignore[call-overload]
    return side(md.bid_px[0, 0], md.bid_sz[0, 0]), side(md.ask_px[0, 0], md.ask_sz[0, 0])


@given(st.lists(st.tuples(levels(0), levels(1)), min_size=1, max_size=6))
def test_snapshot_then_changes_rebuild_every_book(books: list[tuple[Levels, Levels]]) -> None:
    md = MarketData(["LIT1"], [True], ["AAPL"], depth=DEPTH, book_capacity=64, trade_capacity=64)
    first = books[0]
    used, applied, dropped = apply_update(md, MarketDataReceived(
        venue="LIT1", snapshot=True, symbol="AAPL", entries=tuple(snapshot_entries("AAPL", *first)), recv_ns=1))
    assert used and dropped == 0 and applied == len(first[0]) + len(first[1])
    assert book_of(md) == first
    prev = first
    for t, new in enumerate(books[1:], start=2):
        entries = tuple(level_changes("AAPL", prev, new))
        apply_update(md, MarketDataReceived(venue="LIT1", snapshot=False, symbol="", entries=entries, recv_ns=t))
        assert book_of(md) == new
        prev = new


def test_a_trade_entry_goes_to_the_trade_ring() -> None:
    md = MarketData(["LIT1"], [True], ["AAPL"], depth=DEPTH, book_capacity=8, trade_capacity=8)
    e = trade_entry("AAPL", 101, 30, Side.SELL)
    assert (e.kind, e.aggressor) == (2, -1)
    apply_update(md, MarketDataReceived(venue="LIT1", snapshot=False, symbol="", entries=(e,), recv_ns=5))
    assert int(md.trade_count[0, 0]) == 1 and int(md.trade_px[0, 0, 0]) == 101 and int(md.trade_side[0, 0, 0]) == -1
