"""Engine.handle, the one entry point: every event type, the decision it
returns, market data and session effects, markout timers, and releasing
finished orders while still answering for them."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from router.domain.commands import RejectCancel, RejectOrder, ReportToOms, SendChildOrder, SubscribeMarketData
from router.domain.decision import Decision
from router.domain.events import (
    CancelRequested,
    EngineEvent,
    InvalidOrderReceived,
    MarketDataReceived,
    MdEntry,
    NewOrderReceived,
    TimerFired,
    TradingHalted,
    VenueCancelRejected,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.orders import ParentOrder
from router.domain.plan import Plan
from router.domain.types import CxlRejReason, ExecType, OrdRejReason, OrdStatus, OrdType, Side, TimeInForce
from router.engine import Engine, Step
from router.engine.core import RETAIN_DONE_NS, RETIRE_EVERY_NS
from router.features.engine import market_state
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from tests.unit.router.engine.test_core import PX, T0, make_config

VENUES = ("LIT1", "LIT2", "DARK1")


class Fixture:
    def __init__(self, *, retain_ns: int = RETAIN_DONE_NS, max_ids: int = 1000) -> None:
        self.cfg = make_config("cancel")
        self.md, self.stats, self.fe = market_state(self.cfg)
        self.registry = CollectorRegistry()
        self.engine = Engine(self.cfg, StaticWaterfall(self.cfg), Metrics(VENUES, self.registry), "T-",
                             market=self.md, stats=self.stats, retain_done_ns=retain_ns, max_clordids=max_ids)
        self.exec_ids = 0

    def metric(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    def up(self, *venues: str, at: int = T0) -> list[Step]:
        return [self.engine.handle(VenueSessionChanged(venue=v, up=True, ts_ns=at)) for v in venues or VENUES]

    def order(self, cl: str, qty: int = 100, at: int = T0, session: str = "OMS") -> Step:
        return self.engine.handle(NewOrderReceived(session=session, cl_ord_id=cl, symbol="AAPL", side=Side.BUY,
                                                   qty=qty, ord_type=OrdType.LIMIT, price_ticks=PX,
                                                   tif=TimeInForce.IOC, recv_ns=at))

    def report(self, child: SendChildOrder, et: ExecType, st: OrdStatus, qty: int, at: int,
               exec_id: str | None = None) -> Step:
        self.exec_ids += 1
        return self.engine.handle(VenueReport(
            venue=child.venue, child_id=child.child_id, exec_id=exec_id or f"v{self.exec_ids}", exec_type=et,
            ord_status=st, last_qty=qty, last_px_ticks=PX if qty else 0, cum_qty=qty, leaves_qty=child.qty - qty,
            text="", recv_ns=at))

    def fill(self, cl: str, at: int = T0) -> SendChildOrder:
        step = self.order(cl, at=at)
        (child,) = [c for c in step.commands if isinstance(c, SendChildOrder)]
        self.report(child, ExecType.NEW, OrdStatus.NEW, 0, at + 1_000)
        self.report(child, ExecType.TRADE, OrdStatus.FILLED, child.qty, at + 2_000)
        return child


def test_every_event_type_is_handled_and_anything_else_refused() -> None:
    f = Fixture()
    f.up()
    events: list[EngineEvent] = [
        InvalidOrderReceived(session="OMS", cl_ord_id="bad", symbol="ZZZ", side=Side.BUY, qty_raw="1",
                             ord_type_raw="2", reason=OrdRejReason.UNKNOWN_SYMBOL, text="unknown symbol", recv_ns=T0),
        CancelRequested(session="OMS", cl_ord_id="x1", orig_cl_ord_id="nope", symbol="AAPL", side=Side.BUY,
                        recv_ns=T0),
        VenueCancelRejected(venue="LIT1", child_id="nope", text="?", recv_ns=T0),
        MarketDataReceived(venue="LIT1", snapshot=False, symbol="", entries=(), recv_ns=T0),
        TimerFired(ts_ns=T0),
    ]
    for ev in events:
        assert isinstance(f.engine.handle(ev), Step)
    with pytest.raises(TypeError, match="not an engine event"):
        f.engine.handle("hello")  # type: ignore[arg-type]


def test_events_round_trip_through_the_tagged_union() -> None:
    evs: list[EngineEvent] = [
        NewOrderReceived(session="OMS", cl_ord_id="c1", symbol="AAPL", side=Side.SELL, qty=5, ord_type=OrdType.MARKET,
                         price_ticks=None, tif=TimeInForce.DAY, recv_ns=7, strategy="spray"),
        VenueSessionChanged(venue="LIT1", up=False, ts_ns=9),
        MarketDataReceived(venue="LIT2", snapshot=True, symbol="AAPL", recv_ns=3,
                           entries=(MdEntry(action="0", kind=0, symbol="AAPL", px_ticks=PX, size=10, level=0,
                                            aggressor=0),)),
        TimerFired(ts_ns=11),
    ]
    wire = msgspec.json.encode(evs)
    assert b'"type":"NewOrderReceived"' in wire
    assert msgspec.json.decode(wire, type=list[EngineEvent]) == evs
    assert [e.ts_ns for e in evs] == [7, 9, 3, 11]


def test_a_new_parent_comes_back_with_its_decision() -> None:
    f = Fixture()
    f.up()
    step = f.order("c1")
    d = step.decision
    assert isinstance(d, Decision)
    assert d.plan.name == "static" and d.strategy == "static" and d.propensity == 1.0 and d.fallback is None
    assert d.order_id == one_report(step).order_id and d.ts_ns == T0
    assert f.order("c1").decision is None, "a duplicate is never planned"


def one_report(step: Step) -> ReportToOms:
    (r,) = [c for c in step.commands if isinstance(c, ReportToOms)]
    return r


def test_model_fallbacks_are_counted_once_by_the_engine() -> None:
    class Falling(StaticWaterfall):
        def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
            return msgspec.structs.replace(super().decide(order, venues_up), fallback="over_budget")

    f = Fixture()
    f.registry = CollectorRegistry()
    f.engine = Engine(f.cfg, Falling(f.cfg), Metrics(VENUES, f.registry), "T-")
    f.up()
    f.order("a")
    f.order("b")
    assert f.metric("sor_model_fallbacks_total", reason="over_budget") == 2


def test_no_venue_up_rejects_with_the_decision() -> None:
    f = Fixture()
    step = f.order("c1")
    (rej,) = step.commands
    assert isinstance(rej, RejectOrder) and rej.reason is OrdRejReason.EXCHANGE_CLOSED
    assert step.decision is not None and step.decision.plan == Plan(waves=(), name="static")


def test_lit_logon_subscribes_and_logout_clears_the_books() -> None:
    f = Fixture()
    (lit1, lit2, dark) = f.up()
    assert lit1.commands == [SubscribeMarketData(venue="LIT1", symbols=("AAPL", "LOTS"), depth=5)]
    assert isinstance(lit2.commands[0], SubscribeMarketData) and dark.commands == []
    v, s = f.md.venue_index["LIT1"], f.md.symbol_index["AAPL"]
    snap = MarketDataReceived(venue="LIT1", snapshot=True, symbol="AAPL", recv_ns=T0 + 1, entries=(
        MdEntry(action="0", kind=0, symbol="AAPL", px_ticks=PX - 1, size=100, level=0, aggressor=0),
        MdEntry(action="0", kind=1, symbol="AAPL", px_ticks=PX + 1, size=200, level=0, aggressor=0)))
    assert f.engine.handle(snap).commands == []
    assert f.md.nbbo(s) == (PX - 1, 100, PX + 1, 200)
    change = MarketDataReceived(venue="LIT1", snapshot=False, symbol="", recv_ns=T0 + 2, entries=(
        MdEntry(action="1", kind=1, symbol="AAPL", px_ticks=PX + 2, size=50, level=0, aggressor=0),
        MdEntry(action="0", kind=2, symbol="AAPL", px_ticks=PX, size=7, level=0, aggressor=1),
        MdEntry(action="1", kind=0, symbol="NOPE", px_ticks=1, size=1, level=0, aggressor=0)))
    f.engine.handle(change)
    assert f.md.nbbo(s) == (PX - 1, 100, PX + 2, 50)
    assert f.metric("sor_md_entries_total", venue="LIT1") == 4 and f.metric("sor_md_dropped_total", venue="LIT1") == 1
    assert f.metric("sor_md_updates_total", venue="LIT1") == 2
    f.engine.handle(VenueSessionChanged(venue="LIT1", up=False, ts_ns=T0 + 3))
    assert f.md.best(v, s, 0) == (0, 0) and f.md.nbbo(s) == (0, 0, 0, 0)
    rej = MarketDataReceived(venue="LIT2", snapshot=False, symbol="", entries=(), recv_ns=T0 + 4, rejected=True)
    f.engine.handle(rej)
    assert f.metric("sor_md_dropped_total", venue="LIT2") == 1 and f.metric("sor_md_updates_total", venue="LIT2") == 0


def test_markouts_fall_due_as_engine_timers() -> None:
    f = Fixture()
    f.up()
    s = f.md.symbol_index["AAPL"]
    for v in ("LIT1", "LIT2"):
        f.engine.handle(MarketDataReceived(venue=v, snapshot=True, symbol="AAPL", recv_ns=T0, entries=(
            MdEntry(action="0", kind=0, symbol="AAPL", px_ticks=PX - 1, size=100, level=0, aggressor=0),
            MdEntry(action="0", kind=1, symbol="AAPL", px_ticks=PX + 1, size=100, level=0, aggressor=0))))
    assert f.engine.next_timer_ns() is None
    f.fill("c1")
    due = f.engine.next_timer_ns()
    assert due == T0 + 2_000 + 1_000_000_000, "the 1 s markout of the fill"
    f.engine.handle(TimerFired(ts_ns=due))
    assert f.stats.markouts_resolved == 1 and f.stats.pending_markouts(1) == 1
    assert f.md.consolidated_mid2(s) == 2 * PX
    nxt = f.engine.next_timer_ns()
    assert nxt is not None and nxt == T0 + 2_000 + 5_000_000_000
    f.engine.handle(TimerFired(ts_ns=nxt))
    assert f.stats.markouts_resolved == 2


def test_finished_orders_are_released_and_still_answered_for() -> None:
    f = Fixture(retain_ns=1_000_000_000)
    f.up()
    child = f.fill("c1")
    (parent,) = f.engine.parents.values()
    order_id = parent.order_id
    assert parent.state is OrdStatus.FILLED
    later = T0 + 3 * RETIRE_EVERY_NS
    f.engine.handle(TimerFired(ts_ns=T0 + RETIRE_EVERY_NS - 1))
    assert len(f.engine.parents) == 1, "kept whole for its retention"
    f.engine.handle(TimerFired(ts_ns=later))
    assert f.engine.parents == {} and f.engine.children == {}
    nxt = f.engine.next_timer_ns()
    assert nxt is None or nxt > later, "only the fill's 5 s markout is left"

    # A cancel of the released order: too late, with its OrderID and final state.
    (cxl,) = f.engine.handle(CancelRequested(session="OMS", cl_ord_id="x1", orig_cl_ord_id="c1", symbol="AAPL",
                                             side=Side.BUY, recv_ns=later)).commands
    assert isinstance(cxl, RejectCancel)
    assert (cxl.reason, cxl.order_id, cxl.ord_status) == (CxlRejReason.TOO_LATE_TO_CANCEL, order_id, OrdStatus.FILLED)
    assert "too late to cancel: order is filled" in cxl.text
    # Its ClOrdID, and the cancel's, are still taken.
    (dup,) = f.order("c1", at=later).commands
    assert isinstance(dup, RejectOrder) and dup.reason is OrdRejReason.DUPLICATE_ORDER
    (dup2,) = f.engine.handle(CancelRequested(session="OMS", cl_ord_id="x1", orig_cl_ord_id="c1", symbol="AAPL",
                                              side=Side.BUY, recv_ns=later)).commands
    assert isinstance(dup2, RejectCancel) and dup2.reason is CxlRejReason.DUPLICATE_CLORDID
    # Another session may use the same ClOrdID.
    assert f.order("c1", at=later, session="OMS2").decision is not None
    # A venue's late word on the released child changes nothing and is counted.
    assert f.report(child, ExecType.TRADE, OrdStatus.FILLED, child.qty, later, exec_id="late").commands == []
    assert f.metric("sor_venue_anomalies_total", kind="late_report") == 1
    assert f.engine.handle(VenueCancelRejected(venue="LIT1", child_id="T-C999999", text="?",
                                               recv_ns=later)).commands == []
    f.engine.handle(VenueReport(venue="LIT1", child_id="someone-else", exec_id="z", exec_type=ExecType.NEW,
                                ord_status=OrdStatus.NEW, last_qty=0, last_px_ticks=0, cum_qty=0, leaves_qty=1,
                                text="", recv_ns=later))
    assert f.metric("sor_venue_anomalies_total", kind="unknown_child") == 2


def test_a_working_order_is_never_released() -> None:
    f = Fixture(retain_ns=1)
    f.up()
    step = f.order("c1")
    (child,) = [c for c in step.commands if isinstance(c, SendChildOrder)]
    f.report(child, ExecType.NEW, OrdStatus.NEW, 0, T0 + 1)
    f.engine.handle(TimerFired(ts_ns=T0 + 10 * RETIRE_EVERY_NS))
    assert len(f.engine.parents) == 1 and len(f.engine.children) == 1


def test_the_clordid_table_grows_past_its_planned_size() -> None:
    f = Fixture(max_ids=8)
    f.up()
    for i in range(40):
        f.order(f"c{i}")
    for i in range(40):
        (dup,) = f.order(f"c{i}").commands
        assert isinstance(dup, RejectOrder) and dup.reason is OrdRejReason.DUPLICATE_ORDER


def test_a_halt_refuses_new_parents_and_lets_working_ones_finish() -> None:
    f = Fixture()
    f.up()
    step = f.order("working")
    (child,) = [c for c in step.commands if isinstance(c, SendChildOrder)]
    assert f.engine.handle(TradingHalted(reason="journal failed: disk full", ts_ns=T0 + 1)).commands == []
    (rej,) = f.order("new", at=T0 + 2).commands
    assert isinstance(rej, RejectOrder) and rej.reason is OrdRejReason.EXCHANGE_CLOSED
    assert rej.text == "trading halted: journal failed: disk full"
    done = f.report(child, ExecType.TRADE, OrdStatus.FILLED, child.qty, T0 + 3)
    assert any(isinstance(c, ReportToOms) and c.ord_status is OrdStatus.FILLED for c in done.commands)
    (dup,) = f.order("new", at=T0 + 4).commands
    assert isinstance(dup, RejectOrder) and dup.reason is OrdRejReason.DUPLICATE_ORDER, "its ClOrdID is taken"


def test_a_child_the_venue_lost_ends_and_the_oms_is_told() -> None:
    f = Fixture()
    f.up()
    step = f.order("c1", qty=300)
    (child,) = [c for c in step.commands if isinstance(c, SendChildOrder)]
    f.report(child, ExecType.NEW, OrdStatus.NEW, 0, T0 + 1)
    f.report(child, ExecType.TRADE, OrdStatus.PARTIALLY_FILLED, 100, T0 + 2)
    # The venue restarts with an empty book; the OMS cancels.
    cxl = f.engine.handle(CancelRequested(session="OMS", cl_ord_id="x1", orig_cl_ord_id="c1", symbol="AAPL",
                                          side=Side.BUY, recv_ns=T0 + 3)).commands
    assert any(isinstance(c, ReportToOms) and c.ord_status is OrdStatus.PENDING_CANCEL for c in cxl)
    out = f.engine.handle(VenueCancelRejected(venue=child.venue, child_id=child.child_id, text="unknown order",
                                              recv_ns=T0 + 4, reason=CxlRejReason.UNKNOWN_ORDER)).commands
    (done,) = [c for c in out if isinstance(c, ReportToOms)]
    assert done.ord_status is OrdStatus.CANCELED and done.cum_qty == 100 and done.leaves_qty == 0
    assert f"no longer knows child {child.child_id} (filled 100 of 300)" in done.text
    assert f.engine.children[child.child_id].state is OrdStatus.CANCELED
    assert f.metric("sor_venue_anomalies_total", kind="lost_child") == 1


def test_restore_rebuilds_the_engine_from_the_journal(tmp_path: Path) -> None:
    from router.app import restore
    from router.journal import records
    from router.journal.store import SqliteStore

    live = Fixture()
    rows: list[tuple[str, int, bytes]] = []

    def run(ev: EngineEvent) -> Step:
        step = live.engine.handle(ev)
        rows.append((records.EVENT, ev.ts_ns, records.encode(ev)))
        if step.commands:
            rows.append((records.COMMANDS, ev.ts_ns, records.encode(step.commands)))
        if step.decision is not None:
            rows.append((records.DECISION, ev.ts_ns, records.encode(step.decision)))
        return step

    for v in VENUES:
        run(VenueSessionChanged(venue=v, up=True, ts_ns=T0))
    sent = run(NewOrderReceived(session="OMS", cl_ord_id="a", symbol="AAPL", side=Side.BUY, qty=100,
                                ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.DAY, recv_ns=T0 + 1))
    (child,) = [c for c in sent.commands if isinstance(c, SendChildOrder)]
    run(VenueReport(venue=child.venue, child_id=child.child_id, exec_id="v1", exec_type=ExecType.NEW,
                    ord_status=OrdStatus.NEW, last_qty=0, last_px_ticks=0, cum_qty=0, leaves_qty=100, text="",
                    recv_ns=T0 + 2))
    run(VenueReport(venue=child.venue, child_id=child.child_id, exec_id="v2", exec_type=ExecType.TRADE,
                    ord_status=OrdStatus.PARTIALLY_FILLED, last_qty=40, last_px_ticks=PX, cum_qty=40,
                    leaves_qty=60, text="", recv_ns=T0 + 3))
    store = SqliteStore(tmp_path / "j.sqlite")
    sid = store.begin_session(1, "T-", "static", "{}")
    store.write(sid, [(i + 1, k, ts, b) for i, (k, ts, b) in enumerate(rows)])

    class Refuses(StaticWaterfall):
        def decide(self, order: ParentOrder, venues_up: frozenset[str]) -> Decision:
            raise AssertionError("a recorded parent is not decided again")

    fresh = Fixture()
    fresh.engine = Engine(fresh.cfg, Refuses(fresh.cfg), Metrics(VENUES, CollectorRegistry()), "T-",
                          market=fresh.md, stats=fresh.stats)
    assert restore(fresh.engine, store, store.lineage(sid)) == len([r for r in rows if r[0] == records.EVENT])
    assert isinstance(fresh.engine.planner, Refuses), "the live planner is back"
    (p_live,), (p_new,) = live.engine.parents.values(), fresh.engine.parents.values()
    assert (p_new.order_id, p_new.state, p_new.cum_qty, p_new.children) == \
        (p_live.order_id, p_live.state, p_live.cum_qty, p_live.children)
    assert fresh.engine.children[child.child_id].seen_exec_ids == {"v1", "v2"}
    # The resent fill is a duplicate after the restart too; a new one counts.
    resend = VenueReport(venue=child.venue, child_id=child.child_id, exec_id="v2", exec_type=ExecType.TRADE,
                         ord_status=OrdStatus.PARTIALLY_FILLED, last_qty=40, last_px_ticks=PX, cum_qty=40,
                         leaves_qty=60, text="", recv_ns=T0 + 4)
    assert fresh.engine.handle(resend).commands == []
    (dup,) = fresh.engine.handle(NewOrderReceived(session="OMS", cl_ord_id="a", symbol="AAPL", side=Side.BUY, qty=1,
                                                  ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.DAY,
                                                  recv_ns=T0 + 5)).commands
    assert isinstance(dup, RejectOrder) and dup.reason is OrdRejReason.DUPLICATE_ORDER
    store.close()
