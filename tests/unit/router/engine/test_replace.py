"""Parent cancel/replace (35=G) in the engine: quantity down, quantity up,
price changes, the race with fills, refusals, and the controls.

Every step runs through ``Harness._run``, which checks the OMS-view and
engine invariants (no over-fill, CumQty + LeavesQty = OrderQty, children in
flight within the leaves, the parent's state is what the OMS was told).
The randomized interleavings are in ``test_core.EngineMachine``.
"""

from __future__ import annotations

import msgspec

from router.config import parse_config
from router.domain.commands import CancelChild, RejectCancel, ReportToOms, SendChildOrder
from router.domain.events import KillSwitchEngaged, OverloadChanged
from router.domain.plan import Slice, Wave
from router.domain.types import CxlRejReason, ExecType, OrdType, Side
from router.domain.types import OrdStatus as S
from tests.unit.router.engine.test_core import (
    CONFIG_TOML,
    DAY,
    IOC,
    PX,
    Harness,
    _Planner,
    of,
    one,
)


def _reports(out: list, kind: ExecType) -> list[ReportToOms]:
    return [r for r in of(out, ReportToOms) if r.exec_type is kind]


def _resting(h: Harness, cl: str = "c1", qty: int = 100) -> str:
    """A DAY limit parent whose IOC waves found nothing: its child rests on LIT1."""
    cid = one(h.new(cl, qty), SendChildOrder).child_id
    for _ in range(3):
        cid = one(h.expire(cid), SendChildOrder).child_id
    child = h.engine.children[cid]
    assert (child.venue, child.tif) == ("LIT1", DAY)
    h.ack(cid)
    return cid


def _replaced(h: Harness, qty: int) -> str:
    """The resting parent c1 replaced down to ``qty`` as r1; its new resting child."""
    rest = _resting(h)
    h.replace("r1", "c1", qty)
    out = h.expire(rest)
    assert _reports(out, ExecType.REPLACED)
    again = one(out, SendChildOrder)
    assert (again.venue, again.qty, again.tif) == ("LIT1", qty, DAY)
    h.ack(again.child_id)
    return again.child_id


# ------------------------------------------------------------ quantity down


def test_quantity_down_within_what_is_working_is_replaced_at_once() -> None:
    # Children of at most 50: the 100-share parent works 50 at a time.
    cfg = parse_config(CONFIG_TOML + 'final_action = "cancel"\nmax_child_qty = 50\n', "test.toml")
    h = Harness(cfg=cfg)
    dark = one(h.new("c1", 100), SendChildOrder)
    assert dark.qty == 50
    h.fill(dark.child_id, 10)
    out = h.replace("r1", "c1", 80)
    pending, replaced = of(out, ReportToOms)
    assert (pending.exec_type, pending.ord_status, pending.cl_ord_id, pending.orig_cl_ord_id) == (
        ExecType.PENDING_REPLACE, S.PENDING_REPLACE, "r1", "c1")
    assert (pending.order_qty, pending.leaves_qty) == (100, 90), "pending: still the old terms"
    assert (replaced.exec_type, replaced.ord_status, replaced.cl_ord_id, replaced.orig_cl_ord_id) == (
        ExecType.REPLACED, S.PARTIALLY_FILLED, "r1", "c1")
    assert (replaced.order_qty, replaced.cum_qty, replaced.leaves_qty) == (80, 10, 70)
    assert of(out, CancelChild) == [], "40 open fits in the 70 left: the child keeps its place"
    # The next wave works what the child leaves of the new quantity.
    assert one(h.expire(dark.child_id), SendChildOrder).qty == 50


def test_quantity_down_below_what_is_working_pulls_the_newest_children_first() -> None:
    h = Harness("rest")
    rest = _resting(h)
    out = h.replace("r1", "c1", 60)
    assert one(out, CancelChild).child_id == rest
    assert _reports(out, ExecType.REPLACED) == []
    assert h.parent("c1").state is S.PENDING_REPLACE
    out = h.expire(rest)
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert (replaced.order_qty, replaced.leaves_qty, replaced.ord_status) == (60, 60, S.NEW)
    # A decrease keeps the plan: the waterfall goes on where it was (it
    # rested already, so it rests the new quantity on LIT1 again).
    again = one(out, SendChildOrder)
    assert (again.venue, again.qty, again.price_ticks) == ("LIT1", 60, PX)


