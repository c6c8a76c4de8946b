"""Exploration of the ML planner: the lead-venue distribution, its budget,
the deterministic draw, and the plans and decisions it produces."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import LearningConfig
from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from router.routing.explore import lead_probabilities, pick, uniform
from router.routing.ml import MLPlanner, expected_costs
from tests.unit.router.routing.test_planners import ALL, DARKS, VENUES, FakeFeatures, FakeScorer, make_cfg, scores

PROPS = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def learning(budget: float = 0.5, cap: float = 0.2, temp: float = 1.0) -> LearningConfig:
    return LearningConfig(explore_budget_bps=budget, explore_max_prob=cap, explore_temperature_bps=temp)


@PROPS
@given(costs=st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=8),
       budget=st.floats(0, 5), cap=st.floats(0, 0.5), temp=st.floats(0.05, 10), data=st.data())
def test_probabilities_are_a_distribution_over_the_candidates_within_the_budget(
        costs: list[float], budget: float, cap: float, temp: float, data: st.DataObject) -> None:
    cand = sorted(data.draw(st.sets(st.integers(0, len(costs) - 1), min_size=1)), key=costs.__getitem__)
    greedy = cand[0]
    probs = lead_probabilities(costs, cand, greedy, learning(budget, cap, temp))
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-9)
    assert all(p == 0.0 for j, p in enumerate(probs) if j not in cand)
    assert all(p >= 0.0 for p in probs)
    assert probs[greedy] >= 1.0 - cap - 1e-12
    extra = sum(p * (costs[j] - costs[greedy]) for j, p in enumerate(probs))
    assert extra <= budget + 1e-9


def test_budget_binds_before_the_cap_when_the_alternatives_are_expensive() -> None:
    # One alternative 4 bps dearer: a 0.2 bps budget buys 5% of parents, under the 20% cap.
    probs = lead_probabilities([1.0, 5.0], [0, 1], 0, learning(budget=0.2, cap=0.2))
    assert math.isclose(probs[1], 0.05) and math.isclose(probs[0], 0.95)
    # The same alternative at 0.9 bps dearer: the cap binds (0.2 * 0.9 = 0.18 < 0.2).
    probs = lead_probabilities([1.0, 1.9], [0, 1], 0, learning(budget=0.2, cap=0.2))
    assert math.isclose(probs[1], 0.2)


def test_near_ties_are_explored_more_than_expensive_venues() -> None:
    probs = lead_probabilities([1.0, 1.5, 6.0], [0, 1, 2], 0, learning(budget=1.0, cap=0.3, temp=1.0))
    assert probs[1] > 10 * probs[2] > 0.0


def test_off_or_alone_puts_all_mass_on_the_greedy_venue() -> None:
    assert lead_probabilities([1.0, 2.0], [0, 1], 0, learning(budget=0.0)) == [1.0, 0.0]
    assert lead_probabilities([1.0, 2.0], [0, 1], 0, learning(cap=0.0)) == [1.0, 0.0]
    assert lead_probabilities([1.0, 2.0], [1], 1, learning()) == [0.0, 1.0]


def test_the_draw_is_a_pure_function_and_roughly_uniform() -> None:
    assert uniform(3, "OMS", "c1") == uniform(3, "OMS", "c1")
    assert uniform(3, "OMS", "c1") != uniform(4, "OMS", "c1") != uniform(3, "OMS2", "c1")
    u = np.array([uniform(0, "OMS", f"c{i}") for i in range(20_000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    # 2,000 expected per bin, sd about 42: 5 sd either side.
    assert (abs(counts - 2000) < 215).all(), counts


def test_pick_follows_the_bands() -> None:
    probs = [0.1, 0.8, 0.0, 0.1]
    assert pick(probs, 0.0, 1) == 1 and pick(probs, 0.7999, 1) == 1
    assert pick(probs, 0.85, 1) == 0 and pick(probs, 0.95, 1) == 3
    assert pick(probs, 1.0, 1) == 1


def _order(i: int) -> ParentOrder:
    return ParentOrder(order_id=f"P{i}", session="OMS", cl_ord_id=f"c{i}", symbol="AAPL", side=Side.BUY, qty=1000,
                       ord_type=OrdType.LIMIT, price_ticks=19000, tif=TimeInForce.DAY, arrival_ns=5_000)


# LIT1 cheapest; DARK1 0.6 bps dearer (a near tie), LIT3 worst.
COSTS = [1.0, 1.4, 1.6, 3.0, 6.0]


def _planner(budget: float = 0.3, cap: float = 0.25, seed: int = 0) -> MLPlanner:
    cfg = make_cfg(explore_bps=budget, explore_max=cap, explore_seed=seed)
    return MLPlanner(cfg, FakeFeatures(touch=(5000, 5000, 0, 0, 5000)), FakeScorer(scores(COSTS, p=1.0)))


def test_decisions_log_the_lead_and_its_probability() -> None:
    pl = _planner()
    seen: dict[str, int] = {}
    n = 4000
    for i in range(n):
        d = pl.decide(_order(i), ALL)
        assert d.lead_probs is not None and math.isclose(float(d.lead_probs.sum()), 1.0)
        lead = d.ranking[0]
        assert d.propensity == float(d.lead_probs[VENUES.index(lead)])
        assert d.explored == (lead != "LIT1")
        assert d.plan.waves[0].slices[0].venue == lead or lead in {s.venue for s in d.plan.waves[0].slices}
        seen[lead] = seen.get(lead, 0) + 1
    probs = pl.decide(_order(0), ALL).lead_probs
    assert probs is not None
    costs = expected_costs(scores(COSTS, p=1.0), 1.0, 5.0, [v in DARKS for v in VENUES], [0.0] * 5)
    assert float(np.dot(probs, costs - costs.min())) <= 0.3 + 1e-9
    for j, v in enumerate(VENUES):
        expect = n * probs[j]
        sd = math.sqrt(n * probs[j] * (1 - probs[j]))
        assert abs(seen.get(v, 0) - expect) <= 5 * sd + 1, (v, seen.get(v, 0), expect)


def test_the_same_order_explores_the_same_way_and_the_seed_moves_it() -> None:
    a = [_planner().decide(_order(i), ALL).ranking[0] for i in range(300)]
    assert a == [_planner().decide(_order(i), ALL).ranking[0] for i in range(300)]
    assert a != [_planner(seed=7).decide(_order(i), ALL).ranking[0] for i in range(300)]


def test_an_explored_pool_gets_a_slice_even_if_the_model_ranks_it_above_the_lit_venues() -> None:
    pl = _planner(budget=5.0, cap=0.5)
    for i in range(2000):
        d = pl.decide(_order(i), ALL)
        if d.ranking[0] == "DARK2":  # expected 3.0 against the best lit 1.0
            assert d.explored and d.strategy == "dark-first"
            assert d.plan.waves[0].slices[0].venue == "DARK2"
            return
    raise AssertionError("DARK2 never led in 2,000 draws at a 50% cap")


def test_budget_zero_is_the_greedy_planner_with_propensity_one() -> None:
    greedy = MLPlanner(make_cfg(), FakeFeatures(touch=(5000, 5000, 0, 0, 5000)), FakeScorer(scores(COSTS, p=1.0)))
    off = _planner(budget=0.0)
    for i in range(50):
        d, g = off.decide(_order(i), ALL), greedy.decide(_order(i), ALL)
        assert d.plan == g.plan and d.ranking == g.ranking and d.propensity == 1.0
        assert d.lead_probs is None and not d.explored


def test_greedy_decisions_are_unchanged_by_exploration_being_on() -> None:
    greedy = MLPlanner(make_cfg(), FakeFeatures(touch=(5000, 5000, 0, 0, 5000)), FakeScorer(scores(COSTS, p=1.0)))
    on = _planner()
    kept = 0
    for i in range(300):
        d = on.decide(_order(i), ALL)
        if not d.explored:
            g = greedy.decide(_order(i), ALL)
            assert d.plan == g.plan and d.ranking == g.ranking and d.strategy == g.strategy
            kept += 1
    assert kept > 200


def test_the_default_config_explores_a_little() -> None:
    cfg = make_cfg()
    default = msgspec.structs.replace(cfg, learning=LearningConfig())
    assert 0 < default.learning.explore_budget_bps <= 0.5 and default.learning.explore_max_prob <= 0.2


# ------------------------------------- the uncertainty bonus and the change boost


def test_a_venue_with_a_bonus_is_explored_more_than_an_equal_cost_one_without() -> None:
    cfg = learning(budget=1.0, cap=0.3, temp=1.0)
    costs, cand = [1.0, 2.0, 2.0], [0, 1, 2]
    plain = lead_probabilities(costs, cand, 0, cfg)
    assert math.isclose(plain[1], plain[2])
    probs = lead_probabilities(costs, cand, 0, cfg, bonus=[0.0, 1.0, 0.0])
    # Softmax weights exp(-0) = 1 against exp(-1): venue 1 gets e times venue 2's share.
    assert probs[1] > probs[2] > 0.0
    assert math.isclose(probs[1] / probs[2], math.e)
    # Only bonus differences to the greedy venue count: one common to every
    # venue changes nothing.
    same = lead_probabilities(costs, cand, 0, cfg, bonus=[0.7, 0.7, 0.7])
    assert all(math.isclose(a, b) for a, b in zip(same, plain))


def test_a_bonus_is_capped_at_a_zero_gap() -> None:
    # A bonus larger than the gap makes the venue look as cheap as the
    # greedy one, not cheaper: weight exp(0) = 1 either way.
    cfg = learning(budget=5.0, cap=0.3)
    a = lead_probabilities([1.0, 2.0, 9.0], [0, 1, 2], 0, cfg, bonus=[0.0, 1.0, 0.0])
    b = lead_probabilities([1.0, 2.0, 9.0], [0, 1, 2], 0, cfg, bonus=[0.0, 50.0, 0.0])
    assert all(math.isclose(x, y) for x, y in zip(a, b))


def test_the_budget_is_spent_on_the_unadjusted_gaps() -> None:
    # One alternative 4 bps dearer with a 3 bps bonus: it looks 1 bp dearer
    # to the softmax, but the budget (0.2 bps) buys 0.2 / 4 = 5% of parents,
    # as without the bonus, not 0.2 / 1 = 20%.
    cfg = learning(budget=0.2, cap=0.5)
    probs = lead_probabilities([1.0, 5.0], [0, 1], 0, cfg, bonus=[0.0, 3.0])
    assert math.isclose(probs[1], 0.05) and math.isclose(probs[0], 0.95)


def test_boost_multiplies_budget_and_cap_with_the_cap_at_most_one_half() -> None:
    # Budget-bound: gap 4, budget 0.2 -> eps 0.05, x2 -> 0.1, x4: budget 0.8
    # buys 0.2 and the cap 0.2 * 4 = 0.8 is held at 0.5 (not binding).
    eps = [lead_probabilities([1.0, 5.0], [0, 1], 0, learning(budget=0.2, cap=0.2), boost=b)[1]
           for b in (1.0, 2.0, 4.0)]
    assert eps == pytest.approx([0.05, 0.1, 0.2])
    # Cap-bound: gap 0.1 -> eps is the cap: 0.2, x2 0.4, x4 and x10 held at 0.5.
    capped = [lead_probabilities([1.0, 1.1], [0, 1], 0, learning(budget=1.0, cap=0.2), boost=b)[1]
              for b in (1.0, 2.0, 4.0, 10.0)]
    assert capped == pytest.approx([0.2, 0.4, 0.5, 0.5])
    # Exploration off stays off, whatever the boost.
    assert lead_probabilities([1.0, 2.0], [0, 1], 0, learning(budget=0.0), boost=4.0) == [1.0, 0.0]
    assert lead_probabilities([1.0, 2.0], [0, 1], 0, learning(cap=0.0), boost=4.0) == [1.0, 0.0]


@PROPS
@given(costs=st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=8),
       budget=st.floats(0, 5), cap=st.floats(0, 0.5), temp=st.floats(0.05, 10),
       boost=st.floats(1.0, 10.0), data=st.data())
def test_with_bonus_and_boost_still_a_distribution_within_the_boosted_budget(
        costs: list[float], budget: float, cap: float, temp: float, boost: float, data: st.DataObject) -> None:
    n = len(costs)
    bonus = data.draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=n, max_size=n))
    cand = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)), key=costs.__getitem__)
    greedy = cand[0]
    probs = lead_probabilities(costs, cand, greedy, learning(budget, cap, temp), bonus, boost)
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-9)
    assert all(p == 0.0 for j, p in enumerate(probs) if j not in cand)
    assert all(p >= 0.0 for p in probs)
    assert probs[greedy] >= 1.0 - min(cap * boost, 0.5) - 1e-12
    # The expected extra cost, in the model's costs (no bonus).
    extra = sum(p * (costs[j] - costs[greedy]) for j, p in enumerate(probs))
    assert extra <= budget * boost + 1e-9
    # Of two venues at the same cost, the one with the larger bonus is tried
    # at least as often.
    for i in cand:
        for j in cand:
            if i != greedy and j != greedy and costs[i] == costs[j] and bonus[i] > bonus[j]:
                assert probs[i] >= probs[j] - 1e-12


@PROPS
@given(costs=st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=8),
       budget=st.floats(0, 5), cap=st.floats(0, 0.5), temp=st.floats(0.05, 10), data=st.data())
def test_no_bonus_and_no_boost_is_the_old_result(costs: list[float], budget: float, cap: float, temp: float,
                                                 data: st.DataObject) -> None:
    cand = sorted(data.draw(st.sets(st.integers(0, len(costs) - 1), min_size=1)), key=costs.__getitem__)
    cfg = learning(budget, cap, temp)
    old = lead_probabilities(costs, cand, cand[0], cfg)
    assert lead_probabilities(costs, cand, cand[0], cfg, None, 1.0) == old
    assert lead_probabilities(costs, cand, cand[0], cfg, [0.0] * len(costs), 1.0) == old
    # The closed form of the old distribution, written out.
    others = [j for j in cand if j != cand[0]]
    if not others or budget <= 0.0 or cap <= 0.0:
        assert old[cand[0]] == 1.0
        return
    # Shifted by the smallest gap, which leaves the softmax as it is and
    # keeps a low temperature from underflowing every weight to 0.
    low = min(max(costs[j] - costs[cand[0]], 0.0) for j in others)
    w = {j: math.exp(-(max(costs[j] - costs[cand[0]], 0.0) - low) / temp) for j in others}
    gap = sum(w[j] * max(costs[j] - costs[cand[0]], 0.0) for j in others) / sum(w.values())
    eps = cap if gap * cap <= budget else budget / gap
    for j in others:
        assert math.isclose(old[j], eps * w[j] / sum(w.values()), rel_tol=1e-9, abs_tol=1e-15)
