"""The sans-IO routing engine (router.engine.Engine), driven for real.

The engine takes decoded events and returns commands, so these tests feed it
the very events the FIX edge would build (NewOrderReceived, VenueReport, ...)
and look at what it answers. Everything is real: the config is parsed from
TOML, the planner is StaticWaterfall, the metrics are a real registry.

Every step goes through ``Harness._run``, which checks the design invariants
on the engine's state and on every ReportToOms it has emitted so far.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from prometheus_client import CollectorRegistry

from router.config import Config, parse_config
from router.domain.commands import (
    CancelChild,
    Command,
    QueryChildStatus,
    QueryVenueOrders,
    RejectCancel,
    RejectOrder,
    ReportToOms,
    SendChildOrder,
)
from router.domain.events import (
    CancelRequested,
    InvalidOrderReceived,
    NewOrderReceived,
    OmsSessionChanged,
    ReplaceRequested,
    Restored,
    VenueCancelRejected,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.orders import ParentOrder
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import (
    TERMINAL_STATUSES,
    CxlRejReason,
    ExecType,
    OrdRejReason,
    OrdStatus,
    OrdType,
    Side,
    TimeInForce,
)
from router.engine import Engine
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.routing.policy import Planner, RulePlanner

S = OrdStatus
BUY, SELL = Side.BUY, Side.SELL
LMT, MKT = OrdType.LIMIT, OrdType.MARKET
DAY, IOC = TimeInForce.DAY, TimeInForce.IOC
PX = 19000
VENUES = ("LIT1", "LIT2", "DARK1")
ACK_TIMEOUT_NS = 1_000 * 1_000_000
T0 = 1_700_000_000_000_000_000

CONFIG_TOML = """
[oms]
port = 9870

[router]
exec_id_prefix = "T-"

[[symbols]]
symbol = "AAPL"
tick_size = "0.01"
lot_size = 1
ref_price = "190.00"

[[symbols]]
symbol = "LOTS"
tick_size = "0.01"
lot_size = 100
ref_price = "50.00"

[[venues]]
name = "LIT1"
kind = "lit"
mic = "XLT1"
port = 9881
target_comp_id = "LIT1"

[[venues]]
name = "LIT2"
kind = "lit"
mic = "XLT2"
port = 9882
target_comp_id = "LIT2"

[[venues]]
name = "DARK1"
kind = "dark"
port = 9883
target_comp_id = "DARK1"

[waterfall]
venues = ["DARK1", "LIT1", "LIT2"]
child_ack_timeout_ms = 1000
"""


def make_config(final_action: str) -> Config:
    rest = 'rest_venue = "LIT1"\n' if final_action == "rest" else ""
    return parse_config(CONFIG_TOML + f'final_action = "{final_action}"\n' + rest, "test.toml")


def of(cmds: list[Command], kind: type) -> list:
    return [c for c in cmds if isinstance(c, kind)]


def one(cmds: list[Command], kind: type) -> Any:
    found = of(cmds, kind)
    assert len(found) == 1, cmds
    return found[0]


# ----------------------------------------------------------------- the OMS view


class OmsView:
    """What the OMS has been told, checked message by message against the
    design invariants for ExecutionReports."""

    def __init__(self) -> None:
        self.exec_ids: set[str] = set()
        self.last: dict[str, ReportToOms] = {}
        self.fills: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.status: dict[str, OrdStatus] = {}
        """Last OrdStatus told per order, by ER or OrderCancelReject."""
        self.reports: list[ReportToOms] = []

    def feed(self, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, ReportToOms):
                self._report(c)
            elif isinstance(c, RejectOrder):
                assert c.exec_id not in self.exec_ids, f"ExecID {c.exec_id} reused"
                self.exec_ids.add(c.exec_id)
                assert c.order_id == "NONE"
                assert c.text
            elif isinstance(c, RejectCancel):
                assert c.text
                if c.order_id != "NONE":
                    prev = self.status.get(c.order_id)
                    assert prev is not None, "cancel reject for an order the OMS never heard of"
                    if prev in TERMINAL_STATUSES:
                        assert c.ord_status is prev, "a terminal order changed status"
                    self.status[c.order_id] = c.ord_status

    def _report(self, r: ReportToOms) -> None:
        self.reports.append(r)
        assert r.exec_id not in self.exec_ids, f"ExecID {r.exec_id} reused"
        self.exec_ids.add(r.exec_id)
        prev = self.last.get(r.order_id)
        if prev is None:
            assert r.exec_type is ExecType.NEW and r.ord_status is S.NEW, "first ER must be the New ack"
        else:
            assert prev.ord_status not in TERMINAL_STATUSES, f"ER after terminal {prev.ord_status}: {r}"
            assert r.cum_qty >= prev.cum_qty, "CumQty decreased"
            # Only a Replaced report changes the terms (and the ClOrdID).
            if r.exec_type is not ExecType.REPLACED:
                assert r.order_qty == prev.order_qty
            assert (r.side, r.symbol, r.session) == (prev.side, prev.symbol, prev.session)
        self.last[r.order_id] = r
        self.status[r.order_id] = r.ord_status
        assert 0 <= r.cum_qty <= r.order_qty
        if r.ord_status in TERMINAL_STATUSES:
            assert r.leaves_qty == 0
        else:
            assert r.cum_qty + r.leaves_qty == r.order_qty
        if r.exec_type is ExecType.TRADE:
            assert r.last_qty > 0
            assert r.last_mkt
            self.fills[r.order_id].append((r.last_qty, r.last_px_ticks))
        else:
            assert r.last_qty == 0
        fills = self.fills[r.order_id]
        assert sum(q for q, _ in fills) == r.cum_qty
        assert sum(q * p for q, p in fills) == r.avg_px_ticks_num
        if r.cum_qty:
            avg = Fraction(r.avg_px_ticks_num, r.cum_qty)
            assert avg == Fraction(sum(q * p for q, p in fills), sum(q for q, _ in fills))
        else:
            assert r.avg_px_ticks_num == 0
        assert (r.ord_status is S.FILLED) == (r.cum_qty == r.order_qty)
        if r.ord_status is S.NEW:
            assert r.cum_qty == 0
        if r.ord_status is S.PARTIALLY_FILLED:
            assert 0 < r.cum_qty < r.order_qty
        expected_status = {ExecType.NEW: S.NEW, ExecType.CANCELED: S.CANCELED,
                           ExecType.PENDING_CANCEL: S.PENDING_CANCEL,
                           ExecType.PENDING_REPLACE: S.PENDING_REPLACE}.get(r.exec_type)
        if expected_status is not None:
            assert r.ord_status is expected_status


# --------------------------------------------------------------------- harness


class Harness:
    def __init__(self, final_action: str = "cancel", up: tuple[str, ...] | list[str] = VENUES,
                 planner: Planner | None = None, cfg: Config | None = None) -> None:
        self.cfg = cfg or make_config(final_action)
        self.registry = CollectorRegistry()
        self.metrics = Metrics([v.name for v in self.cfg.venues], registry=self.registry)
        self.engine = Engine(self.cfg, planner or StaticWaterfall(self.cfg), self.metrics, "T-")
        self.oms = OmsView()
        self.now = T0
        self.out: list[Command] = []
        self._exec = itertools.count(1)
        self.last_event: VenueReport | None = None
        for v in up:
            self.session(v, True)

    # -- plumbing

    def tick(self) -> int:
        self.now += 1_000
        return self.now

    def _run(self, cmds: list[Command]) -> list[Command]:
        self.out.extend(cmds)
        self.oms.feed(cmds)
        check_engine(self)
        return cmds

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def parent(self, cl_ord_id: str, session: str = "OMS") -> ParentOrder:
        """The parent any of whose ClOrdIDs (the current one, or one a
        replace superseded) is ``cl_ord_id``."""
        (p,) = [p for p in self.engine.parents.values()
                if (p.cl_ord_id == cl_ord_id or cl_ord_id in p.prior_cl_ord_ids) and p.session == session]
        return p

    def open_children(self) -> list[str]:
        return sorted(cid for cid, c in self.engine.children.items() if not c.is_terminal)

    # -- OMS side

    def new(self, cl: str, qty: int = 100, *, side: Side = BUY, ord_type: OrdType = LMT, price: int | None = PX,
            tif: TimeInForce = DAY, session: str = "OMS", symbol: str = "AAPL") -> list[Command]:
        ev = NewOrderReceived(session=session, cl_ord_id=cl, symbol=symbol, side=side, qty=qty, ord_type=ord_type,
                              price_ticks=price if ord_type is LMT else None, tif=tif, recv_ns=self.tick())
        return self._run(self.engine.on_new_order(ev))

    def invalid(self, cl: str, *, reason: OrdRejReason = OrdRejReason.UNKNOWN_SYMBOL,
                text: str = "unknown symbol 'ZZZ'", session: str = "OMS") -> list[Command]:
        ev = InvalidOrderReceived(session=session, cl_ord_id=cl, symbol="ZZZ", side=BUY, qty_raw="100",
                                  ord_type_raw="2", reason=reason, text=text, recv_ns=self.tick())
        return self._run(self.engine.on_invalid_order(ev))

    def cancel(self, cl: str, orig: str, *, replace: bool = False, session: str = "OMS") -> list[Command]:
        ev = CancelRequested(session=session, cl_ord_id=cl, orig_cl_ord_id=orig, symbol="AAPL", side=BUY,
                             recv_ns=self.tick(), replace=replace)
        return self._run(self.engine.on_cancel_request(ev))

    def replace(self, cl: str, orig: str, qty: int, *, price: int | None = PX, ord_type: OrdType = LMT,
                tif: TimeInForce = DAY, side: Side = BUY, symbol: str = "AAPL", session: str = "OMS",
                error: str = "") -> list[Command]:
        """An OrderCancelReplaceRequest (35=G) with the new terms."""
        ev = ReplaceRequested(session=session, cl_ord_id=cl, orig_cl_ord_id=orig, symbol=symbol, side=side,
                              qty=qty, ord_type=ord_type, price_ticks=price if ord_type is LMT else None,
                              tif=tif if ord_type is LMT else IOC, recv_ns=self.tick(), error=error)
        return self._run(self.engine.handle(ev).commands)

    # -- venue side

    def session(self, venue: str, up: bool) -> list[Command]:
        return self._run(self.engine.on_venue_session(VenueSessionChanged(venue=venue, up=up, ts_ns=self.tick())))

    def report(self, cid: str, exec_type: ExecType, *, last_qty: int = 0, px: int = PX, exec_id: str | None = None,
               venue: str | None = None, ord_status: OrdStatus = S.NEW) -> list[Command]:
        child = self.engine.children.get(cid)
        ev = VenueReport(
            venue=venue or (child.venue if child else "LIT1"), child_id=cid,
            exec_id=exec_id or f"V-{next(self._exec)}", exec_type=exec_type, ord_status=ord_status,
            last_qty=last_qty, last_px_ticks=px if exec_type is ExecType.TRADE else 0,
            cum_qty=0, leaves_qty=0, text="", recv_ns=self.tick(),
        )
        self.last_event = ev
        return self._run(self.engine.on_venue_report(ev))

    def ack(self, cid: str) -> list[Command]:
        return self.report(cid, ExecType.NEW)

    def status(self, cid: str, ord_status: OrdStatus, cum: int = 0, notional: int = 0,
               exec_id: str = "0") -> list[Command]:
        """The venue's answer to an OrderStatusRequest (150=I) for child ``cid``."""
        child = self.engine.children[cid]
        ev = VenueReport(venue=child.venue, child_id=cid, exec_id=exec_id, exec_type=ExecType.ORDER_STATUS,
                         ord_status=ord_status, last_qty=0, last_px_ticks=0, cum_qty=cum,
                         leaves_qty=0 if ord_status in TERMINAL_STATUSES else child.qty - cum, text="",
                         recv_ns=self.tick(), cum_notional_ticks=notional)
        return self._run(self.engine.on_venue_report(ev))

    def fill(self, cid: str, qty: int, px: int = PX, exec_id: str | None = None) -> list[Command]:
        return self.report(cid, ExecType.TRADE, last_qty=qty, px=px, exec_id=exec_id, ord_status=S.PARTIALLY_FILLED)

    def expire(self, cid: str) -> list[Command]:
        """The venue cancels the child (IOC remainder, or our cancel confirmed)."""
        return self.report(cid, ExecType.CANCELED, ord_status=S.CANCELED)

    def venue_reject(self, cid: str) -> list[Command]:
        return self.report(cid, ExecType.REJECTED, ord_status=S.REJECTED)

    def cancel_rejected(self, cid: str, text: str = "not now",
                        reason: CxlRejReason = CxlRejReason.TOO_LATE_TO_CANCEL) -> list[Command]:
        ev = VenueCancelRejected(venue=self.engine.children[cid].venue, child_id=cid, text=text, recv_ns=self.tick(),
                                 reason=reason)
        return self._run(self.engine.on_venue_cancel_rejected(ev))

    def timer(self, now_ns: int) -> list[Command]:
        self.now = max(self.now, now_ns)
        return self._run(self.engine.on_timer(now_ns))


