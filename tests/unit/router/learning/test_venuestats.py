"""VenueStats: decayed per-venue outcomes of our own children.

Every expected value is worked out by hand in a comment next to it. Times
are explicit ints (ns); nothing sleeps or reads a clock.
"""

from __future__ import annotations

import math

import pytest

from router.learning.venuestats import MARKOUT_HORIZONS_NS, N_STATS, VenueStats

S = 1_000_000_000  # one second in ns
H = 300 * S  # the default half-life
T0 = 10_000 * S  # an arbitrary monotonic-clock origin, far from 0


def _stats(**kw: object) -> VenueStats:
    return VenueStats(["A", "B", "D"], ["XYZ", "QQQ"], **kw)  # type: ignore[arg-type]


def test_bucket_edges() -> None:
    st = _stats()
    # Edges (200, 1000): < 200 -> 0, [200, 1000) -> 1, >= 1000 -> 2.
    assert [st.bucket_of(q) for q in (1, 199, 200, 999, 1000, 10**7)] == [0, 0, 1, 1, 2, 2]
    assert st.n_buckets == 3
    custom = _stats(size_edges=(100.0,))
    assert [custom.bucket_of(q) for q in (99, 100)] == [0, 1]


def test_prior_dominates_with_no_data() -> None:
    st = _stats(prior_fill_rate=0.4, prior_time_to_fill_ms=25.0, prior_partial_freq=0.1, prior_markout_bps=-0.5)
    for v in range(3):
        for b in range(3):
            assert st.fill_rate(v, b, T0) == pytest.approx(0.4)
            assert st.mean_time_to_fill_ms(v, b, T0) == pytest.approx(25.0)
            assert st.partial_freq(v, b, T0) == pytest.approx(0.1)
        assert st.markout_bps(v, 0, T0) == pytest.approx(-0.5)
        assert st.markout_bps(v, 1, T0) == pytest.approx(-0.5)
        assert st.child_weight(v, 0, T0) == 0.0


def test_one_child_shrunk_to_prior() -> None:
    st = _stats()  # prior weight 2, prior fill rate 0.5, prior ttf 100 ms, prior partial 0
    # qty 500 (bucket 1), 250 filled, first fill 4 ms after sending, partial.
    st.record_child(0, 500, 250, T0 - 4_000_000, T0, True, T0)
    # fill rate = (0.5 + 2*0.5) / (1 + 2) = 1.5/3 = 0.5
    assert st.fill_rate(0, 1, T0) == pytest.approx(0.5)
    # ttf = (4 + 2*100) / (1 + 2) = 68 ms
    assert st.mean_time_to_fill_ms(0, 1, T0) == pytest.approx(68.0)
    # partial = (1 + 2*0) / (1 + 2) = 1/3
    assert st.partial_freq(0, 1, T0) == pytest.approx(1 / 3)
    # Other buckets and venues untouched: prior.
    assert st.fill_rate(0, 0, T0) == pytest.approx(0.5)
    assert st.partial_freq(1, 1, T0) == 0.0


def test_decay_halves_after_one_half_life() -> None:
    st = _stats()
    st.record_child(1, 100, 100, T0, T0 + 1_000_000, False, T0)
    assert st.child_weight(1, 0, T0) == pytest.approx(1.0)
    assert st.child_weight(1, 0, T0 + H) == pytest.approx(0.5)
    assert st.child_weight(1, 0, T0 + 2 * H) == pytest.approx(0.25)
    # At T0: (1 + 1)/(1 + 2) = 2/3. One half-life later the child weighs 0.5:
    # (0.5 + 1)/(0.5 + 2) = 0.6.
    assert st.fill_rate(1, 0, T0) == pytest.approx(2 / 3)
    assert st.fill_rate(1, 0, T0 + H) == pytest.approx(0.6)
    # Reads do not mutate: reading again at T0 gives the same.
    assert st.fill_rate(1, 0, T0) == pytest.approx(2 / 3)


def test_old_and_new_children_weighted_by_age() -> None:
    st = _stats()
    # One unfilled child one half-life ago, one fully filled child now.
    st.record_child(0, 100, 0, T0 - H, None, False, T0 - H)
    st.record_child(0, 100, 100, T0, T0 + 2_000_000, False, T0)
    # Weights at T0: 0.5 (old, 0 filled) and 1 (new, all filled).
    # fill rate = (0.5*0 + 1*1 + 2*0.5) / (1.5 + 2) = 2/3.5
    assert st.fill_rate(0, 0, T0) == pytest.approx(2 / 3.5)
    # ttf: only the filled child counts: (1*2 + 2*100) / (1 + 2) = 202/3
    assert st.mean_time_to_fill_ms(0, 0, T0) == pytest.approx(202 / 3)


