"""MarketData: books, rings and consolidated reads, with hand-worked values.

Universe used throughout: venues LIT1, LIT2 (lit) and DARK1 (dark); symbols
AAPL, MSFT; depth 3; a book ring of 4 rows and a trade ring of 3, so
wraparound is reached in a handful of updates.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.market.rings import ASK, BID, MAX_PX_TICKS, STALE_NEVER, MarketData

L1, L2, DK = 0, 1, 2
AAPL, MSFT = 0, 1
DEPTH = 3
CB = 4
CT = 3


def make(**kw: int) -> MarketData:
    args = {"depth": DEPTH, "book_capacity": CB, "trade_capacity": CT} | kw
    return MarketData(["LIT1", "LIT2", "DARK1"], [True, True, False], ["AAPL", "MSFT"], **args)


@pytest.fixture
def md() -> MarketData:
    return make()


def book(md: MarketData, v: int, s: int) -> tuple[list[int], list[int], list[int], list[int]]:
    return (md.bid_px[v, s].tolist(), md.bid_sz[v, s].tolist(), md.ask_px[v, s].tolist(), md.ask_sz[v, s].tolist())


# ---------------------------------------------------------------- construction


def test_shapes_and_indices(md: MarketData) -> None:
    assert md.venues == ("LIT1", "LIT2", "DARK1")
    assert md.symbols == ("AAPL", "MSFT")
    assert md.venue_index == {"LIT1": 0, "LIT2": 1, "DARK1": 2}
    assert md.symbol_index == {"AAPL": 0, "MSFT": 1}
    assert md.lit.tolist() == [True, True, False]
    assert md.depth == DEPTH
    for a in (md.bid_px, md.bid_sz, md.ask_px, md.ask_sz):
        assert a.shape == (3, 2, DEPTH) and a.dtype == np.int64
    for a in (md.ring_bid_px, md.ring_bid_sz, md.ring_ask_px, md.ring_ask_sz):
        assert a.shape == (3, 2, CB, DEPTH) and a.dtype == np.int64
    for a in (md.ring_ts, md.ring_mid2):
        assert a.shape == (3, 2, CB) and a.dtype == np.int64
    for a in (md.book_ts, md.ring_head, md.ring_count, md.trade_head, md.trade_count):
        assert a.shape == (3, 2) and a.dtype == np.int64
    for a in (md.trade_ts, md.trade_px, md.trade_sz):
        assert a.shape == (3, 2, CT) and a.dtype == np.int64
    assert md.trade_side.shape == (3, 2, CT) and md.trade_side.dtype == np.int8
    assert md.dropped_updates == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"venues": ["A"], "lit": [True, False]}, "differ in length"),
        ({"venues": ["A", "A"], "lit": [True, True]}, "duplicate venue"),
        ({"symbols": ["X", "X"]}, "duplicate symbols"),
        ({"symbols": []}, "at least one"),
        ({"depth": 0}, "depth"),
        ({"book_capacity": 0}, "book_capacity"),
        ({"trade_capacity": 0}, "trade_capacity"),
    ],
)
def test_bad_universe_fails_fast(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"venues": ["A"], "lit": [True], "symbols": ["X"]} | kwargs
    with pytest.raises(ValueError, match=match):
        MarketData(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- book updates


def test_snapshot_then_incremental(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 100, [10000, 9999], [100, 200], [10002, 10003, 10004], [50, 60, 70])
    assert book(md, L1, AAPL) == ([10000, 9999, 0], [100, 200, 0], [10002, 10003, 10004], [50, 60, 70])
    assert md.best(L1, AAPL, BID) == (10000, 100)
    assert md.best(L1, AAPL, ASK) == (10002, 50)
    assert md.ring_count[L1, AAPL] == 1 and md.ring_head[L1, AAPL] == 1
    assert md.ring_mid2[L1, AAPL, 0] == 20002 and md.ring_ts[L1, AAPL, 0] == 100
    assert md.book_ts[L1, AAPL] == 100

    md.set_level(L1, AAPL, BID, 1, 9999, 250)  # change
    md.delete_level(L1, AAPL, ASK, 0)  # best ask lifted: 10003 moves up
    md.set_level(L1, AAPL, ASK, 2, 10005, 80)  # venue refills the freed last level
    assert book(md, L1, AAPL) == ([10000, 9999, 0], [100, 250, 0], [10003, 10004, 10005], [60, 70, 80])
    # Nothing reaches the ring before the commit.
    assert md.ring_count[L1, AAPL] == 1 and md.book_ts[L1, AAPL] == 100

    md.commit_book(L1, AAPL, 200)
    assert md.ring_count[L1, AAPL] == 2 and md.ring_head[L1, AAPL] == 2
    assert md.ring_mid2[L1, AAPL, 1] == 10000 + 10003
    assert md.ring_ts[L1, AAPL, 1] == 200 and md.book_ts[L1, AAPL] == 200
    assert md.ring_bid_sz[L1, AAPL, 1].tolist() == [100, 250, 0]
    assert md.ring_ask_px[L1, AAPL, 1].tolist() == [10003, 10004, 10005]
    # The earlier row is a copy, not a view of the live book.
    assert md.ring_bid_sz[L1, AAPL, 0].tolist() == [100, 200, 0]
    assert md.ring_ask_px[L1, AAPL, 0].tolist() == [10002, 10003, 10004]
    # Other (venue, symbol) pairs untouched.
    assert not md.ring_count[L1, MSFT] and not md.ring_count[L2, AAPL]
    assert not md._ring[:, MSFT].any() and not md.bid_px[L2].any()


def test_delete_level_shifts_up_and_empties_last(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [103, 102, 101], [3, 2, 1], [], [])
    md.delete_level(L1, AAPL, BID, 2)
    assert md.bid_px[L1, AAPL].tolist() == [103, 102, 0] and md.bid_sz[L1, AAPL].tolist() == [3, 2, 0]
    md.delete_level(L1, AAPL, BID, 0)
    assert md.bid_px[L1, AAPL].tolist() == [102, 0, 0] and md.bid_sz[L1, AAPL].tolist() == [2, 0, 0]
    md.delete_level(L1, AAPL, BID, 0)
    md.delete_level(L1, AAPL, BID, 0)  # deleting an empty level is harmless
    assert md.best(L1, AAPL, BID) == (0, 0)
    assert md.dropped_updates == 0


def test_apply_book_truncates_and_empties_missing_levels(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [10, 9, 8], [1, 1, 1], [11, 12, 13], [1, 1, 1])
    md.apply_book(L1, AAPL, 2, [10, 9, 8, 7, 6], [5, 4, 3, 2, 1], [11], [7])
    assert book(md, L1, AAPL) == ([10, 9, 8], [5, 4, 3], [11, 0, 0], [7, 0, 0])
    assert md.dropped_updates == 0  # truncating a deeper snapshot is routine
    md.apply_book(L1, AAPL, 3, [10, 9], [5, -1], [11, 0], [7, 3])  # bad levels within a snapshot empty them
    assert book(md, L1, AAPL) == ([10, 0, 0], [5, 0, 0], [11, 0, 0], [7, 0, 0])
    with pytest.raises(ValueError, match="lengths differ"):
        md.apply_book(L1, AAPL, 4, [10, 9], [5], [], [])


def test_commit_mid2_is_twice_the_mid_in_ticks(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [19001], [100], [19004], [100])
    assert md.ring_mid2[L1, AAPL, 0] == 38005  # mid 19002.5 ticks, exact as 2*mid
    assert md.mid2(L1, AAPL) == 38005


def test_negative_or_zero_size_and_price_empty_the_level(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [10, 9, 8], [1, 2, 3], [11, 12, 13], [4, 5, 6])
    md.set_level(L1, AAPL, BID, 0, 10, -5)
    md.set_level(L1, AAPL, BID, 1, 9, 0)
    md.set_level(L1, AAPL, ASK, 0, 0, 4)
    md.set_level(L1, AAPL, ASK, 1, -12, 5)
    assert book(md, L1, AAPL) == ([0, 0, 8], [0, 0, 3], [0, 0, 13], [0, 0, 6])
    assert md.dropped_updates == 0
    md.commit_book(L1, AAPL, 2)
    assert md.ring_mid2[L1, AAPL, 1] == 0  # level 0 empty on both sides
    assert md.best(L1, AAPL, BID) == (0, 0)


@pytest.mark.parametrize(
    ("side", "level", "px", "sz"),
    [
        (BID, DEPTH, 10, 1),  # level >= depth
        (BID, DEPTH + 7, 10, 1),
        (BID, -1, 10, 1),  # a 1-based MDPriceLevel of 0 off by one
        (2, 0, 10, 1),  # not a book side
        (BID, 0, MAX_PX_TICKS + 1, 1),  # bid + ask would overflow int64
        (ASK, 0, 10, 1 << 63),  # does not fit int64
    ],
)
def test_bad_wire_values_are_ignored_and_counted(md: MarketData, side: int, level: int, px: int, sz: int) -> None:
    md.apply_book(L1, AAPL, 1, [10], [1], [11], [1])
    before = md._book.copy()
    md.set_level(L1, AAPL, side, level, px, sz)
    assert md.dropped_updates == 1
    assert np.array_equal(md._book, before)
    if level < 0 or level >= DEPTH or side not in (0, 1):
        md.delete_level(L1, AAPL, side, level)
        assert md.dropped_updates == 2
        assert np.array_equal(md._book, before)


def test_clear_book_commits_an_empty_book(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [10, 9], [1, 2], [11], [3])
    md.clear_book(L1, AAPL, 5)
    assert book(md, L1, AAPL) == ([0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0])
    assert md.ring_count[L1, AAPL] == 2 and md.ring_mid2[L1, AAPL, 1] == 0
    assert md.book_ts[L1, AAPL] == 5 and not md.ring_bid_px[L1, AAPL, 1].any()
    md.clear_book(DK, AAPL, 5)  # no book: nothing to clear, and no error
    assert md.ring_count[DK, AAPL] == 0


# ---------------------------------------------------------------- rings


def test_book_ring_wraparound(md: MarketData) -> None:
    for i in range(10):
        md.apply_book(L2, MSFT, 1000 + i, [100 + i], [1], [200 + i], [1])
    assert md.ring_count[L2, MSFT] == CB
    assert md.ring_head[L2, MSFT] == 10 % CB
    out_ts = np.full(CB, -1, dtype=np.int64)
    out_mid2 = np.full(CB, -1, dtype=np.int64)
    n = md.mid2_series(L2, MSFT, out_ts, out_mid2)
    assert n == 4
    # Commits 6..9 survive: mid2 = (100 + i) + (200 + i).
    assert out_ts.tolist() == [1006, 1007, 1008, 1009]
    assert out_mid2.tolist() == [312, 314, 316, 318]
    # The book rows rotated with them: slot 10 % 4 = 2 is the oldest (i=6).
    assert md.ring_bid_px[L2, MSFT, :, 0].tolist() == [108, 109, 106, 107]


def test_mid2_series_before_wrap_includes_one_sided_rows(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 10, [100], [1], [102], [1])
    md.apply_book(L1, AAPL, 20, [100], [1], [], [])
    md.clear_book(L1, AAPL, 30)
    out_ts = np.zeros(CB + 2, dtype=np.int64)
    out_mid2 = np.zeros(CB + 2, dtype=np.int64)
    assert md.mid2_series(L1, AAPL, out_ts, out_mid2) == 3
    assert out_ts[:3].tolist() == [10, 20, 30]
    assert out_mid2[:3].tolist() == [202, 0, 0]
    assert md.mid2_series(L2, AAPL, out_ts, out_mid2) == 0


def test_mid2_series_rejects_short_buffers(md: MarketData) -> None:
    with pytest.raises(ValueError, match="len >= 4"):
        md.mid2_series(L1, AAPL, np.zeros(CB - 1, dtype=np.int64), np.zeros(CB, dtype=np.int64))


def test_trade_ring_wraparound(md: MarketData) -> None:
    sides = [1, -1, 0, 1, 7]
    for i in range(5):
        md.apply_trade(DK, AAPL, 100 + i, 1000 + i, 10 * (i + 1), sides[i])  # dark prints are kept
    assert md.trade_count[DK, AAPL] == CT and md.trade_head[DK, AAPL] == 5 % CT
    ts = np.zeros(CT, dtype=np.int64)
    px = np.zeros(CT, dtype=np.int64)
    sz = np.zeros(CT, dtype=np.int64)
    side = np.zeros(CT, dtype=np.int8)
    assert md.trade_series(DK, AAPL, ts, px, sz, side) == 3
    assert ts.tolist() == [102, 103, 104]
    assert px.tolist() == [1002, 1003, 1004]
    assert sz.tolist() == [30, 40, 50]
    assert side.tolist() == [0, 1, 0]  # 7 is not a side: stored as unknown
    assert md.trade_count[L1, AAPL] == 0 and md.dropped_updates == 0


def test_bad_trades_are_dropped_and_counted(md: MarketData) -> None:
    md.apply_trade(L1, AAPL, 1, 0, 10, 1)
    md.apply_trade(L1, AAPL, 1, 100, -10, 1)
    md.apply_trade(L1, AAPL, 1, 100, 0, 1)
    assert md.dropped_updates == 3 and md.trade_count[L1, AAPL] == 0


# ---------------------------------------------------------------- reads


def test_empty_book(md: MarketData) -> None:
    assert md.best(L1, AAPL, BID) == (0, 0) and md.best(L1, AAPL, ASK) == (0, 0)
    assert md.nbbo(AAPL) == (0, 0, 0, 0)
    assert md.consolidated_mid2(AAPL) == 0
    assert md.mid2(L1, AAPL) == 0
    assert not md.crossed(AAPL)
    out = np.full(3, 9.0)
    md.touch_share(AAPL, BID, out)
    assert out.tolist() == [0.0, 0.0, 0.0]
    assert md.depth_size(AAPL, BID, 3) == 0


def test_one_sided_book(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [10000], [100], [], [])
    assert md.ring_mid2[L1, AAPL, 0] == 0
    assert md.nbbo(AAPL) == (10000, 100, 0, 0)
    assert md.consolidated_mid2(AAPL) == 0
    assert not md.crossed(AAPL)
    out = np.zeros(3)
    md.touch_share(AAPL, BID, out)
    assert out.tolist() == [1.0, 0.0, 0.0]
    md.touch_share(AAPL, ASK, out)
    assert out.tolist() == [0.0, 0.0, 0.0]


def test_nbbo_equal_best_prices_add_sizes(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [10000, 9999], [100, 500], [10002], [50])
    md.apply_book(L2, AAPL, 1, [10000], [300], [10003], [70])
    assert md.nbbo(AAPL) == (10000, 400, 10002, 50)
    assert md.consolidated_mid2(AAPL) == 20002
    assert not md.crossed(AAPL)
    out = np.zeros(3)
    md.touch_share(AAPL, BID, out)
    assert out.tolist() == [0.25, 0.75, 0.0]
    md.touch_share(AAPL, ASK, out)
    assert out.tolist() == [1.0, 0.0, 0.0]
    assert md.nbbo(MSFT) == (0, 0, 0, 0)


def test_nbbo_different_best_prices(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [9999], [100], [10003], [40])
    md.apply_book(L2, AAPL, 1, [10000], [300], [10004], [70])
    assert md.nbbo(AAPL) == (10000, 300, 10003, 40)
    assert md.consolidated_mid2(AAPL) == 20003
    out = np.zeros(3)
    md.touch_share(AAPL, BID, out)
    assert out.tolist() == [0.0, 1.0, 0.0]


def test_crossed_and_locked_consolidated_book(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [101], [10], [103], [10])
    md.apply_book(L2, AAPL, 1, [98], [20], [100], [20])
    assert md.nbbo(AAPL) == (101, 10, 100, 20)  # returned as is
    assert md.crossed(AAPL)
    assert md.consolidated_mid2(AAPL) == 201
    md.apply_book(L1, AAPL, 2, [100], [10], [103], [10])
    assert md.crossed(AAPL)  # locked counts
    md.apply_book(L1, AAPL, 3, [99], [10], [103], [10])
    assert not md.crossed(AAPL)


def test_dark_venue_has_no_book_and_is_ignored(md: MarketData) -> None:
    for call in (
        lambda: md.set_level(DK, AAPL, BID, 0, 100, 1),
        lambda: md.delete_level(DK, AAPL, BID, 0),
        lambda: md.commit_book(DK, AAPL, 1),
        lambda: md.apply_book(DK, AAPL, 1, [100], [1], [], []),
    ):
        with pytest.raises(ValueError, match="dark"):
            call()
    md.apply_book(L1, AAPL, 1, [100], [10], [102], [10])
    # Even a dark row written behind our back never reaches consolidated reads.
    md.bid_px[DK, AAPL, 0], md.bid_sz[DK, AAPL, 0] = 101, 1000
    md.ask_px[DK, AAPL, 0], md.ask_sz[DK, AAPL, 0] = 100, 1000
    assert md.nbbo(AAPL) == (100, 10, 102, 10)
    assert not md.crossed(AAPL)
    assert md.depth_size(AAPL, BID, 3) == 10
    out = np.full(3, 5.0)
    md.touch_share(AAPL, BID, out)
    assert out.tolist() == [1.0, 0.0, 0.0]
    assert md.staleness_ns(DK, AAPL, 10) == STALE_NEVER


def test_touch_share_sums_to_one(md: MarketData) -> None:
    md.apply_book(L1, MSFT, 1, [41000], [123], [41002], [7])
    md.apply_book(L2, MSFT, 1, [41000], [456], [41002], [11])
    out = np.zeros(3)
    for side in (BID, ASK):
        md.touch_share(MSFT, side, out)
        assert out.sum() == pytest.approx(1.0)
        assert out[DK] == 0.0
    assert out[L1] == pytest.approx(7 / 18)


def test_depth_size(md: MarketData) -> None:
    md.apply_book(L1, AAPL, 1, [100, 99, 98], [100, 200, 300], [101], [5])
    md.apply_book(L2, AAPL, 1, [100, 97], [10, 20], [102, 103], [6, 7])
    assert md.depth_size(AAPL, BID, 1) == 110
    assert md.depth_size(AAPL, BID, 2) == 330
    assert md.depth_size(AAPL, BID, 3) == 630
    assert md.depth_size(AAPL, BID, 99) == 630  # clamped to depth
    assert md.depth_size(AAPL, BID, 0) == 0
    assert md.depth_size(AAPL, ASK, 3) == 18


def test_staleness(md: MarketData) -> None:
    assert md.staleness_ns(L1, AAPL, 1_000) == STALE_NEVER
    md.apply_book(L1, AAPL, 1_000, [100], [1], [101], [1])
    assert md.staleness_ns(L1, AAPL, 1_500) == 500
    md.set_level(L1, AAPL, BID, 0, 100, 2)  # uncommitted: not fresher yet
    assert md.staleness_ns(L1, AAPL, 1_500) == 500
    # A simulated clock that starts at 0: committed at ts 0 is not "never".
    md.commit_book(L2, AAPL, 0)
    assert md.staleness_ns(L2, AAPL, 10) == 10


def test_programming_errors_raise(md: MarketData) -> None:
    with pytest.raises(IndexError):
        md.set_level(3, AAPL, BID, 0, 1, 1)
    with pytest.raises(IndexError):
        md.set_level(L1, 2, BID, 0, 1, 1)
    with pytest.raises(IndexError):
        md.commit_book(-1, AAPL, 1)  # no silent wrap to the last venue
    with pytest.raises(IndexError):
        md.best(L1, -1, BID)
    with pytest.raises(IndexError):
        md.nbbo(2)
    with pytest.raises(IndexError):
        md.apply_trade(L1, 5, 1, 100, 1, 1)
    with pytest.raises(ValueError, match="side"):
        md.best(L1, AAPL, 2)
    with pytest.raises(ValueError, match="side"):
        md.touch_share(AAPL, -1, np.zeros(3))


def test_numpy_integer_arguments_work(md: MarketData) -> None:
    v, s = np.int64(L1), np.int64(AAPL)
    md.set_level(v, s, np.int64(BID), np.int64(0), np.int64(100), np.int64(5))  # type: ignore[arg-type]
    md.commit_book(v, s, np.int64(7))  # type: ignore[arg-type]
    assert md.best(L1, AAPL, BID) == (100, 5) and md.book_ts[L1, AAPL] == 7


# ---------------------------------------------------------------- properties


def _side_levels(descending: bool) -> st.SearchStrategy[tuple[list[int], list[int]]]:
    def build(pxs: set[int], data: st.DataObject) -> tuple[list[int], list[int]]:
        ordered = sorted(pxs, reverse=descending)
        szs = [data.draw(st.integers(1, 10_000)) for _ in ordered]
        return ordered, szs

    return st.builds(build, st.sets(st.integers(1, 300), max_size=DEPTH + 2), st.data())


_snapshot = st.tuples(st.sampled_from([L1, L2]), st.sampled_from([AAPL, MSFT]), _side_levels(True), _side_levels(False))


@settings(max_examples=200, deadline=None)
@given(st.lists(_snapshot, max_size=12), st.integers(1, DEPTH + 1))
def test_snapshots_match_reference(
    snaps: list[tuple[int, int, tuple[list[int], list[int]], tuple[list[int], list[int]]]], levels: int
) -> None:
    md = make()
    ref: dict[tuple[int, int], tuple[list[int], list[int], list[int], list[int]]] = {}
    commits: dict[tuple[int, int], int] = {}
    for ts, (v, s, (bpx, bsz), (apx, asz)) in enumerate(snaps):
        md.apply_book(v, s, ts, bpx, bsz, apx, asz)
        ref[v, s] = (bpx[:DEPTH], bsz[:DEPTH], apx[:DEPTH], asz[:DEPTH])
        commits[v, s] = commits.get((v, s), 0) + 1
    out = np.zeros(3)
    for s in (AAPL, MSFT):
        tops = []
        for v in (L1, L2):
            bpx, bsz, apx, asz = ref.get((v, s), ([], [], [], []))
            assert md.best(v, s, BID) == ((bpx[0], bsz[0]) if bpx else (0, 0))
            assert md.best(v, s, ASK) == ((apx[0], asz[0]) if apx else (0, 0))
            assert md.ring_count[v, s] == min(commits.get((v, s), 0), CB)
            tops.append((bpx[:1], bsz[:1], apx[:1], asz[:1]))
        exp_depth_bid = sum(sum(ref.get((v, s), ([], [], [], []))[1][:levels]) for v in (L1, L2))
        exp_depth_ask = sum(sum(ref.get((v, s), ([], [], [], []))[3][:levels]) for v in (L1, L2))
        assert md.depth_size(s, BID, levels) == exp_depth_bid
        assert md.depth_size(s, ASK, levels) == exp_depth_ask
        bids = [(p[0], z[0]) for p, z, _, _ in tops if p]
        asks = [(p[0], z[0]) for _, _, p, z in tops if p]
        bb = max((p for p, _ in bids), default=0)
        ba = min((p for p, _ in asks), default=0)
        assert md.nbbo(s) == (bb, sum(z for p, z in bids if p == bb), ba, sum(z for p, z in asks if p == ba))
        assert md.consolidated_mid2(s) == (bb + ba if bb and ba else 0)
        assert md.crossed(s) == bool(bb and ba and bb >= ba)
        for side in (BID, ASK):
            md.touch_share(s, side, out)
            assert out.sum() == (pytest.approx(1.0) if (bids if side == BID else asks) else 0.0)


_op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from([BID, ASK]), st.integers(-1, DEPTH + 1), st.integers(-3, 50),
              st.integers(-3, 50)),
    st.tuples(st.just("del"), st.sampled_from([BID, ASK]), st.integers(-1, DEPTH + 1), st.just(0), st.just(0)),
    st.tuples(st.just("commit"), st.just(0), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=40))
def test_incremental_updates_match_list_model(ops: list[tuple[str, int, int, int, int]]) -> None:
    md = make()
    model = [[(0, 0)] * DEPTH, [(0, 0)] * DEPTH]
    dropped = commits = 0
    last_mid2 = None
    for ts, (kind, side, level, px, sz) in enumerate(ops):
        if kind == "commit":
            md.commit_book(L1, MSFT, ts)
            commits += 1
            bid, ask = model[BID][0][0], model[ASK][0][0]
            last_mid2 = bid + ask if bid and ask else 0
            continue
        if kind == "set":
            md.set_level(L1, MSFT, side, level, px, sz)
        else:
            md.delete_level(L1, MSFT, side, level)
        if not 0 <= level < DEPTH:
            dropped += 1
        elif kind == "set":
            model[side][level] = (px, sz) if px > 0 and sz > 0 else (0, 0)
        else:
            model[side] = [*model[side][:level], *model[side][level + 1 :], (0, 0)]
    assert md.dropped_updates == dropped
    assert md.bid_px[L1, MSFT].tolist() == [p for p, _ in model[BID]]
    assert md.bid_sz[L1, MSFT].tolist() == [z for _, z in model[BID]]
    assert md.ask_px[L1, MSFT].tolist() == [p for p, _ in model[ASK]]
    assert md.ask_sz[L1, MSFT].tolist() == [z for _, z in model[ASK]]
    assert md.ring_count[L1, MSFT] == min(commits, CB)
    if last_mid2 is not None:
        assert md.ring_mid2[L1, MSFT, (commits - 1) % CB] == last_mid2
