"""CensoredLiquidity: Kaplan-Meier tails of each pool's liquidity, with
forgetting, and the greedy expected-fill maximising allocation.

Units are 100 shares unless a test says otherwise: ``observe(v, 500, 200)``
is a 5-unit child that filled 2 units (an exact observation: the pool had
2), ``observe(v, 500, 500)`` one that filled fully (censored: it had at
least 5). Hand-computed values use a tiny prior weight so the estimate is
the plain Kaplan-Meier one.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.learning.darkpool import CensoredLiquidity

PROPS = settings(derandomize=True, database=None, deadline=None, max_examples=300)
TINY = 1e-9


def test_no_data_tails_are_the_prior_geometric() -> None:
    for h0 in (0.1, 0.3):
        liq = CensoredLiquidity(3, max_units=16, prior_hazard=h0)
        for v in range(3):
            t = liq.tail(v)
            assert t.shape == (17,)
            assert t == pytest.approx((1.0 - h0) ** np.arange(17))
        # Expected fill of 4 units: sum_{k=1..4} (1 - h0)^k.
        assert liq.expected_fill(0, 400) == pytest.approx(sum((1.0 - h0) ** k for k in range(1, 5)))
    assert (liq.observations == 0.0).all()


def test_with_no_data_two_pools_split_equally_and_ties_go_first() -> None:
    liq = CensoredLiquidity(2)
    assert liq.allocate([0, 1], 1000) == [5, 5]
    assert liq.allocate([1, 0], 1000) == [5, 5]
    # An odd unit: the pool listed first.
    assert liq.allocate([0, 1], 900) == [5, 4]
    assert liq.allocate([1, 0], 900) == [5, 4]
    # Shares below one unit are not split; part units are dropped.
    assert liq.allocate([0, 1], 99) == [0, 0]
    assert liq.allocate([0, 1], 1050) == [5, 5]
    assert liq.allocate([], 1000) == []
    assert liq.allocate([0], 300) == [3]


def test_a_pool_that_always_fills_fully_looks_deeper_than_one_that_fills_the_same_as_partials() -> None:
    liq = CensoredLiquidity(2, max_units=16)
    for _ in range(30):
        liq.observe(0, 500, 500)  # censored: pool 0 had at least 5
        liq.observe(1, 1000, 500)  # exact: pool 1 had 5
    t0, t1 = liq.tail(0), liq.tail(1)
    # Both surely hold the 5 units they filled...
    assert t0[5] == pytest.approx(t1[5]) and t0[5] > 0.8
    # ...but only the exact pool is known to hold no more: a censored fill
    # read as "the pool had exactly 5" would make the two look alike.
    assert t1[6] < 0.05
    assert t0[6] > 0.8
    assert liq.expected_fill(0, 1000) > liq.expected_fill(1, 1000) + 2.0
    # 10 units between them: the first 5 levels tie (pool 1 listed first),
    # and the censored pool gets every unit past pool 1's 5.
    assert liq.allocate([1, 0], 1000) == [5, 5]


def test_kaplan_meier_by_hand() -> None:
    liq = CensoredLiquidity(1, max_units=10, forget=1.0, prior_weight=TINY)
    liq.observe(0, 500, 200)  # L = 2
    liq.observe(0, 500, 400)  # L = 4
    liq.observe(0, 300, 300)  # L >= 3
    liq.observe(0, 600, 600)  # L >= 6
    # h(j) = d_j / r_j:
    #   j = 0, 1: 4 at risk, no exact -> 0          T(1) = T(2) = 1
    #   j = 2: 4 at risk (L >= 3 and L >= 6 too), 1 exact -> 1/4   T(3) = 3/4
    #   j = 3: L = 4 and L >= 6 at risk, none exact -> 0           T(4) = 3/4
    #   j = 4: L = 4 and L >= 6, 1 exact -> 1/2                    T(5) = 3/8
    #   j = 5: L >= 6 alone, none exact -> 0                       T(6) = 3/8
    expect = [1.0, 1.0, 1.0, 0.75, 0.75, 0.375, 0.375]
    assert liq.tail(0)[:7] == pytest.approx(expect, abs=1e-6)
    assert liq.expected_fill(0, 600) == pytest.approx(sum(expect[1:]), abs=1e-6)
    assert liq.expected_fill(0, 50) == 0.0
    assert liq.observations[0] == 4.0
    # The tail never rises.
    assert (np.diff(liq.tail(0)) <= 1e-12).all()


def test_a_full_fill_says_nothing_about_the_level_it_filled_to() -> None:
    liq = CensoredLiquidity(1, max_units=10, forget=1.0, prior_weight=TINY)
    for _ in range(10):
        liq.observe(0, 500, 500)  # L >= 5, never more asked
    # Nothing is known about L >= 6 given L >= 5: the prior hazard (0.1)
    # applies at level 5, T(6) = 0.9 * T(5) = 0.9.
    assert liq.tail(0)[6] == pytest.approx(0.9, abs=1e-6)
    tied = CensoredLiquidity(1, max_units=10, forget=1.0, prior_weight=TINY)
    tied.observe(0, 500, 200)  # L = 2
    tied.observe(0, 500, 400)  # L = 4
    tied.observe(0, 500, 300)  # L = 3
    tied.observe(0, 300, 300)  # L >= 3
    # j = 2: all 4 at risk, 1 exact -> T(3) = 3/4; j = 3: L = 3 and L = 4
    # are at risk (L >= 3 cannot tell whether L = 3), 1 exact -> 1/2:
    # T(4) = 3/8.
    assert tied.tail(0)[4] == pytest.approx(0.375, abs=1e-6)


def _brute_best(tails: list[np.ndarray], q: int, m: int) -> float:
    total = min(q, m * len(tails))
    best = -1.0
    for split in itertools.product(range(m + 1), repeat=len(tails)):
        if sum(split) == total:
            best = max(best, sum(float(t[1:u + 1].sum()) for t, u in zip(tails, split)))
    return best


_obs = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 9), st.integers(0, 9)), max_size=25)


@PROPS
@given(obs=_obs, k=st.integers(1, 3), q=st.integers(0, 6), extra=st.integers(0, 99),
       forget=st.sampled_from([1.0, 0.9]), h0=st.sampled_from([0.1, 0.5]), data=st.data())
def test_greedy_allocation_maximises_expected_fill(obs: list[tuple[int, int, int]], k: int, q: int, extra: int,
                                                   forget: float, h0: float, data: st.DataObject) -> None:
    m = 6
    liq = CensoredLiquidity(3, max_units=m, forget=forget, prior_hazard=h0)
    for v, sent, filled in obs:
        liq.observe(v, sent * 100, min(filled, sent) * 100)
    pools = data.draw(st.permutations(range(3)))[:k]
    units = liq.allocate(pools, q * 100 + extra)
    assert len(units) == k and all(0 <= u <= m for u in units)
    assert sum(units) == min(q, k * m)
    got = sum(liq.expected_fill(v, u * 100) for v, u in zip(pools, units))
    best = _brute_best([liq.tail(v).copy() for v in pools], q, m)
    assert got == pytest.approx(best, abs=1e-9)


def test_greedy_allocation_on_seeded_random_tails() -> None:
    rng = np.random.default_rng(11)
    m = 8
    for _ in range(40):
        liq = CensoredLiquidity(3, max_units=m, forget=0.95)
        for _ in range(int(rng.integers(0, 40))):
            v, s = int(rng.integers(0, 3)), int(rng.integers(1, m + 1))
            depth = int(rng.geometric(1.0 / (2 + 3 * v))) - 1  # pool 2 deepest
            liq.observe(v, s * 100, min(depth, s) * 100)
        q = int(rng.integers(0, m + 1))
        units = liq.allocate([0, 1, 2], q * 100)
        got = sum(liq.expected_fill(v, u * 100) for v, u in enumerate(units))
        assert got == pytest.approx(_brute_best([liq.tail(v).copy() for v in range(3)], q, m), abs=1e-9)


def _track(forget: float, seed: int = 0) -> np.ndarray:
    """A pool holding geometric liquidity of mean 20 units for 400 children,
    then of mean 3 for 150; every child asks 10 units."""
    rng = np.random.default_rng(seed)
    liq = CensoredLiquidity(1, max_units=20, forget=forget)
    for p, n in ((1 / 21, 400), (1 / 4, 150)):
        for depth in (rng.geometric(p, n) - 1).tolist():
            liq.observe(0, 1000, min(depth, 10) * 100)
    return liq.tail(0)[:11].copy()


def test_forgetting_follows_a_pool_whose_liquidity_moved() -> None:
    new = 0.75 ** np.arange(11)  # P(L >= k) of the second regime (mean 3)
    old = (20 / 21) ** np.arange(11)
    for seed in range(3):
        follows, lags = _track(0.98, seed), _track(1.0, seed)
        # 0.98^150 ~ 5% of the old regime's weight is left against ~50 new
        # children; without forgetting the old regime is 400 of 550.
        assert np.abs(follows - new).max() < 0.12, follows
        assert np.abs(lags - new).max() > 0.3, lags
        assert (lags[1:] > follows[1:]).all()
        assert np.abs(lags - old).max() < np.abs(lags - new).max()


def test_forget_decays_the_counts_per_child() -> None:
    liq = CensoredLiquidity(2, forget=0.5)
    for _ in range(3):
        liq.observe(0, 500, 500)
    # 1 -> 1 * 0.5 + 1 = 1.5 -> 1.75.
    assert liq.observations[0] == pytest.approx(1.75)
    assert liq.at_risk[0, 4] == pytest.approx(1.75) and liq.at_risk[0, 5] == 0.0 and liq.exact[0].sum() == 0.0
    liq.observe(0, 500, 200)
    assert liq.observations[0] == pytest.approx(1.875)
    assert liq.exact[0, 2] == pytest.approx(1.0)
    assert liq.observations[1] == 0.0 and (liq.at_risk[1] == 0.0).all()


def test_shrink_scales_the_evidence_and_the_tail_moves_to_the_prior() -> None:
    liq = CensoredLiquidity(2, max_units=10, prior_weight=1.0, forget=1.0)
    ref = CensoredLiquidity(2, max_units=10, prior_weight=1.0, forget=1.0)
    for _ in range(20):
        liq.observe(0, 1000, 200)
        liq.observe(1, 1000, 200)
    for _ in range(2):
        ref.observe(0, 1000, 200)
    before = liq.tail(0).copy()
    assert before[3] < 0.1  # 20 children said "2 units"
    liq.shrink(0, 0.1)
    assert liq.observations[0] == pytest.approx(2.0)
    assert liq.exact[0] == pytest.approx(ref.exact[0]) and liq.at_risk[0] == pytest.approx(ref.at_risk[0])
    # The cached tail is recomputed: as if only 2 children had been seen.
    assert liq.tail(0) == pytest.approx(ref.tail(0))
    assert liq.tail(0)[3] > before[3]
    # The other pool is untouched.
    assert liq.observations[1] == pytest.approx(20.0) and liq.tail(1)[3] < 0.1
    liq.shrink(1, 0.0)
    assert liq.tail(1) == pytest.approx(0.9 ** np.arange(11))


def test_units_are_capped_at_max_units() -> None:
    liq = CensoredLiquidity(2, max_units=8, unit=50, forget=1.0)
    assert [liq.units(q) for q in (0, 49, 50, 399, 400, 10**9)] == [0, 0, 1, 7, 8, 8]
    liq.observe(0, 10**6, 10**6)  # censored far past the cap: at risk at every level
    assert liq.at_risk[0] == pytest.approx(np.ones(9))
    liq.observe(0, 10**6, 5000)  # 100 units filled: still past the cap
    assert liq.observations[0] == 2.0
    assert liq.tail(0).shape == (9,)
    assert liq.expected_fill(0, 10**9) <= 8.0
    assert liq.expected_fill(0, 10**9) == pytest.approx(liq.expected_fill(0, 400))
    assert liq.allocate([0], 10**9) == [8]
    assert sum(liq.allocate([0, 1], 10**9)) == 16, "each pool is capped, not the order"


def test_an_order_larger_than_max_units_is_split_at_its_own_size() -> None:
    liq = CensoredLiquidity(2, max_units=8, forget=1.0)
    for _ in range(20):
        liq.observe(0, 800, 800)  # deep: always filled fully at 8 units
        liq.observe(1, 800, 300)  # holds 3 units
    # 12 units: pool 0 up to its 8 levels, pool 1 its 3 units and the
    # 12th (each pool is capped at max_units, not the order).
    assert liq.allocate([0, 1], 1200) == [8, 4]
    # Far more than both can take: every level of both.
    assert liq.allocate([0, 1], 10**9) == [8, 8]


def test_a_child_under_one_unit_is_ignored() -> None:
    liq = CensoredLiquidity(1, unit=100)
    liq.observe(0, 99, 0)
    liq.observe(0, 0, 0)
    assert liq.observations[0] == 0.0 and (liq.at_risk == 0.0).all()
    # An unfilled child of one unit or more is an exact zero.
    liq.observe(0, 300, 0)
    assert liq.exact[0, 0] == 1.0 and liq.at_risk[0, 0] == 1.0 and liq.at_risk[0, 1] == 0.0


@pytest.mark.parametrize("kw", [
    {"max_units": 0}, {"unit": 0}, {"forget": 0.0}, {"forget": 1.01}, {"prior_hazard": 0.0},
    {"prior_hazard": 1.0}, {"prior_weight": 0.0},
])
def test_bad_parameters_raise(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CensoredLiquidity(2, **kw)  # type: ignore[arg-type]
