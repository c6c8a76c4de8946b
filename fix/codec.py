"""FIX 4.4 <-> domain codecs.

Decoding runs on quickfix's thread, so it does the minimum: copy fields into
a frozen struct and classify what is wrong with a message. Business checks
that need only the instrument table (tick, lot, size limit) happen here too,
because that is where the wire decimal becomes ticks; everything that needs
order state (duplicates, unknown orders) is the engine's.

Wrong input is never an exception to the caller: the decoder returns a
``Malformed`` value describing the session-level Reject to send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal, Inexact, InvalidOperation, Overflow, localcontext
from typing import NamedTuple

import msgspec
import quickfix as fix

from router.domain.commands import (
    CancelChild,
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
    ReplaceRequested,
    VenueCancelRejected,
    VenueReport,
)
from router.domain.types import (
    CxlRejReason,
    ExecType,
    Instrument,
    OrdRejReason,
    OrdStatus,
    OrdType,
    Side,
    TimeInForce,
    Urgency,
)

# Tags, named once.
ACCOUNT = 1
AVG_PX = 6
CL_ORD_ID = 11
CUM_QTY = 14
EXEC_ID = 17
LAST_MKT = 30
LAST_PX = 31
LAST_QTY = 32
MSG_SEQ_NUM = 34
MSG_TYPE = 35
ORDER_ID = 37
ORDER_QTY = 38
ORD_STATUS = 39
ORD_TYPE = 40
ORIG_CL_ORD_ID = 41
PRICE = 44
REF_SEQ_NUM = 45
SIDE = 54
SYMBOL = 55
TEXT = 58
TIME_IN_FORCE = 59
TRANSACT_TIME = 60
CXL_REJ_REASON = 102
ORD_REJ_REASON = 103
EXEC_TYPE = 150
LEAVES_QTY = 151
REF_TAG_ID = 371
REF_MSG_TYPE = 372
SESSION_REJECT_REASON = 373
BUSINESS_REJECT_REF_ID = 379
BUSINESS_REJECT_REASON = 380
CXL_REJ_RESPONSE_TO = 434
MASS_STATUS_REQ_ID = 584
MASS_STATUS_REQ_TYPE = 585
TOT_NUM_REPORTS = 911
LAST_RPT_REQUESTED = 912
STRATEGY_TAG = 7001
"""Custom tag: the OMS may ask for a routing strategy per order."""
TRACE_TAG = 7002
"""Custom tag: a CLOCK_MONOTONIC stamp (ns) the router copies from a parent
onto its children, for wire-level latency measurement."""
URGENCY_TAG = 7003
"""Custom tag SorUrgency: low, normal or high (case and spaces ignored) per
NewOrderSingle. Absent (or empty), TimeInForce(59) = 3 as sent reads as
high, anything else as normal; any other value is refused."""

TAG_NAMES = {
    CL_ORD_ID: "ClOrdID", ORIG_CL_ORD_ID: "OrigClOrdID", SYMBOL: "Symbol", SIDE: "Side",
    ORDER_QTY: "OrderQty", ORD_TYPE: "OrdType", PRICE: "Price", TIME_IN_FORCE: "TimeInForce",
}

# SessionRejectReason(373) values.
REQUIRED_TAG_MISSING = 1
VALUE_INCORRECT = 5
INCORRECT_DATA_FORMAT = 6

# BusinessRejectReason(380)
UNSUPPORTED_MESSAGE_TYPE = 3

AVG_PX_QUANTUM = Decimal("1e-8")
MAX_PRICE_DIGITS = 12
"""Prices of 10^12 and above are refused before any arithmetic on them."""


class Malformed(msgspec.Struct, frozen=True, kw_only=True):
    """A message to answer with a session-level Reject (35=3)."""

    session: str
    ref_seq_num: int
    ref_msg_type: str
    ref_tag: int
    reason: int
    text: str

    @property
    def kind(self) -> str:
        return "missing_tag" if self.reason == REQUIRED_TAG_MISSING else "bad_value"


class Unsupported(msgspec.Struct, frozen=True, kw_only=True):
    """An application message type the router does not take (35=j answer)."""

    session: str
    ref_seq_num: int
    ref_msg_type: str
    text: str


class _Terms(NamedTuple):
    cl: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    tif: TimeInForce
    tif_sent: TimeInForce
    """The TimeInForce the OMS sent (``tif`` routes a market DAY as IOC):
    urgency's hint reads it."""


