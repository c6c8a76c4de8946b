"""The ML planner, the baseline planners, make_planner and the policy limits
(router.waterfall), plus the engine applying the size limits.

The scorer is a fake returning chosen ``[V, 3]`` arrays: what is tested here
is what the planner does with scores, not the model. Features come from a
small fake (columns set by hand) or, where the column arithmetic matters,
from a real FeatureEngine over a real MarketData.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from router.config import Config, parse_config
from router.domain.commands import ReportToOms, SendChildOrder
from router.domain.decision import Decision
from router.domain.events import NewOrderReceived, VenueReport, VenueSessionChanged
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import ExecType, OrdStatus, OrdType, Side, TimeInForce
from router.engine import Engine
from router.features.catalogue import C_TOP3, C_TOUCH, N_FEATURES
from router.features.engine import FeatureEngine
from router.learning.venuestats import VenueStats
from router.market.rings import MarketData
from router.metrics.registry import Metrics
from router.routing.baselines import DisplayedProportional, EqualSplit, StaticWaterfall
from router.routing.factory import make_planner
from router.routing.ml import MLPlanner, expected_costs
from router.routing.models import ModelRouter
from router.routing.policy import STRATEGIES, Planner, RulePlanner, allocate, apply_limits

PROPS = settings(derandomize=True, database=None, deadline=None, max_examples=300)

IOC, DAY = TimeInForce.IOC, TimeInForce.DAY
PX = 19000
# Feature/score rows follow the configured venue order.
VENUES = ("LIT1", "LIT2", "DARK1", "DARK2", "LIT3")
DARKS = frozenset({"DARK1", "DARK2"})
ALL = frozenset(VENUES)
STATIC_ORDER = ("DARK1", "LIT1", "LIT2", "LIT3", "DARK2")


def make_cfg(*, final_action: str = "rest", rest_venue: str | None = "LIT1", planner: str = "ml",
             allowed: Sequence[str] = (), max_child: int = 0, min_child: int = 0, top_k: int = 2,
             dark_rest_ms: int = 200, leak_weight: float = 1.0, unfilled: float = 5.0, lot: int = 1,
             explore_bps: float = 0.0, explore_max: float = 0.1, explore_seed: int = 0) -> Config:
    """Exploration is off unless asked for: these tests pin the greedy plan."""
    venues = "".join(
        f'\n[[venues]]\nname = "{v}"\nkind = "{"dark" if v in DARKS else "lit"}"\nport = {9881 + i}\n'
        f'target_comp_id = "{v}"\n'
        for i, v in enumerate(VENUES)
    )
    rest = f'rest_venue = "{rest_venue}"\n' if rest_venue else ""
    allowed_list = ", ".join(f'"{v}"' for v in allowed)
    static = ", ".join(f'"{v}"' for v in STATIC_ORDER)
    return parse_config(f"""
[oms]
port = 9870

[router]
exec_id_prefix = "T-"

[[symbols]]
symbol = "AAPL"
lot_size = {lot}
{venues}
[waterfall]
venues = [{static}]
final_action = "{final_action}"
{rest}planner = "{planner}"
allowed_venues = [{allowed_list}]
max_child_qty = {max_child}
min_child_qty = {min_child}
spray_top_k = {top_k}
dark_rest_ms = {dark_rest_ms}
leak_weight = {leak_weight}
unfilled_cost_bps = {unfilled}

