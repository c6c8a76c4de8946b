"""What the pre-trade controls cost per order (router.risk): the parent
checks (throttle, restricted/stopped symbol, qty, notional, collar against
the NBBO, credit, duplicate guard) and one child's checks, timed one order
at a time; and the engine's parent-in-to-child-out with the controls on and
off. Printed as p50/p99 (us), never asserted on time: this machine is
shared and noisy. Run with `make perf` (or pytest -s)."""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry

from router.config import Config
from router.domain.commands import SendChildOrder
from router.domain.events import NewOrderReceived, VenueSessionChanged
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Engine
from router.features.engine import market_state
from router.metrics.registry import Metrics
from router.risk import RiskControls
from router.routing.baselines import StaticWaterfall
from tests.perf.test_engine_bench import N, _report, _timed

GAP_NS = 100_000
"""Orders 0.1 ms apart in event time (10,000/s): the throttles are raised to
let every one through, so each is checked all the way."""


def _cfg(default_config: Config, enabled: bool = True) -> Config:
    r = msgspec.structs.replace
    return r(default_config, risk=r(default_config.risk, enabled=enabled, max_msgs_per_s=20_000,
                                     max_executions=0, credit_limit=10**15))


def _orders(sym: str, px: int) -> list[NewOrderReceived]:
    # Quantities cycle over 997 values, prices over 7 ticks, sides alternate:
    # no two orders alike within the duplicate window (the guard looks each
    # one up and records it; a repeat would add the warning's cost, ~2 us).
    return [NewOrderReceived(session="FIX.4.4:SOR->OMS", cl_ord_id=f"c{i}", symbol=sym,
                             side=Side.BUY if i % 2 else Side.SELL, qty=100 + i % 997, ord_type=OrdType.LIMIT,
                             price_ticks=px + (i % 7 if i % 2 else -(i % 7)), tif=TimeInForce.IOC,
                             recv_ns=(i + 1) * GAP_NS) for i in range(N)]


def test_risk_checks_per_order(default_config: Config) -> None:
    cfg = _cfg(default_config)
    md, _, _ = market_state(cfg)
    sym = cfg.symbols[0]
    px = round(float(sym.ref_price) / float(sym.tick_size))
    lit = [i for i, v in enumerate(cfg.venues) if v.kind.value == "lit"]
    for v in lit:
        md.apply_book(v, 0, 0, [px - 1], [500], [px + 1], [500])
    risk = RiskControls(cfg.risk, cfg.symbols, md, 10**18, None)  # the book never goes stale here
    orders = _orders(sym.symbol, px)
    breaches = []

    def parent(i: int) -> None:
        b = risk.check_parent(orders[i])
        if b is not None:
            breaches.append(b)

    def child(i: int) -> None:
        o = orders[i]
        b = risk.check_child(o.session, o.symbol, o.side, o.qty, o.ord_type, o.price_ticks, o.price_ticks,
                             o.recv_ns)
        if b is not None:
            breaches.append(b)

    _report("risk: parent checks (all controls)", _timed(parent, N))
    _report("risk: one child's checks", _timed(child, N))
    assert not breaches, breaches[:3]


def test_engine_route_with_and_without_controls(default_config: Config) -> None:
    for enabled in (False, True):
        cfg = _cfg(default_config, enabled)
        md, stats, _ = market_state(cfg)
        sym = cfg.symbols[0]
        px = round(float(sym.ref_price) / float(sym.tick_size))
        for v, vc in enumerate(cfg.venues):
            if vc.kind.value == "lit":
                md.apply_book(v, 0, 0, [px - 1], [500], [px + 1], [500])
        eng = Engine(cfg, StaticWaterfall(cfg), Metrics([v.name for v in cfg.venues], CollectorRegistry()), "R-",
                     market=md, stats=stats)
        # The book is committed at 0 and the orders come later: pretend the
        # feed is live by measuring against a never-stale reference.
        eng.risk._stale_ns = 10**18
        for v in cfg.venues:
            eng.handle(VenueSessionChanged(venue=v.name, up=True, ts_ns=0))
        sent = _route_all(eng, _orders(sym.symbol, px), f"risk {'on' if enabled else 'off'}")
        assert sent == N


def _route_all(eng: Engine, orders: list[NewOrderReceived], label: str) -> int:
    sent = [0]

    def route(i: int) -> None:
        if any(isinstance(c, SendChildOrder) for c in eng.handle(orders[i]).commands):
            sent[0] += 1

    _report(f"engine: parent in -> child out, {label}", _timed(route, N))
    return sent[0]
