"""The discrete-event backtest: the parent stream, determinism, the quantity
invariants of the router's engine under it, the shortfall arithmetic and the
ML policy through the real ONNX scorer."""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec
import pytest

from router.domain.types import OrdStatus, Side, TimeInForce, Urgency
from sim.backtest import EPOCH_NS, Backtest, ParentResult, ParentSpec, RunResult, mean_ci, parent_stream
from sim.config import SimClusterConfig
from sim.report import make_scorer, scenario_config


@pytest.fixture(scope="module")
def calm() -> SimClusterConfig:
    return scenario_config("calm")


def _with_flow_seed(cfg: SimClusterConfig, seed: int) -> SimClusterConfig:
    assert cfg.scenario is not None
    flow = msgspec.structs.replace(cfg.scenario.flow, seed=seed)
    return msgspec.structs.replace(cfg, scenario=msgspec.structs.replace(cfg.scenario, flow=flow))


# ----------------------------------------------------------- parent stream


@pytest.mark.parametrize("name", ["calm", "thin"])
def test_parent_stream_is_pure_and_well_formed(name: str) -> None:
    cfg = scenario_config(name)
    assert cfg.scenario is not None
    fl = cfg.scenario.flow
    a = parent_stream(cfg, 200)
    assert a == parent_stream(cfg, 200)
    assert a == parent_stream(scenario_config(name), 200)  # a fresh load: same list
    assert parent_stream(cfg, 50) == a[:50]
    assert len(parent_stream(cfg)) == fl.parents
    lot = cfg.symbol("XYZ").lot_size
    for s in a:
        assert s.qty % lot == 0
        assert fl.qty_min <= s.qty <= fl.qty_max
        assert s.symbol == "XYZ"
        assert s.tif is TimeInForce.IOC
    assert [s.cl_ord_id for s in a] == [f"P{i + 1}" for i in range(200)]
    ats = [s.at_ns for s in a]
    assert ats == sorted(ats) and ats[0] > 0
    # Not degenerate: both sides, many sizes, gaps around the configured mean.
    assert {s.side for s in a} == {Side.BUY, Side.SELL}
    assert len({s.qty for s in a}) > 5
    mean_gap_ms = ats[-1] / len(a) / 1e6
    assert 0.6 * fl.interval_ms < mean_gap_ms < 1.5 * fl.interval_ms


def test_parent_stream_depends_on_flow_seed(calm: SimClusterConfig) -> None:
    assert calm.scenario is not None
    a = parent_stream(calm, 100)
    b = parent_stream(_with_flow_seed(calm, calm.scenario.flow.seed + 1), 100)
    assert a != b
    assert [s.qty for s in a] != [s.qty for s in b]
    # The venues' seed does not move the flow.
    other_sim = msgspec.structs.replace(calm, sim=msgspec.structs.replace(calm.sim, seed=calm.sim.seed + 1))
    assert parent_stream(other_sim, 100) == a


def test_parent_stream_urgency_mix_moves_no_other_draw(calm: SimClusterConfig) -> None:
    assert calm.scenario is not None
    plain = parent_stream(calm, 400)
    assert {s.urgency for s in plain} == {Urgency.NORMAL}, "no mix: every parent asks for normal, IOC or not"
    flow = msgspec.structs.replace(calm.scenario.flow, low_prob=0.2, high_prob=0.3)
    mixed_cfg = msgspec.structs.replace(calm, scenario=msgspec.structs.replace(calm.scenario, flow=flow))
    mixed = parent_stream(mixed_cfg, 400)
    assert mixed == parent_stream(mixed_cfg, 400) and parent_stream(mixed_cfg, 50) == mixed[:50]
    def terms(specs: list[ParentSpec]) -> list[tuple[object, ...]]:
        return [(s.at_ns, s.cl_ord_id, s.symbol, s.side, s.qty, s.tif) for s in specs]

    assert terms(mixed) == terms(plain), "the urgency draws come from a stream of their own"
    share = {u: sum(s.urgency is u for s in mixed) / len(mixed) for u in Urgency}
    assert share[Urgency.LOW] == pytest.approx(0.2, abs=0.06) and share[Urgency.HIGH] == pytest.approx(0.3, abs=0.06)


