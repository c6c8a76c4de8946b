"""Operator control in the engine: the kill switch by scope, its release,
and venues taken out of routing (``KillSwitchEngaged``,
``KillSwitchReleased``, ``VenueEnableChanged``).

Driven through ``Harness`` (tests/unit/router/engine/test_core.py), which
checks the engine's invariants and every report to the OMS after each step.
The waterfall is DARK1, LIT1, LIT2 (IOC each), then a DAY limit rests on LIT1.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from router.domain.commands import CancelChild, Command, RejectCancel, RejectOrder, ReportToOms, SendChildOrder
from router.domain.events import (
    EngineEvent,
    KillScope,
    KillSwitchEngaged,
    KillSwitchReleased,
    NewOrderReceived,
    VenueEnableChanged,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.types import ExecType, OrdRejReason, OrdStatus, OrdType, TimeInForce
from router.engine import Step
from router.journal import records
from tests.unit.router.engine.test_core import BUY, PX, T0, Harness, of, one

S = OrdStatus


def kill(h: Harness, kind: KillScope = "all", scope: str = "", who: str = "alice", reason: str = "drill"
         ) -> list[Command]:
    return h._run(h.engine.handle(KillSwitchEngaged(scope_kind=kind, scope=scope, who=who, reason=reason,
                                                    ts_ns=h.tick())).commands)


def resume(h: Harness, kind: KillScope = "all", scope: str = "", who: str = "bob") -> list[Command]:
    return h._run(h.engine.handle(KillSwitchReleased(scope_kind=kind, scope=scope, who=who,
                                                     ts_ns=h.tick())).commands)


def venue(h: Harness, name: str, enabled: bool, cancel: bool = False, who: str = "carol") -> list[Command]:
    return h._run(h.engine.handle(VenueEnableChanged(venue=name, enabled=enabled, cancel_working=cancel, who=who,
                                                     reason="maintenance", ts_ns=h.tick())).commands)


def resting(h: Harness, cl: str, qty: int = 100, **kw: object) -> str:
    """A DAY limit parent walked down the IOC waves to its resting child on
    LIT1 (acked); returns that child's id."""
    cid = one(h.new(cl, qty, **kw), SendChildOrder).child_id  # type: ignore[arg-type]
    for _ in range(3):
        h.ack(cid)
        nxt = one(h.expire(cid), SendChildOrder)
        cid = nxt.child_id
    h.ack(cid)
    child = h.engine.children[cid]
    assert (child.venue, child.tif.name) == ("LIT1", "DAY")
    return cid


def confirm_cancels(h: Harness, cmds: list[Command]) -> list[Command]:
    """Each venue confirms the cancels in ``cmds``."""
    out: list[Command] = []
    for c in of(cmds, CancelChild):
        out += h.expire(c.child_id)
    return out


def last_action(h: Harness):  # type: ignore[no-untyped-def]
    return h.engine.controls.actions[-1]


# ------------------------------------------------------------------ kill all


def test_kill_cancels_every_child_reports_the_parents_and_refuses_new_orders_until_resumed() -> None:
    h = Harness("rest")
    before = resting(h, "before")
    dark = one(h.new("ioc", 50), SendChildOrder)  # still working at DARK1, no ack yet
    out = kill(h, reason="runaway model")
    assert sorted(c.child_id for c in of(out, CancelChild)) == sorted([before, dark.child_id])
    assert not of(out, ReportToOms), "the OMS hears once the venues have confirmed"
    assert h.metric("sor_kill_switches", scope="all") == 1
    act = last_action(h)
    assert (act.action, act.who, act.ok, act.parents_canceled, act.child_cancels_sent) == ("kill", "alice", True, 2, 2)

    ends = confirm_cancels(h, out)
    reps = of(ends, ReportToOms)
    assert {(r.cl_ord_id, r.exec_type, r.ord_status) for r in reps} == {
        ("before", ExecType.CANCELED, S.CANCELED), ("ioc", ExecType.CANCELED, S.CANCELED)}
    assert all(r.text == "kill switch (all) by alice: runaway model" for r in reps)
    assert not h.open_children() and h.metric("sor_open_parents") == 0
    assert not of(ends, SendChildOrder), "no parent goes on to another wave"

    rej = one(h.new("after"), RejectOrder)
    assert rej.reason is OrdRejReason.EXCHANGE_CLOSED
    assert rej.text == "kill switch (all) by alice: runaway model: new orders refused until resumed"
    assert h.metric("sor_order_rejects_total", reason="exchange_closed") == 1

    assert resume(h) == []
    assert last_action(h).text == "kill switch (all) released by bob (engaged by alice)"
    assert h.metric("sor_kill_switches", scope="all") == 0
    assert one(h.new("again"), SendChildOrder).venue == "DARK1"