class _Invalid(NamedTuple):
    """Terms that parse but cannot trade: what the business reject echoes."""

    cl: str
    symbol: str
    side: Side
    qty_raw: str
    ord_type_raw: str
    reason: OrdRejReason
    text: str


OmsInbound = NewOrderReceived | InvalidOrderReceived | CancelRequested | ReplaceRequested | Malformed | Unsupported


def raw_fields(raw: str) -> list[tuple[str, str]]:
    """(tag, value) pairs of a raw wire string (``msg.toString()``), in wire
    order, repeating groups included: cheaper than walking the FieldMap
    through SWIG, and independent of any data dictionary."""
    return [(t, v) for t, _, v in (p.partition("=") for p in raw.split("\x01") if p)]


def field(msg: fix.FieldMap, tag: int) -> str | None:
    return msg.getField(tag) if msg.isSetField(tag) else None  # type: ignore[no-any-return]


def msg_type(msg: fix.Message) -> str:
    return msg.getHeader().getField(MSG_TYPE)  # type: ignore[no-any-return]


def _finite_decimal(raw: str) -> Decimal | None:
    """``raw`` as a Decimal; None when it is not a number, NaN or infinite."""
    try:
        d = Decimal(raw)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _seq(msg: fix.Message) -> int:
    h = msg.getHeader()
    try:
        return int(h.getField(MSG_SEQ_NUM)) if h.isSetField(MSG_SEQ_NUM) else 0
    except ValueError:
        return 0


class Ticks:
    """Decimal price <-> integer ticks for one instrument."""

    __slots__ = ("_cache", "tick")

    def __init__(self, tick_size: str) -> None:
        self.tick = Decimal(tick_size)
        self._cache: dict[int, str] = {}

    def to_ticks(self, price: Decimal) -> int | None:
        """Exact tick count, or None when the price is off the tick grid or
        out of range. Division traps inexactness so a price off the grid by
        less than the context precision is not rounded onto it."""
        if not price.is_finite() or price.adjusted() > MAX_PRICE_DIGITS:
            return None
        with localcontext() as ctx:
            ctx.traps[Inexact] = True
            ctx.traps[Overflow] = True
            try:
                q = price / self.tick
            except (Inexact, Overflow):
                return None
        if q != q.to_integral_value():
            return None
        return int(q)

    def to_ticks_nearest(self, px: str) -> int:
        return int((Decimal(px) / self.tick).to_integral_value())

    def to_str(self, ticks: int) -> str:
        s = self._cache.get(ticks)
        if s is None:
            s = format(ticks * self.tick, "f")
            if len(self._cache) < 100_000:
                self._cache[ticks] = s
        return s

    def avg_str(self, notional_ticks: int, qty: int) -> str:
        if qty == 0:
            return "0"
        return format((Decimal(notional_ticks) * self.tick / qty).quantize(AVG_PX_QUANTUM).normalize(), "f")