def test_fills_that_cross_a_quantity_decrease_are_booked_and_the_rest_fits() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 60)
    fill = one(h.fill(rest, 50), ReportToOms)
    # Booked against the old terms while the replace is pending.
    assert (fill.ord_status, fill.order_qty, fill.cum_qty, fill.leaves_qty) == (S.PENDING_REPLACE, 100, 50, 50)
    out = h.expire(rest)
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert (replaced.order_qty, replaced.cum_qty, replaced.leaves_qty, replaced.ord_status) == (
        60, 50, 10, S.PARTIALLY_FILLED)
    assert one(out, SendChildOrder).qty == 10


def test_fills_beyond_the_new_quantity_refuse_the_replace_and_keep_the_old_terms() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 60)
    # Refused the moment the fill makes it impossible, before the venue
    # confirms the child's cancel.
    rej = one(h.fill(rest, 80), RejectCancel)
    assert (rej.response_to_replace, rej.cl_ord_id, rej.orig_cl_ord_id, rej.reason, rej.ord_status) == (
        True, "r1", "c1", CxlRejReason.TOO_LATE_TO_CANCEL, S.PARTIALLY_FILLED)
    assert "80 filled" in rej.text and "60" in rej.text
    p = h.parent("c1")
    assert (p.qty, p.cl_ord_id, p.leaves_qty) == (100, "c1", 20)
    # The order goes on under its old terms: it rests again for the 20 left.
    again = one(h.expire(rest), SendChildOrder)
    assert (again.venue, again.qty, again.tif) == ("LIT1", 20, DAY)


def test_a_fill_of_everything_during_the_replace_answers_too_late() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 60)
    out = h.fill(rest, 100)
    trade = one(_reports(out, ExecType.TRADE), ReportToOms)
    assert (trade.ord_status, trade.cum_qty) == (S.FILLED, 100)
    rej = one(out, RejectCancel)
    assert (rej.response_to_replace, rej.reason, rej.ord_status) == (True, CxlRejReason.TOO_LATE_TO_CANCEL,
                                                                     S.FILLED)
    assert out.index(trade) < out.index(rej)


def test_quantity_down_to_what_is_filled_ends_the_order_filled() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.fill(rest, 40)
    out = h.replace("r1", "c1", 40)
    assert one(out, CancelChild).child_id == rest
    out = h.expire(rest)
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert (replaced.ord_status, replaced.order_qty, replaced.cum_qty, replaced.leaves_qty) == (
        S.FILLED, 40, 40, 0)
    assert of(out, SendChildOrder) == []
    assert h.metric("sor_parent_orders_total", outcome="filled") == 1


def test_quantity_below_what_is_filled_is_refused() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.fill(rest, 40)
    rej = one(h.replace("r1", "c1", 30), RejectCancel)
    assert (rej.response_to_replace, rej.reason, rej.ord_status) == (True, CxlRejReason.OTHER,
                                                                     S.PARTIALLY_FILLED)
    assert "OrderQty 30 is below the 40 already filled" in rej.text
    assert h.engine.children[rest].state is S.PARTIALLY_FILLED, "nothing was pulled"


# -------------------------------------------------------------- quantity up


def test_quantity_up_pulls_the_resting_child_and_routes_the_whole_residual_again() -> None:
    h = Harness("rest")
    rest = _resting(h)
    out = h.replace("r1", "c1", 150)
    assert one(out, CancelChild).child_id == rest
    out = h.expire(rest)
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert (replaced.order_qty, replaced.leaves_qty, replaced.ord_status) == (150, 150, S.NEW)
    # The plan runs again from its first wave, for all 150.
    child = one(out, SendChildOrder)
    assert (child.venue, child.qty, child.tif) == ("DARK1", 150, IOC)


def test_quantity_up_while_an_ioc_child_works_is_replaced_at_once() -> None:
    h = Harness("cancel")
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    out = h.replace("r1", "c1", 300)
    assert of(out, CancelChild) == [] and of(out, SendChildOrder) == []
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert (replaced.order_qty, replaced.leaves_qty) == (300, 300)
    h.fill(dark, 40)
    # The IOC child ends; the plan starts over for the 260 left.
    child = one(h.expire(dark), SendChildOrder)
    assert (child.venue, child.qty) == ("DARK1", 260)


# -------------------------------------------------------------------- price


