"""``journal.sync = "every"``: nothing a step commands (child orders, reports
for the OMS) leaves until the journal has committed the step.

The driver runs for real (threaded design, a real asyncio loop, the real
engine, journal writer and its process); the writer process is stopped
(SIGSTOP) so the test sees what goes out before and after its commit."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from router.domain.commands import Command, ReportToOms, SendChildOrder
from router.domain.events import Event, NewOrderReceived, VenueSessionChanged
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Engine
from router.journal import records
from router.journal.store import SqliteStore
from router.journal.writer import JournalWriter
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.runtime.driver import Driver
from tests.unit.router.engine.test_core import PX, VENUES, make_config


class Journal:
    """A real SQLite journal; its writer process can be stopped (SIGSTOP) to
    hold commits back."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.session = self.store.begin_session(1, "T-", "static", "{}")

    def events(self) -> list[object]:
        """The events committed so far."""
        return [records.decode_event(b) for _, kind, _, b in self.store.records(self.session)
                if kind == records.EVENT]


class FakeEdge:
    def __init__(self, store: Journal) -> None:
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


def _holding_driver(tmp: Path, failures: list[str] | None = None
                    ) -> tuple[asyncio.AbstractEventLoop, Journal, FakeEdge, JournalWriter, Driver]:
    """A driver with sync = "every", its venues up, its writer process
    stopped, and one order sent."""
    cfg = make_config("cancel")
    loop = asyncio.new_event_loop()
    journal = Journal(tmp / "j.sqlite")
    edge = FakeEdge(journal)
    metrics = Metrics([v.name for v in cfg.venues], registry=CollectorRegistry())
    engine = Engine(cfg, StaticWaterfall(cfg), metrics, "T-")
    driver: Driver

    def failed(why: str) -> None:
        if failures is not None:
            failures.append(why)
        driver.halt(f"journal failed: {why}")

    writer = JournalWriter(journal.store, journal.session, capacity=10_000, max_delay_ms=1000, on_failure=failed)
    driver = Driver(cfg.router, loop, engine, edge, metrics, None, time.monotonic_ns, None, writer,
                    hold_reports=True)
    writer.on_commit = driver.release_held
    writer.start(loop)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGSTOP)
    for v in VENUES:
        driver.inject(VenueSessionChanged(venue=v, up=True, ts_ns=time.monotonic_ns()))
    driver.inject(_nos("c1"))
    return loop, journal, edge, writer, driver


def test_a_steps_commands_wait_for_its_commit(tmp_path: Path) -> None:
    loop, journal, edge, writer, _ = _holding_driver(tmp_path)
    assert writer.pid is not None
    try:
        assert edge.sent == [], "neither the child nor the ack leaves before the journal has them"

        async def until_acked() -> None:
            assert writer.pid is not None
            os.kill(writer.pid, signal.SIGCONT)
            await asyncio.wait_for(edge.reported.wait(), 10)

        loop.run_until_complete(until_acked())
        (ack, committed_then), = [(c, n) for c, n in edge.sent if isinstance(c, ReportToOms)]
        assert ack.cl_ord_id == "c1"
        events = journal.events()
        nos_at = next(i for i, ev in enumerate(events) if isinstance(ev, NewOrderReceived))
        assert committed_then > nos_at, "the order's event was durable before its ack left"
        child_at = next(n for c, n in edge.sent if isinstance(c, SendChildOrder))
        assert child_at > nos_at, "and before its child left"
    finally:
        os.kill(writer.pid, signal.SIGCONT)
        writer.close()
        loop.close()


def test_a_failed_journal_releases_what_it_held(tmp_path: Path) -> None:
    """The writer process dies holding the step: the OMS must still hear of
    its order (the failure is loud already)."""
    failures: list[str] = []
    loop, _, edge, writer, _ = _holding_driver(tmp_path, failures)
    try:
        assert not any(isinstance(c, ReportToOms) for c, _ in edge.sent)
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        loop.run_until_complete(asyncio.wait_for(edge.reported.wait(), 10))
        assert failures == ["writer process exited (killed by signal 9)"]
        assert any(isinstance(c, ReportToOms) and c.cl_ord_id == "c1" for c, _ in edge.sent)
    finally:
        writer.close()
        loop.close()