def test_late_observation_gets_its_own_weight() -> None:
    st = _stats()
    st.record_child(0, 100, 100, T0, T0, False, T0)
    # Booked after the first but stamped one half-life earlier: weight 0.5.
    st.record_child(0, 100, 0, T0 - H, None, False, T0 - H)
    assert st.child_weight(0, 0, T0) == pytest.approx(1.5)
    assert st.fill_rate(0, 0, T0) == pytest.approx((1.0 + 1.0) / 3.5)


def test_rebase_keeps_sums_finite_over_many_half_lives() -> None:
    st = _stats(half_life_s=1.0)
    # 500 s = 500 half-lives: the forward-decay weights would reach 2**500
    # without rescaling. One fully filled child per second.
    for i in range(501):
        st.record_child(2, 10, 10, T0 + i * S, T0 + i * S + 1_000_000, False, T0 + i * S)
    now = T0 + 500 * S
    # Geometric series 1 + 1/2 + 1/4 + ... -> 2 children of weight.
    assert st.child_weight(2, 0, now) == pytest.approx(2.0)
    # fill rate = (2 + 2*0.5)/(2 + 2) = 0.75; ttf = (2*1 + 2*100)/(2 + 2) = 50.5
    assert st.fill_rate(2, 0, now) == pytest.approx(0.75)
    assert st.mean_time_to_fill_ms(2, 0, now) == pytest.approx(50.5)
    assert all(math.isfinite(x) for x in st.child_w.ravel())
    # Much later everything has decayed away: back to the prior.
    assert st.fill_rate(2, 0, now + 5000 * S) == pytest.approx(0.5)


def test_child_with_no_quantity_is_ignored() -> None:
    st = _stats()
    st.record_child(0, 0, 0, T0, None, False, T0)
    assert st.child_weight(0, 0, T0) == 0.0


def test_markout_sign_convention() -> None:
    st = _stats()
    mids = {0: 20004, 1: 20004}  # mid2: mid = 10002 ticks on both symbols
    # A buys 100 @ 10000 on XYZ; B sells 100 @ 10000 on QQQ.
    st.record_fill(0, 0, +1, 10000, 100, T0)
    st.record_fill(1, 1, -1, 10000, 100, T0)
    assert st.update_markouts(T0 + S - 1, mids.__getitem__) == 0  # not due yet
    assert st.update_markouts(T0 + S, mids.__getitem__) == 2  # the 1 s markouts
    # Buy then the mid rose: +1 * (10002 - 10000)/10000 * 1e4 = +2 bps (good).
    # Sell then the mid rose: -1 * (10002 - 10000)/10000 * 1e4 = -2 bps (adverse).
    # One markout of weight 1 next to the prior (0 bps, weight 2): x/3.
    assert st.markout_bps(0, 0, T0 + S) == pytest.approx(2.0 / 3)
    assert st.markout_bps(1, 0, T0 + S) == pytest.approx(-2.0 / 3)
    assert st.markout_weight(0, 0, T0 + S) == pytest.approx(1.0)
    # The 5 s markouts are still pending and horizon 1 reads the prior.
    assert st.markout_bps(0, 1, T0 + S) == 0.0
    assert st.pending_markouts(1) == 2
    mids[0] = 19998  # mid 9999: 1 * (9999 - 10000)/10000 * 1e4 = -1 bps
    assert st.update_markouts(T0 + 5 * S, mids.__getitem__) == 2
    assert st.markout_bps(0, 1, T0 + 5 * S) == pytest.approx(-1.0 / 3)
    assert st.markout_bps(1, 1, T0 + 5 * S) == pytest.approx(-2.0 / 3)


def test_markout_uses_exact_half_tick_mid() -> None:
    st = _stats()
    st.record_fill(0, 0, +1, 10001, 100, T0)
    # mid2 20001 -> mid 10000.5: (10000.5 - 10001)/10001 * 1e4 = -0.49995 bps
    st.update_markouts(T0 + S, lambda s: 20001)
    assert st.markout_bps(0, 0, T0 + S) == pytest.approx(-0.5 / 10001 * 1e4 / 3)


def test_markout_skipped_without_two_sided_mid() -> None:
    st = _stats()
    st.record_fill(0, 0, +1, 10000, 100, T0)
    assert st.update_markouts(T0 + 10 * S, lambda s: 0) == 0
    assert st.markouts_skipped == 2
    assert st.pending_markouts(0) == 0 and st.pending_markouts(1) == 0
    assert st.markout_weight(0, 0, T0 + 10 * S) == 0.0


