"""Parent and child order lifecycles as explicit transition tables.

Both machines use FIX OrdStatus values as their states so a state is also
what goes on the wire. An event that has no entry in the table for the
current state raises ``IllegalTransitionError``; the engine logs and counts it and
leaves the order untouched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeVar

from router.domain.types import TERMINAL_STATUSES, OrdStatus, OrdType, Side, TimeInForce, Urgency

S = OrdStatus


class IllegalTransitionError(Exception):
    def __init__(self, kind: str, order_id: str, state: OrdStatus, event: enum.Enum) -> None:
        super().__init__(f"{kind} {order_id}: event {event.name} is illegal in state {state.name}")
        self.kind = kind
        self.state = state
        self.event = event


class ParentEvent(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    PARTIAL_FILL = "partial_fill"
    FULL_FILL = "full_fill"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_REFUSED = "cancel_refused"
    CANCELED = "canceled"
    """Remainder canceled: by the OMS's request or because routing ended."""
    REPLACE_REQUESTED = "replace_requested"
    REPLACE_REFUSED = "replace_refused"
    REPLACED = "replaced"
    """The new terms took effect (the parent's quantity is already the new one)."""


class ChildEvent(enum.Enum):
    ACK = "ack"
    REJECT = "reject"
    PARTIAL_FILL = "partial_fill"
    FULL_FILL = "full_fill"
    CANCEL_SENT = "cancel_sent"
    CANCEL_REFUSED = "cancel_refused"
    CANCELED = "canceled"
    """Canceled by us, or the venue expired the remainder (IOC)."""


PE = ParentEvent
CE = ChildEvent
E = TypeVar("E", ParentEvent, ChildEvent)

# A parent's state is what the OMS has been told. PENDING_CANCEL is entered
# while children are being pulled back; fills still arrive there.
# CANCEL_REFUSED from PENDING_CANCEL returns to the state held before the
# request, so the table maps to None and the machine restores it.
# PENDING_REPLACE is the same for a cancel/replace: fills arrive there
# against the old terms; REPLACE_REFUSED and REPLACED both map to None, the
# state the fills make of the terms then in force (REPLACED down to the
# quantity already filled ends the order: FILLED).
PARENT_TRANSITIONS: dict[tuple[OrdStatus, ParentEvent], OrdStatus | None] = {
    (S.PENDING_NEW, PE.ACCEPT): S.NEW,
    (S.PENDING_NEW, PE.REJECT): S.REJECTED,
    (S.NEW, PE.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.NEW, PE.FULL_FILL): S.FILLED,
    (S.NEW, PE.CANCEL_REQUESTED): S.PENDING_CANCEL,
    (S.NEW, PE.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, PE.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, PE.FULL_FILL): S.FILLED,
    (S.PARTIALLY_FILLED, PE.CANCEL_REQUESTED): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, PE.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, PE.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, PE.FULL_FILL): S.FILLED,
    (S.PENDING_CANCEL, PE.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, PE.CANCEL_REFUSED): None,
    (S.NEW, PE.REPLACE_REQUESTED): S.PENDING_REPLACE,
    (S.PARTIALLY_FILLED, PE.REPLACE_REQUESTED): S.PENDING_REPLACE,
    (S.PENDING_REPLACE, PE.PARTIAL_FILL): S.PENDING_REPLACE,
    (S.PENDING_REPLACE, PE.FULL_FILL): S.FILLED,
    (S.PENDING_REPLACE, PE.REPLACE_REFUSED): None,
    (S.PENDING_REPLACE, PE.REPLACED): None,
}

CHILD_TRANSITIONS: dict[tuple[OrdStatus, ChildEvent], OrdStatus | None] = {
    (S.PENDING_NEW, CE.ACK): S.NEW,
    (S.PENDING_NEW, CE.REJECT): S.REJECTED,
    # Venues may skip the ack and answer an IOC with its outcome directly.
    (S.PENDING_NEW, CE.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PENDING_NEW, CE.FULL_FILL): S.FILLED,
    (S.PENDING_NEW, CE.CANCELED): S.CANCELED,
    (S.PENDING_NEW, CE.CANCEL_SENT): S.PENDING_CANCEL,
    (S.NEW, CE.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.NEW, CE.FULL_FILL): S.FILLED,
    (S.NEW, CE.CANCELED): S.CANCELED,
    (S.NEW, CE.CANCEL_SENT): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, CE.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, CE.FULL_FILL): S.FILLED,
    (S.PARTIALLY_FILLED, CE.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, CE.CANCEL_SENT): S.PENDING_CANCEL,
    # A cancel races the venue: fills, the ack or a reject may still arrive.
    (S.PENDING_CANCEL, CE.ACK): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, CE.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, CE.FULL_FILL): S.FILLED,
    (S.PENDING_CANCEL, CE.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, CE.REJECT): S.REJECTED,
    (S.PENDING_CANCEL, CE.CANCEL_REFUSED): None,
}


def _next(table: dict[tuple[OrdStatus, E], OrdStatus | None], kind: str, order_id: str, state: OrdStatus,
          event: E) -> OrdStatus | None:
    key = (state, event)
    if key not in table:
        raise IllegalTransitionError(kind, order_id, state, event)
    return table[key]


def _restore_state(filled: int, acked: bool, qty: int) -> OrdStatus:
    """The state a refused cancel (or a replace, refused or done) returns
    to: what the order would be in had the request never been sent."""
    if filled > 0:
        return S.FILLED if filled >= qty else S.PARTIALLY_FILLED
    return S.NEW if acked else S.PENDING_NEW


