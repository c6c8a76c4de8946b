"""Events: what happened, decoded, with the time it happened.

Every input of the engine is one of ``EngineEvent``, a tagged union
(``msgspec`` tag = the class name), so the journal can record any input as
it came and recovery or replay can decode it back into the same type. Each
event says when it happened in ``ts_ns`` (for most, the ``recv_ns`` stamp
taken when the edge started decoding it).
"""

from __future__ import annotations

from typing import Literal

from router.domain.types import (
    CxlRejReason,
    ExecType,
    Msg,
    OrdRejReason,
    OrdStatus,
    OrdType,
    Side,
    TimeInForce,
    Urgency,
)


class Event(Msg, frozen=True, kw_only=True, tag=True):
    """Base of every engine input."""


# ---------------------------------------------------------------- OMS side events


class NewOrderReceived(Event, frozen=True, kw_only=True):
    """A NewOrderSingle from the OMS, already decoded and validated for shape.

    ``price_ticks`` is None for market orders. ``session`` is the OMS session
    key the answer must go back to.
    """

    session: str
    cl_ord_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    recv_ns: int
    strategy: str | None = None
    trace_ns: int | None = None
    """Tag 7002 from the OMS (a CLOCK_MONOTONIC stamp): copied onto the
    children so a benchmark can time OMS-to-venue on one clock."""
    urgency: Urgency = Urgency.NORMAL
    """The parent's urgency as the FIX edge read it: tag SorUrgency(7003),
    or, absent, the TimeInForce hint (IOC is HIGH). Journals written before
    the field existed decode as NORMAL, which is how they were routed."""

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


class InvalidOrderReceived(Event, frozen=True, kw_only=True):
    """A NewOrderSingle well-formed on the wire but not tradable (unknown
    symbol, bad quantity, off-tick price, unsupported type). Raw wire values
    are kept so the reject can echo them."""

    session: str
    cl_ord_id: str
    symbol: str
    side: Side
    qty_raw: str
    ord_type_raw: str
    reason: OrdRejReason
    text: str
    recv_ns: int

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


class CancelRequested(Event, frozen=True, kw_only=True):
    """OrderCancelRequest. ``replace``: an OrderCancelReplaceRequest as
    journals written before ``ReplaceRequested`` existed recorded it (the
    engine refused those, and a replay refuses them again)."""

    session: str
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str
    side: Side | None
    recv_ns: int
    replace: bool = False

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


class ReplaceRequested(Event, frozen=True, kw_only=True):
    """An OrderCancelReplaceRequest (35=G): the parent named by
    ``orig_cl_ord_id`` gets the new terms (total OrderQty, type, price,
    time in force) under ``cl_ord_id``. Symbol and side are what the OMS
    sent; changing them is refused. ``error``: the request is well formed
    on the wire but its new terms are not tradable (the text names the
    field); the engine answers it with an OrderCancelReject that carries
    the order's state."""

    session: str
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    recv_ns: int
    error: str = ""

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


# -------------------------------------------------------------- venue side events


class VenueReport(Event, frozen=True, kw_only=True):
    """An ExecutionReport from a venue about one of our child orders."""

    venue: str
    child_id: str
    exec_id: str
    exec_type: ExecType
    ord_status: OrdStatus
    last_qty: int
    last_px_ticks: int
    cum_qty: int
    leaves_qty: int
    text: str
    recv_ns: int
    cum_notional_ticks: int = 0
    """CumQty x AvgPx in ticks (shares x ticks, rounded to a whole number):
    read from order status answers only, where the router may learn of
    fills it never saw one by one."""
    symbol: str = ""
    side: Side | None = None
    """Order status answers only: what a child the router does not know
    (an orphan) is, so it can be canceled."""

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


class VenueCancelRejected(Event, frozen=True, kw_only=True):
    venue: str
    child_id: str
    text: str
    recv_ns: int
    reason: int = CxlRejReason.OTHER
    """CxlRejReason(102) as the venue sent it."""

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


class VenueSessionChanged(Event, frozen=True, kw_only=True):
    venue: str
    up: bool
    ts_ns: int


class MdEntry(Msg, frozen=True, kw_only=True):
    """One market-data entry: a book level (kind 0 bid / 1 ask) or a trade
    (kind 2). ``action`` is MDUpdateAction: 0 new, 1 change, 2 delete;
    ``level`` is 0-based; ``aggressor`` +1 buyer, -1 seller, 0 unknown.
    kind -1 or level -1 marks an entry the decoder could not read."""

    action: str
    kind: int
    symbol: str
    px_ticks: int
    size: int
    level: int
    aggressor: int


class MarketDataReceived(Event, frozen=True, kw_only=True):
    """A snapshot (35=W), incremental refresh (35=X) or request reject (35=Y)."""

    venue: str
    snapshot: bool
    symbol: str
    entries: tuple[MdEntry, ...]
    recv_ns: int
    rejected: bool = False

    @property
    def ts_ns(self) -> int:
        return self.recv_ns


class OmsSessionChanged(Event, frozen=True, kw_only=True):
    """The OMS session ``session`` logged on (``up``) or dropped."""

    session: str
    up: bool
    ts_ns: int


# ---------------------------------------------------------------------- timers


class TimerFired(Event, frozen=True, kw_only=True):
    """The driver's clock reached a deadline the engine asked for
    (``Engine.next_timer_ns``): ack timeouts, dark-rest expiry, cancel
    watchdogs and markout horizons all fall due through this one event."""

    ts_ns: int


# ------------------------------------------------------------------- controls


class TradingHalted(Event, frozen=True, kw_only=True):
    """Stop accepting new parents (working ones go on): the journal could not
    record (``journal.on_failure = "halt"``); the operator's kill switch
    will use it too."""

    reason: str
    ts_ns: int