# ------------------------------------------------------------- the run


def _run(cfg: SimClusterConfig, policy: str = "static", parents: int = 40,
         seed: int | None = None) -> tuple[Backtest, RunResult]:
    bt = Backtest(cfg, policy, parents=parents, seed=seed)
    return bt, bt.run()


def test_small_static_run_terminates_every_parent(calm: SimClusterConfig) -> None:
    bt, run = _run(calm)
    assert (run.scenario, run.policy, run.fallbacks) == ("calm", "static", 0)
    assert [p.cl_ord_id for p in run.parents] == [s.cl_ord_id for s in bt.specs]
    assert len(run.parents) == 40
    for p in run.parents:
        assert p.done_ns is not None and p.done_ns >= p.arrival_ns, p.cl_ord_id
        assert 0.0 <= p.fill_rate <= 1.0
        assert math.isfinite(p.shortfall_bps())
        assert p.plan == "static"
        assert p.arrival_ns >= EPOCH_NS
    assert len(bt.engine.parents) == 40
    assert all(po.is_terminal for po in bt.engine.parents.values())
    assert all(c.is_terminal for c in bt.engine.children.values())
    # The market is liquid and limits are 12 ticks through: most of it fills.
    assert sum(p.filled for p in run.parents) > 0.5 * sum(p.qty for p in run.parents)


def test_same_seed_same_results_other_seed_different(calm: SimClusterConfig) -> None:
    bt_a, a = _run(calm, seed=5)
    _, b = _run(calm, seed=5)
    bt_c, c = _run(calm, seed=6)
    # The seed moves the venues' random streams too, not only the flow.
    ts = range(EPOCH_NS, EPOCH_NS + 10_000_000_000, 100_000_000)
    assert [bt_a.market.fair_mid_at("XYZ", t) for t in ts] != [bt_c.market.fair_mid_at("XYZ", t) for t in ts]
    assert a.parents == b.parents
    assert [p.shortfall_bps() for p in a.parents] == [p.shortfall_bps() for p in b.parents]
    assert a.parents != c.parents
    assert [(p.qty, p.side) for p in a.parents] != [(p.qty, p.side) for p in c.parents]


def test_no_seed_is_deterministic_too(calm: SimClusterConfig) -> None:
    _, a = _run(calm, parents=15)
    _, b = _run(calm, parents=15)
    assert a.parents == b.parents


# ------------------------------------------------------ quantity invariants


def _watch_in_flight(bt: Backtest, every_ns: int, violations: list[str]) -> Callable[[], None]:
    """A clock event that checks, between events, that no parent's open
    children sum above its leaves, and reschedules itself."""

    def check() -> None:
        eng = bt.engine
        for po in eng.parents.values():
            if po.is_terminal:
                continue
            open_qty = sum(eng.children[c].open_qty for c in po.children)
            if open_qty > po.leaves_qty or po.cum_qty > po.qty:
                violations.append(f"{po.cl_ord_id} at {bt.now}: open {open_qty} leaves {po.leaves_qty}")
        bt.at(bt.now + every_ns, check)

    return check


@pytest.mark.parametrize("name", ["calm", "toxic_dark", "thin"])
def test_quantity_invariants_hold_in_backtest(name: str) -> None:
    cfg = scenario_config(name)
    bt = Backtest(cfg, "static", parents=40)
    violations: list[str] = []
    bt.at(EPOCH_NS, _watch_in_flight(bt, 2_000_000, violations))
    run = bt.run()
    assert violations == []
    by_cl = {po.cl_ord_id: po for po in bt.engine.parents.values()}
    assert len(run.parents) == 40
    for p in run.parents:
        assert p.done_ns is not None, p.cl_ord_id
        filled = sum(q for _, _, q, _ in p.fills)
        assert filled == p.filled <= p.qty, p.cl_ord_id
        assert p.notional_ticks == sum(q * px for _, _, q, px in p.fills)
        po = by_cl[p.cl_ord_id]
        kids = [bt.engine.children[c] for c in po.children]
        assert kids, p.cl_ord_id
        assert all(k.parent_id == po.order_id for k in kids)
        assert sum(k.cum_qty for k in kids) == po.cum_qty == p.filled
        assert sum(k.open_qty for k in kids) <= po.leaves_qty
        assert all(k.cum_qty <= k.qty for k in kids)
        assert po.is_terminal
        if p.filled < p.qty:
            # An IOC parent the market could not fill ends canceled, its end
            # mid taken when it did.
            assert po.state is OrdStatus.CANCELED
            assert p.end_mid > 0
        # What the venues filled, per child, is what the OMS heard about.
        for k in kids:
            assert sum(q for _, q, _ in bt.children[k.child_id].fills) == k.cum_qty, k.child_id
    if name == "thin":
        # Thin books leave some parents short: the partial-fill path ran.
        assert any(p.filled < p.qty for p in run.parents)