def test_price_down_on_a_buy_pulls_children_beyond_it_and_routes_at_the_new_limit() -> None:
    h = Harness("rest")
    rest = _resting(h)
    out = h.replace("r1", "c1", 100, price=PX - 5)
    assert one(out, CancelChild).child_id == rest
    out = h.expire(rest)
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert replaced.price_ticks == PX - 5
    child = one(out, SendChildOrder)
    assert (child.venue, child.price_ticks) == ("DARK1", PX - 5)
    # Every later wave, the resting one included, is at the new limit.
    for _ in range(3):
        child = one(h.expire(child.child_id), SendChildOrder)
        assert child.price_ticks == PX - 5
    assert child.tif is DAY


def test_price_up_on_a_sell_that_an_ioc_child_is_within_keeps_it() -> None:
    h = Harness("cancel")
    dark = one(h.new("c1", 100, side=Side.SELL), SendChildOrder).child_id
    out = h.replace("r1", "c1", 100, price=PX - 3, side=Side.SELL)
    assert of(out, CancelChild) == [], "a sell at PX is within a limit of PX - 3"
    assert one(_reports(out, ExecType.REPLACED), ReportToOms).price_ticks == PX - 3
    child = one(h.expire(dark), SendChildOrder)
    assert child.price_ticks == PX - 3


def test_limit_to_market_routes_market_children() -> None:
    h = Harness("rest")
    rest = _resting(h)
    out = h.replace("r1", "c1", 100, ord_type=OrdType.MARKET)
    assert one(out, CancelChild).child_id == rest
    out = h.expire(rest)
    replaced = one(_reports(out, ExecType.REPLACED), ReportToOms)
    assert (replaced.ord_type, replaced.price_ticks) == (OrdType.MARKET, None)
    child = one(out, SendChildOrder)
    assert child.ord_type is OrdType.MARKET
    # A market parent rests nowhere: the waterfall ends after its IOC waves.
    for _ in range(2):
        child = one(h.expire(child.child_id), SendChildOrder)
    out = h.expire(child.child_id)
    assert of(out, SendChildOrder) == []
    assert one(out, ReportToOms).ord_status is S.CANCELED


# ------------------------------------------------------------ the ClOrdID chain


def test_the_replaced_order_is_canceled_by_its_new_clordid_and_answers_with_it() -> None:
    h = Harness("rest")
    rest = _replaced(h, 90)
    out = h.cancel("x1", "r1")
    pending = one(out, ReportToOms)
    assert (pending.cl_ord_id, pending.orig_cl_ord_id, pending.order_qty) == ("x1", "r1", 90)
    assert one(out, CancelChild).child_id == rest
    done = one(h.expire(rest), ReportToOms)
    assert (done.ord_status, done.cl_ord_id, done.orig_cl_ord_id) == (S.CANCELED, "x1", "r1")


def test_a_second_replace_chains_on_the_first() -> None:
    h = Harness("rest")
    rest = _replaced(h, 90)
    h.replace("r2", "r1", 80)
    replaced = one(_reports(h.expire(rest), ExecType.REPLACED), ReportToOms)
    assert (replaced.cl_ord_id, replaced.orig_cl_ord_id, replaced.order_qty) == ("r2", "r1", 80)
    assert h.parent("c1").prior_cl_ord_ids == ["c1", "r1"]


def test_a_cancel_naming_the_superseded_clordid_still_finds_the_order() -> None:
    h = Harness("rest")
    _replaced(h, 90)
    pending = one(h.cancel("x1", "c1"), ReportToOms)
    assert (pending.exec_type, pending.orig_cl_ord_id) == (ExecType.PENDING_CANCEL, "r1")


def test_clordids_of_a_finished_replaced_order_answer_too_late() -> None:
    h = Harness("rest")
    rest = _replaced(h, 90)
    h.fill(rest, 90)
    for orig in ("c1", "r1"):
        rej = one(h.replace(f"r-{orig}", orig, 95), RejectCancel)
        assert (rej.reason, rej.ord_status) == (CxlRejReason.TOO_LATE_TO_CANCEL, S.FILLED)


# ---------------------------------------------------------------- refusals


