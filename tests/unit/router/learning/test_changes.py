"""PageHinkley: two-sided Page-Hinkley tests on standardised streams.

Streams are seeded numpy draws, so every run sees the same numbers; the
bounds are worked out from the test's theory next to each assertion.
Nothing sleeps or reads a clock.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.learning.changes import N_STREAMS, STREAM_FILL, STREAM_MARKOUT, PageHinkley

PROPS = settings(derandomize=True, database=None, deadline=None, max_examples=300)

DELTA, LAMBDA = 0.5, 8.0  # the defaults


def _feed(ph: PageHinkley, xs: np.ndarray, v: int = 0, stream: int = STREAM_MARKOUT) -> list[int]:
    """Indices of ``xs`` (0-based) whose observation raised an alarm."""
    return [i for i, x in enumerate(xs.tolist()) if ph.observe(v, stream, x)]


def _delay_after_shift(seed: int, shift_sd: float, pre: int = 300, post: int = 100) -> int | None:
    """Observations after a ``shift_sd`` shift until the alarm (1: the first
    shifted one); None when the detector alarmed before the shift (it then
    restarted, and what follows measures something else)."""
    rng = np.random.default_rng(seed)
    ph = PageHinkley(1)
    if _feed(ph, rng.normal(0.0, 1.0, pre)):
        return None
    after = _feed(ph, rng.normal(shift_sd, 1.0, post))
    return after[0] + 1 if after else post + 1


def test_defaults() -> None:
    ph = PageHinkley(3)
    assert (ph.delta, ph.threshold, ph.min_obs, ph.window) == (DELTA, LAMBDA, 20, 200)
    assert ph.alarms == [0] * (3 * N_STREAMS)
    assert (STREAM_MARKOUT, STREAM_FILL, N_STREAMS) == (0, 1, 2)
    assert ph.mean(2, STREAM_FILL) == 0.0 and ph.sd(2, STREAM_FILL) == 0.0 and ph.count(2, STREAM_FILL) == 0


def test_no_alarm_on_a_long_stationary_stream() -> None:
    # At the defaults the in-control run length is about 1e4 observations
    # (see the rate test below), so 5,000 draws alarm for roughly a third of
    # seeds: here a higher threshold, whose run length is ~5e5, and several
    # seeds. The stream's mean and sd are learned on the way.
    for seed in range(5):
        ph = PageHinkley(1, DELTA, 12.0)
        xs = np.random.default_rng(seed).normal(3.0, 2.0, 5000)
        assert _feed(ph, xs) == [], seed
        assert ph.count(0, STREAM_MARKOUT) == 5000 and ph.alarms == [0, 0]
        assert ph.mean(0, STREAM_MARKOUT) == pytest.approx(3.0, abs=0.5)
        assert ph.sd(0, STREAM_MARKOUT) == pytest.approx(2.0, rel=0.2)


def test_false_alarm_rate_at_the_defaults_is_about_one_in_ten_thousand() -> None:
    # The one-sided CUSUM with k = delta = 0.5 and h = lambda = 8 has an
    # in-control average run length of about 2e4 (Siegmund:
    # (exp(2k(h + 1.166)) - 2k(h + 1.166) - 1) / (2k^2) ~ 1.9e4); two-sided,
    # about 1e4. 200,000 stationary draws: ~20 alarms expected. Bounds at
    # run lengths of 4e4 and 3e3 (Poisson: both several sd away).
    ph = PageHinkley(1)
    n = 200_000
    alarms = _feed(ph, np.random.default_rng(1).normal(0.0, 1.0, n))
    assert n / 40_000 <= len(alarms) <= n / 3_000, len(alarms)
    assert ph.alarms[0] == len(alarms) and ph.alarms[1] == 0
    # Every alarm restarts the stream, so no two are closer than min_obs + 1.
    assert all(b - a > ph.min_obs for a, b in itertools.pairwise(alarms))


@pytest.mark.parametrize("shift", [2.0, -2.0], ids=["up", "down"])
def test_a_two_sd_shift_alarms_within_a_bounded_number_of_observations(shift: float) -> None:
    # lambda / (|s| - delta) = 8 / 1.5 ~ 5.3 observations on average; the
    # bound leaves ~4.7x slack for the noise and the running mean starting
    # to follow the new level.
    expected = LAMBDA / (abs(shift) - DELTA)
    bound = 25
    assert 4 * expected < bound < 5 * expected
    delays = [_delay_after_shift(seed, shift) for seed in range(30)]
    clean = [d for d in delays if d is not None]
    # Alarms in the first 300 stationary draws are rare (~3%).
    assert len(clean) >= 25, delays
    assert max(clean) <= bound, delays
    assert 3.0 <= float(np.mean(clean)) <= 10.0, delays


def test_a_small_shift_takes_longer_than_a_large_one() -> None:
    small = [d for d in (_delay_after_shift(s, 1.0, post=400) for s in range(20)) if d is not None]
    large = [d for d in (_delay_after_shift(s, 3.0) for s in range(20)) if d is not None]
    # lambda / (s - delta): 16 against 3.2.
    assert float(np.mean(small)) > 2 * float(np.mean(large))
    assert max(large) <= 10 and max(small) <= 400


def test_after_an_alarm_the_stream_restarts_and_learns_the_new_mean() -> None:
    rng = np.random.default_rng(3)
    ph = PageHinkley(1)
    assert _feed(ph, rng.normal(0.0, 1.0, 300), stream=STREAM_FILL) == []
    assert ph.mean(0, STREAM_FILL) == pytest.approx(0.0, abs=0.2)
    shifted = rng.normal(2.0, 1.0, 300).tolist()
    # The first alarm (next() stops feeding there).
    i = next((k for k, x in enumerate(shifted) if ph.observe(0, STREAM_FILL, x)), None)
    assert i is not None, "no alarm on a 2 sd shift in 300 observations"
    assert ph.alarms == [0, 1]
    assert ph.count(0, STREAM_FILL) == 0
    assert ph.mean(0, STREAM_FILL) == 0.0 and ph.sd(0, STREAM_FILL) == 0.0
    # The alarming observation itself is not kept; what follows is learned.
    rest = np.array(shifted[i + 1:])
    assert _feed(ph, rest, stream=STREAM_FILL) == []
    assert ph.count(0, STREAM_FILL) == len(rest)
    assert ph.mean(0, STREAM_FILL) == pytest.approx(2.0, abs=0.3)
    assert ph.sd(0, STREAM_FILL) == pytest.approx(1.0, rel=0.25)


def test_running_mean_and_sd_are_exact_within_the_window() -> None:
    ph = PageHinkley(1, min_obs=100, window=200)  # no test before 100: plain statistics
    xs = [1.0, 2.0, 4.0, 7.0, 11.0]
    for x in xs:
        assert not ph.observe(0, STREAM_MARKOUT, x)
    # Mean 5, population variance (16 + 9 + 1 + 4 + 36) / 5 = 13.2.
    assert ph.mean(0, STREAM_MARKOUT) == pytest.approx(5.0)
    assert ph.sd(0, STREAM_MARKOUT) == pytest.approx(math.sqrt(13.2))


def test_past_the_window_the_statistics_follow_the_recent_level() -> None:
    # With window 50 the mean is exponential with weight 1/50 past 50
    # observations: 500 at level 10 after 500 at level 0 leave ~10 (a
    # threshold no stream reaches keeps the test out of the way).
    ph = PageHinkley(1, threshold=1e12, min_obs=20, window=50)
    rng = np.random.default_rng(4)
    _feed(ph, rng.normal(0.0, 1.0, 500))
    _feed(ph, rng.normal(10.0, 1.0, 500))
    assert ph.mean(0, STREAM_MARKOUT) == pytest.approx(10.0, abs=0.5)
    assert ph.count(0, STREAM_MARKOUT) == 1000


def test_no_alarm_before_min_obs() -> None:
    warmup = [0.0, 1.0, 0.0, 1.0, 0.0]  # mean 0.4, sd 0.49
    # min_obs 5: the 6th observation is the first tested; 100 is ~200 sd out.
    ph = PageHinkley(1, min_obs=5, window=50)
    assert [ph.observe(0, STREAM_FILL, x) for x in warmup] == [False] * 5
    assert ph.observe(0, STREAM_FILL, 100.0)
    # min_obs 20: the same jump at the 6th observation is not tested.
    ph = PageHinkley(1, min_obs=20, window=50)
    seq = [*warmup, 100.0, 0.0, 1.0, -50.0, 200.0] + [0.0, 1.0] * 5
    assert len(seq) == 20
    assert not any(ph.observe(0, STREAM_FILL, x) for x in seq)
    assert ph.count(0, STREAM_FILL) == 20 and ph.alarms == [0, 0]


def test_streams_and_venues_are_independent() -> None:
    rng = np.random.default_rng(5)
    ph = PageHinkley(3)
    base = rng.normal(0.0, 1.0, (3, N_STREAMS, 200))
    for t in range(200):
        for v in range(3):
            for s in range(N_STREAMS):
                assert not ph.observe(v, s, float(base[v, s, t])), (v, s, t)
    # Venue 1's fill stream shifts by 5 sd; everything else stays put.
    alarmed = []
    for t in range(30):
        for v in range(3):
            for s in range(N_STREAMS):
                x = float(rng.normal(5.0 if (v, s) == (1, STREAM_FILL) else 0.0, 1.0))
                if ph.observe(v, s, x):
                    alarmed.append((v, s, t))
    assert alarmed and {(v, s) for v, s, _ in alarmed} == {(1, STREAM_FILL)}
    assert ph.alarms[1 * N_STREAMS + STREAM_FILL] == len(alarmed)
    assert sum(ph.alarms) == len(alarmed)
    assert ph.count(1, STREAM_MARKOUT) == 230 and ph.count(0, STREAM_FILL) == 230
    # reset touches one (venue, stream) only.
    ph.reset(2, STREAM_MARKOUT)
    assert ph.count(2, STREAM_MARKOUT) == 0 and ph.count(2, STREAM_FILL) == 230
    assert ph.mean(2, STREAM_MARKOUT) == 0.0 and ph.mean(2, STREAM_FILL) != 0.0


@pytest.mark.parametrize("kw", [
    {"delta": -0.1}, {"threshold": 0.0}, {"threshold": -1.0}, {"min_obs": 1}, {"min_obs": 30, "window": 20},
])
def test_bad_parameters_raise(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PageHinkley(2, **kw)  # type: ignore[arg-type]


def test_edge_parameters_are_accepted() -> None:
    ph = PageHinkley(1, 0.0, 1e-9, min_obs=2, window=2)
    assert ph.delta == 0.0 and ph.window == ph.min_obs == 2


@PROPS
@given(c=st.floats(-1e6, 1e6, allow_nan=False), n=st.integers(1, 400),
       delta=st.floats(0.0, 2.0), threshold=st.floats(0.5, 20.0))
def test_a_constant_stream_never_alarms(c: float, n: int, delta: float, threshold: float) -> None:
    ph = PageHinkley(1, delta, threshold, min_obs=2, window=50)
    assert not any(ph.observe(0, STREAM_MARKOUT, c) for _ in range(n))
    assert ph.count(0, STREAM_MARKOUT) == n and ph.alarms == [0, 0]
    assert ph.mean(0, STREAM_MARKOUT) == c and ph.sd(0, STREAM_MARKOUT) == 0.0


@PROPS
@given(xs=st.lists(st.tuples(st.integers(0, 1), st.integers(0, N_STREAMS - 1),
                             st.floats(-100, 100, allow_nan=False)), max_size=300),
       threshold=st.floats(0.5, 10.0))
def test_counts_and_alarms_are_consistent(xs: list[tuple[int, int, float]], threshold: float) -> None:
    """Each observation either alarms (the stream restarts at count 0) or
    counts one more; no other (venue, stream) moves."""
    ph = PageHinkley(2, 0.5, threshold, min_obs=3, window=10)
    returned = [0] * (2 * N_STREAMS)
    for v, s, x in xs:
        before = [ph.count(u, t) for u in range(2) for t in range(N_STREAMS)]
        alarm = ph.observe(v, s, x)
        after = [ph.count(u, t) for u in range(2) for t in range(N_STREAMS)]
        i = v * N_STREAMS + s
        if alarm:
            returned[i] += 1
            assert before[i] >= ph.min_obs and after[i] == 0
        else:
            assert after[i] == before[i] + 1
        assert [a for j, a in enumerate(after) if j != i] == [b for j, b in enumerate(before) if j != i]
        assert ph.sd(v, s) >= 0.0 and math.isfinite(ph.mean(v, s))
    assert ph.alarms == returned
