"""A parent order through the daemon to sim venues and back, end to end."""

from __future__ import annotations

from decimal import Decimal

from fix.codec import AVG_PX, CUM_QTY, EXEC_TYPE, LAST_MKT, LAST_PX, LAST_QTY, LEAVES_QTY, ORD_STATUS, TEXT
from sim.harness import Cluster
from sim.invariants import check_order
from sim.oms import SimOms

TIMEOUT_S = 15.0


def _fills(reports: list) -> list[tuple[str, int, str]]:
    return [(r.get(LAST_MKT), int(r.get(LAST_QTY)), r.get(LAST_PX)) for r in reports if r.get(EXEC_TYPE) == "F"]


def test_parent_filled_across_two_venues(oms: SimOms) -> None:
    # LIT1 shows 100 @ 190.01; LIT2 shows 100 at each of 190.01..190.05.
    cl = oms.send_order("S1", "1", 250, price="190.05", tif="3")
    assert oms.wait_done(cl, TIMEOUT_S)
    reps = oms.reports(cl)
    check_order(cl, reps)
    assert next(r.get(EXEC_TYPE) for r in reps) == "0"
    assert _fills(reps) == [("XLT1", 100, "190.01"), ("XLT2", 100, "190.01"), ("XLT2", 50, "190.02")]
    final = reps[-1]
    assert (final.get(ORD_STATUS), final.get(CUM_QTY), final.get(LEAVES_QTY)) == ("2", "250", "0")
    assert Decimal(final.get(AVG_PX)) == (Decimal("190.01") * 200 + Decimal("190.02") * 50) / 250


def test_partial_fill_then_the_rest(oms: SimOms) -> None:
    # 100 + 100 at the touch take both venues' 190.01 liquidity, the last
    # 100 rests on LIT1 and fills when LIT1's next quote crosses it.
    cl = oms.send_order("S2", "1", 300, price="190.01", tif="0")
    assert oms.wait_done(cl, TIMEOUT_S)
    reps = oms.reports(cl)
    check_order(cl, reps)
    statuses = [(r.get(EXEC_TYPE), r.get(ORD_STATUS), r.get(CUM_QTY)) for r in reps]
    assert statuses == [("0", "0", "0"), ("F", "1", "100"), ("F", "1", "200"), ("F", "2", "300")]
    assert [m for m, _, _ in _fills(reps)] == ["XLT1", "XLT2", "XLT1"]


def test_parent_cancel_mid_flight(oms: SimOms) -> None:
    # 2000 at the touch: 200 fill at once, 1800 rest on LIT1 and fill 100
    # per requote; the cancel lands long before the rest could fill.
    cl = oms.send_order("S3", "2", 2000, price="189.99", tif="0")
    assert oms.wait_for(lambda: any(r.get(CUM_QTY) == "200" for r in oms.answers(cl)), TIMEOUT_S)
    cx = oms.send_cancel(cl, "S3", "2", 2000)
    assert oms.wait_done(cl, TIMEOUT_S)
    reps = oms.reports(cl)
    check_order(cl, reps)
    final = reps[-1]
    assert final.get(ORD_STATUS) == "4", final.fields
    assert final.get(EXEC_TYPE) == "4"
    assert final.get(11) == cx and final.get(41) == cl
    cum = int(final.get(CUM_QTY))
    assert 200 <= cum < 2000
    assert final.get(LEAVES_QTY) == "0"
    # PendingCancel was reported before the cancel completed.
    assert any(r.get(EXEC_TYPE) == "6" for r in reps)


def test_passive_order_rests_then_cancels_with_nothing_filled(oms: SimOms) -> None:
    cl = oms.send_order("S4", "1", 500, price="189.95", tif="0")
    assert oms.wait_for(lambda: any(r.get(EXEC_TYPE) == "0" for r in oms.reports(cl)), TIMEOUT_S)
    oms.send_cancel(cl, "S4", "1", 500)
    assert oms.wait_done(cl, TIMEOUT_S)
    reps = oms.reports(cl)
    check_order(cl, reps)
    assert (reps[-1].get(ORD_STATUS), reps[-1].get(CUM_QTY)) == ("4", "0")


def test_ioc_remainder_goes_back_to_the_oms(oms: SimOms) -> None:
    # Both venues together show 600 up to 190.05; the IOC asks for 1000.
    cl = oms.send_order("S5", "1", 1000, price="190.05", tif="3")
    assert oms.wait_done(cl, TIMEOUT_S)
    reps = oms.reports(cl)
    check_order(cl, reps)
    final = reps[-1]
    assert (final.get(ORD_STATUS), final.get(CUM_QTY), final.get(LEAVES_QTY)) == ("4", "600", "0")
    assert "waterfall exhausted" in final.get(TEXT)


def test_metrics_count_what_happened(cluster: Cluster, oms: SimOms) -> None:
    cl = oms.send_order("S7", "2", 100, price="189.99", tif="3")
    assert oms.wait_done(cl, TIMEOUT_S)
    m = cluster.metrics()
    assert m['sor_fix_session_up{session="oms"}'] == 1
    assert m['sor_fills_total{venue="LIT1"}'] >= 1
    assert m["sor_tick_to_route_seconds_count"] >= 1
    # The venue statistics learn from our own outcomes: LIT1 filled this
    # 100-share child completely, lifting its small-order fill rate above
    # the 0.5 prior it starts from.
    assert m['sor_venue_fill_rate{bucket="0",venue="LIT1"}'] > 0.5
    assert 'sor_venue_markout_bps{horizon="1s",venue="LIT1"}' in m
    # The fill was against the arrival mid of a known book: slippage observed.
    assert m['sor_fill_slippage_bps_count{venue="LIT1"}'] >= 1
