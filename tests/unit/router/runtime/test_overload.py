"""The driver's half of back-pressure (``router.runtime.overload``).

The gate on its own (hysteresis, the ack median, what it names), then the
real driver on a real engine with a fake FIX edge and a clock the test
moves by hand: the loop never runs, so events wait in the inbox (or in the
fake sockets) exactly as they would behind a backlog, and the test calls
the timer itself. No wall clock is asserted on anywhere."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from router.config import Config, OverloadConfig
from router.domain.commands import CancelChild, Command, RejectOrder, ReportToOms, SendChildOrder
from router.domain.events import (
    EngineEvent,
    Event,
    NewOrderReceived,
    OverloadChanged,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.types import ExecType, OrdStatus, OrdType, Side, TimeInForce
from router.engine import Engine
from router.journal.writer import JournalWriter
from router.metrics.registry import OVERLOAD_MEASURES, Metrics
from router.routing.baselines import StaticWaterfall
from router.runtime.driver import Driver
from router.runtime.overload import MEASURES, OverloadGate
from tests.unit.router.engine.test_core import PX, VENUES, make_config
from tests.unit.router.runtime.test_hold import Journal

MS = 1_000_000
T0 = 1_000_000 * MS
CFG = OverloadConfig()  # the defaults: inbox 20/5 ms, ack 50/20 ms, hold 100 ms


def test_the_measures_are_the_metrics_labels() -> None:
    assert set(MEASURES) == set(OVERLOAD_MEASURES)


# ------------------------------------------------------------------ the gate


def test_inbox_hysteresis_on_above_the_limit_off_after_hold_at_the_clear_level() -> None:
    g = OverloadGate(CFG)
    assert g.inbox(20 * MS, T0) is None, "at the limit is not over it"
    on = g.inbox(21 * MS, T0 + 1 * MS)
    assert on == OverloadChanged(on=True, measure="inbox_age", reason="inbox age 21.0 ms over 20 ms",
                                 backlog=True, ts_ns=T0 + 1 * MS)
    assert g.inbox(40 * MS, T0 + 2 * MS) is None, "already on: no second event"
    # Between the clear level and the limit it stays on, and restarts the hold.
    assert g.inbox(10 * MS, T0 + 50 * MS) is None
    assert g.inbox(1 * MS, T0 + 149 * MS) is None, "99 ms at the clear level: still held"
    off = g.inbox(1 * MS, T0 + 150 * MS)
    assert off == OverloadChanged(on=False, ts_ns=T0 + 150 * MS)
    assert not g.on and not g.backlog
    assert g.inbox(19 * MS, T0 + 151 * MS) is None, "under the limit: stays off"


def test_one_slow_ack_is_not_an_overload_a_slow_venue_is() -> None:
    g = OverloadGate(CFG)
    t = T0
    for i in range(3):
        g.sent(f"c{i}", "LIT1", t)
        assert g.answered(f"c{i}", t + 200 * MS, t + 200 * MS) is None, "fewer than ack_min_samples answers"
        t += 2 * MS
    t += 150 * MS
    g.sent("c3", "LIT1", t)
    on = g.answered("c3", t + 80 * MS, t + 80 * MS)
    assert on is not None and on.on and on.measure == "ack_time" and not on.backlog
    assert on.reason == "venue LIT1 ack time 200.0 ms over 50 ms (median of its last 4 answers)"
    assert g.answered("c3", t + 90 * MS, t + 90 * MS) is None, "only a child's first answer is an ack time"
    # Nothing more comes: the answers age out of the window and it clears.
    assert g.tick(t + 180 * MS, 0) == []
    off = g.tick(t + 80 * MS + CFG.ack_window_ms * MS + 1, 0)
    assert off == [OverloadChanged(on=False, ts_ns=t + 80 * MS + CFG.ack_window_ms * MS + 1)]


def test_the_median_ignores_a_minority_of_slow_acks() -> None:
    g = OverloadGate(CFG)
    t = T0
    for i in range(9):
        g.sent(f"c{i}", "LIT1", t)
        ack = (90 if i % 4 == 0 else 5) * MS
        assert g.answered(f"c{i}", t + ack, t + ack) is None
        t += 2 * MS
    assert g.ack_figure_ns("LIT1") == 5 * MS


def test_backlog_follows_the_inbox_while_a_venue_holds_the_gate_on() -> None:
    g = OverloadGate(CFG)
    t = T0
    for i in range(4):
        g.sent(f"c{i}", "DARK1", t)
        ch = g.answered(f"c{i}", t + 60 * MS, t + 60 * MS)
        t += 2 * MS
    assert ch is not None and ch.measure == "ack_time" and not ch.backlog
    ch = g.inbox(30 * MS, t + 60 * MS)
    assert ch is not None and ch.on and ch.measure == "inbox_age" and ch.backlog
    # The inbox clears; the venue still holds it on: backlog off, named by the venue.
    for k in range(2):
        g.sent(f"d{k}", "DARK1", t + 60 * MS)
        g.answered(f"d{k}", t + 130 * MS, t + 130 * MS + k * 2 * MS)
    ch = g.inbox(0, t + 200 * MS)
    assert ch is not None and ch.on and ch.measure == "ack_time" and not ch.backlog
    assert ch.reason.startswith("venue DARK1 ack time 60.0 ms over 50 ms")


def test_a_venue_that_drops_takes_its_measure_with_it() -> None:
    g = OverloadGate(CFG)
    for i in range(4):
        g.sent(f"c{i}", "LIT2", T0)
        ch = g.answered(f"c{i}", T0 + 70 * MS + i * 2 * MS, T0 + 70 * MS + i * 2 * MS)
    assert ch is not None and ch.on
    g.sent("late", "LIT2", T0 + 80 * MS)
    assert g.venue_down("LIT2", T0 + 90 * MS) == OverloadChanged(on=False, ts_ns=T0 + 90 * MS)
    assert g.answered("late", T0 + 5000 * MS, T0 + 5000 * MS) is None, "its pending children are forgotten"
    assert g.ack_figure_ns("LIT2") == 0


# ------------------------------------------------------------------ the driver


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Edge:
    """The FIX edge as the driver sees it. ``sockets`` holds what the venues
    and the OMS have sent and the poll driver has not read yet; each poll
    pass reads ``per_pass`` of it, stamping each as read now."""

    def __init__(self, clock: Clock) -> None:
        self.on_event: Callable[[Event, int], None] = lambda ev, ns: None
        self.events = 0
        self.sent: list[Command] = []
        self.sockets: list[Callable[[int], Event]] = []
        self.per_pass = 2
        self.clock = clock

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def hold_oms(self) -> None: ...

    def open_oms(self) -> None: ...

    def poll(self) -> None:
        for _ in range(min(self.per_pass, len(self.sockets))):
            self.events += 1
            self.on_event(self.sockets.pop(0)(self.clock.now), 0)

    def execute(self, cmds: list[Command]) -> int | None:
        self.sent.extend(cmds)
        return self.clock.now if any(isinstance(c, SendChildOrder) for c in cmds) else None


def _nos(cl: str, recv_ns: int) -> NewOrderReceived:
    return NewOrderReceived(session="OMS", cl_ord_id=cl, symbol="AAPL", side=Side.BUY, qty=100,
                            ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.DAY, recv_ns=recv_ns)


def _ack(child_id: str, venue: str, recv_ns: int) -> VenueReport:
    return VenueReport(venue=venue, child_id=child_id, exec_id=f"V-{child_id}", exec_type=ExecType.NEW,
                       ord_status=OrdStatus.NEW, last_qty=0, last_px_ticks=0, cum_qty=0, leaves_qty=100, text="",
                       recv_ns=recv_ns)


class Rig:
    def __init__(self, *, driver: str = "threaded", gate: bool = True, journal: JournalWriter | None = None) -> None:
        cfg = make_config("cancel")
        router = msgspec.structs.replace(cfg.router, driver=driver,
                                         overload=msgspec.structs.replace(cfg.router.overload, enabled=gate))
        self.cfg: Config = msgspec.structs.replace(cfg, router=router)
        self.clock = Clock()
        self.loop = asyncio.new_event_loop()
        self.edge = Edge(self.clock)
        self.registry = CollectorRegistry()
        self.metrics = Metrics([v.name for v in self.cfg.venues], registry=self.registry)
        self.engine = Engine(self.cfg, StaticWaterfall(self.cfg), self.metrics, "T-")
        self.driver = Driver(self.cfg.router, self.loop, self.engine, self.edge, self.metrics, None, self.clock,
                             None, journal)
        self.driver.start()
        for v in VENUES:
            self.driver.inject(VenueSessionChanged(venue=v, up=True, ts_ns=self.clock.now))

    def queue(self, ev: EngineEvent) -> None:
        """As quickfix's socket thread does: into the inbox, for a loop that
        has not come round to it yet."""
        t = threading.Thread(target=self.driver.inbox.put, args=(ev,))
        t.start()
        t.join(10)

    def child_of(self, cl: str) -> str:
        (p,) = [p for p in self.engine.parents.values() if p.cl_ord_id == cl]
        return p.children[-1]

    def metric(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    def answers(self, cl: str) -> list[Command]:
        return [c for c in self.edge.sent if isinstance(c, RejectOrder | ReportToOms) and c.cl_ord_id == cl]


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.loop.close()


def test_a_parent_queued_past_the_limit_is_rejected_until_the_inbox_clears(rig: Rig) -> None:
    c = rig.clock
    c.now = T0 + 30 * MS
    rig.driver._dispatch_queued(_nos("c1", T0))
    (rej,) = rig.answers("c1")
    assert isinstance(rej, RejectOrder) and rej.text == "router overloaded: inbox age 30.0 ms over 20 ms"
    # Hysteresis: 10 ms of queueing is under the limit but over the clear level.
    c.now = T0 + 40 * MS
    rig.driver._dispatch_queued(_nos("c2", T0 + 30 * MS))
    assert isinstance(rig.answers("c2")[0], RejectOrder)
    # At the clear level, but not yet for hold_ms.
    c.now = T0 + 100 * MS
    rig.driver._dispatch_queued(_nos("c3", T0 + 99 * MS))
    assert isinstance(rig.answers("c3")[0], RejectOrder)
    c.now = T0 + 141 * MS
    rig.driver._dispatch_queued(_nos("c4", T0 + 140 * MS))
    first = rig.answers("c4")[0]
    assert isinstance(first, ReportToOms) and first.exec_type is ExecType.NEW
    assert any(isinstance(x, SendChildOrder) for x in rig.edge.sent)
    assert rig.metric("sor_order_rejects_total", reason="overloaded") == 3
    assert rig.metric("sor_overload_trips_total", measure="inbox_age") == 1
    assert rig.engine.overload is None and rig.metric("sor_overloaded") == 0


def test_the_lag_probe_clears_the_gate_when_nothing_comes(rig: Rig) -> None:
    rig.clock.now = T0 + 30 * MS
    rig.driver._dispatch_queued(_nos("c1", T0))
    assert rig.engine.overload is not None
    rig.clock.now = T0 + 200 * MS
    rig.driver._lag_probe()  # the inbox is empty: age 0 for longer than hold_ms
    assert rig.engine.overload is None


@pytest.mark.parametrize("gate", [True, False], ids=["gate", "no-gate"])
def test_an_ack_queued_in_the_inbox_is_read_before_its_ack_timeout(gate: bool) -> None:
    """The loop comes round to the timer before the inbox: the ack that came
    in time (and even the one read after the deadline, before the timer
    fired) is handed to the engine first, so nothing is canceled. With the
    gate the engine would also defer; without it the driver's order alone
    holds."""
    rig = Rig(gate=gate)
    try:
        c = rig.clock
        rig.driver.inject(_nos("c1", c.now))
        rig.driver.inject(_nos("c2", c.now))
        first, second = rig.child_of("c1"), rig.child_of("c2")
        rig.queue(_ack(first, "DARK1", T0 + 500 * MS))  # in time, queued behind a backlog
        rig.queue(_ack(second, "DARK1", T0 + 1_100 * MS))  # after its deadline, before the timer fired
        c.now = T0 + 1_500 * MS
        rig.driver._on_timer()
        assert not [x for x in rig.edge.sent if isinstance(x, CancelChild)]
        assert rig.driver.inbox.depth == 0
        assert rig.engine.children[first].state is OrdStatus.NEW
        assert rig.engine.children[second].state is OrdStatus.NEW
        assert rig.metric("sor_venue_anomalies_total", kind="ack_timeout") == 0
    finally:
        rig.loop.close()


@pytest.mark.parametrize("gate", [True, False], ids=["gate", "no-gate"])
def test_an_ack_still_in_the_sockets_does_not_lose_to_its_ack_timeout(gate: bool) -> None:
    """poll driver: the timer first reads what the sockets hold, pass after
    pass, until a pass finds nothing or the pump has been busy past the
    inbox limit; then the engine defers the deadline (with the gate's
    refusals off too: only new parents are still taken)."""
    rig = Rig(driver="poll", gate=gate)
    try:
        rig.driver.inject(_nos("c1", rig.clock.now))
        child = rig.child_of("c1")
        for i in range(5):  # other traffic ahead of the ack
            rig.edge.sockets.append(lambda now, i=i: _nos(f"x{i}", now))
        rig.edge.sockets.append(lambda now: _ack(child, "DARK1", now))
        rig.clock.now = T0 + 1_500 * MS
        rig.driver._on_timer()
        assert not [x for x in rig.edge.sent if isinstance(x, CancelChild) and x.child_id == child]
        assert (rig.engine.overload is not None) == gate
        assert rig.metric("sor_ack_timeouts_deferred_total") == 1
        rig.edge.per_pass = 100
        rig.driver._pump()  # the pump reads the rest
        assert rig.edge.sockets == []
        assert rig.engine.children[child].state is OrdStatus.NEW
        assert rig.metric("sor_venue_anomalies_total", kind="ack_timeout") == 0
    finally:
        rig.loop.close()


def test_without_its_answer_the_ack_timeout_still_cancels(rig: Rig) -> None:
    rig.driver.inject(_nos("c1", rig.clock.now))
    child = rig.child_of("c1")
    rig.clock.now = T0 + 1_500 * MS
    rig.driver._on_timer()
    (cxl,) = [x for x in rig.edge.sent if isinstance(x, CancelChild)]
    assert cxl.child_id == child
    assert rig.metric("sor_venue_anomalies_total", kind="ack_timeout") == 1


def test_ack_times_run_from_the_send_and_a_slow_venue_trips_the_gate(rig: Rig) -> None:
    c = rig.clock
    t0 = c.now
    # Parents that waited 100 ms before the engine took them (inject: no
    # inbox measure); their children leave now, 2 ms apart.
    kids = {}
    for name in ("s0", "s1", "s2", "s3", "f0", "f1", "f2", "f3"):
        c.now += 2 * MS
        rig.driver.inject(_nos(name, c.now - 100 * MS))
        kids[name] = (rig.child_of(name), c.now)
    # The f children are acked 10 ms after they left: 10 ms, not 110.
    for name in ("f0", "f1", "f2", "f3"):
        c.now = kids[name][1] + 10 * MS
        rig.driver._dispatch_queued(_ack(kids[name][0], "DARK1", c.now))
    assert rig.engine.overload is None
    assert rig.driver.gate is not None and rig.driver.gate.ack_figure_ns("DARK1") == 10 * MS
    # The s children 80 ms after: once they are the median the gate trips.
    for name in ("s0", "s1", "s2"):
        c.now = max(c.now, kids[name][1] + 80 * MS)
        rig.driver._dispatch_queued(_ack(kids[name][0], "DARK1", c.now))
        assert rig.engine.overload is None, "a minority of slow answers"
    c.now = max(c.now, kids["s3"][1] + 80 * MS)
    rig.driver._dispatch_queued(_ack(kids["s3"][0], "DARK1", c.now))
    assert c.now - t0 < CFG.ack_window_ms * MS
    ov = rig.engine.overload
    assert ov is not None and ov.measure == "ack_time" and not ov.backlog
    rig.driver._dispatch_queued(_nos("n1", c.now))
    (rej,) = rig.answers("n1")
    assert isinstance(rej, RejectOrder)
    assert rej.text == "router overloaded: venue DARK1 ack time 80.0 ms over 50 ms (median of its last 8 answers)"
    assert rig.metric("sor_overload_ack_seconds", venue="DARK1") == 0.08
    # The venue's answers age out of the window: the gate clears on the probe.
    c.now += CFG.ack_window_ms * MS + 1
    rig.driver._lag_probe()
    assert rig.engine.overload is None
    rig.driver._dispatch_queued(_nos("n2", c.now))
    assert isinstance(rig.answers("n2")[0], ReportToOms)


def test_poll_the_pumps_own_busy_time_is_not_the_venues() -> None:
    """poll driver: an ack read at the end of a long busy pass counts from
    the last pass without order traffic, not from when the pump got to it."""
    rig = Rig(driver="poll")
    try:
        c = rig.clock
        c.now += 1 * MS
        rig.driver._pump()  # an empty pass: nothing was waiting at this moment
        for k in range(4):
            rig.driver.inject(_nos(f"p{k}", c.now))
        kids = [rig.child_of(f"p{k}") for k in range(4)]
        for cid in kids:
            # Read 90 ms later (the pump was busy), but they were not there at the empty pass.
            rig.edge.sockets.append(lambda now, cid=cid: _ack(cid, "DARK1", now))
        c.now += 90 * MS
        rig.edge.per_pass = 10
        rig.driver._pump()
        gate = rig.driver.gate
        assert gate is not None and gate.ack_figure_ns("DARK1") == 0
        ov = rig.engine.overload
        assert ov is None or ov.measure == "inbox_age", "blamed on the pump, never on the venue"
    finally:
        rig.loop.close()


def test_a_journal_with_an_overload_replays_to_the_same_commands(tmp_path: Path) -> None:
    store = Journal(tmp_path / "j.sqlite")
    writer = JournalWriter(store.store, store.session, capacity=10_000, max_delay_ms=1, on_failure=lambda why: None)
    rig = Rig(journal=writer)
    writer.start()
    try:
        c = rig.clock
        rig.driver.inject(_nos("a1", c.now))
        working = rig.child_of("a1")
        c.now = T0 + 30 * MS
        rig.driver._dispatch_queued(_nos("r1", T0))  # trips the gate: rejected
        rig.queue(_ack(working, "DARK1", T0 + 900 * MS))
        c.now = T0 + 1_500 * MS
        rig.driver._on_timer()  # reads the ack first (gate still on: backlog)
        c.now = T0 + 2_000 * MS
        rig.driver._lag_probe()  # clears
        rig.driver._dispatch_queued(_nos("a2", c.now))
        c.now = T0 + 3_500 * MS
        rig.driver._on_timer()  # a2's child has no ack: canceled
    finally:
        assert writer.close()
        rig.loop.close()
    events = store.events()
    kinds = [type(ev).__name__ for ev in events]
    assert kinds.count("OverloadChanged") == 2
    assert [x.text for x in rig.edge.sent if isinstance(x, RejectOrder)] == [
        "router overloaded: inbox age 30.0 ms over 20 ms"]
    assert [x.child_id for x in rig.edge.sent if isinstance(x, CancelChild)] == [rig.child_of("a2")]

    fresh = Engine(rig.cfg, StaticWaterfall(rig.cfg), Metrics([v.name for v in rig.cfg.venues],
                                                               registry=CollectorRegistry()), "T-")
    again: list[Command] = []
    for ev in events:
        assert isinstance(ev, Event)
        again.extend(fresh.handle(ev).commands)  # type: ignore[arg-type]
    assert again == rig.edge.sent


def test_the_inbox_hands_over_what_came_before_a_time_and_keeps_the_rest() -> None:
    from router.runtime.inbox import LoopInbox

    loop = asyncio.new_event_loop()
    got: list[int] = []
    inbox: LoopInbox[int] = LoopInbox(loop, got.append)
    try:
        t = threading.Thread(target=lambda: [inbox.put(i) for i in (1, 2, 3, 7, 8)])
        t.start()
        t.join(10)
        assert inbox.oldest() == 1
        assert inbox.drain_while(lambda i: i <= 5) == 3
        assert got == [1, 2, 3] and inbox.oldest() == 7 and inbox.depth == 2
    finally:
        loop.close()


@pytest.mark.parametrize("traffic", ["market data", "orders"])
def test_poll_a_busy_feed_is_not_a_backlog_a_busy_order_flow_is(traffic: str) -> None:
    """poll driver: every pass for 60 ms finds messages. Market data alone
    says nothing of how long an order waits (each pass serves every
    socket); orders on every pass mean the pump is behind on them."""
    from router.domain.events import MarketDataReceived

    rig = Rig(driver="poll")
    try:
        c = rig.clock

        def md(now: int) -> Event:
            c.now += 1 * MS
            return MarketDataReceived(venue="LIT1", snapshot=False, symbol="AAPL", entries=(), recv_ns=c.now)

        def order(k: int) -> Callable[[int], Event]:
            def make(now: int) -> Event:
                c.now += 1 * MS
                return _nos(f"o{k}", c.now)
            return make

        for k in range(60):
            rig.edge.sockets.append(md if traffic == "market data" else order(k))
        while rig.edge.sockets:
            rig.driver._pump()
        rig.edge.sockets.append(order(99))
        rig.driver._pump()
        first = rig.answers("o99")[0]
        if traffic == "market data":
            assert isinstance(first, ReportToOms) and rig.engine.overload is None
        else:
            assert isinstance(first, RejectOrder) and first.text.startswith("router overloaded: inbox age")
    finally:
        rig.loop.close()


def test_with_refusals_off_the_inbox_measure_still_says_backlog() -> None:
    g = OverloadGate(msgspec.structs.replace(CFG, enabled=False))
    ch = g.inbox(30 * MS, T0)
    assert ch == OverloadChanged(on=False, measure="inbox_age", reason="inbox age 30.0 ms over 20 ms",
                                 backlog=True, ts_ns=T0)
    assert g.inbox(0, T0 + 100 * MS) == OverloadChanged(on=False, ts_ns=T0 + 100 * MS)


def test_with_refusals_off_parents_are_taken_and_ack_deadlines_still_wait() -> None:
    rig = Rig(gate=False)
    try:
        c = rig.clock
        rig.driver.inject(_nos("c1", c.now))
        child = rig.child_of("c1")
        c.now = T0 + 1_500 * MS
        rig.driver._dispatch_queued(_nos("late", T0 + 1_000 * MS))  # waited 500 ms: backed up
        assert isinstance(rig.answers("late")[0], ReportToOms), "taken: refusals are off"
        rig.driver._on_timer()
        assert not [x for x in rig.edge.sent if isinstance(x, CancelChild)]
        assert rig.metric("sor_ack_timeouts_deferred_total") >= 1
        assert rig.metric("sor_overloaded") == 0
        rig.driver._dispatch_queued(_ack(child, "DARK1", c.now))
        assert rig.engine.children[child].state is OrdStatus.NEW
    finally:
        rig.loop.close()
