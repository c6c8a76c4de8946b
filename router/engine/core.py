"""The routing engine: synchronous and sans-IO, the only place where routing
state changes.

``handle(event)`` takes one ``EngineEvent`` (OMS messages, venue reports,
market data, venue session changes, timers) with the time it happened and
returns a ``Step``: the commands to carry out (child orders, cancels,
execution reports, market-data subscriptions) and, for a new parent, the
``Decision`` that routed it. It never reads a clock, never blocks and never
touches a socket, so the daemon's drivers and the backtester run the very
same code on the same events. Timers are deadlines the engine asks for
(``next_timer_ns``) and a driver answers with ``TimerFired``: ack
timeouts, dark-rest expiry, cancel watchdogs and markout horizons.

Quantity invariants held here (and checked by the tests):
- the open quantity of a parent's children never exceeds its leaves;
- a parent is never filled beyond its OrderQty (an over-fill from a venue is
  capped, counted and logged rather than passed on);
- every venue fill (unique ExecID per child) is reported to the OMS once.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque

import msgspec
from prometheus_client import Counter

from router.config import Config, ConfigError
from router.domain.commands import (
    CancelChild,
    Command,
    QueryChildStatus,
    QueryVenueOrders,
    RejectCancel,
    RejectOrder,
    ReportToOms,
    SendChildOrder,
    SubscribeMarketData,
)
from router.domain.costs import cost_bps
from router.domain.decision import Decision
from router.domain.events import (
    CancelAllRequested,
    CancelRequested,
    EngineEvent,
    InvalidOrderReceived,
    KillSwitchEngaged,
    KillSwitchReleased,
    MarketDataReceived,
    ModelsChanged,
    NewOrderReceived,
    OmsSessionChanged,
    OverloadChanged,
    ReplaceRequested,
    Restored,
    RiskLimitChanged,
    SymbolReenabled,
    TimerFired,
    TradingHalted,
    VenueCancelRejected,
    VenueEnableChanged,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.orders import (
    ChildEvent,
    ChildOrder,
    IllegalTransitionError,
    ParentEvent,
    ParentOrder,
    PendingReplace,
)
from router.domain.plan import Plan
from router.domain.types import CxlRejReason, ExecType, OrdRejReason, OrdStatus, OrdType, Side, TimeInForce, VenueKind
from router.engine.clordids import LIVE, ClOrdIdTable
from router.engine.operator import Controls, Halt, OperatorAction, VenueOff, scope_name
from router.learning.venuestats import VenueStats
from router.market.feed import apply_update
from router.market.rings import MarketData
from router.metrics.registry import Metrics
from router.risk import Breach, RiskControls
from router.routing.policy import Planner, allocate, apply_limits

log = logging.getLogger("sor.engine")

CE = ChildEvent
PE = ParentEvent

MARKOUT_BATCH_NS = 100_000_000
"""Markouts fall due 1 s and 5 s after each fill; they are resolved at their
horizon but no more often than this, so a burst of fills costs one pass."""


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """What one event made the engine do."""

    commands: list[Command]
    decision: Decision | None = None
    """For a new parent: how it was routed (also when it could not be)."""


NO_COMMANDS: list[Command] = []
NO_STEP = Step(commands=NO_COMMANDS)
"""What an input that changes state but sends nothing returns (shared: never mutate)."""

RETAIN_DONE_NS = 30_000_000_000
"""How long a finished parent and its children stay whole in the engine's
maps (late venue reports, a resend after reconnect, the backtest's and the
tests' reads); then only the ClOrdID table remembers them."""
RETIRE_EVERY_NS = 1_000_000_000
"""Finished orders are released in batches, at most once a second."""
MAX_CLORDIDS_PER_DAY = 200_000
"""The ClOrdID table's planned size (orders and cancels); it doubles, with a
warning, on a busier day."""

_FINAL = (OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED)
TERMINAL = frozenset(_FINAL)
_CODE = {st: i + 2 for i, st in enumerate(_FINAL)}
"""OrdStatus of a finished order as the ClOrdID table's status byte (0 and 1
are empty and live)."""


class Engine:
    def __init__(self, cfg: Config, planner: Planner, metrics: Metrics, id_prefix: str,
                 market: MarketData | None = None, stats: VenueStats | None = None, *,
                 retain_done_ns: int = RETAIN_DONE_NS, max_clordids: int = MAX_CLORDIDS_PER_DAY) -> None:
        self._cfg = cfg
        self._market = market
        self._stats = stats
        self._planner = planner
        self._m = metrics
        self._prefix = id_prefix
        self._seq = 0
        self._lots = {s.symbol: s.lot_size for s in cfg.symbols}
        self._ack_timeout_ns = cfg.waterfall.child_ack_timeout_ms * 1_000_000
        self.parents: dict[str, ParentOrder] = {}
        self.children: dict[str, ChildOrder] = {}
        # Every ClOrdID used today per OMS session (orders and cancels) so a
        # reuse is caught as a duplicate, with what a late cancel needs.
        self._ids = ClOrdIdTable(max_clordids)
        self._retain_ns = retain_done_ns
        self._retire: deque[tuple[int, str]] = deque()
        """(when, order_id) of finished parents, in the order they finished."""
        self._plans: dict[str, Plan] = {}
        self._wave: dict[str, list[str]] = {}
        self._deadlines: list[tuple[int, str]] = []
        self.venues_up: set[str] = set()
        self._venues_up_view: frozenset[str] = frozenset()
        """What the planner sees; rebuilt on session changes, not per order."""
        self.controls = Controls()
        """The operator's kill switches and disabled venues (``router.engine.operator``)."""
        self._routable: frozenset[str] = frozenset()
        """Venues new children may go to: up, and not taken out by an operator."""
        self.oms_sessions: dict[str, bool] = {}
        """OMS session key -> logged on, as the edge said (the admin API's status)."""
        self._open_parents = 0
        self._open_children = 0
        self._lit = frozenset(v.name for v in cfg.venues if v.kind is VenueKind.LIT)
        self._markout_at: int | None = None
        self._last_markout_ns = -MARKOUT_BATCH_NS
        self._fallbacks: dict[str, Counter] = {}
        self.halted: str | None = None
        """Why new parents are refused; None while trading."""
        self._status_due: dict[str, int] = {}
        """child_id -> when the venue's answer to our OrderStatusRequest is
        overdue (then the child is canceled to learn its fate)."""
        self._sweep: set[str] = set()
        """Venues to ask for every order they hold at their next logon
        (after a restart: children sent but never journaled)."""
        self._lost_ids = (0, 0)
        """(after, up to]: the IDs a crashed process may have used without
        journaling them (set by ``Restored``)."""
        self._orphans: dict[str, str] = {}
        """child_id -> venue of orders a venue holds that the engine does
        not know (found by that sweep), being canceled."""
        self._unreconciled: set[str] = set()
        """Open children rebuilt from the journal whose venue has not yet
        said how they stand (``expect_reconciliation``): what the daemon
        waits for before it opens the OMS acceptor. Never changes a
        command, so a replay that does not set it agrees."""
        self.risk = RiskControls(cfg.risk, cfg.symbols, market, cfg.marketdata.stale_ms, metrics)
        """Pre-trade controls on every parent and every child (``router.risk``)."""
        self._risk_notes: dict[str, str] = {}
        """order_id -> the last child a control stopped: said in the Text
        of the parent's end if its waterfall runs out."""
        self.overload: OverloadChanged | None = None
        """The driver's back-pressure gate while it is on (new parents are
        rejected); None otherwise."""
        self._overload_rejects = 0
        self._overload_since = 0
        self._backlog = False
        """The driver says its inbox is behind: ack and status deadlines
        that fall due wait another ack timeout."""

    # --------------------------------------------------------------- input

    def handle(self, ev: EngineEvent) -> Step:
        """The one entry point: every input, in the order it happened."""
        match ev:
            case VenueReport():
                return Step(commands=self.on_venue_report(ev))
            case MarketDataReceived():
                # The busiest input and it never commands: no Step per message.
                self.on_market_data(ev)
                return NO_STEP
            case NewOrderReceived():
                cmds, decision = self._new_order(ev)
                self.risk.forget_reference()
                return Step(commands=cmds, decision=decision)
            case CancelRequested():
                return Step(commands=self.on_cancel_request(ev))
            case ReplaceRequested():
                return Step(commands=self.on_replace_request(ev))
            case TimerFired():
                return Step(commands=self.on_timer(ev.ts_ns))
            case VenueCancelRejected():
                return Step(commands=self.on_venue_cancel_rejected(ev))
            case VenueSessionChanged():
                return Step(commands=self.on_venue_session(ev))
            case InvalidOrderReceived():
                return Step(commands=self.on_invalid_order(ev))
            case CancelAllRequested():
                return Step(commands=self.cancel_all(ev.reason, ev.ts_ns))
            case Restored():
                self._lost_ids = (self._seq, self._seq + ev.id_gap)
                self._seq += ev.id_gap
                self._sweep = set(self.venue_names)
                # Questions the crashed process asked go unanswered; each
                # venue's next logon asks again.
                self._status_due.clear()
                # The crashed process's back-pressure died with it; the new
                # driver's gate starts off.
                self._set_overload(None)
                self._backlog = False
                log.warning("restored from the journal: new IDs start at %d; each venue's next logon is asked for "
                            "every order it holds", self._seq + 1)
                return NO_STEP
            case OmsSessionChanged():
                self.oms_sessions[ev.session] = ev.up
                if not ev.up and self._cfg.oms.cancel_on_disconnect:
                    return Step(commands=self.cancel_all("OMS session disconnected (oms.cancel_on_disconnect)",
                                                         ev.ts_ns, session=ev.session))
                return NO_STEP
            case TradingHalted():
                if self.halted is None:
                    self.halted = ev.reason
                    log.warning("trading halted: %s (new parents are refused)", ev.reason)
                return NO_STEP
            case KillSwitchEngaged():
                return Step(commands=self.on_kill(ev))
            case KillSwitchReleased():
                return Step(commands=self.on_kill_released(ev))
            case VenueEnableChanged():
                return Step(commands=self.on_venue_enable(ev))
            case RiskLimitChanged():
                self.on_risk_limit_changed(ev)
                return NO_STEP
            case SymbolReenabled():
                self.on_symbol_reenabled(ev)
                return NO_STEP
            case OverloadChanged():
                self.on_overload(ev)
                return NO_STEP
            case ModelsChanged():
                self.on_models_changed(ev)
                return NO_STEP
        raise TypeError(f"not an engine event: {ev!r}")

    # ------------------------------------------------------------------ ids

    def _next_id(self, kind: str) -> str:
        self._seq += 1
        return f"{self._prefix}{kind}{self._seq}"

    # --------------------------------------------------------------- events

    def on_venue_session(self, ev: VenueSessionChanged) -> list[Command]:
        if ev.up:
            self.venues_up.add(ev.venue)
        else:
            self.venues_up.discard(ev.venue)
        self._refresh_venues()
        vm = self._m.venue.get(ev.venue)
        if vm is not None:
            vm.session_up.set(1 if ev.up else 0)
        if not ev.up and self._status_due:
            # No answer comes on a dead session; the next logon asks again.
            for cid in [c for c in self._status_due
                        if (ch := self.children.get(c)) is None or ch.venue == ev.venue]:
                del self._status_due[cid]
        out: list[Command] = self._query_children(ev.venue, ev.ts_ns) if ev.up else []
        if ev.up and ev.venue in self._sweep:
            self._sweep.discard(ev.venue)
            out.append(QueryVenueOrders(venue=ev.venue, req_id=self._next_id("M")))
        md = self._market
        if md is None or ev.venue not in self._lit:
            return out
        if ev.up:
            # Every logon (re)subscribes: a venue forgets subscriptions when
            # the session drops.
            out.append(SubscribeMarketData(venue=ev.venue, symbols=md.symbols, depth=md.depth))
            return out
        # A book from a dead session must not look live.
        v = md.venue_index[ev.venue]
        for s in range(len(md.symbols)):
            md.clear_book(v, s, ev.ts_ns)
        return out

    def _query_children(self, venue: str, now_ns: int) -> list[Command]:
        """After a logon, ask the venue how every child the router believes
        open there stands: fills sent while the session was down (or while
        the router was), children it lost in a restart, acks never seen."""
        out: list[Command] = []
        due = now_ns + self._ack_timeout_ns
        for child in self.children.values():
            if child.venue == venue and not child.is_terminal:
                self._status_due[child.child_id] = due
                out.append(QueryChildStatus(venue=venue, child_id=child.child_id, symbol=child.symbol,
                                            side=child.side))
        if out:
            log.info("venue %s up: asking the status of %d open children", venue, len(out))
        return out

    def expect_reconciliation(self) -> int:
        """After a restore: every open child now waits for its venue's word
        (``unreconciled``); returns how many."""
        self._unreconciled = {cid for cid, c in self.children.items() if not c.is_terminal}
        return len(self._unreconciled)

    @property
    def id_prefix(self) -> str:
        """What its OrderIDs and child IDs begin with (the journal's session records it)."""
        return self._prefix

    @property
    def unreconciled(self) -> int:
        """Restored open children whose venue has not answered yet (one
        that ended meanwhile, by a cancel's answer say, is settled)."""
        if self._unreconciled:
            self._unreconciled = {c for c in self._unreconciled if not self.children[c].is_terminal}
        return len(self._unreconciled)

    def unreconciled_children(self) -> list[str]:
        return sorted(c for c in self._unreconciled if not self.children[c].is_terminal)

    def on_market_data(self, ev: MarketDataReceived) -> list[Command]:
        if self._market is None:
            return NO_COMMANDS
        vm = self._m.venue[ev.venue]
        used, applied, dropped = apply_update(self._market, ev)
        if dropped:
            vm.md_dropped.inc(dropped)
        if used:
            vm.md_updates.inc()
            vm.md_entries.inc(applied)
        elif ev.rejected:
            log.warning("venue %s rejected the market data subscription", ev.venue)
        return NO_COMMANDS

    def on_invalid_order(self, ev: InvalidOrderReceived) -> list[Command]:
        key = ClOrdIdTable.key(ev.session, ev.cl_ord_id)
        reason, text = ev.reason, ev.text
        if key in self._ids:
            reason, text = OrdRejReason.DUPLICATE_ORDER, f"duplicate ClOrdID {ev.cl_ord_id!r}"
        else:
            self._ids.add(key, 0, _CODE[OrdStatus.REJECTED])
        return [self._reject_order(ev.session, ev.cl_ord_id, ev.symbol, ev.side, ev.qty_raw,
                                   ev.ord_type_raw, reason, text, ev.recv_ns)]

    def on_new_order(self, ev: NewOrderReceived) -> list[Command]:
        cmds = self._new_order(ev)[0]
        self.risk.forget_reference()
        return cmds

    def _new_order(self, ev: NewOrderReceived) -> tuple[list[Command], Decision | None]:
        self._m.parent_received.inc()
        key = ClOrdIdTable.key(ev.session, ev.cl_ord_id)
        seq = self._seq + 1
        # Taken as live at once (one probe); a reject below marks it so.
        if not self._ids.insert_new(key, seq, LIVE):
            return [self._reject_order(ev.session, ev.cl_ord_id, ev.symbol, ev.side, str(ev.qty),
                                       ev.ord_type.value, OrdRejReason.DUPLICATE_ORDER,
                                       f"duplicate ClOrdID {ev.cl_ord_id!r}", ev.recv_ns)], None
        self._seq = seq
        if self.halted is not None:
            self._ids.add(key, 0, _CODE[OrdStatus.REJECTED])
            return [self._reject_order(ev.session, ev.cl_ord_id, ev.symbol, ev.side, str(ev.qty),
                                       ev.ord_type.value, OrdRejReason.EXCHANGE_CLOSED,
                                       f"trading halted: {self.halted}", ev.recv_ns)], None
        if self.controls.kills:
            halt = self.controls.blocking(ev.symbol, ev.session)
            if halt is not None:
                self._ids.add(key, 0, _CODE[OrdStatus.REJECTED])
                return [self._reject_order(ev.session, ev.cl_ord_id, ev.symbol, ev.side, str(ev.qty),
                                           ev.ord_type.value, OrdRejReason.EXCHANGE_CLOSED,
                                           f"{halt.describe()}: new orders refused until resumed",
                                           ev.recv_ns)], None
        if self.overload is not None:
            # Before the risk controls: a parent refused for load takes no
            # share of the session's message throttle.
            self._ids.add(key, 0, _CODE[OrdStatus.REJECTED])
            return [self._reject_overloaded(ev)], None
        if self.risk.enabled:
            breach = self.risk.check_parent(ev)
            if breach is not None:
                self._ids.add(key, 0, _CODE[OrdStatus.REJECTED])
                self._m.risk_reject[breach.limit, "parent"].inc()
                return [self._reject_order(ev.session, ev.cl_ord_id, ev.symbol, ev.side, str(ev.qty),
                                           ev.ord_type.value, breach.reason, breach.text, ev.recv_ns)], None
        order_id = f"{self._prefix}P{seq}"
        parent = ParentOrder(
            order_id=order_id, session=ev.session, cl_ord_id=ev.cl_ord_id, symbol=ev.symbol,
            side=ev.side, qty=ev.qty, ord_type=ev.ord_type, price_ticks=ev.price_ticks,
            tif=ev.tif, arrival_ns=ev.recv_ns, strategy=ev.strategy, trace_ns=ev.trace_ns, urgency=ev.urgency,
        )
        decision = self._planner.decide(parent, self._venues_up_view)
        if decision.fallback is not None:
            self._count_fallback(decision.fallback)
        plan = decision.plan
        if not plan.waves:
            self._ids.add(key, 0, _CODE[OrdStatus.REJECTED])  # refused: not an order to cancel
            return [self._reject_order(ev.session, ev.cl_ord_id, ev.symbol, ev.side, str(ev.qty),
                                       ev.ord_type.value, OrdRejReason.EXCHANGE_CLOSED,
                                       self._no_venue_text(), ev.recv_ns)], decision
        if self._market is not None:
            s = self._market.symbol_index.get(parent.symbol)
            if s is not None:
                parent.arrival_mid2 = self._market.consolidated_mid2(s)
        self.parents[order_id] = parent
        self._plans[order_id] = plan
        if self.risk.enabled:
            self.risk.accepted(order_id, parent.session, parent.symbol, parent.qty)
        parent.apply(PE.ACCEPT)
        self._open_parents += 1
        self._m.open_parents.set(self._open_parents)
        ack = self._report(parent, ExecType.NEW, ev.recv_ns)
        routed: list[Command] = []
        self._advance(parent, ev.recv_ns, routed)
        # Children first: the OMS's ack can wait for them, a venue should not
        # wait for the ack's encoding. The ack still precedes every fill (those
        # are handled later on this same thread) and any terminal report.
        sends = [c for c in routed if isinstance(c, SendChildOrder)]
        return [*sends, ack, *(c for c in routed if not isinstance(c, SendChildOrder))], decision

    def _request_target(self, ev: CancelRequested | ReplaceRequested
                        ) -> RejectCancel | tuple[int, str, ParentOrder | None, OrdStatus]:
        """What a cancel or replace names: (sequence number, OrderID, the
        parent while the engine still holds it, the OrdStatus the OMS was
        told), or the reject when it names nothing, reuses a ClOrdID or
        breaks the session's message throttle."""
        entry = self._ids.get(ClOrdIdTable.key(ev.session, ev.orig_cl_ord_id))
        seq, code = entry if entry is not None else (0, 0)
        order_id = f"{self._prefix}P{seq}"
        parent = self.parents.get(order_id) if seq else None
        if seq == 0 or (parent is None and code < 2):
            return self._reject_cancel(ev, None, CxlRejReason.UNKNOWN_ORDER,
                                       f"unknown order: OrigClOrdID {ev.orig_cl_ord_id!r}")
        # A released parent is known by its final state alone.
        state = self._told(parent) if parent is not None else _FINAL[code - 2]
        own = ClOrdIdTable.key(ev.session, ev.cl_ord_id)
        if own in self._ids:
            return self._reject_cancel(ev, (order_id, state), CxlRejReason.DUPLICATE_CLORDID,
                                       f"duplicate ClOrdID {ev.cl_ord_id!r}")
        self._ids.add(own, 0, _CODE[OrdStatus.REJECTED])
        if self.risk.enabled:
            breach = self.risk.check_cancel(ev.session, ev.recv_ns)
            if breach is not None:
                self._m.risk_reject[breach.limit, "replace" if isinstance(ev, ReplaceRequested) else "cancel"].inc()
                return self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER, breach.text)
        return seq, order_id, parent, state

    def on_cancel_request(self, ev: CancelRequested) -> list[Command]:
        target = self._request_target(ev)
        if isinstance(target, RejectCancel):
            return [target]
        _, order_id, parent, state = target
        if ev.replace:
            # Amending a parent that is spread over venues would need every
            # child amended atomically; until that exists the honest answer
            # is a reject that leaves the order working untouched.
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                        "cancel/replace is not supported: cancel and send a new order")]
        if parent is None or parent.is_terminal:
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.TOO_LATE_TO_CANCEL,
                                        f"too late to cancel: order is {state.name.lower()}")]
        pre: list[Command] = []
        if parent.state is OrdStatus.PENDING_REPLACE:
            # The cancel wins: a replace may wait on a venue that is down,
            # and the OMS must always be able to take its order off.
            self._drop_replace(parent, CxlRejReason.OTHER,
                               f"replace refused: the order is being canceled (ClOrdID {ev.cl_ord_id})", pre)
        if parent.state is OrdStatus.PENDING_CANCEL:
            if parent.cancel_note is not None and parent.pending_cancel_cl_ord_id is None:
                # The router is canceling it already (a kill switch, a shutdown):
                # the OMS's own cancel is accepted and ends with that one.
                parent.pending_cancel_cl_ord_id = ev.cl_ord_id
                return [self._report(parent, ExecType.PENDING_CANCEL, ev.recv_ns, cl_ord_id=ev.cl_ord_id,
                                     orig=parent.cl_ord_id)]
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.ALREADY_PENDING,
                                        "a cancel is already pending for this order")]
        parent.apply(PE.CANCEL_REQUESTED)
        parent.pending_cancel_cl_ord_id = ev.cl_ord_id
        out: list[Command] = [*pre, self._report(parent, ExecType.PENDING_CANCEL, ev.recv_ns,
                                                 cl_ord_id=ev.cl_ord_id, orig=parent.cl_ord_id)]
        self._cancel_children(parent, ev.recv_ns, out)
        self._maybe_finish_cancel(parent, ev.recv_ns, out)
        return out

    def on_replace_request(self, ev: ReplaceRequested) -> list[Command]:
        """A cancel/replace of a working parent (35=G). The children the new
        terms cannot keep are canceled first: those beyond a new limit, the
        resting ones when the plan must run again (a new price, type or
        time in force, or more shares), and for fewer shares the newest
        children until what stays open fits the new quantity. The OMS gets
        PendingReplace at once and Replaced when they are gone, or an
        OrderCancelReject when fills crossed the replace (more filled than
        the new quantity) or a venue kept a child. Fills meanwhile are
        booked against the old terms, so the order is never over-filled and
        LeavesQty is always what may still fill."""
        target = self._request_target(ev)
        if isinstance(target, RejectCancel):
            return [target]
        seq, order_id, parent, state = target
        if ev.error:
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER, f"replace refused: {ev.error}")]
        if parent is None or parent.is_terminal:
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.TOO_LATE_TO_CANCEL,
                                         f"too late to replace: order is {state.name.lower()}")]
        if parent.state is OrdStatus.PENDING_CANCEL and parent.pending_cancel_cl_ord_id is None:
            # The router's own cancel, which the OMS was never told of.
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                        f"replace refused: the router is canceling this order "
                                        f"({parent.cancel_note})")]
        if parent.state is OrdStatus.PENDING_CANCEL or parent.state is OrdStatus.PENDING_REPLACE:
            what = "cancel" if parent.state is OrdStatus.PENDING_CANCEL else "cancel/replace"
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.ALREADY_PENDING,
                                        f"a {what} is already pending for this order")]
        if ev.symbol != parent.symbol or ev.side is not parent.side:
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                         f"replace refused: Symbol and Side cannot change (order is "
                                         f"{parent.side.name.lower()} {parent.symbol}): cancel and send a new "
                                         f"order")]
        if ev.qty < parent.cum_qty:
            return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                         f"replace refused: OrderQty {ev.qty} is below the {parent.cum_qty} "
                                         f"already filled")]
        new_price = ev.ord_type is not parent.ord_type or ev.price_ticks != parent.price_ticks
        more_qty = ev.qty > parent.qty
        adds_risk = more_qty or (new_price and (ev.price_ticks is None or parent.price_ticks is None
                                                or parent.side.sign * (ev.price_ticks - parent.price_ticks) > 0))
        if adds_risk:
            # Halts and kill switches refuse what adds risk; a replace that
            # only takes risk off still goes through.
            if self.halted is not None:
                return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                             f"trading halted: {self.halted}")]
            if self.overload is not None:
                # More work for a router already behind, like a new parent.
                return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                             f"router overloaded: {self.overload.reason}: replaces that add risk "
                                             f"refused until it clears")]
            halt = self.controls.blocking(parent.symbol, parent.session) if self.controls.kills else None
            if halt is not None:
                return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER,
                                             f"{halt.describe()}: replaces that add risk refused until resumed")]
        # A replace that adds no risk keeps its price: the charge scales with the shares.
        new_charge = self.risk.charged(order_id) * ev.qty / parent.qty
        if self.risk.enabled and adds_risk:
            breach = self.risk.check_replace(order_id, parent.session, parent.symbol, parent.side, ev.qty,
                                             ev.price_ticks, more_qty, new_price, ev.recv_ns)
            if breach is not None:
                self._m.risk_reject[breach.limit, "replace"].inc()
                return [self._reject_cancel(ev, (order_id, state), CxlRejReason.OTHER, breach.text)]
            new_charge = self.risk.notional(order_id, ev.qty, self.risk.last_px_ticks)
        rerun = new_price or more_qty or ev.tif is not parent.tif
        # Credit for the larger of the old and the new terms while it is
        # pending (fills may still come against either): a second replace or
        # a new parent meanwhile is checked against that.
        old_charge = self.risk.charge(order_id, max(new_charge, self.risk.charged(order_id)))
        rp = PendingReplace(cl_ord_id=ev.cl_ord_id, qty=ev.qty, ord_type=ev.ord_type, price_ticks=ev.price_ticks,
                            tif=ev.tif, seq=seq, rerun=rerun, old_charge=old_charge, new_charge=new_charge)
        parent.apply(PE.REPLACE_REQUESTED)
        parent.replace = rp
        out: list[Command] = [self._report(parent, ExecType.PENDING_REPLACE, ev.recv_ns, cl_ord_id=ev.cl_ord_id,
                                           orig=parent.cl_ord_id)]
        limit = ev.price_ticks if ev.ord_type is OrdType.LIMIT else None
        sign = parent.side.sign
        for cid in parent.children:
            child = self.children[cid]
            if child.is_terminal:
                continue
            if child.state is OrdStatus.PENDING_CANCEL:
                # Already being canceled (an ack timeout, a slice's expiry):
                # if the venue refuses, the replace cannot take effect either.
                rp.canceling.append(cid)
                continue
            px = child.price_ticks
            beyond = limit is not None and (px is None or sign * (px - limit) > 0)
            if beyond or (rerun and child.tif is TimeInForce.DAY):
                rp.canceling.append(cid)
                self._cancel_child(child, ev.recv_ns, out)
        self._maybe_finish_replace(parent, ev.recv_ns, out)
        return out

    def _maybe_finish_replace(self, parent: ParentOrder, now_ns: int, out: list[Command]) -> None:
        """Take the pending replace's terms once nothing it canceled can
        still fill, or refuse it when that cannot be done."""
        rp = parent.replace
        assert rp is not None
        room = rp.qty - parent.cum_qty
        if room < 0:
            self._refuse_replace(parent, CxlRejReason.TOO_LATE_TO_CANCEL,
                                 f"too late to replace: {parent.cum_qty} filled meanwhile, above the new OrderQty "
                                 f"{rp.qty}", now_ns, out)
            return
        waiting = False
        keep = 0
        for cid in parent.children:
            child = self.children[cid]
            if child.is_terminal:
                continue
            if child.state is OrdStatus.PENDING_CANCEL:
                waiting = True
            elif cid in rp.canceling:
                # Back to working: the venue refused its cancel.
                self._refuse_replace(parent, CxlRejReason.OTHER,
                                     f"venue {child.venue} refused to cancel child {cid}: the order keeps its "
                                     f"terms", now_ns, out)
                return
            else:
                keep += child.open_qty
        if keep > room:
            # Fewer shares than the children kept can fill (or fills on the
            # canceled ones took the room): the newest children go too.
            for cid in reversed(parent.children):
                child = self.children[cid]
                if child.is_terminal or child.state is OrdStatus.PENDING_CANCEL:
                    continue
                keep -= child.open_qty
                rp.canceling.append(cid)
                self._cancel_child(child, now_ns, out)
                waiting = True
                if keep <= room:
                    break
        if waiting:
            return
        self._apply_replace(parent, rp, now_ns, out)

    def _apply_replace(self, parent: ParentOrder, rp: PendingReplace, now_ns: int, out: list[Command]) -> None:
        old = parent.cl_ord_id
        parent.prior_cl_ord_ids.append(old)
        parent.cl_ord_id = rp.cl_ord_id
        # The old ClOrdID keeps naming the order: a cancel that crossed the
        # Replaced report on the wire still finds it.
        self._ids.add(ClOrdIdTable.key(parent.session, rp.cl_ord_id), rp.seq, LIVE)
        if rp.rerun:
            parent.repriced = parent.repriced or rp.ord_type is not parent.ord_type or \
                rp.price_ticks != parent.price_ticks or rp.tif is not parent.tif
            parent.step = 0
        elif rp.canceling:
            # Fewer shares, and children were pulled for it: the wave they
            # were part of goes again for what the new quantity leaves (a
            # resting parent rests again, smaller).
            parent.step = max(0, parent.step - 1)
        parent.qty, parent.ord_type, parent.price_ticks, parent.tif = rp.qty, rp.ord_type, rp.price_ticks, rp.tif
        parent.replace = None
        parent.apply(PE.REPLACED)
        self.risk.charge(parent.order_id, rp.new_charge)
        self._m.parent_replaced.inc()
        out.append(self._report(parent, ExecType.REPLACED, now_ns, cl_ord_id=rp.cl_ord_id, orig=old))
        if parent.state is OrdStatus.FILLED:
            # Replaced down to what was already filled: done.
            self._parent_done(parent, "filled", now_ns)
            return
        wave = self._wave.get(parent.order_id, ())
        if all(self.children[c].is_terminal for c in wave):
            if self.controls.kills and self._end_if_killed(parent, now_ns, out):
                return
            self._advance(parent, now_ns, out)

    def _refuse_replace(self, parent: ParentOrder, reason: CxlRejReason, text: str, now_ns: int,
                        out: list[Command]) -> None:
        """The pending replace cannot take effect: the OMS gets an
        OrderCancelReject and the order goes on under its old terms."""
        self._drop_replace(parent, reason, text, out)
        self._after_child_change(parent, now_ns, out)

    def _drop_replace(self, parent: ParentOrder, reason: CxlRejReason, text: str, out: list[Command]) -> None:
        """End the pending replace unapplied: its credit reservation given
        back, the interrupted wave due again for what it pulled, and the
        OrderCancelReject (434=2) to the OMS."""
        rp = parent.replace
        assert rp is not None
        parent.replace = None
        self.risk.charge(parent.order_id, rp.old_charge)
        if any(self.children[c].is_terminal or self.children[c].state is OrdStatus.PENDING_CANCEL
               for c in rp.canceling):
            # Some of what it pulled is gone or going: the wave they were
            # part of goes again under the old terms once all of it is over.
            parent.step = max(0, parent.step - 1)
        if parent.state is OrdStatus.PENDING_REPLACE:
            parent.apply(PE.REPLACE_REFUSED)
        self._m.cancel_reject[reason.name.lower()].inc()
        log.info("replace %s/%s of %s refused: %s", parent.session, rp.cl_ord_id, parent.order_id, text)
        out.append(RejectCancel(session=parent.session, order_id=parent.order_id, cl_ord_id=rp.cl_ord_id,
                                orig_cl_ord_id=parent.cl_ord_id, ord_status=self._told(parent), reason=reason,
                                response_to_replace=True, text=text))

    def _router_cancel(self, parent: ParentOrder, note: str, now_ns: int, out: list[Command]) -> None:
        """The router itself cancels ``parent`` (kill switch, shutdown, the
        OMS's disconnect): a replace being worked is refused first."""
        if parent.replace is not None:
            self._drop_replace(parent, CxlRejReason.OTHER, f"replace refused: {note}", out)
        parent.apply(PE.CANCEL_REQUESTED)
        parent.cancel_note = note

    def cancel_all(self, reason: str, now_ns: int, session: str | None = None) -> list[Command]:
        """Cancel every working parent (of OMS ``session`` only, if given)
        the OMS has not already asked to cancel: its open children first;
        each parent then ends with an unsolicited cancel report whose Text
        says ``reason``."""
        out: list[Command] = []
        for parent in list(self.parents.values()):
            if parent.is_terminal or parent.state is OrdStatus.PENDING_CANCEL or \
                    (session is not None and parent.session != session):
                continue
            self._router_cancel(parent, reason, now_ns, out)
            self._cancel_children(parent, now_ns, out)
            self._maybe_finish_cancel(parent, now_ns, out)
        return out

    # ------------------------------------------------------------ operator

    def on_kill(self, ev: KillSwitchEngaged) -> list[Command]:
        """The kill switch: every working parent in scope canceled (children
        first, then an unsolicited cancel report naming the kill and who),
        new parents in scope refused until released. Parents the OMS is
        already canceling end by that cancel."""
        c = self.controls
        name = scope_name(ev.scope_kind, ev.scope)
        if ev.scope_kind != "all" and not ev.scope:
            return self._refused(ev.ts_ns, ev.who, "kill", name, f"a {ev.scope_kind} kill needs a {ev.scope_kind}")
        if ev.scope_kind == "venue" and ev.scope not in self.venue_names:
            return self._refused(ev.ts_ns, ev.who, "kill", name, f"unknown venue {ev.scope!r}")
        key = (ev.scope_kind, ev.scope if ev.scope_kind != "all" else "")
        this = Halt(scope_kind=ev.scope_kind, scope=key[1], who=ev.who, reason=ev.reason, since_ns=ev.ts_ns)
        halt = c.kills.setdefault(key, this)
        if halt is this:
            if ev.scope_kind == "venue":
                self._refresh_venues()
            self._count_controls()
        note = this.describe()
        out: list[Command] = []
        canceled = 0
        for parent in list(self.parents.values()):
            if parent.is_terminal or parent.state is OrdStatus.PENDING_CANCEL or not self._in_kill(parent, key):
                continue
            self._router_cancel(parent, note, now_ns=ev.ts_ns, out=out)
            canceled += 1
            self._cancel_children(parent, ev.ts_ns, out)
            self._maybe_finish_cancel(parent, ev.ts_ns, out)
        cancels = sum(1 for cmd in out if isinstance(cmd, CancelChild))
        text = (f"{note}: {canceled} working parents canceled, {cancels} child cancels sent; new orders "
                f"{'to ' + ev.scope if ev.scope_kind == 'venue' else 'in scope'} refused until resumed")
        log.warning("%s%s", text, "" if halt is this else f" (in force since {halt.since_ns}, by {halt.who})")
        c.record(OperatorAction(ts_ns=ev.ts_ns, who=ev.who, action="kill", scope=name, ok=True, text=text,
                                parents_canceled=canceled, child_cancels_sent=cancels))
        return out

    def _in_kill(self, parent: ParentOrder, key: tuple[str, str]) -> bool:
        kind, scope = key
        if kind == "all":
            return True
        if kind == "symbol":
            return parent.symbol == scope
        if kind == "session":
            return parent.session == scope
        return any(not self.children[cid].is_terminal and self.children[cid].venue == scope
                   for cid in parent.children)

    def on_kill_released(self, ev: KillSwitchReleased) -> list[Command]:
        c = self.controls
        name = scope_name(ev.scope_kind, ev.scope)
        halt = c.kills.pop((ev.scope_kind, ev.scope if ev.scope_kind != "all" else ""), None)
        if halt is None:
            in_force = ", ".join(h.name for h in c.kills.values()) or "none"
            return self._refused(ev.ts_ns, ev.who, "resume", name,
                                 f"no kill switch ({name}) in force (in force: {in_force})")
        if halt.scope_kind == "venue":
            self._refresh_venues()
        self._count_controls()
        left = ", ".join(h.name for h in c.kills.values())
        text = (f"kill switch ({name}) released by {ev.who} (engaged by {halt.who})"
                + (f"; still in force: {left}" if left else ""))
        log.warning("%s", text)
        c.record(OperatorAction(ts_ns=ev.ts_ns, who=ev.who, action="resume", scope=name, ok=True, text=text))
        return NO_COMMANDS

    def on_venue_enable(self, ev: VenueEnableChanged) -> list[Command]:
        """An operator takes a venue out of routing or puts it back. Its
        children canceled here end as any canceled child does: their
        parents go on to the next wave of their plan on the venues still
        routable, or end as the waterfall runs out."""
        c = self.controls
        action = "venue_enable" if ev.enabled else "venue_disable"
        if ev.venue not in self.venue_names:
            return self._refused(ev.ts_ns, ev.who, action, ev.venue, f"unknown venue {ev.venue!r}")
        out: list[Command] = []
        if ev.enabled:
            was = c.disabled.pop(ev.venue, None)
            text = (f"venue {ev.venue} enabled by {ev.who}" if was is not None
                    else f"venue {ev.venue} was not disabled")
        else:
            if ev.venue not in c.disabled:
                c.disabled[ev.venue] = VenueOff(venue=ev.venue, who=ev.who, reason=ev.reason, since_ns=ev.ts_ns)
            if ev.cancel_working:
                for child in list(self.children.values()):
                    if child.venue == ev.venue and not child.is_terminal and \
                            child.state is not OrdStatus.PENDING_CANCEL:
                        self._cancel_child(child, ev.ts_ns, out)
            text = (f"venue {ev.venue} disabled by {ev.who}" + (f": {ev.reason}" if ev.reason else "")
                    + (f"; {len(out)} working children canceled" if ev.cancel_working
                       else "; its working children are left to work"))
        self._refresh_venues()
        self._count_controls()
        log.warning("%s", text)
        c.record(OperatorAction(ts_ns=ev.ts_ns, who=ev.who, action=action, scope=ev.venue, ok=True, text=text,
                                child_cancels_sent=len(out)))
        return out

    def on_risk_limit_changed(self, ev: RiskLimitChanged) -> None:
        """An operator changes a pre-trade limit; the next order meets it.
        A change that does not fit is refused and nothing changes."""
        before = self._risk_value(ev.key)
        try:
            self.risk.change(ev.key, ev.value)
        except ConfigError as e:
            self._m.risk_limit_change["refused"].inc()
            log.error("risk limit change %s = %r by %s at %d refused: %s", ev.key, ev.value, ev.who, ev.ts_ns, e)
            return
        self._m.risk_limit_change["applied"].inc()
        log.warning("risk limit %s changed from %s to %s by %s at %d", ev.key, before, self._risk_value(ev.key),
                    ev.who, ev.ts_ns)

    def _risk_value(self, key: str) -> object:
        kind, _, rest = key.partition(".")
        which, _, field = rest.rpartition(".")
        cfg = self.risk.config
        if which:
            entries = cfg.symbols if kind == "symbol" else cfg.sessions
            for e in entries:
                if getattr(e, kind, None) == which:
                    v = getattr(e, field, None)
                    if v is not None:
                        return v
            return getattr(cfg, field, None)
        return getattr(cfg, key, None)

    def on_symbol_reenabled(self, ev: SymbolReenabled) -> None:
        """An operator lets a symbol the execution throttle stopped trade again."""
        if self.risk.reenable(ev.symbol):
            self._m.risk_symbols_stopped.set(len(self.risk.stopped_symbols()))
            log.warning("symbol %s re-enabled by %s at %d (execution throttle reset)", ev.symbol, ev.who, ev.ts_ns)
        else:
            log.warning("re-enable of %s by %s at %d: it was not stopped", ev.symbol, ev.who, ev.ts_ns)

    def _refused(self, now_ns: int, who: str, action: str, scope: str, why: str) -> list[Command]:
        log.warning("operator %s (%s) by %s refused: %s", action, scope, who, why)
        self.controls.record(OperatorAction(ts_ns=now_ns, who=who, action=action, scope=scope, ok=False, text=why))
        return NO_COMMANDS

    def _end_if_killed(self, parent: ParentOrder, now_ns: int, out: list[Command]) -> bool:
        """A working parent under a kill switch (one whose cancel a venue
        refused, say) sends no new wave: it ends here, canceled."""
        halt = self.controls.blocking(parent.symbol, parent.session)
        if halt is None:
            return False
        parent.routing_done = True
        parent.apply(PE.CANCELED)
        out.append(self._report(parent, ExecType.CANCELED, now_ns, text=halt.describe()))
        self._parent_done(parent, "partial_canceled" if parent.cum_qty else "canceled", now_ns)
        return True

    def _refresh_venues(self) -> None:
        """Rebuild what routing may use: the venues up less the ones an
        operator took out (disabled, or under a venue kill)."""
        blocked = self.controls.blocked_venues()
        self._routable = frozenset(self.venues_up - blocked) if blocked else frozenset(self.venues_up)
        self._venues_up_view = self._routable

    def _count_controls(self) -> None:
        m = self._m
        for kind, n in self.controls.counts().items():
            m.kill_switches.labels(scope=kind).set(n)
        for v in self.venue_names:
            m.venue_disabled.labels(venue=v).set(1 if v in self.controls.disabled else 0)

    def _no_venue_text(self) -> str:
        blocked = self.controls.blocked_venues() & self.venues_up
        if not blocked:
            return "no venue session is up to route to"
        return f"no venue to route to: {', '.join(sorted(blocked))} taken out of routing by an operator"

    def open_children_at(self, venue: str | None = None, symbol: str | None = None,
                         session: str | None = None) -> int:
        """Working children (at ``venue``, of ``symbol``, of parents of
        OMS ``session``, when given): what a kill waits to see reach zero."""
        if venue is None and symbol is None and session is None:
            return self._open_children
        n = 0
        for child in self.children.values():
            if child.is_terminal or (venue is not None and child.venue != venue) or \
                    (symbol is not None and child.symbol != symbol):
                continue
            if session is not None and self.parents[child.parent_id].session != session:
                continue
            n += 1
        return n

    @property
    def open_parents(self) -> int:
        return self._open_parents

    @property
    def open_children(self) -> int:
        return self._open_children

    @property
    def planner(self) -> Planner:
        return self._planner

    def use_planner(self, planner: Planner) -> None:
        """Decide new parents with ``planner`` from now on (recovery routes the
        recorded parents with their recorded decisions, then hands back)."""
        self._planner = planner

    @property
    def venue_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self._cfg.venues)

    def on_venue_report(self, ev: VenueReport) -> list[Command]:
        child = self.children.get(ev.child_id)
        if child is None or child.venue != ev.venue:
            if child is None and ev.exec_type is ExecType.ORDER_STATUS:
                return self._on_orphan_status(ev)
            if ev.child_id in self._orphans:
                log.warning("orphan %s at %s: %s (%s)", ev.child_id, ev.venue, ev.exec_type.name, ev.text)
                if ev.ord_status in TERMINAL:
                    del self._orphans[ev.child_id]
                return []
            if child is None and self._lost_id(ev.child_id):
                # A child the crashed process sent and never journaled, which
                # ended at the venue before the sweep could cancel it.
                self._m.venue_anomalies.labels(kind="orphan_report").inc()
                if ev.exec_type is ExecType.TRADE and ev.last_qty > 0:
                    self._m.venue_anomalies.labels(kind="orphan_fill").inc()
                    log.error("venue %s filled %d %s at %d ticks on %s, a child no parent owns (its records were "
                              "lost in a crash): the firm's shares, not an OMS order's", ev.venue, ev.last_qty,
                              ev.child_id, ev.last_px_ticks, ev.exec_id)
                return []
            if child is None and self._released(ev.child_id):
                # A resend or a venue's late word on a child finished long
                # ago (its parent too): nothing left to change.
                self._m.venue_anomalies.labels(kind="late_report").inc()
                log.warning("report %s for released child %s from %s ignored", ev.exec_id, ev.child_id, ev.venue)
                return []
            self._m.venue_anomalies.labels(kind="unknown_child").inc()
            log.warning("report for unknown child %s from %s ignored", ev.child_id, ev.venue)
            return []
        if ev.exec_type is ExecType.ORDER_STATUS:
            # An answer, not an execution: venues may repeat its ExecID.
            return self._on_status(child, ev)
        if ev.exec_id in child.seen_exec_ids:
            # A resend after reconnect: already reported once, never twice.
            self._m.venue_anomalies.labels(kind="duplicate_exec_id").inc()
            return []
        child.seen_exec_ids.add(ev.exec_id)
        parent = self.parents[child.parent_id]
        out: list[Command] = []
        try:
            self._apply_report(parent, child, ev, out)
        except IllegalTransitionError as e:
            self._m.illegal_transitions.labels(kind=e.kind).inc()
            log.error("%s (venue report %s ignored)", e, ev.exec_id)
        self._after_child_change(parent, ev.recv_ns, out)
        return out

    def on_venue_cancel_rejected(self, ev: VenueCancelRejected) -> list[Command]:
        child = self.children.get(ev.child_id)
        if child is None:
            self._m.venue_anomalies.labels(kind="unknown_child").inc()
            return []
        out: list[Command] = []
        if child.state is not OrdStatus.PENDING_CANCEL:
            # Usually the child filled or expired before the cancel landed.
            return out
        parent = self.parents[child.parent_id]
        if ev.reason == CxlRejReason.UNKNOWN_ORDER:
            # Asking again would loop forever and "refused" would keep it
            # working forever.
            self._child_lost(parent, child, ev.recv_ns, out)
            return out
        child.apply(CE.CANCEL_REFUSED)
        # The venue keeps the child; without an ack yet, keep watching for
        # one, otherwise leave the child to the venue (re-canceling a child
        # the venue just refused would only loop).
        if child.acked_ns is None:
            self._set_deadline(child, ev.recv_ns + self._ack_timeout_ns)
        else:
            expiry_ahead = child.expire_ns is not None and child.expire_ns > ev.recv_ns
            self._set_deadline(child, child.expire_ns if expiry_ahead else None)
        log.warning("venue %s refused cancel of child %s: %s", child.venue, child.child_id, ev.text)
        if parent.state is OrdStatus.PENDING_CANCEL:
            parent.apply(PE.CANCEL_REFUSED)
            cl = parent.pending_cancel_cl_ord_id
            parent.pending_cancel_cl_ord_id = None
            if cl is None:
                # The router's own cancel (kill switch, shutdown): the OMS
                # asked nothing, so it gets no OrderCancelReject.
                log.warning("venue %s refused the router's cancel of child %s (%s): parent %s keeps working",
                            child.venue, child.child_id, parent.cancel_note, parent.order_id)
            else:
                out.append(RejectCancel(
                    session=parent.session, order_id=parent.order_id, cl_ord_id=cl,
                    orig_cl_ord_id=parent.cl_ord_id, ord_status=parent.state, reason=CxlRejReason.OTHER,
                    response_to_replace=False,
                    text=f"venue {child.venue} refused to cancel child {child.child_id}: {ev.text}",
                ))
                self._m.cancel_reject["other"].inc()
        self._after_child_change(parent, ev.recv_ns, out)
        return out

    def _child_lost(self, parent: ParentOrder, child: ChildOrder, now_ns: int, out: list[Command]) -> None:
        """The venue does not know the child: it never arrived (lost, or
        refused at session level), or the venue lost it (restarted with an
        empty book). Nothing works there, so it ends with what it filled
        and the parent goes on (next wave, or its end with this in Text)."""
        self._m.venue_anomalies.labels(kind="lost_child").inc()
        never = child.acked_ns is None and child.cum_qty == 0
        log.error("venue %s does not know child %s (%s, filled %d of %d): treated as %s", child.venue,
                  child.child_id, "never acked" if child.acked_ns is None else "acked",
                  child.cum_qty, child.qty, "rejected" if never else "canceled")
        child.apply(CE.REJECT if never else CE.CANCELED)
        self._child_done(child, now_ns)
        note = (f"venue {child.venue} no longer knows child {child.child_id} "
                f"(filled {child.cum_qty} of {child.qty}): treated as done")
        self._after_child_change(parent, now_ns, out, note)

    def _on_orphan_status(self, ev: VenueReport) -> list[Command]:
        """A venue holds an order of ours the engine does not know: a child
        sent in the last moments before a crash whose record never reached
        the journal (or one released while it still worked). No parent
        owns it, so it is canceled at once; what it filled is the firm's,
        said loudly."""
        if ev.ord_status in TERMINAL or not ev.child_id.startswith(self._prefix):
            if not ev.child_id.startswith(self._prefix):
                self._m.venue_anomalies.labels(kind="unknown_child").inc()
            return []
        if ev.child_id in self._orphans or ev.side is None or not ev.symbol:
            return []
        self._orphans[ev.child_id] = ev.venue
        self._m.venue_anomalies.labels(kind="orphan_child").inc()
        if ev.cum_qty:
            self._m.venue_anomalies.labels(kind="orphan_fill").inc()
        log.error("venue %s holds %s %s %d %s (filled %d), an order no parent owns: canceling it%s", ev.venue,
                  ev.child_id, ev.side.name, ev.cum_qty + ev.leaves_qty, ev.symbol, ev.cum_qty,
                  f"; its {ev.cum_qty} filled shares are the firm's, not an OMS order's" if ev.cum_qty else "")
        return [CancelChild(venue=ev.venue, child_id=ev.child_id, cancel_id=self._next_id("X"), symbol=ev.symbol,
                            side=ev.side, qty=ev.cum_qty + ev.leaves_qty)]

    def _on_status(self, child: ChildOrder, ev: VenueReport) -> list[Command]:
        """The venue's answer to an OrderStatusRequest: its truth wins.
        Shares it filled that the router never heard of are booked now and
        reported to the OMS once (CumQty and AvgPx from the venue's own
        figures); a child it does not know ends; one it still works is
        acked if the ack was missed."""
        self._status_due.pop(child.child_id, None)
        self._unreconciled.discard(child.child_id)
        out: list[Command] = []
        if child.is_terminal:
            return out
        parent = self.parents[child.parent_id]
        now = ev.recv_ns
        if ev.ord_status is OrdStatus.REJECTED and ev.cum_qty == 0:
            # "Unknown order": nothing to compare, the child is gone there.
            self._child_lost(parent, child, now, out)
            return out
        missed = min(ev.cum_qty, child.qty) - child.cum_qty
        if missed > 0:
            notional = ev.cum_notional_ticks - child.notional_ticks
            self._m.venue_anomalies.labels(kind="missed_fill").inc()
            log.error("venue %s reports child %s filled %d, the router saw %d: booking the missed %d at %s ticks",
                      child.venue, child.child_id, ev.cum_qty, child.cum_qty, missed, notional / missed)
            # The venue gives only the average price of what was missed. As
            # at most two fills on adjacent ticks (q_lo at px, q_hi at px+1)
            # every LastQty x LastPx stays on the grid and their sum is the
            # venue's notional exactly, so the OMS's AvgPx is the venue's.
            px = notional // missed
            q_hi = notional - px * missed
            text = f"reconciled with venue {child.venue}: {missed} filled while disconnected"
            if missed - q_hi:
                self._book_fill(parent, child, missed - q_hi, px, (missed - q_hi) * px, now, out, text)
            if q_hi:
                self._book_fill(parent, child, q_hi, px + 1, q_hi * (px + 1), now, out, text)
        elif ev.cum_qty < child.cum_qty:
            self._m.venue_anomalies.labels(kind="status_behind").inc()
            log.error("venue %s reports child %s filled %d, less than the %d the router booked", child.venue,
                      child.child_id, ev.cum_qty, child.cum_qty)
        if child.is_terminal:
            pass  # the missed fills completed it
        elif ev.ord_status in TERMINAL:
            # The venue ended what was left (a reject after fills included).
            log.warning("venue %s says child %s is %s (filled %d of %d)", child.venue, child.child_id,
                        ev.ord_status.name.lower(), child.cum_qty, child.qty)
            child.apply(CE.CANCELED)
            self._child_done(child, now)
        elif child.acked_ns is None:
            # Working at the venue: the ack was missed (a filled child has
            # moved past it already; only its ack watchdog must go).
            if child.state is OrdStatus.PENDING_NEW or child.state is OrdStatus.PENDING_CANCEL:
                child.apply(CE.ACK)
            child.acked_ns = now
            if child.state is not OrdStatus.PENDING_CANCEL:
                self._set_deadline(child, child.expire_ns)
        self._after_child_change(parent, now, out)
        return out

    def on_timer(self, now_ns: int) -> list[Command]:
        out: list[Command] = []
        if self._status_due and min(self._status_due.values()) <= now_ns:
            self._status_overdue(now_ns, out)
        if self._markout_at is not None and self._markout_at <= now_ns:
            self._resolve_markouts(now_ns)
        if self._retire and self._retire[0][0] <= now_ns:
            self._release_finished(now_ns)
        while self._deadlines and self._deadlines[0][0] <= now_ns:
            deadline, cid = heapq.heappop(self._deadlines)
            child = self.children.get(cid)
            if child is None or child.is_terminal or child.deadline_ns != deadline:
                continue
            child.deadline_ns = None
            if child.state is OrdStatus.PENDING_CANCEL:
                if self._defer_for_backlog():
                    # Its answer may be queued unread: asking again would
                    # only add to the backlog.
                    self._set_deadline(child, now_ns + self._ack_timeout_ns)
                    continue
                # The cancel itself went unanswered: ask again.
                self._m.venue_anomalies.labels(kind="cancel_timeout").inc()
                self._send_cancel(child, now_ns, out)
            else:
                if deadline != child.expire_ns:
                    if self._defer_for_backlog():
                        # The router is behind on its own inbox: the ack may
                        # be queued there unread, so canceling would be the
                        # router's fault, not the venue's. Watch another
                        # ack timeout (a slice's own expiry still applies).
                        nxt = now_ns + self._ack_timeout_ns
                        exp = child.expire_ns
                        self._set_deadline(child, nxt if exp is None else min(exp, nxt))
                        continue
                    # No ack in time is a venue problem; a slice reaching
                    # its own expiry is routine.
                    self._m.venue_anomalies.labels(kind="ack_timeout").inc()
                self._cancel_child(child, now_ns, out)
        return out

    def _status_overdue(self, now_ns: int, out: list[Command]) -> None:
        """A venue left a status request unanswered: cancel the child, whose
        answer (canceled, too late, or unknown) settles it."""
        for cid, due in list(self._status_due.items()):
            if due > now_ns:
                continue
            child = self.children.get(cid)
            if child is None or child.is_terminal:
                del self._status_due[cid]
                continue
            if self._defer_for_backlog():
                # As for an ack: its answer may be queued unread behind the backlog.
                self._status_due[cid] = now_ns + self._ack_timeout_ns
                continue
            del self._status_due[cid]
            self._m.venue_anomalies.labels(kind="status_timeout").inc()
            log.error("venue %s did not answer the status request for child %s: canceling it", child.venue, cid)
            if child.state is not OrdStatus.PENDING_CANCEL:
                self._cancel_child(child, now_ns, out)

    def plan_name(self, order_id: str) -> str:
        """The name of the plan a working parent follows ("" once done)."""
        plan = self._plans.get(order_id)
        return plan.name if plan is not None else ""

    def next_deadline_ns(self) -> int | None:
        """The earliest order deadline (a child's ack timeout, slice expiry
        or cancel watchdog); None when no order waits on one."""
        while self._deadlines:
            deadline, cid = self._deadlines[0]
            child = self.children.get(cid)
            if child is not None and not child.is_terminal and child.deadline_ns == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def next_timer_ns(self) -> int | None:
        """When the engine next wants a ``TimerFired`` (None: never): the
        earliest order deadline, markout horizon or release of finished
        orders. Drivers arm their one timer for this."""
        t = self.next_deadline_ns()
        if self._status_due:
            sd = min(self._status_due.values())
            if t is None or sd < t:
                t = sd
        mk = self._markout_at
        if mk is not None and (t is None or mk < t):
            t = mk
        if self._retire:
            # Rounded up to a whole second: one wake-up releases a batch.
            due = -(-self._retire[0][0] // RETIRE_EVERY_NS) * RETIRE_EVERY_NS
            if t is None or due < t:
                t = due
        return t

    def _resolve_markouts(self, now_ns: int) -> None:
        st, md = self._stats, self._market
        self._markout_at = None
        if st is None or md is None:
            return
        st.update_markouts(now_ns, md.consolidated_mid2)
        self._last_markout_ns = now_ns
        self._arm_markouts()

    def _arm_markouts(self) -> None:
        if self._markout_at is not None or self._stats is None:
            return
        due = self._stats.next_markout_ns()
        if due is not None:
            self._markout_at = max(due, self._last_markout_ns + MARKOUT_BATCH_NS)

    def _count_fallback(self, reason: str) -> None:
        c = self._fallbacks.get(reason)
        if c is None:
            c = self._fallbacks[reason] = self._m.model_fallbacks.labels(reason=reason)
        c.inc()

    # -------------------------------------------------------------- internals

    def _apply_report(self, parent: ParentOrder, child: ChildOrder, ev: VenueReport,
                      out: list[Command]) -> None:
        vm = self._m.venue[child.venue]
        et = ev.exec_type
        if et is ExecType.NEW:
            child.apply(CE.ACK)
            if child.acked_ns is None:
                child.acked_ns = ev.recv_ns
                vm.ack_latency.observe((ev.recv_ns - child.sent_ns) / 1e9)
                # The ack watchdog is done; what remains is the slice's own
                # expiry. A pending cancel keeps its own watchdog.
                if child.state is not OrdStatus.PENDING_CANCEL:
                    self._set_deadline(child, child.expire_ns)
            return
        if et is ExecType.TRADE:
            qty = ev.last_qty
            room = child.qty - child.cum_qty
            if qty <= 0:
                self._m.venue_anomalies.labels(kind="zero_fill").inc()
                return
            if qty > room:
                self._m.venue_anomalies.labels(kind="overfill").inc()
                log.error("venue %s over-filled child %s: %d > open %d; capped",
                          child.venue, child.child_id, qty, room)
                qty = room
                if qty == 0:
                    return
            px = ev.last_px_ticks
            # Some venues end an IOC in the fill itself (150=F, 39=4)
            # instead of a separate cancel report.
            ends = ev.ord_status is OrdStatus.CANCELED or ev.ord_status is OrdStatus.EXPIRED
            self._book_fill(parent, child, qty, px, qty * px, ev.recv_ns, out, end_child=ends)
            return
        if et is ExecType.CANCELED or et is ExecType.EXPIRED:
            child.apply(CE.CANCELED)
            self._child_done(child, ev.recv_ns)
            return
        if et is ExecType.REJECTED:
            child.apply(CE.REJECT)
            log.warning("venue %s rejected child %s: %s", child.venue, child.child_id, ev.text)
            self._child_done(child, ev.recv_ns)
            return
        if et is ExecType.PENDING_CANCEL:
            return
        self._m.venue_anomalies.labels(kind="unhandled_exec_type").inc()

    def _book_fill(self, parent: ParentOrder, child: ChildOrder, qty: int, px_ticks: int, notional_ticks: int,
                   now_ns: int, out: list[Command], text: str = "", end_child: bool = False) -> None:
        """One fill of ``qty`` (0 < qty <= the child's open quantity) booked
        on child and parent and reported to the OMS. ``px_ticks`` is its
        price; ``notional_ticks`` its exact qty x price (several fills at
        once, from a venue's status, need not share one price).
        ``end_child``: the venue also ended the child's remainder."""
        vm = self._m.venue[child.venue]
        child.apply(child.fill_event(qty))
        child.cum_qty += qty
        child.notional_ticks += notional_ticks
        if end_child and not child.is_terminal:
            child.apply(CE.CANCELED)
        if child.first_fill_ns is None:
            child.first_fill_ns = now_ns
        if self._stats is not None:
            st = self._stats
            st.record_fill(st.venue_index[child.venue], st.symbol_index[child.symbol], child.side.sign,
                           px_ticks, qty, now_ns)
            if self._markout_at is None:
                self._arm_markouts()
        vm.fills.inc()
        vm.filled_qty.inc(qty)
        if self.risk.enabled:
            stopped = self.risk.on_fill(child.symbol, now_ns)
            if stopped is not None:
                # Working children go on; no new parent or child of the
                # symbol is routed until an operator re-enables it.
                self._m.risk_symbols_stopped.set(len(self.risk.stopped_symbols()))
                log.error("%s", stopped)
        parent_was_cancel = parent.state is OrdStatus.PENDING_CANCEL
        replace = parent.replace
        parent.fill(qty, px_ticks, notional_ticks)
        if parent.arrival_mid2 > 0:
            # 2*px against 2*mid keeps the arithmetic in whole ticks.
            vm.slippage_bps.observe(cost_bps(parent.side.sign, 2 * px_ticks, parent.arrival_mid2))
        out.append(self._report(parent, ExecType.TRADE, now_ns, last_qty=qty, last_px_ticks=px_ticks,
                                last_mkt=self._cfg.venue(child.venue).last_mkt, text=text))
        if child.is_terminal:
            self._child_done(child, now_ns)
        if parent.state is OrdStatus.FILLED:
            self._parent_done(parent, "filled", now_ns)
            if parent_was_cancel:
                out.append(RejectCancel(
                    session=parent.session, order_id=parent.order_id,
                    cl_ord_id=parent.pending_cancel_cl_ord_id or "", orig_cl_ord_id=parent.cl_ord_id,
                    ord_status=OrdStatus.FILLED, reason=CxlRejReason.TOO_LATE_TO_CANCEL,
                    response_to_replace=False, text="too late to cancel: order filled",
                ))
                self._m.cancel_reject["too_late_to_cancel"].inc()
            elif replace is not None:
                self._drop_replace(parent, CxlRejReason.TOO_LATE_TO_CANCEL, "too late to replace: order filled", out)

    def _child_done(self, child: ChildOrder, now_ns: int) -> None:
        self._open_children -= 1
        if self._stats is not None:
            # The router's own outcomes feed the venue statistics the
            # features read: fill rate, time to fill, partial fills.
            self._stats.record_child(self._stats.venue_index[child.venue], child.qty, child.cum_qty, child.sent_ns,
                                     child.first_fill_ns, 0 < child.cum_qty < child.qty, now_ns)
        self._m.open_children.set(self._open_children)
        st = child.state
        if st is OrdStatus.FILLED:
            outcome = "filled"
        elif st is OrdStatus.REJECTED:
            outcome = "rejected"
        else:
            outcome = "partial_canceled" if child.cum_qty else "canceled"
        self._m.venue[child.venue].outcome[outcome].inc()

    def _parent_done(self, parent: ParentOrder, outcome: str, now_ns: int) -> None:
        self._open_parents -= 1
        self._m.open_parents.set(self._open_parents)
        self._m.parent_outcome[outcome].inc()
        self._plans.pop(parent.order_id, None)
        self._wave.pop(parent.order_id, None)
        self._ids.set_status(ClOrdIdTable.key(parent.session, parent.cl_ord_id), _CODE[parent.state])
        for cl in parent.prior_cl_ord_ids:
            self._ids.set_status(ClOrdIdTable.key(parent.session, cl), _CODE[parent.state])
        self._retire.append((now_ns + self._retain_ns, parent.order_id))
        # Its credit: what it executed stays charged, the rest is given back.
        self.risk.parent_done(parent.order_id, parent.notional_ticks)
        if self._risk_notes:
            self._risk_notes.pop(parent.order_id, None)

    def _child_seq(self, child_id: str) -> int:
        """The sequence number in a child ID of this engine's prefix; 0 for
        any other ID."""
        p = self._prefix
        if not child_id.startswith(p) or child_id[len(p):len(p) + 1] != "C":
            return 0
        seq = child_id[len(p) + 1:]
        return int(seq) if seq.isdigit() else 0

    def _lost_id(self, child_id: str) -> bool:
        """Whether ``child_id`` is in the window of IDs lost in a crash."""
        lo, hi = self._lost_ids
        return hi != 0 and lo < self._child_seq(child_id) <= hi

    def _released(self, child_id: str) -> bool:
        """Whether ``child_id`` is one this engine created and has released."""
        return 0 < self._child_seq(child_id) <= self._seq

    def _release_finished(self, now_ns: int) -> None:
        """Drop finished parents (and their children) whose retention ran out."""
        q = self._retire
        while q and q[0][0] <= now_ns:
            _, oid = q.popleft()
            parent = self.parents.get(oid)
            if parent is None:
                continue
            if not all(self.children[c].is_terminal for c in parent.children):
                q.append((now_ns + self._retain_ns, oid))  # cannot happen; never drop a working child
                log.error("finished parent %s still has working children; kept", oid)
                continue
            for c in parent.children:
                del self.children[c]
            del self.parents[oid]

    def _after_child_change(self, parent: ParentOrder, now_ns: int, out: list[Command], note: str = "") -> None:
        """``note``: what the OMS should read if this ends the parent."""
        if parent.is_terminal:
            return
        if parent.state is OrdStatus.PENDING_CANCEL:
            self._maybe_finish_cancel(parent, now_ns, out, note)
            return
        if parent.replace is not None:
            self._maybe_finish_replace(parent, now_ns, out)
            return
        wave = self._wave.get(parent.order_id, ())
        if all(self.children[c].is_terminal for c in wave):
            if self.controls.kills and self._end_if_killed(parent, now_ns, out):
                return
            self._advance(parent, now_ns, out, note)

    def _maybe_finish_cancel(self, parent: ParentOrder, now_ns: int, out: list[Command], note: str = "") -> None:
        if any(not self.children[c].is_terminal for c in parent.children):
            return
        parent.apply(PE.CANCELED)
        cl = parent.pending_cancel_cl_ord_id or parent.cl_ord_id
        parent.pending_cancel_cl_ord_id = None
        why = parent.cancel_note or "canceled at OMS request"
        out.append(self._report(parent, ExecType.CANCELED, now_ns, cl_ord_id=cl, orig=parent.cl_ord_id,
                                text=why + (f"; {note}" if note else "")))
        self._parent_done(parent, "partial_canceled" if parent.cum_qty else "canceled", now_ns)

    def _advance(self, parent: ParentOrder, now_ns: int, out: list[Command], note: str = "") -> None:
        """Send the next wave with non-zero quantity, or finish the parent
        (``note``: why, if it was not the plan's own end)."""
        plan = self._plans[parent.order_id]
        lot = self._lots[parent.symbol]
        while not parent.routing_done and parent.step < len(plan.waves):
            wave = plan.waves[parent.step]
            parent.step += 1
            slices = [s for s in wave.slices if s.venue in self._routable]
            if parent.repriced:
                # A resting slice is for a DAY limit parent only.
                slices = [s for s in slices if s.tif is not TimeInForce.DAY or
                          (parent.tif is TimeInForce.DAY and parent.ord_type is OrdType.LIMIT)]
            if not slices:
                continue
            residual = parent.qty - parent.cum_qty
            # Policy limits hold whatever the planner: children capped at
            # max_child_qty (the excess waits for the next wave) and none
            # below min_child_qty unless the residual itself is smaller.
            wf = self._cfg.waterfall
            sizes = apply_limits(allocate(residual, [s.weight for s in slices], lot), wf.max_child_qty,
                                 wf.min_child_qty, lot)
            sent: list[str] = []
            risk = self.risk
            for sl, qty in zip(slices, sizes):
                if qty <= 0:
                    continue
                # Planners price every slice at the parent's limit (``limit_of``);
                # after a replace that is the new one.
                px = (parent.price_ticks if parent.ord_type is OrdType.LIMIT else None) if parent.repriced \
                    else sl.limit_ticks
                if risk.enabled:
                    # A child the planner made passes the same controls as an
                    # OMS order. One that breaches is not sent: the slice is
                    # skipped and counted (its shares wait for the plan's next
                    # wave, which is checked again), and if the waterfall runs
                    # out the parent's final Text says which control stopped it.
                    # A market child comes back as a limit at the collar.
                    breach = risk.check_child(parent.session, parent.symbol, parent.side, qty,
                                              OrdType.MARKET if px is None else OrdType.LIMIT, px,
                                              parent.price_ticks, now_ns)
                    if breach is not None:
                        self._child_blocked(parent, sl.venue, qty, breach)
                        continue
                    px = risk.child_px
                cid = self._next_id("C")
                ord_type = OrdType.MARKET if px is None else OrdType.LIMIT
                expire = now_ns + sl.timeout_ms * 1_000_000 if sl.timeout_ms else None
                child = ChildOrder(
                    child_id=cid, parent_id=parent.order_id, venue=sl.venue, symbol=parent.symbol,
                    side=parent.side, qty=qty, ord_type=ord_type, price_ticks=px,
                    tif=sl.tif, sent_ns=now_ns, expire_ns=expire,
                )
                self.children[cid] = child
                parent.children.append(cid)
                ack_deadline = now_ns + self._ack_timeout_ns
                self._set_deadline(child, ack_deadline if expire is None else min(expire, ack_deadline))
                sent.append(cid)
                self._open_children += 1
                vm = self._m.venue[sl.venue]
                vm.children_sent.inc()
                vm.child_qty_sent.inc(qty)
                out.append(SendChildOrder(
                    venue=sl.venue, child_id=cid, symbol=parent.symbol, side=parent.side, qty=qty,
                    ord_type=ord_type, price_ticks=px, tif=sl.tif, trace_ns=parent.trace_ns,
                ))
            if sent:
                self._m.open_children.set(self._open_children)
                self._wave[parent.order_id] = sent
                return
        # Nothing left to send: the remainder goes back to the OMS.
        parent.routing_done = True
        if parent.state is not OrdStatus.PENDING_CANCEL and not parent.is_terminal:
            parent.apply(PE.CANCELED)
            text = f"waterfall exhausted: {parent.qty - parent.cum_qty} unfilled"
            if self._risk_notes:
                stopped = self._risk_notes.get(parent.order_id)
                if stopped is not None:
                    note = f"{note}; {stopped}" if note else stopped
            out.append(self._report(parent, ExecType.CANCELED, now_ns, text=text + (f"; {note}" if note else "")))
            self._parent_done(parent, "partial_canceled" if parent.cum_qty else "canceled", now_ns)

    def _child_blocked(self, parent: ParentOrder, venue: str, qty: int, breach: Breach) -> None:
        self._m.risk_reject[breach.limit, "child"].inc()
        text = f"child of {qty} for {venue} not sent: {breach.text}"
        self._risk_notes[parent.order_id] = text
        log.warning("parent %s (%s/%s): %s", parent.order_id, parent.session, parent.cl_ord_id, text)

    def _set_deadline(self, child: ChildOrder, deadline: int | None) -> None:
        # Superseded heap entries are skipped lazily: an entry only counts
        # while it equals the child's current deadline.
        child.deadline_ns = deadline
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, child.child_id))

    def _cancel_children(self, parent: ParentOrder, now_ns: int, out: list[Command]) -> None:
        """Cancel every open child of ``parent`` not already being canceled."""
        for cid in parent.children:
            child = self.children[cid]
            if not child.is_terminal and child.state is not OrdStatus.PENDING_CANCEL:
                self._cancel_child(child, now_ns, out)

    def _cancel_child(self, child: ChildOrder, now_ns: int, out: list[Command]) -> None:
        child.apply(CE.CANCEL_SENT)
        self._send_cancel(child, now_ns, out)

    def _send_cancel(self, child: ChildOrder, now_ns: int, out: list[Command]) -> None:
        cancel_id = self._next_id("X")
        self._set_deadline(child, now_ns + self._ack_timeout_ns)
        out.append(CancelChild(venue=child.venue, child_id=child.child_id, cancel_id=cancel_id,
                               symbol=child.symbol, side=child.side, qty=child.qty))

    @staticmethod
    def _told(parent: ParentOrder) -> OrdStatus:
        """The OrdStatus the OMS is told the parent has."""
        st = parent.state
        if st is OrdStatus.PENDING_CANCEL and parent.pending_cancel_cl_ord_id is None:
            # The router's own cancel (kill switch, shutdown): the OMS asked
            # for nothing, so it hears what the order is, not that a cancel
            # it never sent is pending.
            return OrdStatus.PARTIALLY_FILLED if parent.cum_qty else OrdStatus.NEW
        return st

    def _report(self, parent: ParentOrder, exec_type: ExecType, now_ns: int, *, last_qty: int = 0,
                last_px_ticks: int = 0, last_mkt: str | None = None, cl_ord_id: str | None = None,
                orig: str | None = None, text: str = "") -> ReportToOms:
        return ReportToOms(
            session=parent.session, order_id=parent.order_id, cl_ord_id=cl_ord_id or parent.cl_ord_id,
            orig_cl_ord_id=orig, exec_id=self._next_id("E"), exec_type=exec_type,
            ord_status=self._told(parent), symbol=parent.symbol, side=parent.side, order_qty=parent.qty,
            ord_type=parent.ord_type, price_ticks=parent.price_ticks, cum_qty=parent.cum_qty,
            leaves_qty=parent.leaves_qty, avg_px_ticks_num=parent.notional_ticks, last_qty=last_qty,
            last_px_ticks=last_px_ticks, last_mkt=last_mkt, text=text,
            transact_ns=now_ns,
        )

    def _reject_order(self, session: str, cl_ord_id: str, symbol: str, side: Side, qty_raw: str,
                      ord_type_raw: str, reason: OrdRejReason, text: str, now_ns: int) -> RejectOrder:
        self._m.order_reject[reason.name.lower()].inc()
        self._m.parent_outcome["rejected"].inc()
        log.info("rejected order %s/%s: %s", session, cl_ord_id, text)
        return RejectOrder(session=session, order_id="NONE", cl_ord_id=cl_ord_id, exec_id=self._next_id("E"),
                           symbol=symbol, side=side, qty_raw=qty_raw, ord_type_raw=ord_type_raw,
                           reason=reason, text=text, transact_ns=now_ns)

    def _reject_cancel(self, ev: CancelRequested | ReplaceRequested, order: tuple[str, OrdStatus] | None,
                       reason: CxlRejReason, text: str) -> RejectCancel:
        """``order``: (OrderID, OrdStatus) of the order the cancel or replace
        names, None if unknown."""
        self._m.cancel_reject[reason.name.lower()].inc()
        replace = isinstance(ev, ReplaceRequested) or ev.replace
        log.info("rejected %s %s/%s: %s", "replace" if replace else "cancel", ev.session, ev.cl_ord_id, text)
        return RejectCancel(
            session=ev.session, order_id=order[0] if order else "NONE", cl_ord_id=ev.cl_ord_id,
            orig_cl_ord_id=ev.orig_cl_ord_id, ord_status=order[1] if order else OrdStatus.REJECTED,
            reason=reason, response_to_replace=replace, text=text,
        )

    # ------------------------------------------------------------ overload

    def on_models_changed(self, ev: ModelsChanged) -> None:
        """Which models route from the next parent on (``router.routing.models``).
        A planner without models, or a version it has not loaded, refuses
        and nothing changes. Journaled and replayed like every input; a
        restore replays with the recorded decisions, so the restored planner
        serves the configured champion until an operator stages again."""
        apply = getattr(self._planner, "apply_models", None)
        scope = f"{ev.mode} {ev.challenger}" if ev.challenger else f"champion {ev.champion}"
        if apply is None:
            self._refused(ev.ts_ns, ev.who, "model", scope, "the planner routes without models")
            return
        was = getattr(self._planner, "model_version", None)
        why = apply(ev)
        if why is not None:
            self._refused(ev.ts_ns, ev.who, "model", scope, why)
            return
        m = self._m
        if was != ev.champion:
            if was:
                m.model_info.labels(version=was).set(0)
            m.model_info.labels(version=ev.champion).set(1)
        m.model_changes.labels(who="auto-rollback" if ev.who == "auto-rollback" else "operator").inc()
        m.model_challenger.clear()
        if ev.challenger is not None and ev.mode != "off":
            m.model_challenger.labels(version=ev.challenger, mode=ev.mode).set(ev.fraction if ev.mode == "canary"
                                                                              else 1.0)
        text = (f"champion {ev.champion}" + (f", challenger {ev.challenger} in {ev.mode}" if ev.challenger and
                                             ev.mode != "off" else ", no challenger")
                + (f" on {100 * ev.fraction:.0f}% of parents" if ev.mode == "canary" else "")
                + f" (by {ev.who}" + (f": {ev.reason})" if ev.reason else ")"))
        (log.error if ev.who == "auto-rollback" else log.warning)("models: %s", text)
        self.controls.record(OperatorAction(ts_ns=ev.ts_ns, who=ev.who, action="model", scope=scope, ok=True,
                                            text=text))

    def on_overload(self, ev: OverloadChanged) -> None:
        """The driver's back-pressure gate (``router.runtime.overload``): on,
        new parents are rejected ("router overloaded: ..."); off, routed
        again. Working orders, cancels and venue answers are untouched.
        ``backlog`` (the inbox is behind) defers ack deadlines, gate on or
        not."""
        was = self.overload
        if ev.backlog != self._backlog:
            self._backlog = ev.backlog
            if not ev.on and was is None:
                log.warning("inbox %s: %s; ack deadlines wait instead of canceling (new parents are still taken: "
                            "router.overload.enabled = false)", "backed up" if ev.backlog else "caught up",
                            ev.reason or "under its clear level")
        if ev.on:
            if was is None:
                self._overload_rejects = 0
                self._overload_since = ev.ts_ns
                self._m.overload_trips.labels(measure=ev.measure or "unknown").inc()
                log.warning("router overloaded: %s; new parents are rejected until it clears", ev.reason)
            elif (was.measure, was.backlog) != (ev.measure, ev.backlog):
                log.warning("router still overloaded, now by %s", ev.reason)
            self._set_overload(ev)
        elif was is not None:
            log.warning("router no longer overloaded after %.1f ms (%s): %d new parents were rejected",
                        (ev.ts_ns - self._overload_since) / 1e6, was.reason, self._overload_rejects)
            self._set_overload(None)

    def _set_overload(self, ev: OverloadChanged | None) -> None:
        self.overload = ev
        self._m.overloaded.set(0 if ev is None else 1)

    def _defer_for_backlog(self) -> bool:
        """Whether a watchdog that fell due (an ack's, a status question's, a
        cancel's) waits another ack timeout: the inbox is backed up, so the
        answer it waits for may be queued unread."""
        if not self._backlog:
            return False
        self._m.ack_timeouts_deferred.inc()
        return True

    def _reject_overloaded(self, ev: NewOrderReceived) -> RejectOrder:
        # Counted, not logged one by one: a log line per reject would add
        # to the load that caused them (on_overload logs the episode).
        ov = self.overload
        assert ov is not None
        self._overload_rejects += 1
        self._m.order_reject["overloaded"].inc()
        self._m.parent_outcome["rejected"].inc()
        return RejectOrder(session=ev.session, order_id="NONE", cl_ord_id=ev.cl_ord_id, exec_id=self._next_id("E"),
                           symbol=ev.symbol, side=ev.side, qty_raw=str(ev.qty), ord_type_raw=ev.ord_type.value,
                           reason=OrdRejReason.OTHER, text=f"router overloaded: {ov.reason}", transact_ns=ev.recv_ns)
