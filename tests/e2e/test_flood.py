"""A flood of NewOrderSingles from one OMS session through the real daemon,
both drivers, the default back-pressure and throttle settings: every parent
gets an answer and ends; the ones the router refuses are rejected with a
Text that says why (the back-pressure gate, "router overloaded: <measure>
<value> over <limit>", or the session's message throttle); the router
cancels none of its own children for want of reading their acks (the sim
venues ack at once); the ER invariants hold and every share the venues
filled reached the OMS. Which mechanism refuses how many depends on the
machine's speed, so only the kinds are checked, never the counts or times
(``sor bench --flood`` prints those)."""

from __future__ import annotations

import re

from fix.codec import EXEC_TYPE, LAST_QTY, TEXT
from sim.flood import flood_orders, send_flood, wait_answered
from sim.harness import Cluster, poll_until
from sim.invariants import check_all
from sim.oms import SimOms
from tests.e2e.conftest import SYMBOLS

PARENTS = 1500
WINDOW_NS = 300_000_000
"""5,000 parents/s offered: ten times the default throttle of 500/s."""
T = 60.0

OVERLOADED = re.compile(r"router overloaded: (inbox age \d+\.\d ms over 20 ms"
                        r"|venue \w+ ack time \d+\.\d ms over 50 ms \(median of its last \d+ answers\))")
THROTTLED = re.compile(r"message throttle: more than 500 new orders, cancels and replaces in one second "
                       r"from session \S+ \(risk\.max_msgs_per_s\)")


def test_a_flood_is_answered_whole_and_no_child_is_canceled_for_a_slow_read(cluster: Cluster, oms: SimOms) -> None:
    before = cluster.metrics()
    symbols = [s for s in cluster.cfg.symbols if s.symbol in SYMBOLS[5:]]
    cls, _ = send_flood(oms, flood_orders(symbols, PARENTS), WINDOW_NS, qty=1, freeze=False)
    assert wait_answered(oms, cls, T), f"{sum(not oms.is_done(c) for c in cls)} parents never ended"

    accepted = rejected = 0
    kinds = {"overloaded": 0, "throttle": 0}
    filled = 0
    for cl in cls:
        reps = oms.reports(cl)
        first = reps[0]
        if first.get(EXEC_TYPE) == "8":
            rejected += 1
            text = first.get(TEXT)
            if OVERLOADED.fullmatch(text):
                kinds["overloaded"] += 1
            else:
                assert THROTTLED.fullmatch(text), text
                kinds["throttle"] += 1
            assert len(reps) == 1, "a rejected parent gets the reject alone"
        else:
            accepted += 1
            assert first.get(EXEC_TYPE) == "0", first.fields
            filled += sum(int(r.get(LAST_QTY)) for r in reps if r.get(EXEC_TYPE) == "F")
    print(f"flood of {PARENTS}: {accepted} accepted, {rejected} rejected {kinds}, {filled} shares filled")
    assert accepted > 0
    assert rejected >= PARENTS - 500 - 1, "one session cannot get more than 500/s past the throttle"
    check_all({cl: oms.reports(cl) for cl in cls})

    after = cluster.metrics()
    key = 'sor_venue_anomalies_total{kind="ack_timeout"}'
    assert after.get(key, 0) == before.get(key, 0), "a child canceled because its ack was read too late"
    assert after.get('sor_order_rejects_total{reason="overloaded"}', 0) \
        - before.get('sor_order_rejects_total{reason="overloaded"}', 0) == kinds["overloaded"]
    # No share lost: what the venues filled for the router is what the OMS was told.
    assert poll_until(lambda: sum(f["qty"] for f in cluster.venue_fills()) >= filled, T)
    assert sum(f["qty"] for f in cluster.venue_fills()) == filled
