"""Champion and challenger in the planner (``router.routing.models``) and
in the engine (``ModelsChanged``): shadow decisions ride along and are
never acted on, the canary split follows the ClOrdID hash, and a version
that was not loaded is refused with nothing changed."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry

from router.domain.events import ModelsChanged
from router.domain.orders import ParentOrder
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Engine
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.routing.models import ModelRouter
from tests.unit.router.routing.test_planners import ALL, VENUES, FakeFeatures, FakeScorer, make_cfg, scores


class Named(FakeScorer):
    def __init__(self, version: str, cost: list[float]) -> None:
        super().__init__(scores(cost, p=1.0))
        self.version = version


CHAMP = Named("champ-1", [1.0, 2.0, 3.0, 4.0, 5.0])  # LIT1 cheapest
CHAL = Named("chal-1", [5.0, 1.0, 3.0, 4.0, 2.0])  # LIT2 cheapest


def _router(clock: bool = False) -> ModelRouter:
    ticks = iter(range(0, 10**12, 1000))
    return ModelRouter(make_cfg(), FakeFeatures(touch=(5000, 5000, 0, 0, 5000)), CHAMP,
                       clock_ns=(lambda: next(ticks)) if clock else None)


def _order(i: int) -> ParentOrder:
    return ParentOrder(order_id=f"P{i}", session="OMS", cl_ord_id=f"c{i}", symbol="AAPL", side=Side.BUY, qty=1000,
                       ord_type=OrdType.LIMIT, price_ticks=19000, tif=TimeInForce.DAY, arrival_ns=5_000)


def _change(challenger: str | None, mode: str, fraction: float = 0.0, champion: str = "champ-1") -> ModelsChanged:
    return ModelsChanged(champion=champion, challenger=challenger, mode=mode, fraction=fraction,  # type: ignore[arg-type]
                         who="test", ts_ns=1)


def test_alone_the_champion_decides() -> None:
    r = _router()
    d = r.decide(_order(1), ALL)
    assert d.model_version == "champ-1" and d.role == "champion" and d.shadow is None and d.ranking[0] == "LIT1"


def test_shadow_rides_along_and_is_never_acted_on() -> None:
    r = _router(clock=True)
    r.stage(CHAL)
    assert r.apply_models(_change("chal-1", "shadow")) is None
    d = r.decide(_order(1), ALL)
    assert d.model_version == "champ-1" and d.ranking[0] == "LIT1" and d.plan.waves[0].slices[0].venue == "LIT1"
    assert d.shadow is not None and d.shadow.model_version == "chal-1" and d.shadow.ranking[0] == "LIT2"
    assert d.shadow.features is None and d.shadow.role == "challenger"
    assert any(stage == "shadow" and ns > 0 for stage, ns in d.stages_ns)


def test_the_canary_takes_its_fraction_by_clordid_hash() -> None:
    r = _router()
    r.stage(CHAL)
    assert r.apply_models(_change("chal-1", "canary", 0.2)) is None
    n = 3000
    roles = [r.decide(_order(i), ALL) for i in range(n)]
    canary = [d for d in roles if d.role == "challenger"]
    assert all(d.model_version == "chal-1" and d.ranking[0] == "LIT2" for d in canary)
    assert all(d.model_version == "champ-1" for d in roles if d.role == "champion")
    sd = math.sqrt(n * 0.2 * 0.8)
    assert abs(len(canary) - 0.2 * n) < 5 * sd
    again = [r.decide(_order(i), ALL).role for i in range(n)]
    assert again == [d.role for d in roles], "reproducible"


def test_unknown_versions_and_bad_changes_are_refused_with_nothing_changed() -> None:
    r = _router()
    assert "not loaded" in (r.apply_models(_change("chal-9", "shadow")) or "")
    assert "needs a challenger" in (r.apply_models(_change(None, "canary", 0.1)) or "")
    assert "not in [0, 1]" in (r.apply_models(_change("champ-1", "canary", 1.5)) or "")
    assert r.state() == {"champion": "champ-1", "challenger": None, "mode": "off", "fraction": 0.0}


def test_promote_and_rollback() -> None:
    r = _router()
    r.stage(CHAL)
    assert r.apply_models(_change("chal-1", "canary", 0.5)) is None
    assert r.apply_models(_change(None, "off", champion="chal-1")) is None
    assert r.state()["champion"] == "chal-1" and r.challenger is None
    assert r.decide(_order(1), ALL).ranking[0] == "LIT2"
    assert r.staged() == ["chal-1"], "the old champion's session is released"
    assert "not loaded" in (r.apply_models(_change(None, "off", champion="champ-1")) or "")


def test_the_engine_applies_and_records_a_model_change() -> None:
    cfg = make_cfg()
    m = Metrics(list(VENUES), CollectorRegistry())
    r = _router()
    eng = Engine(cfg, r, m, "T")
    r.stage(CHAL)
    eng.handle(_change("chal-1", "canary", 0.25))
    act = eng.controls.actions[-1]
    assert act.ok and act.action == "model" and "challenger chal-1 in canary on 25%" in act.text
    assert m.registry.get_sample_value("sor_model_challenger", {"version": "chal-1", "mode": "canary"}) == 0.25
    eng.handle(_change("chal-9", "shadow"))
    assert not eng.controls.actions[-1].ok and "not loaded" in eng.controls.actions[-1].text
    assert r.challenger_version == "chal-1"


def test_a_planner_without_models_refuses() -> None:
    cfg = make_cfg(planner="static")
    eng = Engine(cfg, StaticWaterfall(cfg), Metrics(list(VENUES), CollectorRegistry()), "T")
    eng.handle(_change("x", "shadow"))
    assert not eng.controls.actions[-1].ok and "without models" in eng.controls.actions[-1].text


def test_shadow_decisions_survive_the_journal_encoding() -> None:
    from router.journal.records import decode_decision, encode

    r = _router()
    r.stage(CHAL)
    r.apply_models(_change("chal-1", "shadow"))
    d = r.decide(_order(3), ALL)
    back = decode_decision(encode(d))
    assert back.shadow is not None and back.shadow.model_version == "chal-1"
    assert back.shadow.ranking == d.shadow.ranking if d.shadow else False
    assert back.features is not None and d.features is not None and np.array_equal(back.features, d.features)