[learning]
explore_budget_bps = {explore_bps}
explore_max_prob = {explore_max}
explore_seed = {explore_seed}
""", "test.toml")


def order(qty: int = 1000, *, ord_type: OrdType = OrdType.LIMIT, tif: TimeInForce = DAY,
          strategy: str | None = None, arrival_ns: int = 5_000) -> ParentOrder:
    return ParentOrder(order_id="P1", session="OMS", cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=qty,
                       ord_type=ord_type, price_ticks=PX if ord_type is OrdType.LIMIT else None, tif=tif,
                       arrival_ns=arrival_ns, strategy=strategy)


class FakeFeatures:
    """compute_order returns one reused array, like FeatureEngine does."""

    def __init__(self, touch: Sequence[float] = (100, 100, 0, 0, 100), top3: float = 0.5) -> None:
        self.out = np.zeros((len(VENUES), N_FEATURES), dtype=np.float32)
        self.out[:, C_TOUCH] = touch
        self.out[:, C_TOP3] = top3
        self.calls: list[int] = []
        self.warmed: list[int] = []

    def compute_order(self, order: ParentOrder, now_ns: int) -> npt.NDArray[np.float32]:
        self.calls.append(now_ns)
        return self.out

    def warm(self, now_ns: int) -> None:
        self.warmed.append(now_ns)


class FakeScorer:
    version = "fake-1"

    def __init__(self, scores: npt.ArrayLike | None, failure: str = "over_budget", raises: bool = False) -> None:
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float32)
        self.failure = failure
        self.raises = raises
        self.last_failure: str | None = None
        self.seen: list[npt.NDArray[np.float32]] = []
        self.warms = 0

    def warm(self) -> None:
        self.warms += 1

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        self.seen.append(features.copy())
        if self.raises:
            raise RuntimeError("boom")
        if self.scores is None:
            self.last_failure = self.failure
            return None
        return self.scores


def scores(cost: Sequence[float], p: Sequence[float] | float = 1.0,
           markout: Sequence[float] | float = 0.0) -> npt.NDArray[np.float32]:
    n = len(cost)
    pp = [p] * n if isinstance(p, float | int) else list(p)
    mm = [markout] * n if isinstance(markout, float | int) else list(markout)
    return np.array([cost, pp, mm], dtype=np.float32).T.copy()


class Recorded:
    """A planner driven through ``decide``, as the engine drives it: ``plan``
    returns the decision's plan, and the ``last_*`` values, fallbacks and
    stage times are read off the ``Decision`` it returned (the planner keeps
    no copy of its own)."""

    def __init__(self, planner: Planner, on_fallback: Callable[[str], None] | None = None,
                 stage_ns: Callable[[str, int], None] | None = None) -> None:
        self.planner = planner
        self.decision: Decision | None = None
        self._on_fallback = on_fallback
        self._stage_ns = stage_ns

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        d = self.decision = self.planner.decide(order, venues_up)
        assert d.order_id == order.order_id and d.ts_ns == order.arrival_ns and d.propensity == 1.0
        if d.fallback is not None and self._on_fallback is not None:
            self._on_fallback(d.fallback)
        if self._stage_ns is not None:
            for stage, ns in d.stages_ns:
                self._stage_ns(stage, ns)
        return d.plan

    def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
        self.plan(order, venues_up)
        assert self.decision is not None
        return self.decision

    def warm(self, now_ns: int) -> None:
        assert isinstance(self.planner, MLPlanner)
        self.planner.warm(now_ns)

    @property
    def last_features(self) -> npt.NDArray[np.float32] | None:
        return self.decision.features if self.decision else None

    @property
    def last_scores(self) -> npt.NDArray[np.float64] | None:
        return self.decision.scores if self.decision else None

    @property
    def last_costs(self) -> npt.NDArray[np.float64] | None:
        return self.decision.costs if self.decision else None

    @property
    def last_ranking(self) -> tuple[str, ...]:
        return self.decision.ranking if self.decision else ()

    @property
    def last_strategy(self) -> str | None:
        return self.decision.strategy if self.decision else None

    @property
    def last_fallback(self) -> str | None:
        return self.decision.fallback if self.decision else None


def ml(cfg: Config | None = None, sc: npt.ArrayLike | None = None, *, features: FakeFeatures | None = None,
       stage_ns: Callable[[str, int], None] | None = None,
       clock_ns: Callable[[], int] | None = None) -> tuple[Recorded, FakeScorer, list[str]]:
    fallbacks: list[str] = []
    scorer = FakeScorer(sc)
    planner = Recorded(MLPlanner(cfg or make_cfg(), features or FakeFeatures(), scorer, clock_ns=clock_ns),
                       fallbacks.append, stage_ns)
    return planner, scorer, fallbacks


def ioc(venue: str, limit: int | None = PX) -> Wave:
    return Wave(slices=(Slice(venue=venue, tif=IOC, limit_ticks=limit),))


def rest(venue: str) -> Wave:
    return Wave(slices=(Slice(venue=venue, tif=DAY, limit_ticks=PX),))


def venues_of(plan: Plan) -> list[list[str]]:
    return [[s.venue for s in w.slices] for w in plan.waves]


# ----------------------------------------------------------- expected_costs


def test_expected_cost_formula() -> None:
    sc = np.array([
        [2.0, 0.5, -4.0],  # 0.5 * (2 + 4) + 0.5 * 5 = 5.5
        [2.0, 0.5, 3.0],  # favourable markout is not credited: 0.5 * 2 + 0.5 * 5 = 3.5
        [1.0, 1.5, -1.0],  # p clipped to 1: 1 + 1 = 2
        [-3.0, -0.2, -9.0],  # p clipped to 0: only the unfilled cost, 5
        [-0.5, 0.8, 0.0],  # a rebate: 0.8 * -0.5 + 0.2 * 5 = 0.6
    ])
    assert expected_costs(sc, 1.0, 5.0) == pytest.approx([5.5, 3.5, 2.0, 5.0, 0.6])
    # leak_weight scales only the adverse markout: 0.5 * (2 + 2 * 4) + 2.5 = 7.5
    assert expected_costs(sc, 2.0, 5.0)[0] == pytest.approx(7.5)
    assert expected_costs(sc, 0.0, 5.0)[0] == pytest.approx(3.5)
    # unfilled cost weighs (1 - p): 0.5 * 6 + 0.5 * 10 = 8
    assert expected_costs(sc, 1.0, 10.0)[0] == pytest.approx(8.0)


# ------------------------------------------------------------------ ranking


def test_ranking_follows_expected_cost_ascending() -> None:
    # e = cost with p = 1 and no markout; darks expensive so policy stays lit.
    planner, scorer, fallbacks = ml(sc=scores([3.0, 1.0, 9.0, 8.0, 2.0]))
    plan = planner.plan(order(100, tif=IOC), ALL)
    assert planner.last_ranking == ("LIT2", "LIT3", "LIT1", "DARK2", "DARK1")
    assert plan == Plan(name="ml:sequential", final="cancel",
                        waves=tuple(ioc(v) for v in planner.last_ranking))
    assert planner.last_strategy == "sequential"
    assert fallbacks == [] and planner.last_fallback is None
    assert len(scorer.seen) == 1


def test_ranking_uses_fill_probability_markout_and_leak() -> None:
    # LIT1 is cheapest per filled share but rarely fills. LIT2's markout is
    # its spread (lit: already in its cost, not charged again). DARK1 leaks:
    # a midpoint fill 1 bp above the mid (fee 0) and an adverse markout.
    # U = max(5, cheapest lit cost 0) = 5.
    # e: LIT1 0.1*0 + 0.9*5 = 4.5; LIT2 1; DARK1 0.5*(1 + 6) + 0.5*(5 + 1) = 6.5;
    #    DARK2 0.5*0.5 + 0.5*(5 + 0.5) = 3; LIT3 2.
    sc = scores([0.0, 1.0, 1.0, 0.5, 2.0], p=[0.1, 1.0, 0.5, 0.5, 1.0], markout=[0.0, -6.0, -6.0, 0.0, 3.0])
    planner, _, _ = ml(sc=sc)
    planner.plan(order(100, tif=IOC), ALL)
    assert planner.last_ranking == ("LIT2", "LIT3", "DARK2", "LIT1", "DARK1")
    assert planner.last_costs is not None
    assert list(planner.last_costs) == pytest.approx([4.5, 1.0, 6.5, 3.0, 2.0])


def test_unfilled_cost_is_at_least_the_cheapest_lit_cost() -> None:
    # Every lit venue costs >= 8: a dark share that does not fill pays that.
    costs = expected_costs([[8.0, 1.0, 0.0], [9.0, 1.0, 0.0], [0.0, 0.5, 0.0]], 1.0, 5.0,
                           dark=[False, False, True], fees_bps=[0.0, 0.0, 0.0])
    assert list(costs) == pytest.approx([8.0, 9.0, 4.0])


def test_ties_keep_configured_order() -> None:
    planner, _, _ = ml(sc=scores([1.0, 1.0, 5.0, 5.0, 1.0]))
    planner.plan(order(100), ALL)
    assert planner.last_ranking == ("LIT1", "LIT2", "LIT3", "DARK1", "DARK2")


def test_ranking_leaves_out_down_and_disallowed_venues() -> None:
    planner, _, _ = ml(make_cfg(allowed=["LIT1", "LIT2", "DARK1"]), scores([3.0, 1.0, 9.0, 0.0, 2.0]))
    plan = planner.plan(order(100, tif=IOC), frozenset({"LIT1", "DARK1", "DARK2", "LIT3", "NOPE"}))
    assert planner.last_ranking == ("LIT1", "DARK1")
    assert {v for w in venues_of(plan) for v in w} <= {"LIT1", "DARK1"}


def test_features_at_arrival_and_kept_as_copies() -> None:
    feats = FakeFeatures()
    planner, scorer, _ = ml(sc=scores([3.0, 1.0, 9.0, 8.0, 2.0]), features=feats)
    planner.plan(order(100, arrival_ns=123_456), ALL)
    assert feats.calls == [123_456]
    kept = planner.last_features
    assert kept is not None and kept is not feats.out
    np.testing.assert_array_equal(kept, scorer.seen[0])
    feats.out[:] = 7.0  # the engine reuses its array for the next order
    assert kept[0, C_TOUCH] == 100.0
    assert scorer.scores is not None
    scorer.scores[:] = 0.0  # and the scorer its output buffer
    assert planner.last_scores is not None and planner.last_scores[1, 0] == pytest.approx(1.0)


# --------------------------------------------------------------- strategies


def test_policy_sequential_with_rest_on_rest_venue() -> None:
    planner, _, _ = ml(sc=scores([3.0, 1.0, 9.0, 8.0, 2.0]))
    plan = planner.plan(order(100), ALL)
    assert plan == Plan(name="ml:sequential", final="rest",
                        waves=(ioc("LIT2"), ioc("LIT3"), ioc("LIT1"), ioc("DARK2"), ioc("DARK1"), rest("LIT1")))


def test_policy_spray_when_order_exceeds_top3() -> None:
    # top3 = 2 > 1 -> spray over the top 2 (config spray_top_k = 2): LIT2, LIT3.
    feats = FakeFeatures(touch=(300, 50, 0, 0, 400), top3=2.0)
    sc = scores([3.0, 1.0, 2.5, 8.0, 1.5], p=[1.0, 0.8, 0.5, 1.0, 0.6])
    # U = max(5, cheapest lit 1) = 5. e: LIT1 3, LIT2 .8*1+.2*5 = 1.8,
    # DARK1 .5*2.5 + .5*(5 + 2.5) = 5, DARK2 8, LIT3 .6*1.5+.4*5 = 2.9
    planner, _, _ = ml(make_cfg(lot=100), sc, features=feats)
    plan = planner.plan(order(2000, tif=IOC), ALL)
    assert planner.last_ranking == ("LIT2", "LIT3", "LIT1", "DARK1", "DARK2")
    assert planner.last_strategy == "spray" and plan.name == "ml:spray"
    first = plan.waves[0]
    # lit: p * max(touch, one lot): LIT2 .8 * max(50, 100) = 80, LIT3 .6 * 400 = 240
    assert [(s.venue, s.tif, s.limit_ticks) for s in first.slices] == [("LIT2", IOC, PX), ("LIT3", IOC, PX)]
    assert [s.weight for s in first.slices] == pytest.approx([80.0, 240.0])
    # Then every lit venue by rank; the pools, dearer than the best lit, get nothing.
    assert plan.waves[1:] == (ioc("LIT2"), ioc("LIT3"), ioc("LIT1"))
    assert plan.final == "cancel"


def test_spray_dark_weight_is_fill_prob_times_order_qty() -> None:
    feats = FakeFeatures(touch=(300, 50, 0, 0, 400), top3=3.0)
    sc = scores([1.0, 1.2, 0.0, 1.1, 1.5], p=[1.0, 1.0, 0.9, 1.0, 1.0])
    # U = max(5, cheapest lit 1) = 5. e: LIT1 1, LIT2 1.2, LIT3 1.5,
    # DARK1 .9*0 + .1*5 = 0.5, DARK2 1.1. A pool in the spray must beat the
    # best lit venue, so it ranks first and policy would go dark-first: the
    # spray here is requested.
    planner, _, _ = ml(make_cfg(top_k=3), sc, features=feats)
    plan = planner.plan(order(1000, strategy="spray"), ALL)
    assert planner.last_ranking == ("DARK1", "LIT1", "DARK2", "LIT2", "LIT3")
    # DARK2 ranks third but is dearer than LIT1: no slice, LIT2 takes its place.
    assert [s.venue for s in plan.waves[0].slices] == ["DARK1", "LIT1", "LIT2"]
    # dark: .9 * 1000; lit: p * touch
    assert [s.weight for s in plan.waves[0].slices] == pytest.approx([900.0, 300.0, 50.0])
    assert venues_of(plan)[1:] == [["LIT1"], ["LIT2"], ["LIT3"], ["LIT1"]]
    assert plan.waves[-1] == rest("LIT1")


def test_spray_with_no_expected_fill_falls_back_to_equal_weights() -> None:
    feats = FakeFeatures(top3=5.0)
    planner, _, _ = ml(sc=scores([1.0, 2.0, 9.0, 9.0, 3.0], p=0.0), features=feats)
    plan = planner.plan(order(1000, tif=IOC), ALL)
    assert plan.name == "ml:spray"
    assert [s.weight for s in plan.waves[0].slices] == [1.0, 1.0]


def test_policy_dark_first_when_best_venue_is_dark() -> None:
    # unfilled 2 and the cheapest lit cost (LIT2) 2: U = 2. Lit (p = 1): e = c,
    # LIT1 3, LIT2 2, LIT3 4. A dark share that does not fill pays U plus what
    # its fill cost above the fee (0 here), the mid having moved against us:
    #   DARK1 .5*0 + .5*(2 + 0) = 1; DARK2 .4*.5 + .6*(2 + .5) = 1.7. Both beat LIT2.
    feats = FakeFeatures(touch=(300, 100, 0, 0, 600))
    sc = scores([3.0, 2.0, 0.0, 0.5, 4.0], p=[1.0, 1.0, 0.5, 0.4, 1.0])
    planner, _, _ = ml(make_cfg(unfilled=2.0), sc, features=feats)
    plan = planner.plan(order(1000), ALL)
    assert planner.last_costs is not None
    assert list(planner.last_costs) == pytest.approx([3.0, 2.0, 1.0, 1.7, 4.0])
    assert planner.last_ranking == ("DARK1", "DARK2", "LIT2", "LIT1", "LIT3")
    assert plan.name == "ml:dark-first" and planner.last_strategy == "dark-first"
    dark = plan.waves[0].slices
    assert [(s.venue, s.tif, s.timeout_ms, s.limit_ticks) for s in dark] == [
        ("DARK1", DAY, 200, PX), ("DARK2", DAY, 200, PX)]
    assert [s.weight for s in dark] == pytest.approx([0.5, 0.4])
    # 1000 > the touch of the best lit venue (LIT2, 100): what the pools leave
    # is sprayed over the top 2 lit venues by rank, weighted p * touch (LIT3's
    # larger touch does not get it in: the ranking picks), then every lit
    # venue by rank, the sprayed ones included.
    lit = plan.waves[1].slices
    assert [(s.venue, s.tif, s.limit_ticks) for s in lit] == [("LIT2", IOC, PX), ("LIT1", IOC, PX)]
    assert [s.weight for s in lit] == pytest.approx([100.0, 300.0])
    assert plan.waves[2:] == (ioc("LIT2"), ioc("LIT1"), ioc("LIT3"), rest("LIT1"))
    assert plan.final == "rest"


def test_dark_first_only_takes_pools_cheaper_than_the_best_lit() -> None:
    # p = 1, so e = c: DARK1 1 < best lit (LIT2, 2) < DARK2 3: only DARK1 rests.
    sc = scores([3.0, 2.0, 1.0, 3.0, 4.0])
    planner, _, _ = ml(make_cfg(dark_rest_ms=50), sc)
    plan = planner.plan(order(100, tif=IOC), ALL)
    assert planner.last_ranking == ("DARK1", "LIT2", "LIT1", "DARK2", "LIT3")
    assert [(s.venue, s.timeout_ms) for s in plan.waves[0].slices] == [("DARK1", 50)]
    # 100 fits in LIT2's touch (100): the lit venues follow one by one.
    assert venues_of(plan)[1:] == [["LIT2"], ["LIT1"], ["LIT3"]], "then lit only, by rank"
    # One share more than LIT2 shows: the lit part is a spray over the top 2,
    # then the lit sweep by rank.
    plan = planner.plan(order(101, tif=IOC), ALL)
    assert venues_of(plan) == [["DARK1"], ["LIT2", "LIT1"], ["LIT2"], ["LIT1"], ["LIT3"]], "still no DARK2"


def test_requested_dark_first_with_no_qualifying_pool_degrades_to_sequential() -> None:
    sc = scores([3.0, 1.0, 9.0, 8.0, 2.0])
    planner, _, _ = ml(sc=sc)
    plan = planner.plan(order(100, tif=IOC, strategy="dark-first"), ALL)
    assert plan.name == "ml:dark-first>sequential"
    assert planner.last_strategy == "sequential"
    assert plan.waves == tuple(ioc(v) for v in ("LIT2", "LIT3", "LIT1", "DARK2", "DARK1"))


def test_dark_first_without_rest_time_sends_ioc_to_the_pools() -> None:
    planner, _, _ = ml(make_cfg(dark_rest_ms=0), scores([3.0, 2.0, 1.0, 9.0, 4.0]))
    plan = planner.plan(order(100), ALL)
    assert plan.waves[0] == Wave(slices=(Slice(venue="DARK1", weight=1.0, tif=IOC, limit_ticks=PX),))


def test_dark_first_with_no_lit_venue_up_takes_every_pool() -> None:
    planner, _, _ = ml(sc=scores([3.0, 2.0, 1.0, 9.0, 4.0]))
    plan = planner.plan(order(100), frozenset({"DARK1", "DARK2"}))
    assert plan.name == "ml:dark-first"
    assert venues_of(plan) == [["DARK1", "DARK2"]]
    assert plan.final == "cancel", "no lit venue to rest on"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_requested_strategy_wins_over_policy(strategy: str) -> None:
    # Policy would pick dark-first (DARK1 is cheapest) here.
    feats = FakeFeatures(top3=0.2)
    sc = scores([3.0, 2.0, 1.0, 9.0, 4.0])
    planner, _, _ = ml(sc=sc, features=feats)
    assert planner.plan(order(100), ALL).name == "ml:dark-first"
    plan = planner.plan(order(100, strategy=strategy.upper()), ALL)
    if strategy == "sweep":
        # DARK1 is worth a slice, and these features have no books: a spray.
        assert plan.name == "ml:sweep>spray" and planner.last_strategy == "spray"
        return
    assert plan.name == f"ml:{strategy}"
    assert planner.last_strategy == strategy
    if strategy == "spray":
        assert venues_of(plan)[0] == ["DARK1", "LIT2"]


def test_requested_static_routes_static_without_scoring() -> None:
    planner, scorer, fallbacks = ml(sc=scores([3.0, 2.0, 1.0, 9.0, 4.0]))
    plan = planner.plan(order(100, strategy="static"), ALL)
    assert plan == StaticWaterfall(make_cfg()).plan(order(100), ALL)
    assert plan.name == "static"
    assert scorer.seen == [] and fallbacks == []
    assert planner.last_strategy == "static" and planner.last_fallback is None
    assert planner.last_features is not None, "features are still journaled"


def test_unknown_requested_strategy_goes_by_policy() -> None:
    planner, _, _ = ml(sc=scores([3.0, 1.0, 9.0, 8.0, 2.0]))
    assert planner.plan(order(100, strategy="vwap"), ALL).name == "ml:sequential"


def test_market_parent_gets_market_children_and_never_rests() -> None:
    planner, _, _ = ml(sc=scores([3.0, 2.0, 1.0, 9.0, 4.0]))
    plan = planner.plan(order(100, ord_type=OrdType.MARKET), ALL)
    assert plan.final == "cancel"
    assert all(s.limit_ticks is None for w in plan.waves for s in w.slices)
    assert plan.waves[-1] == ioc("LIT3", None)


def test_rest_goes_to_best_lit_when_rest_venue_unusable() -> None:
    sc = scores([3.0, 1.0, 9.0, 8.0, 2.0])
    planner, _, _ = ml(sc=sc)
    plan = planner.plan(order(100), ALL - {"LIT1"})
    assert plan.waves[-1] == rest("LIT2") and plan.final == "rest"
    planner, _, _ = ml(make_cfg(allowed=["LIT3", "DARK1"]), sc)
    plan = planner.plan(order(100), ALL)
    assert plan.waves[-1] == rest("LIT3")
    planner, _, _ = ml(make_cfg(final_action="cancel", rest_venue=None), sc)
    assert planner.plan(order(100), ALL).final == "cancel"


# ----------------------------------------------------------------- fallback


def test_score_none_falls_back_to_static_and_reports_reason() -> None:
    cfg = make_cfg(allowed=["LIT1", "LIT2", "DARK1"])
    planner, scorer, fallbacks = ml(cfg, None)
    plan = planner.plan(order(100), ALL)
    assert plan.name == "fallback:static"
    assert plan.waves == (ioc("DARK1"), ioc("LIT1"), ioc("LIT2"), rest("LIT1"))
    assert fallbacks == ["over_budget"]
    assert planner.last_fallback == "over_budget" and planner.last_scores is None
    assert planner.last_ranking == ()
    assert len(scorer.seen) == 1
    planner.plan(order(100), ALL)
    assert fallbacks == ["over_budget"] * 2, "once per order"


def test_no_scorer_falls_back_with_the_given_reason() -> None:
    fallbacks: list[str] = []
    planner = Recorded(MLPlanner(make_cfg(), FakeFeatures(), None, fallback_reason="corrupt"), fallbacks.append)
    plan = planner.plan(order(100, tif=IOC), ALL)
    assert plan.name == "fallback:static"
    assert venues_of(plan) == [[v] for v in STATIC_ORDER]
    assert fallbacks == ["corrupt"]
    planner = Recorded(MLPlanner(make_cfg(), FakeFeatures(), None))
    assert planner.plan(order(100), ALL).name == "fallback:static"
    assert planner.last_fallback == "missing"


@pytest.mark.parametrize(("bad", "reason"), [
    ("raise", "error"),
    (np.zeros((3, 3)), "invalid"),
    (np.full((5, 3), np.nan), "invalid"),
    (np.zeros((5, 2)), "invalid"),
    (np.array([[1.0, 1.0, np.inf]] * 5), "invalid"),
    (np.array([[-np.inf, 0.0, 0.0]] * 5), "invalid"),
    (np.zeros(5), "invalid"),
])
def test_broken_scorer_never_raises(bad: npt.NDArray[np.float64] | str, reason: str) -> None:
    planner, scorer, fallbacks = ml(sc=None if isinstance(bad, str) else bad)
    scorer.raises = isinstance(bad, str)
    plan = planner.plan(order(100), ALL)
    assert plan.name == "fallback:static"
    assert fallbacks == [reason]


def test_failing_features_fall_back() -> None:
    class Broken(FakeFeatures):
        def compute_order(self, order: ParentOrder, now_ns: int) -> npt.NDArray[np.float32]:
            raise KeyError(order.symbol)

    planner, scorer, fallbacks = ml(sc=scores([1.0] * 5), features=Broken())
    assert planner.plan(order(100), ALL).name == "fallback:static"
    assert fallbacks == ["error"] and scorer.seen == []


def test_no_usable_venue_gives_an_empty_plan_without_scoring() -> None:
    planner, scorer, fallbacks = ml(make_cfg(allowed=["LIT1"]), scores([1.0] * 5))
    assert planner.plan(order(100), frozenset({"LIT2", "DARK1"})).waves == ()
    assert scorer.seen == [] and fallbacks == []


def test_stage_times_are_reported() -> None:
    ticks = iter(range(0, 10_000, 10))
    stages: list[tuple[str, int]] = []
    planner, _, _ = ml(sc=scores([3.0, 1.0, 9.0, 8.0, 2.0]), stage_ns=lambda s, ns: stages.append((s, ns)),
                       clock_ns=lambda: next(ticks))
    planner.plan(order(100), ALL)
    assert stages == [("features", 10), ("scoring", 10), ("planning", 10)]
    stages.clear()
    planner, _, _ = ml(sc=None, stage_ns=lambda s, ns: stages.append((s, ns)), clock_ns=lambda: next(ticks))
    planner.plan(order(100), ALL)
    assert [s for s, _ in stages] == ["features", "scoring", "planning"]
    stages.clear()
    planner = Recorded(MLPlanner(make_cfg(), FakeFeatures(), None, clock_ns=lambda: next(ticks)),
                       stage_ns=lambda s, ns: stages.append((s, ns)))
    planner.plan(order(100), ALL)
    assert [s for s, _ in stages] == ["features", "planning"], "no scorer: nothing scored"


def test_warm_runs_features_and_model_and_records_nothing() -> None:
    stages: list[tuple[str, int]] = []
    feats = FakeFeatures()
    planner, scorer, fallbacks = ml(sc=scores([3.0, 1.0, 9.0, 8.0, 2.0]), features=feats,
                                    stage_ns=lambda s, ns: stages.append((s, ns)), clock_ns=lambda: 0)
    planner.warm(123)
    assert feats.warmed == [123] and scorer.warms == 1
    assert stages == [] and fallbacks == [] and feats.calls == [] and scorer.seen == []
    assert planner.last_strategy is None and planner.last_scores is None
    MLPlanner(make_cfg(), feats, None).warm(5)  # no model: features only
    assert feats.warmed == [123, 5]


# ---------------------------------------------------------------- baselines


def test_equal_split_then_static_sweep() -> None:
    plan = EqualSplit(make_cfg()).plan(order(100), ALL - {"DARK2"})
    first = plan.waves[0].slices
    assert [(s.venue, s.weight, s.tif, s.limit_ticks) for s in first] == [
        ("DARK1", 1.0, IOC, PX), ("LIT1", 1.0, IOC, PX), ("LIT2", 1.0, IOC, PX), ("LIT3", 1.0, IOC, PX)]
    assert plan.waves[1:] == (ioc("DARK1"), ioc("LIT1"), ioc("LIT2"), ioc("LIT3"), rest("LIT1"))
    assert plan.name == "equal" and plan.final == "rest"


def test_displayed_proportional_weights_by_touch_size() -> None:
    feats = FakeFeatures(touch=(300, 0, 0, 0, 100))
    plan = DisplayedProportional(make_cfg(), feats).plan(order(100, tif=IOC), ALL)
    assert [(s.venue, s.weight) for s in plan.waves[0].slices] == [("LIT1", 300.0), ("LIT2", 0.0), ("LIT3", 100.0)]
    assert venues_of(plan)[1:] == [[v] for v in STATIC_ORDER]
    assert plan.name == "displayed" and plan.final == "cancel"
    assert feats.calls == [5_000]


def test_displayed_proportional_equal_weights_without_displayed_size() -> None:
    plan = DisplayedProportional(make_cfg(), FakeFeatures(touch=(0, 0, 0, 0, 0))).plan(order(100), ALL)
    assert [s.weight for s in plan.waves[0].slices] == [1.0, 1.0, 1.0]


def test_displayed_proportional_no_lit_venue_just_sweeps() -> None:
    plan = DisplayedProportional(make_cfg(), FakeFeatures()).plan(order(100), DARKS)
    assert venues_of(plan) == [["DARK1"], ["DARK2"]]


@pytest.mark.parametrize("kind", ["ml", "static", "equal", "displayed"])
def test_make_planner_selects_by_config(kind: str) -> None:
    cfg = make_cfg(planner=kind)
    planner = make_planner(cfg, FakeFeatures(), FakeScorer(scores([1.0] * 5)))
    expected = {"ml": ModelRouter, "static": StaticWaterfall, "equal": EqualSplit, "displayed": DisplayedProportional}
    assert type(planner) is expected[kind]
    assert planner.decide(order(100), ALL).plan.waves
    if kind == "ml":
        assert isinstance(planner, ModelRouter) and type(planner.champion) is MLPlanner


def test_make_planner_needs_features_for_market_planners() -> None:
    with pytest.raises(ValueError, match="feature engine"):
        make_planner(make_cfg(planner="displayed"), None, None)
    assert isinstance(make_planner(make_cfg(planner="static")), StaticWaterfall)


@pytest.mark.parametrize("kind", ["ml", "static", "equal", "displayed"])
@pytest.mark.parametrize("strategy", [None, "static", *STRATEGIES])
def test_every_planner_respects_allowed_venues(kind: str, strategy: str | None) -> None:
    allowed = {"LIT2", "DARK2"}
    cfg = make_cfg(planner=kind, allowed=sorted(allowed))
    planner = make_planner(cfg, FakeFeatures(top3=3.0), FakeScorer(scores([0.0, 1.0, 2.0, 0.1, 3.0])))
    plan = planner.decide(order(1000, strategy=strategy), ALL).plan
    used = {v for w in venues_of(plan) for v in w}
    assert used == allowed
    # The rest venue (LIT1) is not allowed: the ML planner rests on its best
    # allowed lit venue instead, the static-list planners cancel.
    if kind == "ml" and strategy != "static":
        assert plan.final == "rest" and plan.waves[-1] == rest("LIT2")
    else:
        assert plan.final == "cancel"


def test_baselines_do_not_rest_on_a_disallowed_rest_venue() -> None:
    cfg = make_cfg(allowed=["LIT2", "LIT3"])
    for planner in (StaticWaterfall(cfg), EqualSplit(cfg), DisplayedProportional(cfg, FakeFeatures())):
        plan = planner.plan(order(100), ALL)
        assert plan.final == "cancel"
        assert all(s.tif is IOC for w in plan.waves for s in w.slices)


# ------------------------------------------------------- real feature engine


def test_ml_planner_with_real_feature_engine() -> None:
    cfg = make_cfg(top_k=2)
    md = MarketData(list(VENUES), [v not in DARKS for v in VENUES], ["AAPL"], depth=5)
    stats = VenueStats(md.venues, md.symbols)
    fe = FeatureEngine(md, stats, [0.3, 0.3, 0.0, 0.0, 0.2], {})
    # Asks at the touch 19000: LIT1 shows 200, LIT3 600; LIT2 is behind (19001).
    md.apply_book(0, 0, 1_000, [18999], [100], [19000, 19001, 19002], [200, 100, 100])
    md.apply_book(1, 0, 1_000, [18999], [100], [19001, 19002, 19003], [100, 100, 100])
    md.apply_book(4, 0, 1_000, [18998], [100], [19000, 19001, 19002], [600, 100, 100])
    # Contra top 3 levels: 400 + 300 + 800 = 1500.
    sc = scores([1.0, 2.0, 9.0, 9.0, 0.5], p=[0.5, 1.0, 1.0, 1.0, 0.5])
    # U = max(5, cheapest lit 0.5) = 5; e: LIT1 .5 + 2.5 = 3, LIT2 2, LIT3 .25 + 2.5 = 2.75
    planner = Recorded(MLPlanner(cfg, fe, FakeScorer(sc)))
    behind = planner.plan(order(1000, arrival_ns=2_000), ALL)
    assert planner.last_ranking[:3] == ("LIT2", "LIT3", "LIT1")
    feats = planner.last_features
    assert feats is not None
    assert feats[0, C_TOP3] == pytest.approx(1000 / 1500)
    assert [float(feats[i, C_TOUCH]) for i in (0, 1, 4)] == [200.0, 0.0, 600.0]
    # 1000 / 1500 <= 1, but the best venue LIT2 shows nothing at the touch:
    # the lit books are swept (router.routing.sweep). Within the limit 19000
    # only LIT1's 200 and LIT3's 600 show; the rest goes down the ranking.
    assert behind.name == "ml:sweep"
    assert [(s.venue, s.weight, s.limit_ticks) for s in behind.waves[0].slices] == [
        ("LIT1", 0.25, PX), ("LIT3", 0.75, PX)]
    assert venues_of(behind)[1:4] == [["LIT2"], ["LIT3"], ["LIT1"]]

    # p = 1: e = c, LIT3 (0.5) ranks first and shows 600 at the touch.
    planner = Recorded(MLPlanner(cfg, fe, FakeScorer(scores([1.0, 2.0, 9.0, 9.0, 0.5]))))
    fits = planner.plan(order(600, arrival_ns=2_000), ALL)
    assert planner.last_ranking == ("LIT3", "LIT1", "LIT2", "DARK1", "DARK2")
    assert fits.name == "ml:sequential", "600 <= LIT3's touch, 600 / 1500 <= 1"
    assert venues_of(fits) == [["LIT3"], ["LIT1"], ["LIT2"], ["DARK1"], ["DARK2"], ["LIT1"]]
    over = planner.plan(order(601, arrival_ns=2_000), ALL)
    assert over.name == "ml:sweep", "one share more than LIT3 shows"
    # Both touches at 19000, no fees: LIT1's 200 (first configured), LIT3's
    # 401. Then the lit venues by rank; the pools (e 9, dearer than the best
    # lit) get no slice.
    assert [(s.venue, s.weight) for s in over.waves[0].slices] == [("LIT1", 200 / 601), ("LIT3", 401 / 601)]
    assert venues_of(over)[1:] == [["LIT3"], ["LIT1"], ["LIT2"], ["LIT1"]]


# ----------------------------------------------------------- property tests


_score_rows = st.lists(
    st.tuples(st.floats(-50, 50), st.floats(-0.5, 1.5), st.floats(-50, 50)), min_size=5, max_size=5)


@PROPS
@given(
    rows=_score_rows,
    up=st.sets(st.sampled_from([*VENUES, "OTHER"])),
    allowed=st.sets(st.sampled_from(VENUES)),
    kind=st.sampled_from(["ml", "static", "equal", "displayed"]),
    strategy=st.sampled_from([None, "static", "bogus", *STRATEGIES]),
    touch=st.lists(st.integers(0, 5000), min_size=5, max_size=5),
    top3=st.floats(0, 100),
    qty=st.integers(1, 100_000),
    ord_type=st.sampled_from(list(OrdType)),
    tif=st.sampled_from(list(TimeInForce)),
    final=st.sampled_from(["rest", "cancel"]),
    top_k=st.integers(1, 6),
    dark_rest_ms=st.integers(0, 1000),
    fail=st.booleans(),
)
def test_plan_property(rows: list[tuple[float, float, float]], up: set[str], allowed: set[str], kind: str,
                       strategy: str | None, touch: list[int], top3: float, qty: int, ord_type: OrdType,
                       tif: TimeInForce, final: str, top_k: int, dark_rest_ms: int, fail: bool) -> None:
    cfg = make_cfg(planner=kind, allowed=sorted(allowed), final_action=final, top_k=top_k,
                   dark_rest_ms=dark_rest_ms, rest_venue="LIT1" if final == "rest" else None)
    fallbacks: list[str] = []
    scorer = FakeScorer(None if fail else np.array(rows))
    planner = Recorded(make_planner(cfg, FakeFeatures(touch=touch, top3=top3), scorer), fallbacks.append)
    o = order(qty, ord_type=ord_type, tif=tif, strategy=strategy)
    plan = planner.plan(o, frozenset(up))
    usable = (allowed or ALL) & up
    limit = PX if ord_type is OrdType.LIMIT else None
    if not usable:
        assert plan.waves == ()
    for i, wave in enumerate(plan.waves):
        assert wave.slices, "no empty wave"
        assert len({s.venue for s in wave.slices}) == len(wave.slices), "a venue once per wave"
        for s in wave.slices:
            assert s.venue in usable
            assert s.weight >= 0 and math.isfinite(s.weight)
            assert s.limit_ticks == limit
            is_rest = plan.final == "rest" and i == len(plan.waves) - 1
            if s.tif is DAY:
                assert is_rest or (s.venue in DARKS and s.timeout_ms == dark_rest_ms > 0)
        assert any(s.weight > 0 for s in wave.slices)
    if plan.final == "rest":
        assert final == "rest" and ord_type is OrdType.LIMIT and tif is DAY
        assert plan.waves[-1].slices[0].venue not in DARKS
    if usable and kind != "ml":
        assert fallbacks == []
    if kind == "ml" and usable:
        scored = (strategy or "").lower() != "static"
        assert fallbacks == (["over_budget"] if fail and scored else [])
        assert (plan.name == "fallback:static") == (fail and scored)


@PROPS
@given(
    residual=st.integers(0, 10**6),
    weights=st.lists(st.sampled_from([0.0, 0.01, 0.5, 1.0, 3.0, 100.0]), min_size=1, max_size=6),
    lot=st.sampled_from([1, 10, 100, 7]),
    max_child=st.sampled_from([0, 1, 5, 50, 99, 100, 250, 1000, 12345]),
    min_child=st.sampled_from([0, 1, 5, 50, 99, 100, 250, 1000, 12345]),
)
def test_apply_limits_property(residual: int, weights: list[float], lot: int, max_child: int,
                               min_child: int) -> None:
    if max_child and min_child > max_child:
        min_child = max_child  # what config validation allows
    sizes = allocate(residual, weights, lot)
    out = apply_limits(sizes, max_child, min_child, lot)
    assert len(out) == len(sizes)
    assert all(q >= 0 for q in out)
    assert sum(out) <= sum(sizes) <= residual
    if max_child:
        assert all(q <= max_child for q in out)
    for q in out:
        if 0 < q < min_child:
            assert q == residual, "a child under the floor only when it is the whole residual"
    # Nothing is dropped when no cap applies, and a zero-weight slice never
    # gains shares from the merge unless it was already the largest.
    if not max_child:
        assert sum(out) == sum(sizes)
    if max_child and min_child <= max_child and sum(sizes) > 0:
        assert sum(out) >= min(sum(sizes), min_child, 1), "a capped wave still sends something"
    # Lot discipline: when the cap can hold whole lots, no new odd lots.
    if max_child >= lot and max_child // lot * lot >= min_child:
        assert sum(q % lot for q in out) <= sum(q % lot for q in sizes)


# ------------------------------------------------------------- the engine


class _Fixed(RulePlanner):
    name = "test"

    def __init__(self, waves: tuple[Wave, ...]) -> None:
        self.waves = waves

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        return Plan(waves=self.waves, name="test")


def _engine(cfg: Config, waves: tuple[Wave, ...]) -> Engine:
    eng = Engine(cfg, _Fixed(waves), Metrics(list(VENUES), registry=CollectorRegistry()), "T-")
    for v in VENUES:
        eng.on_venue_session(VenueSessionChanged(venue=v, up=True, ts_ns=1))
    return eng


def _new(eng: Engine, qty: int) -> list[SendChildOrder]:
    out = eng.on_new_order(NewOrderReceived(session="OMS", cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=qty,
                                            ord_type=OrdType.LIMIT, price_ticks=PX, tif=IOC, recv_ns=10))
    return [c for c in out if isinstance(c, SendChildOrder)]


def _expire(eng: Engine, child: SendChildOrder, filled: int = 0) -> list[object]:
    out: list[object] = []
    if filled:
        out += eng.on_venue_report(VenueReport(venue=child.venue, child_id=child.child_id, exec_id=f"F{child.child_id}",
                                               exec_type=ExecType.TRADE, ord_status=OrdStatus.PARTIALLY_FILLED,
                                               last_qty=filled, last_px_ticks=PX, cum_qty=filled, leaves_qty=0,
                                               text="", recv_ns=20))
    out += eng.on_venue_report(VenueReport(venue=child.venue, child_id=child.child_id, exec_id=f"X{child.child_id}",
                                           exec_type=ExecType.CANCELED, ord_status=OrdStatus.CANCELED, last_qty=0,
                                           last_px_ticks=0, cum_qty=filled, leaves_qty=0, text="", recv_ns=21))
    return out


def test_engine_caps_children_and_excess_waits_for_next_wave() -> None:
    cfg = make_cfg(max_child=300, final_action="cancel", rest_venue=None)
    eng = _engine(cfg, (Wave(slices=(Slice(venue="LIT1", weight=3.0, tif=IOC, limit_ticks=PX),
                                     Slice(venue="LIT2", weight=1.0, tif=IOC, limit_ticks=PX))),
                        ioc("LIT3")))
    a, b = _new(eng, 1000)
    assert [(a.venue, a.qty), (b.venue, b.qty)] == [("LIT1", 300), ("LIT2", 250)]
    _expire(eng, a, filled=300)
    (c,) = [x for x in _expire(eng, b, filled=100) if isinstance(x, SendChildOrder)]
    assert (c.venue, c.qty) == ("LIT3", 300), "600 left, capped at 300"
    reports = [x for x in _expire(eng, c, filled=0) if isinstance(x, ReportToOms)]
    assert reports[-1].ord_status is OrdStatus.CANCELED and reports[-1].cum_qty == 400
    assert "600 unfilled" in reports[-1].text


def test_engine_merges_children_below_the_floor() -> None:
    cfg = make_cfg(min_child=200, final_action="cancel", rest_venue=None)
    wave = Wave(slices=(Slice(venue="LIT1", weight=1.0, tif=IOC, limit_ticks=PX),
                        Slice(venue="LIT2", weight=5.0, tif=IOC, limit_ticks=PX),
                        Slice(venue="LIT3", weight=4.0, tif=IOC, limit_ticks=PX)))
    sent = _new(_engine(cfg, (wave,)), 1000)
    assert [(c.venue, c.qty) for c in sent] == [("LIT2", 600), ("LIT3", 400)]
    sent = _new(_engine(cfg, (wave,)), 150)
    assert [(c.venue, c.qty) for c in sent] == [("LIT2", 150)], "a residual below the floor still routes"


def test_engine_routes_an_ml_plan_under_the_limits() -> None:
    cfg = make_cfg(max_child=400, min_child=100, final_action="cancel", rest_venue=None, unfilled=2.0)
    # dark-first: DARK1 (e 1) and DARK2 (e .4*.5 + .6*(2 + .5) = 1.7) beat the
    # best lit LIT2 (e 2); 1000 > LIT2's touch (300), so the lit part is a spray.
    sc = scores([3.0, 2.0, 0.0, 0.5, 4.0], p=[1.0, 1.0, 0.5, 0.4, 1.0])
    planner = MLPlanner(cfg, FakeFeatures(touch=(100, 300, 0, 0, 100)), FakeScorer(sc))
    eng = Engine(cfg, planner, Metrics(list(VENUES), registry=CollectorRegistry()), "T-")
    for v in VENUES:
        eng.on_venue_session(VenueSessionChanged(venue=v, up=True, ts_ns=1))
    dark = _new(eng, 1000)
    # weights .5 / .4 of 1000 -> 556 / 444, each capped at 400
    assert [(c.venue, c.qty, c.tif) for c in dark] == [("DARK1", 400, DAY), ("DARK2", 400, DAY)]
    assert eng.next_deadline_ns() == 10 + 200 * 1_000_000, "the pools rest for dark_rest_ms"
    _expire(eng, dark[0], filled=360)
    lit = [c for c in _expire(eng, dark[1], filled=0) if isinstance(c, SendChildOrder)]
    # 640 left, weights LIT2 300 / LIT1 100 -> 480 / 160, LIT2 capped at 400
    assert [(c.venue, c.qty, c.tif) for c in lit] == [("LIT2", 400, IOC), ("LIT1", 160, IOC)]
    _expire(eng, lit[0])
    (again,) = [c for c in _expire(eng, lit[1]) if isinstance(c, SendChildOrder)]
    assert (again.venue, again.qty, again.tif) == ("LIT2", 400, IOC), "the sweep: 640 still left, capped"
