"""One parent's whole story, read back from a journal the real engine wrote
(``conftest.make_journal``): the decision, every child, every venue
report, the cancels and every ER to the OMS, against what the engine
itself holds and returned; lookups by OrderID and ClOrdID; a story that
crosses a restart; unknown and ambiguous keys."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from router.domain.commands import CancelChild, ReportToOms, SendChildOrder
from router.domain.decision import Decision
from router.domain.events import CancelRequested, VenueReport
from router.domain.types import ExecType, OrdStatus
from router.features.catalogue import FEATURE_NAMES
from router.journal.store import JournalError, SqliteStore
from router.journal.story import (
    AmbiguousParentError,
    ParentStory,
    UnknownParentError,
    avg_px,
    format_story,
    parent_story,
)

from .conftest import RESTING, Journaled, split_journal


def _story(j: Journaled, key: str, session: int | None = None, **kw: str) -> ParentStory:
    store = SqliteStore(j.path, readonly=True)
    try:
        return parent_story(store, session, key, **kw)
    finally:
        store.close()


def _reports(j: Journaled, order_id: str) -> list[ReportToOms]:
    return [c for c in j.commands if isinstance(c, ReportToOms) and c.order_id == order_id]


def _px(ticks: int) -> str:
    return format(ticks * Decimal("0.01"), "f")


def test_every_parent_story_matches_the_engine(journaled: Journaled) -> None:
    engine = journaled.bt.engine
    assert len(journaled.decisions) > 10
    for d in journaled.decisions:
        parent = engine.parents[d.order_id]
        s = _story(journaled, d.order_id)
        assert s.order_id == d.order_id and s.cl_ord_id == parent.cl_ord_id and s.session_id == journaled.session_id
        assert s.order is not None and s.order.qty == parent.qty
        # The decision, as recorded: features, scores, costs and the rest.
        sd = s.decision
        assert sd is not None and sd.plan == d.plan and sd.ranking == d.ranking and sd.strategy == d.strategy
        assert sd.model_version == d.model_version == journaled.bt.scorer.version and sd.fallback == d.fallback
        assert sd.propensity == d.propensity
        assert sd.features is not None and d.features is not None and np.array_equal(sd.features, d.features)
        assert sd.features.shape[1] == len(FEATURE_NAMES)
        assert np.array_equal(sd.scores, d.scores) and np.array_equal(sd.costs, d.costs)  # type: ignore[arg-type]
        # Every child the engine sent for it, with what the venue did.
        assert list(s.children) == parent.children
        for cid, c in s.children.items():
            child = engine.children[cid]
            assert (c.order.venue, c.order.qty, c.order.price_ticks) == (child.venue, child.qty, child.price_ticks)
            assert c.filled_qty == child.cum_qty and c.state == child.state.name
            fills = [e for e in journaled.events if isinstance(e, VenueReport) and e.child_id == cid
                     and e.exec_type is ExecType.TRADE]
            assert [f.exec_id for f in c.fills] == [f.exec_id for f in fills]
            assert c.notional_ticks == sum(f.last_qty * f.last_px_ticks for f in fills)
            if fills:
                assert c.first_fill_ns == fills[0].recv_ns
        # Every ER the OMS got, in order; the last one is the parent's end.
        assert s.reports == _reports(journaled, d.order_id)
        final = s.reports[-1]
        assert isinstance(final, ReportToOms)
        assert final.cum_qty == parent.cum_qty and final.ord_status is parent.state
        assert final.avg_px_ticks_num == parent.notional_ticks
        assert sum(c.filled_qty for c in s.children.values()) == parent.cum_qty
        for r in s.reports:
            assert isinstance(r, ReportToOms)
            if r.ord_status not in (OrdStatus.CANCELED, OrdStatus.FILLED):
                assert r.cum_qty + r.leaves_qty == r.order_qty
        # The journal order is the engine's: arrival, decision, then what followed.
        assert [type(e.item).__name__ for e in s.entries[:2]] == ["NewOrderReceived", "Decision"]
        assert [e.seq for e in s.entries] == sorted(e.seq for e in s.entries)


def test_the_text_names_the_decision_each_child_each_fill_and_each_report(journaled: Journaled) -> None:
    filled = [d for d in journaled.decisions if journaled.bt.engine.parents[d.order_id].cum_qty]
    d = max(filled, key=lambda x: len(journaled.bt.engine.parents[x.order_id].children))
    s = _story(journaled, d.order_id)
    text = format_story(s)
    parent = journaled.bt.engine.parents[d.order_id]
    assert f"parent {d.order_id} (ClOrdID {parent.cl_ord_id}, OMS session OMS)" in text
    assert f"strategy {d.strategy}" in text and f"model {d.model_version}" in text
    assert f"propensity {d.propensity:.4g}" in text
    label = "ranking (explored lead first): " if d.explored else "ranking (cheapest first): "
    assert "fallback none" in text and label + " < ".join(d.ranking) in text
    assert all(name in text for name in FEATURE_NAMES), "features by name"
    assert f"LIMIT {_px(parent.price_ticks or 0)}" in text, "prices in decimal with the tick size"
    for cid, c in s.children.items():
        assert f"child {cid}: " in text and f"{cid} {c.order.venue}: {c.order.qty}" in text
        for f in c.fills:
            assert f"{cid} fill {f.last_qty} @ {_px(f.last_px_ticks)} exec {f.exec_id}" in text
    for r in s.reports:
        assert isinstance(r, ReportToOms)
        assert (f"ER {r.exec_type.name}/{r.ord_status.name}" in text and f"cum {r.cum_qty} leaves {r.leaves_qty} "
                f"avg {avg_px(r.avg_px_ticks_num, r.cum_qty, '0.01')} exec {r.exec_id}" in text)
    mean = Decimal(parent.notional_ticks) * Decimal("0.01") / parent.cum_qty
    assert f"outcome: {parent.state.name}, filled {parent.cum_qty} of {parent.qty} avg " in text
    assert avg_px(parent.notional_ticks, parent.cum_qty, "0.01") == format(
        mean.quantize(Decimal("1e-8")).normalize(), "f")


def test_a_canceled_parent_tells_its_cancel(journaled: Journaled) -> None:
    s = _story(journaled, RESTING)
    assert s.order is not None and s.order.cl_ord_id == RESTING
    assert [c.cl_ord_id for c in s.cancel_requests] == ["REST1-X"]
    cancels = [e for e in s.entries if isinstance(e.item, CancelChild)]
    assert cancels and all(e.cause == "CancelRequested" for e in cancels)
    assert [(r.exec_type, r.ord_status) for r in s.reports if isinstance(r, ReportToOms)] == [
        (ExecType.NEW, OrdStatus.NEW), (ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL),
        (ExecType.CANCELED, OrdStatus.CANCELED)]
    assert all(c.state == "CANCELED" for c in s.children.values())
    text = format_story(s)
    assert "OrderCancelRequest REST1-X (orig REST1)" in text and "on OMS cancel" in text
    assert "'canceled at OMS request'" in text
    # The cancel's own ClOrdID finds the same parent; so does the OMS session.
    assert _story(journaled, "REST1-X").order_id == s.order_id
    assert _story(journaled, RESTING, oms_session="OMS").order_id == s.order_id
    with pytest.raises(UnknownParentError):
        _story(journaled, RESTING, oms_session="ANOTHER-OMS")


def test_clordid_and_orderid_find_the_same_story(journaled: Journaled) -> None:
    d = journaled.decisions[3]
    by_order = _story(journaled, d.order_id)
    by_cl = _story(journaled, by_order.cl_ord_id, session=journaled.session_id)
    assert by_cl.order_id == d.order_id
    assert [(e.seq, e.cause, type(e.item)) for e in by_cl.entries] == [
        (e.seq, e.cause, type(e.item)) for e in by_order.entries]


def test_an_unknown_key_or_session_is_an_error_naming_it(journaled: Journaled) -> None:
    with pytest.raises(UnknownParentError, match="'NO-SUCH-ORDER'"):
        _story(journaled, "NO-SUCH-ORDER")
    with pytest.raises(JournalError, match="no session 9"):
        _story(journaled, journaled.decisions[0].order_id, session=9)


def test_a_story_crosses_a_restart(journaled: Journaled, tmp_path: Path) -> None:
    # Cut the session where a parent is half done: its arrival and first
    # fills in the first session, its end in the restored one.
    stories = [_story(journaled, d.order_id) for d in journaled.decisions]
    whole = next(s for s in stories if any(c.wave > 1 for c in s.children.values())
                 and any(c.filled_qty for c in s.children.values() if c.wave == 1))
    later = next(c for c in whole.children.values() if c.wave > 1)
    s1, s2 = split_journal(journaled.path, tmp_path / "restarted.sqlite", later.sent_ns)
    d = whole.decision
    assert d is not None
    store = SqliteStore(tmp_path / "restarted.sqlite", readonly=True)
    s = parent_story(store, None, d.order_id)
    assert s.session_id == s1 and s.sessions == (s1, s2)
    assert {e.session_id for e in s.entries} == {s1, s2}
    assert [e.item for e in s.entries if not isinstance(e.item, Decision)] == [
        e.item for e in whole.entries if not isinstance(e.item, Decision)]
    assert s.children.keys() == whole.children.keys() and s.reports == whole.reports
    # Asked through either session of the chain: the same story.
    assert parent_story(store, s2, whole.cl_ord_id).reports == s.reports
    assert "journal sessions 1, 2" in format_story(s)
    store.close()


def test_the_same_ids_on_two_unrelated_sessions_are_ambiguous(journaled: Journaled, tmp_path: Path) -> None:
    s1, s2 = split_journal(journaled.path, tmp_path / "two-days.sqlite", 0, restored=False)
    store = SqliteStore(tmp_path / "two-days.sqlite", readonly=True)
    d = journaled.decisions[0]
    with pytest.raises(AmbiguousParentError, match="names 2 parents"):
        parent_story(store, None, d.order_id)
    for sid in (s1, s2):
        s = parent_story(store, sid, d.order_id)
        assert s.session_id == sid and s.sessions == (sid,)
        assert isinstance(s.decision, Decision) and s.decision.order_id == d.order_id
    store.close()


def test_every_child_sent_belongs_to_exactly_one_story(journaled: Journaled) -> None:
    sent = [c.child_id for c in journaled.commands if isinstance(c, SendChildOrder)]
    told = [cid for d in journaled.decisions for cid in _story(journaled, d.order_id).children]
    assert sorted(told) == sorted(sent)
    assert any(isinstance(e, CancelRequested) for e in journaled.events)
