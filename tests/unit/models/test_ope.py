"""Off-policy estimators on a synthetic contextual bandit whose truth is
known in closed form: unbiased, and their 95% intervals cover the truth
about 95% of the time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.ope import RewardModel, dr, estimate_all, ips, snips

V = 3


def bandit(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Contexts with a per-venue cost; the logger picks the cheapest with
    probability 0.7 and the others 0.15 each; reward = cost + noise."""
    cost = rng.normal([2.0, 3.0, 4.0], 1.0, size=(n, V))
    best = cost.argmin(axis=1)
    probs = np.full((n, V), 0.15)
    probs[np.arange(n), best] = 0.7
    logged = np.array([rng.choice(V, p=p) for p in probs])
    reward = cost[np.arange(n), logged] + rng.normal(0, 2.0, n)
    return cost, probs, logged, reward


def candidate(cost: np.ndarray) -> np.ndarray:
    """Always the second cheapest venue: a policy the logger rarely follows."""
    return np.argsort(cost, axis=1)[:, 1]


def test_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    reps = 200
    for _ in range(reps):
        cost, probs, logged, reward = bandit(600, rng)
        target = candidate(cost)
        truth = float(cost[np.arange(len(cost)), target].mean())
        p = probs[np.arange(len(cost)), logged]
        for name, e in estimate_all(reward, p, logged, target, cost).items():
            covered[name] += e.covers(truth)
    for name, k in covered.items():
        assert 0.88 <= k / reps <= 0.995, (name, k / reps)


def test_estimates_agree_on_a_large_log_and_dr_is_tightest() -> None:
    rng = np.random.default_rng(3)
    cost, probs, logged, reward = bandit(20_000, rng)
    target = candidate(cost)
    truth = float(cost[np.arange(len(cost)), target].mean())
    p = probs[np.arange(len(cost)), logged]
    est = estimate_all(reward, p, logged, target, cost)
    for e in est.values():
        assert abs(e.mean - truth) < 0.1 and e.covers(truth)
    width = {k: e.hi - e.lo for k, e in est.items()}
    assert width["dr"] < width["snips"] <= width["ips"] * 1.01
    assert math.isclose(est["ips"].effective_n, est["snips"].effective_n)
    assert 0.1 * len(cost) < est["dr"].effective_n < 0.3 * len(cost)


def test_the_logged_policy_estimates_itself_exactly_on_policy() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(5.0, 1.0, 500)
    ones = np.ones(500)
    match = np.ones(500, dtype=bool)
    assert math.isclose(ips(r, ones, match).mean, float(r.mean()))
    assert math.isclose(snips(r, ones, match).mean, float(r.mean()))
    assert math.isclose(dr(r, ones, match, np.zeros(500), np.zeros(500)).mean, float(r.mean()))


def test_no_support_and_zero_propensity() -> None:
    r = np.array([1.0, 2.0])
    e = snips(r, np.array([0.5, 0.5]), np.array([False, False]))
    assert math.isnan(e.mean) and e.effective_n == 0.0
    assert ips(r, np.array([0.5, 0.5]), np.array([False, False])).mean == 0.0
    with pytest.raises(ValueError, match="probability 0"):
        ips(r, np.array([0.0, 0.5]), np.array([True, True]))


def test_reward_model_recovers_a_linear_reward() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, V, 2000)
    c = rng.normal(0, 1, 2000)
    r = np.array([1.0, 2.0, 3.0])[a] + 0.5 * c
    m = RewardModel(V, ridge=0.0).fit(a, c, r)
    assert np.allclose(m.coef, [1.0, 2.0, 3.0, 0.5], atol=1e-9)
