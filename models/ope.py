"""Off-policy evaluation: what a candidate policy would have cost on the
traffic a router logged, from the logged probabilities alone.

The logged action is the parent's lead venue (``router.routing.explore``),
picked with probability ``p_i`` (``Decision.propensity``); the reward is
the parent's implementation shortfall in bps (``ParentResult.shortfall_bps``,
lower is better). A deterministic candidate picks one lead per decision;
``match_i`` says whether it is the one logged. The three estimators of the
candidate's expected cost, each with a 95% interval (normal approximation
over decisions):

* IPS: ``mean(match / p * r)``. Unbiased when every lead the candidate
  picks had ``p > 0``; its variance grows as ``1 / p``.
* Self-normalised IPS: ``sum(match / p * r) / sum(match / p)``. Slightly
  biased, much steadier; the interval by the delta method.
* Doubly robust: ``mean(q(x, cand) + match / p * (r - q(x, logged)))``
  with a reward model ``q``; unbiased if either ``q`` or ``p`` is right,
  and tighter than IPS when ``q`` is good. ``q`` here is a least-squares
  fit of the reward on the lead venue (one intercept each) and the model's
  expected cost of that lead, fitted on the other half of the decisions
  than it is applied to (cross-fitting, so ``q`` never grades its own
  training rows).

The estimand is the candidate choosing the lead venue with the rest of each
plan as the logging router built it around that lead; it equals "the
candidate's own plans" where those are built around the lead the same way
(the same planner with another model's ranking, the common case).

``effective_n`` (Kish: ``(sum w)^2 / sum w^2`` of the weights) says how
many decisions the estimate really rests on; a handful means the logged
traffic cannot tell.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Z95 = 1.96


@dataclass(frozen=True)
class Estimate:
    name: str
    mean: float
    lo: float
    hi: float
    n: int
    effective_n: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    def covers(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def _kish(w: F64) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def _mean_ci(name: str, v: F64, w: F64) -> Estimate:
    n = v.size
    if n == 0:
        return Estimate(name, math.nan, math.nan, math.nan, 0, 0.0)
    m = float(v.mean())
    h = Z95 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return Estimate(name, m, m - h, m + h, n, _kish(w))


def _weights(propensity: F64, match: npt.NDArray[np.bool_]) -> F64:
    p = np.asarray(propensity, dtype=np.float64)
    if (p <= 0).any() or (p > 1).any():
        raise ValueError("propensities must be in (0, 1]: a logged action had probability 0")
    return np.where(np.asarray(match, dtype=bool), 1.0 / p, 0.0)


def ips(reward: F64, propensity: F64, match: npt.NDArray[np.bool_]) -> Estimate:
    w = _weights(propensity, match)
    return _mean_ci("ips", w * np.asarray(reward, dtype=np.float64), w)


def snips(reward: F64, propensity: F64, match: npt.NDArray[np.bool_]) -> Estimate:
    w = _weights(propensity, match)
    r = np.asarray(reward, dtype=np.float64)
    sw = float(w.sum())
    n = r.size
    if sw <= 0:
        return Estimate("snips", math.nan, math.nan, math.nan, n, 0.0)
    m = float((w * r).sum()) / sw
    se = math.sqrt(float((w * w * (r - m) ** 2).sum())) / sw
    return Estimate("snips", m, m - Z95 * se, m + Z95 * se, n, _kish(w))


def dr(reward: F64, propensity: F64, match: npt.NDArray[np.bool_], q_logged: F64, q_target: F64) -> Estimate:
    w = _weights(propensity, match)
    r = np.asarray(reward, dtype=np.float64)
    v = np.asarray(q_target, dtype=np.float64) + w * (r - np.asarray(q_logged, dtype=np.float64))
    return _mean_ci("dr", v, w)


class RewardModel:
    """``q(x, a) = alpha_a + beta * e_a``: an intercept per lead venue and a
    shared slope on the candidate model's expected cost of that lead."""

    def __init__(self, n_actions: int, ridge: float = 1e-3) -> None:
        self.n = n_actions
        self.ridge = ridge
        self.coef = np.zeros(n_actions + 1)

    def _design(self, action: npt.NDArray[np.int64], cost: F64) -> F64:
        x = np.zeros((action.size, self.n + 1))
        x[np.arange(action.size), action] = 1.0
        x[:, self.n] = cost
        return x

    def fit(self, action: npt.NDArray[np.int64], cost: F64, reward: F64) -> RewardModel:
        x = self._design(action, cost)
        a = x.T @ x + self.ridge * np.eye(self.n + 1)
        self.coef = np.asarray(np.linalg.solve(a, x.T @ np.asarray(reward, dtype=np.float64)), dtype=np.float64)
        return self

    def predict(self, action: npt.NDArray[np.int64], cost: F64) -> F64:
        return np.asarray(self._design(action, cost) @ self.coef, dtype=np.float64)


def estimate_all(reward: F64, propensity: F64, logged: npt.NDArray[np.int64], target: npt.NDArray[np.int64],
                 costs: F64, *, folds: int = 2, seed: int = 0) -> dict[str, Estimate]:
    """IPS, SNIPS and DR of the candidate whose lead is ``target`` per
    decision; ``costs`` ``[n, V]``: the candidate model's expected cost of
    each venue (the reward model's regressor)."""
    r = np.asarray(reward, dtype=np.float64)
    logged = np.asarray(logged, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    c = np.asarray(costs, dtype=np.float64)
    match = logged == target
    rows = np.arange(r.size)
    q_logged = np.zeros(r.size)
    q_target = np.zeros(r.size)
    fold = np.random.default_rng(seed).integers(0, folds, r.size)
    for k in range(folds):
        fit, use = fold != k, fold == k
        if not fit.any() or not use.any():
            continue
        m = RewardModel(c.shape[1]).fit(logged[fit], c[rows[fit], logged[fit]], r[fit])
        q_logged[use] = m.predict(logged[use], c[rows[use], logged[use]])
        q_target[use] = m.predict(target[use], c[rows[use], target[use]])
    return {"ips": ips(r, propensity, match), "snips": snips(r, propensity, match),
            "dr": dr(r, propensity, match, q_logged, q_target)}
