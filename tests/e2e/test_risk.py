"""Pre-trade risk through the real daemon, both drivers: a limit beyond the
price collar is rejected with the limit named in Text(58) and counted; an
order just inside the collar is routed and fills; a market order's
children go out as limits capped at the collar (and fill at the touch)."""

from __future__ import annotations

from fix.codec import CUM_QTY, EXEC_TYPE, LAST_PX, ORD_REJ_REASON, ORD_STATUS, TEXT
from sim.harness import Cluster, poll_until
from sim.invariants import check_order
from sim.oms import SimOms
from tests.e2e.conftest import SYMBOLS

T = 15.0
REJECTS = 'sor_risk_rejects_total{limit="price_collar",order="parent"}'


def _books_in(cluster: Cluster) -> None:
    """The collar needs the NBBO: wait until both lit venues' books are in."""
    def ready() -> bool:
        m = cluster.metrics()
        return all(m.get(f'sor_md_updates_total{{venue="{v}"}}', 0) >= len(SYMBOLS) for v in ("LIT1", "LIT2"))
    assert poll_until(ready, T), cluster.metrics()


def test_collar_reject_and_an_inside_order_routed(cluster: Cluster, oms: SimOms) -> None:
    _books_in(cluster)
    before = cluster.metrics().get(REJECTS, 0)
    # The e2e market: mid 190.00, collar_bps 500 by default, so 199.50 is the edge.
    cl = oms.send_order("S4", "1", 100, price="200.00", tif="3")
    ans = oms.wait_answer(cl, "8", T)
    assert ans is not None, oms.answers(cl)
    assert (ans.get(EXEC_TYPE), ans.get(ORD_STATUS), ans.get(ORD_REJ_REASON)) == ("8", "8", "3")
    assert ans.get(TEXT) == "price collar: limit 200.00 is 5.3% above the NBBO mid 190.00 (collar_bps 500)"
    sell = oms.send_order("S4", "2", 100, price="180.00", tif="3")
    ans = oms.wait_answer(sell, "8", T)
    assert ans is not None and ans.get(TEXT) == \
        "price collar: limit 180.00 is 5.3% below the NBBO mid 190.00 (collar_bps 500)"
    assert poll_until(lambda: cluster.metrics().get(REJECTS, 0) == before + 2, T), cluster.metrics()

    inside = oms.send_order("S4", "1", 100, price="199.50", tif="3")
    assert oms.wait_done(inside, T)
    reps = oms.reports(inside)
    check_order(inside, reps)
    assert (reps[-1].get(ORD_STATUS), reps[-1].get(CUM_QTY)) == ("2", "100")


def test_market_order_routed_within_the_collar(cluster: Cluster, oms: SimOms) -> None:
    _books_in(cluster)
    cl = oms.send_order("S5", "1", 150)  # market
    assert oms.wait_done(cl, T)
    reps = oms.reports(cl)
    check_order(cl, reps)
    assert (reps[-1].get(ORD_STATUS), reps[-1].get(CUM_QTY)) == ("2", "150")
    assert all(float(r.get(LAST_PX)) <= 199.50 for r in reps if r.get(EXEC_TYPE) == "F")
