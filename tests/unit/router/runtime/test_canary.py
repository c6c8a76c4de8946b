"""The canary's automatic rollback (``router.runtime.canary``), on the
router's own engine in the backtest: a deliberately bad challenger on a
canary share is rolled back by the rule, the champion takes every parent
after, and no parent is lost; a challenger as good as the champion is not.
The rule itself at the edge: just over the bound and just inside it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

from router.config import LearningConfig
from router.domain.events import ModelsChanged
from router.runtime.canary import Arm, CanaryMonitor, excess_bound
from sim.backtest import Backtest
from sim.report import make_scorer, scenario_config
from tests.bad_model import inverted_model


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("sor.risk").setLevel(logging.ERROR)


def _arm(values: list[float]) -> Arm:
    a = Arm()
    for v in values:
        a.add(v)
    return a


def test_the_bound_is_welch_at_z() -> None:
    can, champ = _arm([3.0, 5.0] * 50), _arm([1.0, 3.0] * 50)
    # difference 2, se sqrt(2 * (1.01/100)) = 0.1421
    assert abs(excess_bound(can, champ, 2.0) - (2.0 - 2.0 * (2 * 1.0101 / 100) ** 0.5)) < 1e-3


def _run(challenger: Any, scenario: str = "toxic_dark", parents: int = 600, fraction: float = 0.5,
         **canary: Any) -> tuple[Backtest, list[Any], list[ModelsChanged]]:
    cfg = scenario_config(scenario)
    r = msgspec.structs.replace
    cfg = r(cfg, learning=LearningConfig(explore_budget_bps=0.0),
            model=r(cfg.model, canary=r(cfg.model.canary, **canary)))
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=parents, seed=3)
    mon = CanaryMonitor(bt.cfg, bt.metrics, bt.engine, lambda: bt.now)
    handle = bt.engine.handle
    decisions: list[Any] = []
    changes: list[ModelsChanged] = []

    def observed(ev: Any) -> Any:
        step = handle(ev)
        if step.decision is not None:
            decisions.append(step.decision)
        change = mon.observe(step)
        if change is not None:
            changes.append(change)
            handle(change)
        return step

    bt.engine.handle = observed  # type: ignore[method-assign]
    planner: Any = bt.engine.planner
    planner.stage(challenger)
    champion = planner.model_version
    bt.at(bt.now + 1, bt._handle, ModelsChanged(champion=champion, challenger=challenger.version, mode="canary",
                                            fraction=fraction, who="test", ts_ns=bt.now + 1))
    bt.run()
    return bt, decisions, changes


def test_a_bad_canary_is_rolled_back_and_the_champion_takes_every_order_again(tmp_path: Path) -> None:
    cfg = scenario_config("toxic_dark")
    bad = make_scorer(cfg, str(inverted_model(tmp_path / "bad")))
    bt, decisions, changes = _run(bad)
    assert len(changes) == 1
    ch = changes[0]
    assert ch.who == "auto-rollback" and ch.challenger is None and "rolled back: canary shortfall" in ch.reason
    at = next(i for i, d in enumerate(decisions) if d.ts_ns >= ch.ts_ns)
    before, after = decisions[:at], decisions[at:]
    assert sum(d.role == "challenger" for d in before) >= 50
    assert after and all(d.role == "champion" and d.model_version != bad.version for d in after)
    assert bt.engine.planner.state()["mode"] == "off"  # type: ignore[attr-defined]
    assert len(bt.results) == 600 and all(r.done_ns is not None for r in bt.results.values()), "no parent lost"
    assert bt.metrics.registry.get_sample_value("sor_model_rollbacks_total", {"reason": "shortfall"}) == 1
    assert bt.engine.controls.actions[-1].who == "auto-rollback"


def test_a_canary_as_good_as_the_champion_stays(tmp_path: Path) -> None:
    cfg = scenario_config("toxic_dark")
    bt, decisions, changes = _run(_Renamed(make_scorer(cfg, None), "twin-1"))
    assert changes == []
    assert sum(d.role == "challenger" for d in decisions) > 200
    assert all(r.done_ns is not None for r in bt.results.values())


def test_the_fallback_rule(tmp_path: Path) -> None:
    cfg = scenario_config("calm")
    broken = _Failing(make_scorer(cfg, None))
    _, _, changes = _run(broken, scenario="calm", parents=300, min_parents=30)
    assert len(changes) == 1 and "could not be scored" in changes[0].reason


class _Renamed:
    """The champion's own scorer under another version: a challenger that
    routes exactly as the champion does."""

    def __init__(self, inner: Any, version: str) -> None:
        self._inner = inner
        self.version = version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Failing(_Renamed):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner, "broken-1")
        self.last_failure: str | None = "error"

    def score(self, features: Any) -> Any:
        return None