def check_engine(h: Harness) -> None:
    """Invariants on the engine's own state, checked after every step."""
    eng = h.engine
    open_parents = 0
    for p in eng.parents.values():
        kids = [eng.children[c] for c in p.children]
        assert 0 <= p.cum_qty <= p.qty, "parent over-filled"
        in_flight = sum(k.open_qty for k in kids if not k.is_terminal)
        assert in_flight <= p.leaves_qty, f"children in flight {in_flight} > leaves {p.leaves_qty}"
        assert p.cum_qty == sum(k.cum_qty for k in kids), "a child fill did not reach the parent"
        assert p.notional_ticks == h.oms.last[p.order_id].avg_px_ticks_num
        if p.cancel_note is not None and p.state is S.PENDING_CANCEL and p.pending_cancel_cl_ord_id is None:
            # The router's own cancel (shutdown, OMS disconnect, kill switch):
            # no request, so no PendingCancel report; the OMS hears the
            # outcome (unless it asked to cancel meanwhile).
            assert h.oms.status[p.order_id] in (S.NEW, S.PARTIALLY_FILLED)
        else:
            assert p.state is h.oms.status[p.order_id], "parent state differs from what the OMS was told"
        if not p.is_terminal:
            open_parents += 1
            assert any(not k.is_terminal for k in kids), f"parent {p.order_id} is open with nothing working"
    for c in eng.children.values():
        assert 0 <= c.cum_qty <= c.qty
        assert c.qty > 0
    assert h.metric("sor_open_parents") == open_parents
    assert h.metric("sor_open_children") == sum(not c.is_terminal for c in eng.children.values())


# ============================================================== happy paths


def test_accept_sends_ioc_child_to_first_venue_then_new_er() -> None:
    h = Harness()
    out = h.new("c1", 100)
    # The child goes first so the venue does not wait for the ack's encoding.
    assert [type(c) for c in out] == [SendChildOrder, ReportToOms]
    child, er = out
    assert isinstance(er, ReportToOms) and isinstance(child, SendChildOrder)
    assert er.exec_type is ExecType.NEW and er.ord_status is S.NEW
    assert (er.session, er.cl_ord_id, er.orig_cl_ord_id, er.symbol, er.side) == ("OMS", "c1", None, "AAPL", BUY)
    assert (er.order_qty, er.cum_qty, er.leaves_qty, er.avg_px_ticks_num) == (100, 0, 100, 0)
    assert (er.ord_type, er.price_ticks, er.transact_ns) == (LMT, PX, h.now)
    assert er.order_id.startswith("T-") and er.exec_id.startswith("T-")
    assert child == SendChildOrder(venue="DARK1", child_id=child.child_id, symbol="AAPL", side=BUY, qty=100,
                                   ord_type=LMT, price_ticks=PX, tif=IOC)
    assert child.child_id.startswith("T-")
    assert h.parent("c1").state is S.NEW
    assert h.metric("sor_parent_received_total") == 1
    assert h.metric("sor_child_orders_sent_total", venue="DARK1") == 1
    assert h.metric("sor_open_parents") == 1
    assert h.metric("sor_open_children") == 1


def test_market_sell_parent_sends_market_child() -> None:
    h = Harness()
    out = h.new("c1", 70, side=SELL, ord_type=MKT, tif=IOC)
    child = one(out, SendChildOrder)
    assert (child.venue, child.side, child.qty, child.ord_type, child.price_ticks, child.tif) == (
        "DARK1", SELL, 70, MKT, None, IOC)
    assert one(out, ReportToOms).price_ticks is None


def test_ids_are_unique_and_prefixed() -> None:
    h = Harness()
    h.new("c1")
    h.new("c2")
    ids = [c.child_id for c in of(h.out, SendChildOrder)] + [r.order_id for r in of(h.out, ReportToOms)]
    assert all(i.startswith("T-") for i in ids)
    assert len({c.child_id for c in of(h.out, SendChildOrder)}) == 2
    assert len({r.order_id for r in of(h.out, ReportToOms)}) == 2


def test_child_the_venue_never_saw_is_released_not_canceled_forever() -> None:
    """No ack, and the venue answers our cancel with 'unknown order': the
    child never arrived (lost, or refused at session level). It is treated
    as rejected so the parent's waterfall moves on instead of re-canceling
    every ack timeout."""
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder)
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    one(h.timer(deadline), CancelChild)
    out = h.cancel_rejected(dark.child_id, "unknown order", reason=CxlRejReason.UNKNOWN_ORDER)
    nxt = one(out, SendChildOrder)
    assert (nxt.venue, nxt.qty) == ("LIT1", 100)
    assert h.engine.children[dark.child_id].state is S.REJECTED
    assert h.metric("sor_venue_anomalies_total", kind="lost_child") == 1


def test_fill_that_also_ends_the_ioc_moves_the_residual_on() -> None:
    """Some venues end an IOC in the fill itself (150=F with 39=4) instead
    of a trade report followed by a cancel report."""
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    out = h.report(dark, ExecType.TRADE, last_qty=40, px=19001, ord_status=S.CANCELED)
    er = one(out, ReportToOms)
    assert (er.exec_type, er.cum_qty, er.leaves_qty) == (ExecType.TRADE, 40, 60)
    nxt = one(out, SendChildOrder)
    assert (nxt.venue, nxt.qty) == ("LIT1", 60)
    assert h.engine.children[dark].state is S.CANCELED


def test_partial_fill_then_residual_to_next_venue() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert h.ack(dark) == []
    out = h.fill(dark, 40, px=19001)
    er = one(out, ReportToOms)
    assert (er.exec_type, er.ord_status, er.cum_qty, er.leaves_qty) == (ExecType.TRADE, S.PARTIALLY_FILLED, 40, 60)
    assert (er.last_qty, er.last_px_ticks, er.last_mkt, er.avg_px_ticks_num) == (40, 19001, "DARK1", 40 * 19001)
    assert of(out, SendChildOrder) == [], "the wave's child is still open: nothing new yet"
    out = h.expire(dark)  # the IOC remainder comes back
    assert of(out, ReportToOms) == []
    nxt = one(out, SendChildOrder)
    assert (nxt.venue, nxt.qty, nxt.tif, nxt.price_ticks) == ("LIT1", 60, IOC, PX)
    assert h.metric("sor_child_orders_total", venue="DARK1", outcome="partial_canceled") == 1
    assert h.metric("sor_venue_ack_seconds_count", venue="DARK1") == 1


