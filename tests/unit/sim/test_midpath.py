from __future__ import annotations

import numpy as np
import pytest

from sim.midpath import _CHUNK_STEPS, MidPath

EPOCH = 1_700_000_000_000_000_000
STEP = 1_000_000  # 1 ms


def _path(seed: int = 7, vol: float = 2.0, start: int = 10_000) -> MidPath:
    return MidPath(seed=seed, start_ticks=start, step_ns=STEP, vol_ticks=vol, epoch_ns=EPOCH)


def test_before_and_at_epoch_is_start() -> None:
    p = _path()
    assert p.mid_at(EPOCH - 5 * STEP) == 10_000
    assert p.mid_at(EPOCH) == 10_000
    assert p.mid_at(EPOCH + STEP - 1) == 10_000


def test_matches_reference_sum_across_chunk_boundaries() -> None:
    seed, vol, start = 3, 1.5, 5_000
    chunks = [
        np.rint(np.random.default_rng([seed, k]).normal(0.0, vol, _CHUNK_STEPS)).astype(np.int64)
        for k in range(3)
    ]
    increments = np.concatenate(chunks)
    p = _path(seed=seed, vol=vol, start=start)
    for n in (1, 2, _CHUNK_STEPS - 1, _CHUNK_STEPS, _CHUNK_STEPS + 1, 2 * _CHUNK_STEPS + 17):
        assert p.mid_at(EPOCH + n * STEP) == start + int(increments[:n].sum()), n
    # Inside a step the mid does not move.
    assert p.mid_at(EPOCH + 5 * STEP + STEP // 2) == p.mid_at(EPOCH + 5 * STEP)


def test_two_instances_agree_regardless_of_query_order() -> None:
    times = [EPOCH + n * STEP for n in (0, 3, 999, 4_095, 4_096, 50_000, 123_457, 1_000_003)]
    forward = _path()
    backward = _path()
    a = [forward.mid_at(t) for t in times]
    b = [backward.mid_at(t) for t in reversed(times)][::-1]
    assert a == b
    # A third instance asked only for the far point still agrees.
    assert _path().mid_at(times[-1]) == a[-1]


def test_seed_changes_path_and_zero_vol_is_flat() -> None:
    t = EPOCH + 10_000 * STEP
    assert _path(seed=1).mid_at(t) != _path(seed=2).mid_at(t)
    assert _path(vol=0.0).mid_at(t) == 10_000


def test_floor_keeps_mid_positive() -> None:
    p = MidPath(seed=11, start_ticks=12, step_ns=STEP, vol_ticks=5.0, epoch_ns=EPOCH)
    mids = [p.mid_at(EPOCH + n * STEP) for n in range(0, 20_000, 7)]
    assert min(mids) == 10
    assert all(m >= 10 for m in mids)


def test_far_query_uses_chunked_numpy() -> None:
    # Ten million steps: must come back quickly (no per-step python loop).
    p = _path()
    far = p.mid_at(EPOCH + 10_000_000 * STEP)
    assert isinstance(far, int)
    assert far == _path().mid_at(EPOCH + 10_000_000 * STEP)


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError):
        MidPath(seed=-1, start_ticks=100, step_ns=STEP, vol_ticks=1.0, epoch_ns=EPOCH)
    with pytest.raises(ValueError):
        MidPath(seed=1, start_ticks=100, step_ns=0, vol_ticks=1.0, epoch_ns=EPOCH)
    with pytest.raises(ValueError):
        MidPath(seed=1, start_ticks=100, step_ns=STEP, vol_ticks=-1.0, epoch_ns=EPOCH)
