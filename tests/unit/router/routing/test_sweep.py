"""The cost-aware lit sweep (``router.routing.sweep``): levels taken across
venues by all-in price, and the ML planner's ``sweep`` strategy built on
the feature engine's books."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from router.domain.plan import Slice
from router.domain.types import TimeInForce
from router.features.catalogue import C_MARK1
from router.market.rings import MarketData
from router.routing.sweep import Take, allocate, markout_penalties
from tests.unit.router.routing.test_planners import (
    ALL,
    PX,
    VENUES,
    FakeFeatures,
    ioc,
    make_cfg,
    ml,
    order,
    scores,
)

IOC = TimeInForce.IOC
PROPS = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def test_the_cheapest_levels_go_first_across_venues() -> None:
    # Buy 500 with no fees: A's 100 @ 100, B's 200 @ 100, then A's 300 @ 101 (not B's @ 102).
    books = [(0, [(100, 100), (101, 300)]), (1, [(100, 200), (102, 500)])]
    assert allocate(books, +1, 500, None, [0.0, 0.0]) == [Take(0, 300, 101), Take(1, 200, 100)]


def test_a_fee_decides_between_equal_prices_and_a_rebate_wins() -> None:
    books = [(0, [(100, 300)]), (1, [(100, 300)]), (2, [(100, 300)])]
    got = allocate(books, +1, 400, None, [1.5, 0.5, -0.75])
    assert got == [Take(2, 300, 100), Take(1, 100, 100)]


def test_a_fee_never_buys_a_worse_tick() -> None:
    # 1.5 bps of 100 ticks is 0.015 of a tick: B's deeper level stays dearer.
    books = [(0, [(100, 100)]), (1, [(99, 100), (100, 100)])]
    assert allocate(books, +1, 300, None, [1.5, 0.0]) == [Take(1, 200, 100), Take(0, 100, 100)]


def test_the_limit_stops_the_sweep_and_sells_take_the_highest_bids() -> None:
    books = [(0, [(101, 100), (100, 100), (99, 100)]), (1, [(101, 50), (98, 500)])]
    assert allocate(books, -1, 1000, 100, [0.0, 0.0]) == [Take(0, 200, 100), Take(1, 50, 101)]
    assert allocate([(0, [(102, 100)])], +1, 100, 101, [0.0]) == [], "nothing visible within the limit"


def test_markout_penalties_charge_what_a_venue_loses_against_the_others() -> None:
    pen = markout_penalties([-4.0, -6.0, 0.0, -2.0], [0, 1, 3])
    assert pen == {0: 0.0, 1: 2.0, 3: -2.0}, "the pool (index 2) is no lit venue; the mean is -4"


levels = st.lists(st.tuples(st.integers(1, 20), st.integers(1, 500)), max_size=5)


@PROPS
@given(st.lists(levels, min_size=1, max_size=4), st.integers(1, 3000), st.sampled_from([1, -1]),
       st.lists(st.floats(-2.0, 3.0), min_size=4, max_size=4), st.one_of(st.none(), st.integers(90, 110)))
def test_the_sweep_is_the_cheapest_fill_of_the_visible_book(raw: list[list[tuple[int, int]]], qty: int, side: int,
                                                             pen: list[float], limit: int | None) -> None:
    # Books best first: asks rising for a buy, bids falling for a sell.
    books = []
    for v, lv in enumerate(raw):
        pxs = sorted({100 + side * k for k, _ in lv}, key=lambda p: side * p)
        books.append((v, [(p, sz) for p, (_, sz) in zip(pxs, lv, strict=False)]))
    got = allocate(books, side, qty, limit, pen)
    within = [(side * px + px * pen[v] / 1e4, v, px, sz) for v, lv in books for px, sz in lv
              if limit is None or side * (px - limit) <= 0]
    visible = sum(sz for *_, sz in within)
    assert sum(t.qty for t in got) == min(qty, visible)
    assert len({t.venue for t in got}) == len(got)
    # What was left out is never cheaper than what was taken.
    taken = {t.venue: t for t in got}
    worst_taken = max((c for c, v, px, _ in within if v in taken and side * (px - taken[v].limit_ticks) <= 0),
                      default=None)
    if worst_taken is not None and sum(t.qty for t in got) < visible:
        left_out = [c for c, v, px, _ in within if v not in taken or side * (px - taken[v].limit_ticks) > 0]
        assert all(c >= worst_taken - 1e-9 for c in left_out)


def test_market_data_levels_are_best_first_and_dark_venues_have_none() -> None:
    md = MarketData(["LIT1", "DARK1"], [True, False], ["AAPL"])
    md.set_level(0, 0, 1, 0, 19001, 100)
    md.set_level(0, 0, 1, 1, 19002, 300)
    md.set_level(0, 0, 0, 0, 18999, 50)
    assert md.levels(0, 0, 1) == [(19001, 100), (19002, 300)]
    assert md.levels(0, 0, 0) == [(18999, 50)]
    assert md.levels(1, 0, 1) == []


class BookFeatures(FakeFeatures):
    """FakeFeatures with the books a FeatureEngine would hand the planner."""

    def __init__(self, asks: dict[str, list[tuple[int, int]]], markout: tuple[float, ...] = (0.0,) * 5) -> None:
        super().__init__(touch=tuple(float(asks[v][0][1]) if asks.get(v) else 0.0 for v in VENUES), top3=3.0)
        self.out[:, C_MARK1] = markout
        self.md = MarketData(list(VENUES), [not v.startswith("DARK") for v in VENUES], ["AAPL"])
        for v, lv in asks.items():
            for i, (px, sz) in enumerate(lv):
                self.md.set_level(VENUES.index(v), 0, 1, i, px, sz)


def _fees(fees: dict[str, float]) -> object:
    cfg = make_cfg(lot=100)
    return msgspec.structs.replace(cfg, venues=[msgspec.structs.replace(v, take_fee_bps=fees.get(v.name, 0.0))
                                                for v in cfg.venues])


def test_the_ml_planner_sweeps_lit_books_when_no_pool_is_worth_a_slice() -> None:
    feats = BookFeatures({"LIT1": [(PX - 2, 300), (PX - 1, 500)], "LIT2": [(PX - 2, 200)],
                          "LIT3": [(PX - 2, 100), (PX, 900)]})
    # The pools are dearer than every lit venue: the lit books decide.
    sc = scores([3.0, 2.0, 9.0, 9.0, 2.5])
    # Fees within half a tick (a tick at 190.00 is 0.53 bps), so price comes first.
    planner, _, _ = ml(_fees({"LIT1": 0.30, "LIT2": 0.10, "LIT3": -0.20}), sc, features=feats)  # type: ignore[arg-type]
    plan = planner.plan(order(1000, tif=IOC), ALL)
    assert planner.last_strategy == "sweep" and plan.name == "ml:sweep"
    # PX-2: LIT3 100 (rebate), LIT2 200, LIT1 300; then PX-1: LIT1 400 of its 500.
    assert plan.waves[0].slices == (
        Slice(venue="LIT3", weight=0.1, tif=IOC, limit_ticks=PX - 2),
        Slice(venue="LIT2", weight=0.2, tif=IOC, limit_ticks=PX - 2),
        Slice(venue="LIT1", weight=0.7, tif=IOC, limit_ticks=PX - 1))
    # What the books did not give, down the lit ranking at the parent's limit.
    assert plan.waves[1:] == (ioc("LIT2"), ioc("LIT3"), ioc("LIT1"))


def test_a_measured_markout_moves_volume_away_from_a_fading_venue() -> None:
    asks = {"LIT1": [(PX - 2, 500)], "LIT2": [(PX - 2, 500)], "LIT3": []}
    sc = scores([2.0, 2.0, 9.0, 9.0, 2.0])
    # Equal books and fees: LIT2's fills lose 4 bps more afterwards than LIT1's.
    feats = BookFeatures(asks, markout=(0.0, -4.0, 0.0, 0.0, 0.0))
    planner, _, _ = ml(_fees({}), sc, features=feats)  # type: ignore[arg-type]
    first = planner.plan(order(600, tif=IOC), ALL).waves[0]
    assert [(s.venue, s.weight) for s in first.slices] == [("LIT1", 500 / 600), ("LIT2", 100 / 600)]
    # With the markout off, fees and prices alone see two equal venues.
    cfg = _fees({})
    off = msgspec.structs.replace(cfg, waterfall=msgspec.structs.replace(cfg.waterfall, sweep_markout="off"))  # type: ignore[attr-defined]
    planner, _, _ = ml(off, sc, features=BookFeatures(asks, markout=(0.0, -4.0, 0.0, 0.0, 0.0)))
    first = planner.plan(order(600, tif=IOC), ALL).waves[0]
    assert sum(s.weight for s in first.slices) == 1.0 and {s.venue for s in first.slices} == {"LIT1", "LIT2"}


def test_a_pool_worth_a_slice_makes_the_sweep_a_spray() -> None:
    feats = BookFeatures({"LIT1": [(PX - 2, 300)], "LIT2": [(PX - 2, 200)], "LIT3": [(PX - 2, 100)]})
    sc = scores([3.0, 2.0, 1.0, 9.0, 2.5])  # DARK1 is the cheapest venue
    planner, _, _ = ml(_fees({}), sc, features=feats)  # type: ignore[arg-type]
    plan = planner.plan(order(1000, tif=IOC, strategy="sweep"), ALL)
    assert planner.last_strategy == "spray" and plan.name == "ml:sweep>spray"


def test_without_books_the_planner_sprays() -> None:
    feats = FakeFeatures(touch=(300, 50, 0, 0, 400), top3=2.0)
    planner, _, _ = ml(make_cfg(lot=100), scores([3.0, 1.0, 9.0, 8.0, 1.5]), features=feats)
    assert planner.plan(order(2000, tif=IOC), ALL).name == "ml:spray"


def test_an_explored_lead_is_swept_first() -> None:
    """Exploration's pick must get its slice even where its book is dearer,
    or the journal never learns what it does."""
    feats = BookFeatures({"LIT1": [(PX - 2, 300)], "LIT2": [(PX - 2, 200)], "LIT3": [(PX - 1, 400)]})
    planner, _, _ = ml(_fees({}), scores([2.0, 2.0, 9.0, 9.0, 3.0]), features=feats)  # type: ignore[arg-type]
    mlp = planner.planner
    waves = mlp._sweep(order(600, tif=IOC), [0, 1, 4], [0.0] * 5, PX, lead=4)  # type: ignore[attr-defined]
    assert [(s.venue, s.weight, s.limit_ticks) for s in waves[0].slices] == [
        ("LIT3", 400 / 600, PX - 1), ("LIT1", 200 / 600, PX - 2)]
    greedy = mlp._sweep(order(600, tif=IOC), [0, 1, 4], [0.0] * 5, PX)  # type: ignore[attr-defined]
    assert [s.venue for s in greedy[0].slices] == ["LIT1", "LIT2", "LIT3"]