def test_full_fill_across_two_venues() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 30, px=19002)
    lit1 = one(h.expire(dark), SendChildOrder).child_id
    h.ack(lit1)
    h.fill(lit1, 50, px=19000)
    out = h.fill(lit1, 20, px=18999)
    er = one(out, ReportToOms)
    assert (er.ord_status, er.cum_qty, er.leaves_qty, er.last_mkt) == (S.FILLED, 100, 0, "XLT1")
    assert er.avg_px_ticks_num == 30 * 19002 + 50 * 19000 + 20 * 18999
    assert of(out, SendChildOrder) == []
    p = h.parent("c1")
    assert p.state is S.FILLED and p.is_terminal
    assert h.metric("sor_parent_orders_total", outcome="filled") == 1
    assert h.metric("sor_child_orders_total", venue="LIT1", outcome="filled") == 1
    assert h.metric("sor_fills_total", venue="LIT1") == 2
    assert h.metric("sor_filled_qty_total", venue="LIT1") == 70
    assert h.metric("sor_filled_qty_total", venue="DARK1") == 30
    assert h.metric("sor_open_parents") == 0
    assert h.metric("sor_open_children") == 0
    assert h.engine.next_deadline_ns() is None


def test_single_fill_without_ack() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    out = h.fill(dark, 100)
    assert one(out, ReportToOms).ord_status is S.FILLED
    assert h.engine.children[dark].state is S.FILLED


def test_venue_reject_moves_to_next_venue() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    out = h.venue_reject(dark)
    assert one(out, SendChildOrder).venue == "LIT1"
    assert of(out, ReportToOms) == []
    assert h.metric("sor_child_orders_total", venue="DARK1", outcome="rejected") == 1


def test_odd_lot_parent_is_sent_whole() -> None:
    h = Harness()
    child = one(h.new("c1", 250, symbol="LOTS"), SendChildOrder)
    assert child.qty == 250


# ========================================================= waterfall exhausted


def _walk_waterfall(h: Harness, cl: str, fills: dict[str, int]) -> list[Command]:
    """Let the venues end every IOC child in turn (after the fill given for
    its venue); stop at a resting (DAY) child or when nothing more is sent.
    Returns the last step's commands."""
    out: list[Command] = []
    child = of(h.out, SendChildOrder)[-1]
    for _ in range(10):
        if child.tif is DAY:
            break
        if fills.get(child.venue):
            h.fill(child.child_id, fills[child.venue])
        if h.parent(cl).is_terminal:
            break
        out = h.expire(child.child_id)
        nxt = of(out, SendChildOrder)
        if not nxt:
            break
        child = one(nxt, SendChildOrder)
    return out


def test_cancel_variant_waterfall_exhausted_cancels_parent() -> None:
    h = Harness("cancel")
    h.new("c1", 100)
    out = _walk_waterfall(h, "c1", {})
    assert [c.venue for c in of(h.out, SendChildOrder)] == ["DARK1", "LIT1", "LIT2"]
    er = one(out, ReportToOms)
    assert (er.exec_type, er.ord_status, er.cum_qty, er.leaves_qty) == (ExecType.CANCELED, S.CANCELED, 0, 0)
    assert er.text == "waterfall exhausted: 100 unfilled"
    assert (er.cl_ord_id, er.orig_cl_ord_id) == ("c1", None)
    assert h.metric("sor_parent_orders_total", outcome="canceled") == 1


def test_cancel_variant_partial_then_exhausted() -> None:
    h = Harness("cancel")
    h.new("c1", 100)
    out = _walk_waterfall(h, "c1", {"LIT1": 25, "LIT2": 10})
    er = one(out, ReportToOms)
    assert (er.ord_status, er.cum_qty, er.leaves_qty) == (S.CANCELED, 35, 0)
    assert er.text == "waterfall exhausted: 65 unfilled"
    assert h.metric("sor_parent_orders_total", outcome="partial_canceled") == 1


def test_rest_variant_day_limit_rests_last_wave() -> None:
    h = Harness("rest")
    h.new("c1", 100)
    out = _walk_waterfall(h, "c1", {"DARK1": 10})
    rest = one(out, SendChildOrder)
    assert (rest.venue, rest.tif, rest.ord_type, rest.price_ticks, rest.qty) == ("LIT1", DAY, LMT, PX, 90)
    assert of(out, ReportToOms) == []
    assert [c.tif for c in of(h.out, SendChildOrder)] == [IOC, IOC, IOC, DAY]
    h.ack(rest.child_id)
    assert h.engine.next_deadline_ns() is None, "an acked resting child has no deadline"
    assert h.timer(h.now + 100 * ACK_TIMEOUT_NS) == []
    assert not h.parent("c1").is_terminal
    h.fill(rest.child_id, 40)
    out = h.fill(rest.child_id, 50)
    assert one(out, ReportToOms).ord_status is S.FILLED


def test_rest_variant_resting_child_canceled_by_venue_cancels_parent() -> None:
    h = Harness("rest")
    h.new("c1", 100)
    out = _walk_waterfall(h, "c1", {})
    rest = one(out, SendChildOrder).child_id
    h.ack(rest)
    out = h.expire(rest)
    er = one(out, ReportToOms)
    assert er.ord_status is S.CANCELED and er.text == "waterfall exhausted: 100 unfilled"


@pytest.mark.parametrize(("ord_type", "tif"), [(MKT, DAY), (MKT, IOC), (LMT, IOC)])
def test_rest_variant_only_day_limit_parents_rest(ord_type: OrdType, tif: TimeInForce) -> None:
    h = Harness("rest")
    h.new("c1", 100, ord_type=ord_type, tif=tif)
    out = _walk_waterfall(h, "c1", {})
    assert [c.tif for c in of(h.out, SendChildOrder)] == [IOC, IOC, IOC]
    assert one(out, ReportToOms).ord_status is S.CANCELED


def test_rest_variant_rest_venue_down_cancels() -> None:
    h = Harness("rest")
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    lit1 = one(h.expire(dark), SendChildOrder).child_id
    h.session("LIT1", False)
    lit2 = one(h.expire(lit1), SendChildOrder).child_id
    assert h.engine.children[lit2].venue == "LIT2"
    out = h.expire(lit2)
    assert of(out, SendChildOrder) == []
    assert one(out, ReportToOms).ord_status is S.CANCELED


# ============================================================ venue sessions


def test_down_venue_is_skipped_at_accept() -> None:
    h = Harness(up=("LIT1", "LIT2"))
    assert one(h.new("c1"), SendChildOrder).venue == "LIT1"


def test_venue_going_down_mid_flight_is_skipped() -> None:
    h = Harness()
    dark = one(h.new("c1"), SendChildOrder).child_id
    h.session("LIT1", False)
    assert h.metric("sor_fix_session_up", session="venue:LIT1") == 0
    assert h.metric("sor_fix_session_up", session="venue:LIT2") == 1
    assert one(h.expire(dark), SendChildOrder).venue == "LIT2"


def test_venue_coming_up_after_accept_is_not_used_by_that_plan() -> None:
    h = Harness("cancel", up=("LIT2",))
    lit2 = one(h.new("c1"), SendChildOrder).child_id
    h.session("DARK1", True)
    out = h.expire(lit2)
    assert of(out, SendChildOrder) == []
    assert one(out, ReportToOms).ord_status is S.CANCELED


@pytest.mark.parametrize("final_action", ["rest", "cancel"])
def test_no_venue_up_rejects_exchange_closed(final_action: str) -> None:
    h = Harness(final_action, up=())
    out = h.new("c1", 100)
    rej = one(out, RejectOrder)
    assert len(out) == 1
    assert (rej.reason, rej.cl_ord_id, rej.order_id, rej.qty_raw, rej.ord_type_raw) == (
        OrdRejReason.EXCHANGE_CLOSED, "c1", "NONE", "100", "2")
    assert rej.text
    assert h.engine.parents == {}
    assert h.metric("sor_order_rejects_total", reason="exchange_closed") == 1
    assert h.metric("sor_parent_orders_total", outcome="rejected") == 1
    assert h.metric("sor_open_parents") == 0


def test_all_venues_down_after_accept_cancels_at_next_wave() -> None:
    h = Harness("cancel")
    dark = one(h.new("c1"), SendChildOrder).child_id
    for v in VENUES:
        h.session(v, False)
    out = h.expire(dark)
    assert of(out, SendChildOrder) == []
    assert one(out, ReportToOms).ord_status is S.CANCELED


# ============================================================== duplicates


def test_duplicate_clordid_rejected() -> None:
    h = Harness()
    h.new("c1")
    out = h.new("c1", 50)
    rej = one(out, RejectOrder)
    assert len(out) == 1
    assert (rej.reason, rej.cl_ord_id, rej.qty_raw) == (OrdRejReason.DUPLICATE_ORDER, "c1", "50")
    assert "c1" in rej.text
    assert len(h.engine.parents) == 1
    assert h.parent("c1").qty == 100
    assert h.metric("sor_order_rejects_total", reason="duplicate_order") == 1


def test_same_clordid_on_another_session_is_fine() -> None:
    h = Harness()
    h.new("c1", session="OMS")
    out = h.new("c1", session="OMS2")
    assert of(out, RejectOrder) == []
    assert h.parent("c1", session="OMS2").session == "OMS2"


def test_duplicate_after_exchange_closed_reject() -> None:
    h = Harness(up=())
    h.new("c1")
    h.session("LIT1", True)
    assert one(h.new("c1"), RejectOrder).reason is OrdRejReason.DUPLICATE_ORDER


def test_invalid_order_is_rejected_with_its_own_reason() -> None:
    h = Harness()
    out = h.invalid("c1", reason=OrdRejReason.UNKNOWN_SYMBOL, text="unknown symbol 'ZZZ'")
    rej = one(out, RejectOrder)
    assert (rej.reason, rej.text, rej.symbol, rej.qty_raw, rej.ord_type_raw) == (
        OrdRejReason.UNKNOWN_SYMBOL, "unknown symbol 'ZZZ'", "ZZZ", "100", "2")
    assert h.metric("sor_order_rejects_total", reason="unknown_symbol") == 1


def test_invalid_after_valid_is_duplicate() -> None:
    h = Harness()
    h.new("c1")
    rej = one(h.invalid("c1", reason=OrdRejReason.INCORRECT_QUANTITY, text="bad qty"), RejectOrder)
    assert rej.reason is OrdRejReason.DUPLICATE_ORDER
    assert h.parent("c1").state is S.NEW


