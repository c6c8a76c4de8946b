"""The Ganchev et al. replica: the learners against the ideal allocation."""

from __future__ import annotations

import numpy as np

from sim import ganchev


def test_tails_are_a_distribution_with_a_zero_bin() -> None:
    t = ganchev.tails(0.3, 1.5, 200, 50)
    assert t[0] == 1.0 and abs(t[1] - 0.7) < 1e-12, "P(L >= 1) is one minus the zero bin"
    assert np.all(np.diff(t) <= 0)


def test_ideal_is_the_best_split() -> None:
    t = np.stack([ganchev.tails(z, b, 200, 6) for z, b in ganchev.POOLS[:2]])
    best = max(ganchev.expected_fill(t, [a, 6 - a]) for a in range(7))
    assert abs(ganchev.expected_fill(t, ganchev.ideal(t, 6)) - best) < 1e-12


def test_forgetting_recovers_after_the_permutation_and_plain_km_does_not() -> None:
    kw = {"episodes": 700, "permute_at": 300}
    km = ganchev.summarize(np.stack([ganchev.run("km", 1, **kw)]), 300)
    detect = ganchev.summarize(np.stack([ganchev.run("km+forget+detect", 1, **kw)]), 300)
    assert km["before_last_200"] > 0.95 and detect["before_last_200"] > 0.95, "both converge at first"
    assert detect["after_200_on"] > 0.95
    assert km["after_200_on"] < detect["after_200_on"] - 0.1, "without forgetting it stays on the old pools"
    assert km["episodes_to_target"] is None
    assert detect["episodes_to_target"] is not None and detect["episodes_to_target"] <= 200
