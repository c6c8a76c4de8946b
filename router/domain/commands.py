"""Commands: what the engine asks its driver to do (send, cancel, report).

``Command`` is a tagged union (msgspec tag = the class name) like the
events, so the journal can store what the engine asked for and replay can
compare it."""

from __future__ import annotations

from router.domain.types import CxlRejReason, ExecType, Msg, OrdRejReason, OrdStatus, OrdType, Side, TimeInForce

# ---------------------------------------------------------------------- commands


class Cmd(Msg, frozen=True, kw_only=True, tag=True):
    """Base of every engine command."""


class SendChildOrder(Cmd, frozen=True, kw_only=True):
    venue: str
    child_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    trace_ns: int | None = None


class CancelChild(Cmd, frozen=True, kw_only=True):
    venue: str
    child_id: str
    cancel_id: str
    symbol: str
    side: Side
    qty: int


class QueryChildStatus(Cmd, frozen=True, kw_only=True):
    """An OrderStatusRequest (35=H) for one child: after every venue logon,
    what the venue says about each child the router believes open."""

    venue: str
    child_id: str
    symbol: str
    side: Side


class QueryVenueOrders(Cmd, frozen=True, kw_only=True):
    """An OrderMassStatusRequest (35=AF, every order): after a restart, each
    venue's first logon, to find children the journal lost."""

    venue: str
    req_id: str


class ReportToOms(Cmd, frozen=True, kw_only=True):
    """One ExecutionReport for the OMS. Prices here are still ticks."""

    session: str
    order_id: str
    cl_ord_id: str
    orig_cl_ord_id: str | None
    exec_id: str
    exec_type: ExecType
    ord_status: OrdStatus
    symbol: str
    side: Side
    order_qty: int
    ord_type: OrdType
    price_ticks: int | None
    cum_qty: int
    leaves_qty: int
    avg_px_ticks_num: int
    """Notional in ticks*shares; AvgPx = avg_px_ticks_num / cum_qty ticks (exact)."""
    last_qty: int
    last_px_ticks: int
    last_mkt: str | None
    text: str
    transact_ns: int


class RejectOrder(Cmd, frozen=True, kw_only=True):
    """An ExecutionReport 39=8 for a NewOrderSingle that was never accepted."""

    session: str
    order_id: str
    cl_ord_id: str
    exec_id: str
    symbol: str
    side: Side
    qty_raw: str
    ord_type_raw: str
    reason: OrdRejReason
    text: str
    transact_ns: int


class RejectCancel(Cmd, frozen=True, kw_only=True):
    """An OrderCancelReject for the OMS."""

    session: str
    order_id: str
    cl_ord_id: str
    orig_cl_ord_id: str
    ord_status: OrdStatus
    reason: CxlRejReason
    response_to_replace: bool
    text: str


class SubscribeMarketData(Cmd, frozen=True, kw_only=True):
    """Ask a lit venue for its book (snapshot, then incremental refreshes)."""

    venue: str
    symbols: tuple[str, ...]
    depth: int


Command = (SendChildOrder | CancelChild | QueryChildStatus | QueryVenueOrders | ReportToOms | RejectOrder
           | RejectCancel | SubscribeMarketData)