def test_valid_after_invalid_is_duplicate() -> None:
    h = Harness()
    h.invalid("c1")
    out = h.new("c1")
    assert one(out, RejectOrder).reason is OrdRejReason.DUPLICATE_ORDER
    assert of(out, SendChildOrder) == []
    assert h.engine.parents == {}


def test_invalid_after_invalid_is_duplicate() -> None:
    h = Harness()
    h.invalid("c1")
    assert one(h.invalid("c1"), RejectOrder).reason is OrdRejReason.DUPLICATE_ORDER


def test_new_order_reusing_a_cancel_clordid_is_duplicate() -> None:
    h = Harness()
    h.new("c1")
    h.cancel("x1", "c1")
    assert one(h.new("x1"), RejectOrder).reason is OrdRejReason.DUPLICATE_ORDER


# ================================================================== cancels


def test_cancel_unknown_order() -> None:
    h = Harness()
    out = h.cancel("x1", "nope")
    rej = one(out, RejectCancel)
    assert len(out) == 1
    assert (rej.reason, rej.cl_ord_id, rej.orig_cl_ord_id, rej.order_id, rej.response_to_replace) == (
        CxlRejReason.UNKNOWN_ORDER, "x1", "nope", "NONE", False)
    assert "nope" in rej.text
    assert h.metric("sor_cancel_rejects_total", reason="unknown_order") == 1


def test_cancel_of_order_on_other_session_is_unknown() -> None:
    h = Harness()
    h.new("c1", session="OMS")
    assert one(h.cancel("x1", "c1", session="OMS2"), RejectCancel).reason is CxlRejReason.UNKNOWN_ORDER
    assert h.parent("c1").state is S.NEW


def test_cancel_of_rejected_order_is_unknown() -> None:
    h = Harness()
    h.invalid("c1")
    assert one(h.cancel("x1", "c1"), RejectCancel).reason is CxlRejReason.UNKNOWN_ORDER


def test_cancel_mid_flight() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    out = h.cancel("x1", "c1")
    assert [type(c) for c in out] == [ReportToOms, CancelChild]
    er, cxl = out
    assert isinstance(er, ReportToOms) and isinstance(cxl, CancelChild)
    assert (er.exec_type, er.ord_status, er.cl_ord_id, er.orig_cl_ord_id) == (
        ExecType.PENDING_CANCEL, S.PENDING_CANCEL, "x1", "c1")
    assert (er.cum_qty, er.leaves_qty) == (0, 100)
    assert (cxl.venue, cxl.child_id, cxl.symbol, cxl.side, cxl.qty) == ("DARK1", dark, "AAPL", BUY, 100)
    assert cxl.cancel_id.startswith("T-") and cxl.cancel_id != dark
    assert h.parent("c1").state is S.PENDING_CANCEL
    out = h.expire(dark)  # the venue confirms the cancel
    er = one(out, ReportToOms)
    assert len(out) == 1, "no further wave after a cancel"
    assert (er.exec_type, er.ord_status, er.cl_ord_id, er.orig_cl_ord_id) == (
        ExecType.CANCELED, S.CANCELED, "x1", "c1")
    assert (er.cum_qty, er.leaves_qty) == (0, 0)
    assert h.metric("sor_parent_orders_total", outcome="canceled") == 1


def test_cancel_after_partial_fill_keeps_cum() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 30)
    lit1 = one(h.expire(dark), SendChildOrder).child_id
    out = h.cancel("x1", "c1")
    assert one(out, ReportToOms).cum_qty == 30
    assert one(out, CancelChild).child_id == lit1, "only the open child is canceled"
    out = h.fill(lit1, 20)  # a fill lands while the cancel is in flight
    er = one(out, ReportToOms)
    assert (er.ord_status, er.cum_qty, er.leaves_qty) == (S.PENDING_CANCEL, 50, 50)
    er = one(h.expire(lit1), ReportToOms)
    assert (er.ord_status, er.cum_qty, er.leaves_qty, er.cl_ord_id) == (S.CANCELED, 50, 0, "x1")
    assert h.metric("sor_parent_orders_total", outcome="partial_canceled") == 1


def test_cancel_before_child_ack() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    one(h.cancel("x1", "c1"), CancelChild)
    assert h.ack(dark) == []  # the ack races the cancel
    assert one(h.expire(dark), ReportToOms).ord_status is S.CANCELED


def test_fill_racing_cancel_completes_parent() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 60)
    lit1 = one(h.expire(dark), SendChildOrder).child_id
    h.cancel("x1", "c1")
    out = h.fill(lit1, 40)
    assert [type(c) for c in out] == [ReportToOms, RejectCancel]
    er, rej = out
    assert isinstance(er, ReportToOms) and isinstance(rej, RejectCancel)
    assert (er.exec_type, er.ord_status, er.cum_qty, er.leaves_qty) == (ExecType.TRADE, S.FILLED, 100, 0)
    assert (rej.reason, rej.cl_ord_id, rej.orig_cl_ord_id, rej.ord_status, rej.order_id) == (
        CxlRejReason.TOO_LATE_TO_CANCEL, "x1", "c1", S.FILLED, er.order_id)
    assert h.metric("sor_cancel_rejects_total", reason="too_late_to_cancel") == 1
    assert h.metric("sor_parent_orders_total", outcome="filled") == 1
    # The venue then refuses our cancel (too late): nothing more for the OMS.
    assert h.cancel_rejected(lit1, "too late to cancel") == []


def test_cancel_of_filled_order_too_late() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 100)
    rej = one(h.cancel("x1", "c1"), RejectCancel)
    assert (rej.reason, rej.ord_status) == (CxlRejReason.TOO_LATE_TO_CANCEL, S.FILLED)
    assert "filled" in rej.text


def test_cancel_of_canceled_order_too_late() -> None:
    h = Harness("cancel")
    h.new("c1", 100)
    _walk_waterfall(h, "c1", {})
    rej = one(h.cancel("x1", "c1"), RejectCancel)
    assert (rej.reason, rej.ord_status) == (CxlRejReason.TOO_LATE_TO_CANCEL, S.CANCELED)


def test_second_cancel_while_pending() -> None:
    h = Harness()
    h.new("c1", 100)
    h.cancel("x1", "c1")
    out = h.cancel("x2", "c1")
    rej = one(out, RejectCancel)
    assert len(out) == 1
    assert (rej.reason, rej.ord_status, rej.cl_ord_id) == (CxlRejReason.ALREADY_PENDING, S.PENDING_CANCEL, "x2")


def test_cancel_with_duplicate_clordid() -> None:
    h = Harness()
    h.new("c1")
    h.new("c2")
    out = h.cancel("c2", "c1")  # reuses another order's ClOrdID
    rej = one(out, RejectCancel)
    assert (rej.reason, rej.ord_status) == (CxlRejReason.DUPLICATE_CLORDID, S.NEW)
    assert h.parent("c1").state is S.NEW
    out = h.cancel("c1", "c1")  # reuses its own
    assert one(out, RejectCancel).reason is CxlRejReason.DUPLICATE_CLORDID


def test_venue_cancel_reject_restores_parent() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.cancel("x1", "c1")
    out = h.cancel_rejected(dark, "order in auction")
    rej = one(out, RejectCancel)
    assert len(out) == 1
    assert (rej.reason, rej.cl_ord_id, rej.orig_cl_ord_id, rej.ord_status, rej.response_to_replace) == (
        CxlRejReason.OTHER, "x1", "c1", S.NEW, False)
    assert "order in auction" in rej.text and "DARK1" in rej.text
    assert h.parent("c1").state is S.NEW
    assert h.engine.children[dark].state is S.NEW
    assert h.metric("sor_cancel_rejects_total", reason="other") == 1
    # The order is still live: fills keep coming and the OMS may cancel again.
    er = one(h.fill(dark, 10), ReportToOms)
    assert er.ord_status is S.PARTIALLY_FILLED
    out = h.cancel("x2", "c1")
    assert one(out, CancelChild).child_id == dark
    assert one(h.expire(dark), ReportToOms).ord_status is S.CANCELED


def test_venue_cancel_reject_restores_partially_filled() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 30)
    h.cancel("x1", "c1")
    rej = one(h.cancel_rejected(dark), RejectCancel)
    assert rej.ord_status is S.PARTIALLY_FILLED
    assert h.parent("c1").state is S.PARTIALLY_FILLED


def test_refused_cancel_of_unacked_child_keeps_ack_watchdog() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.cancel("x1", "c1")
    one(h.cancel_rejected(dark), RejectCancel)
    assert h.engine.children[dark].state is S.PENDING_NEW
    deadline = h.engine.next_deadline_ns()
    assert deadline == h.now + ACK_TIMEOUT_NS
    assert h.ack(dark) == [], "the ack still in flight is legal"
    assert h.engine.children[dark].state is S.NEW
    assert h.metric("sor_illegal_transitions_total", kind="child") == 0
    assert h.engine.next_deadline_ns() is None


def test_refused_cancel_of_unacked_child_times_out_again() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.cancel("x1", "c1")
    one(h.cancel_rejected(dark), RejectCancel)
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    assert one(h.timer(deadline), CancelChild).child_id == dark
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 1


def test_refused_cancel_of_acked_child_leaves_it_to_the_venue() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.cancel("x1", "c1")
    assert h.engine.next_deadline_ns() is not None, "the cancel has a watchdog"
    one(h.cancel_rejected(dark), RejectCancel)
    assert h.engine.next_deadline_ns() is None
    assert h.timer(h.now + 10 * ACK_TIMEOUT_NS) == []


def test_venue_cancel_reject_for_unknown_child() -> None:
    h = Harness()
    ev = VenueCancelRejected(venue="LIT1", child_id="T-nope", text="?", recv_ns=h.tick())
    assert h._run(h.engine.on_venue_cancel_rejected(ev)) == []
    assert h.metric("sor_venue_anomalies_total", kind="unknown_child") == 1


