"""Bounded exploration for the ML planner, with the probabilities it logs.

A router that always sends a parent's first wave to the venue its model
ranks cheapest never sees what the others would have done in that market,
so neither retraining nor off-policy evaluation (``models.ope``) can learn
anything the model does not already believe. The ML planner therefore
picks the parent's *lead venue* (the venue its plan is built around, first
in the ranking) at random, from a distribution it journals:

* the greedy venue (cheapest expected cost ``e_g``) gets ``1 - eps``;
* every other usable venue ``j`` gets ``eps * q_j`` with ``q`` a softmax of
  ``-(e_j - e_g) / temperature`` over them: near-ties are tried far more
  often than venues the model expects to be expensive;
* ``eps`` is the largest probability, at most ``max_prob``, whose expected
  extra cost ``eps * sum_j q_j (e_j - e_g)`` stays within ``budget_bps``
  per share. The budget holds by construction, in the model's own units;
  what exploration really costs is measured by the backtest (README).

The draw is a hash of the seed and the parent's (session, ClOrdID), not a
random generator: the same order explores the same way in the daemon, in
``sor replay`` and in the backtest, and no state outlives the decision.

Closed form, O(venues), no allocation beyond the returned list: this runs
on the order path (``tests/perf`` measures it with the planner).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from router.config import LearningConfig

_SCALE = float(1 << 64)


def uniform(seed: int, session: str, cl_ord_id: str) -> float:
    """A uniform draw in [0, 1) that is a pure function of its arguments."""
    h = hashlib.blake2b(f"{seed}\x1f{session}\x1f{cl_ord_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / _SCALE


def lead_probabilities(costs: Sequence[float], candidates: Sequence[int], greedy: int,
                       cfg: LearningConfig, bonus: Sequence[float] | None = None,
                       boost: float = 1.0) -> list[float]:
    """Probability of each venue (aligned with ``costs``) being the lead;
    zero outside ``candidates`` (the venues up and allowed), which must
    contain ``greedy``. All mass on ``greedy`` when exploration is off or
    there is nothing else to try.

    ``bonus`` (bps per venue, aligned with ``costs``) is the bandit's
    optimism under uncertainty: the softmax weighs venue j by its gap less
    ``bonus[j] - bonus[greedy]``, so of two venues the model rates alike the
    one with less evidence is tried more. ``boost`` multiplies the budget
    and the probability cap (at most 0.5) for a while after a detected
    change. The budget is still spent in the model's own costs: the
    expected extra cost uses the gaps without the bonus."""
    probs = [0.0] * len(costs)
    others = [j for j in candidates if j != greedy]
    budget, cap = cfg.explore_budget_bps * boost, min(cfg.explore_max_prob * boost, 0.5)
    if not others or budget <= 0.0 or cap <= 0.0:
        probs[greedy] = 1.0
        return probs
    e_g, t = costs[greedy], cfg.explore_temperature_bps
    if bonus is None:
        gaps = [max(costs[j] - e_g, 0.0) for j in others]
    else:
        b_g = bonus[greedy]
        gaps = [max(costs[j] - e_g - bonus[j] + b_g, 0.0) for j in others]
    # Shifted by the smallest gap (the softmax is unchanged): unshifted, a
    # low temperature and gaps of tens of bps underflow every weight to 0.
    low = min(gaps)
    weights = [math.exp(-(g - low) / t) for g in gaps]
    total = sum(weights)
    gap = sum(w * max(costs[j] - e_g, 0.0) for w, j in zip(weights, others)) / total
    eps = cap if gap <= budget / cap else budget / gap
    for w, j in zip(weights, others):
        probs[j] = eps * w / total
    probs[greedy] = 1.0 - eps
    return probs


def pick(probs: Sequence[float], u: float, greedy: int) -> int:
    """The venue whose cumulative band holds ``u``; the greedy venue's band
    comes first, so a tiny exploration probability moves few draws."""
    acc = probs[greedy]
    if u < acc:
        return greedy
    for j, p in enumerate(probs):
        if j == greedy or p <= 0.0:
            continue
        acc += p
        if u < acc:
            return j
    return greedy  # rounding: the bands sum to 1 within a few ulps
