"""The shipped RL planner in a backtest: it chooses, its choices are
journaled with their values, and a replay makes the same ones."""

from __future__ import annotations

import logging
from pathlib import Path

from router.journal import records
from router.journal.store import open_store
from router.replay import replay
from router.routing.rl import ACTIONS
from sim.backtest import Backtest
from sim.journal_run import BacktestJournal
from sim.report import make_scorer, scenario_config


def test_the_shipped_rl_planner_chooses_journals_and_replays(tmp_path: Path) -> None:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    cfg = scenario_config("toxic_dark")
    bt = Backtest(cfg, "rl", make_scorer(cfg, None), parents=60, seed=1)
    jr = BacktestJournal(bt, tmp_path / "j.db")
    run = bt.run()
    jr.close()
    assert len(run.parents) == 60
    store = open_store(tmp_path / "j.db", readonly=True)
    try:
        (info,) = list(store.sessions())
        decisions = [records.decode_decision(st.decision) for st in records.steps(list(store.records(info.session_id)))
                     if st.decision is not None]
    finally:
        store.close()
    chosen = [d for d in decisions if d.action_values is not None]
    assert len(chosen) > 30, "a market with pools: the policy chooses most parents"
    strategies = {a[0] for a in ACTIONS}
    assert all(d.strategy in strategies | {"spray"} and len(d.action_values) == len(ACTIONS) for d in chosen)
    rep = replay(tmp_path / "j.db")
    assert rep.decisions == len(decisions) and rep.decisions_differ == 0, rep.strategy_moves


def test_experience_has_every_parent_with_a_random_action() -> None:
    from router.routing.rl import N_ACTIONS, STATE_DIM
    from sim.rl_collect import collect

    logging.getLogger("sor.risk").setLevel(logging.ERROR)
    exp = collect(["calm"], [101], parents=40)
    assert len(exp.actions) == len(exp.states) == len(exp.shortfalls) == 40
    assert set(exp.groups) == {"calm:101"} and all(s.shape == (STATE_DIM,) for s in exp.states)
    assert all(0 <= a < N_ACTIONS for a in exp.actions) and len(set(exp.actions)) >= 4, "uniform draws"
    again = collect(["calm"], [101], parents=40)
    assert again.actions == exp.actions and again.shortfalls == exp.shortfalls, "reproducible for a seed"
