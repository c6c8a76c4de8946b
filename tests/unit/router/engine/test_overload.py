"""The engine's half of back-pressure: it obeys ``OverloadChanged``.

While the gate is on, a new parent is rejected at once with Text naming
the measure, its value and its limit, counted by reason; cancels still go
through; after the gate clears parents are routed again. While the inbox
is backed up (``backlog``), an ack or status deadline that falls due waits
another ack timeout instead of canceling the child. Event times only: no
wall clock anywhere."""

from __future__ import annotations

from router.domain.commands import CancelChild, QueryChildStatus, RejectOrder, ReportToOms, SendChildOrder
from router.domain.events import OverloadChanged, Restored
from router.domain.types import ExecType, OrdRejReason, OrdStatus
from tests.unit.router.engine.test_core import ACK_TIMEOUT_NS, Harness, of, one

INBOX = "inbox age 35.2 ms over 20 ms"
ACK = "venue LIT1 ack time 73.0 ms over 50 ms (median of its last 8 answers)"


def _overload(h: Harness, on: bool, *, measure: str = "inbox_age", reason: str = INBOX,
              backlog: bool | None = None) -> None:
    ev = OverloadChanged(on=on, measure=measure if on else "", reason=reason if on else "",
                         backlog=(measure == "inbox_age") if backlog is None and on else bool(backlog),
                         ts_ns=h.tick())
    assert h._run(h.engine.handle(ev).commands) == []


def test_a_parent_while_overloaded_is_rejected_with_the_measure_named() -> None:
    h = Harness()
    _overload(h, True)
    out = h.new("c1", 100)
    rej = one(out, RejectOrder)
    assert len(out) == 1 and not of(out, SendChildOrder)
    assert rej.text == "router overloaded: inbox age 35.2 ms over 20 ms"
    assert rej.reason is OrdRejReason.OTHER and rej.order_id == "NONE"
    assert h.metric("sor_order_rejects_total", reason="overloaded") == 1
    assert h.metric("sor_order_rejects_total", reason="other") == 0, "told apart from other rejects"
    assert h.metric("sor_overloaded") == 1
    assert h.metric("sor_overload_trips_total", measure="inbox_age") == 1
    # The ClOrdID is spent like any rejected one.
    assert one(h.new("c1", 100), RejectOrder).text == "duplicate ClOrdID 'c1'"


def test_the_parent_after_the_gate_clears_is_routed() -> None:
    h = Harness()
    _overload(h, True, measure="ack_time", reason=ACK)
    assert one(h.new("c1", 100), RejectOrder).text == f"router overloaded: {ACK}"
    _overload(h, False)
    assert h.metric("sor_overloaded") == 0
    out = h.new("c2", 100)
    assert one(out, SendChildOrder).venue == "DARK1"
    assert one(out, ReportToOms).exec_type is ExecType.NEW
    assert h.metric("sor_order_rejects_total", reason="overloaded") == 1
    assert h.metric("sor_overload_trips_total", measure="ack_time") == 1


def test_a_change_of_measure_while_on_is_one_trip_and_names_the_new_measure() -> None:
    h = Harness()
    _overload(h, True, measure="ack_time", reason=ACK)
    _overload(h, True, measure="inbox_age", reason=INBOX)
    assert one(h.new("c1"), RejectOrder).text == f"router overloaded: {INBOX}"
    assert h.metric("sor_overload_trips_total", measure="ack_time") == 1
    assert h.metric("sor_overload_trips_total", measure="inbox_age") == 0


def test_cancels_still_go_through_while_overloaded() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    _overload(h, True)
    out = h.cancel("x1", "c1")
    assert one(out, ReportToOms).exec_type is ExecType.PENDING_CANCEL
    assert one(out, CancelChild).child_id == dark
    done = h.expire(dark)
    assert one(done, ReportToOms).ord_status is OrdStatus.CANCELED


def test_a_restore_starts_with_the_gate_off() -> None:
    """The crashed process's gate died with it; the new driver's starts off."""
    h = Harness()
    _overload(h, True)
    assert h.engine.handle(Restored(id_gap=1000, ts_ns=h.tick())).commands == []
    assert h.engine.overload is None and h.metric("sor_overloaded") == 0
    assert of(h.new("c1"), SendChildOrder)


# ------------------------------------------------------------ ack deadlines