class OmsCodec:
    """Decodes what the OMS sends and encodes what the router answers."""

    def __init__(self, instruments: Iterable[Instrument], clock_ns: Callable[[], int]) -> None:
        self._inst = {i.symbol: i for i in instruments}
        self.ticks = {i.symbol: Ticks(i.tick_size) for i in self._inst.values()}
        self._clock_ns = clock_ns

    # ------------------------------------------------------------- decoding

    def decode(self, msg: fix.Message, session: str) -> OmsInbound:
        mt = msg_type(msg)
        if mt == "D":
            return self._decode_new(msg, session)
        if mt in ("F", "G"):
            return self._decode_cancel(msg, session, replace=(mt == "G"))
        return Unsupported(session=session, ref_seq_num=_seq(msg), ref_msg_type=mt,
                           text=f"message type {mt!r} is not supported by the router")

    def _missing(self, msg: fix.Message, session: str, mt: str, tag: int) -> Malformed:
        return Malformed(session=session, ref_seq_num=_seq(msg), ref_msg_type=mt, ref_tag=tag,
                         reason=REQUIRED_TAG_MISSING,
                         text=f"Required tag missing: {TAG_NAMES.get(tag, str(tag))}({tag})")

    def _bad(self, msg: fix.Message, session: str, mt: str, tag: int, value: str, why: str,
             reason: int = VALUE_INCORRECT) -> Malformed:
        return Malformed(session=session, ref_seq_num=_seq(msg), ref_msg_type=mt, ref_tag=tag, reason=reason,
                         text=f"{TAG_NAMES.get(tag, str(tag))}({tag})={value!r}: {why}")

    def _decode_new(self, msg: fix.Message, session: str) -> OmsInbound:
        now = self._clock_ns()
        t = self._terms(msg, session, "D")
        if isinstance(t, Malformed):
            return t
        if isinstance(t, _Invalid):
            return InvalidOrderReceived(session=session, cl_ord_id=t.cl, symbol=t.symbol, side=t.side,
                                        qty_raw=t.qty_raw, ord_type_raw=t.ord_type_raw, reason=t.reason,
                                        text=t.text, recv_ns=now)
        urgency_raw = (field(msg, URGENCY_TAG) or "").strip()
        if not urgency_raw:
            # The TimeInForce the OMS sent is the hint (a market order's
            # IOC is the router's, not the OMS's wish).
            urgency = Urgency.HIGH if t.tif_sent is TimeInForce.IOC else Urgency.NORMAL
        else:
            try:
                urgency = Urgency(urgency_raw.lower())
            except ValueError:
                return InvalidOrderReceived(
                    session=session, cl_ord_id=t.cl, symbol=t.symbol, side=t.side,
                    qty_raw=field(msg, ORDER_QTY) or str(t.qty), ord_type_raw=field(msg, ORD_TYPE) or t.ord_type.value,
                    reason=OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC,
                    text=f"unsupported SorUrgency({URGENCY_TAG}) {urgency_raw!r}: only low, normal or high",
                    recv_ns=now)
        trace_raw = field(msg, TRACE_TAG)
        trace_ns = int(trace_raw) if trace_raw is not None and trace_raw.isdigit() else None
        return NewOrderReceived(session=session, cl_ord_id=t.cl, symbol=t.symbol, side=t.side, qty=t.qty,
                                ord_type=t.ord_type, price_ticks=t.price_ticks, tif=t.tif, recv_ns=now,
                                strategy=field(msg, STRATEGY_TAG), trace_ns=trace_ns, urgency=urgency)

    def _terms(self, msg: fix.Message, session: str, mt: str) -> _Terms | _Invalid | Malformed:
        """An order's terms as NewOrderSingle and OrderCancelReplaceRequest
        both carry them: the one place where wire decimals become ticks and
        lots. A missing or unparsable field is a session-level Reject; terms
        that parse but cannot trade are ``_Invalid`` (its Text names the
        field), answered by the caller's business reject."""
        vals: dict[int, str] = {}
        for tag in (CL_ORD_ID, SYMBOL, SIDE, ORDER_QTY, ORD_TYPE):
            v = field(msg, tag)
            if v is None or v == "":
                return self._missing(msg, session, mt, tag)
            vals[tag] = v
        cl, symbol, side_raw, qty_raw, ot_raw = (vals[CL_ORD_ID], vals[SYMBOL], vals[SIDE], vals[ORDER_QTY],
                                                 vals[ORD_TYPE])
        try:
            side = Side(side_raw)
        except ValueError:
            return self._bad(msg, session, mt, SIDE, side_raw, "only 1 (buy) and 2 (sell) are supported")
        qty_dec = _finite_decimal(qty_raw)
        if qty_dec is None:
            return self._bad(msg, session, mt, ORDER_QTY, qty_raw, "not a number", INCORRECT_DATA_FORMAT)
        px_raw = field(msg, PRICE)
        tif_raw = field(msg, TIME_IN_FORCE) or TimeInForce.DAY.value

        def invalid(reason: OrdRejReason, text: str) -> _Invalid:
            return _Invalid(cl, symbol, side, qty_raw, ot_raw, reason, text)

        inst = self._inst.get(symbol)
        if inst is None:
            return invalid(OrdRejReason.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        if qty_dec <= 0:
            return invalid(OrdRejReason.INCORRECT_QUANTITY, f"OrderQty must be positive, got {qty_raw}")
        # Compared as a Decimal first: int() of "1E+2000000" would hold the
        # GIL on this thread for minutes.
        if qty_dec > inst.max_order_qty:
            return invalid(OrdRejReason.ORDER_EXCEEDS_LIMIT,
                           f"OrderQty {qty_raw} exceeds the limit of {inst.max_order_qty} for {symbol}")
        if qty_dec != qty_dec.to_integral_value():
            return invalid(OrdRejReason.INCORRECT_QUANTITY, f"OrderQty must be whole shares, got {qty_raw}")
        qty = int(qty_dec)
        if qty % inst.lot_size:
            return invalid(OrdRejReason.INCORRECT_QUANTITY,
                           f"OrderQty {qty} is not a multiple of the lot size {inst.lot_size}")
        try:
            ord_type = OrdType(ot_raw)
        except ValueError:
            return invalid(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC,
                           f"unsupported OrdType {ot_raw!r}: only 1 (market) and 2 (limit)")
        try:
            tif = TimeInForce(tif_raw)
        except ValueError:
            return invalid(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC,
                           f"unsupported TimeInForce {tif_raw!r}: only 0 (day) and 3 (IOC)")
        price_ticks: int | None = None
        if ord_type is OrdType.LIMIT:
            if px_raw is None or px_raw == "":
                return invalid(OrdRejReason.OTHER, "Price(44) is required for a limit order")
            px = _finite_decimal(px_raw)
            if px is None:
                return self._bad(msg, session, mt, PRICE, px_raw, "not a number", INCORRECT_DATA_FORMAT)
            if px <= 0:
                return invalid(OrdRejReason.OTHER, f"Price must be positive, got {px_raw}")
            if px.adjusted() >= MAX_PRICE_DIGITS:
                return invalid(OrdRejReason.OTHER, f"Price {px_raw} is out of range")
            price_ticks = self.ticks[symbol].to_ticks(px)
            if price_ticks is None:
                return invalid(OrdRejReason.INVALID_PRICE_INCREMENT,
                               f"Price {px_raw} is not a multiple of the tick size {inst.tick_size}")
        sent = tif
        if ord_type is OrdType.MARKET and tif is TimeInForce.DAY:
            # A market order cannot rest; route it as immediate-or-cancel.
            tif = TimeInForce.IOC
        return _Terms(cl, symbol, side, qty, ord_type, price_ticks, tif, sent)

    def _decode_cancel(self, msg: fix.Message, session: str, replace: bool) -> OmsInbound:
        now = self._clock_ns()
        mt = "G" if replace else "F"
        cl = field(msg, CL_ORD_ID)
        if not cl:
            return self._missing(msg, session, mt, CL_ORD_ID)
        orig = field(msg, ORIG_CL_ORD_ID)
        if not orig:
            return self._missing(msg, session, mt, ORIG_CL_ORD_ID)
        if replace:
            t = self._terms(msg, session, mt)
            if isinstance(t, Malformed):
                return t
            if isinstance(t, _Invalid):
                # Nothing to trade on, but the reject must carry the order's
                # state, which only the engine knows.
                return ReplaceRequested(session=session, cl_ord_id=cl, orig_cl_ord_id=orig, symbol=t.symbol,
                                        side=t.side, qty=0, ord_type=OrdType.LIMIT, price_ticks=None,
                                        tif=TimeInForce.DAY, recv_ns=now, error=t.text)
            return ReplaceRequested(session=session, cl_ord_id=cl, orig_cl_ord_id=orig, symbol=t.symbol,
                                    side=t.side, qty=t.qty, ord_type=t.ord_type, price_ticks=t.price_ticks,
                                    tif=t.tif, recv_ns=now)
        side_raw = field(msg, SIDE)
        side: Side | None = None
        if side_raw:
            try:
                side = Side(side_raw)
            except ValueError:
                side = None
        return CancelRequested(session=session, cl_ord_id=cl, orig_cl_ord_id=orig,
                               symbol=field(msg, SYMBOL) or "", side=side, recv_ns=now)

    # ------------------------------------------------------------- encoding

    def encode_report(self, r: ReportToOms) -> fix.Message:
        t = self.ticks[r.symbol]
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "8")
        m.setField(ORDER_ID, r.order_id)
        m.setField(CL_ORD_ID, r.cl_ord_id)
        if r.orig_cl_ord_id:
            m.setField(ORIG_CL_ORD_ID, r.orig_cl_ord_id)
        m.setField(EXEC_ID, r.exec_id)
        m.setField(EXEC_TYPE, r.exec_type.value)
        m.setField(ORD_STATUS, r.ord_status.value)
        m.setField(SYMBOL, r.symbol)
        m.setField(SIDE, r.side.value)
        m.setField(ORDER_QTY, str(r.order_qty))
        m.setField(ORD_TYPE, r.ord_type.value)
        if r.price_ticks is not None:
            m.setField(PRICE, t.to_str(r.price_ticks))
        m.setField(CUM_QTY, str(r.cum_qty))
        m.setField(LEAVES_QTY, str(r.leaves_qty))
        m.setField(AVG_PX, t.avg_str(r.avg_px_ticks_num, r.cum_qty))
        if r.exec_type is ExecType.TRADE:
            m.setField(LAST_QTY, str(r.last_qty))
            m.setField(LAST_PX, t.to_str(r.last_px_ticks))
            if r.last_mkt:
                m.setField(LAST_MKT, r.last_mkt)
        if r.text:
            m.setField(TEXT, r.text)
        m.setField(fix.TransactTime())
        return m

    def encode_reject_order(self, r: RejectOrder) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "8")
        m.setField(ORDER_ID, r.order_id)
        m.setField(CL_ORD_ID, r.cl_ord_id)
        m.setField(EXEC_ID, r.exec_id)
        m.setField(EXEC_TYPE, ExecType.REJECTED.value)
        m.setField(ORD_STATUS, OrdStatus.REJECTED.value)
        m.setField(ORD_REJ_REASON, str(int(r.reason)))
        m.setField(SYMBOL, r.symbol)
        m.setField(SIDE, r.side.value)
        m.setField(ORDER_QTY, r.qty_raw)
        m.setField(ORD_TYPE, r.ord_type_raw)
        m.setField(CUM_QTY, "0")
        m.setField(LEAVES_QTY, "0")
        m.setField(AVG_PX, "0")
        m.setField(TEXT, r.text)
        m.setField(fix.TransactTime())
        return m

    @staticmethod
    def encode_cancel_reject(r: RejectCancel) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "9")
        m.setField(ORDER_ID, r.order_id)
        m.setField(CL_ORD_ID, r.cl_ord_id)
        m.setField(ORIG_CL_ORD_ID, r.orig_cl_ord_id)
        m.setField(ORD_STATUS, r.ord_status.value)
        m.setField(CXL_REJ_RESPONSE_TO, "2" if r.response_to_replace else "1")
        m.setField(CXL_REJ_REASON, str(int(r.reason)))
        m.setField(TEXT, r.text)
        return m

    @staticmethod
    def encode_session_reject(r: Malformed) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "3")
        m.setField(REF_SEQ_NUM, str(r.ref_seq_num))
        m.setField(REF_TAG_ID, str(r.ref_tag))
        m.setField(REF_MSG_TYPE, r.ref_msg_type)
        m.setField(SESSION_REJECT_REASON, str(r.reason))
        m.setField(TEXT, r.text)
        return m

    @staticmethod
    def encode_business_reject(r: Unsupported) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "j")
        m.setField(REF_SEQ_NUM, str(r.ref_seq_num))
        m.setField(REF_MSG_TYPE, r.ref_msg_type)
        m.setField(BUSINESS_REJECT_REASON, str(UNSUPPORTED_MESSAGE_TYPE))
        m.setField(TEXT, r.text)
        return m


