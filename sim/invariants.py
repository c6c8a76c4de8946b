"""The execution-report invariants of DESIGN.md, checked on what an OMS saw.

Used by the demo (it prints the verdict) and by every end-to-end test.
"""

from __future__ import annotations

from decimal import Decimal

from fix.codec import (
    AVG_PX,
    CUM_QTY,
    EXEC_ID,
    EXEC_TYPE,
    LAST_PX,
    LAST_QTY,
    LEAVES_QTY,
    ORD_STATUS,
    ORDER_ID,
    ORDER_QTY,
)
from sim.oms import TERMINAL, Received


class InvariantError(AssertionError):
    pass


def check_order(cl_ord_id: str, reports: list[Received], seen_exec_ids: set[str] | None = None) -> None:
    """Raise InvariantError at the first ER that breaks an invariant.

    - CumQty + LeavesQty = OrderQty until a terminal state;
    - CumQty never decreases and never exceeds OrderQty;
    - CumQty equals the sum of LastQty of the fills so far;
    - AvgPx is the quantity-weighted mean of the fill prices;
    - ExecIDs are unique (across all orders when ``seen_exec_ids`` is shared);
    - nothing follows a terminal report.
    """
    seen = seen_exec_ids if seen_exec_ids is not None else set()
    cum_prev = 0
    filled = 0
    notional = Decimal(0)
    terminal = False
    for i, r in enumerate(reports):
        where = f"order {cl_ord_id} ER #{i} ({r.get(EXEC_TYPE)}/{r.get(ORD_STATUS)})"
        if r.msg_type != "8":
            continue
        exec_id = r.get(EXEC_ID)
        if not exec_id or exec_id in seen:
            raise InvariantError(f"{where}: ExecID {exec_id!r} missing or repeated")
        seen.add(exec_id)
        if r.get(ORDER_ID) == "NONE":
            # A request rejected at entry (possibly a duplicate reusing this
            # ClOrdID): not part of this order's story, and nothing was done.
            if r.get(ORD_STATUS) != "8" or r.get(CUM_QTY, "0") != "0" or r.get(LEAVES_QTY, "0") != "0":
                raise InvariantError(f"{where}: an entry reject must be 39=8 with nothing done")
            continue
        if terminal:
            raise InvariantError(f"{where}: report after a terminal state")
        qty = Decimal(r.get(ORDER_QTY, "0"))
        cum = Decimal(r.get(CUM_QTY, "0"))
        leaves = Decimal(r.get(LEAVES_QTY, "0"))
        status = r.get(ORD_STATUS)
        if r.get(EXEC_TYPE) == "F":
            last = Decimal(r.get(LAST_QTY, "0"))
            if last <= 0:
                raise InvariantError(f"{where}: fill with LastQty {last}")
            filled += int(last)
            notional += last * Decimal(r.get(LAST_PX, "0"))
        if cum < cum_prev:
            raise InvariantError(f"{where}: CumQty went down {cum_prev} -> {cum}")
        if cum > qty:
            raise InvariantError(f"{where}: CumQty {cum} above OrderQty {qty}")
        if cum != filled:
            raise InvariantError(f"{where}: CumQty {cum} but fills sum to {filled}")
        if status in TERMINAL:
            terminal = True
            if leaves != 0:
                raise InvariantError(f"{where}: terminal with LeavesQty {leaves}")
        elif cum + leaves != qty:
            raise InvariantError(f"{where}: CumQty {cum} + LeavesQty {leaves} != OrderQty {qty}")
        if filled:
            avg = Decimal(r.get(AVG_PX, "0"))
            want = notional / filled
            if abs(avg - want) > Decimal("1e-6"):
                raise InvariantError(f"{where}: AvgPx {avg} but fills average {want}")
        cum_prev = int(cum)


def check_all(reports_by_order: dict[str, list[Received]]) -> int:
    """Check every order; returns the number of ERs checked."""
    seen: set[str] = set()
    n = 0
    for cl, reps in reports_by_order.items():
        own = [r for r in reps if r.msg_type == "8"]
        check_order(cl, own, seen)
        n += len(own)
    return n