def test_an_ack_deadline_during_a_backlog_waits_instead_of_canceling() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    _overload(h, True)
    assert h.timer(deadline) == [], "the ack may be queued unread behind the backlog"
    assert h.engine.children[dark].state is OrdStatus.PENDING_NEW
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 0
    assert h.metric("sor_ack_timeouts_deferred_total") == 1
    assert h.engine.next_deadline_ns() == deadline + ACK_TIMEOUT_NS
    # The queued ack reaches the engine: nothing was canceled.
    assert h.ack(dark) == []
    _overload(h, False)
    assert h.engine.children[dark].state is OrdStatus.NEW
    assert not of(h.out, CancelChild)


def test_an_ack_overload_alone_does_not_defer_and_a_clear_backlog_times_out_again() -> None:
    """A slow venue is the venue's problem: only the router's own backlog
    defers. And a child deferred once whose ack never comes is canceled at
    its next deadline once the backlog has cleared."""
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    _overload(h, True)
    h.timer(deadline)
    _overload(h, True, measure="ack_time", reason=ACK)  # the inbox cleared; a venue is still slow
    assert h.engine.overload is not None and not h.engine.overload.backlog
    out = h.timer(deadline + ACK_TIMEOUT_NS)
    assert one(out, CancelChild).child_id == dark
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 1


def test_a_deferred_ack_deadline_keeps_the_slices_own_expiry() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    child = h.engine.children[dark]
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    child.expire_ns = deadline + ACK_TIMEOUT_NS // 2  # as a slice with timeout_ms would have
    _overload(h, True)
    assert h.timer(deadline) == []
    assert h.engine.next_deadline_ns() == child.expire_ns, "deferred no further than the slice's expiry"
    out = h.timer(child.expire_ns)
    assert one(out, CancelChild).child_id == dark
    assert h.metric("sor_venue_anomalies_total", kind="ack_timeout") == 0, "its expiry is routine"


def test_a_status_question_during_a_backlog_waits_too() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)  # resting: no ack deadline, so the next timer is the status question's
    h.session("DARK1", False)
    assert dark in [q.child_id for q in of(h.session("DARK1", True), QueryChildStatus)]
    due = h.engine.next_timer_ns()
    assert due is not None
    _overload(h, True)
    assert h.timer(due) == []
    assert h.metric("sor_venue_anomalies_total", kind="status_timeout") == 0
    assert h.metric("sor_ack_timeouts_deferred_total") == 1
    assert h.engine.next_timer_ns() == due + ACK_TIMEOUT_NS
    assert h.status(dark, OrdStatus.NEW) == []  # the queued answer arrives: nothing canceled
    assert h.engine.children[dark].state is OrdStatus.NEW and h.engine.next_timer_ns() is None


def test_the_event_round_trips_through_the_journal_encoding() -> None:
    from router.journal import records

    for ev in (OverloadChanged(on=True, measure="inbox_age", reason=INBOX, backlog=True, ts_ns=5),
               OverloadChanged(on=False, ts_ns=6)):
        assert records.decode_event(records.encode(ev)) == ev


def test_a_backlog_without_the_gate_on_takes_parents_and_still_defers() -> None:
    """router.overload.enabled = false: the driver still says when its inbox
    is behind; nothing is refused, ack deadlines still wait."""
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    deadline = h.engine.next_deadline_ns()
    assert deadline is not None
    ev = OverloadChanged(on=False, measure="inbox_age", reason=INBOX, backlog=True, ts_ns=h.tick())
    assert h.engine.handle(ev).commands == []
    assert of(h.new("c2", 100), SendChildOrder), "taken"
    assert h.metric("sor_overloaded") == 0
    assert h.timer(deadline) == []
    assert h.engine.children[dark].state is OrdStatus.PENDING_NEW
    assert h.engine.handle(OverloadChanged(on=False, ts_ns=h.tick())).commands == []
    assert dark in [c.child_id for c in of(h.timer(deadline + ACK_TIMEOUT_NS), CancelChild)]


def test_a_cancel_watchdog_during_a_backlog_waits_instead_of_asking_again() -> None:
    h = Harness()
    dark = one(h.new("c1", 100), SendChildOrder).child_id
    h.ack(dark)
    h.cancel("x1", "c1")
    due = h.engine.next_deadline_ns()
    assert due is not None
    _overload(h, True)
    assert h.timer(due) == [], "the venue's answer may be queued unread"
    assert h.metric("sor_venue_anomalies_total", kind="cancel_timeout") == 0
    assert h.engine.next_deadline_ns() == due + ACK_TIMEOUT_NS
    _overload(h, False)
    assert one(h.timer(due + ACK_TIMEOUT_NS), CancelChild).child_id == dark, "then it asks again"