# -------------------------------------------------------------- shortfall


def test_shortfall_bps_arithmetic() -> None:
    m0, tick_fee = 2000, 0.5
    # Buy 200: 100 filled one tick through the arrival mid plus a fee; the
    # unfilled 100 are charged the move to the end mid (+3) plus one tick.
    p = ParentResult(cl_ord_id="P1", symbol="XYZ", side=1, qty=200, arrival_ns=0, arrival_mid=m0,
                     filled=100, notional_ticks=100 * (m0 + 1), fees_ticks=tick_fee, end_mid=m0 + 3)
    expected = (100 * 1 + tick_fee + 100 * (3 + 1)) / (200 * m0) * 1e4
    assert p.shortfall_bps() == pytest.approx(expected)
    assert p.shortfall_bps(tick_penalty=0) == pytest.approx((100 + tick_fee + 300) / (200 * m0) * 1e4)
    assert p.fill_rate == 0.5

    full = msgspec.structs.replace(p, qty=100, end_mid=m0 + 50)  # all filled: the end mid is irrelevant
    assert full.shortfall_bps() == pytest.approx((100 + tick_fee) / (100 * m0) * 1e4)

    # A sell filled one tick below the mid pays; the mid falling on the
    # unfilled part costs a seller too.
    s = ParentResult(cl_ord_id="P2", symbol="XYZ", side=-1, qty=200, arrival_ns=0, arrival_mid=m0,
                     filled=100, notional_ticks=100 * (m0 - 1), fees_ticks=0.0, end_mid=m0 - 2)
    assert s.shortfall_bps() == pytest.approx((100 * 1 + 100 * (2 + 1)) / (200 * m0) * 1e4)
    # Price improvement is negative shortfall.
    better = ParentResult(cl_ord_id="P3", symbol="XYZ", side=1, qty=100, arrival_ns=0, arrival_mid=m0,
                          filled=100, notional_ticks=100 * (m0 - 2))
    assert better.shortfall_bps() == pytest.approx(-2 / m0 * 1e4)


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_known_values() -> None:
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(sum((x - 2.5) ** 2 for x in (1, 2, 3, 4)) / 3)
    half = 1.96 * std / math.sqrt(4)
    assert m == pytest.approx(2.5)
    assert (lo, hi) == (pytest.approx(2.5 - half), pytest.approx(2.5 + half))
    assert m - lo == pytest.approx(hi - m)
    assert mean_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert mean_ci([7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(x) for x in mean_ci([]))


# ---------------------------------------------------------------- policies


def test_ml_policy_runs_through_real_scorer(calm: SimClusterConfig) -> None:
    bt = Backtest(calm, "ml", make_scorer(calm, None), parents=30)
    run = bt.run()
    assert len(run.parents) == 30
    assert run.fallbacks == 0
    assert run.model_version
    assert all(p.plan.startswith("ml:") for p in run.parents), {p.plan for p in run.parents}
    assert all(p.done_ns is not None for p in run.parents)


def test_ml_policy_without_scorer_falls_back_to_static(calm: SimClusterConfig) -> None:
    run = Backtest(calm, "ml", None, parents=30).run()
    assert {p.plan for p in run.parents} == {"fallback:static"}
    assert run.fallbacks == 30
    assert run.model_version is None
    # The fallback routes exactly as the static policy does.
    static = Backtest(calm, "static", parents=30).run()
    strip = [msgspec.structs.replace(p, plan="") for p in run.parents]
    assert strip == [msgspec.structs.replace(p, plan="") for p in static.parents]
