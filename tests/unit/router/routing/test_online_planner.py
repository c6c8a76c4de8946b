"""The ML planner with the online learners of its venue statistics: the
censored split of a dark-first wave (``learning.dark_split``), the
uncertainty bonus and the boost after a detected change in its exploration
(``Decision.lead_probs``), and ``market_state`` building the learners from
the config.

The scorer and features are the fakes of test_planners, with a real
VenueStats (and CensoredLiquidity) hung on the features as the feature
engine carries it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from router.config import Config
from router.domain.decision import Decision
from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from router.features.engine import market_state
from router.learning.changes import PageHinkley
from router.learning.darkpool import CensoredLiquidity
from router.learning.venuestats import VenueStats
from router.routing.explore import lead_probabilities
from router.routing.ml import MLPlanner
from tests.unit.router.routing.test_planners import ALL, DARKS, VENUES, FakeFeatures, FakeScorer, make_cfg, scores

S = 1_000_000_000
T = 100 * S  # the orders' arrival, far from 0
LIT1, LIT2, DARK1, DARK2, LIT3 = range(5)


class StatsFeatures(FakeFeatures):
    """The fake features with the venue statistics the planner reads the
    online learners from (``FeatureEngine.stats``)."""

    def __init__(self, stats: VenueStats, touch: Sequence[float] = (100, 100, 0, 0, 100)) -> None:
        super().__init__(touch=touch)
        self.stats = stats


def _stats(detector: bool = False) -> VenueStats:
    return VenueStats(list(VENUES), ["AAPL"], detector=PageHinkley(len(VENUES)) if detector else None,
                      liquidity=CensoredLiquidity(len(VENUES)), dark=[v in DARKS for v in VENUES])


def _learning(cfg: Config, **kw: Any) -> Config:
    return msgspec.structs.replace(cfg, learning=msgspec.structs.replace(cfg.learning, **kw))


def _censored(**kw: Any) -> Config:
    """make_cfg(**kw) with the censored dark split (set explicitly: the
    tests do not lean on the config's defaults)."""
    return _learning(make_cfg(**kw), dark_split="censored")


def _order(i: int = 0, qty: int = 1000, arrival_ns: int = T) -> ParentOrder:
    return ParentOrder(order_id=f"P{i}", session="OMS", cl_ord_id=f"c{i}", symbol="AAPL", side=Side.BUY, qty=qty,
                       ord_type=OrdType.LIMIT, price_ticks=19000, tif=TimeInForce.DAY, arrival_ns=arrival_ns)


def _children(st: VenueStats, v: int, filled: int, n: int = 20, sent: int = 1000) -> None:
    """``n`` finished children of ``sent`` shares at venue ``v``, each filling ``filled``."""
    for k in range(n):
        t = T - S + k * 1_000_000
        st.record_child(v, sent, filled, t - 1_000_000, t if filled else None, 0 < filled < sent, t)


def _dark_wave(d: Decision) -> dict[str, float]:
    assert d.strategy == "dark-first", d.strategy
    return {s.venue: s.weight for s in d.plan.waves[0].slices}


# Lit costs 3, 2, 4 and unfilled 2: U = 2. Pools cost nothing when they
# fill: e = (1 - p) * 2, so DARK2 (p 0.8) 0.4 and DARK1 (p 0.4) 1.2, both
# cheaper than the best lit (LIT2, 2): dark-first over DARK2 then DARK1.
MODEL_PREFERS_DARK2 = scores([3.0, 2.0, 0.0, 0.0, 4.0], p=[1.0, 1.0, 0.4, 0.8, 1.0])


def test_censored_split_follows_the_liquidity_not_the_models_fill_probabilities() -> None:
    st = _stats()
    _children(st, DARK1, 1000)  # always filled fully: at least 10 units
    _children(st, DARK2, 100)  # exactly 1 unit
    liq = st.liquidity
    assert liq is not None and liq.tail(DARK1)[10] > 0.8 and liq.tail(DARK2)[2] < 0.1
    planner = MLPlanner(_censored(unfilled=2.0), StatsFeatures(st), FakeScorer(MODEL_PREFERS_DARK2))
    d = planner.decide(_order(), ALL)
    assert d.ranking[:2] == ("DARK2", "DARK1")
    # 10 units: the first level of both ties (DARK2, listed first, takes
    # it), then DARK1's next 9: 1 and 9 units.
    wave = _dark_wave(d)
    assert wave == pytest.approx({"DARK2": 0.1, "DARK1": 0.9})
    assert [s.venue for s in d.plan.waves[0].slices] == ["DARK2", "DARK1"], "pools stay in rank order"
    assert wave["DARK1"] > wave["DARK2"]


def test_model_split_keeps_the_fill_probability_weights() -> None:
    st = _stats()
    _children(st, DARK1, 1000)
    _children(st, DARK2, 100)
    cfg = _learning(make_cfg(unfilled=2.0), dark_split="model")
    d = MLPlanner(cfg, StatsFeatures(st), FakeScorer(MODEL_PREFERS_DARK2)).decide(_order(), ALL)
    assert _dark_wave(d) == pytest.approx({"DARK2": 0.8, "DARK1": 0.4})


def test_censored_split_with_no_data_is_equal_and_without_stats_is_the_model() -> None:
    # No children yet: both pools read the prior tail, 5 units each.
    d = MLPlanner(_censored(unfilled=2.0), StatsFeatures(_stats()), FakeScorer(MODEL_PREFERS_DARK2)).decide(
        _order(), ALL)
    assert _dark_wave(d) == pytest.approx({"DARK2": 0.5, "DARK1": 0.5})
    # Features without statistics (no liquidity estimate): the model's weights.
    d = MLPlanner(_censored(unfilled=2.0), FakeFeatures(), FakeScorer(MODEL_PREFERS_DARK2)).decide(_order(), ALL)
    assert _dark_wave(d) == pytest.approx({"DARK2": 0.8, "DARK1": 0.4})
    # An order of less than one unit: nothing to split by units, the model's weights.
    d = MLPlanner(_censored(unfilled=2.0), StatsFeatures(_stats()), FakeScorer(MODEL_PREFERS_DARK2)).decide(
        _order(qty=60), ALL)
    assert _dark_wave(d) == pytest.approx({"DARK2": 0.8, "DARK1": 0.4})


# DARK1 (p 0.8) 0.4, DARK2 (p 0.4) 1.2: DARK1 leads the greedy plan.
MODEL_PREFERS_DARK1 = scores([3.0, 2.0, 0.0, 0.0, 4.0], p=[1.0, 1.0, 0.8, 0.4, 1.0])


def _empty_dark2() -> VenueStats:
    st = _stats()
    _children(st, DARK1, 1000)  # deep
    _children(st, DARK2, 0)  # never fills
    return st


def test_a_pool_the_censored_split_gives_nothing_is_left_out() -> None:
    d = MLPlanner(_censored(unfilled=2.0), StatsFeatures(_empty_dark2()), FakeScorer(MODEL_PREFERS_DARK1)).decide(
        _order(), ALL)
    assert d.ranking[:2] == ("DARK1", "DARK2")
    assert _dark_wave(d) == {"DARK1": 1.0}
    # The model split would have rested in both.
    cfg = _learning(make_cfg(unfilled=2.0), dark_split="model")
    d = MLPlanner(cfg, StatsFeatures(_empty_dark2()), FakeScorer(MODEL_PREFERS_DARK1)).decide(_order(), ALL)
    assert _dark_wave(d) == pytest.approx({"DARK1": 0.8, "DARK2": 0.4})


def test_an_explored_pool_lead_the_split_would_leave_out_keeps_one_unit() -> None:
    cfg = _censored(unfilled=2.0, explore_bps=5.0, explore_max=0.5)
    planner = MLPlanner(cfg, StatsFeatures(_empty_dark2()), FakeScorer(MODEL_PREFERS_DARK1))
    explored = greedy = 0
    for i in range(400):
        d = planner.decide(_order(i), ALL)
        if d.ranking[0] == "DARK2":
            assert d.explored
            # DARK1 gets all 10 units, the explored lead the one it keeps: 1 / 11.
            assert [s.venue for s in d.plan.waves[0].slices] == ["DARK2", "DARK1"]
            assert _dark_wave(d) == pytest.approx({"DARK2": 1 / 11, "DARK1": 10 / 11})
            explored += 1
        elif d.ranking[0] == "DARK1":
            assert not d.explored
            assert _dark_wave(d) == {"DARK1": 1.0}
            greedy += 1
    assert explored >= 10 and greedy >= 100, (explored, greedy)


# LIT1 greedy at 1; LIT2 and LIT3 tie at 2; the pools (9) are far off.
LIT_COSTS = scores([1.0, 2.0, 9.0, 9.0, 2.0], p=1.0)


def _explorer(st: VenueStats, **learning: Any) -> MLPlanner:
    """Exploration at 0.3 bps and 10%, boosted x4 for 10 s after a change,
    no uncertainty bonus, unless ``learning`` says otherwise."""
    kw: dict[str, Any] = {"change_explore_s": 10.0, "change_explore_factor": 4.0, "explore_uncertainty_bps": 0.0}
    cfg = _learning(make_cfg(explore_bps=0.3, explore_max=0.1), **(kw | learning))
    return MLPlanner(cfg, StatsFeatures(st, touch=(5000, 5000, 0, 0, 5000)), FakeScorer(LIT_COSTS))


def _probs(d: Decision) -> list[float]:
    assert d.lead_probs is not None and d.costs is not None
    return d.lead_probs.tolist()  # type: ignore[no-any-return]


def test_a_recent_change_raises_exploration() -> None:
    changed, calm = _stats(), _stats()
    changed.forget(DARK1, T - 2 * S)
    assert changed.last_change_ns == T - 2 * S
    d_changed = _explorer(changed).decide(_order(), ALL)
    d_calm = _explorer(calm).decide(_order(), ALL)
    boosted, plain = _probs(d_changed), _probs(d_calm)
    assert math.isclose(sum(boosted), 1.0) and math.isclose(sum(plain), 1.0)
    assert 1.0 - boosted[LIT1] > 1.0 - plain[LIT1] + 0.05
    # Exactly the boosted distribution: budget and cap x change_explore_factor (4).
    assert d_changed.costs is not None
    costs = d_changed.costs.tolist()
    ranked = sorted(range(5), key=costs.__getitem__)
    lc = make_cfg(explore_bps=0.3, explore_max=0.1).learning
    assert boosted == pytest.approx(lead_probabilities(costs, ranked, LIT1, lc, None, 4.0))
    assert plain == pytest.approx(lead_probabilities(costs, ranked, LIT1, lc))
    # The expected extra cost stays within the boosted budget.
    extra = sum(p * (c - costs[LIT1]) for p, c in zip(boosted, costs))
    assert 0.3 < extra <= 4 * 0.3 + 1e-9


def test_the_boost_lasts_change_explore_s() -> None:
    st = _stats()
    st.forget(DARK1, T)
    planner = _explorer(st, change_explore_s=10.0, change_explore_factor=3.0)
    calm = _probs(_explorer(_stats()).decide(_order(), ALL))[LIT1]
    inside = _probs(planner.decide(_order(arrival_ns=T + 10 * S - 1), ALL))[LIT1]
    after = _probs(planner.decide(_order(arrival_ns=T + 10 * S), ALL))[LIT1]
    assert inside < calm - 0.05
    assert after == pytest.approx(calm)
    # change_explore_factor 1: a change changes nothing.
    same = _explorer(st, change_explore_factor=1.0).decide(_order(arrival_ns=T + S), ALL)
    assert _probs(same)[LIT1] == pytest.approx(calm)


def test_a_detected_change_in_the_stats_boosts_the_next_orders() -> None:
    # Through the detector rather than forget(): a pool that stops filling.
    st = _stats(detector=True)
    for k in range(60):
        t = T - 10 * S + k * 1_000_000
        filled = 1000 if k < 40 else 0
        filled -= 50 * (k % 3)  # some spread for the test to standardise
        st.record_child(DARK2, 1000, max(filled, 0), t - 1_000_000, t if filled > 0 else None,
                        0 < filled < 1000, t)
    assert st.changes >= 1 and st.changed_ns[DARK2] > 0
    boosted = _probs(_explorer(st).decide(_order(arrival_ns=st.last_change_ns + S), ALL))[LIT1]
    calm = _probs(_explorer(_stats()).decide(_order(arrival_ns=st.last_change_ns + S), ALL))[LIT1]
    assert boosted < calm - 0.05


def test_the_uncertainty_bonus_favours_the_venue_with_less_evidence() -> None:
    st = _stats()
    _children(st, LIT2, 1000, n=50)  # LIT2 well known, LIT3 never tried
    plain = _probs(_explorer(st).decide(_order(), ALL))
    assert plain[LIT2] == pytest.approx(plain[LIT3])
    d = _explorer(st, explore_uncertainty_bps=2.0).decide(_order(), ALL)
    probs = _probs(d)
    assert probs[LIT3] > probs[LIT2] * 1.5
    # bonus_j = 2 * (1 - evidence_j), evidence from the order's size bucket.
    ev = st.evidence(st.bucket_of(1000), T)
    assert ev[LIT2] > 0.9 and ev[LIT3] == 0.0
    assert d.costs is not None
    costs = d.costs.tolist()
    lc = _learning(make_cfg(explore_bps=0.3, explore_max=0.1), explore_uncertainty_bps=2.0).learning
    expect = lead_probabilities(costs, sorted(range(5), key=costs.__getitem__), LIT1, lc,
                                [2.0 * (1.0 - e) for e in ev])
    assert probs == pytest.approx(expect)
    # The budget holds in the model's costs.
    assert sum(p * (c - costs[LIT1]) for p, c in zip(probs, costs)) <= 0.3 + 1e-9


def test_market_state_builds_the_learners_from_the_config() -> None:
    cfg = _learning(make_cfg(), change_detect=True, change_delta_sd=0.75, change_threshold_sd=6.0,
                    change_keep=0.2, dark_forget=0.9, dark_unit_shares=50)
    _, stats, fe = market_state(cfg)
    assert fe.stats is stats
    assert isinstance(stats.detector, PageHinkley)
    assert (stats.detector.delta, stats.detector.threshold) == (0.75, 6.0)
    assert isinstance(stats.liquidity, CensoredLiquidity)
    assert (stats.liquidity.unit, stats.liquidity.forget) == (50, 0.9)
    assert stats.dark == tuple(v in DARKS for v in VENUES) and stats.change_keep == 0.2
    _, off, _ = market_state(_learning(make_cfg(), change_detect=False))
    assert off.detector is None and off.liquidity is not None
    # The defaults, whatever change_detect defaults to.
    lc = make_cfg().learning
    _, default, _ = market_state(make_cfg())
    assert (default.detector is not None) == lc.change_detect
    if default.detector is not None:
        assert (default.detector.delta, default.detector.threshold) == (lc.change_delta_sd, lc.change_threshold_sd)
    assert default.liquidity is not None
    assert (default.liquidity.unit, default.liquidity.forget) == (lc.dark_unit_shares, lc.dark_forget)
    assert default.change_keep == lc.change_keep