def test_refusals_name_their_reason_and_leave_the_order_alone() -> None:
    h = Harness("rest")
    rest = _resting(h)
    cases = [
        (h.replace("r1", "nope", 90), CxlRejReason.UNKNOWN_ORDER, "unknown order"),
        (h.replace("c1", "c1", 90), CxlRejReason.DUPLICATE_CLORDID, "duplicate ClOrdID"),
        (h.replace("r2", "c1", 90, side=Side.SELL), CxlRejReason.OTHER, "Symbol and Side cannot change"),
        (h.replace("r3", "c1", 90, symbol="LOTS"), CxlRejReason.OTHER, "Symbol and Side cannot change"),
        (h.replace("r4", "c1", 90, error="OrderQty 15 is not a multiple of the lot size 100"), CxlRejReason.OTHER,
         "replace refused: OrderQty 15 is not a multiple"),
    ]
    for out, reason, text in cases:
        rej = one(out, RejectCancel)
        assert len(out) == 1
        assert rej.response_to_replace and rej.reason is reason and text in rej.text, rej
    assert h.engine.children[rest].state is S.NEW
    assert h.metric("sor_cancel_rejects_total", reason="other") == 3


def test_one_request_at_a_time() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 60)
    rej = one(h.replace("r2", "c1", 50), RejectCancel)
    assert (rej.reason, rej.ord_status) == (CxlRejReason.ALREADY_PENDING, S.PENDING_REPLACE)
    again = one(h.expire(rest), SendChildOrder)
    # Answered: a second replace is taken now.
    out = h.replace("r3", "r1", 40)
    assert one(out, CancelChild).child_id == again.child_id
    rej = one(h.replace("r4", "r1", 30), RejectCancel)
    assert (rej.reason, rej.ord_status) == (CxlRejReason.ALREADY_PENDING, S.PENDING_REPLACE)


def test_a_cancel_wins_over_a_pending_replace() -> None:
    # The replace may wait on a venue that is down: the OMS can always
    # take its order off.
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 60, price=PX - 5)
    h.session("LIT1", False)
    out = h.cancel("x1", "c1")
    rej, pending = of(out, RejectCancel)[0], one(out, ReportToOms)
    assert (rej.response_to_replace, rej.cl_ord_id, rej.ord_status) == (True, "r1", S.NEW)
    assert "being canceled (ClOrdID x1)" in rej.text
    assert out.index(rej) < out.index(pending)
    assert (pending.exec_type, pending.cl_ord_id, pending.orig_cl_ord_id) == (ExecType.PENDING_CANCEL, "x1", "c1")
    # The child's cancel is out already; its answer ends the order.
    assert of(out, CancelChild) == []
    done = one(h.expire(rest), ReportToOms)
    assert (done.ord_status, done.cl_ord_id) == (S.CANCELED, "x1")


def test_a_venue_that_keeps_the_child_refuses_the_replace() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 100, price=PX - 5)
    out = h.cancel_rejected(rest, "order is locked")
    rej = one(out, RejectCancel)
    assert (rej.response_to_replace, rej.cl_ord_id, rej.ord_status) == (True, "r1", S.NEW)
    assert f"refused to cancel child {rest}" in rej.text
    p = h.parent("c1")
    assert (p.price_ticks, p.cl_ord_id, p.state) == (PX, "c1", S.NEW)
    assert h.engine.children[rest].state is S.NEW


# ------------------------------------------------------- the router's own cancels


def test_a_kill_switch_during_a_replace_refuses_it_then_cancels_the_order() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.replace("r1", "c1", 60)
    out = h._run(h.engine.handle(KillSwitchEngaged(scope_kind="all", scope="", who="ops", reason="test",
                                                   ts_ns=h.tick())).commands)
    rej = one(out, RejectCancel)
    assert (rej.response_to_replace, rej.cl_ord_id) == (True, "r1")
    assert "kill switch" in rej.text
    done = one(h.expire(rest), ReportToOms)
    assert done.ord_status is S.CANCELED and "kill switch" in done.text


def test_a_shutdown_during_a_replace_refuses_it_then_cancels_the_order() -> None:
    h = Harness("rest")
    rest = _resting(h)
    h.fill(rest, 10)
    h.replace("r1", "c1", 150)
    out = h._run(h.engine.cancel_all("router shutting down", h.tick()))
    rej = one(out, RejectCancel)
    assert (rej.response_to_replace, rej.ord_status) == (True, S.PARTIALLY_FILLED)
    done = one(h.expire(rest), ReportToOms)
    assert (done.ord_status, done.order_qty, done.cum_qty) == (S.CANCELED, 100, 10)


