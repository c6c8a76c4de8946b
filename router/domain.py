"""Domain types shared by the router core, the FIX edge and the simulator.

Everything here is plain data: enums whose values are the FIX wire values (so
the edge converts with ``Enum(value)`` and nothing else), and frozen msgspec
structs for the events the engine consumes and the commands it emits.
Prices are integer ticks and quantities integer shares inside the core;
decimals exist only at the FIX edge.
"""

from __future__ import annotations

import enum

import msgspec


class Side(enum.Enum):
    BUY = "1"
    SELL = "2"

    @property
    def sign(self) -> int:
        """+1 for buys, -1 for sells: the direction a price move hurts."""
        return 1 if self is Side.BUY else -1


class OrdType(enum.Enum):
    MARKET = "1"
    LIMIT = "2"


class TimeInForce(enum.Enum):
    DAY = "0"
    IOC = "3"


class OrdStatus(enum.Enum):
    """FIX OrdStatus(39) values; also the states of both order machines."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"


class ExecType(enum.Enum):
    NEW = "0"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    TRADE = "F"
    EXPIRED = "C"


class VenueKind(enum.Enum):
    LIT = "lit"
    DARK = "dark"


class _Msg(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Instrument(_Msg, frozen=True, kw_only=True):
    """What the FIX edge needs to turn wire decimals into ticks and lots."""

    symbol: str
    tick_size: str
    lot_size: int
    max_order_qty: int


# OrdRejReason(103) values used by the router (FIX 4.4).
class OrdRejReason(enum.IntEnum):
    BROKER_OPTION = 0
    UNKNOWN_SYMBOL = 1
    EXCHANGE_CLOSED = 2
    ORDER_EXCEEDS_LIMIT = 3
    DUPLICATE_ORDER = 6
    UNSUPPORTED_ORDER_CHARACTERISTIC = 11
    INCORRECT_QUANTITY = 13
    INVALID_PRICE_INCREMENT = 18
    OTHER = 99


# CxlRejReason(102) values (FIX 4.4).
class CxlRejReason(enum.IntEnum):
    TOO_LATE_TO_CANCEL = 0
    UNKNOWN_ORDER = 1
    ALREADY_PENDING = 3
    DUPLICATE_CLORDID = 6
    OTHER = 99


TERMINAL_STATUSES = frozenset({OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED})


# ---------------------------------------------------------------- OMS side events


class NewOrderReceived(_Msg, frozen=True, kw_only=True):
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


class InvalidOrderReceived(_Msg, frozen=True, kw_only=True):
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


class CancelRequested(_Msg, frozen=True, kw_only=True):
    """OrderCancelRequest, or an OrderCancelReplaceRequest when ``replace``."""

    session: str
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str
    side: Side | None
    recv_ns: int
    replace: bool = False


# -------------------------------------------------------------- venue side events


class VenueReport(_Msg, frozen=True, kw_only=True):
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


class VenueCancelRejected(_Msg, frozen=True, kw_only=True):
    venue: str
    child_id: str
    text: str
    recv_ns: int
    reason: int = CxlRejReason.OTHER
    """CxlRejReason(102) as the venue sent it."""


class VenueSessionChanged(_Msg, frozen=True, kw_only=True):
    venue: str
    up: bool
    ts_ns: int


class MdEntry(_Msg, frozen=True, kw_only=True):
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


class MarketDataReceived(_Msg, frozen=True, kw_only=True):
    """A snapshot (35=W), incremental refresh (35=X) or request reject (35=Y)."""

    venue: str
    snapshot: bool
    symbol: str
    entries: tuple[MdEntry, ...]
    recv_ns: int
    rejected: bool = False


# ---------------------------------------------------------------------- commands


class SendChildOrder(_Msg, frozen=True, kw_only=True):
    venue: str
    child_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    trace_ns: int | None = None


class CancelChild(_Msg, frozen=True, kw_only=True):
    venue: str
    child_id: str
    cancel_id: str
    symbol: str
    side: Side
    qty: int


class ReportToOms(_Msg, frozen=True, kw_only=True):
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
    ord_rej_reason: int | None
    text: str
    transact_ns: int


class RejectOrder(_Msg, frozen=True, kw_only=True):
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


class RejectCancel(_Msg, frozen=True, kw_only=True):
    """An OrderCancelReject for the OMS."""

    session: str
    order_id: str
    cl_ord_id: str
    orig_cl_ord_id: str
    ord_status: OrdStatus
    reason: CxlRejReason
    response_to_replace: bool
    text: str


Command = SendChildOrder | CancelChild | ReportToOms | RejectOrder | RejectCancel
