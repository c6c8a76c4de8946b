"""Cancel/replace (35=G) through the real daemon and sim venues, both
drivers: a resting order's quantity cut, its price raised until it
crosses, a replace chained on a replace, and refusals that name why.

Every order's reports, under all its ClOrdIDs, are checked as one story
by ``sim.invariants`` (CumQty + LeavesQty = OrderQty on each report, no
over-fill, AvgPx from the fills)."""

from __future__ import annotations

from fix.codec import (
    CL_ORD_ID,
    CUM_QTY,
    CXL_REJ_REASON,
    CXL_REJ_RESPONSE_TO,
    EXEC_TYPE,
    LEAVES_QTY,
    ORD_STATUS,
    ORDER_QTY,
    ORIG_CL_ORD_ID,
    PRICE,
    TEXT,
)
from sim.harness import Cluster, poll_until
from sim.invariants import check_order
from sim.oms import Received, SimOms

T = 15.0


def _wait_report(oms: SimOms, cl: str, exec_type: str) -> Received:
    got: list[Received] = []

    def seen() -> bool:
        got[:] = [r for r in oms.reports(cl) if r.get(EXEC_TYPE) == exec_type]
        return bool(got)

    assert oms.wait_for(seen, T), oms.answers(cl)
    return got[0]


def _resting(cluster: Cluster, oms: SimOms, symbol: str, qty: int) -> str:
    """A DAY buy far below the market: the sweeps of LIT1 and LIT2 find
    nothing and it rests on LIT1 (its second child there)."""
    sent = 'sor_child_orders_sent_total{venue="LIT1"}'
    before = cluster.metrics().get(sent, 0)
    cl = oms.send_order(symbol, "1", qty, price="185.00", tif="0")
    _wait_report(oms, cl, "0")
    assert poll_until(lambda: cluster.metrics().get(sent, 0) >= before + 2, T), cluster.metrics()
    return cl


def test_quantity_cut_on_a_resting_order_then_canceled_by_the_new_clordid(cluster: Cluster, oms: SimOms) -> None:
    cl = _resting(cluster, oms, "S1", 300)
    r1 = oms.send_replace(cl, "S1", "1", 200, price="185.00")
    pending = _wait_report(oms, r1, "E")
    assert (pending.get(ORD_STATUS), pending.get(ORIG_CL_ORD_ID), pending.get(ORDER_QTY)) == ("E", cl, "300")
    replaced = _wait_report(oms, r1, "5")
    assert (replaced.get(ORD_STATUS), replaced.get(ORIG_CL_ORD_ID), replaced.get(ORDER_QTY),
            replaced.get(LEAVES_QTY), replaced.get(PRICE)) == ("0", cl, "200", "200", "185.00")
    x1 = oms.send_cancel(r1, "S1", "1", 200)
    assert oms.wait_done(x1, T), oms.answers(x1)
    done = oms.reports(x1)[-1]
    assert (done.get(ORD_STATUS), done.get(CL_ORD_ID), done.get(ORIG_CL_ORD_ID), done.get(ORDER_QTY)) == (
        "4", x1, r1, "200")
    check_order(cl, oms.order_story([cl, r1, x1]))


def test_price_raised_until_it_crosses_fills_the_order(cluster: Cluster, oms: SimOms) -> None:
    cl = _resting(cluster, oms, "S2", 300)
    r1 = oms.send_replace(cl, "S2", "1", 300, price="191.00")
    replaced = _wait_report(oms, r1, "5")
    assert (replaced.get(PRICE), replaced.get(ORDER_QTY)) == ("191.00", "300")
    assert oms.wait_done(r1, T), oms.answers(r1)
    last = oms.reports(r1)[-1]
    assert (last.get(ORD_STATUS), last.get(CUM_QTY)) == ("2", "300")
    check_order(cl, oms.order_story([cl, r1]))


def test_a_replace_chained_on_a_replace(cluster: Cluster, oms: SimOms) -> None:
    cl = _resting(cluster, oms, "S3", 300)
    r1 = oms.send_replace(cl, "S3", "1", 250, price="185.00")
    _wait_report(oms, r1, "5")
    r2 = oms.send_replace(r1, "S3", "1", 400, price="184.00")
    replaced = _wait_report(oms, r2, "5")
    assert (replaced.get(ORIG_CL_ORD_ID), replaced.get(ORDER_QTY), replaced.get(PRICE)) == (r1, "400", "184.00")
    x1 = oms.send_cancel(r2, "S3", "1", 400)
    assert oms.wait_done(x1, T), oms.answers(x1)
    check_order(cl, oms.order_story([cl, r1, r2, x1]))


def test_refused_replaces_name_the_reason_and_leave_the_order_working(cluster: Cluster, oms: SimOms) -> None:
    cl = _resting(cluster, oms, "S6", 100)
    unknown = oms.send_replace("no-such-order", "S6", "1", 100, price="185.00")
    rej = oms.wait_answer(unknown, "9", T)
    assert rej is not None
    assert (rej.get(CXL_REJ_RESPONSE_TO), rej.get(CXL_REJ_REASON)) == ("2", "1")
    off_tick = oms.send_replace(cl, "S6", "1", 100, price="185.005")
    rej = oms.wait_answer(off_tick, "9", T)
    assert rej is not None
    assert rej.get(TEXT) == "replace refused: Price 185.005 is not a multiple of the tick size 0.01"
    assert (rej.get(CXL_REJ_RESPONSE_TO), rej.get(ORD_STATUS)) == ("2", "0")
    beyond = oms.send_replace(cl, "S6", "1", 100, price="200.00")
    rej = oms.wait_answer(beyond, "9", T)
    assert rej is not None and rej.get(TEXT, "").startswith("price collar: limit 200.00"), rej
    # Still working under its old terms: a cancel ends it.
    x1 = oms.send_cancel(cl, "S6", "1", 100)
    assert oms.wait_done(x1, T), oms.answers(x1)
    assert oms.reports(x1)[-1].get(ORD_STATUS) == "4"
    check_order(cl, oms.order_story([cl, x1]))
