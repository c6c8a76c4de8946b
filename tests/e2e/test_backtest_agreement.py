"""The backtest and the real daemon agree.

The same scenario and parents go once through ``sim.backtest`` (the daemon's
engine, planner, features and scorer on a simulated clock) and once through
the daemon over FIX to the sim venues in wall-clock time. Their mean
shortfalls must agree within the 95% intervals; the fill rates too. The calm
scenario is used: its benchmark mid is the same in both runs (no pool
leaks, so the venues' mid is the seeded path the OMS process computes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.backtest import Backtest, summarize
from sim.report import make_scorer, scenario_config
from sim.scenario_run import run_live

pytestmark = pytest.mark.e2e

PARENTS = 80


@pytest.mark.parametrize("policy", ["ml", "static"])
def test_daemon_agrees_with_backtest(tmp_path: Path, policy: str) -> None:
    cfg = scenario_config("calm")
    scorer = make_scorer(cfg, None) if policy == "ml" else None
    bt = summarize(Backtest(cfg, policy, scorer, parents=PARENTS).run())
    live = summarize(run_live(cfg, policy, PARENTS, tmp_path))
    print(f"\n{policy}: backtest shortfall {bt['shortfall_bps']}, daemon {live['shortfall_bps']}; "
          f"fill {bt['fill_rate']} vs {live['fill_rate']}")
    m_b, lo_b, hi_b = bt["shortfall_bps"]
    m_l, lo_l, hi_l = live["shortfall_bps"]
    # The difference of the means is within the combined interval (the two
    # runs see different random markets), at 99.9% rather than 95%: a 95%
    # test fails one run in twenty when both agree, and did in CI (static:
    # 9.14 backtest against 10.65 daemon, where three quiet runs read 9.02,
    # 9.08 and 9.43). A router that disagreed with its backtest would be off
    # by far more than the wider bound (the policies differ by 6 bps here).
    z_ratio = 3.29 / 1.96
    half = z_ratio * ((hi_b - lo_b) ** 2 + (hi_l - lo_l) ** 2) ** 0.5 / 2
    assert abs(m_b - m_l) <= half, (bt["shortfall_bps"], live["shortfall_bps"])
    assert abs(bt["fill_rate"][0] - live["fill_rate"][0]) <= 0.05
