"""The RL planner: its state, its Q-model's contract, and the ML planner
building what the policy chose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.rl import design, export, fit
from router.domain.plan import Plan
from router.domain.types import TimeInForce
from router.features.catalogue import N_SHARED
from router.routing.factory import make_planner
from router.routing.ml import MLPlanner
from router.routing.rl import (
    ACTIONS,
    N_ACTIONS,
    NO_POOL_EDGE_BPS,
    STATE_DIM,
    QModel,
    QModelError,
    RLPolicy,
    manifest_path,
    state,
    with_actions,
)
from tests.unit.router.routing.test_planners import ALL, VENUES, FakeFeatures, FakeScorer, make_cfg, order, scores

DARK = [v.startswith("DARK") for v in VENUES]


def _q_model(tmp_path: Path, best: int) -> Path:
    """A Q-model fitted on synthetic experience where action ``best`` costs
    1 bps and every other 9, whatever the state."""
    rng = np.random.default_rng(0)
    states = [rng.normal(size=STATE_DIM).astype(np.float32) for _ in range(1200)]
    actions = [i % N_ACTIONS for i in range(1200)]
    y = np.array([1.0 if a == best else 9.0 for a in actions]) + rng.normal(0, 0.1, 1200)
    groups = [f"run{i % 8}" for i in range(1200)]
    x = design(states, actions)
    model, report = fit(x, y, groups)
    path = tmp_path / "q.onnx"
    parity = export(model, path, "rl-test", report, check=x[:200])
    assert parity < 1e-3
    return path


def test_state_summarises_the_models_view() -> None:
    feats = FakeFeatures(touch=(300, 100, 0, 0, 100)).out.copy()
    feats[0, :N_SHARED] = np.arange(N_SHARED)
    rows = scores([2.0, 3.0, 0.5, 1.0, 4.0], p=[1.0, 1.0, 0.6, 0.9, 1.0], markout=[0, 0, -1.5, -0.2, 0]).tolist()
    costs = [2.0, 3.0, 0.5, 1.0, 4.0]
    x = state(feats, rows, costs, DARK, 1000)
    assert x.shape == (STATE_DIM,)
    assert (x[:N_SHARED] == np.arange(N_SHARED)).all()
    best_lit, edge, fill, mark, cheap, touch = x[N_SHARED:].tolist()
    assert best_lit == 2.0 and edge == pytest.approx(1.5) and fill == pytest.approx(0.6)
    assert mark == pytest.approx(-1.5) and cheap == 2 and touch == pytest.approx(0.5)
    no_pool = state(feats, rows, costs, [False] * len(VENUES), 1000)
    assert no_pool[N_SHARED + 1] == NO_POOL_EDGE_BPS and no_pool[N_SHARED + 4] == 0


def test_with_actions_is_one_row_per_action() -> None:
    b = with_actions(np.ones(STATE_DIM, dtype=np.float32))
    assert b.shape == (N_ACTIONS, STATE_DIM + N_ACTIONS)
    assert (b[:, STATE_DIM:] == np.eye(N_ACTIONS)).all() and (b[:, :STATE_DIM] == 1).all()


@pytest.mark.parametrize("best", [1, 4])
def test_the_policy_takes_the_action_of_lowest_value(tmp_path: Path, best: int) -> None:
    q = QModel(_q_model(tmp_path, best))
    assert q.version == "rl-test"
    pol = RLPolicy(q)
    feats = FakeFeatures().out
    rows = scores([2.0, 3.0, 0.5, 1.0, 4.0]).tolist()
    got = pol.choose(feats, rows, [2.0, 3.0, 0.5, 1.0, 4.0], DARK, 1000)
    assert got is not None
    strategy, rest, values = got
    assert (strategy, rest) == ACTIONS[best] and int(np.argmin(values)) == best
    assert values[best] == pytest.approx(1.0, abs=0.5)


def test_a_q_model_off_its_contract_is_refused(tmp_path: Path) -> None:
    path = _q_model(tmp_path, 0)
    man = json.loads(manifest_path(path).read_text())
    manifest_path(path).write_text(json.dumps({**man, "actions": [["sweep", None]]}))
    with pytest.raises(QModelError, match="other state columns or actions"):
        QModel(path)
    manifest_path(path).write_text(json.dumps(man))
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(QModelError, match="sha256"):
        QModel(path)
    with pytest.raises(QModelError):
        QModel(tmp_path / "missing.onnx")


def _dark_first_rests(plan: Plan) -> set[int | None]:
    return {s.timeout_ms for s in plan.waves[0].slices if s.tif is TimeInForce.DAY}


def test_the_planner_builds_what_the_policy_chose(tmp_path: Path) -> None:
    cfg = make_cfg(dark_rest_ms=200)
    feats = FakeFeatures()
    sc = FakeScorer(scores([2.0, 3.0, 0.5, 1.0, 4.0]))  # a pool ranks first: the rules would say dark-first
    rules = MLPlanner(cfg, feats, sc).decide(order(), ALL)
    assert rules.strategy == "dark-first" and _dark_first_rests(rules.plan) == {200}
    assert rules.action_values is None
    for best in (4, 1):  # dark-first resting 200 ms... then the sweep's action
        pol = RLPolicy(QModel(_q_model(tmp_path / str(best), best)))
        d = MLPlanner(cfg, feats, sc, policy=pol).decide(order(), ALL)
        assert d.action_values is not None and int(np.argmin(d.action_values)) == best
        want, rest = ACTIONS[best]
        assert d.strategy in (want, "spray"), d.strategy  # a sweep with no book known is a spray
        if want == "dark-first":
            assert _dark_first_rests(d.plan) == {rest}
        else:
            assert not _dark_first_rests(d.plan), "no pool rests"
    # An OMS's request (tag 7001) still wins over the policy.
    asked = MLPlanner(cfg, feats, sc, policy=pol).decide(order(strategy="sequential"), ALL)
    assert asked.strategy == "sequential" and asked.action_values is None


def test_the_factory_builds_the_rl_planner_and_says_when_it_has_no_q_model(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import msgspec

    cfg = make_cfg(planner="rl")
    sc = FakeScorer(scores([2.0, 3.0, 0.5, 1.0, 4.0]))
    missing = msgspec.structs.replace(cfg, model=msgspec.structs.replace(cfg.model, rl_path=str(tmp_path / "no.onnx")))
    p = make_planner(missing, FakeFeatures(), sc)
    assert isinstance(p, MLPlanner)
    assert "routing by the ML planner's rules" in caplog.text
    assert p.decide(order(), ALL).strategy == "dark-first", "the rules"
    path = _q_model(tmp_path, 0)
    ok = msgspec.structs.replace(cfg, model=msgspec.structs.replace(cfg.model, rl_path=str(path)))
    d = make_planner(ok, FakeFeatures(), sc).decide(order(), ALL)
    assert d.strategy == "sequential" and d.action_values is not None



def test_with_no_pool_worth_resting_in_the_rules_decide(tmp_path: Path) -> None:
    pol = RLPolicy(QModel(_q_model(tmp_path, 4)))  # it would rest in the pools
    sc = FakeScorer(scores([2.0, 3.0, 5.0, 6.0, 4.0]))  # both pools dearer than LIT1
    d = MLPlanner(make_cfg(), FakeFeatures(), sc, policy=pol).decide(order(), ALL)
    rules = MLPlanner(make_cfg(), FakeFeatures(), sc).decide(order(), ALL)
    assert d.action_values is None and d.strategy == rules.strategy and d.plan == rules.plan