VenueInbound = VenueReport | VenueCancelRejected


class VenueCodec:
    """Child orders out to a venue, its execution reports back."""

    def __init__(self, instruments: Iterable[Instrument], clock_ns: Callable[[], int]) -> None:
        self.ticks = {i.symbol: Ticks(i.tick_size) for i in instruments}
        self._clock_ns = clock_ns
        # One reusable NewOrderSingle per codec (the engine's thread is the
        # only sender), so the hot path does not build a message from scratch.
        self._nos = fix.Message()
        self._nos.getHeader().setField(MSG_TYPE, "D")

    def encode_new(self, c: SendChildOrder) -> fix.Message:
        m = self._nos
        m.setField(CL_ORD_ID, c.child_id)
        m.setField(SYMBOL, c.symbol)
        m.setField(SIDE, c.side.value)
        m.setField(ORDER_QTY, str(c.qty))
        m.setField(ORD_TYPE, c.ord_type.value)
        if c.price_ticks is None:
            m.removeField(PRICE)
        else:
            m.setField(PRICE, self.ticks[c.symbol].to_str(c.price_ticks))
        m.setField(TIME_IN_FORCE, c.tif.value)
        if c.trace_ns is None:
            m.removeField(TRACE_TAG)
        else:
            m.setField(TRACE_TAG, str(c.trace_ns))
        m.setField(fix.TransactTime())
        return m

    @staticmethod
    def encode_cancel(c: CancelChild) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "F")
        m.setField(CL_ORD_ID, c.cancel_id)
        m.setField(ORIG_CL_ORD_ID, c.child_id)
        m.setField(SYMBOL, c.symbol)
        m.setField(SIDE, c.side.value)
        m.setField(ORDER_QTY, str(c.qty))
        m.setField(fix.TransactTime())
        return m

    @staticmethod
    def encode_status_request(c: QueryChildStatus) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "H")
        m.setField(CL_ORD_ID, c.child_id)
        m.setField(SYMBOL, c.symbol)
        m.setField(SIDE, c.side.value)
        return m

    @staticmethod
    def encode_mass_status_request(c: QueryVenueOrders) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(MSG_TYPE, "AF")
        m.setField(MASS_STATUS_REQ_ID, c.req_id)
        m.setField(MASS_STATUS_REQ_TYPE, "7")  # every order
        return m

    def decode(self, msg: fix.Message, venue: str) -> VenueInbound | None:
        """None for messages the router does not use from venues."""
        mt = msg_type(msg)
        now = self._clock_ns()
        if mt == "8":
            try:
                exec_type = ExecType(msg.getField(EXEC_TYPE))
                ord_status = OrdStatus(msg.getField(ORD_STATUS))
            except ValueError:
                # Restated (D), done for day (3)...: none changes what the
                # router owes the OMS, so they are skipped (the caller
                # counts them). Order status (I) is decoded: reconciliation.
                return None
            # A cancel's report names the cancel in ClOrdID and our child in
            # OrigClOrdID.
            child_id = field(msg, ORIG_CL_ORD_ID) or msg.getField(CL_ORD_ID)
            last_qty = 0
            last_px = 0
            notional = 0
            symbol = ""
            side: Side | None = None
            exec_id = ""
            cum = int(Decimal(field(msg, CUM_QTY) or "0"))
            if exec_type is ExecType.TRADE:
                last_qty = int(Decimal(msg.getField(LAST_QTY)))
                last_px = self.ticks[msg.getField(SYMBOL)].to_ticks_nearest(msg.getField(LAST_PX))
            if exec_type is not ExecType.ORDER_STATUS:
                exec_id = msg.getField(EXEC_ID)  # an execution without one is refused
            else:
                # What the venue says of an order it holds, perhaps one the
                # router does not know: its symbol and side come along.
                symbol = field(msg, SYMBOL) or ""
                side_raw = field(msg, SIDE)
                side = Side(side_raw) if side_raw in ("1", "2") else None
                ticks = self.ticks.get(symbol)
                if cum and ticks is not None:
                    # Every fill was on the tick grid, so CumQty x AvgPx is
                    # a whole number of tick-shares up to AvgPx's rounding.
                    notional = int((Decimal(field(msg, AVG_PX) or "0") * cum / ticks.tick).to_integral_value())
                exec_id = field(msg, EXEC_ID) or ""
            return VenueReport(
                venue=venue, child_id=child_id, exec_id=exec_id, exec_type=exec_type,
                ord_status=ord_status, last_qty=last_qty, last_px_ticks=last_px, cum_qty=cum,
                leaves_qty=int(Decimal(field(msg, LEAVES_QTY) or "0")), text=field(msg, TEXT) or "",
                recv_ns=now, cum_notional_ticks=notional, symbol=symbol, side=side,
            )
        if mt == "9":
            reason_raw = field(msg, CXL_REJ_REASON) or ""
            return VenueCancelRejected(venue=venue, child_id=field(msg, ORIG_CL_ORD_ID) or "",
                                       text=field(msg, TEXT) or "", recv_ns=now,
                                       reason=int(reason_raw) if reason_raw.isdigit() else CxlRejReason.OTHER)
        return None
