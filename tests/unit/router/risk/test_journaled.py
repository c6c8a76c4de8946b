"""A run-time limit change goes through the driver like any input: it is
journaled as the event it was (who, when, what), and a fresh engine fed
the journaled events (what replay and restart recovery do) makes the same
decisions with it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from router.domain.commands import RejectOrder, SendChildOrder
from router.domain.events import Event, NewOrderReceived, RiskLimitChanged, VenueSessionChanged
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Engine
from router.journal.writer import JournalWriter
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.runtime.driver import Driver
from tests.unit.router.engine.test_core import PX, VENUES, make_config
from tests.unit.router.runtime.test_hold import FakeEdge, Journal


def _nos(cl: str, qty: int) -> NewOrderReceived:
    return NewOrderReceived(session="OMS", cl_ord_id=cl, symbol="AAPL", side=Side.BUY, qty=qty,
                            ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.IOC, recv_ns=time.monotonic_ns())


def test_a_limit_change_is_journaled_and_replays(tmp_path: Path) -> None:
    cfg = make_config("cancel")
    loop = asyncio.new_event_loop()
    store = Journal(tmp_path / "j.sqlite")
    edge = FakeEdge(store)
    metrics = Metrics([v.name for v in cfg.venues], registry=CollectorRegistry())
    engine = Engine(cfg, StaticWaterfall(cfg), metrics, "T-")
    writer = JournalWriter(store.store, store.session, capacity=10_000, max_delay_ms=1, on_failure=lambda why: None)
    driver = Driver(cfg.router, loop, engine, edge, metrics, None, time.monotonic_ns, None, writer)
    writer.start()
    try:
        for v in VENUES:
            driver.inject(VenueSessionChanged(venue=v, up=True, ts_ns=time.monotonic_ns()))
        driver.inject(_nos("c1", 300))
        change = RiskLimitChanged(key="symbol.AAPL.max_order_qty", value="200", who="alice",
                                  ts_ns=time.monotonic_ns())
        driver.inject(change)
        driver.inject(_nos("c2", 300))
        driver.inject(_nos("c3", 200))
    finally:
        assert writer.close()
        loop.close()
    sent = [c for c, _ in edge.sent]
    rejects = [c for c in sent if isinstance(c, RejectOrder)]
    assert [(r.cl_ord_id, r.text) for r in rejects] == [
        ("c2", "max order qty: order qty 300 exceeds the limit of 200 for AAPL (risk.symbols[AAPL].max_order_qty)")]
    events = store.events()
    assert change in events

    # Replayed into a fresh engine, the journal decides the same.
    fresh = Engine(cfg, StaticWaterfall(cfg), Metrics([v.name for v in cfg.venues], CollectorRegistry()), "T-")
    again = []
    for ev in events:
        assert isinstance(ev, Event)
        again.extend(fresh.handle(ev).commands)  # type: ignore[arg-type]
    assert [c.cl_ord_id for c in again if isinstance(c, RejectOrder)] == ["c2"]
    assert sum(isinstance(c, SendChildOrder) for c in again) == sum(isinstance(c, SendChildOrder) for c in sent)
