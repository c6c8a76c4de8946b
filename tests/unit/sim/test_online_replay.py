"""The online learners are engine state: a journaled run with them on
replays to the same decisions and commands, and a restored engine's
learners are the crashed one's."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec

from router.replay import replay
from sim.backtest import Backtest
from sim.journal_run import BacktestJournal
from sim.report import make_scorer, scenario_config


def test_a_run_with_the_learners_replays_exactly(tmp_path: Path) -> None:
    cfg = scenario_config("swap_pools")
    # Sensitive settings, so the short run sees alarms and censored splits.
    cfg = msgspec.structs.replace(cfg, learning=msgspec.structs.replace(
        cfg.learning, change_detect=True, change_threshold_sd=4.0, dark_split="censored",
        explore_uncertainty_bps=1.0))
    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=300, seed=2)  # the swap falls at parent ~221
    jr = BacktestJournal(bt, tmp_path / "j.db")
    bt.run()
    jr.close()
    st = bt.stats
    assert st.detector is not None and st.liquidity is not None
    assert st.changes > 0, "the run must exercise the detector"
    assert st.liquidity.observations.sum() > 0
    rep = replay(tmp_path / "j.db")
    assert rep.decisions > 250
    assert rep.decisions_differ == 0, rep.strategy_moves
    assert rep.commands_differ == 0, rep.first_differences
