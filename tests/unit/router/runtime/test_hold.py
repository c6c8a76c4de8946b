"""``journal.sync = "every"``: nothing a step commands (child orders, reports
for the OMS) leaves until the journal has committed the step.

The driver runs for real (threaded design, a real asyncio loop, the real
engine and journal writer); the store's commit is held back by a gate so
the test sees what goes out before and after it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from router.domain.commands import Command, ReportToOms, SendChildOrder
from router.domain.events import Event, NewOrderReceived, VenueSessionChanged
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Engine
from router.journal import records
from router.journal.store import Row
from router.journal.writer import JournalWriter
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.runtime.driver import Driver
from tests.unit.router.engine.test_core import PX, VENUES, make_config


class GatedStore:
    """Commits only when the gate is open; remembers what it committed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.rows: list[Row] = []

    def write(self, session_id: int, rows: list[Row]) -> None:
        self.gate.wait(10)
        self.rows.extend(rows)

    def events(self) -> list[object]:
        return [records.decode_event(b) for _, kind, _, b in self.rows if kind == records.EVENT]


class FakeEdge:
    def __init__(self, store: GatedStore) -> None:
        self.on_event: Callable[[Event, int], None] = lambda ev, ns: None
        self.events = 0
        self.sent: list[tuple[Command, int]] = []
        """Each command with how many events the store had committed then."""
        self.reported = asyncio.Event()
        """Set once a report for the OMS went out."""
        self._store = store

    def start(self) -> None: ...

    def poll(self) -> None: ...

    def stop(self) -> None: ...

    def hold_oms(self) -> None: ...

    def open_oms(self) -> None: ...

    def execute(self, cmds: list[Command]) -> int | None:
        committed = len(self._store.events())
        self.sent.extend((c, committed) for c in cmds)
        if any(isinstance(c, ReportToOms) for c in cmds):
            self.reported.set()
        return time.monotonic_ns()


def _nos(cl: str) -> NewOrderReceived:
    return NewOrderReceived(session="OMS", cl_ord_id=cl, symbol="AAPL", side=Side.BUY, qty=100,
                            ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.DAY, recv_ns=time.monotonic_ns())


def _holding_driver() -> tuple[asyncio.AbstractEventLoop, GatedStore, FakeEdge, JournalWriter, Driver]:
    """A driver with sync = "every", its venues up and one order sent."""
    cfg = make_config("cancel")
    loop = asyncio.new_event_loop()
    store = GatedStore()
    edge = FakeEdge(store)
    metrics = Metrics([v.name for v in cfg.venues], registry=CollectorRegistry())
    engine = Engine(cfg, StaticWaterfall(cfg), metrics, "T-")
    writer = JournalWriter(store, 1, capacity=10_000, max_delay_ms=1000, on_failure=lambda why: None)
    driver = Driver(cfg.router, loop, engine, edge, metrics, None, time.monotonic_ns, None, writer,
                    hold_reports=True)
    for v in VENUES:
        driver.inject(VenueSessionChanged(venue=v, up=True, ts_ns=time.monotonic_ns()))
    driver.inject(_nos("c1"))
    return loop, store, edge, writer, driver


def test_a_steps_commands_wait_for_its_commit() -> None:
    loop, store, edge, writer, driver = _holding_driver()
    writer.on_commit = lambda: loop.call_soon_threadsafe(driver.release_held)
    writer.start()
    try:
        assert edge.sent == [], "neither the child nor the ack leaves before the journal has them"

        async def until_acked() -> None:
            store.gate.set()
            await asyncio.wait_for(edge.reported.wait(), 10)

        loop.run_until_complete(until_acked())
        (ack, committed_then), = [(c, n) for c, n in edge.sent if isinstance(c, ReportToOms)]
        assert ack.cl_ord_id == "c1"
        events = store.events()
        nos_at = next(i for i, ev in enumerate(events) if isinstance(ev, NewOrderReceived))
        assert committed_then > nos_at, "the order's event was durable before its ack left"
        child_at = next(n for c, n in edge.sent if isinstance(c, SendChildOrder))
        assert child_at > nos_at, "and before its child left"
    finally:
        store.gate.set()
        writer.close()
        loop.close()


def test_a_failed_journal_releases_what_it_held() -> None:
    loop, store, edge, writer, driver = _holding_driver()
    try:
        assert not any(isinstance(c, ReportToOms) for c, _ in edge.sent)
        writer.failed = "disk full"  # as the writer's failure path sets it
        driver.halt("journal failed: disk full")
        loop.run_until_complete(asyncio.sleep(0))
        assert any(isinstance(c, ReportToOms) and c.cl_ord_id == "c1" for c, _ in edge.sent)
    finally:
        store.gate.set()
        loop.close()