def test_venue_cancel_reject_when_child_not_pending_cancel_is_ignored() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert h.cancel_rejected(dark) == []
    assert h.parent("c1").state is S.NEW


def test_order_keeps_routing_after_cancel_was_refused() -> None:
    h = Harness("cancel")
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.cancel("x1", "c1")
    assert one(h.cancel_rejected(dark), RejectCancel).ord_status is S.NEW
    out = h.expire(dark)  # the IOC child ends unfilled; the order is still working
    assert of(out, ReportToOms) == []
    assert one(out, SendChildOrder).venue == "LIT1"


def test_a_journaled_legacy_replace_is_still_refused_as_replace() -> None:
    # Journals from before ReplaceRequested recorded a 35=G as a
    # CancelRequested(replace=True), which the engine refused; a replay of
    # such a journal must answer it the same way.
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    out = h.cancel("r1", "c1", replace=True)
    assert of(out, CancelChild) == [], "a replace must not pull the order"
    rej = one(out, RejectCancel)
    assert len(out) == 1
    assert (rej.cl_ord_id, rej.orig_cl_ord_id, rej.response_to_replace, rej.ord_status, rej.reason) == (
        "r1", "c1", True, S.NEW, CxlRejReason.OTHER)
    assert "not supported" in rej.text
    assert h.parent("c1").state is S.NEW
    # The order keeps working untouched and can still be canceled.
    assert one(h.fill(dark, 10), ReportToOms).ord_status is S.PARTIALLY_FILLED
    assert one(h.cancel("x1", "c1"), CancelChild).child_id == dark
    assert one(h.cancel("r1", "c1"), RejectCancel).reason is CxlRejReason.DUPLICATE_CLORDID


def test_cancel_replace_while_pending_cancel_or_terminal_is_answered_as_replace() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.cancel("x1", "c1")
    rej = one(h.cancel("r1", "c1", replace=True), RejectCancel)
    assert (rej.response_to_replace, rej.ord_status) == (True, S.PENDING_CANCEL)
    h.expire(dark)
    rej = one(h.cancel("r2", "c1", replace=True), RejectCancel)
    assert (rej.response_to_replace, rej.ord_status) == (True, S.CANCELED)


def test_cancel_replace_of_unknown_order_answers_as_replace() -> None:
    h = Harness()
    rej = one(h.cancel("r1", "nope", replace=True), RejectCancel)
    assert rej.reason is CxlRejReason.UNKNOWN_ORDER
    assert rej.response_to_replace is True


def test_plain_cancel_rejects_are_not_replace_responses() -> None:
    h = Harness()
    assert one(h.cancel("x1", "nope"), RejectCancel).response_to_replace is False


# ========================================================== venue anomalies


def test_duplicate_exec_id_is_reported_once() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert len(of(h.fill(dark, 40, exec_id="V-dup"), ReportToOms)) == 1
    assert h.fill(dark, 40, exec_id="V-dup") == []  # resend after a reconnect
    assert h.parent("c1").cum_qty == 40
    assert h.metric("sor_venue_anomalies_total", kind="duplicate_exec_id") == 1
    assert h.metric("sor_fills_total", venue="DARK1") == 1
    assert sum(r.last_qty for r in of(h.out, ReportToOms)) == 40


def test_logon_asks_the_status_of_every_open_child_there() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.new("c2", 100)
    h.session("DARK1", False)
    out = h.session("DARK1", True)
    assert sorted(q.child_id for q in of(out, QueryChildStatus)) == sorted(
        cid for cid, c in h.engine.children.items() if c.venue == "DARK1")
    assert dark in [q.child_id for q in of(out, QueryChildStatus)]
    assert h.session("LIT1", True) == [] or not of(h.session("LIT1", True), QueryChildStatus)


def test_status_with_fills_the_router_missed_reports_them_once_with_exact_avg_px() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.fill(dark, 10, px=PX)
    # While the session was down the venue filled 30 at PX+1 and 20 at PX+2.
    h.session("DARK1", False)
    h.session("DARK1", True)
    notional = 10 * PX + 30 * (PX + 1) + 20 * (PX + 2)
    ers = of(h.status(dark, S.PARTIALLY_FILLED, cum=60, notional=notional), ReportToOms)
    assert [e.exec_type for e in ers] == [ExecType.TRADE, ExecType.TRADE]
    assert sum(e.last_qty for e in ers) == 50
    er = ers[-1]
    assert (er.cum_qty, er.leaves_qty) == (60, 40)
    assert er.avg_px_ticks_num == notional, "AvgPx is the venue's, to the tick-share"
    assert all("reconciled" in e.text for e in ers)
    assert h.metric("sor_venue_anomalies_total", kind="missed_fill") == 1
    # The same answer again (a second logon) books nothing more.
    h.session("DARK1", False)
    h.session("DARK1", True)
    assert h.status(dark, S.PARTIALLY_FILLED, cum=60, notional=notional) == []
    assert h.parent("c1").cum_qty == 60


def test_status_filled_while_down_finishes_the_parent() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.session("DARK1", False)
    h.session("DARK1", True)
    out = h.status(dark, S.FILLED, cum=100, notional=100 * PX)
    er = one(out, ReportToOms)
    assert (er.ord_status, er.cum_qty, er.last_qty) == (S.FILLED, 100, 100)
    assert h.engine.children[dark].state is S.FILLED
    assert h.engine.open_children == 0


def test_status_unknown_ends_the_child_and_the_waterfall_goes_on() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.session("DARK1", False)
    h.session("DARK1", True)
    out = h.status(dark, S.REJECTED)  # 39=8 103=5: the venue lost it
    assert h.engine.children[dark].is_terminal
    assert one(out, SendChildOrder).venue == "LIT1", "the residual is routed on"
    assert h.metric("sor_venue_anomalies_total", kind="lost_child") == 1


def test_status_working_acks_a_child_whose_ack_was_missed() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.session("DARK1", False)
    h.session("DARK1", True)
    assert h.status(dark, S.NEW) == []
    child = h.engine.children[dark]
    assert child.state is S.NEW and child.acked_ns is not None


def test_unanswered_status_request_cancels_the_child() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.session("DARK1", False)
    h.session("DARK1", True)
    due = h.engine.next_timer_ns()
    assert due is not None
    out = h.timer(due)
    assert one(out, CancelChild).child_id == dark
    assert h.metric("sor_venue_anomalies_total", kind="status_timeout") == 1


def test_a_status_question_dies_with_its_session_and_a_restore() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.session("DARK1", False)
    h.session("DARK1", True)
    h.session("DARK1", False)  # no answer will come on this session
    assert h.engine.next_timer_ns() is None or h.timer(h.engine.next_timer_ns() or 0) == []
    h.session("DARK1", True)
    h.engine.handle(Restored(id_gap=10, ts_ns=h.tick()))
    assert h.engine.next_timer_ns() is None, "the crashed process's questions are not timed out"


def test_restored_children_wait_for_their_venues_word() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert h.engine.expect_reconciliation() == 1
    h.session("DARK1", False)
    h.session("DARK1", True)
    assert h.engine.unreconciled == 1
    h.status(dark, S.NEW)
    assert h.engine.unreconciled == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_oms_disconnect_cancels_that_sessions_parents_when_configured(enabled: bool) -> None:
    base = make_config("rest")
    cfg = msgspec.structs.replace(base, oms=msgspec.structs.replace(base.oms, cancel_on_disconnect=enabled))
    h = Harness(cfg=cfg)
    mine = one(h.new("c1", 100), SendChildOrder).child_id
    theirs = one(h.new("c2", 100, session="OMS2"), SendChildOrder).child_id
    h.ack(mine)
    h.fill(mine, 30)
    out = h._run(h.engine.handle(OmsSessionChanged(session="OMS", up=False, ts_ns=h.tick())).commands)
    if not enabled:
        assert out == []
        return
    assert [c.child_id for c in of(out, CancelChild)] == [mine], "only the dropped session's parents"
    assert theirs not in [c.child_id for c in of(out, CancelChild)]
    final = one(h.expire(mine), ReportToOms)
    assert (final.ord_status, final.cum_qty) == (S.CANCELED, 30)
    assert "cancel_on_disconnect" in final.text
    # A logon changes nothing.
    assert h.engine.handle(OmsSessionChanged(session="OMS", up=True, ts_ns=h.tick())).commands == []


def test_a_restored_engine_never_reuses_an_id_and_sweeps_each_venue_once() -> None:
    h = Harness()
    first = one(h.new("c1", 100), SendChildOrder).child_id
    h.engine.handle(Restored(id_gap=1000, ts_ns=h.tick()))
    h.session("DARK1", False)
    out = h.session("DARK1", True)
    (sweep,) = of(out, QueryVenueOrders)
    assert sweep.venue == "DARK1"
    h.session("DARK1", False)
    assert of(h.session("DARK1", True), QueryVenueOrders) == [], "once per venue after a restore"
    nxt = one(h.new("c2", 100), SendChildOrder).child_id
    assert int(nxt.removeprefix("T-C")) > int(first.removeprefix("T-C")) + 1000


def _status(h: Harness, cid: str, venue: str, st: OrdStatus, cum: int = 0, leaves: int = 100,
            symbol: str = "AAPL") -> list[Command]:
    ev = VenueReport(venue=venue, child_id=cid, exec_id="0", exec_type=ExecType.ORDER_STATUS, ord_status=st,
                     last_qty=0, last_px_ticks=0, cum_qty=cum, leaves_qty=leaves, text="", recv_ns=h.tick(),
                     symbol=symbol, side=BUY)
    return h._run(h.engine.on_venue_report(ev))


