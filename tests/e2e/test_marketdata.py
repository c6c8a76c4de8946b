"""Market data over FIX into the daemon's rings: within a second of the
venue sessions coming up the router holds every lit venue's book, and the
book follows the simulator's moving mid."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from sim.config import SimClusterConfig
from sim.harness import Cluster, localize, poll_until
from sim.venue import mid_path

LIT = ("LIT1", "LIT2")


@pytest.fixture
def live_cluster(default_config: SimClusterConfig, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(localize(default_config, tmp_path), tmp_path)
    c.start(timeout_s=60)
    yield c
    assert c.stop()["daemon"] == 0


def _mids(cluster: Cluster) -> dict[tuple[str, str], float]:
    m = cluster.metrics()
    return {(v, s.symbol): m.get(f'sor_md_mid{{symbol="{s.symbol}",venue="{v}"}}', 0.0)
            for v in LIT for s in cluster.cfg.symbols}


def test_rings_hold_the_books_within_a_second_and_follow_the_mid(live_cluster: Cluster) -> None:
    cfg = live_cluster.cfg
    assert poll_until(lambda: all(_mids(live_cluster).values()), 1.0), \
        f"books not in the rings 1 s after logon: {_mids(live_cluster)}"

    paths = {s.symbol: mid_path(cfg, s, cfg.sim.epoch_ns) for s in cfg.symbols}
    ticks = {s.symbol: Decimal(s.tick_size) for s in cfg.symbols}
    seen: dict[tuple[str, str], set[float]] = {k: set() for k in _mids(live_cluster)}
    samples = 0

    def sample() -> bool:
        nonlocal samples
        t_before = time.time_ns()
        mids = _mids(live_cluster)
        t_after = time.time_ns()
        for (venue, symbol), got in mids.items():
            # The sim mid at any moment from one mid step before the scrape
            # to its end: the book is requoted every 50 ms and published
            # within 10 ms, and background takers can eat one level.
            step = cfg.sim.mid_step_ms * 1_000_000
            candidates = {float(paths[symbol].mid_at(t) * ticks[symbol])
                          for t in range(t_before - 2 * step, t_after + 1, step // 4)}
            tol = 2 * float(ticks[symbol])
            assert min(abs(got - c) for c in candidates) <= tol, (venue, symbol, got, sorted(candidates))
            seen[(venue, symbol)].add(got)
        samples += 1
        return False  # keep sampling until the window closes

    poll_until(sample, timeout_s=4.0, interval_s=0.2)
    assert samples >= 5
    # It really moved: the rings follow the mid rather than a frozen book.
    assert any(len(v) > 1 for v in seen.values()), seen
    m = live_cluster.metrics()
    for v in LIT:
        assert m[f'sor_md_updates_total{{venue="{v}"}}'] > 10
        for s in cfg.symbols:
            assert m[f'sor_md_staleness_seconds{{symbol="{s.symbol}",venue="{v}"}}'] < 1.0
