"""FIX acceptance of the OMS acceptor, from a raw-socket peer (tests/e2e/rawfix.py).

The real daemon and real sim venues run as processes (the module-scoped
``cluster`` fixture of conftest.py: both drivers); the OMS side is a
hand-driven FIX session with no quickfix in it, so the session layer itself
is under test: sequence gaps and resends, PossDup resends of orders already
taken, garbled frames, logons with the wrong CompIDs, malformed messages.

After each case every ExecutionReport any peer of the module kept is
checked against the invariants of DESIGN.md (``sim.invariants``), and the
shares the OMS saw filled must equal the shares the router counts filled
at the venues (``sor_filled_qty_total``), venue by venue.

The market is conftest's: LIT1 offers 100 @ 190.01 and requotes every 50 ms,
so a 10-share buy limit at 190.05 fills at once on LIT1; a buy at 189.50
rests. Every wait has a deadline; "nothing came back" is shown with a
barrier (a later order's ack: the engine answers in order), never a sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest

from sim.harness import Cluster, poll_until
from sim.invariants import check_all
from sim.oms import Received
from tests.e2e.rawfix import (
    BEGIN_SEQ_NO,
    BUSINESS_REJECT_REASON,
    CL_ORD_ID,
    CUM_QTY,
    END_SEQ_NO,
    EXEC_TYPE,
    LAST_MKT,
    LAST_QTY,
    ORD_REJ_REASON,
    ORD_STATUS,
    ORDER_ID,
    ORIG_CL_ORD_ID,
    POSS_DUP_FLAG,
    POSS_RESEND,
    REF_MSG_TYPE,
    REF_SEQ_NUM,
    REF_TAG_ID,
    SENDING_TIME,
    SESSION_REJECT_REASON,
    TEST_REQ_ID,
    TEXT,
    RawFixClient,
    bad_body_length,
    bad_checksum,
)

T = 10.0
SYMBOL = "S6"
FILLS = ("190.05", "3")
"""Price and TimeInForce of a small buy that fills at once (IOC)."""
OMS_UP = 'sor_fix_session_up{session="oms"}'


class Ledger:
    """Every raw peer of one cluster, for the checks that span them all."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peers: list[RawFixClient] = []

    def client(self, sender_comp_id: str | None = None, target_comp_id: str | None = None,
               heartbeat_s: int = 30) -> RawFixClient:
        """A peer with the OMS session's CompIDs unless told otherwise (ours
        are the acceptor's, swapped)."""
        oms = self.cluster.cfg.oms
        c = RawFixClient(oms.port, sender_comp_id=sender_comp_id or oms.target_comp_id,
                         target_comp_id=target_comp_id or oms.sender_comp_id, heartbeat_s=heartbeat_s)
        self.peers.append(c)
        return c

    def reports(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for p in self.peers:
            for cl, reps in p.reports_by_order().items():
                out.setdefault(cl, []).extend(reps)
        return out

    def settled(self, *working: RawFixClient) -> None:
        """Every order the router took is done, the invariants hold on every
        ER of the module, and the OMS saw the fills the router counted."""
        for p in working:
            taken = [cl for cl, reps in p.reports_by_order().items() if any(r.get(ORDER_ID) != "NONE" for r in reps)]
            assert p.wait_done(taken, T), {cl: [(r.get(EXEC_TYPE), r.get(ORD_STATUS)) for r in p.reports(cl)]
                                           for cl in taken if not p.is_done(cl)}
        for p in self.peers:
            assert p.in_gaps == [], f"the daemon skipped outbound MsgSeqNums: {p.in_gaps}"
            assert not p.gap_pending, "a gap in the daemon's messages was never filled"
            assert all(r.get(POSS_DUP_FLAG) == "Y" for r in p.too_low), \
                f"MsgSeqNum too low without PossDupFlag: {[r.fields for r in p.too_low]}"
        assert check_all(self.reports()) > 0
        mic = {v.mic or v.name: v.name for v in self.cluster.cfg.venues}
        seen: dict[str, int] = {}
        for reps in self.reports().values():
            for r in reps:
                if r.get(EXEC_TYPE) == "F":
                    venue = mic[r.get(LAST_MKT)]
                    seen[venue] = seen.get(venue, 0) + int(r.get(LAST_QTY))
        counted: dict[str, int] = {}
        at_venues: dict[str, int] = {}

        def agree() -> bool:
            m = self.cluster.metrics()
            counted.clear()
            counted.update({v.name: int(m.get(f'sor_filled_qty_total{{venue="{v.name}"}}', 0))
                            for v in self.cluster.cfg.venues})
            # The venues' own records of what they filled, share for share.
            at_venues.clear()
            for f in self.cluster.venue_fills():
                at_venues[f["venue"]] = at_venues.get(f["venue"], 0) + int(f["qty"])
            return all(counted[v] == seen.get(v, 0) == at_venues.get(v, 0) for v in counted)

        assert poll_until(agree, T), f"OMS saw fills {seen}, the router counted {counted}, the venues {at_venues}"


@pytest.fixture(scope="module")
def ledger(cluster: Cluster) -> Ledger:
    return Ledger(cluster)


def _oms_session_down(cluster: Cluster) -> None:
    assert poll_until(lambda: cluster.metrics().get(OMS_UP) == 0, T), "the OMS session is still up"


@pytest.fixture
def peer(cluster: Cluster, ledger: Ledger) -> Iterator[RawFixClient]:
    """The OMS session, logged on with ResetSeqNumFlag=Y; logged out after."""
    p = ledger.client()
    answer = p.logon(reset=True, timeout_s=T)
    assert answer is not None and answer.msg_type == "A", answer
    try:
        yield p
    finally:
        if p.connected:
            p.logout(timeout_s=T)
        p.close()
        _oms_session_down(cluster)


def _metric_sum(cluster: Cluster, name: str) -> int:
    return int(sum(v for k, v in cluster.metrics().items() if k.startswith(name + "{")))


def _fills_once(p: RawFixClient, cl: str, qty: int = 10) -> None:
    """``cl`` was acked once and filled completely, once."""
    assert p.wait_done([cl], T), p.reports(cl)
    reps = [r for r in p.reports(cl) if r.get(ORDER_ID) != "NONE"]
    kinds = [r.get(EXEC_TYPE) for r in reps]
    assert kinds.count("0") == 1 and reps[-1].get(ORD_STATUS) == "2", [r.fields for r in reps]
    assert sum(int(r.get(LAST_QTY)) for r in reps if r.get(EXEC_TYPE) == "F") == qty


def _barrier(p: RawFixClient) -> str:
    """A fresh order that fills, waited for: every answer the engine owed
    for what was sent before it has arrived by then."""
    cl = p.send_order(SYMBOL, "1", 10, *FILLS)
    _fills_once(p, cl)
    return cl


# ------------------------------------------------------------------ 1. gaps


def test_sequence_gap_is_recovered_by_resend_and_every_order_is_taken_once(
        cluster: Cluster, ledger: Ledger, peer: RawFixClient) -> None:
    first = peer.send_order(SYMBOL, "1", 10, *FILLS)  # MsgSeqNum N
    _fills_once(peer, first)
    n = peer.next_out - 1
    # N+1..N+4 are "lost on the line": two orders, two heartbeats.
    lost = [peer.send_order(SYMBOL, "1", 10, *FILLS, transmit=False) for _ in range(2)]
    peer.send("0", transmit=False)
    peer.send("0", transmit=False)
    mark = len(peer.received)
    after = peer.send_order(SYMBOL, "1", 10, *FILLS)  # N+5: the daemon queues it and asks for N+1 on
    assert peer.next_out - 1 == n + 5
    rr = peer.wait_msg("2", T, since=mark)
    assert rr is not None, "no ResendRequest for the gap"
    assert (int(rr.get(BEGIN_SEQ_NO)), int(rr.get(END_SEQ_NO))) in ((n + 1, 0), (n + 1, n + 4)), rr.fields
    # The peer answered it: N+1, N+2 resent for real (PossDupFlag=Y,
    # OrigSendingTime), N+3..N+4 gap-filled, N+5 resent (a duplicate of the
    # queued one, which the daemon drops as too low).
    for cl in (*lost, after):
        _fills_once(peer, cl)
    assert peer.resend_requests == [(int(rr.get(BEGIN_SEQ_NO)), int(rr.get(END_SEQ_NO)))]
    # The session keeps working in sequence.
    _barrier(peer)
    ledger.settled(peer)


def test_a_lost_order_the_oms_gap_fills_is_never_taken(
        cluster: Cluster, ledger: Ledger, peer: RawFixClient) -> None:
    # The OMS chooses not to resend a stale order: it gap-fills over it.
    never = peer.send_order(SYMBOL, "1", 10, *FILLS, transmit=False)
    peer.no_resend.add(peer.next_out - 1)
    sent_before = _metric_sum(cluster, "sor_child_qty_sent_total")
    after = peer.send_order(SYMBOL, "1", 10, *FILLS)
    _fills_once(peer, after)
    assert len(peer.resend_requests) == 1
    _barrier(peer)
    assert peer.reports(never) == []
    assert _metric_sum(cluster, "sor_child_qty_sent_total") - sent_before == 20
    ledger.settled(peer)


def test_fills_while_the_oms_is_away_come_back_once_by_resend(cluster: Cluster, ledger: Ledger) -> None:
    """The OMS drops the TCP connection mid-fill and logs on again without a
    reset: the ERs the daemon sent meanwhile come back through our
    ResendRequest (PossDupFlag=Y), each exactly once (DESIGN.md: every venue
    fill reaches the OMS exactly once, across an OMS disconnect)."""
    p = ledger.client()
    try:
        answer = p.logon(reset=True, timeout_s=T)
        assert answer is not None and answer.msg_type == "A"
        # A sell of 2000 at the bid: 200 fill at once, the rest rests on LIT1
        # and fills 100 per requote (50 ms): about a second in all.
        cl = p.send_order("S7", "2", 2000, price="189.99", tif="0")
        assert p.pump_until(lambda: any(r.get(CUM_QTY) not in ("", "0") for r in p.reports(cl)), T)
        p.close()  # no Logout: the line drops
        _oms_session_down(cluster)
        assert poll_until(lambda: cluster.metrics()["sor_open_parents"] == 0, T), "the parent did not finish"
        gap_from = p.next_in
        answer = p.logon(reset=False, timeout_s=T)
        assert answer is not None and answer.msg_type == "A", answer
        assert p.wait_done([cl], T), [r.fields for r in p.reports(cl)]
        assert p.pump_until(lambda: not p.gap_pending, T)
        assert p.in_gaps and p.in_gaps[0][0] == gap_from, p.in_gaps
        p.in_gaps.clear()
        reps = p.reports(cl)
        assert int(reps[-1].get(CUM_QTY)) == 2000 and reps[-1].get(ORD_STATUS) == "2", reps[-1].fields
        assert any(r.get(POSS_DUP_FLAG) == "Y" for r in reps), "nothing came back by resend"
        assert [r.get(EXEC_TYPE) for r in reps].count("0") == 1
        _barrier(p)
        ledger.settled(p)
    finally:
        p.logout(timeout_s=T)
        p.close()
        _oms_session_down(cluster)


def test_test_request_is_answered_and_the_session_stays_up(cluster: Cluster, ledger: Ledger) -> None:
    p = ledger.client(heartbeat_s=1)
    try:
        answer = p.logon(reset=True, timeout_s=T)
        assert answer is not None and answer.msg_type == "A", answer
        # Silent on our side: the daemon probes with a TestRequest and our
        # Heartbeat (with its TestReqID) keeps the session.
        p.send_heartbeats = False
        tr = p.wait_msg("1", T)
        assert tr is not None and tr.get(TEST_REQ_ID)
        p.send_heartbeats = True
        mark = len(p.received)
        assert p.wait_msg("0", 3.0, since=mark) is not None, "no Heartbeat after our answer"
        assert p.connected and cluster.metrics()[OMS_UP] == 1
        # Our own TestRequest is answered with its id.
        p.send("1", [(TEST_REQ_ID, "acceptance-1")])
        hb = p.wait_msg("0", T, since=mark, where=lambda r: r.get(TEST_REQ_ID) == "acceptance-1")
        assert hb is not None
        _barrier(p)
        ledger.settled(p)
    finally:
        p.logout(timeout_s=T)
        p.close()
        _oms_session_down(cluster)


# ------------------------------------------------------------ 2. PossDup resends


def test_possdup_resend_of_a_taken_order_creates_no_second_order(
        cluster: Cluster, ledger: Ledger, peer: RawFixClient) -> None:
    sent0 = _metric_sum(cluster, "sor_child_qty_sent_total")
    filled0 = _metric_sum(cluster, "sor_filled_qty_total")
    cl = peer.send_order(SYMBOL, "1", 10, *FILLS)
    seq = peer.next_out - 1
    _fills_once(peer, cl)
    orig = peer.store[seq]
    # (a) A session-level resend under the same MsgSeqNum (too low, PossDup):
    # the session drops it. (b) An application-level resend under a new
    # MsgSeqNum with PossDupFlag=Y, (c) with PossResend=Y: the router sees it
    # and refuses the ClOrdID it already has.
    peer.send("D", orig.body, seq=seq, poss_dup=True, orig_sending_time=orig.sending_time)
    peer.send("D", orig.body, poss_dup=True, orig_sending_time=orig.sending_time)
    peer.send("D", orig.body, header=[(POSS_RESEND, "Y")])
    _barrier(peer)
    reps = peer.reports(cl)
    taken = [r for r in reps if r.get(ORDER_ID) != "NONE"]
    dups = [r for r in reps if r.get(ORDER_ID) == "NONE"]
    assert [r.get(EXEC_TYPE) for r in taken] == ["0", "F"], [r.fields for r in reps]
    assert len({r.get(ORDER_ID) for r in taken}) == 1, "a second parent order for one ClOrdID"
    assert len(dups) <= 2
    for d in dups:
        assert (d.get(EXEC_TYPE), d.get(ORD_STATUS), d.get(ORD_REJ_REASON)) == ("8", "8", "6"), d.fields
        assert d.get(TEXT) == f"duplicate ClOrdID {cl!r}"
    # The shares went to the venues once: this order's 10 and the barrier's 10.
    assert _metric_sum(cluster, "sor_child_qty_sent_total") - sent0 == 20
    assert _metric_sum(cluster, "sor_filled_qty_total") - filled0 == 20
    ledger.settled(peer)


def test_possdup_resend_while_the_order_works_leaves_it_alone(
        cluster: Cluster, ledger: Ledger, peer: RawFixClient) -> None:
    cl = peer.send_order(SYMBOL, "1", 100, price="189.50", tif="0")  # rests on LIT1
    seq = peer.next_out - 1
    assert peer.wait_msg("8", T, where=lambda r: r.get(CL_ORD_ID) == cl and r.get(EXEC_TYPE) == "0")
    orig = peer.store[seq]
    peer.send("D", orig.body, poss_dup=True, orig_sending_time=orig.sending_time)
    _barrier(peer)
    # One parent working, one child resting for it: the resend made neither.
    gauges: dict[str, float] = {}

    def one_working() -> bool:
        m = cluster.metrics()
        gauges.update(parents=m["sor_open_parents"], children=m["sor_open_children"])
        return gauges == {"parents": 1, "children": 1}

    assert poll_until(one_working, T), gauges
    dup = [r for r in peer.reports(cl) if r.get(ORDER_ID) == "NONE"]
    assert len(dup) <= 1 and all(d.get(TEXT) == f"duplicate ClOrdID {cl!r}" for d in dup)
    assert not peer.is_done(cl), "the duplicate touched the working order"
    cx = peer.new_id()
    cx_seq = peer.send("F", [(CL_ORD_ID, cx), (ORIG_CL_ORD_ID, cl), (55, SYMBOL), (54, "1"), (38, "100"),
                             (60, "20240101-00:00:00")])
    assert peer.wait_done([cl], T)
    final = peer.reports(cl)[-1]
    assert (final.get(ORD_STATUS), final.get(CUM_QTY)) == ("4", "0"), final.fields
    # The cancel resent by the application (PossDupFlag=Y, new MsgSeqNum):
    # refused as a duplicate or ignored, never a second cancel report.
    n_reports = len(peer.reports(cl))
    mark = len(peer.received)
    sent = peer.store[cx_seq]
    peer.send("F", sent.body, poss_dup=True, orig_sending_time=sent.sending_time)
    _barrier(peer)
    answers = [r for r in peer.received[mark:] if r.get(CL_ORD_ID) == cx]
    assert all(r.msg_type == "9" and "duplicate ClOrdID" in r.get(TEXT) for r in answers), [r.fields for r in answers]
    assert len(peer.reports(cl)) == n_reports
    ledger.settled(peer)


# ------------------------------------------------------------ 3. garbled frames


@pytest.mark.parametrize("garbage", [
    pytest.param(b"this is not FIX at all\r\n", id="not-fix"),
    pytest.param(b"8=FIX.4.4\x019=abc\x0135=D\x0110=000\x01", id="body-length-not-a-number"),
    pytest.param(b"\x01\x01=\x01garbage=1\x01", id="no-begin-string"),
])
def test_garbage_on_the_wire_is_ignored(cluster: Cluster, ledger: Ledger, peer: RawFixClient, garbage: bytes) -> None:
    # quickfix drops its whole read buffer on a frame it cannot delimit
    # ("BodyLength is missing"), so frames that arrived with the garbage go
    # too. FIX recovers that by sequence numbers: the next message shows the
    # gap and the daemon asks for a resend. Our Heartbeats every second are
    # that next message if nothing else is.
    peer.heartbeat_s = 1
    mark = len(peer.received)
    peer.send_raw(garbage)
    cl = peer.send_order(SYMBOL, "1", 10, *FILLS)
    peer.send("1", [(TEST_REQ_ID, "after-garbage")])
    _fills_once(peer, cl)
    assert not [r for r in peer.received[mark:] if r.msg_type in ("3", "5")], "garbage was answered, not ignored"
    assert peer.connected and peer.logged_on
    _barrier(peer)
    ledger.settled(peer)


@pytest.mark.parametrize("corrupt", [pytest.param(bad_checksum, id="checksum"),
                                     pytest.param(bad_body_length(-5), id="body-length-short"),
                                     pytest.param(bad_body_length(+5), id="body-length-long")])
def test_a_corrupted_order_is_dropped_then_recovered_by_resend(
        cluster: Cluster, ledger: Ledger, peer: RawFixClient, corrupt: Callable[[bytes], bytes]) -> None:
    sent0 = _metric_sum(cluster, "sor_child_qty_sent_total")
    mark = len(peer.received)
    bad = peer.send_order(SYMBOL, "1", 10, *FILLS, corrupt=corrupt)
    bad_seq = peer.next_out - 1
    good = peer.send_order(SYMBOL, "1", 10, *FILLS)
    # A long BodyLength swallows the next frame too: this one shows the gap.
    peer.send("1", [(TEST_REQ_ID, "after-corrupt")])
    # The corrupted frame was ignored, not taken: the daemon asked for it
    # again, and the resend (PossDupFlag=Y) is the one order it made of it.
    rr = peer.wait_msg("2", T, since=mark)
    assert rr is not None and int(rr.get(BEGIN_SEQ_NO)) == bad_seq, rr and rr.fields
    for cl in (bad, good):
        _fills_once(peer, cl)
    assert not [r for r in peer.received[mark:] if r.msg_type == "3"], "a session Reject for a garbled frame"
    assert peer.connected and peer.logged_on
    _barrier(peer)
    assert _metric_sum(cluster, "sor_child_qty_sent_total") - sent0 == 30
    ledger.settled(peer)


# ------------------------------------------------------------ 4. wrong CompIDs


def _wrong_logon(ledger: Ledger, sender: str, target: str) -> RawFixClient:
    """A Logon with these CompIDs, and an order right behind it (before any
    answer); the daemon must log it out or close the connection."""
    q = ledger.client(sender_comp_id=sender, target_comp_id=target)
    q.connect(T)
    q.send("A", [(98, 0), (108, 30), (141, "Y")])
    q.send_order(SYMBOL, "1", 10, *FILLS)
    closed = q.wait_closed(T)
    assert closed or any(r.msg_type == "5" for r in q.received), "a logon with the wrong CompIDs was kept"
    assert not q.logged_on and not q.messages("A") and not q.messages("8")
    q.close()
    return q


def test_logon_with_wrong_comp_ids_is_refused(cluster: Cluster, ledger: Ledger) -> None:
    oms = cluster.cfg.oms
    received0 = cluster.metrics()["sor_parent_received_total"]
    wrong = [("WRONG", oms.sender_comp_id), (oms.target_comp_id, "WRONG"), (oms.sender_comp_id, oms.target_comp_id)]
    # Before the proper session is up ...
    for sender, target in wrong:
        _wrong_logon(ledger, sender, target)
    assert cluster.metrics()[OMS_UP] == 0
    p = ledger.client()
    try:
        answer = p.logon(reset=True, timeout_s=T)
        assert answer is not None and answer.msg_type == "A"
        # ... and while it is, a second connection for the same session too.
        for sender, target in [*wrong, (oms.target_comp_id, oms.sender_comp_id)]:
            _wrong_logon(ledger, sender, target)
        assert p.connected and p.logged_on
        _barrier(p)
        # The only parent the router ever received here is the barrier.
        assert cluster.metrics()["sor_parent_received_total"] - received0 == 1
        ledger.settled(p)
    finally:
        p.logout(timeout_s=T)
        p.close()
        _oms_session_down(cluster)


def test_wrong_sender_comp_id_mid_session_is_rejected_and_logged_out(cluster: Cluster, ledger: Ledger) -> None:
    received0 = cluster.metrics()["sor_parent_received_total"]
    p = ledger.client()
    answer = p.logon(reset=True, timeout_s=T)
    assert answer is not None and answer.msg_type == "A"
    p.sender_comp_id = "WRONG"
    p.send_order(SYMBOL, "1", 10, *FILLS)
    p.sender_comp_id = cluster.cfg.oms.target_comp_id
    assert p.wait_closed(T)
    rej = p.messages("3")
    assert rej and rej[0].get(SESSION_REJECT_REASON) == "9", [r.fields for r in p.received]  # CompID problem
    assert p.messages("5") and not p.messages("8")
    _oms_session_down(cluster)
    # The proper session logs on again and works.
    q = ledger.client()
    try:
        answer = q.logon(reset=True, timeout_s=T)
        assert answer is not None and answer.msg_type == "A"
        _barrier(q)
        assert cluster.metrics()["sor_parent_received_total"] - received0 == 1
        ledger.settled(q)
    finally:
        q.logout(timeout_s=T)
        q.close()
        _oms_session_down(cluster)


# ------------------------------------------------------------ 5. malformed messages

# What test_bad_input.py (through quickfix's own initiator) leaves out: tags
# quickfix would not send that way, and checks of each required tag.
class Bad(NamedTuple):
    name: str
    msg_type: str
    body: list[tuple[int, str]]
    answer: str
    """35=3 session Reject, 35=8 order reject, 35=j BusinessMessageReject."""
    tag: int | None
    """RefTagID(371) of a Reject; the tag an order reject's Text names."""
    reason: str | None
    """SessionRejectReason(373) of a Reject."""
    by_router: bool = True
    """Answered by the router's codec (counted in sor_session_rejects_total), not by quickfix."""


def _nos(change: dict[int, str | None]) -> list[tuple[int, str]]:
    """A NewOrderSingle body that would fill, with fields changed (None: left out)."""
    base: dict[int, str | None] = {11: "{cl}", 55: SYMBOL, 54: "1", 38: "10", 40: "2", 44: "190.05"}
    base.update(change)
    return [(t, v) for t, v in base.items() if v is not None]


MALFORMED = [
    Bad("empty-value", "D", _nos({55: ""}), "3", 55, "4", by_router=False),
    Bad("no-clordid", "D", _nos({11: None}), "3", 11, "1"),
    Bad("no-orderqty", "D", _nos({38: None}), "3", 38, "1"),
    Bad("no-ordtype", "D", _nos({40: None}), "3", 40, "1"),
    Bad("bad-side", "D", _nos({54: "7"}), "3", 54, "5"),
    Bad("orderqty-not-a-number", "D", _nos({38: "ten"}), "3", 38, "6"),
    Bad("price-not-a-number", "D", _nos({44: "1x0"}), "3", 44, "6"),
    Bad("limit-without-price", "D", _nos({44: None}), "8", 44, None),
    Bad("bad-tif", "D", _nos({59: "9"}), "8", 59, None),
    Bad("cancel-without-origclordid", "F", [(11, "{cl}"), (55, SYMBOL), (54, "1"), (38, "10")], "3", 41, "1"),
    Bad("unsupported-msgtype", "AB", [(11, "{cl}")], "j", None, None),
]
NAMES = {44: "Price(44)", 59: "TimeInForce"}


def test_malformed_messages_are_answered_naming_the_field(
        cluster: Cluster, ledger: Ledger, peer: RawFixClient) -> None:
    rejects0 = _metric_sum(cluster, "sor_session_rejects_total")
    for bad in MALFORMED:
        cl = peer.new_id()
        mark = len(peer.received)
        seq = peer.send(bad.msg_type, [(t, v.format(cl=cl)) for t, v in bad.body])
        ans = peer.wait_msg(bad.answer, T, since=mark)
        assert ans is not None, f"{bad.name}: no {bad.answer} answer; got {[r.fields for r in peer.received[mark:]]}"
        if bad.answer == "3":
            assert (ans.get(REF_SEQ_NUM), ans.get(REF_MSG_TYPE), ans.get(REF_TAG_ID), ans.get(SESSION_REJECT_REASON)) \
                == (str(seq), bad.msg_type, str(bad.tag), bad.reason), (bad.name, ans.fields)
        elif bad.answer == "8":
            assert (ans.get(CL_ORD_ID), ans.get(EXEC_TYPE), ans.get(ORD_STATUS), ans.get(ORDER_ID)) == \
                (cl, "8", "8", "NONE"), (bad.name, ans.fields)
            assert bad.tag is not None and NAMES[bad.tag] in ans.get(TEXT), (bad.name, ans.fields)
        else:
            assert (ans.get(REF_SEQ_NUM), ans.get(REF_MSG_TYPE), ans.get(BUSINESS_REJECT_REASON)) == \
                (str(seq), bad.msg_type, "3"), (bad.name, ans.fields)
        assert ans.get(TEXT), f"{bad.name}: no readable Text(58)"
        assert peer.connected and peer.logged_on, f"{bad.name}: the session dropped"
    # Every one of them was answered in sequence: the next order is taken.
    _barrier(peer)
    counted = sum(1 for b in MALFORMED if b.by_router and b.answer in "3j")
    assert _metric_sum(cluster, "sor_session_rejects_total") - rejects0 == counted
    ledger.settled(peer)


def test_missing_sending_time_never_becomes_an_order_and_the_session_recovers(
        cluster: Cluster, ledger: Ledger) -> None:
    """FIX wants a session Reject (373=1, 371=52) for a missing required
    header field; quickfix 1.16 drops the connection instead. Either way the
    message is not taken: the peer logs on again without a reset, the
    daemon asks for it, and the resend is the one order made of it."""
    received0 = cluster.metrics()["sor_parent_received_total"]
    p = ledger.client()
    try:
        answer = p.logon(reset=True, timeout_s=T)
        assert answer is not None and answer.msg_type == "A"
        mark = len(p.received)
        cl = p.send_order(SYMBOL, "1", 10, *FILLS, omit=[SENDING_TIME])
        seq = p.next_out - 1
        p.send("1", [(TEST_REQ_ID, "after-no-sending-time")])
        rejected = p.wait_msg("3", 2.0, since=mark)
        if rejected is not None:
            assert (rejected.get(REF_SEQ_NUM), rejected.get(REF_TAG_ID)) == (str(seq), "52"), rejected.fields
        else:
            assert p.wait_closed(T), "neither a Reject nor a disconnect for a message without SendingTime"
            _oms_session_down(cluster)
            assert p.reports(cl) == []
            assert cluster.metrics()["sor_parent_received_total"] == received0
            # Sequence numbers go on: the daemon still expects ``seq``.
            answer = p.logon(reset=False, timeout_s=T)
            assert answer is not None and answer.msg_type == "A", answer
            rr = p.wait_msg("2", T)
            assert rr is not None and int(rr.get(BEGIN_SEQ_NO)) == seq, rr and rr.fields
            _fills_once(p, cl)
        _barrier(p)
        ledger.settled(p)
    finally:
        p.logout(timeout_s=T)
        p.close()
        _oms_session_down(cluster)