class Restored(Event, frozen=True, kw_only=True):
    """The engine was rebuilt from the journal after a restart. IDs the
    crashed process may have used after its last durable record must not
    be used again: the next ones start ``id_gap`` further on. Each venue's
    first logon from now on also asks for every order the venue holds for
    this session (35=AF), so a child sent but never journaled (an orphan)
    is found and canceled."""

    id_gap: int
    ts_ns: int


class CancelAllRequested(Event, frozen=True, kw_only=True):
    """Cancel every working parent (its children at the venues first) and
    tell the OMS why: a clean shutdown; later the operator's kill switch."""

    reason: str
    ts_ns: int


# ------------------------------------------------------------------- operator


KillScope = Literal["all", "symbol", "session", "venue"]
"""What a kill switch covers: everything, one symbol, one OMS session (its
key, as in ``NewOrderReceived.session``), or one venue."""


class KillSwitchEngaged(Event, frozen=True, kw_only=True):
    """An operator's kill switch (RTS 6 Art. 12). Every working parent in
    scope is canceled (its children at the venues first) and the OMS told
    with a Text naming the kill and ``who``; new parents in scope are
    rejected until a ``KillSwitchReleased`` of the same scope. Venue scope:
    every parent with a child working at ``scope`` is canceled whole, and
    that venue gets no new child until released (to take a venue out and
    let its parents go on elsewhere, see ``VenueEnableChanged``)."""

    scope_kind: KillScope
    scope: str = ""
    """The symbol, session key or venue name ("" for "all")."""
    who: str
    reason: str = ""
    ts_ns: int


class KillSwitchReleased(Event, frozen=True, kw_only=True):
    """An operator lifts the kill switch of exactly this scope (other
    halts stay in force)."""

    scope_kind: KillScope
    scope: str = ""
    who: str
    ts_ns: int


class VenueEnableChanged(Event, frozen=True, kw_only=True):
    """An operator takes a venue out of routing (``enabled`` false: no new
    child goes there, the planners do not see it) or puts it back. On
    disable, ``cancel_working`` cancels its working children (their
    parents go on along their waterfall on the other venues, or end as it
    runs out); otherwise they are left to work."""

    venue: str
    enabled: bool
    cancel_working: bool = False
    who: str
    reason: str = ""
    ts_ns: int


# ---------------------------------------------------------------------- models


ModelMode = Literal["off", "shadow", "canary"]


class ModelsChanged(Event, frozen=True, kw_only=True):
    """Which models route: ``champion`` decides every parent (or the share
    not in the canary); ``challenger`` with ``mode`` "shadow" scores every
    parent beside it, its decision journaled and never acted on, or with
    "canary" routes the parents whose ClOrdID hashes under ``fraction``.
    The versions must have been loaded (and warmed) off the engine's thread
    first (``router.routing.models``); the change applies between two
    orders. ``who`` is an operator or "auto-rollback"."""

    champion: str
    challenger: str | None = None
    mode: ModelMode = "off"
    fraction: float = 0.0
    who: str
    reason: str = ""
    ts_ns: int


# ------------------------------------------------------------------------ risk


class RiskLimitChanged(Event, frozen=True, kw_only=True):
    """An operator changes one pre-trade limit at run time; it applies from
    the next order on. ``key`` is a ``[risk]`` field (``collar_bps``), a
    symbol's (``symbol.AAPL.collar_bps``) or an OMS session's
    (``session.OMS.max_msgs_per_s``); ``value`` is its TOML spelling
    (``restricted_symbols`` takes a comma-separated list). A key or value
    that does not fit is refused (logged, counted), nothing changed:
    ``router.risk.RiskControls.check_change`` lets the admin API say so first."""

    key: str
    value: str
    who: str
    ts_ns: int


class SymbolReenabled(Event, frozen=True, kw_only=True):
    """An operator lets the router route ``symbol`` again after the
    repeated-execution throttle stopped it (its execution count starts over)."""

    symbol: str
    who: str
    ts_ns: int


# -------------------------------------------------------------------- overload


class OverloadChanged(Event, frozen=True, kw_only=True):
    """The driver's back-pressure gate (``router.runtime.overload``) changed
    state. While ``on``, new parents are rejected with Text "router
    overloaded: <reason>" (cancels still go through). While ``backlog``,
    the engine's own inbox is behind: an ack deadline (or a status
    question's, or a cancel's) that falls due waits another ack timeout
    instead of canceling the child (or asking again), whose answer may be
    queued unread; also with the gate's refusals turned off, when
    ``backlog`` comes without ``on``. The driver measures; the engine only
    obeys this journaled input, so replay and restart recovery decide
    alike."""

    on: bool
    measure: str = ""
    """What holds it on (or backed up): "inbox_age" or "ack_time" ("" when neither)."""
    reason: str = ""
    """That measure, its value and its limit ("inbox age 35.2 ms over 20 ms")."""
    backlog: bool = False
    """The inbox measure is over its limit."""
    ts_ns: int


EngineEvent = (NewOrderReceived | InvalidOrderReceived | CancelRequested | ReplaceRequested | VenueReport
               | VenueCancelRejected | VenueSessionChanged | MarketDataReceived | TimerFired | TradingHalted
               | CancelAllRequested | OmsSessionChanged | Restored | KillSwitchEngaged | KillSwitchReleased
               | VenueEnableChanged | RiskLimitChanged | SymbolReenabled | OverloadChanged | ModelsChanged)
"""Every input the engine takes, operator commands included (they come from
the admin API through the driver, journaled like any other input)."""