def test_an_order_a_venue_holds_that_no_parent_owns_is_canceled() -> None:
    h = Harness()
    out = _status(h, "T-C77", "LIT1", S.PARTIALLY_FILLED, cum=40, leaves=60)
    cancel = one(out, CancelChild)
    assert (cancel.venue, cancel.child_id, cancel.qty, cancel.symbol) == ("LIT1", "T-C77", 100, "AAPL")
    assert h.metric("sor_venue_anomalies_total", kind="orphan_child") == 1
    assert h.metric("sor_venue_anomalies_total", kind="orphan_fill") == 1
    assert _status(h, "T-C77", "LIT1", S.PARTIALLY_FILLED, cum=40, leaves=60) == [], "canceled once"
    # The venue's answer to that cancel ends it quietly; nothing reaches the OMS.
    assert h.report("T-C77", ExecType.CANCELED, ord_status=S.CANCELED, venue="LIT1") == []
    # Someone else's order, or one already done, is left alone.
    assert _status(h, "X-C5", "LIT1", S.NEW) == []
    assert _status(h, "T-C78", "LIT1", S.FILLED, cum=100, leaves=0) == []


def test_same_exec_id_on_different_children_is_not_a_duplicate() -> None:
    h = Harness()
    a = one(h.new("c1", 100), SendChildOrder).child_id
    b = one(h.new("c2", 100), SendChildOrder).child_id
    assert len(of(h.fill(a, 10, exec_id="V-1"), ReportToOms)) == 1
    assert len(of(h.fill(b, 10, exec_id="V-1"), ReportToOms)) == 1


def test_overfill_is_capped_and_counted() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 70)
    out = h.fill(dark, 50)  # only 30 open
    er = one(out, ReportToOms)
    assert (er.last_qty, er.cum_qty, er.ord_status) == (30, 100, S.FILLED)
    assert h.parent("c1").cum_qty == 100
    assert h.metric("sor_venue_anomalies_total", kind="overfill") == 1
    assert h.metric("sor_filled_qty_total", venue="DARK1") == 100
    # Yet another fill on the now filled child: nothing reaches the OMS.
    assert h.fill(dark, 5) == []
    assert h.metric("sor_venue_anomalies_total", kind="overfill") == 2


def test_overfill_of_a_partial_child_caps_at_child_open_qty() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 60)
    lit1 = one(h.expire(dark), SendChildOrder).child_id
    er = one(h.fill(lit1, 500), ReportToOms)
    assert (er.last_qty, er.cum_qty, er.leaves_qty) == (40, 100, 0)


def test_unknown_child_is_counted() -> None:
    h = Harness()
    h.new("c1", 100)
    assert h.report("T-nope", ExecType.TRADE, last_qty=10, venue="LIT1") == []
    assert h.metric("sor_venue_anomalies_total", kind="unknown_child") == 1


def test_report_from_wrong_venue_is_unknown_child() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert h.report(dark, ExecType.TRADE, last_qty=10, venue="LIT2") == []
    assert h.metric("sor_venue_anomalies_total", kind="unknown_child") == 1
    assert h.parent("c1").cum_qty == 0


def test_zero_fill_is_counted() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert h.fill(dark, 0) == []
    assert h.metric("sor_venue_anomalies_total", kind="zero_fill") == 1


def test_fill_after_child_canceled_is_illegal_and_counted() -> None:
    h = Harness("cancel")
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.fill(dark, 10)
    h.expire(dark)
    assert h.fill(dark, 10) == []
    assert h.metric("sor_illegal_transitions_total", kind="child") == 1
    assert h.parent("c1").cum_qty == 10


def test_pending_cancel_report_from_venue_changes_nothing() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.cancel("x1", "c1")
    assert h.report(dark, ExecType.PENDING_CANCEL, ord_status=S.PENDING_CANCEL) == []
    assert h.engine.children[dark].state is S.PENDING_CANCEL


def test_duplicate_ack_is_illegal_and_counted() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    assert h.ack(dark) == []
    assert h.metric("sor_illegal_transitions_total", kind="child") == 1


# ================================================================== timers


def test_child_ack_timeout_cancels_child() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    sent_ns = h.now
    deadline = h.engine.next_deadline_ns()
    assert deadline == sent_ns + ACK_TIMEOUT_NS
    assert h.timer(deadline - 1) == []
    out = h.timer(deadline)
    cxl = one(out, CancelChild)
    assert len(out) == 1
    assert (cxl.child_id, cxl.venue) == (dark, "DARK1")
    assert h.engine.children[dark].state is S.PENDING_CANCEL
    assert h.parent("c1").state is S.NEW, "a child timeout is not an OMS cancel"
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 1
    # The cancel itself goes unanswered: ask again.
    deadline2 = h.engine.next_deadline_ns()
    assert deadline2 == deadline + ACK_TIMEOUT_NS
    again = one(h.timer(deadline2), CancelChild)
    assert again.child_id == dark and again.cancel_id != cxl.cancel_id
    assert h.metric("sor_venue_anomalies_total", kind="cancel_timeout") == 1
    # The venue finally confirms: the waterfall moves on.
    assert one(h.expire(dark), SendChildOrder).venue == "LIT1"


def test_ack_clears_the_ack_deadline() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    h.ack(dark)
    assert h.engine.next_deadline_ns() is None
    assert h.timer(deadline + 10 * ACK_TIMEOUT_NS) == []


def test_next_deadline_is_the_earliest_open_child() -> None:
    h = Harness()
    a = one(h.new("c1", 100), SendChildOrder).child_id
    first = h.engine.next_deadline_ns()
    one(h.new("c2", 100), SendChildOrder)
    second = h.now + ACK_TIMEOUT_NS
    assert h.engine.next_deadline_ns() == first
    h.fill(a, 100)
    assert h.engine.next_deadline_ns() == second
    out = h.timer(second + 5)
    assert len(of(out, CancelChild)) == 1


def test_timer_with_nothing_due() -> None:
    h = Harness()
    assert h.engine.next_deadline_ns() is None
    assert h.timer(h.now + 10 * ACK_TIMEOUT_NS) == []


def test_late_ack_keeps_cancel_watchdog() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    one(h.timer(deadline), CancelChild)  # no ack in time: cancel sent
    assert h.ack(dark) == []  # the ack was just slow
    cancel_deadline = h.engine.next_deadline_ns()
    assert cancel_deadline == deadline + ACK_TIMEOUT_NS
    assert one(h.timer(cancel_deadline), CancelChild).child_id == dark


# ============================================== custom planners (the seam)


class _Planner(RulePlanner):
    name = "test"

    def __init__(self, waves: tuple[Wave, ...]) -> None:
        self.waves = waves

    def plan(self, order: ParentOrder, venues_up: frozenset[str]) -> Plan:
        if not venues_up:
            return Plan(waves=(), name="test")
        return Plan(waves=self.waves, name="test")


def test_spray_wave_splits_by_weight_and_waits_for_all_slices() -> None:
    planner = _Planner((
        Wave(slices=(Slice(venue="LIT1", weight=3.0, tif=IOC, limit_ticks=PX),
                     Slice(venue="LIT2", weight=1.0, tif=IOC, limit_ticks=PX))),
        Wave(slices=(Slice(venue="DARK1", tif=IOC, limit_ticks=PX),)),
    ))
    h = Harness("cancel", planner=planner)
    out = h.new("c1", 100)
    a, b = of(out, SendChildOrder)
    assert (a.venue, a.qty, b.venue, b.qty) == ("LIT1", 75, "LIT2", 25)
    assert of(h.fill(a.child_id, 50), SendChildOrder) == [], "LIT2 still working"
    assert of(h.fill(b.child_id, 5), SendChildOrder) == []
    out = h.expire(a.child_id)
    assert of(out, SendChildOrder) == []
    dark = one(h.expire(b.child_id), SendChildOrder)
    assert (dark.venue, dark.qty) == ("DARK1", 45)
    assert h.parent("c1").state is S.PARTIALLY_FILLED


def test_spray_wave_next_wave_after_all_done() -> None:
    planner = _Planner((
        Wave(slices=(Slice(venue="LIT1", tif=IOC, limit_ticks=PX), Slice(venue="LIT2", tif=IOC, limit_ticks=PX))),
        Wave(slices=(Slice(venue="DARK1", tif=IOC, limit_ticks=None),)),
    ))
    h = Harness("cancel", planner=planner)
    a, b = of(h.new("c1", 101), SendChildOrder)
    assert (a.qty, b.qty) == (51, 50)
    h.fill(a.child_id, 20)
    assert of(h.expire(a.child_id), SendChildOrder) == [], "LIT2 is still working"
    dark = one(h.fill(b.child_id, 50), SendChildOrder)
    assert (dark.venue, dark.qty, dark.ord_type) == ("DARK1", 31, MKT)


def test_cancel_pulls_every_open_slice() -> None:
    planner = _Planner((
        Wave(slices=(Slice(venue="LIT1", tif=IOC, limit_ticks=PX), Slice(venue="LIT2", tif=IOC, limit_ticks=PX),
                     Slice(venue="DARK1", tif=IOC, limit_ticks=PX))),
    ))
    h = Harness("cancel", planner=planner)
    a, b, c = of(h.new("c1", 90), SendChildOrder)
    h.fill(c.child_id, 30)
    out = h.cancel("x1", "c1")
    assert sorted(x.child_id for x in of(out, CancelChild)) == sorted([a.child_id, b.child_id])
    assert of(h.expire(a.child_id), ReportToOms) == []
    er = one(h.expire(b.child_id), ReportToOms)
    assert (er.ord_status, er.cum_qty) == (S.CANCELED, 30)


def test_zero_weight_slices_get_nothing_and_empty_waves_are_skipped() -> None:
    planner = _Planner((
        Wave(slices=(Slice(venue="LIT1", weight=0.0, tif=IOC, limit_ticks=PX),)),
        Wave(slices=(Slice(venue="LIT2", weight=1.0, tif=IOC, limit_ticks=PX),
                     Slice(venue="DARK1", weight=0.0, tif=IOC, limit_ticks=PX))),
    ))
    h = Harness("cancel", planner=planner)
    sent = of(h.new("c1", 100), SendChildOrder)
    assert [(c.venue, c.qty) for c in sent] == [("LIT2", 100)]