def test_a_replace_that_adds_risk_is_refused_under_a_kill_switch_one_that_reduces_it_is_not() -> None:
    h = Harness("rest")
    _resting(h)
    h._run(h.engine.handle(KillSwitchEngaged(scope_kind="session", scope="OMS2", who="ops", reason="test",
                                             ts_ns=h.tick())).commands)
    # A kill of another session leaves this order alone; one of its own
    # session would have canceled it, so a symbol kill engaged while it
    # is... canceled too. What is left to test: the halt flag.
    h.engine.halted = "operator halt"
    rej = one(h.replace("r1", "c1", 150), RejectCancel)
    assert "trading halted" in rej.text
    rej = one(h.replace("r2", "c1", 100, price=PX + 1), RejectCancel)
    assert "trading halted" in rej.text
    out = h.replace("r3", "c1", 50)
    assert _reports(out, ExecType.PENDING_REPLACE)


# ---------------------------------------------------------------- risk


def _risk_harness(extra: str) -> Harness:
    cfg = parse_config(CONFIG_TOML + 'final_action = "rest"\nrest_venue = "LIT1"\n' + extra, "test.toml")
    return Harness("rest", cfg=cfg)


def test_a_replace_up_to_the_max_order_qty_passes_and_one_share_more_is_refused() -> None:
    h = _risk_harness("[risk]\nmax_order_qty = 500\n")
    _resting(h)
    rej = one(h.replace("r1", "c1", 501), RejectCancel)
    assert rej.response_to_replace and "max order qty: order qty 501 exceeds the limit of 500" in rej.text
    assert h.metric("sor_risk_rejects_total", limit="max_order_qty", order="replace") == 1
    assert _reports(h.replace("r2", "c1", 500), ExecType.PENDING_REPLACE)


def test_credit_follows_the_replaced_quantity() -> None:
    h = _risk_harness("")
    rest = _resting(h)
    before = h.engine.risk.credit_used("OMS")
    h.replace("r1", "c1", 60)
    h.expire(rest)
    assert h.engine.risk.credit_used("OMS") == before * 0.6
    assert msgspec.json.encode(h.engine.risk.status())  # still serialisable


def test_while_overloaded_a_replace_that_adds_risk_is_refused_and_a_cut_is_taken() -> None:
    h = Harness("rest")
    _resting(h)
    h._run(h.engine.handle(OverloadChanged(on=True, measure="inbox_age", reason="inbox age 35.0 ms over 20 ms",
                                           backlog=True, ts_ns=h.tick())).commands)
    rej = one(h.replace("r1", "c1", 150), RejectCancel)
    assert rej.text == ("router overloaded: inbox age 35.0 ms over 20 ms: replaces that add risk refused until "
                        "it clears")
    assert _reports(h.replace("r2", "c1", 50), ExecType.PENDING_REPLACE)


def test_a_replace_refused_by_one_venue_resends_what_the_other_gave_up() -> None:
    # One wave resting 60 on LIT1 and 40 on LIT2; a new price pulls both;
    # LIT1 cancels, LIT2 keeps its child. The replace is refused, and once
    # LIT2's child is over the wave goes again for what is left.
    planner = _Planner((Wave(slices=(Slice(venue="LIT1", weight=0.6, tif=DAY, limit_ticks=PX),
                                     Slice(venue="LIT2", weight=0.4, tif=DAY, limit_ticks=PX))),))
    h = Harness("cancel", planner=planner)
    a, b = of(h.new("c1", 100), SendChildOrder)
    h.ack(a.child_id)
    h.ack(b.child_id)
    h.replace("r1", "c1", 100, price=PX - 5)
    h.expire(a.child_id)
    rej = one(h.cancel_rejected(b.child_id), RejectCancel)
    assert rej.response_to_replace and "refused to cancel" in rej.text
    out = h.fill(b.child_id, 40)
    again = of(out, SendChildOrder)
    assert sum(c.qty for c in again) == 60, "the 60 LIT1 gave up are worked again"
    assert {c.price_ticks for c in again} == {PX}, "under the old terms"


def test_a_replace_while_the_router_cancels_the_order_says_so() -> None:
    h = Harness("rest")
    _resting(h)
    h._run(h.engine.cancel_all("router shutting down", h.tick()))
    rej = one(h.replace("r1", "c1", 50), RejectCancel)
    assert (rej.reason, rej.ord_status) == (CxlRejReason.OTHER, S.NEW), "the OMS was told nothing else"
    assert rej.text == "replace refused: the router is canceling this order (router shutting down)"
