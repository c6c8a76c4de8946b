"""A parent's urgency in every planner: high never rests in the dark, low
rests longer, normal is unchanged; and every ``Decision`` carries the plan's
expected completion time (``router.routing.policy.expected_completion_ms``).

The fakes and the config are ``test_planners``'s: the scorer returns chosen
scores, the features are set by hand.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from router.domain.commands import SendChildOrder
from router.domain.events import NewOrderReceived, VenueSessionChanged
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import OrdType, Side, TimeInForce, Urgency
from router.engine import Engine
from router.features.catalogue import C_TTF
from router.metrics.registry import Metrics
from router.routing.baselines import DisplayedProportional, EqualSplit, StaticWaterfall
from router.routing.factory import make_planner
from router.routing.ml import MLPlanner
from router.routing.policy import (
    STRATEGIES,
    UNMEASURED_TIME_TO_FILL_MS,
    dark_rest_ms_for,
    expected_completion_ms,
)
from tests.unit.router.routing.test_planners import (
    ALL,
    DARKS,
    PROPS,
    PX,
    VENUES,
    FakeFeatures,
    FakeScorer,
    make_cfg,
    ml,
    order,
    scores,
)

IOC, DAY = TimeInForce.IOC, TimeInForce.DAY
HIGH, NORMAL, LOW = Urgency.HIGH, Urgency.NORMAL, Urgency.LOW
DARK_FIRST = scores([3.0, 2.0, 1.0, 1.5, 4.0])
"""p = 1, so e = c: DARK1 (1) and DARK2 (1.5) beat the best lit (LIT2, 2): policy goes dark-first."""


def urgent(o: ParentOrder, urgency: Urgency) -> ParentOrder:
    return dataclasses.replace(o, urgency=urgency)


def dark_day_slices(plan: Plan) -> list[Slice]:
    return [s for w in plan.waves for s in w.slices if s.venue in DARKS and s.tif is DAY]


# ------------------------------------------------------------ the ML planner


def test_high_urgency_pools_get_ioc_slices_where_normal_rests() -> None:
    planner, _, _ = ml(sc=DARK_FIRST)
    normal = planner.plan(order(100), ALL)
    assert [(s.venue, s.tif, s.timeout_ms) for s in normal.waves[0].slices] == [
        ("DARK1", DAY, 200),
        ("DARK2", DAY, 200),
    ], "normal: today's dark-first"
    high = planner.plan(urgent(order(100), HIGH), ALL)
    assert high.name == "ml:dark-first" and planner.last_strategy == "dark-first"
    assert [(s.venue, s.tif, s.timeout_ms, s.limit_ticks) for s in high.waves[0].slices] == [
        ("DARK1", IOC, None, PX),
        ("DARK2", IOC, None, PX),
    ], "the pools at the mid, immediate or cancel"
    assert dark_day_slices(high) == []
    assert high.waves[1:] == normal.waves[1:], "the lit part is the same plan"


def test_high_urgency_wins_over_a_requested_dark_first() -> None:
    planner, _, _ = ml(sc=scores([3.0, 2.0, 1.0, 9.0, 4.0]))
    plan = planner.plan(urgent(order(100, strategy="dark-first"), HIGH), ALL)
    assert plan.name == "ml:dark-first"
    assert plan.waves[0] == Wave(slices=(Slice(venue="DARK1", weight=1.0, tif=IOC, limit_ticks=PX),))


def test_high_urgency_even_when_exploration_leads_with_a_pool() -> None:
    # Lit LIT2 is the model's cheapest; a generous budget makes a pool lead
    # for some parents: those plans still never rest in the dark.
    cfg = make_cfg(explore_bps=50.0, explore_max=0.5)
    planner = MLPlanner(cfg, FakeFeatures(), FakeScorer(scores([3.0, 1.0, 1.1, 1.2, 4.0])))
    led_dark = 0
    for i in range(200):
        o = dataclasses.replace(order(100), cl_ord_id=f"c{i}", urgency=HIGH)
        d = planner.decide(o, ALL)
        led_dark += d.ranking[0] in DARKS
        assert dark_day_slices(d.plan) == [], d.plan
    assert led_dark > 0, "exploration led with a pool at least once"


def test_low_urgency_rests_twice_as_long() -> None:
    planner, _, _ = ml(make_cfg(dark_rest_ms=150), DARK_FIRST)
    plan = planner.plan(urgent(order(100), LOW), ALL)
    assert [(s.tif, s.timeout_ms) for s in plan.waves[0].slices] == [(DAY, 300), (DAY, 300)]
    assert [dark_rest_ms_for(u, 150) for u in (LOW, NORMAL, HIGH)] == [300, 150, 0]
    assert dark_rest_ms_for(LOW, 0) == 0, "no rest time stays no rest time (IOC pools)"


def test_normal_urgency_is_the_default_and_unchanged() -> None:
    planner, _, _ = ml(sc=DARK_FIRST)
    assert order(100).urgency is NORMAL
    assert planner.plan(order(100), ALL) == planner.plan(urgent(order(100), NORMAL), ALL)


# --------------------------------------------------- a dark rest venue, all planners


@pytest.mark.parametrize("kind", ["static", "equal", "displayed"])
def test_rule_planners_do_not_rest_high_urgency_in_a_dark_rest_venue(kind: str) -> None:
    cfg = make_cfg(planner=kind, rest_venue="DARK1")
    planner = make_planner(cfg, FakeFeatures(), None)
    normal = planner.decide(order(100), ALL).plan
    assert normal.final == "rest" and normal.waves[-1].slices[0] == Slice(venue="DARK1", tif=DAY, limit_ticks=PX)
    high = planner.decide(urgent(order(100), HIGH), ALL).plan
    assert high.final == "cancel", "no ranking to pick a lit venue from: the remainder goes back"
    assert high.waves == normal.waves[:-1]
    assert dark_day_slices(high) == []


def test_ml_planner_rests_high_urgency_on_the_best_lit_instead_of_a_dark_rest_venue() -> None:
    planner, _, _ = ml(make_cfg(rest_venue="DARK1"), scores([3.0, 1.0, 9.0, 8.0, 2.0]))
    assert planner.plan(order(100), ALL).waves[-1].slices[0].venue == "DARK1"
    plan = planner.plan(urgent(order(100), HIGH), ALL)
    assert plan.final == "rest" and plan.waves[-1] == Wave(slices=(Slice(venue="LIT2", tif=DAY, limit_ticks=PX),))
    assert dark_day_slices(plan) == []


def test_the_static_waterfall_sends_dark_venues_ioc_whatever_the_urgency() -> None:
    cfg = make_cfg()
    for u in Urgency:
        plan = StaticWaterfall(cfg).plan(urgent(order(100), u), ALL)
        assert [s.tif for w in plan.waves[:-1] for s in w.slices] == [IOC] * 5
        assert plan.waves[-1].slices[0] == Slice(venue="LIT1", tif=DAY, limit_ticks=PX), "a lit rest is kept"


@PROPS
@given(
    rows=st.lists(st.tuples(st.floats(-50, 50), st.floats(-0.5, 1.5), st.floats(-50, 50)), min_size=5, max_size=5),
    up=st.sets(st.sampled_from(VENUES)),
    kind=st.sampled_from(["ml", "static", "equal", "displayed"]),
    strategy=st.sampled_from([None, "static", *STRATEGIES]),
    qty=st.integers(1, 100_000),
    ord_type=st.sampled_from(list(OrdType)),
    tif=st.sampled_from(list(TimeInForce)),
    rest_venue=st.sampled_from(["LIT1", "DARK1", "DARK2"]),
    dark_rest_ms=st.integers(0, 1000),
    explore=st.booleans(),
)
def test_high_urgency_never_rests_in_the_dark(
    rows: list[tuple[float, float, float]],
    up: set[str],
    kind: str,
    strategy: str | None,
    qty: int,
    ord_type: OrdType,
    tif: TimeInForce,
    rest_venue: str,
    dark_rest_ms: int,
    explore: bool,
) -> None:
    cfg = make_cfg(
        planner=kind,
        rest_venue=rest_venue,
        dark_rest_ms=dark_rest_ms,
        explore_bps=20.0 if explore else 0.0,
        explore_max=0.5,
    )
    planner = make_planner(cfg, FakeFeatures(), FakeScorer(np.array(rows)))
    o = ParentOrder(
        order_id="P1",
        session="OMS",
        cl_ord_id=f"c{qty}",
        symbol="AAPL",
        side=Side.BUY,
        qty=qty,
        ord_type=ord_type,
        price_ticks=PX if ord_type is OrdType.LIMIT else None,
        tif=tif,
        arrival_ns=5_000,
        strategy=strategy,
        urgency=HIGH,
    )
    d = planner.decide(o, frozenset(up))
    assert dark_day_slices(d.plan) == []
    assert (d.expected_completion_ms is None) == (not d.plan.waves)


# ------------------------------------------------------------ the engine


def test_a_high_urgency_parent_reaches_the_planner_through_the_engine() -> None:
    cfg = make_cfg(final_action="cancel", rest_venue=None)
    planner = MLPlanner(cfg, FakeFeatures(), FakeScorer(DARK_FIRST))
    eng = Engine(cfg, planner, Metrics(list(VENUES), registry=CollectorRegistry()), "T-")
    for v in VENUES:
        eng.on_venue_session(VenueSessionChanged(venue=v, up=True, ts_ns=1))
    sent = {}
    for cl, u, qty in (("n1", NORMAL, 100), ("h1", HIGH, 200)):
        out = eng.on_new_order(
            NewOrderReceived(
                session="OMS",
                cl_ord_id=cl,
                symbol="AAPL",
                side=Side.BUY,
                qty=qty,
                ord_type=OrdType.LIMIT,
                price_ticks=PX,
                tif=DAY,
                recv_ns=10,
                urgency=u,
            )
        )
        sent[cl] = [(c.venue, c.tif) for c in out if isinstance(c, SendChildOrder)]
    assert sent["n1"] == [("DARK1", DAY), ("DARK2", DAY)]
    assert sent["h1"] == [("DARK1", IOC), ("DARK2", IOC)]
    assert {p.cl_ord_id: p.urgency for p in eng.parents.values()} == {"n1": NORMAL, "h1": HIGH}


# ------------------------------------------------------ expected completion


def _wave(*slices: tuple[str, TimeInForce, int | None]) -> Wave:
    return Wave(slices=tuple(Slice(venue=v, tif=t, limit_ticks=PX, timeout_ms=ms) for v, t, ms in slices))


def test_expected_completion_formula() -> None:
    ttf = {"LIT1": 2.0, "LIT2": 5.0, "DARK1": 40.0}
    ioc_first = Plan(waves=(_wave(("LIT1", IOC, None), ("LIT2", IOC, None)), _wave(("LIT1", IOC, None))), name="t")
    assert expected_completion_ms(ioc_first, ttf) == 5.0, "the first wave's slowest venue; later waves not counted"
    dark = Plan(
        waves=(
            _wave(("DARK1", DAY, 200), ("DARK2", DAY, 200)),
            _wave(("LIT1", IOC, None), ("LIT2", IOC, None)),
            _wave(("LIT1", IOC, None)),
        ),
        name="t",
    )
    assert expected_completion_ms(dark, ttf) == 205.0, "the rest, then the lit wave that takes what it leaves"
    assert expected_completion_ms(dark) == 200.0 + UNMEASURED_TIME_TO_FILL_MS, "a venue not measured"
    rest_only = Plan(waves=(_wave(("LIT1", DAY, None)),), name="t", final="rest")
    assert expected_completion_ms(rest_only, ttf) == 2.0, "a rest with no end: the venue's time to fill"
    assert expected_completion_ms(Plan(waves=(), name="t"), ttf) is None
    assert expected_completion_ms(ioc_first, {"LIT1": math.nan, "LIT2": -1.0}) == UNMEASURED_TIME_TO_FILL_MS


def test_ml_decision_reads_the_venues_time_to_fill() -> None:
    feats = FakeFeatures()
    feats.out[:, C_TTF] = [3.0, 7.0, 50.0, 60.0, 9.0]
    planner = MLPlanner(make_cfg(), feats, FakeScorer(DARK_FIRST))
    d = planner.decide(order(100), ALL)
    assert d.plan.name == "ml:dark-first" and venues_of_first(d.plan) == ["DARK1", "DARK2"]
    # 200 ms in the pools, then LIT2 (100 fits its touch): 7 ms.
    assert d.expected_completion_ms == pytest.approx(207.0)
    high = planner.decide(urgent(order(100), HIGH), ALL)
    assert high.expected_completion_ms == pytest.approx(60.0), "IOC pools: the slower pool's time to fill"
    low = planner.decide(urgent(order(100), LOW), ALL)
    assert low.expected_completion_ms == pytest.approx(407.0)
    seq = planner.decide(order(100, strategy="sequential"), ALL)
    assert seq.expected_completion_ms == pytest.approx(50.0), "DARK1 leads the sequence"


def test_every_planner_s_decision_carries_its_expected_completion() -> None:
    cfg = make_cfg()
    for planner in (StaticWaterfall(cfg), EqualSplit(cfg), DisplayedProportional(cfg, FakeFeatures())):
        d = planner.decide(order(100), ALL)
        assert d.expected_completion_ms == expected_completion_ms(d.plan) == UNMEASURED_TIME_TO_FILL_MS
    fallback = MLPlanner(cfg, FakeFeatures(), None).decide(order(100), ALL)
    assert fallback.plan.name == "fallback:static" and fallback.expected_completion_ms == 0.0, (
        "the fallback reads the measured times (all 0 in these fakes)"
    )
    assert MLPlanner(cfg, FakeFeatures(), FakeScorer(DARK_FIRST)).decide(order(100), frozenset()).plan.waves == ()
    assert (
        MLPlanner(cfg, FakeFeatures(), FakeScorer(DARK_FIRST)).decide(order(100), frozenset()).expected_completion_ms
        is None
    )


def venues_of_first(plan: Plan) -> list[str]:
    return [s.venue for s in plan.waves[0].slices]
