"""Parent and child order state machines (router.orders).

Every entry of both transition tables is exercised, every pair missing from
them must raise ``IllegalTransitionError`` without touching the order, and a
property test drives random event sequences through the machines.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.domain.orders import (
    CHILD_TRANSITIONS,
    PARENT_TRANSITIONS,
    ChildEvent,
    ChildOrder,
    IllegalTransitionError,
    ParentEvent,
    ParentOrder,
)
from router.domain.types import TERMINAL_STATUSES, OrdStatus, OrdType, Side, TimeInForce

S = OrdStatus
PE = ParentEvent
CE = ChildEvent

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def _parent(qty: int = 100, state: OrdStatus = S.PENDING_NEW, cum_qty: int = 0) -> ParentOrder:
    p = ParentOrder(
        order_id="P1", session="OMS", cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=qty,
        ord_type=OrdType.LIMIT, price_ticks=19000, tif=TimeInForce.DAY, arrival_ns=1,
    )
    p.state = state
    p.cum_qty = cum_qty
    return p


def _child(qty: int = 100, state: OrdStatus = S.PENDING_NEW, cum_qty: int = 0) -> ChildOrder:
    c = ChildOrder(
        child_id="C1", parent_id="P1", venue="LIT1", symbol="AAPL", side=Side.BUY, qty=qty,
        ord_type=OrdType.LIMIT, price_ticks=19000, tif=TimeInForce.IOC, sent_ns=1,
    )
    c.state = state
    c.cum_qty = cum_qty
    return c


def _id(key: tuple[OrdStatus, object]) -> str:
    state, event = key
    return f"{state.name}-{getattr(event, 'name', event)}"


PARENT_LEGAL = sorted(PARENT_TRANSITIONS.items(), key=lambda kv: _id(kv[0]))
CHILD_LEGAL = sorted(CHILD_TRANSITIONS.items(), key=lambda kv: _id(kv[0]))
PARENT_ILLEGAL = [k for k in itertools.product(OrdStatus, ParentEvent) if k not in PARENT_TRANSITIONS]
CHILD_ILLEGAL = [k for k in itertools.product(OrdStatus, ChildEvent) if k not in CHILD_TRANSITIONS]


# ------------------------------------------------------------------ tables


def test_tables_are_non_trivial_and_terminal_states_have_no_exits() -> None:
    assert len(PARENT_TRANSITIONS) == 20
    assert len(CHILD_TRANSITIONS) == 20
    assert not {state for state, _ in PARENT_TRANSITIONS} & TERMINAL_STATUSES
    assert not {state for state, _ in CHILD_TRANSITIONS} & TERMINAL_STATUSES
    # Only the answers to a pending request use the "restore" marker: a
    # refused cancel, and a replace refused or done.
    assert [k for k, v in PARENT_TRANSITIONS.items() if v is None] == [
        (S.PENDING_CANCEL, PE.CANCEL_REFUSED), (S.PENDING_REPLACE, PE.REPLACE_REFUSED),
        (S.PENDING_REPLACE, PE.REPLACED)]
    assert [k for k, v in CHILD_TRANSITIONS.items() if v is None] == [(S.PENDING_CANCEL, CE.CANCEL_REFUSED)]


@pytest.mark.parametrize(("key", "target"), PARENT_LEGAL, ids=[_id(k) for k, _ in PARENT_LEGAL])
@pytest.mark.parametrize("cum_qty", [0, 40])
def test_parent_legal_transition(key: tuple[OrdStatus, ParentEvent], target: OrdStatus | None,
                                 cum_qty: int) -> None:
    state, event = key
    p = _parent(state=state, cum_qty=cum_qty)
    result = p.apply(event)
    expected = target if target is not None else (S.PARTIALLY_FILLED if cum_qty > 0 else S.NEW)
    assert result is expected
    assert p.state is expected
    # apply() changes only the state, never the quantities.
    assert p.cum_qty == cum_qty
    assert p.notional_ticks == 0


@pytest.mark.parametrize(("key", "target"), CHILD_LEGAL, ids=[_id(k) for k, _ in CHILD_LEGAL])
@pytest.mark.parametrize("cum_qty", [0, 40])
@pytest.mark.parametrize("acked", [True, False], ids=["acked", "unacked"])
def test_child_legal_transition(key: tuple[OrdStatus, ChildEvent], target: OrdStatus | None, cum_qty: int,
                                acked: bool) -> None:
    state, event = key
    c = _child(state=state, cum_qty=cum_qty)
    c.acked_ns = 5 if acked else None
    result = c.apply(event)
    # A refused cancel restores what the child would be had the cancel never
    # been sent: filled part, else acked, else still waiting for the ack.
    restored = S.PARTIALLY_FILLED if cum_qty > 0 else (S.NEW if acked else S.PENDING_NEW)
    expected = target if target is not None else restored
    assert result is expected
    assert c.state is expected
    assert c.cum_qty == cum_qty


@pytest.mark.parametrize(("state", "event"), PARENT_ILLEGAL, ids=[_id(k) for k in PARENT_ILLEGAL])
def test_parent_illegal_transition_raises_and_keeps_state(state: OrdStatus, event: ParentEvent) -> None:
    p = _parent(state=state, cum_qty=10)
    with pytest.raises(IllegalTransitionError) as exc:
        p.apply(event)
    assert p.state is state
    assert p.cum_qty == 10
    err = exc.value
    assert err.kind == "parent"
    assert err.state is state
    assert err.event is event
    assert event.name in str(err) and state.name in str(err) and "P1" in str(err)


@pytest.mark.parametrize(("state", "event"), CHILD_ILLEGAL, ids=[_id(k) for k in CHILD_ILLEGAL])
def test_child_illegal_transition_raises_and_keeps_state(state: OrdStatus, event: ChildEvent) -> None:
    c = _child(state=state, cum_qty=10)
    with pytest.raises(IllegalTransitionError) as exc:
        c.apply(event)
    assert c.state is state
    assert c.cum_qty == 10
    assert exc.value.kind == "child"
    assert exc.value.state is state
    assert exc.value.event is event
    assert "C1" in str(exc.value)


def test_child_cancel_refused_before_ack_restores_pending_new() -> None:
    # The table says CANCEL_REFUSED "returns to the state held before the
    # request"; a child may enter PENDING_CANCEL straight from PENDING_NEW.
    c = _child()
    c.apply(CE.CANCEL_SENT)
    c.apply(CE.CANCEL_REFUSED)
    assert c.state is S.PENDING_NEW
    c.apply(CE.ACK)  # the ack that was still in flight must stay legal
    assert c.state is S.NEW


def test_child_cancel_refused_after_ack_restores_new() -> None:
    c = _child()
    c.apply(CE.ACK)
    c.acked_ns = 2
    c.apply(CE.CANCEL_SENT)
    assert c.apply(CE.CANCEL_REFUSED) is S.NEW


# --------------------------------------------------------------- quantities


def test_parent_leaves_qty_and_terminal() -> None:
    p = _parent(qty=100, state=S.NEW, cum_qty=30)
    assert p.leaves_qty == 70
    assert not p.is_terminal
    for st_ in OrdStatus:
        p.state = st_
        assert p.is_terminal == (st_ in TERMINAL_STATUSES)
        assert p.leaves_qty == (0 if st_ in TERMINAL_STATUSES else 70)


def test_child_open_qty_and_fill_event() -> None:
    c = _child(qty=100, state=S.NEW, cum_qty=30)
    assert c.open_qty == 70
    assert c.fill_event(69) is CE.PARTIAL_FILL
    assert c.fill_event(70) is CE.FULL_FILL
    assert c.fill_event(71) is CE.FULL_FILL  # over-fills are capped by the engine before apply
    for st_ in OrdStatus:
        c.state = st_
        assert c.is_terminal == (st_ in TERMINAL_STATUSES)
        assert c.open_qty == (0 if st_ in TERMINAL_STATUSES else 70)


def test_parent_partial_then_full_fill_bookkeeping() -> None:
    p = _parent(qty=100)
    p.apply(PE.ACCEPT)
    assert p.fill(30, 19000) is S.PARTIALLY_FILLED
    assert (p.cum_qty, p.notional_ticks, p.leaves_qty) == (30, 30 * 19000, 70)
    assert p.fill(50, 19002) is S.PARTIALLY_FILLED
    assert (p.cum_qty, p.notional_ticks, p.leaves_qty) == (80, 30 * 19000 + 50 * 19002, 20)
    assert p.fill(20, 18999) is S.FILLED
    assert p.cum_qty == 100
    assert p.notional_ticks == 30 * 19000 + 50 * 19002 + 20 * 18999
    assert p.leaves_qty == 0
    assert p.is_terminal


def test_parent_single_full_fill_from_new() -> None:
    p = _parent(qty=100, state=S.NEW)
    assert p.fill(100, 5) is S.FILLED
    assert (p.cum_qty, p.notional_ticks, p.leaves_qty) == (100, 500, 0)


def test_parent_fill_while_pending_cancel_stays_pending_then_fills() -> None:
    p = _parent(qty=100, state=S.NEW)
    p.apply(PE.CANCEL_REQUESTED)
    assert p.fill(40, 10) is S.PENDING_CANCEL
    assert p.leaves_qty == 60
    assert p.apply(PE.CANCEL_REFUSED) is S.PARTIALLY_FILLED
    p.apply(PE.CANCEL_REQUESTED)
    assert p.fill(60, 10) is S.FILLED


@pytest.mark.parametrize("qty", [0, -1, -100, 71, 1000])
def test_parent_fill_rejects_bad_qty(qty: int) -> None:
    p = _parent(qty=100, state=S.PARTIALLY_FILLED, cum_qty=30)
    p.notional_ticks = 30 * 7
    with pytest.raises(ValueError, match="P1"):
        p.fill(qty, 7)
    assert (p.state, p.cum_qty, p.notional_ticks) == (S.PARTIALLY_FILLED, 30, 30 * 7)


@pytest.mark.parametrize("state", [S.PENDING_NEW, S.CANCELED, S.REJECTED, S.EXPIRED])
def test_parent_fill_in_state_without_fill_transition_is_illegal(state: OrdStatus) -> None:
    p = _parent(qty=100, state=state, cum_qty=10)
    with pytest.raises(IllegalTransitionError):
        p.fill(5, 7)
    assert (p.state, p.cum_qty, p.notional_ticks) == (state, 10, 0)


def test_parent_fill_after_filled_rejected() -> None:
    p = _parent(qty=100, state=S.NEW)
    p.fill(100, 1)
    with pytest.raises(ValueError):
        p.fill(1, 1)
    assert (p.state, p.cum_qty) == (S.FILLED, 100)


# ------------------------------------------------------------- property test


def _child_fill(child: ChildOrder, qty: int) -> None:
    """Book a venue fill on a child the way the engine does: cap to the open
    quantity, then apply the event and the quantity."""
    qty = min(qty, child.qty - child.cum_qty)
    if qty <= 0:
        raise ValueError("nothing open")
    child.apply(child.fill_event(qty))
    child.cum_qty += qty


_CHILD_STEP = st.one_of(
    st.tuples(st.just("fill"), st.integers(min_value=1, max_value=150)),
    st.tuples(st.sampled_from(list(ChildEvent)), st.just(0)),
)
_PARENT_STEP = st.one_of(
    st.tuples(st.just("fill"), st.integers(min_value=-5, max_value=150)),
    st.tuples(st.sampled_from(list(ParentEvent)), st.just(0)),
)


def _check_parent(p: ParentOrder) -> None:
    assert 0 <= p.cum_qty <= p.qty
    if p.state is S.FILLED:
        assert p.cum_qty == p.qty
    if p.state in (S.NEW, S.PENDING_NEW):
        assert p.cum_qty == 0
    if p.state is S.PARTIALLY_FILLED:
        assert 0 < p.cum_qty < p.qty
    if not p.is_terminal:
        assert p.leaves_qty == p.qty - p.cum_qty
    else:
        assert p.leaves_qty == 0


@DETERMINISTIC
@given(qty=st.integers(min_value=1, max_value=120), steps=st.lists(_PARENT_STEP, max_size=40))
def test_parent_random_sequences(qty: int, steps: list[tuple[object, int]]) -> None:
    p = _parent(qty=qty)
    terminal: OrdStatus | None = None
    for what, n in steps:
        before = (p.state, p.cum_qty, p.notional_ticks)
        try:
            if what == "fill":
                p.fill(n, 100)
            else:
                assert isinstance(what, ParentEvent)
                if what in (PE.PARTIAL_FILL, PE.FULL_FILL):
                    continue  # fills go through fill(), which keeps cum_qty in step
                p.apply(what)
        except (IllegalTransitionError, ValueError):
            assert (p.state, p.cum_qty, p.notional_ticks) == before
        if terminal is not None:
            assert (p.state, p.cum_qty, p.notional_ticks) == before, "terminal states are absorbing"
        _check_parent(p)
        if p.is_terminal:
            terminal = p.state
        assert p.notional_ticks == p.cum_qty * 100


@DETERMINISTIC
@given(
    parent_qty=st.integers(min_value=1, max_value=300),
    plan=st.lists(st.lists(_CHILD_STEP, max_size=12), min_size=1, max_size=6),
)
def test_children_and_parent_random_sequences(parent_qty: int, plan: list[list[tuple[object, int]]]) -> None:
    """Children are cut from the parent's leaves one after another; random
    venue events go through the child machine and fills go on to the parent.
    cum_qty never exceeds qty anywhere and terminal states never change."""
    parent = _parent(qty=parent_qty)
    parent.apply(PE.ACCEPT)
    for n, steps in enumerate(plan):
        if parent.is_terminal:
            break
        child = _child(qty=parent.leaves_qty)
        child.child_id = f"C{n}"
        for what, q in steps:
            before = (child.state, child.cum_qty)
            was_terminal = child.is_terminal
            try:
                if what == "fill":
                    room = child.open_qty
                    _child_fill(child, q)
                    booked = child.cum_qty - before[1]
                    assert booked == min(q, room)
                    parent.fill(booked, 100)
                else:
                    assert isinstance(what, ChildEvent)
                    if what in (CE.PARTIAL_FILL, CE.FULL_FILL):
                        continue
                    child.apply(what)
                    if what is CE.ACK and child.acked_ns is None:
                        child.acked_ns = n  # as the engine records the first ack
            except (IllegalTransitionError, ValueError):
                assert (child.state, child.cum_qty) == before
            if was_terminal:
                assert (child.state, child.cum_qty) == before, "terminal states are absorbing"
            assert 0 <= child.cum_qty <= child.qty
            assert (child.state is S.FILLED) == (child.cum_qty == child.qty)
            if child.state is S.PENDING_NEW:
                assert child.acked_ns is None and child.cum_qty == 0
            assert child.open_qty <= parent.leaves_qty
            _check_parent(parent)
        if not child.is_terminal:
            child.apply(CE.CANCELED if child.state is not S.PENDING_NEW else CE.REJECT)
        assert child.is_terminal
    _check_parent(parent)


def test_replaced_to_what_is_filled_ends_the_parent_filled() -> None:
    # The replace's terms are in place (qty = what is filled) before REPLACED.
    p = _parent(state=S.PENDING_REPLACE, cum_qty=40)
    p.qty = 40
    assert p.apply(PE.REPLACED) is S.FILLED
    assert p.leaves_qty == 0


def test_fills_during_a_pending_replace_keep_it_pending_until_the_last() -> None:
    p = _parent(state=S.PENDING_REPLACE, cum_qty=0)
    assert p.fill(10, 100) is S.PENDING_REPLACE
    assert p.fill(p.qty - 10, 100) is S.FILLED