def test_markout_ring_wraps_in_order() -> None:
    st = _stats(markout_capacity=4)
    seen: list[int] = []

    def mid2(s: int) -> int:
        seen.append(s)
        return 20000

    # Fills 0..2, resolve their 1 s markouts, then fills 3..5: the 1 s ring
    # (capacity 4) wraps past its end with no loss.
    for i in range(3):
        st.record_fill(0, i % 2, +1, 10000, 1, T0 + i * S // 10)
    assert st.update_markouts(T0 + S + 2 * S // 10, mid2) == 3
    for i in range(3, 6):
        st.record_fill(0, i % 2, +1, 10000, 1, T0 + i * S // 10)
    # Now due: the 1 s markouts of fills 3..5; the 5 s ring holds 0..5 but
    # has capacity 4, so fills 0 and 1 were dropped there (oldest first).
    assert st.markouts_dropped == 2
    assert st.update_markouts(T0 + S + 5 * S // 10, mid2) == 3
    assert st.update_markouts(T0 + 5 * S + 5 * S // 10, mid2) == 4
    # Symbols are looked up in fill order: 1 s of 0,1,2 then 3,4,5, then 5 s
    # of 2,3,4,5 (0 and 1 dropped).
    assert seen == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert st.markouts_resolved == 10
    # 1 s markouts booked at T0+1.2s (3) and T0+1.5s (3), read at T0+6s.
    assert st.markout_weight(0, 0, T0 + 6 * S) == pytest.approx(3 * 2 ** (-4.8 / 300) + 3 * 2 ** (-4.5 / 300))


def test_markouts_due_in_order_stop_at_first_not_due() -> None:
    st = _stats()
    for i in range(4):
        st.record_fill(0, 0, +1, 10000, 1, T0 + i * S)
    # At T0 + 2.5 s the 1 s markouts of the fills at T0 and T0+1s are due
    # (at T0+1s and T0+2s); the one of the fill at T0+2s is due at T0+3s.
    assert st.update_markouts(T0 + 2 * S + S // 2, lambda s: 20000) == 2
    assert st.pending_markouts(0) == 2
    assert st.pending_markouts(1) == 4
    assert MARKOUT_HORIZONS_NS == (S, 5 * S, S // 4)


def test_read_all_layout_matches_scalar_readers() -> None:
    st = _stats()
    st.record_child(1, 300, 150, T0, T0 + 3_000_000, True, T0)
    st.record_fill(1, 0, -1, 10000, 10, T0)
    st.update_markouts(T0 + S, lambda s: 19990)
    import numpy as np

    buf = np.zeros(3 * 7, dtype=np.float32)
    mv = buf.data.cast("B").cast("f")
    st.read_all(1, T0 + S, mv, 2, 7)
    for v in range(3):
        row = buf[2 + 7 * v: 2 + 7 * v + N_STATS]
        assert row[0] == pytest.approx(st.fill_rate(v, 1, T0 + S), rel=1e-6)
        assert row[1] == pytest.approx(st.mean_time_to_fill_ms(v, 1, T0 + S), rel=1e-6)
        assert row[2] == pytest.approx(st.partial_freq(v, 1, T0 + S), rel=1e-6)
        assert row[3] == pytest.approx(st.markout_bps(v, 0, T0 + S), rel=1e-6)
        assert row[4] == pytest.approx(st.markout_bps(v, 1, T0 + S), rel=1e-6)
    # Sell at 10000, mid 9995 after: -1 * (9995 - 10000)/10000*1e4 = +5 bps.
    assert st.markout_bps(1, 0, T0 + S) == pytest.approx(5.0 / 3)


def test_bad_parameters_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        _stats(half_life_s=0.0)
    with pytest.raises(ValueError, match="prior_weight"):
        _stats(prior_weight=0.0)
    with pytest.raises(ValueError, match="size_edges"):
        _stats(size_edges=(1000.0, 200.0))
    with pytest.raises(ValueError, match="markout_capacity"):
        _stats(markout_capacity=0)


def test_deterministic() -> None:
    def run() -> list[float]:
        st = _stats()
        for i in range(50):
            st.record_child(i % 3, 100 + 37 * i, (37 * i) % 150, T0 + i * S, T0 + i * S + i * 1000, i % 4 == 0,
                            T0 + i * S + S // 2)
            st.record_fill(i % 3, i % 2, 1 if i % 2 else -1, 10000 + i, 10, T0 + i * S)
            st.update_markouts(T0 + i * S, lambda s: 20000 + 2 * s)
        now = T0 + 60 * S
        return [st.fill_rate(v, b, now) for v in range(3) for b in range(3)] + [
            st.markout_bps(v, h, now) for v in range(3) for h in range(2)]

    assert run() == run()
