"""Bad input gets a clear reject with a readable Text(58), and the daemon
keeps serving: the next valid order still fills."""

from __future__ import annotations

from fix.codec import CXL_REJ_REASON, EXEC_TYPE, ORD_REJ_REASON, ORD_STATUS, REF_TAG_ID, SESSION_REJECT_REASON, TEXT
from sim.harness import Cluster
from sim.oms import SimOms

T = 15.0


def _order_reject(oms: SimOms, cl: str) -> tuple[str, str, str]:
    ans = oms.wait_answer(cl, "8", T)
    assert ans is not None, f"no answer to {cl}"
    assert (ans.get(EXEC_TYPE), ans.get(ORD_STATUS)) == ("8", "8")
    return ans.get(ORD_REJ_REASON), ans.get(TEXT), ans.get(11)


def _valid_order_still_fills(oms: SimOms) -> None:
    cl = oms.send_order("S6", "1", 10, price="190.05", tif="3")
    assert oms.wait_done(cl, T)
    assert oms.reports(cl)[-1].get(ORD_STATUS) == "2"


def test_missing_symbol_gets_a_session_reject(oms: SimOms) -> None:
    before = len(oms.session_rejects())
    oms.send_fields("D", [(11, "no-sym"), (54, "1"), (38, "100"), (40, "2"), (44, "190.00")])
    assert oms.wait_for(lambda: len(oms.session_rejects()) > before, T)
    rej = oms.session_rejects()[-1]
    assert rej.get(REF_TAG_ID) == "55" and rej.get(SESSION_REJECT_REASON) == "1"
    assert rej.get(TEXT) == "Required tag missing: Symbol(55)"
    _valid_order_still_fills(oms)


def test_non_positive_quantity(oms: SimOms) -> None:
    for qty in ("0", "-100"):
        cl = oms.send_order("S6", "1", qty, price="190.00")
        reason, text, echoed = _order_reject(oms, cl)
        assert (reason, echoed) == ("13", cl)
        assert "OrderQty must be positive" in text
    _valid_order_still_fills(oms)


def test_unknown_symbol(oms: SimOms) -> None:
    cl = oms.send_order("NOPE", "1", 100, price="190.00")
    assert _order_reject(oms, cl)[:2] == ("1", "unknown symbol 'NOPE'")
    _valid_order_still_fills(oms)


def test_price_off_tick(oms: SimOms) -> None:
    cl = oms.send_order("S6", "1", 100, price="190.005")
    reason, text, _ = _order_reject(oms, cl)
    assert reason == "18"
    assert text == "Price 190.005 is not a multiple of the tick size 0.01"
    _valid_order_still_fills(oms)


def test_unsupported_ord_type(oms: SimOms) -> None:
    cl = oms.send_order("S6", "1", 100, price="190.00", ord_type="3")
    reason, text, _ = _order_reject(oms, cl)
    assert reason == "11" and "unsupported OrdType '3'" in text
    _valid_order_still_fills(oms)


def test_unknown_urgency(oms: SimOms) -> None:
    cl = oms.send_order("S6", "1", 100, price="190.00", urgency="urgent")
    reason, text, _ = _order_reject(oms, cl)
    assert (reason, text) == ("11", "unsupported SorUrgency(7003) 'urgent': only low, normal or high")
    # A known one, in any case, is taken (the dictionary knows the tag).
    cl = oms.send_order("S6", "1", 10, price="190.05", tif="3", urgency="HIGH")
    assert oms.wait_done(cl, T)
    assert oms.reports(cl)[-1].get(ORD_STATUS) == "2"


def test_duplicate_cl_ord_id_leaves_the_original_alone(oms: SimOms) -> None:
    cl = oms.send_order("S6", "2", 100, price="191.00", tif="0")  # rests far from the market
    assert oms.wait_for(lambda: any(r.get(EXEC_TYPE) == "0" for r in oms.reports(cl)), T)
    oms.send_order("S6", "2", 100, price="191.00", tif="0", cl_ord_id=cl)
    assert oms.wait_for(lambda: any(r.get(ORD_STATUS) == "8" for r in oms.reports(cl)), T)
    dup = next(r for r in oms.reports(cl) if r.get(ORD_STATUS) == "8")
    assert (dup.get(ORD_REJ_REASON), dup.get(37)) == ("6", "NONE")
    assert dup.get(TEXT) == f"duplicate ClOrdID {cl!r}"
    # The original is still working and cancels normally.
    oms.send_cancel(cl, "S6", "2", 100)
    assert oms.wait_for(lambda: any(r.get(ORD_STATUS) == "4" for r in oms.reports(cl)), T)
    _valid_order_still_fills(oms)


def test_cancel_of_unknown_order(oms: SimOms) -> None:
    cx = oms.send_cancel("never-sent", "S6", "1", 100)
    ans = oms.wait_answer(cx, "9", T)
    assert ans is not None
    assert (ans.get(CXL_REJ_REASON), ans.get(434), ans.get(41)) == ("1", "1", "never-sent")
    assert ans.get(TEXT) == "unknown order: OrigClOrdID 'never-sent'"
    _valid_order_still_fills(oms)


def test_cancel_replace_with_a_bad_quantity_is_refused_naming_it(oms: SimOms) -> None:
    cl = oms.send_order("S6", "2", 100, price="191.00", tif="0")
    assert oms.wait_for(lambda: any(r.get(EXEC_TYPE) == "0" for r in oms.reports(cl)), T)
    rp = oms.new_id()
    oms.send_fields("G", [(11, rp), (41, cl), (55, "S6"), (54, "2"), (38, "0"), (40, "2"), (44, "191.00")])
    ans = oms.wait_answer(rp, "9", T)
    assert ans is not None and ans.get(434) == "2"
    assert ans.get(TEXT) == "replace refused: OrderQty must be positive, got 0"
    # The order is untouched and still cancels.
    oms.send_cancel(cl, "S6", "2", 100)
    assert oms.wait_for(lambda: any(r.get(ORD_STATUS) == "4" for r in oms.reports(cl)), T)


def test_rejects_are_counted(cluster: Cluster, oms: SimOms) -> None:
    cl = oms.send_order("NOPE", "1", 100, price="190.00")
    _order_reject(oms, cl)
    m = cluster.metrics()
    assert m['sor_order_rejects_total{reason="unknown_symbol"}'] >= 1
    assert m['sor_session_rejects_total{reason="missing_tag"}'] >= 0
    assert m['sor_fix_session_up{session="oms"}'] == 1