def test_cancel_from_the_oms_is_accepted_while_the_kill_cancels_its_order() -> None:
    h = Harness("rest")
    cid = resting(h, "p1")
    kill(h)
    out = h.cancel("x1", "p1")
    er = one(out, ReportToOms)
    assert (er.exec_type, er.ord_status, er.cl_ord_id, er.orig_cl_ord_id) == (
        ExecType.PENDING_CANCEL, S.PENDING_CANCEL, "x1", "p1")
    assert not of(out, CancelChild), "its child's cancel is already on the way"
    end = one(h.expire(cid), ReportToOms)
    assert (end.exec_type, end.ord_status, end.cl_ord_id, end.orig_cl_ord_id) == (
        ExecType.CANCELED, S.CANCELED, "x1", "p1")
    assert end.text == "kill switch (all) by alice: drill"
    # A second cancel of it is the usual "already pending" / "too late".
    assert one(h.cancel("x2", "p1"), RejectCancel).text.startswith("too late to cancel")


def test_cancel_from_the_oms_of_an_order_outside_the_kill_is_accepted() -> None:
    h = Harness("rest")
    lots = resting(h, "lots", 200, symbol="LOTS")
    kill(h, "symbol", "AAPL")
    out = h.cancel("x1", "lots")
    assert one(out, ReportToOms).exec_type is ExecType.PENDING_CANCEL
    assert one(out, CancelChild).child_id == lots
    end = one(h.expire(lots), ReportToOms)
    assert (end.ord_status, end.text) == (S.CANCELED, "canceled at OMS request")


def test_a_kill_whose_cancel_a_venue_refuses_sends_no_new_wave() -> None:
    h = Harness("rest")
    cid = one(h.new("p1"), SendChildOrder).child_id
    h.ack(cid)
    kill(h)
    assert not of(h.cancel_rejected(cid, "too late"), RejectCancel), "the OMS asked for no cancel"
    assert h.parent("p1").state is S.NEW
    # The venue ends the IOC: under the kill, the parent ends instead of
    # going on to LIT1.
    out = h.expire(cid)
    assert not of(out, SendChildOrder)
    end = one(out, ReportToOms)
    assert (end.ord_status, end.text) == (S.CANCELED, "kill switch (all) by alice: drill")


def test_a_second_kill_of_the_same_scope_changes_nothing_and_one_resume_lifts_it() -> None:
    h = Harness("rest")
    kill(h)
    assert kill(h, who="dave") == []
    assert h.metric("sor_kill_switches", scope="all") == 1
    assert last_action(h).ok and last_action(h).parents_canceled == 0
    assert h.engine.controls.kills[("all", "")].who == "alice", "the first kill's record stands"
    resume(h)
    assert one(h.new("p1"), SendChildOrder)


def test_resume_of_a_scope_not_in_force_is_refused_and_says_what_is() -> None:
    h = Harness("rest")
    kill(h, "symbol", "AAPL")
    assert resume(h) == []
    act = last_action(h)
    assert not act.ok and act.text == "no kill switch (all) in force (in force: symbol AAPL)"
    one(h.new("p1"), RejectOrder)


# -------------------------------------------------------------------- scopes


def test_symbol_kill_covers_that_symbol_only() -> None:
    h = Harness("rest")
    aapl = resting(h, "aapl")
    lots = resting(h, "lots", 200, symbol="LOTS")
    out = kill(h, "symbol", "AAPL")
    assert [c.child_id for c in of(out, CancelChild)] == [aapl]
    assert h.metric("sor_kill_switches", scope="symbol") == 1
    assert one(confirm_cancels(h, out), ReportToOms).text == "kill switch (symbol AAPL) by alice: drill"
    assert not h.engine.children[lots].is_terminal
    assert "kill switch (symbol AAPL)" in one(h.new("a2"), RejectOrder).text
    assert one(h.new("l2", 100, symbol="LOTS"), SendChildOrder).venue == "DARK1"
    resume(h, "symbol", "AAPL")
    assert one(h.new("a3"), SendChildOrder)