def test_slice_timeout_before_ack_cancels_child() -> None:
    planner = _Planner((Wave(slices=(Slice(venue="DARK1", tif=DAY, limit_ticks=PX, timeout_ms=50),)),))
    h = Harness("cancel", planner=planner)
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    assert h.engine.next_deadline_ns() == h.now + 50 * 1_000_000
    assert one(h.timer(h.now + 50 * 1_000_000), CancelChild).child_id == dark


def test_timed_slice_is_canceled_after_ack() -> None:
    planner = _Planner((
        Wave(slices=(Slice(venue="DARK1", tif=DAY, limit_ticks=PX, timeout_ms=50),)),
        Wave(slices=(Slice(venue="LIT1", tif=IOC, limit_ticks=PX),)),
    ))
    h = Harness("cancel", planner=planner)
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    sent_ns = h.now
    h.ack(dark)
    assert h.engine.next_deadline_ns() == sent_ns + 50 * 1_000_000
    assert h.timer(sent_ns + 50 * 1_000_000 - 1) == []
    assert one(h.timer(sent_ns + 50 * 1_000_000), CancelChild).child_id == dark
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 0, "a slice expiry is routine"
    lit1 = one(h.expire(dark), SendChildOrder)
    assert (lit1.venue, lit1.qty) == ("LIT1", 100)


def test_slice_expiry_longer_than_ack_timeout_still_watches_the_ack() -> None:
    planner = _Planner((Wave(slices=(Slice(venue="DARK1", tif=DAY, limit_ticks=PX, timeout_ms=60_000),)),))
    h = Harness("cancel", planner=planner)
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    sent_ns = h.now
    assert h.engine.next_deadline_ns() == sent_ns + ACK_TIMEOUT_NS, "the ack watchdog comes first"
    h.ack(dark)
    assert h.engine.next_deadline_ns() == sent_ns + 60_000 * 1_000_000
    assert h.timer(sent_ns + ACK_TIMEOUT_NS) == []


def test_refused_cancel_keeps_slice_expiry() -> None:
    planner = _Planner((
        Wave(slices=(Slice(venue="DARK1", tif=DAY, limit_ticks=PX, timeout_ms=50),)),
        Wave(slices=(Slice(venue="LIT1", tif=IOC, limit_ticks=PX),)),
    ))
    h = Harness("cancel", planner=planner)
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    expire_ns = h.now + 50 * 1_000_000
    h.ack(dark)
    h.cancel("x1", "c1")
    one(h.cancel_rejected(dark), RejectCancel)
    assert h.engine.next_deadline_ns() == expire_ns
    assert one(h.timer(expire_ns), CancelChild).child_id == dark


def test_slice_expiry_before_ack_deadline_is_not_an_ack_timeout() -> None:
    planner = _Planner((Wave(slices=(Slice(venue="DARK1", tif=DAY, limit_ticks=PX, timeout_ms=50),)),))
    h = Harness("cancel", planner=planner)
    one(h.new("c1", 100), SendChildOrder)
    one(h.timer(h.now + 50 * 1_000_000), CancelChild)
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 0


# ============================================== randomized interleavings