class _Lifecycle:
    """What parent and child orders share: the terminal test, the quantity
    still open and the next state through a transition table (the
    subclasses are the dataclasses that carry ``state``, ``qty`` and
    ``cum_qty``)."""

    __slots__ = ()
    state: OrdStatus
    qty: int
    cum_qty: int

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATUSES

    def _unfilled(self) -> int:
        """``qty - cum_qty``; 0 once terminal."""
        return 0 if self.state in TERMINAL_STATUSES else self.qty - self.cum_qty

    def _after(self, table: dict[tuple[OrdStatus, E], OrdStatus | None], kind: str, order_id: str, event: E,
               acked: bool) -> OrdStatus:
        """The state ``event`` leads to; for a refused cancel (None in the
        table), the state the order would be in had the cancel never been
        sent."""
        nxt = _next(table, kind, order_id, self.state, event)
        return _restore_state(self.cum_qty, acked, self.qty) if nxt is None else nxt


@dataclass(slots=True)
class PendingReplace:
    """A cancel/replace accepted for work: its new terms, and the children
    being pulled back before they take effect."""

    cl_ord_id: str
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    seq: int
    """The parent's sequence number (its ClOrdID table entry)."""
    rerun: bool
    """Whether the plan runs again from its first wave under the new terms
    (any change but a quantity decrease)."""
    old_charge: float
    """The parent's credit charge before the replace (given back to it if refused)."""
    new_charge: float
    """What the new terms are charged once they take effect (``router.risk``)."""
    canceling: list[str] = field(default_factory=list)
    """Children canceled for the replace: a replace whose cancel a venue
    refused cannot take effect."""


@dataclass(slots=True)
class ParentOrder(_Lifecycle):
    order_id: str
    session: str
    cl_ord_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    arrival_ns: int
    strategy: str | None = None
    trace_ns: int | None = None
    urgency: Urgency = Urgency.NORMAL
    """What the planner reads (``NewOrderReceived.urgency``); a replace
    keeps it (its plan is not asked for again)."""
    state: OrdStatus = S.PENDING_NEW
    cum_qty: int = 0
    notional_ticks: int = 0
    """Sum of fill qty * fill price in ticks; AvgPx is notional / cum_qty."""
    pending_cancel_cl_ord_id: str | None = None
    children: list[str] = field(default_factory=list)
    step: int = 0
    """Index of the next waterfall wave to send."""
    routing_done: bool = False
    """The plan is exhausted: nothing more will be sent for this parent."""
    arrival_mid2: int = 0
    """Consolidated bid+ask (2 x mid, ticks) when the parent arrived; 0 unknown."""
    cancel_note: str | None = None
    """Why the router itself canceled the parent (shutdown, kill switch): the
    Text of its final report. None: the OMS asked, or nobody did."""
    replace: PendingReplace | None = None
    """The cancel/replace being worked (state PENDING_REPLACE)."""
    prior_cl_ord_ids: list[str] = field(default_factory=list)
    """ClOrdIDs the parent had before its replaces, oldest first."""
    repriced: bool = False
    """A replace changed its price, type or time in force: its plan's slices
    trade at the parent's limit now, not the one they were planned with."""

    @property
    def leaves_qty(self) -> int:
        return self._unfilled()

    def apply(self, event: ParentEvent) -> OrdStatus:
        self.state = self._after(PARENT_TRANSITIONS, "parent", self.order_id, event, True)
        return self.state

    def fill(self, qty: int, price_ticks: int, notional_ticks: int | None = None) -> OrdStatus:
        """Book a fill; the caller guarantees qty <= leaves (children never
        exceed the parent's leaves). ``notional_ticks``: the fill's qty x
        price when it is not one price (fills learned together from a
        venue's order status)."""
        if qty <= 0 or qty > self.qty - self.cum_qty:
            raise ValueError(f"parent {self.order_id}: fill of {qty} with {self.qty - self.cum_qty} leaves")
        event = PE.FULL_FILL if self.cum_qty + qty == self.qty else PE.PARTIAL_FILL
        nxt = _next(PARENT_TRANSITIONS, "parent", self.order_id, self.state, event)
        assert nxt is not None  # fills never restore a prior state
        self.cum_qty += qty
        self.notional_ticks += qty * price_ticks if notional_ticks is None else notional_ticks
        self.state = nxt
        return self.state


@dataclass(slots=True)
class ChildOrder(_Lifecycle):
    child_id: str
    parent_id: str
    venue: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    sent_ns: int
    state: OrdStatus = S.PENDING_NEW
    cum_qty: int = 0
    notional_ticks: int = 0
    """Sum of fill qty * price in ticks: checked against the venue's AvgPx
    when its order status says more was filled than the router saw."""
    acked_ns: int | None = None
    first_fill_ns: int | None = None
    deadline_ns: int | None = None
    """Next watchdog: the ack timeout, a cancel's answer, or ``expire_ns``."""
    expire_ns: int | None = None
    """When the slice's own time is up (Slice.timeout_ms); None: no limit."""
    seen_exec_ids: set[str] = field(default_factory=set)

    @property
    def open_qty(self) -> int:
        """What may still fill: counts against the parent's leaves."""
        return self._unfilled()

    def apply(self, event: ChildEvent) -> OrdStatus:
        self.state = self._after(CHILD_TRANSITIONS, "child", self.child_id, event, self.acked_ns is not None)
        return self.state

    def fill_event(self, qty: int) -> ChildEvent:
        return CE.FULL_FILL if self.cum_qty + qty >= self.qty else CE.PARTIAL_FILL