def test_session_kill_covers_that_oms_session_only() -> None:
    h = Harness("rest")
    one_ = resting(h, "a", session="OMS")
    two = resting(h, "b", session="OMS2")
    out = kill(h, "session", "OMS2")
    assert [c.child_id for c in of(out, CancelChild)] == [two]
    confirm_cancels(h, out)
    assert h.parent("b", session="OMS2").state is S.CANCELED
    assert not h.engine.children[one_].is_terminal
    assert "kill switch (session OMS2)" in one(h.new("b2", session="OMS2"), RejectOrder).text
    assert one(h.new("a2", session="OMS"), SendChildOrder)


def test_venue_kill_ends_the_parents_working_there_and_keeps_new_children_away() -> None:
    h = Harness("rest")
    at_lit1 = resting(h, "p1")
    dark = one(h.new("p2"), SendChildOrder)  # at DARK1
    out = kill(h, "venue", "LIT1", reason="venue misbehaving")
    assert [c.child_id for c in of(out, CancelChild)] == [at_lit1]
    end = one(confirm_cancels(h, out), ReportToOms)
    assert (end.cl_ord_id, end.ord_status) == ("p1", S.CANCELED)
    assert end.text == "kill switch (venue LIT1) by alice: venue misbehaving"
    # p2 goes on, past LIT1: DARK1 -> LIT2, and no rest on LIT1.
    nxt = one(h.expire(dark.child_id), SendChildOrder)
    assert nxt.venue == "LIT2"
    final = one(h.expire(nxt.child_id), ReportToOms)
    assert final.ord_status is S.CANCELED and final.text.startswith("waterfall exhausted")
    # New parents are accepted and never reach LIT1.
    sent = of(h.new("p3"), SendChildOrder)
    assert [c.venue for c in sent] == ["DARK1"]
    resume(h, "venue", "LIT1")
    assert h.engine.controls.kills == {}


def test_kill_of_an_unknown_venue_or_a_scope_without_a_name_is_refused() -> None:
    h = Harness("rest")
    assert kill(h, "venue", "NOPE") == []
    assert not last_action(h).ok and last_action(h).text == "unknown venue 'NOPE'"
    assert kill(h, "symbol", "") == []
    assert not last_action(h).ok
    assert h.engine.controls.kills == {}
    assert one(h.new("p1"), SendChildOrder)


# -------------------------------------------------------------- venue enable


def test_disabled_venue_gets_no_new_children_and_its_working_ones_are_left() -> None:
    h = Harness("rest")
    at_lit1 = resting(h, "p1")
    assert venue(h, "LIT1", enabled=False) == []
    assert h.metric("sor_venue_disabled", venue="LIT1") == 1
    assert last_action(h).text == "venue LIT1 disabled by carol: maintenance; its working children are left to work"
    assert not h.engine.children[at_lit1].is_terminal
    dark = one(h.new("p2"), SendChildOrder)
    nxt = one(h.expire(dark.child_id), SendChildOrder)
    assert nxt.venue == "LIT2", "LIT1 is skipped"
    assert h.engine._venues_up_view == frozenset({"DARK1", "LIT2"}), "the planner does not see it"

    venue(h, "LIT1", enabled=True)
    assert h.metric("sor_venue_disabled", venue="LIT1") == 0
    assert last_action(h).text == "venue LIT1 enabled by carol"
    dark3 = one(h.new("p3"), SendChildOrder)
    assert one(h.expire(dark3.child_id), SendChildOrder).venue == "LIT1"


def test_disable_with_cancel_working_moves_the_parents_on_along_their_waterfall() -> None:
    h = Harness("rest")
    at_rest = resting(h, "p1")  # its last wave: nothing after it
    dark = one(h.new("p2"), SendChildOrder)
    ioc_lit1 = one(h.expire(dark.child_id), SendChildOrder)
    assert ioc_lit1.venue == "LIT1"
    out = venue(h, "LIT1", enabled=False, cancel=True)
    assert sorted(c.child_id for c in of(out, CancelChild)) == sorted([at_rest, ioc_lit1.child_id])
    assert last_action(h).child_cancels_sent == 2
    # p2's IOC canceled at LIT1: its residual goes on to LIT2.
    moved = one(h.expire(ioc_lit1.child_id), SendChildOrder)
    assert (moved.venue, moved.qty) == ("LIT2", 100)
    # p1 was resting on its last wave: it ends, back to the OMS.
    end = one(h.expire(at_rest), ReportToOms)
    assert end.ord_status is S.CANCELED and end.text.startswith("waterfall exhausted")