class EngineMachine(RuleBasedStateMachine):
    """Random interleavings of OMS orders and cancels, venue acks, fills,
    over-fills, resends, expiries, rejects, cancel rejects, session changes and
    timer ticks. Harness._run checks every invariant after each step; the
    rules check that each answer is the one the step calls for."""

    h: Harness

    @initialize(final=st.sampled_from(["rest", "cancel"]), down=st.sets(st.sampled_from(VENUES), max_size=2),
                planner=st.sampled_from(["static", "spray"]))
    def setup(self, final: str, down: set[str], planner: str) -> None:
        # "spray": a two-venue wave, then a timed resting dark slice, then a
        # market sweep, to exercise multi-slice waves and slice expiries.
        custom = _Planner((
            Wave(slices=(Slice(venue="LIT1", weight=2.0, tif=IOC, limit_ticks=PX),
                         Slice(venue="LIT2", weight=1.0, tif=IOC, limit_ticks=PX))),
            Wave(slices=(Slice(venue="DARK1", tif=DAY, limit_ticks=PX, timeout_ms=300),)),
            Wave(slices=(Slice(venue="LIT2", tif=IOC, limit_ticks=None),)),
        ))
        self.h = Harness(final, up=[v for v in VENUES if v not in down],
                         planner=custom if planner == "spray" else None)
        self.n = 0
        self.cls: list[tuple[str, str]] = []
        self.fill_reports: list[VenueReport] = []
        self.expected_fill_qty: dict[str, int] = defaultdict(int)

    def _open(self, *states: OrdStatus) -> list[str]:
        return [cid for cid in self.h.open_children() if not states or self.h.engine.children[cid].state in states]

    def _terminal_children(self) -> list[str]:
        return sorted(cid for cid, c in self.h.engine.children.items() if c.is_terminal)

    # -------------------------------------------------------------- OMS

    @rule(qty=st.integers(min_value=1, max_value=400), side=st.sampled_from([BUY, SELL]),
          kind=st.sampled_from(["lmt_day", "lmt_ioc", "mkt"]), session=st.sampled_from(["OMS", "OMS2"]))
    def new_order(self, qty: int, side: Side, kind: str, session: str) -> None:
        self.n += 1
        cl = f"c{self.n}"
        ord_type = MKT if kind == "mkt" else LMT
        tif = IOC if kind == "lmt_ioc" else DAY
        out = self.h.new(cl, qty, side=side, ord_type=ord_type, tif=tif, session=session)
        self.cls.append((session, cl))
        if not self.h.engine.venues_up:
            assert one(out, RejectOrder).reason is OrdRejReason.EXCHANGE_CLOSED
            return
        reports = of(out, ReportToOms)
        # Children lead; the New ack is the first report the OMS gets.
        assert reports and reports[0].exec_type is ExecType.NEW
        assert all(isinstance(c, SendChildOrder) for c in out[:out.index(reports[0])])
        sent = of(out, SendChildOrder)
        assert sent and sum(c.qty for c in sent) == qty
        assert all(c.venue in self.h.engine.venues_up for c in sent)

    @precondition(lambda self: self.cls)
    @rule(data=st.data())
    def duplicate_order(self, data: st.DataObject) -> None:
        session, cl = data.draw(st.sampled_from(self.cls))
        if data.draw(st.booleans()):
            out = self.h.new(cl, 10, session=session)
        else:
            out = self.h.invalid(cl, session=session)
        assert one(out, RejectOrder).reason is OrdRejReason.DUPLICATE_ORDER
        assert len(out) == 1

    @rule(data=st.data())
    def oms_cancel(self, data: st.DataObject) -> None:
        self.n += 1
        if not self.cls or data.draw(st.integers(0, 9)) == 0:
            out = self.h.cancel(f"x{self.n}", "unknown")
            assert one(out, RejectCancel).reason is CxlRejReason.UNKNOWN_ORDER
            return
        session, cl = data.draw(st.sampled_from(self.cls))
        parent = self._named(session, cl)
        before = parent.state if parent else None
        # The router canceling it (a shutdown) with no cancel of the OMS's own yet.
        router_cancel = parent is not None and parent.cancel_note is not None and \
            parent.pending_cancel_cl_ord_id is None
        to_cancel = sorted(c for c in parent.children if self.h.engine.children[c].state not in
                           (*TERMINAL_STATUSES, S.PENDING_CANCEL)) if parent else []
        out = self.h.cancel(f"x{self.n}", cl, session=session)
        if parent is None:
            assert one(out, RejectCancel).reason is CxlRejReason.UNKNOWN_ORDER
        elif before in TERMINAL_STATUSES:
            assert one(out, RejectCancel).reason is CxlRejReason.TOO_LATE_TO_CANCEL
        elif before is S.PENDING_CANCEL and router_cancel:
            # Taken: it ends with the router's own.
            assert one(out, ReportToOms).exec_type is ExecType.PENDING_CANCEL
        elif before is S.PENDING_CANCEL:
            assert one(out, RejectCancel).reason is CxlRejReason.ALREADY_PENDING
        elif before is S.PENDING_REPLACE:
            # The cancel wins: the replace is refused, then the cancel goes on.
            rej = one(out, RejectCancel)
            assert rej.response_to_replace and out.index(rej) == 0
            assert isinstance(out[1], ReportToOms) and out[1].exec_type is ExecType.PENDING_CANCEL
        else:
            assert isinstance(out[0], ReportToOms) and out[0].exec_type is ExecType.PENDING_CANCEL
            assert of(out, SendChildOrder) == []
            assert sorted(c.child_id for c in of(out, CancelChild)) == to_cancel, "every working child is pulled"

    def _named(self, session: str, cl: str) -> ParentOrder | None:
        """The parent ``cl`` names: its ClOrdID or one a replace superseded."""
        matches = [p for p in self.h.engine.parents.values()
                   if p.session == session and (p.cl_ord_id == cl or cl in p.prior_cl_ord_ids)]
        return matches[0] if matches else None

    @precondition(lambda self: self.cls)
    @rule(data=st.data(), dq=st.integers(-150, 150), dpx=st.sampled_from([0, 0, 0, -3, 2]),
          to_market=st.integers(0, 9))
    def oms_replace(self, data: st.DataObject, dq: int, dpx: int, to_market: int) -> None:
        """A cancel/replace racing whatever the venues do next: quantity
        down or up, a new price, limit to market."""
        self.n += 1
        session, cl = data.draw(st.sampled_from(self.cls))
        parent = self._named(session, cl)
        if parent is None:
            return
        before = parent.state
        router_cancel = parent.cancel_note is not None and parent.pending_cancel_cl_ord_id is None
        qty = max(1, parent.qty + dq)
        mkt = to_market == 0
        px = (parent.price_ticks or PX) + dpx
        out = self.h.replace(f"r{self.n}", cl, qty, side=parent.side, session=session,
                             ord_type=MKT if mkt else LMT, price=None if mkt else px, tif=parent.tif)
        self.cls.append((session, f"r{self.n}"))
        if before in TERMINAL_STATUSES:
            assert one(out, RejectCancel).reason is CxlRejReason.TOO_LATE_TO_CANCEL
        elif before is S.PENDING_CANCEL and router_cancel:
            assert "the router is canceling this order" in one(out, RejectCancel).text
        elif before is S.PENDING_CANCEL or before is S.PENDING_REPLACE:
            assert one(out, RejectCancel).reason is CxlRejReason.ALREADY_PENDING
        elif qty < parent.cum_qty:
            assert one(out, RejectCancel).reason is CxlRejReason.OTHER
        else:
            first = out[0]
            assert isinstance(first, ReportToOms) and first.exec_type is ExecType.PENDING_REPLACE
            replaced = [r for r in of(out, ReportToOms) if r.exec_type is ExecType.REPLACED]
            if replaced:
                assert (replaced[0].order_qty, replaced[0].cl_ord_id) == (qty, f"r{self.n}")
            else:
                assert parent.state is S.PENDING_REPLACE or parent.is_terminal or of(out, RejectCancel)

    @rule()
    def router_cancels_everything(self) -> None:
        """A shutdown or a kill switch, which may meet replaces being worked."""
        pending = [p.order_id for p in self.h.engine.parents.values() if p.state is S.PENDING_REPLACE]
        out = self.h._run(self.h.engine.cancel_all("router shutting down", self.h.tick()))
        refused = {r.order_id for r in of(out, RejectCancel) if r.response_to_replace}
        assert refused == set(pending), "every replace being worked is answered"
        assert of(out, SendChildOrder) == []

    @invariant()
    def pending_replaces_keep_nothing_beyond_the_new_terms(self) -> None:
        for p in self.h.engine.parents.values():
            rp = p.replace
            assert (rp is not None) == (p.state is S.PENDING_REPLACE)
            if rp is None or rp.ord_type is not LMT or rp.price_ticks is None:
                continue
            for cid in p.children:
                child = self.h.engine.children[cid]
                if child.is_terminal or child.state is S.PENDING_CANCEL:
                    continue
                assert child.price_ticks is not None and p.side.sign * (child.price_ticks - rp.price_ticks) <= 0

    # ------------------------------------------------------------ venues

    @precondition(lambda self: self._open(S.PENDING_NEW, S.PENDING_CANCEL))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(self._open(S.PENDING_NEW, S.PENDING_CANCEL)))
        assert self.h.ack(cid) == []

    @precondition(lambda self: self._open())
    @rule(data=st.data())
    def fill(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(self._open()))
        child = self.h.engine.children[cid]
        room = child.open_qty
        over = data.draw(st.integers(0, 3)) == 0
        qty = room + data.draw(st.integers(1, 50)) if over else data.draw(st.integers(1, room))
        px = data.draw(st.integers(PX - 20, PX + 20))
        overfills = self.h.metric("sor_venue_anomalies_total", kind="overfill")
        out = self.h.fill(cid, qty, px)
        assert self.h.last_event is not None
        self.fill_reports.append(self.h.last_event)
        (trade,) = [r for r in of(out, ReportToOms) if r.exec_type is ExecType.TRADE]
        assert trade.last_qty == min(qty, room), "each venue fill reaches the OMS once, capped to the child"
        assert self.h.metric("sor_venue_anomalies_total", kind="overfill") == overfills + (1 if over else 0)
        self.expected_fill_qty[child.parent_id] += min(qty, room)

    @precondition(lambda self: self.fill_reports)
    @rule(data=st.data())
    def resend_fill(self, data: st.DataObject) -> None:
        ev = data.draw(st.sampled_from(self.fill_reports))
        assert self.h._run(self.h.engine.on_venue_report(ev)) == []

    @precondition(lambda self: self._terminal_children())
    @rule(data=st.data())
    def late_fill(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(self._terminal_children()))
        assert self.h.fill(cid, data.draw(st.integers(1, 100))) == [], "a fill on a finished child is dropped"

    @precondition(lambda self: self._open())
    @rule(data=st.data(), how=st.sampled_from(["canceled", "expired", "rejected"]))
    def venue_done(self, data: st.DataObject, how: str) -> None:
        cid = data.draw(st.sampled_from(self._open()))
        if how == "canceled":
            self.h.expire(cid)
        elif how == "expired":
            self.h.report(cid, ExecType.EXPIRED, ord_status=S.EXPIRED)
        else:
            self.h.venue_reject(cid)

    @precondition(lambda self: self._open(S.PENDING_CANCEL))
    @rule(data=st.data())
    def venue_cancel_reject(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(self._open(S.PENDING_CANCEL)))
        parent = self.h.engine.parents[self.h.engine.children[cid].parent_id]
        # An OMS cancel pending: refused to the OMS (the router's own cancel is not).
        was_pending = parent.state is S.PENDING_CANCEL and parent.pending_cancel_cl_ord_id is not None
        child = self.h.engine.children[cid]
        out = self.h.cancel_rejected(cid)
        if child.cum_qty:
            assert child.state is S.PARTIALLY_FILLED
        else:
            assert child.state is (S.NEW if child.acked_ns is not None else S.PENDING_NEW)
        if was_pending:
            assert one(out, RejectCancel).ord_status in (S.NEW, S.PARTIALLY_FILLED)

    @invariant()
    def pending_cancel_parents_have_only_pending_cancel_children(self) -> None:
        for p in self.h.engine.parents.values():
            if p.state is S.PENDING_CANCEL:
                for cid in p.children:
                    child = self.h.engine.children[cid]
                    assert child.is_terminal or child.state is S.PENDING_CANCEL

    @invariant()
    def unanswered_children_have_a_watchdog(self) -> None:
        nxt = self.h.engine.next_deadline_ns()
        for cid in self._open(S.PENDING_NEW, S.PENDING_CANCEL):
            child = self.h.engine.children[cid]
            assert child.deadline_ns is not None, f"{cid} in {child.state.name} has no deadline"
            assert nxt is not None and nxt <= child.deadline_ns

    @rule(venue=st.sampled_from(VENUES), up=st.booleans())
    def session(self, venue: str, up: bool) -> None:
        open_there = [cid for cid in self._open() if self.h.engine.children[cid].venue == venue]
        out = self.h.session(venue, up)
        if not up:
            assert out == []
            return
        # Every logon asks the venue about each child believed open there.
        assert all(isinstance(c, QueryChildStatus) for c in out)
        assert sorted(c.child_id for c in of(out, QueryChildStatus)) == open_there

    @precondition(lambda self: self._open())
    @rule(data=st.data(), how=st.sampled_from(["working", "canceled", "filled", "unknown"]))
    def status_answer(self, data: st.DataObject, how: str) -> None:
        """The venue's truth, which may hold fills the router never saw."""
        cid = data.draw(st.sampled_from(self._open()))
        child = self.h.engine.children[cid]
        before = child.cum_qty
        if how == "unknown":
            out = self.h.status(cid, S.REJECTED)
            missed = 0
        else:
            cum = child.qty if how == "filled" else data.draw(st.integers(before, child.qty))
            missed = cum - before
            px = data.draw(st.integers(PX - 20, PX + 20))
            st_ = {"working": S.PARTIALLY_FILLED if cum else S.NEW, "canceled": S.CANCELED,
                   "filled": S.FILLED}[how]
            if st_ is S.PARTIALLY_FILLED and cum == child.qty:
                st_ = S.FILLED
            out = self.h.status(cid, st_, cum, child.notional_ticks + missed * px)
        trades = [r for r in of(out, ReportToOms) if r.exec_type is ExecType.TRADE]
        if missed:
            assert 1 <= len(trades) <= 2
            assert sum(t.last_qty for t in trades) == missed, "missed shares reach the OMS once"
            self.expected_fill_qty[child.parent_id] += missed
        else:
            assert trades == []
        if how != "working":
            assert child.is_terminal

    @rule(jump=st.sampled_from([0, 1, ACK_TIMEOUT_NS // 2]))
    def timer(self, jump: int) -> None:
        deadline = self.h.engine.next_deadline_ns()
        if deadline is None:
            assert self.h.timer(self.h.now + jump) == []
            return
        out = self.h.timer(deadline + jump)
        assert of(out, CancelChild), "a due deadline always produces a cancel"
        assert all(isinstance(c, CancelChild) for c in out)

    # ------------------------------------------------------ whole-run checks

    @invariant()
    def every_fill_reached_the_oms(self) -> None:
        for order_id, qty in self.expected_fill_qty.items():
            assert self.h.engine.parents[order_id].cum_qty == qty
            assert sum(q for q, _ in self.h.oms.fills[order_id]) == qty

    def teardown(self) -> None:
        if not hasattr(self, "h"):
            return
        # Drain: the venues end every open child. Each parent must then reach
        # exactly one terminal ER; nothing may be left hanging.
        for _ in range(20):
            open_ = self.h.open_children()
            if not open_:
                break
            for cid in open_:
                if not self.h.engine.children[cid].is_terminal:
                    self.h.expire(cid)
        assert self.h.open_children() == []
        for p in self.h.engine.parents.values():
            assert p.is_terminal
            assert self.h.oms.last[p.order_id].ord_status in TERMINAL_STATUSES
            terminal = [r for r in self.h.oms.reports
                        if r.order_id == p.order_id and r.ord_status in TERMINAL_STATUSES]
            assert len(terminal) == 1
        for v in VENUES:
            reported = sum(r.last_qty for r in self.h.oms.reports if r.last_mkt == self.h.cfg.venue(v).last_mkt)
            assert self.h.metric("sor_filled_qty_total", venue=v) == reported
        assert self.h.metric("sor_open_parents") == 0
        assert self.h.metric("sor_open_children") == 0
        assert self.h.engine.next_deadline_ns() is None


EngineMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, derandomize=True, database=None, deadline=None,
)
TestEngineRandomInterleavings = EngineMachine.TestCase
