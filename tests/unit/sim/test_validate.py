"""The validation gate (``sor model validate``) and exploration's cost:
off-policy estimates checked against the truth of a real run, the gate's
verdicts, its report files and its record in the registry."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec
import numpy as np
import pytest

from models.registry import Registry, run_cli
from router.config import LearningConfig
from router.features.catalogue import N_FEATURES
from sim.backtest import Backtest, mean_ci
from sim.journal_run import BacktestJournal
from sim.report import default_model_path, make_scorer, scenario_config
from sim.validate import explore_cost, greedy, latency_part, ope_part, sim_verdict, validate

SHIPPED = str(default_model_path())


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)


@pytest.mark.parametrize("scenario", ["calm", "toxic_dark"])
def test_off_policy_intervals_contain_the_true_cost_of_the_greedy_policy(scenario: str, tmp_path: Path) -> None:
    # Log an exploring run, estimate the greedy policy from it, then run
    # the greedy policy for real on the same seed: the truth.
    cfg = scenario_config(scenario)
    exploring = msgspec.structs.replace(cfg, learning=LearningConfig(explore_budget_bps=1.0, explore_max_prob=0.3))
    bt = Backtest(exploring, "ml", make_scorer(exploring, None), parents=1000, seed=1)
    jr = BacktestJournal(bt, tmp_path / "j.sqlite")
    bt.run()
    jr.close()
    ope = ope_part(str(tmp_path / "j.sqlite"), {"greedy": SHIPPED})
    g = greedy(cfg)
    truth = mean_ci([p.shortfall_bps() for p in Backtest(g, "ml", make_scorer(g, None), parents=1000, seed=1)
                     .run().parents])[0]
    m = ope["models"]["greedy"]
    assert ope["explored"] > 100 and 0.6 < m["agrees_with_logged"] < 0.9
    for est in ("ips", "snips", "dr"):
        assert m[est]["lo"] <= truth <= m[est]["hi"], (est, m[est], truth)


def test_sim_verdict_needs_one_better_and_no_worse() -> None:
    def row(v: str) -> dict[str, object]:
        return {"scenario": v, "verdict": v}

    assert sim_verdict([row("better"), row("no different")])[0]
    assert not sim_verdict([row("better"), row("worse")])[0]
    ok, why = sim_verdict([row("no different")])
    assert not ok and "on no scenario" in why


def test_a_model_against_itself_fails_the_gate_and_the_registry_keeps_the_verdict(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    m = reg.add(default_model_path().parent)
    rc = run_cli(["--registry", str(reg.root), "validate", m.version, "--against", SHIPPED, "--scenarios", "calm",
                  "--seeds", "1", "--parents", "120", "--out", str(tmp_path / "out")])
    assert rc == 1
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["passed"] is False and "on no scenario" in rep["simulation"]["why"]
    (row,) = rep["simulation"]["rows"]
    assert row["difference_bps"] == [0.0, 0.0, 0.0] and row["verdict"] == "no different"
    assert rep["journal"]["verdict"].startswith("skipped")
    assert (tmp_path / "out" / "report.png").stat().st_size > 1000
    assert "FAILED" in (tmp_path / "out" / "report.txt").read_text()
    gate = reg.manifest(m.version).validation["gate"]
    assert gate["passed"] is False and gate["against"] == rep["champion"]["version"]
    assert run_cli(["--registry", str(reg.root), "promote", m.version, "--to", "challenger"]) == 1


def test_latency_part_measures_against_the_budget() -> None:
    feats = np.zeros((10, 3, N_FEATURES), np.float32)
    ok = latency_part(SHIPPED, feats, 0, runs=300)
    assert ok["passed"] and 0 < ok["p50_us"] <= ok["p99_us"] and ok["venues"] == 3
    assert not latency_part(SHIPPED, feats, 1, runs=300)["passed"]


def test_exploration_cost_is_measured_paired(tmp_path: Path) -> None:
    (row,) = explore_cost(["calm"], seeds=(1,), parents=300)
    assert row["parents"] == 300 and 0.0 < row["explored_share"] < 0.2
    m, lo, hi = row["cost_bps"]
    assert lo <= m <= hi and abs(m) < 2.0


def test_a_journal_gives_the_gate_its_off_policy_part(tmp_path: Path) -> None:
    cfg = scenario_config("calm")
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=150, seed=4)
    jr = BacktestJournal(bt, tmp_path / "j.sqlite")
    bt.run()
    jr.close()
    rep = validate(SHIPPED, SHIPPED, scenarios=["calm"], seeds=(1,), parents=80, journal=str(tmp_path / "j.sqlite"))
    ope = rep["journal"]["ope"]
    assert ope["decisions"] > 100 and set(ope["models"]) == {"candidate", "champion"}
    assert rep["journal"]["passed"] in (True, None)
    assert ope["models"]["candidate"]["dr"] == ope["models"]["champion"]["dr"]
