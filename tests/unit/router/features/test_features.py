"""The feature vector: golden values worked out by hand, and the edge cases
(empty, one-sided, crossed, stale, zero sizes, ring wraparound) that must
give defined, finite values.

Every expected number has its arithmetic in a comment. Times are explicit
ints (ns); nothing sleeps or reads a clock.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator, Sequence

import msgspec
import numpy as np
import pytest

from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from router.features.catalogue import FEATURE_INDEX, FEATURE_NAMES, FEATURES, N_FEATURES, STALE_CAP_MS
from router.features.engine import FeatureEngine
from router.learning.venuestats import VenueStats
from router.market.rings import MarketData

S = 1_000_000_000  # 1 s in ns
MS = 1_000_000
NOW = 1005 * S  # golden "now": second 1005 exactly
A, B, D = 0, 1, 2  # lit, lit, dark
XYZ, QQQ = 0, 1
FEES = (0.30, 0.25, -0.10)  # D pays a rebate

Levels = Sequence[tuple[int, int]]


def col(out: np.ndarray, name: str) -> np.ndarray:
    return out[:, FEATURE_INDEX[name]]


def book(md: MarketData, v: int, s: int, ts: int, bids: Levels, asks: Levels) -> None:
    md.apply_book(v, s, ts, [p for p, _ in bids], [q for _, q in bids], [p for p, _ in asks], [q for _, q in asks])


def make(depth: int = 5, book_capacity: int = 1024, trade_capacity: int = 4096,
         stats: VenueStats | None = None) -> tuple[MarketData, VenueStats, FeatureEngine]:
    md = MarketData(["A", "B", "D"], [True, True, False], ["XYZ", "QQQ"], depth=depth,
                    book_capacity=book_capacity, trade_capacity=trade_capacity)
    st = stats or VenueStats(md.venues, md.symbols)
    fe = FeatureEngine(md, st, FEES, {"XYZ": 2e6}, default_adv=1e6)
    return md, st, fe


A_BIDS = [(9999, 300), (9998, 200), (9997, 100), (9996, 50), (9995, 50)]
A_ASKS = [(10001, 100), (10002, 200), (10003, 300), (10004, 100), (10005, 100)]
B_BIDS = [(9999, 100), (9998, 100), (9997, 100), (9996, 100), (9995, 100)]
B_ASKS = [(10002, 500), (10003, 100), (10004, 100), (10005, 100), (10006, 100)]


def golden() -> tuple[MarketData, VenueStats, FeatureEngine]:
    md, st, fe = make()
    # Book history (mid2 = bid + ask of level 0):
    #   A 999.0 s  9999/10001  mid2 20000   (before the 5 s window)
    #   A 1000.5 s 10000/10002 mid2 20002
    #   A 1004.2 s 9999/10001  mid2 20000
    #   A 1004.5 s 9999/10001  mid2 20000   (A's current book)
    #   B 1003.0 s 10000/10002 mid2 20002   (B's first row: no return)
    #   B 1004.7 s 9999/10002  mid2 20001   (B's current book)
    book(md, A, XYZ, 999 * S, A_BIDS, A_ASKS)
    book(md, A, XYZ, 1000 * S + 500 * MS, [(10000, 100)], [(10002, 100)])
    book(md, B, XYZ, 1003 * S, [(10000, 100)], [(10002, 100)])
    book(md, A, XYZ, 1004 * S + 200 * MS, A_BIDS, A_ASKS)
    book(md, A, XYZ, 1004 * S + 500 * MS, A_BIDS, A_ASKS)
    book(md, B, XYZ, 1004 * S + 700 * MS, B_BIDS, B_ASKS)
    # Trade tape (side +1 buyer aggressor, -1 seller, 0 unknown):
    md.apply_trade(A, XYZ, 999 * S, 10001, 100, +1)  # before the window
    md.apply_trade(A, XYZ, 1001 * S, 10001, 200, +1)
    md.apply_trade(B, XYZ, 1004 * S, 9999, 100, -1)
    md.apply_trade(B, XYZ, 1004 * S + 800 * MS, 10002, 50, 0)
    md.apply_trade(D, XYZ, 1004 * S + 900 * MS, 10000, 1000, +1)  # dark: not in flow
    # Our own outcomes on A, size bucket 1 (200 <= qty < 1000):
    #   one half-life ago: 400 sent, 100 filled (partial), first fill after 5 ms
    #   now:               500 sent, 500 filled, first fill after 2 ms
    h = 300 * S
    st.record_child(A, 400, 100, NOW - h - 5 * MS, NOW - h, True, NOW - h)
    st.record_child(A, 500, 500, NOW - 10 * MS, NOW - 8 * MS, False, NOW)
    # One buy fill on B at 10001, 6 s ago: the mid was 10002 one second
    # later (mid2 20004) and 10000 five seconds later (mid2 20000).
    st.record_fill(B, XYZ, +1, 10001, 100, NOW - 6 * S)
    st.update_markouts(NOW - 5 * S, lambda s: 20004)
    st.update_markouts(NOW - 1 * S, lambda s: 20000)
    return md, st, fe


def test_feature_list_is_well_formed() -> None:
    assert N_FEATURES == len(FEATURES) == len(FEATURE_NAMES) == 28
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    groups = [f.group for f in FEATURES]
    # market block, then order block, then venue block: never interleaved.
    assert groups == sorted(groups, key=["market", "order", "venue"].index)
    assert all(f.unit and f.description for f in FEATURES)
    # The manifest records the list; it must round-trip through JSON.
    assert msgspec.json.decode(msgspec.json.encode(FEATURES), type=tuple[type(FEATURES[0]), ...]) == FEATURES


def test_golden_buy_limit_ioc() -> None:
    _md, _st, fe = golden()
    out = fe.compute(XYZ, +1, 500, True, 10003, True, NOW)
    assert out is fe.out and out.shape == (3, N_FEATURES) and out.dtype == np.float32
    assert np.isfinite(out).all()

    def same(name: str, value: float, rel: float = 1e-6, abs_: float = 1e-9) -> None:
        got = col(out, name)
        assert got == pytest.approx([value] * 3, rel=rel, abs=abs_), name

    # NBBO: bid 9999 (A 300 + B 100 = 400), ask 10001 (A 100); mid 10000.
    same("spread_bps", 2.0)  # (10001 - 9999)/10000 * 1e4
    # microprice = (9999*100 + 10001*400)/500 = 10000.6 -> 0.6/10000*1e4
    same("microprice_offset_bps", 0.6)
    # top 1: bids 300+100 = 400, asks 100+500 = 600 -> -200/1000
    same("imbalance_l1", -0.2)
    # top 3: bids (300+200+100)+(100*3) = 900, asks (100+200+300)+(500+100+100) = 1300
    same("imbalance_l3", (900 - 1300) / 2200)  # -0.181818
    # top 5: bids 700 + 500 = 1200, asks 800 + 900 = 1700
    same("imbalance_l5", (1200 - 1700) / 2900)  # -0.172414
    # Returns (log of mid2 ratios), one per row with ts >= now - W:
    #   a = ln(20002/20000) ~ +1e-4, b = ln(20001/20002) ~ -0.5e-4
    #   5 s (ts >= 1000 s): A 1000.5: a, A 1004.2: -a, A 1004.5: 0, B 1004.7: b
    #   1 s (ts >= 1004 s): A 1004.2: -a, A 1004.5: 0, B 1004.7: b
    a = math.log(20002 / 20000)
    b = math.log(20001 / 20002)
    # 5 s ~ stdev([1, -1, 0, -0.5]) = sqrt(2.1875/3) = 0.8539 bps
    same("realized_vol_5s_bps", statistics.stdev([a, -a, 0.0, b]) * 1e4, rel=1e-5)
    same("realized_vol_5s_bps", 0.8539, rel=1e-3)
    # 1 s ~ stdev([-1, 0, -0.5]) = sqrt(0.5/2) = 0.5 bps
    same("realized_vol_1s_bps", statistics.stdev([-a, 0.0, b]) * 1e4, rel=1e-5)
    same("realized_vol_1s_bps", 0.5, rel=1e-3)
    # Buckets = seconds 1001..1005. A has one bar there, second 1004: opened
    # at the mid carried in (20002), then 20000, 20000: (20002-20000)/20000.
    # B: second 1003 (first row, range 0) and 1004: carried 20002, then
    # 20001: (20002-20001)/20001. Mean over 5 buckets, then over 2 venues:
    # (2/20000 + 0 + 1/20001) * 1e4 / (5 * 2) = 0.1499975 bps
    same("atr_5s_bps", (2 / 20000 + 1 / 20001) * 1e4 / 10)
    # Lit trades with ts >= 1000 s: +200, -100, 0*50 -> 100 / 350 (dark 1000 excluded)
    same("trade_flow_5s", 100 / 350)
    same("traded_volume_5s", 350.0)
    same("nbbo_stale_ms", 500.0)  # A committed 500 ms ago, B 300 ms ago
    same("crossed", 0.0)
    # Order: buy 500, limit 10003, IOC; ADV 2e6; contra top 3 = 1300.
    same("size_over_adv", 500 / 2e6)
    same("size_over_top3", 500 / 1300)  # 0.384615
    same("side", 1.0)
    same("is_limit", 1.0)
    same("limit_distance_bps", (10003 - 10001) / 10001 * 1e4)  # 1.9998: 2 ticks through the ask
    same("is_ioc", 1.0)

    # Venue rows. A, bucket 1: the old child weighs 0.5, the new one 1.
    #   fill rate = (0.5*0.25 + 1*1 + 2*0.5)/(0.5 + 1 + 2) = 2.125/3.5
    #   ttf       = (0.5*5 + 1*2 + 2*100)/(0.5 + 1 + 2)   = 204.5/3.5 ms
    #   partial   = (0.5*1 + 0 + 2*0)/3.5                 = 0.5/3.5
    # B, D: no children -> the priors 0.5, 100 ms, 0.
    assert col(out, "venue_fill_rate") == pytest.approx([2.125 / 3.5, 0.5, 0.5], rel=1e-6)
    assert col(out, "venue_time_to_fill_ms") == pytest.approx([204.5 / 3.5, 100.0, 100.0], rel=1e-6)
    assert col(out, "venue_partial_freq") == pytest.approx([0.5 / 3.5, 0.0, 0.0], rel=1e-6, abs=1e-9)
    # B's markouts: bought at 10001; 1 s later mid 10002: +(1/10001)*1e4 bps,
    # booked 5 s ago (weight 2**(-5/300)); 5 s later mid 10000: -(1/10001)*1e4,
    # booked 1 s ago (weight 2**(-1/300)). Each next to the prior (0, weight 2).
    w1, w5 = 2 ** (-5 / 300), 2 ** (-1 / 300)
    mk = 1 / 10001 * 1e4
    assert col(out, "venue_markout_1s_bps") == pytest.approx([0.0, w1 * mk / (w1 + 2), 0.0], rel=1e-6, abs=1e-9)
    assert col(out, "venue_markout_5s_bps") == pytest.approx([0.0, -w5 * mk / (w5 + 2), 0.0], rel=1e-6, abs=1e-9)
    assert col(out, "venue_fee_bps") == pytest.approx(list(FEES), rel=1e-6)
    assert list(col(out, "venue_is_dark")) == [0.0, 0.0, 1.0]
    # Contra (ask) touch 10001: only A quotes it, with 100 shares.
    assert list(col(out, "venue_touch_size")) == [100.0, 0.0, 0.0]
    assert list(col(out, "venue_touch_share")) == [1.0, 0.0, 0.0]
    assert list(col(out, "venue_stale_ms")) == pytest.approx([500.0, 300.0, 0.0])


def test_agrees_with_marketdata_readers() -> None:
    # The same quantities through MarketData's own readers: one definition
    # of "consolidated depth", "NBBO" and "touch share" across the router.
    md, _, fe = golden()
    for side_sign, contra in ((1, 1), (-1, 0)):
        out = fe.compute(XYZ, side_sign, 500, False, 0, True, NOW)
        for n, name in ((1, "imbalance_l1"), (3, "imbalance_l3"), (5, "imbalance_l5")):
            b, a = md.depth_size(XYZ, 0, n), md.depth_size(XYZ, 1, n)
            assert col(out, name)[0] == pytest.approx((b - a) / (b + a), rel=1e-6)
        assert col(out, "size_over_top3")[0] == pytest.approx(500 / md.depth_size(XYZ, contra, 3), rel=1e-6)
        share = np.zeros(3)
        md.touch_share(XYZ, contra, share)
        assert col(out, "venue_touch_share") == pytest.approx(share, rel=1e-6)
        bid, _, ask, _ = md.nbbo(XYZ)
        assert col(out, "spread_bps")[0] == pytest.approx((ask - bid) / ((ask + bid) / 2) * 1e4, rel=1e-6)
        assert col(out, "crossed")[0] == float(md.crossed(XYZ))
        for v in (A, B):
            assert col(out, "venue_stale_ms")[v] == pytest.approx(md.staleness_ns(v, XYZ, NOW) / 1e6)


def test_golden_sell_limit_day_and_market_order() -> None:
    _md, _st, fe = golden()
    out = fe.compute(XYZ, -1, 500, True, 9998, False, NOW).copy()
    # Contra side is the bid: NBBO 9999 with A 300 + B 100.
    assert col(out, "side")[0] == -1.0
    assert col(out, "is_ioc")[0] == 0.0
    assert col(out, "size_over_top3")[0] == pytest.approx(500 / 900)  # bids top 3 = 900
    # Sell limit 9998 is 1 tick through the 9999 bid: (9999 - 9998)/9999*1e4
    assert col(out, "limit_distance_bps")[0] == pytest.approx(1 / 9999 * 1e4, rel=1e-6)
    assert list(col(out, "venue_touch_size")) == [300.0, 100.0, 0.0]
    assert list(col(out, "venue_touch_share")) == [0.75, 0.25, 0.0]  # 300/400, 100/400
    # A non-marketable limit reads negative: buy 9999 vs ask 10001.
    out = fe.compute(XYZ, +1, 100, True, 9999, False, NOW)
    assert col(out, "limit_distance_bps")[0] == pytest.approx(-2 / 10001 * 1e4, rel=1e-6)
    # Market buy of 100: no limit distance; bucket 0 on A has no children.
    out = fe.compute(XYZ, +1, 100, False, 0, True, NOW)
    assert col(out, "is_limit")[0] == 0.0
    assert col(out, "limit_distance_bps")[0] == 0.0
    assert col(out, "venue_fill_rate")[0] == pytest.approx(0.5)


def test_compute_order_matches_compute() -> None:
    _md, _st, fe = golden()
    order = ParentOrder(order_id="O1", session="S", cl_ord_id="C1", symbol="XYZ", side=Side.SELL, qty=700,
                        ord_type=OrdType.LIMIT, price_ticks=9997, tif=TimeInForce.DAY, arrival_ns=NOW)
    via_order = fe.compute_order(order, NOW).copy()
    direct = fe.compute(XYZ, -1, 700, True, 9997, False, NOW)
    assert np.array_equal(via_order, direct)
    market = ParentOrder(order_id="O2", session="S", cl_ord_id="C2", symbol="XYZ", side=Side.BUY, qty=50,
                         ord_type=OrdType.MARKET, price_ticks=None, tif=TimeInForce.IOC, arrival_ns=NOW)
    assert np.array_equal(fe.compute_order(market, NOW).copy(), fe.compute(XYZ, 1, 50, False, 0, True, NOW))


def test_same_value_every_call_and_deterministic() -> None:
    _, _, fe1 = golden()
    _, _, fe2 = golden()
    first = fe1.compute(XYZ, 1, 500, True, 10003, True, NOW).copy()
    assert np.array_equal(fe1.compute(XYZ, 1, 500, True, 10003, True, NOW), first)
    assert np.array_equal(fe2.compute(XYZ, 1, 500, True, 10003, True, NOW), first)


def test_other_symbol_is_independent_and_unknown_adv_uses_default() -> None:
    _md, _st, fe = golden()
    out = fe.compute(QQQ, 1, 500, True, 10003, True, NOW)
    assert np.isfinite(out).all()
    assert col(out, "size_over_adv")[0] == pytest.approx(500 / 1e6)  # QQQ not in the ADV map
    # QQQ has never had a book: zeros and caps.
    assert col(out, "spread_bps")[0] == 0.0
    assert col(out, "traded_volume_5s")[0] == 0.0
    assert col(out, "nbbo_stale_ms")[0] == STALE_CAP_MS
    assert col(out, "size_over_top3")[0] == 100.0
    # And XYZ is unchanged by having computed QQQ in between.
    again = fe.compute(XYZ, 1, 500, True, 10003, True, NOW)
    assert col(again, "traded_volume_5s")[0] == 350.0


def test_empty_book() -> None:
    _, _, fe = make()
    out = fe.compute(XYZ, 1, 100, True, 10000, True, 5 * S)
    assert np.isfinite(out).all()
    for name in ("spread_bps", "microprice_offset_bps", "imbalance_l1", "imbalance_l3", "imbalance_l5",
                 "realized_vol_1s_bps", "realized_vol_5s_bps", "atr_5s_bps", "trade_flow_5s",
                 "traded_volume_5s", "crossed", "limit_distance_bps", "venue_touch_size", "venue_touch_share"):
        assert not col(out, name).any(), name
    # Never-seen books read as stale as can be; no contra depth: the cap.
    assert list(col(out, "nbbo_stale_ms")) == [STALE_CAP_MS] * 3
    assert list(col(out, "venue_stale_ms")) == [STALE_CAP_MS, STALE_CAP_MS, 0.0]
    assert list(col(out, "size_over_top3")) == [100.0] * 3


def test_one_sided_book() -> None:
    md, _, fe = make()
    book(md, A, XYZ, S, [(9999, 300)], [])
    out = fe.compute(XYZ, 1, 500, True, 10005, True, S).copy()
    assert np.isfinite(out).all()
    assert col(out, "spread_bps")[0] == 0.0  # no mid without an ask
    assert col(out, "microprice_offset_bps")[0] == 0.0
    assert col(out, "imbalance_l1")[0] == 1.0  # (300 - 0)/(300 + 0)
    assert col(out, "crossed")[0] == 0.0
    assert col(out, "limit_distance_bps")[0] == 0.0  # no ask to measure against
    assert col(out, "size_over_top3")[0] == 100.0  # no ask depth: the cap
    assert not col(out, "venue_touch_size").any()
    # Selling into it: contra bid 9999 on A with 300.
    out = fe.compute(XYZ, -1, 500, True, 9990, True, S)
    assert col(out, "size_over_top3")[0] == pytest.approx(500 / 300)
    assert list(col(out, "venue_touch_size")) == [300.0, 0.0, 0.0]
    assert list(col(out, "venue_touch_share")) == [1.0, 0.0, 0.0]
    # 9 ticks through: (9999 - 9990)/9999 * 1e4
    assert col(out, "limit_distance_bps")[0] == pytest.approx(9 / 9999 * 1e4, rel=1e-6)


def test_crossed_consolidated_book() -> None:
    md, _, fe = make()
    # Each venue is fine on its own; together bid 10002 (A) > ask 10001 (B).
    book(md, A, XYZ, S, [(10002, 100)], [(10003, 100)])
    book(md, B, XYZ, S, [(10000, 100)], [(10001, 200)])
    out = fe.compute(XYZ, 1, 100, True, 10002, True, S)
    assert np.isfinite(out).all()
    assert col(out, "crossed")[0] == 1.0
    # (10001 - 10002)/10001.5 * 1e4 = -0.99985 bps: reported, not hidden.
    assert col(out, "spread_bps")[0] == pytest.approx(-1 / 10001.5 * 1e4, rel=1e-6)
    # microprice = (10002*200 + 10001*100)/300 = 10001.6667; mid 10001.5
    assert col(out, "microprice_offset_bps")[0] == pytest.approx((10001 + 2 / 3 - 10001.5) / 10001.5 * 1e4, rel=1e-5)
    assert col(out, "limit_distance_bps")[0] == pytest.approx(1 / 10001 * 1e4, rel=1e-6)  # vs ask 10001
    assert list(col(out, "venue_touch_size")) == [0.0, 200.0, 0.0]  # B holds the best ask
    # A locked book (bid == ask) counts as crossed too.
    book(md, A, XYZ, 2 * S, [(10001, 100)], [(10003, 100)])
    assert fe.compute(XYZ, 1, 100, False, 0, True, 2 * S)[0, FEATURE_INDEX["crossed"]] == 1.0


def test_stale_feed_is_capped() -> None:
    _md, _, fe = golden()
    out = fe.compute(XYZ, 1, 100, True, 10003, True, NOW + 120 * S)
    assert np.isfinite(out).all()
    assert col(out, "nbbo_stale_ms")[0] == STALE_CAP_MS
    assert list(col(out, "venue_stale_ms")) == [STALE_CAP_MS, STALE_CAP_MS, 0.0]
    # Everything has left the windows: nothing moved, nothing traded.
    for name in ("realized_vol_1s_bps", "realized_vol_5s_bps", "atr_5s_bps", "trade_flow_5s", "traded_volume_5s"):
        assert col(out, name)[0] == 0.0, name
    # The book itself is still what it was.
    assert col(out, "spread_bps")[0] == pytest.approx(2.0)


def test_one_venue_stale_one_fresh() -> None:
    md, _, fe = make()
    book(md, A, XYZ, 0, A_BIDS, A_ASKS)
    book(md, B, XYZ, 90 * S, B_BIDS, B_ASKS)
    out = fe.compute(XYZ, 1, 100, False, 0, True, 90 * S + 250 * MS)
    assert list(col(out, "venue_stale_ms")) == pytest.approx([STALE_CAP_MS, 250.0, 0.0])
    assert col(out, "nbbo_stale_ms")[0] == STALE_CAP_MS  # the worst lit venue


def test_zero_size_levels() -> None:
    md, _, fe = make()
    book(md, A, XYZ, S, A_BIDS, A_ASKS)
    # A size of 0 empties a level (MarketData's rule): A's 9998 bid goes.
    md.set_level(A, XYZ, 0, 1, 9998, 0)
    md.commit_book(A, XYZ, S + 1)
    # Snapshot with a zero-size best ask: that level is empty.
    book(md, B, XYZ, S + 2, B_BIDS, [(10002, 0), (10003, 100)])
    out = fe.compute(XYZ, 1, 100, True, 10003, True, S + 3)
    assert np.isfinite(out).all()
    # bids top 3: A 300 + 0 + 100, B 100*3 -> 700; asks: A 600, B 0 + 100 + 0 -> 700
    assert col(out, "imbalance_l3")[0] == pytest.approx(0.0, abs=1e-7)
    # bids top 1: 300 + 100; asks top 1: 100 + 0 (B's level 0 is empty)
    assert col(out, "imbalance_l1")[0] == pytest.approx((400 - 100) / 500)


def test_absurd_wire_sizes_do_not_overflow() -> None:
    md, _, fe = make()
    huge = 1 << 62  # MarketData accepts it; two of them overflow int64
    book(md, A, XYZ, S, [(9999, huge)], [(10001, huge)])
    book(md, B, XYZ, S, [(9999, huge)], [(10001, huge)])
    md.apply_trade(A, XYZ, S, 10000, huge, 1)
    md.apply_trade(B, XYZ, S, 10000, huge, 1)
    out = fe.compute(XYZ, 1, 10**9, True, 1 << 40, True, S)
    assert np.isfinite(out).all()
    assert col(out, "trade_flow_5s")[0] == 1.0
    assert col(out, "venue_touch_share")[0] == 0.5


def test_shallow_depth_uses_all_levels_kept() -> None:
    md, _, fe = make(depth=3)
    book(md, A, XYZ, S, A_BIDS, A_ASKS)
    out = fe.compute(XYZ, 1, 100, False, 0, True, S)
    # A alone, 3 levels kept: bids 600, asks 600 -> 0; l5 is the same 3 levels.
    assert col(out, "imbalance_l3")[0] == 0.0
    assert col(out, "imbalance_l5")[0] == 0.0
    # top 1: (300 - 100)/400
    assert col(out, "imbalance_l1")[0] == pytest.approx(0.5)
    md1, _, fe1 = make(depth=1)
    book(md1, A, XYZ, S, A_BIDS, A_ASKS)
    out = fe1.compute(XYZ, 1, 100, False, 0, True, S)
    assert col(out, "imbalance_l5")[0] == pytest.approx(0.5)
    assert np.isfinite(out).all()


def test_time_going_backwards_rebuilds() -> None:
    md, st, fe = golden()
    fe.compute(XYZ, 1, 500, True, 10003, True, NOW)
    earlier = fe.compute(XYZ, 1, 500, True, 10003, True, NOW - 2 * S).copy()
    assert fe.resyncs >= 1
    assert np.isfinite(earlier).all()
    # Same as an engine that never saw the later time.
    fresh = FeatureEngine(md, st, FEES, {"XYZ": 2e6})
    assert np.array_equal(fresh.compute(XYZ, 1, 500, True, 10003, True, NOW - 2 * S), earlier)


def test_warm_changes_no_later_result() -> None:
    """The poll driver warms the features while idle; a warmed engine and a
    cold one agree on every order after (same market, same times)."""
    md1, _, fe1 = make()
    md2, _, fe2 = make()
    rng = random.Random(7)
    mid2 = 20000
    for i in range(200):
        t = S + i * 40 * MS
        mid2 += rng.choice((-2, 0, 2))
        for md in (md1, md2):
            book(md, i % 2, XYZ, t, [(mid2 // 2 - 1, 100 + i)], [(mid2 // 2 + 1, 100)])
            md.apply_trade(i % 2, XYZ, t, mid2 // 2, 10 + i % 7, 1 if i % 3 else -1)
        for k in range(i % 4):
            fe2.warm(t + k)
        if i % 7 == 0:
            a = fe1.compute(XYZ, -1, 300, True, 9990, False, t + 5).copy()
            assert np.array_equal(fe2.compute(XYZ, -1, 300, True, 9990, False, t + 5), a)


def ref_returns(rows: list[tuple[int, int]], now: int, window: int, last: int) -> list[float]:
    """Log-returns of consecutive rows (both two-sided) whose row has ts >=
    now - window, among the ``last`` most recent rows (the ring)."""
    out = []
    for i in range(max(1, len(rows) - last), len(rows)):
        (_, m0), (t1, m1) = rows[i - 1], rows[i]
        if t1 >= now - window and m0 > 0 and m1 > 0:
            out.append(math.log(m1 / m0))
    return out


def ref_vol(per_venue: list[list[tuple[int, int]]], now: int, window: int, last: int) -> float:
    rets = [r for rows in per_venue for r in ref_returns(rows, now, window, last)]
    return statistics.stdev(rets) * 1e4 if len(rets) >= 2 else 0.0


def ref_atr(per_venue: list[list[tuple[int, int]]], now: int) -> float:
    now_sec = now // S
    total, venues = 0.0, 0
    for rows in per_venue:
        valid = [(t, m) for t, m in rows if m > 0]
        seen, tr = False, 0.0
        for sec in range(now_sec - 4, now_sec + 1):
            inside = [m for t, m in valid if t // S == sec]
            if not inside:
                continue
            before = [m for t, m in valid if t // S < sec]
            pts = inside + before[-1:]  # true range: the mid carried in
            seen = True
            tr += (max(pts) - min(pts)) / inside[-1]
        if seen:
            total += tr
            venues += 1
    return total * 1e4 / (5 * venues) if venues else 0.0


def ref_flow(trades: list[list[tuple[int, int, int]]], now: int, last: int) -> tuple[float, int]:
    signed = vol = 0
    for tape in trades:
        for t, sz, side in tape[-last:]:
            if t >= now - 5 * S:
                signed += side * sz
                vol += sz
    return (signed / vol if vol else 0.0), vol


Walk = tuple[list[list[tuple[int, int]]], list[list[tuple[int, int, int]]], list[int]]


def _steps(md: MarketData, rng: random.Random, steps: int, t0: int, rows: list[list[tuple[int, int]]],
           tapes: list[list[tuple[int, int, int]]]) -> Iterator[tuple[int, int]]:
    """Random commits and trades on A and B from ``t0``, recorded in each
    venue's (ts, mid2) ``rows`` and (ts, size, side) ``tapes``; yields
    (commit time, mid) after each step, so a caller may draw from ``rng``
    in between."""
    t = t0
    mid = 10000
    for i in range(steps):
        t += rng.choice((30, 150, 400, 900)) * MS
        v = rng.randrange(2)
        mid += rng.choice((-1, 0, 1))
        if i % 7 == 3:
            book(md, v, XYZ, t, [(mid - 1, 100)], [])  # one-sided: mid2 0
            rows[v].append((t, 0))
        else:
            book(md, v, XYZ, t, [(mid - 1, 100)], [(mid + 1, 100)])
            rows[v].append((t, 2 * mid))
        if rng.random() < 0.7:
            sz, side = rng.randrange(1, 500), rng.choice((-1, 0, 1))
            md.apply_trade(v, XYZ, t, mid, sz, side)
            tapes[v].append((t, sz, side))
        yield t, mid


def _walk(md: MarketData, steps: int, seed: int, t0: int = 100 * S) -> Walk:
    """``_steps`` run through; returns the rows, the tapes and the commit
    times."""
    rows: list[list[tuple[int, int]]] = [[], []]
    tapes: list[list[tuple[int, int, int]]] = [[], []]
    times = [t for t, _ in _steps(md, random.Random(seed), steps, t0, rows, tapes)]
    return rows, tapes, times


def test_ring_wraparound_incremental_matches_reference() -> None:
    md, _, fe = make(book_capacity=8, trade_capacity=8)
    rng = random.Random(11)
    rows: list[list[tuple[int, int]]] = [[], []]
    tapes: list[list[tuple[int, int, int]]] = [[], []]
    now = 100 * S
    checked = 0
    for t, mid in _steps(md, rng, 400, now, rows, tapes):
        # now never goes backwards; rows are never in its future.
        now = max(now, t + rng.choice((0, 0, 200, 700)) * MS)
        out = fe.compute(XYZ, 1, 100, True, mid + 1, True, now)
        assert np.isfinite(out).all()
        m = out[0]
        assert m[FEATURE_INDEX["realized_vol_1s_bps"]] == pytest.approx(ref_vol(rows, now, S, 8), rel=1e-4, abs=1e-4)
        assert m[FEATURE_INDEX["realized_vol_5s_bps"]] == pytest.approx(ref_vol(rows, now, 5 * S, 8), rel=1e-4,
                                                                        abs=1e-4)
        assert m[FEATURE_INDEX["atr_5s_bps"]] == pytest.approx(ref_atr(rows, now), rel=1e-5, abs=1e-6)
        flow, vol = ref_flow(tapes, now, 8)
        assert m[FEATURE_INDEX["trade_flow_5s"]] == pytest.approx(flow, rel=1e-6, abs=1e-7)
        assert m[FEATURE_INDEX["traded_volume_5s"]] == vol
        checked += 1
    assert checked == 400
    assert md.ring_count[A, XYZ] == 8  # the ring really wrapped, many times
    assert fe.resyncs == 0


def test_ring_overrun_between_computes_rebuilds_from_the_ring() -> None:
    # 60 commits between computes on an 8-row ring: the read position is
    # lost, and the engine rebuilds from what the ring still holds (the
    # oldest ring row then has no known predecessor, so no return).
    md, _, fe = make(book_capacity=8, trade_capacity=8)
    _rows, _tapes, times = _walk(md, 20, seed=3)
    fe.compute(XYZ, 1, 100, False, 0, True, times[-1])
    more_rows, more_tapes, more_times = _walk(md, 60, seed=4, t0=times[-1])
    assert min(len(r) for r in more_rows) >= 8 and min(len(tp) for tp in more_tapes) >= 8
    now = more_times[-1]
    out = fe.compute(XYZ, 1, 100, False, 0, True, now)
    assert np.isfinite(out).all()
    assert fe.resyncs >= 1
    ring_rows = [r[-8:] for r in more_rows]
    m = out[0]
    assert m[FEATURE_INDEX["realized_vol_5s_bps"]] == pytest.approx(ref_vol(ring_rows, now, 5 * S, 8), rel=1e-4,
                                                                    abs=1e-4)
    assert m[FEATURE_INDEX["atr_5s_bps"]] == pytest.approx(ref_atr(ring_rows, now), rel=1e-5, abs=1e-6)
    flow, vol = ref_flow(more_tapes, now, 8)
    assert m[FEATURE_INDEX["trade_flow_5s"]] == pytest.approx(flow, rel=1e-6, abs=1e-7)
    assert m[FEATURE_INDEX["traded_volume_5s"]] == vol


def test_cold_engine_agrees_when_windows_fit_in_the_ring() -> None:
    md, st, fe = make()
    _rows, _tapes, times = _walk(md, 500, seed=9)
    for t in times[::5]:
        fe.compute(XYZ, 1, 100, False, 0, True, t)
    now = times[-1]
    warm = fe.compute(XYZ, 1, 100, False, 0, True, now).copy()
    cold = FeatureEngine(md, st, FEES, {"XYZ": 2e6}).compute(XYZ, 1, 100, False, 0, True, now)
    assert np.array_equal(warm, cold)


def test_bad_construction_fails_fast() -> None:
    md, st, _ = make()
    with pytest.raises(ValueError, match="venue_fees_bps"):
        FeatureEngine(md, st, [0.1, 0.2], {})
    with pytest.raises(ValueError, match="adv"):
        FeatureEngine(md, st, FEES, {"XYZ": 0.0})
    with pytest.raises(ValueError, match="default_adv"):
        FeatureEngine(md, st, FEES, {}, default_adv=0.5)
    with pytest.raises(ValueError, match="venue_fees_bps"):
        FeatureEngine(md, st, [0.1, math.nan, 0.0], {})
    with pytest.raises(ValueError, match="venues"):
        FeatureEngine(md, VenueStats(["A", "B"], md.symbols), FEES, {})


def test_size_over_adv_without_reference_data_estimates_the_day_from_the_prints() -> None:
    md = MarketData(["A", "B", "D"], [True, True, False], ["XYZ", "QQQ"], depth=5, book_capacity=64,
                    trade_capacity=64)
    fe = FeatureEngine(md, VenueStats(md.venues, md.symbols), FEES, {"QQQ": 5e6})
    day, floor = 23_400 * S, 60 * S
    assert col(fe.compute(XYZ, 1, 500, True, 10001, True, NOW), "size_over_adv")[0] == 0.0, "no print: unknown"
    md.apply_trade(A, XYZ, NOW, 10000, 300, 1)
    md.apply_trade(D, XYZ, NOW, 10000, 10_000, 0)  # dark prints are not the public tape
    # 300 shares in (under the 60 s floor): 300 * day / 60 s.
    got = col(fe.compute(XYZ, 1, 500, True, 10001, True, NOW + 10 * S), "size_over_adv")[0]
    assert got == pytest.approx(500 / (300 * day / floor), rel=1e-6)
    md.apply_trade(B, XYZ, NOW + 100 * S, 10000, 700, -1)
    got = col(fe.compute(XYZ, 1, 500, True, 10001, True, NOW + 200 * S), "size_over_adv")[0]
    assert got == pytest.approx(500 / (1000 * day / (200 * S)), rel=1e-6)
    assert col(fe.compute(QQQ, 1, 500, True, 10001, True, NOW), "size_over_adv")[0] == pytest.approx(500 / 5e6), \
        "reference data wins"
