"""VenueStats with its online learners: the change detector watching the
pools' fill fractions and 250 ms markouts, ``forget`` on an alarm, the
censored liquidity fed by the dark children, and ``evidence``.

Streams are seeded numpy draws; times are explicit ints (ns). Nothing
sleeps or reads a clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from router.learning.changes import N_STREAMS, STREAM_FILL, STREAM_MARKOUT, PageHinkley
from router.learning.darkpool import CensoredLiquidity
from router.learning.venuestats import DETECT_HORIZON, MARKOUT_HORIZONS_NS, VenueStats

S = 1_000_000_000
MS = 1_000_000
H = 300 * S  # the default half-life
T0 = 10_000 * S
LIT, POOL = 0, 1
QTY = 1000
BUCKET = 2  # qty 1000 with the default edges (200, 1000)
PX = 10_000


def _stats(detector: bool = True, dark: tuple[bool, ...] = (False, True), keep: float = 0.1) -> VenueStats:
    return VenueStats(["LIT", "POOL"], ["XYZ"], detector=PageHinkley(2) if detector else None,
                      liquidity=CensoredLiquidity(2), dark=dark, change_keep=keep)


def _child(st: VenueStats, v: int, frac: float, t: int) -> None:
    filled = round(QTY * min(max(frac, 0.0), 1.0))
    st.record_child(v, QTY, filled, t - MS, t if filled else None, 0 < filled < QTY, t)


def _fractions(seed: int, before: int = 100, after: int = 60) -> list[float]:
    """Fill fractions around 0.8 (sd 0.05), then around 0.3: a 10 sd drop."""
    rng = np.random.default_rng(seed)
    return [*rng.normal(0.8, 0.05, before).tolist(), *rng.normal(0.3, 0.05, after).tolist()]


def test_a_shift_in_a_pools_fill_fractions_makes_it_forget() -> None:
    st = _stats()
    liq = st.liquidity
    assert liq is not None and st.detector is not None
    fracs = _fractions(0)
    alarm_at = None
    for i, f in enumerate(fracs):
        t = T0 + i * 10 * MS
        _child(st, LIT, f, t)  # the lit venue sees the very same shift
        w_before = st.child_weight(POOL, BUCKET, t)
        obs_before = float(liq.observations[POOL])
        _child(st, POOL, f, t)
        if st.changes:
            alarm_at = i
            # The pool's past is cut to change_keep; the alarming child
            # itself is booked after, at full weight (1 at its own time).
            assert st.child_weight(POOL, BUCKET, t) == pytest.approx(0.1 * w_before + 1.0)
            # The liquidity estimate saw the child (decayed by forget
            # first), then was shrunk.
            assert liq.observations[POOL] == pytest.approx(0.1 * (0.98 * obs_before + 1.0))
            assert st.changed_ns == [0, t] and st.last_change_ns == t and st.changes == 1
            break
    assert alarm_at is not None, "no alarm on a 10 sd drop in 60 children"
    assert 100 <= alarm_at <= 105, "no false alarm before the drop, and a prompt one after"
    assert st.detector.alarms[POOL * N_STREAMS + STREAM_FILL] == 1
    assert st.detector.alarms[POOL * N_STREAMS + STREAM_MARKOUT] == 0
    # The lit venue is not watched: never fed to the detector, never forgotten.
    assert st.detector.count(LIT, STREAM_FILL) == 0 and st.detector.alarms[:N_STREAMS] == [0, 0]
    t = T0 + alarm_at * 10 * MS
    assert st.child_weight(LIT, BUCKET, t) == pytest.approx(alarm_at + 1, rel=1e-2)
    assert liq.observations[LIT] == 0.0, "lit children do not feed the liquidity estimate"


def test_after_forgetting_the_fill_rate_follows_the_new_level() -> None:
    watched, blind = _stats(), _stats(detector=False)
    fracs = _fractions(1)
    t = T0
    for i, f in enumerate(fracs[:110]):
        t = T0 + i * 10 * MS
        _child(watched, POOL, f, t)
        _child(blind, POOL, f, t)
    assert watched.changes >= 1 and blind.changes == 0
    # 10 children at ~0.3 after 100 at ~0.8: without forgetting the fill
    # rate is still ~0.75; with it, the 100 weigh ~10 and the rate is ~0.5.
    new, old = watched.fill_rate(POOL, BUCKET, t), blind.fill_rate(POOL, BUCKET, t)
    assert old > 0.7
    assert new < old - 0.15


def _const(mid2: int) -> Callable[[int], int]:
    return lambda s: mid2


def _markout_run(st: VenueStats, mids: Callable[[int], tuple[int, int]], n: int, *, t0: int = T0) -> list[int]:
    """One buy fill of 100 @ 10000 per venue every 2 s; the 250 ms markouts
    resolve 250 ms after each fill, the 1 s ones at 1 s. ``mids(i)`` is
    (mid2 at 250 ms, mid2 at 1 s) for fill i; a mid2 of 20000 + d is a
    markout of d / 2 bps. Returns when each change was detected (ns)."""
    seen: list[int] = []
    for i in range(n):
        t = t0 + i * 2 * S
        st.record_fill(LIT, 0, +1, PX, 100, t)
        st.record_fill(POOL, 0, +1, PX, 100, t)
        fast, slow = mids(i)
        before = st.changes
        st.update_markouts(t + MARKOUT_HORIZONS_NS[DETECT_HORIZON], _const(fast))
        st.update_markouts(t + MARKOUT_HORIZONS_NS[0], _const(slow))
        if st.changes > before:
            seen.append(st.last_change_ns)
    return seen


def test_a_shift_in_a_pools_250ms_markouts_makes_it_forget() -> None:
    st = _stats()
    assert st.detector is not None
    # Some children first (all fully filled: a constant fill stream never alarms).
    for i in range(20):
        _child(st, POOL, 1.0, T0 - S + i * MS)
        _child(st, LIT, 1.0, T0 - S + i * MS)
    rng = np.random.default_rng(2)
    noise = rng.integers(-6, 7, 200).tolist()  # mid2 steps: markouts of d/2 bps, sd ~1.9
    shift_at = 150

    def mids(i: int) -> tuple[int, int]:
        m2 = 2 * PX + noise[i] - (40 if i >= shift_at else 0)  # -20 bps after the shift: ~10 sd
        return m2, m2

    w_pool, w_lit = st.child_weight(POOL, BUCKET, T0), st.child_weight(LIT, BUCKET, T0)
    seen = _markout_run(st, mids, 160)
    assert len(seen) == 1, seen
    k = (seen[0] - T0 - MARKOUT_HORIZONS_NS[DETECT_HORIZON]) // (2 * S)
    assert shift_at <= k <= shift_at + 5
    assert seen[0] == T0 + k * 2 * S + MARKOUT_HORIZONS_NS[DETECT_HORIZON]
    assert st.changed_ns == [0, seen[0]]
    assert st.detector.alarms[POOL * N_STREAMS + STREAM_MARKOUT] == 1
    assert st.detector.alarms[POOL * N_STREAMS + STREAM_FILL] == 0
    # Only the pool's children were cut to change_keep (no child since).
    assert st.child_weight(POOL, BUCKET, T0) == pytest.approx(0.1 * w_pool)
    assert st.child_weight(LIT, BUCKET, T0) == pytest.approx(w_lit)
    # The lit venue had the same markouts: not watched.
    assert st.detector.count(LIT, STREAM_MARKOUT) == 0


def test_only_the_250ms_horizon_is_watched() -> None:
    st = _stats()
    assert st.detector is not None
    rng = np.random.default_rng(3)
    fast_noise = rng.integers(-6, 7, 200).tolist()
    slow_noise = rng.integers(-6, 7, 200).tolist()

    def mids(i: int) -> tuple[int, int]:
        # The 1 s markouts drop by 20 bps after fill 100; the 250 ms ones do not.
        return 2 * PX + fast_noise[i], 2 * PX + slow_noise[i] - (40 if i >= 100 else 0)

    assert _markout_run(st, mids, 200) == []
    assert st.changes == 0 and st.changed_ns == [0, 0]
    # Every 250 ms markout of the pool was observed, none of the others.
    assert st.detector.count(POOL, STREAM_MARKOUT) == 200
    assert st.markout_weight(POOL, 0, T0 + 400 * S) > 0.0 and st.markouts_resolved > 400


def test_evidence_rises_with_children_and_drops_after_forget() -> None:
    st = _stats()
    assert st.evidence(BUCKET, T0) == [0.0, 0.0]
    seen = []
    for _ in range(30):
        _child(st, POOL, 1.0, T0)
        seen.append(st.evidence(BUCKET, T0)[POOL])
    # w / (w + prior_weight): n / (n + 2) for n children at the read time.
    assert seen == pytest.approx([n / (n + 2) for n in range(1, 31)])
    assert all(b > a for a, b in itertools.pairwise(seen)) and seen[-1] > 0.9
    assert st.evidence(BUCKET, T0)[LIT] == 0.0
    assert st.evidence(0, T0) == [0.0, 0.0], "other size buckets have no children"
    # Decay: one half-life later 30 children weigh 15.
    assert st.evidence(BUCKET, T0 + H)[POOL] == pytest.approx(15 / 17)
    st.forget(POOL, T0)
    assert st.evidence(BUCKET, T0)[POOL] == pytest.approx(3 / 5)
    assert st.changed_ns == [0, T0] and st.changes == 1


def test_forget_scales_every_sum_of_one_venue() -> None:
    st = _stats(keep=0.25)
    for i in range(8):
        for v in (LIT, POOL):
            _child(st, v, 0.5, T0 + i * MS)
            st.record_fill(v, 0, +1, PX, 100, T0 + i * MS)
    st.update_markouts(T0 + 10 * S, lambda s: 2 * PX + 4)
    liq = st.liquidity
    assert liq is not None
    before = {name: getattr(st, name).copy() for name in
              ("child_w", "filled_w", "partial_w", "ttf_w", "ttf_sum_ms", "markout_w", "markout_sum_bps")}
    obs = liq.observations.copy()
    rate = st.fill_rate(POOL, BUCKET, T0 + 10 * S)
    st.forget(POOL, T0 + 10 * S)
    for name, a in before.items():
        assert getattr(st, name)[POOL] == pytest.approx(0.25 * a[POOL]), name
        assert getattr(st, name)[LIT] == pytest.approx(a[LIT]), name
    assert liq.observations[POOL] == pytest.approx(0.25 * obs[POOL]) and liq.observations[LIT] == obs[LIT]
    # Closer to the prior (0.5 here is the data too: same rate, less weight).
    assert st.fill_rate(POOL, BUCKET, T0 + 10 * S) == pytest.approx(rate)
    assert st.markout_bps(POOL, 0, T0 + 10 * S) < st.markout_bps(LIT, 0, T0 + 10 * S)
    # last_change_ns is the latest, not the last call's.
    st.forget(LIT, T0)
    assert st.changed_ns == [T0, T0 + 10 * S] and st.last_change_ns == T0 + 10 * S and st.changes == 2


def test_without_a_detector_nothing_is_forgotten() -> None:
    st = _stats(detector=False)
    liq = st.liquidity
    assert liq is not None and st.detector is None
    for i, f in enumerate(_fractions(0)):
        _child(st, POOL, f, T0 + i * 10 * MS)
    noise = np.random.default_rng(4).integers(-6, 7, 100).tolist()

    def mids(i: int) -> tuple[int, int]:
        m2 = 2 * PX + noise[i] - (40 if i > 50 else 0)
        return m2, m2

    assert _markout_run(st, mids, 100, t0=T0 + 10 * S) == []
    assert st.changes == 0 and st.changed_ns == [0, 0] and st.last_change_ns == 0
    assert st.child_weight(POOL, BUCKET, T0 + 2 * S) == pytest.approx(160, rel=1e-2)
    # The liquidity estimate still learns from the pool's children.
    assert liq.observations[POOL] > 10 and liq.observations[LIT] == 0.0


def test_no_pool_no_watch() -> None:
    # dark defaults to all lit: a detector watches nothing.
    st = VenueStats(["LIT", "POOL"], ["XYZ"], detector=PageHinkley(2), liquidity=CensoredLiquidity(2))
    assert st.dark == (False, False)
    for i, f in enumerate(_fractions(0)):
        _child(st, POOL, f, T0 + i * 10 * MS)
    assert st.changes == 0
    assert st.detector is not None and st.detector.count(POOL, STREAM_FILL) == 0
    assert st.liquidity is not None and st.liquidity.observations[POOL] == 0.0


@pytest.mark.parametrize("keep", [1.0, -0.1, 1.5])
def test_change_keep_must_be_in_0_1(keep: float) -> None:
    with pytest.raises(ValueError):
        _stats(keep=keep)


def test_change_keep_zero_forgets_everything() -> None:
    st = _stats(keep=0.0)
    for i in range(10):
        _child(st, POOL, 0.2, T0 + i * MS)
    st.forget(POOL, T0 + S)
    assert st.child_weight(POOL, BUCKET, T0 + S) == 0.0
    assert st.fill_rate(POOL, BUCKET, T0 + S) == pytest.approx(st.prior_fill_rate)
    assert st.evidence(BUCKET, T0 + S) == [0.0, 0.0]
