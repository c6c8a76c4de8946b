"""FIX 4.4 <-> domain codecs, on real ``quickfix.Message`` objects.

Every test builds the message a peer would send (header 35 and 34 included),
decodes it, and checks the exact domain value; encoders are checked tag by tag
on the wire string (fields separated by SOH).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import quickfix as fix

import fix.codec as codec_mod
from fix.codec import (
    AVG_PX_QUANTUM,
    INCORRECT_DATA_FORMAT,
    REQUIRED_TAG_MISSING,
    URGENCY_TAG,
    VALUE_INCORRECT,
    Malformed,
    OmsCodec,
    Ticks,
    Unsupported,
    VenueCodec,
)
from fix.settings import DICTIONARY
from router.domain.commands import CancelChild, RejectCancel, RejectOrder, ReportToOms, SendChildOrder
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

SOH = "\x01"
SESSION = "FIX.4.4:SOR->OMS"
SEQ = 42
NOW = 123

INSTRUMENTS = [
    Instrument(symbol="AAPL", tick_size="0.01", lot_size=1, max_order_qty=10000),
    Instrument(symbol="LOT", tick_size="0.05", lot_size=100, max_order_qty=100000),
]

NOS_DEFAULTS: dict[int, str] = {11: "c1", 55: "AAPL", 54: "1", 38: "100", 40: "2", 44: "190.07"}


# ---------------------------------------------------------------- helpers


def _msg(msg_type: str, fields: dict[int, str | None], seq: int = SEQ) -> fix.Message:
    m = fix.Message()
    m.getHeader().setField(35, msg_type)
    m.getHeader().setField(34, str(seq))
    for tag, value in fields.items():
        if value is not None:
            m.setField(tag, value)
    return m


def _nos(**overrides: str | None) -> fix.Message:
    """A NewOrderSingle: the valid AAPL limit order, with tags overridden by ``t<tag>=value`` (None drops it)."""
    fields: dict[int, str | None] = dict(NOS_DEFAULTS)
    for key, value in overrides.items():
        fields[int(key.removeprefix("t"))] = value
    return _msg("D", fields)


def _wire(m: fix.Message) -> dict[int, str]:
    """Every tag of the serialized message (header, body, trailer); asserts no tag repeats."""
    out: dict[int, str] = {}
    for part in m.toString().split(SOH):
        if not part:
            continue
        tag, _, value = part.partition("=")
        assert int(tag) not in out, f"tag {tag} repeated in {m.toString()!r}"
        out[int(tag)] = value
    return out


@pytest.fixture
def oms() -> OmsCodec:
    return OmsCodec(INSTRUMENTS, clock_ns=lambda: NOW)


@pytest.fixture
def venue() -> VenueCodec:
    return VenueCodec(INSTRUMENTS, clock_ns=lambda: NOW)


def _decode_invalid(oms: OmsCodec, m: fix.Message) -> InvalidOrderReceived:
    ev = oms.decode(m, SESSION)
    assert isinstance(ev, InvalidOrderReceived), ev
    return ev


def _decode_malformed(oms: OmsCodec, m: fix.Message) -> Malformed:
    ev = oms.decode(m, SESSION)
    assert isinstance(ev, Malformed), ev
    return ev


# ------------------------------------------------------- NewOrderSingle: valid


def test_valid_limit_order_decodes_exactly(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(), SESSION)
    assert ev == NewOrderReceived(session=SESSION, cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=100,
                                  ord_type=OrdType.LIMIT, price_ticks=19007, tif=TimeInForce.DAY, recv_ns=NOW,
                                  strategy=None)


def test_limit_order_with_sell_ioc_and_strategy(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t54="2", t59="3", t7001="passive", t38="250"), SESSION)
    assert isinstance(ev, NewOrderReceived)
    assert (ev.side, ev.tif, ev.strategy, ev.qty) == (Side.SELL, TimeInForce.IOC, "passive", 250)


def test_explicit_day_tif_and_trailing_zero_price(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t59="0", t44="190.070"), SESSION)
    assert isinstance(ev, NewOrderReceived)
    assert (ev.tif, ev.price_ticks) == (TimeInForce.DAY, 19007)


def test_lot_instrument_ticks_and_lots(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t55="LOT", t38="300", t44="1.05"), SESSION)
    assert isinstance(ev, NewOrderReceived)
    assert (ev.symbol, ev.qty, ev.price_ticks) == ("LOT", 300, 21)


def test_whole_decimal_qty_is_accepted(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t38="100.0"), SESSION)
    assert isinstance(ev, NewOrderReceived) and ev.qty == 100


def test_max_qty_is_inclusive(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t38="10000"), SESSION)
    assert isinstance(ev, NewOrderReceived) and ev.qty == 10000


def test_market_day_order_becomes_ioc_without_price(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t40="1", t44=None), SESSION)
    assert ev == NewOrderReceived(session=SESSION, cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=100,
                                  ord_type=OrdType.MARKET, price_ticks=None, tif=TimeInForce.IOC, recv_ns=NOW)


def test_market_order_explicit_day_becomes_ioc_and_ignores_price(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t40="1", t59="0", t44="190.07"), SESSION)
    assert isinstance(ev, NewOrderReceived)
    assert (ev.ord_type, ev.tif, ev.price_ticks) == (OrdType.MARKET, TimeInForce.IOC, None)


def test_market_ioc_stays_ioc(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t40="1", t44=None, t59="3"), SESSION)
    assert isinstance(ev, NewOrderReceived) and ev.tif is TimeInForce.IOC


# ------------------------------------------------ NewOrderSingle: malformed


@pytest.mark.parametrize(("tag", "name"), [(11, "ClOrdID"), (55, "Symbol"), (54, "Side"), (38, "OrderQty"),
                                           (40, "OrdType")])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_required_tag_is_session_reject(oms: OmsCodec, tag: int, name: str, how: str) -> None:
    ev = _decode_malformed(oms, _nos(**{f"t{tag}": None if how == "absent" else ""}))
    assert ev == Malformed(session=SESSION, ref_seq_num=SEQ, ref_msg_type="D", ref_tag=tag,
                           reason=REQUIRED_TAG_MISSING, text=f"Required tag missing: {name}({tag})")
    assert ev.kind == "missing_tag"


def test_first_missing_tag_in_order_is_reported(oms: OmsCodec) -> None:
    ev = _decode_malformed(oms, _nos(t11=None, t55=None))
    assert ev.ref_tag == 11


@pytest.mark.parametrize("side", ["3", "B", "0"])
def test_bad_side_is_value_incorrect(oms: OmsCodec, side: str) -> None:
    ev = _decode_malformed(oms, _nos(t54=side))
    assert (ev.reason, ev.ref_tag, ev.ref_msg_type, ev.ref_seq_num) == (VALUE_INCORRECT, 54, "D", SEQ)
    assert ev.kind == "bad_value"
    assert "Side(54)" in ev.text and repr(side) in ev.text


@pytest.mark.parametrize("qty", ["abc", "NaN", "Infinity", "-Infinity", "1,000", "10x"])
def test_non_numeric_qty_is_incorrect_data_format(oms: OmsCodec, qty: str) -> None:
    ev = _decode_malformed(oms, _nos(t38=qty))
    assert (ev.reason, ev.ref_tag) == (INCORRECT_DATA_FORMAT, 38)
    assert ev.text == f"OrderQty(38)={qty!r}: not a number"
    assert ev.kind == "bad_value"


@pytest.mark.parametrize("px", ["abc", "NaN", "Infinity", "190,07"])
def test_non_numeric_price_is_incorrect_data_format(oms: OmsCodec, px: str) -> None:
    ev = _decode_malformed(oms, _nos(t44=px))
    assert (ev.reason, ev.ref_tag) == (INCORRECT_DATA_FORMAT, 44)
    assert "Price(44)" in ev.text and "not a number" in ev.text


def test_missing_seq_num_reports_zero(oms: OmsCodec) -> None:
    m = fix.Message()
    m.getHeader().setField(35, "D")
    ev = _decode_malformed(oms, m)
    assert (ev.ref_seq_num, ev.ref_tag) == (0, 11)


# --------------------------------------------- NewOrderSingle: business rejects


@pytest.mark.parametrize(
    ("overrides", "reason", "fragments"),
    [
        ({"t55": "MSFT"}, OrdRejReason.UNKNOWN_SYMBOL, ["unknown symbol", "'MSFT'"]),
        ({"t38": "0"}, OrdRejReason.INCORRECT_QUANTITY, ["must be positive", "0"]),
        ({"t38": "-5"}, OrdRejReason.INCORRECT_QUANTITY, ["must be positive", "-5"]),
        ({"t38": "10.5"}, OrdRejReason.INCORRECT_QUANTITY, ["whole shares", "10.5"]),
        ({"t55": "LOT", "t38": "150", "t44": "1.05"}, OrdRejReason.INCORRECT_QUANTITY,
         ["150", "lot size 100"]),
        ({"t38": "10001"}, OrdRejReason.ORDER_EXCEEDS_LIMIT, ["10001", "limit of 10000", "AAPL"]),
        ({"t55": "LOT", "t38": "100100", "t44": "1.05"}, OrdRejReason.ORDER_EXCEEDS_LIMIT,
         ["100100", "limit of 100000"]),
        ({"t40": "3"}, OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, ["OrdType", "'3'"]),
        ({"t40": "P"}, OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, ["OrdType", "'P'"]),
        ({"t59": "1"}, OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, ["TimeInForce", "'1'"]),
        ({"t59": "4"}, OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, ["TimeInForce", "'4'"]),
        ({"t44": None}, OrdRejReason.OTHER, ["Price(44) is required", "limit"]),
        ({"t44": ""}, OrdRejReason.OTHER, ["Price(44) is required"]),
        ({"t44": "190.005"}, OrdRejReason.INVALID_PRICE_INCREMENT, ["190.005", "tick size 0.01"]),
        ({"t55": "LOT", "t38": "100", "t44": "1.02"}, OrdRejReason.INVALID_PRICE_INCREMENT,
         ["1.02", "tick size 0.05"]),
        ({"t44": "0"}, OrdRejReason.OTHER, ["Price must be positive", "0"]),
        ({"t44": "-190.07"}, OrdRejReason.OTHER, ["Price must be positive", "-190.07"]),
    ],
    ids=["unknown-symbol", "qty-zero", "qty-negative", "qty-fractional", "qty-not-lot", "qty-above-max",
         "lot-qty-above-max", "ordtype-stop", "ordtype-pegged", "tif-gtc", "tif-fok", "limit-no-price",
         "limit-empty-price", "price-off-tick", "lot-price-off-tick", "price-zero", "price-negative"],
)
def test_business_reject(oms: OmsCodec, overrides: dict[str, str | None], reason: OrdRejReason,
                         fragments: list[str]) -> None:
    m = _nos(**overrides)
    ev = _decode_invalid(oms, m)
    assert ev.reason is reason
    for frag in fragments:
        assert frag in ev.text, (frag, ev.text)
    # Raw wire values are echoed so the 39=8 answer can repeat them.
    assert (ev.session, ev.cl_ord_id, ev.side, ev.recv_ns) == (SESSION, "c1", Side.BUY, NOW)
    assert ev.symbol == m.getField(55)
    assert ev.qty_raw == m.getField(38)
    assert ev.ord_type_raw == m.getField(40)


def test_business_checks_run_in_order(oms: OmsCodec) -> None:
    # Unknown symbol wins over a bad quantity; the quantity wins over an unsupported type.
    assert _decode_invalid(oms, _nos(t55="MSFT", t38="0")).reason is OrdRejReason.UNKNOWN_SYMBOL
    assert _decode_invalid(oms, _nos(t38="0", t40="3")).reason is OrdRejReason.INCORRECT_QUANTITY


def test_market_order_needs_no_price_even_when_off_tick(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t40="1", t44="190.005"), SESSION)
    assert isinstance(ev, NewOrderReceived) and ev.price_ticks is None


# ------------------------------------------------- NewOrderSingle: SorUrgency(7003)


@pytest.mark.parametrize(
    ("overrides", "urgency"),
    [
        ({"t7003": "high"}, Urgency.HIGH),
        ({"t7003": "LOW"}, Urgency.LOW),
        ({"t7003": " Normal "}, Urgency.NORMAL),
        ({"t7003": "low", "t59": "3"}, Urgency.LOW),
        ({"t7003": "normal", "t59": "3"}, Urgency.NORMAL),
        ({}, Urgency.NORMAL),
        ({"t59": "0"}, Urgency.NORMAL),
        ({"t59": "3"}, Urgency.HIGH),
        ({"t7003": "", "t59": "3"}, Urgency.HIGH),
        ({"t40": "1", "t44": None}, Urgency.NORMAL),
        ({"t40": "1", "t44": None, "t59": "3"}, Urgency.HIGH),
    ],
    ids=["high", "low-upper", "normal-spaces", "tag-wins-over-ioc-low", "tag-wins-over-ioc-normal", "absent",
         "absent-day", "absent-ioc-hint", "empty-ioc-hint", "market-day", "market-ioc"],
)
def test_urgency_tag_and_the_time_in_force_hint(oms: OmsCodec, overrides: dict[str, str | None],
                                                urgency: Urgency) -> None:
    ev = oms.decode(_nos(**overrides), SESSION)
    assert isinstance(ev, NewOrderReceived), ev
    assert ev.urgency is urgency
    if overrides.get("t40") == "1":
        assert ev.tif is TimeInForce.IOC, "a market order routes IOC whatever its urgency"


@pytest.mark.parametrize("value", ["urgent", "HIGHEST", "1"])
def test_unknown_urgency_is_a_business_reject_naming_the_tag(oms: OmsCodec, value: str) -> None:
    ev = _decode_invalid(oms, _nos(t7003=value, t38="100.0"))
    assert ev.reason is OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC
    assert "SorUrgency(7003)" in ev.text and repr(value) in ev.text and "low, normal or high" in ev.text
    assert (ev.session, ev.cl_ord_id, ev.symbol, ev.side, ev.recv_ns) == (SESSION, "c1", "AAPL", Side.BUY, NOW)
    assert (ev.qty_raw, ev.ord_type_raw) == ("100.0", "2"), "the wire values, echoed"


def test_other_business_rejects_win_over_a_bad_urgency(oms: OmsCodec) -> None:
    assert _decode_invalid(oms, _nos(t55="MSFT", t7003="urgent")).reason is OrdRejReason.UNKNOWN_SYMBOL


def test_the_dictionary_knows_the_urgency_tag() -> None:
    dd = fix.DataDictionary(str(DICTIONARY))
    assert dd.isField(URGENCY_TAG)
    assert all(dd.isMsgField(mt, URGENCY_TAG) for mt in ("D", "F", "G"))


# -------------------------------------------------- cancel and cancel/replace


def test_cancel_request_decodes(oms: OmsCodec) -> None:
    ev = oms.decode(_msg("F", {11: "x1", 41: "c1", 55: "AAPL", 54: "2"}), SESSION)
    assert ev == CancelRequested(session=SESSION, cl_ord_id="x1", orig_cl_ord_id="c1", symbol="AAPL",
                                 side=Side.SELL, recv_ns=NOW, replace=False)


def test_cancel_replace_request_decodes_with_its_new_terms(oms: OmsCodec) -> None:
    ev = oms.decode(_msg("G", {11: "r1", 41: "c1", 55: "AAPL", 54: "1", 38: "200", 40: "2", 44: "190.08"}),
                    SESSION)
    assert ev == ReplaceRequested(session=SESSION, cl_ord_id="r1", orig_cl_ord_id="c1", symbol="AAPL",
                                  side=Side.BUY, qty=200, ord_type=OrdType.LIMIT, price_ticks=19008,
                                  tif=TimeInForce.DAY, recv_ns=NOW)


def test_cancel_replace_to_market_rests_nowhere(oms: OmsCodec) -> None:
    ev = oms.decode(_msg("G", {11: "r1", 41: "c1", 55: "AAPL", 54: "2", 38: "300", 40: "1"}), SESSION)
    assert isinstance(ev, ReplaceRequested)
    assert (ev.qty, ev.ord_type, ev.price_ticks, ev.tif, ev.error) == (300, OrdType.MARKET, None,
                                                                       TimeInForce.IOC, "")


@pytest.mark.parametrize(("fields", "text"), [
    ({55: "LOT", 38: "150", 44: "10.00"}, "OrderQty 150 is not a multiple of the lot size 100"),
    ({44: "190.085"}, "Price 190.085 is not a multiple of the tick size 0.01"),
    ({38: "0"}, "OrderQty must be positive, got 0"),
    ({55: "NOPE"}, "unknown symbol 'NOPE'"),
    ({59: "6"}, "unsupported TimeInForce '6': only 0 (day) and 3 (IOC)"),
])
def test_cancel_replace_with_untradable_terms_carries_the_reason(oms: OmsCodec, fields: dict[int, str],
                                                                 text: str) -> None:
    base = {11: "r1", 41: "c1", 55: "AAPL", 54: "1", 38: "200", 40: "2", 44: "190.08"}
    ev = oms.decode(_msg("G", {**base, **fields}), SESSION)
    assert isinstance(ev, ReplaceRequested)
    assert ev.error == text


@pytest.mark.parametrize(("missing", "tag"), [(38, 38), (40, 40), (54, 54)])
def test_cancel_replace_without_a_required_term_is_a_session_reject(oms: OmsCodec, missing: int,
                                                                    tag: int) -> None:
    base = {11: "r1", 41: "c1", 55: "AAPL", 54: "1", 38: "200", 40: "2", 44: "190.08"}
    del base[missing]
    ev = oms.decode(_msg("G", base), SESSION)
    assert isinstance(ev, Malformed)
    assert (ev.ref_msg_type, ev.ref_tag) == ("G", tag)


def test_cancel_without_symbol_or_side(oms: OmsCodec) -> None:
    ev = oms.decode(_msg("F", {11: "x1", 41: "c1"}), SESSION)
    assert isinstance(ev, CancelRequested)
    assert (ev.symbol, ev.side) == ("", None)


def test_cancel_with_bad_side_keeps_going(oms: OmsCodec) -> None:
    ev = oms.decode(_msg("F", {11: "x1", 41: "c1", 54: "9"}), SESSION)
    assert isinstance(ev, CancelRequested) and ev.side is None


@pytest.mark.parametrize("mt", ["F", "G"])
@pytest.mark.parametrize(("fields", "tag", "name"), [({11: "x1"}, 41, "OrigClOrdID"), ({41: "c1"}, 11, "ClOrdID"),
                                                     ({11: "x1", 41: ""}, 41, "OrigClOrdID")])
def test_cancel_missing_ids_is_session_reject(oms: OmsCodec, mt: str, fields: dict[int, str | None], tag: int,
                                              name: str) -> None:
    ev = _decode_malformed(oms, _msg(mt, fields))
    assert ev == Malformed(session=SESSION, ref_seq_num=SEQ, ref_msg_type=mt, ref_tag=tag,
                           reason=REQUIRED_TAG_MISSING, text=f"Required tag missing: {name}({tag})")


@pytest.mark.parametrize("mt", ["H", "AF", "8", "zz"])
def test_unknown_message_type_is_unsupported(oms: OmsCodec, mt: str) -> None:
    ev = oms.decode(_msg(mt, {11: "q1"}), SESSION)
    assert isinstance(ev, Unsupported)
    assert (ev.session, ev.ref_seq_num, ev.ref_msg_type) == (SESSION, SEQ, mt)
    assert repr(mt) in ev.text and "not supported" in ev.text


# ---------------------------------------------------------- encoding: reports


def _report(**kw: object) -> ReportToOms:
    base: dict[str, object] = dict(
        session=SESSION, order_id="O1", cl_ord_id="c1", orig_cl_ord_id=None, exec_id="E1", exec_type=ExecType.NEW,
        ord_status=OrdStatus.NEW, symbol="AAPL", side=Side.BUY, order_qty=400, ord_type=OrdType.LIMIT,
        price_ticks=19007, cum_qty=0, leaves_qty=400, avg_px_ticks_num=0, last_qty=0, last_px_ticks=0,
        last_mkt=None, text="", transact_ns=NOW,
    )
    base.update(kw)
    return ReportToOms(**base)  # type: ignore[arg-type]


def test_encode_new_report(oms: OmsCodec) -> None:
    w = _wire(oms.encode_report(_report()))
    assert w[35] == "8"
    assert {t: w[t] for t in (37, 11, 17, 150, 39, 55, 54, 38, 40, 44, 14, 151, 6)} == {
        37: "O1", 11: "c1", 17: "E1", 150: "0", 39: "0", 55: "AAPL", 54: "1", 38: "400", 40: "2", 44: "190.07",
        14: "0", 151: "400", 6: "0",
    }
    assert 60 in w and len(w[60]) >= len("YYYYMMDD-HH:MM:SS")
    for absent in (41, 32, 31, 30, 58, 103):
        assert absent not in w, absent


def test_encode_trade_report(oms: OmsCodec) -> None:
    r = _report(exec_id="E4", exec_type=ExecType.TRADE, ord_status=OrdStatus.PARTIALLY_FILLED, cum_qty=4,
                leaves_qty=396, avg_px_ticks_num=3 * 19001 + 1 * 19002, last_qty=1, last_px_ticks=19002,
                last_mkt="XLT1")
    w = _wire(oms.encode_report(r))
    assert {t: w[t] for t in (17, 150, 39, 14, 151, 6, 32, 31, 30, 44)} == {
        17: "E4", 150: "F", 39: "1", 14: "4", 151: "396", 6: "190.0125", 32: "1", 31: "190.02", 30: "XLT1",
        44: "190.07",
    }
    assert 41 not in w and 58 not in w


def test_encode_trade_report_without_last_mkt(oms: OmsCodec) -> None:
    r = _report(exec_type=ExecType.TRADE, ord_status=OrdStatus.FILLED, cum_qty=400, leaves_qty=0,
                avg_px_ticks_num=400 * 19000, last_qty=400, last_px_ticks=19000)
    w = _wire(oms.encode_report(r))
    assert (w[32], w[31], w[6], w[39]) == ("400", "190.00", "190", "2")
    assert 30 not in w


def test_encode_canceled_report(oms: OmsCodec) -> None:
    r = _report(cl_ord_id="x1", orig_cl_ord_id="c1", exec_id="E9", exec_type=ExecType.CANCELED,
                ord_status=OrdStatus.CANCELED, cum_qty=100, leaves_qty=0, avg_px_ticks_num=100 * 19003,
                text="canceled by request")
    w = _wire(oms.encode_report(r))
    assert {t: w[t] for t in (11, 41, 150, 39, 14, 151, 6, 58)} == {
        11: "x1", 41: "c1", 150: "4", 39: "4", 14: "100", 151: "0", 6: "190.03", 58: "canceled by request",
    }
    for absent in (32, 31, 30):
        assert absent not in w, absent


def test_encode_market_report_has_no_price(oms: OmsCodec) -> None:
    w = _wire(oms.encode_report(_report(ord_type=OrdType.MARKET, price_ticks=None)))
    assert w[40] == "1"
    assert 44 not in w


def test_encode_report_on_lot_instrument(oms: OmsCodec) -> None:
    r = _report(symbol="LOT", price_ticks=21, exec_type=ExecType.TRADE, ord_status=OrdStatus.PARTIALLY_FILLED,
                cum_qty=200, leaves_qty=200, avg_px_ticks_num=100 * 21 + 100 * 22, last_qty=100, last_px_ticks=22)
    w = _wire(oms.encode_report(r))
    assert (w[44], w[31], w[6]) == ("1.05", "1.10", "1.075")


def test_encode_reject_order(oms: OmsCodec) -> None:
    r = RejectOrder(session=SESSION, order_id="NONE", cl_ord_id="c1", exec_id="E2", symbol="MSFT", side=Side.SELL,
                    qty_raw="10.5", ord_type_raw="3", reason=OrdRejReason.UNKNOWN_SYMBOL,
                    text="unknown symbol 'MSFT'", transact_ns=NOW)
    w = _wire(oms.encode_reject_order(r))
    assert {t: w[t] for t in (35, 37, 11, 17, 150, 39, 103, 55, 54, 38, 40, 14, 151, 6, 58)} == {
        35: "8", 37: "NONE", 11: "c1", 17: "E2", 150: "8", 39: "8", 103: "1", 55: "MSFT", 54: "2", 38: "10.5",
        40: "3", 14: "0", 151: "0", 6: "0", 58: "unknown symbol 'MSFT'",
    }
    assert 60 in w
    assert 44 not in w and 41 not in w


@pytest.mark.parametrize("reason", list(OrdRejReason))
def test_encode_reject_order_reason_is_integer(oms: OmsCodec, reason: OrdRejReason) -> None:
    r = RejectOrder(session=SESSION, order_id="NONE", cl_ord_id="c1", exec_id="E2", symbol="AAPL", side=Side.BUY,
                    qty_raw="1", ord_type_raw="2", reason=reason, text="t", transact_ns=NOW)
    assert _wire(oms.encode_reject_order(r))[103] == str(reason.value)


@pytest.mark.parametrize(("replace", "code"), [(False, "1"), (True, "2")])
def test_encode_cancel_reject(replace: bool, code: str) -> None:
    r = RejectCancel(session=SESSION, order_id="O1", cl_ord_id="x1", orig_cl_ord_id="c1",
                     ord_status=OrdStatus.PARTIALLY_FILLED, reason=CxlRejReason.TOO_LATE_TO_CANCEL,
                     response_to_replace=replace, text="too late")
    w = _wire(OmsCodec.encode_cancel_reject(r))
    assert {t: w[t] for t in (35, 37, 11, 41, 39, 434, 102, 58)} == {
        35: "9", 37: "O1", 11: "x1", 41: "c1", 39: "1", 434: code, 102: "0", 58: "too late",
    }


def test_encode_cancel_reject_unknown_order() -> None:
    r = RejectCancel(session=SESSION, order_id="NONE", cl_ord_id="x1", orig_cl_ord_id="nope",
                     ord_status=OrdStatus.REJECTED, reason=CxlRejReason.UNKNOWN_ORDER, response_to_replace=False,
                     text="unknown order 'nope'")
    w = _wire(OmsCodec.encode_cancel_reject(r))
    assert (w[37], w[39], w[102], w[434]) == ("NONE", "8", "1", "1")


def test_encode_session_reject_from_decoded_malformed(oms: OmsCodec) -> None:
    ev = _decode_malformed(oms, _nos(t55=None))
    w = _wire(OmsCodec.encode_session_reject(ev))
    assert {t: w[t] for t in (35, 45, 371, 372, 373, 58)} == {
        35: "3", 45: str(SEQ), 371: "55", 372: "D", 373: "1", 58: "Required tag missing: Symbol(55)",
    }


def test_encode_session_reject_bad_value(oms: OmsCodec) -> None:
    ev = _decode_malformed(oms, _nos(t38="abc"))
    w = _wire(OmsCodec.encode_session_reject(ev))
    assert (w[371], w[373]) == ("38", "6")
    assert "OrderQty(38)" in w[58]


def test_encode_business_reject(oms: OmsCodec) -> None:
    ev = oms.decode(_msg("H", {11: "q1"}, seq=77), SESSION)
    assert isinstance(ev, Unsupported)
    w = _wire(OmsCodec.encode_business_reject(ev))
    assert {t: w[t] for t in (35, 45, 372, 380)} == {35: "j", 45: "77", 372: "H", 380: "3"}
    assert "'H'" in w[58]


# --------------------------------------------------------------- venue codec


def _child(**kw: object) -> SendChildOrder:
    base: dict[str, object] = dict(venue="LIT1", child_id="C1", symbol="AAPL", side=Side.BUY, qty=100,
                                   ord_type=OrdType.LIMIT, price_ticks=19007, tif=TimeInForce.IOC)
    base.update(kw)
    return SendChildOrder(**base)  # type: ignore[arg-type]


def test_venue_encode_limit_child(venue: VenueCodec) -> None:
    w = _wire(venue.encode_new(_child()))
    assert {t: w[t] for t in (35, 11, 55, 54, 38, 40, 44, 59)} == {
        35: "D", 11: "C1", 55: "AAPL", 54: "1", 38: "100", 40: "2", 44: "190.07", 59: "3",
    }
    assert 60 in w


def test_venue_template_reuse_removes_stale_price(venue: VenueCodec) -> None:
    first = venue.encode_new(_child())
    assert _wire(first)[44] == "190.07"
    second = venue.encode_new(_child(child_id="C2", side=Side.SELL, qty=50, ord_type=OrdType.MARKET,
                                     price_ticks=None, tif=TimeInForce.IOC))
    w = _wire(second)
    assert 44 not in w, "a market child must not carry the previous child's limit price"
    assert {t: w[t] for t in (11, 54, 38, 40, 59)} == {11: "C2", 54: "2", 38: "50", 40: "1", 59: "3"}
    # And back to a limit on another instrument: every field is the new child's.
    w = _wire(venue.encode_new(_child(child_id="C3", symbol="LOT", qty=200, price_ticks=21, tif=TimeInForce.DAY)))
    assert {t: w[t] for t in (11, 55, 54, 38, 40, 44, 59)} == {
        11: "C3", 55: "LOT", 54: "1", 38: "200", 40: "2", 44: "1.05", 59: "0",
    }


def test_venue_encode_market_on_fresh_template(venue: VenueCodec) -> None:
    w = _wire(venue.encode_new(_child(ord_type=OrdType.MARKET, price_ticks=None)))
    assert w[40] == "1" and 44 not in w


def test_venue_encode_cancel() -> None:
    c = CancelChild(venue="LIT1", child_id="C1", cancel_id="X1", symbol="AAPL", side=Side.SELL, qty=300)
    w = _wire(VenueCodec.encode_cancel(c))
    assert {t: w[t] for t in (35, 11, 41, 55, 54, 38)} == {35: "F", 11: "X1", 41: "C1", 55: "AAPL", 54: "2",
                                                           38: "300"}
    assert 60 in w and 44 not in w


def _er(**fields: str) -> fix.Message:
    base = {37: "V1", 11: "C1", 17: "VX1", 150: "0", 39: "0", 55: "AAPL", 54: "1", 38: "300", 14: "0", 151: "300"}
    base.update({int(k.removeprefix("t")): v for k, v in fields.items()})
    return _msg("8", dict(base))


def test_venue_decode_ack(venue: VenueCodec) -> None:
    ev = venue.decode(_er(), "LIT1")
    assert ev == VenueReport(venue="LIT1", child_id="C1", exec_id="VX1", exec_type=ExecType.NEW,
                             ord_status=OrdStatus.NEW, last_qty=0, last_px_ticks=0, cum_qty=0, leaves_qty=300,
                             text="", recv_ns=NOW)


def test_venue_decode_partial_fill(venue: VenueCodec) -> None:
    ev = venue.decode(_er(t17="VX2", t150="F", t39="1", t32="100", t31="190.01", t14="100", t151="200"), "LIT1")
    assert ev == VenueReport(venue="LIT1", child_id="C1", exec_id="VX2", exec_type=ExecType.TRADE,
                             ord_status=OrdStatus.PARTIALLY_FILLED, last_qty=100, last_px_ticks=19001, cum_qty=100,
                             leaves_qty=200, text="", recv_ns=NOW)


def test_venue_decode_fill_decimal_quantities_and_lot_ticks(venue: VenueCodec) -> None:
    ev = venue.decode(_er(t55="LOT", t150="F", t39="2", t32="300.0", t31="1.10", t14="300.0", t151="0"), "DARK1")
    assert isinstance(ev, VenueReport)
    assert (ev.last_qty, ev.last_px_ticks, ev.cum_qty, ev.leaves_qty, ev.venue) == (300, 22, 300, 0, "DARK1")


def test_venue_decode_cancel_report_names_the_child(venue: VenueCodec) -> None:
    ev = venue.decode(_er(t11="X1", t41="C1", t150="4", t39="4", t14="100", t151="0", t58="canceled"), "LIT1")
    assert isinstance(ev, VenueReport)
    assert (ev.child_id, ev.exec_type, ev.ord_status, ev.cum_qty, ev.leaves_qty, ev.text) == (
        "C1", ExecType.CANCELED, OrdStatus.CANCELED, 100, 0, "canceled")


def test_venue_decode_unsolicited_cancel_uses_clordid(venue: VenueCodec) -> None:
    ev = venue.decode(_er(t150="4", t39="4", t151="0"), "LIT1")
    assert isinstance(ev, VenueReport) and ev.child_id == "C1"


def test_venue_decode_reject_without_qty_fields(venue: VenueCodec) -> None:
    m = _msg("8", {37: "NONE", 11: "C1", 17: "VX3", 150: "8", 39: "8", 55: "AAPL", 54: "1", 58: "no liquidity"})
    ev = venue.decode(m, "LIT2")
    assert isinstance(ev, VenueReport)
    assert (ev.exec_type, ev.ord_status, ev.cum_qty, ev.leaves_qty, ev.text) == (
        ExecType.REJECTED, OrdStatus.REJECTED, 0, 0, "no liquidity")


def test_venue_decode_cancel_reject(venue: VenueCodec) -> None:
    m = _msg("9", {37: "V1", 11: "X1", 41: "C1", 39: "2", 434: "1", 102: "0", 58: "too late"})
    assert venue.decode(m, "LIT1") == VenueCancelRejected(venue="LIT1", child_id="C1", text="too late", recv_ns=NOW,
                                                          reason=CxlRejReason.TOO_LATE_TO_CANCEL)
    unknown = _msg("9", {37: "NONE", 11: "X2", 41: "C2", 39: "8", 434: "1", 102: "1", 58: "unknown order"})
    assert venue.decode(unknown, "LIT1").reason == CxlRejReason.UNKNOWN_ORDER
    no_reason = _msg("9", {37: "NONE", 11: "X3", 41: "C3", 39: "8", 434: "1", 58: "?"})
    assert venue.decode(no_reason, "LIT1").reason == CxlRejReason.OTHER


@pytest.mark.parametrize("mt", ["j", "3", "D", "W"])
def test_venue_decode_other_message_types_is_none(venue: VenueCodec, mt: str) -> None:
    assert venue.decode(_msg(mt, {58: "x"}), "LIT1") is None


# ---------------------------------------------------------------------- Ticks


@pytest.mark.parametrize(("tick", "px", "ticks"), [
    ("0.01", "190.07", 19007), ("0.01", "190", 19000), ("0.01", "190.0700", 19007), ("0.01", "0.01", 1),
    ("0.05", "1.05", 21), ("0.05", "1.10", 22), ("0.05", "100", 2000), ("1", "42", 42), ("0.0001", "1.2345", 12345),
])
def test_to_ticks_exact(tick: str, px: str, ticks: int) -> None:
    got = Ticks(tick).to_ticks(Decimal(px))
    assert got == ticks and type(got) is int


@pytest.mark.parametrize(("tick", "px"), [("0.01", "190.005"), ("0.01", "190.071"), ("0.05", "1.02"),
                                          ("0.05", "1.051"), ("1", "42.5"), ("0.01", "0.001")])
def test_to_ticks_off_grid_is_none(tick: str, px: str) -> None:
    assert Ticks(tick).to_ticks(Decimal(px)) is None


@pytest.mark.parametrize(("tick", "ticks", "text"), [
    ("0.01", 19000, "190.00"), ("0.01", 19007, "190.07"), ("0.01", 1, "0.01"), ("0.01", 0, "0.00"),
    ("0.01", 100, "1.00"), ("0.05", 21, "1.05"), ("0.05", 20, "1.00"), ("1", 42, "42"), ("0.0001", 12345, "1.2345"),
    ("0.01", 1_000_000_000, "10000000.00"),
])
def test_to_str(tick: str, ticks: int, text: str) -> None:
    t = Ticks(tick)
    assert t.to_str(ticks) == text
    assert t.to_str(ticks) == text  # second call comes from the cache
    assert t.to_ticks(Decimal(text)) == ticks


def test_to_str_cache_is_per_instance_and_keyed_by_ticks() -> None:
    cents, nickels = Ticks("0.01"), Ticks("0.05")
    assert (cents.to_str(21), nickels.to_str(21)) == ("0.21", "1.05")
    assert (cents.to_str(22), nickels.to_str(22)) == ("0.22", "1.10")
    assert (cents.to_str(21), nickels.to_str(21)) == ("0.21", "1.05")
    assert cents._cache == {21: "0.21", 22: "0.22"}


def test_to_str_cache_is_bounded() -> None:
    t = Ticks("0.01")
    for i in range(100_010):
        t.to_str(i)
    assert len(t._cache) == 100_000
    assert t.to_str(100_005) == "1000.05"


@pytest.mark.parametrize(("px", "ticks"), [("190.01", 19001), ("190.014", 19001), ("190.016", 19002),
                                           ("190", 19000), ("190.005", 19000), ("190.015", 19002)])
def test_to_ticks_nearest_rounds_half_even(px: str, ticks: int) -> None:
    assert Ticks("0.01").to_ticks_nearest(px) == ticks


@pytest.mark.parametrize(("tick", "notional", "qty", "text"), [
    ("0.01", 3 * 19001 + 1 * 19002, 4, "190.0125"),
    ("0.01", 19001 + 2 * 19002, 3, "190.01666667"),
    ("0.01", 2 * 19001, 3, "126.67333333"),
    ("0.01", 19000 * 7, 7, "190"),
    ("0.01", 19001, 1, "190.01"),
    ("0.01", 0, 0, "0"),
    ("0.05", 100 * 21 + 100 * 22, 200, "1.075"),
    ("0.01", 1, 3, "0.00333333"),
])
def test_avg_str(tick: str, notional: int, qty: int, text: str) -> None:
    assert Ticks(tick).avg_str(notional, qty) == text


def test_avg_str_is_quantized_to_eight_places() -> None:
    s = Ticks("0.01").avg_str(10, 7)  # 0.1 / 7 = 0.0142857142857...
    assert s == "0.01428571"
    assert Decimal(s) == Decimal(s).quantize(AVG_PX_QUANTUM)


# ------------------------------------------------------------ bugs (xfail)


def test_to_ticks_is_exact_beyond_context_precision(oms: OmsCodec) -> None:
    px = "190.0000000000000000000000000001"  # 31 significant digits, off the 0.01 grid
    assert Ticks("0.01").to_ticks(Decimal(px)) is None
    ev = _decode_invalid(oms, _nos(t44=px))
    assert ev.reason is OrdRejReason.INVALID_PRICE_INCREMENT


def test_huge_price_exponent_is_an_answer_not_an_exception(oms: OmsCodec) -> None:
    ev = oms.decode(_nos(t44="1E+999999999"), SESSION)
    assert isinstance(ev, InvalidOrderReceived | Malformed)


def test_huge_qty_is_rejected_without_building_a_huge_int(oms: OmsCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    real_int = int

    def guarded_int(x: object = 0, *args: object) -> int:
        if isinstance(x, Decimal) and x.is_finite() and x.adjusted() > 30:
            raise AssertionError(f"int() of a {x.adjusted() + 1}-digit Decimal on the decode path")
        return real_int(x, *args)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(codec_mod, "int", guarded_int, raising=False)
    ev = _decode_invalid(oms, _nos(t38="1E+2000000"))
    assert ev.reason is OrdRejReason.ORDER_EXCEEDS_LIMIT


def test_venue_unknown_exec_type_is_none_not_an_exception(venue: VenueCodec) -> None:
    assert venue.decode(_er(t150="D", t39="0"), "LIT1") is None