def test_with_every_venue_taken_out_a_new_order_is_rejected_naming_why() -> None:
    h = Harness("rest")
    for v in ("DARK1", "LIT1", "LIT2"):
        venue(h, v, enabled=False)
    rej = one(h.new("p1"), RejectOrder)
    assert rej.text == "no venue to route to: DARK1, LIT1, LIT2 taken out of routing by an operator"


def test_disable_of_an_unknown_venue_is_refused() -> None:
    h = Harness("rest")
    assert venue(h, "NOPE", enabled=False) == []
    assert not last_action(h).ok
    assert h.engine.controls.disabled == {}


def test_a_venue_that_comes_back_up_while_disabled_stays_out() -> None:
    h = Harness("rest")
    venue(h, "LIT1", enabled=False)
    h.session("LIT1", False)
    h.session("LIT1", True)
    assert "LIT1" not in h.engine._venues_up_view
    venue(h, "LIT1", enabled=True)
    assert "LIT1" in h.engine._venues_up_view


# --------------------------------------------------- journal and determinism


def test_operator_events_round_trip_through_the_journal_encoding() -> None:
    evs: list[EngineEvent] = [
        KillSwitchEngaged(scope_kind="symbol", scope="AAPL", who="alice", reason="r", ts_ns=1),
        KillSwitchReleased(scope_kind="all", who="bob", ts_ns=2),
        VenueEnableChanged(venue="LIT1", enabled=False, cancel_working=True, who="carol", ts_ns=3),
    ]
    assert [records.decode_event(records.encode(e)) for e in evs] == evs
    assert msgspec.json.decode(msgspec.json.encode(evs), type=list[EngineEvent]) == evs


def test_the_same_operator_events_give_the_same_commands() -> None:
    def run() -> list[Command]:
        h = Harness("rest")
        resting(h, "p1")
        h.new("p2")
        kill(h, "venue", "LIT1")
        venue(h, "DARK1", enabled=False, cancel=True)
        kill(h)
        h.new("p3")
        resume(h)
        h.new("p4")
        return h.out

    assert run() == run()


def test_a_killed_parent_s_journal_story_names_the_kill(tmp_path: Path) -> None:
    from router.journal.records import COMMANDS, EVENT
    from router.journal.store import SqliteStore
    from router.journal.story import format_story, parent_story
    from router.journal.writer import JournalWriter

    h = Harness("rest")
    store = SqliteStore(tmp_path / "j.sqlite")
    sid = store.begin_session(T0, "T-", "static", msgspec.json.encode(h.cfg).decode())
    writer = JournalWriter(store, sid, capacity=10_000, max_delay_ms=5, on_failure=lambda r: None)
    writer.start()
    handle = h.engine.handle

    def journaled(ev: EngineEvent) -> Step:
        step = handle(ev)
        writer.append(EVENT, ev.ts_ns, ev)
        if step.commands:
            writer.append(COMMANDS, ev.ts_ns, step.commands)
        return step

    def run(ev: EngineEvent) -> list[Command]:
        return h._run(journaled(ev).commands)

    for v in ("DARK1", "LIT1", "LIT2"):
        journaled(VenueSessionChanged(venue=v, up=True, ts_ns=h.tick()))
    sent = one(run(NewOrderReceived(session="OMS", cl_ord_id="p1", symbol="AAPL", side=BUY, qty=100,
                                    ord_type=OrdType.LIMIT, price_ticks=PX, tif=TimeInForce.DAY,
                                    recv_ns=h.tick())), SendChildOrder)
    run(VenueEnableChanged(venue="LIT2", enabled=False, who="carol", ts_ns=h.tick()))
    cancel = one(run(KillSwitchEngaged(scope_kind="all", who="alice", reason="drill", ts_ns=h.tick())), CancelChild)
    assert cancel.child_id == sent.child_id
    run(VenueReport(venue=sent.venue, child_id=sent.child_id, exec_id="v1", exec_type=ExecType.CANCELED,
                    ord_status=S.CANCELED, last_qty=0, last_px_ticks=0, cum_qty=0, leaves_qty=0, text="",
                    recv_ns=h.tick()))
    assert writer.close()
    text = format_story(parent_story(store, None, "p1"))
    store.close()
    assert "operator alice: kill switch (all): drill" in text, text
    assert "on kill switch" in text, text
    assert "kill switch (all) by alice: drill" in text, text
