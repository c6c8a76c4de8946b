"""One parent's whole story, read back from the journal (``sor journal
--parent``), and the walk that ties every journaled input and command to
the parent it concerns (also what ``router.journal.export`` reads).

The journal holds the engine's inputs and outputs, not its state: which
parent a child belongs to is not written anywhere. The walk rebuilds that
link the way the engine makes it. A child is sent either for a new parent
(the step of its ``NewOrderReceived``, whose decision names the OrderID)
or for the parent of the child a venue just answered (the next wave); every
later command and report names the child or the OrderID itself. The walk
follows a restored session's chain (``SessionInfo.restored_from``), so a
parent that arrived before a restart keeps its story after it.

Prices stay ticks in the structured value; the formatter turns them into
decimals with the symbol's tick size from the session's own configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Final, Protocol

import msgspec

from router.domain.commands import (
    CancelChild,
    Command,
    RejectCancel,
    RejectOrder,
    ReportToOms,
    SendChildOrder,
    SubscribeMarketData,
)
from router.domain.decision import Decision
from router.domain.events import (
    CancelAllRequested,
    CancelRequested,
    EngineEvent,
    InvalidOrderReceived,
    KillSwitchEngaged,
    NewOrderReceived,
    OmsSessionChanged,
    ReplaceRequested,
    VenueCancelRejected,
    VenueEnableChanged,
    VenueReport,
)
from router.domain.types import CxlRejReason, ExecType, OrdStatus, OrdType, Urgency
from router.features.catalogue import FEATURES
from router.journal import records
from router.journal.store import JournalError, Row, SessionInfo

_MD_TAG: Final = b"\xa4type\xb2MarketDataReceived"
"""How a journaled market-data event begins (msgspec writes the tag first):
the walk skips those without decoding them, they concern no parent."""

AVG_PX_QUANTUM: Final = Decimal("1e-8")
"""AvgPx's precision, as the FIX edge writes it."""


class Reader(Protocol):
    """What the walk reads of a journal store (``SqliteStore`` and any other)."""

    def sessions(self) -> list[SessionInfo]: ...

    def records(self, session_id: int) -> Iterator[Row]: ...


class ParentKeyError(LookupError):
    """The key names no parent, or more than one."""


class UnknownParentError(ParentKeyError):
    """No parent in the journal answers to the key."""


class AmbiguousParentError(ParentKeyError):
    """More than one parent answers to the key."""


# ------------------------------------------------------------------ values

Item = EngineEvent | Command | Decision


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened to a parent, as journaled."""

    session_id: int
    seq: int
    """The journal seq of the input this came from (or is)."""
    ts_ns: int
    """When the input happened (the engine's clock for what it returned)."""
    cause: str
    """The input's type name: for a command, what the engine answered."""
    item: Item


class ChildStory(msgspec.Struct, kw_only=True):
    """One child: what was sent, what the venue said, how it ended."""

    order: SendChildOrder
    session_id: int
    seq: int
    sent_ns: int
    wave: int
    """1 for the children sent on arrival, then one more per later send."""
    reports: list[VenueReport] = msgspec.field(default_factory=list)
    cancels: list[CancelChild] = msgspec.field(default_factory=list)
    cancel_rejects: list[VenueCancelRejected] = msgspec.field(default_factory=list)
    filled_qty: int = 0
    notional_ticks: int = 0
    """Sum of fill qty x px in ticks."""
    acked_ns: int | None = None
    first_fill_ns: int | None = None
    done_ns: int | None = None
    state: str = "SENT"
    """The last OrdStatus the venue gave (its name); "SENT" before any,
    "LOST" when the venue no longer knew the child."""

    @property
    def fills(self) -> list[VenueReport]:
        return [r for r in self.reports if r.exec_type is ExecType.TRADE]


_TERMINAL: Final = {OrdStatus.FILLED.name, OrdStatus.CANCELED.name, OrdStatus.REJECTED.name,
                    OrdStatus.EXPIRED.name, "LOST"}


def _child_saw(c: ChildStory, r: VenueReport) -> None:
    c.reports.append(r)
    if r.exec_type is ExecType.NEW and c.acked_ns is None:
        c.acked_ns = r.recv_ns
    if r.exec_type is ExecType.TRADE and r.last_qty > 0:
        c.filled_qty += r.last_qty
        c.notional_ticks += r.last_qty * r.last_px_ticks
        if c.first_fill_ns is None:
            c.first_fill_ns = r.recv_ns
    elif r.exec_type.name == "ORDER_STATUS" and r.cum_qty > c.filled_qty:
        # The venue's answer to a status query may tell of fills the router
        # never saw one by one.
        c.filled_qty = r.cum_qty
        notional = getattr(r, "cum_notional_ticks", 0)
        if notional:
            c.notional_ticks = notional
    c.state = r.ord_status.name
    if c.state in _TERMINAL and c.done_ns is None:
        c.done_ns = r.recv_ns


def _child_refused(c: ChildStory, ev: VenueCancelRejected) -> None:
    c.cancel_rejects.append(ev)
    if ev.reason == CxlRejReason.UNKNOWN_ORDER and c.state not in _TERMINAL:
        c.state = "LOST"
        c.done_ns = ev.recv_ns


class ParentStory(msgspec.Struct, kw_only=True):
    order_id: str
    """The router's OrderID ("NONE" for a NewOrderSingle rejected before one was given)."""
    session_id: int
    """The journal session the parent arrived in."""
    sessions: tuple[int, ...]
    """The sessions its story was read from (a restored chain)."""
    tick_size: str
    order: NewOrderReceived | InvalidOrderReceived | None = None
    decision: Decision | None = None
    entries: list[Entry] = msgspec.field(default_factory=list)
    """Everything, in the order the engine took it."""
    children: dict[str, ChildStory] = msgspec.field(default_factory=dict)
    reports: list[ReportToOms | RejectOrder] = msgspec.field(default_factory=list)
    """Every ExecutionReport the OMS was sent for this parent."""
    cancel_requests: list[CancelRequested | ReplaceRequested] = msgspec.field(default_factory=list)
    cancel_rejects: list[RejectCancel] = msgspec.field(default_factory=list)

    @property
    def cl_ord_id(self) -> str:
        return self.order.cl_ord_id if self.order is not None else ""

    @property
    def final(self) -> ReportToOms | RejectOrder | None:
        return self.reports[-1] if self.reports else None


def feature_names(width: int) -> tuple[str, ...]:
    """The names of a decision's feature columns: the catalogue's when the
    width matches this build's, else positional (``f0``, ``f1``, ...)."""
    if width == len(FEATURES):
        return tuple(f.name for f in FEATURES)
    return tuple(f"f{i}" for i in range(width))


def shared_features(width: int) -> tuple[bool, ...]:
    """Per column: the same in every venue row (market and order groups)."""
    if width == len(FEATURES):
        return tuple(f.group != "venue" for f in FEATURES)
    return (False,) * width


# ------------------------------------------------------------------ the walk


def chains(sessions: Sequence[SessionInfo]) -> list[list[SessionInfo]]:
    """The journal's sessions as restore chains, oldest first in each: a
    session restored from another continues its chain. Chains are listed
    newest last."""
    by_id = {s.session_id: s for s in sessions}
    followers: dict[int, list[SessionInfo]] = {}
    for s in sessions:
        if s.restored_from in by_id:
            followers.setdefault(s.restored_from, []).append(s)
    out: list[list[SessionInfo]] = []
    for s in sessions:
        if s.session_id in followers:
            continue  # not a chain's end
        chain = [s]
        seen = {s.session_id}
        while chain[0].restored_from in by_id and chain[0].restored_from not in seen:
            chain.insert(0, by_id[chain[0].restored_from])
            seen.add(chain[0].session_id)
        out.append(chain)
    return out


def chain_through(sessions: Sequence[SessionInfo], session_id: int) -> list[SessionInfo]:
    """The chain ``session_id`` belongs to (raises JournalError when absent)."""
    for chain in chains(sessions):
        if any(s.session_id == session_id for s in chain):
            return chain
    raise JournalError(f"no session {session_id} (sessions: {[s.session_id for s in sessions]})")


def tick_sizes(info: SessionInfo) -> dict[str, str]:
    """symbol -> tick size, from the configuration the session ran with."""
    try:
        cfg = msgspec.json.decode(info.config)
    except msgspec.DecodeError:
        return {}
    syms = cfg.get("symbols", []) if isinstance(cfg, dict) else []
    return {str(s["symbol"]): str(s.get("tick_size", "0.01")) for s in syms
            if isinstance(s, dict) and "symbol" in s}


class Walk:
    """Reads a chain of sessions step by step and says, for every input and
    command, which parent it concerns: ``on(parent_key, entry)`` is called
    in journal order, with None for what concerns no parent the walk knows
    (a venue's word on a child it never saw, a reject of a cancel for an
    unknown order, a subscription). A parent's key is its OrderID; a
    NewOrderSingle refused before it got one is keyed
    ``NONE@<session>:<seq>``."""

    def __init__(self, on: Callable[[str | None, Entry], None]) -> None:
        self._on = on
        self.child_parent: dict[str, str] = {}
        self.cl_parent: dict[tuple[str, str], str] = {}
        """(OMS session, ClOrdID of the NewOrderSingle) -> parent key."""

    def run(self, chain: Iterable[SessionInfo], rows_of: Callable[[int], Iterable[Row]]) -> None:
        for info in chain:
            sid = info.session_id
            for st in records.steps(rows_of(sid)):
                if st.commands is None and st.decision is None and st.event.find(_MD_TAG, 0, 32) >= 0:
                    continue  # market data: no parent's business, the bulk of a journal
                self.step(sid, st)

    def step(self, sid: int, st: records.RecordedStep) -> None:
        ev = records.decode_event(st.event)
        cmds = records.decode_commands(st.commands) if st.commands is not None else []
        decision = records.decode_decision(st.decision) if st.decision is not None else None
        ts = ev.ts_ns
        cause = type(ev).__name__

        ctx: str | None = None
        match ev:
            case NewOrderReceived() | InvalidOrderReceived():
                cl = (ev.session, ev.cl_ord_id)
                if decision is not None:
                    ctx = decision.order_id
                else:
                    ctx = next((c.order_id for c in cmds if isinstance(c, ReportToOms)), None)
                if ctx is None:
                    # Refused before it had an OrderID: a duplicate ClOrdID is
                    # part of the first order's story, anything else its own.
                    ctx = self.cl_parent.get(cl) or f"NONE@{sid}:{st.seq}"
                self.cl_parent.setdefault(cl, ctx)
            case VenueReport() | VenueCancelRejected():
                ctx = self.child_parent.get(ev.child_id)
            case CancelRequested():
                ctx = self.cl_parent.get((ev.session, ev.orig_cl_ord_id))
            case ReplaceRequested():
                ctx = self.cl_parent.get((ev.session, ev.orig_cl_ord_id))
                if ctx is not None:
                    # Its ClOrdID names the parent from now on (if it is
                    # refused, nothing will name it again).
                    self.cl_parent.setdefault((ev.session, ev.cl_ord_id), ctx)
            case _:
                ctx = None
        keys: list[str | None] = []
        for c in cmds:
            key: str | None
            if isinstance(c, SendChildOrder):
                # The new parent's children, or the next wave of the parent
                # whose child the venue just answered.
                key = ctx or next((r.order_id for r in cmds if isinstance(r, ReportToOms)), None)
                if key is not None:
                    self.child_parent[c.child_id] = key
            elif isinstance(c, ReportToOms | RejectCancel):
                key = c.order_id if c.order_id != "NONE" else ctx
            elif isinstance(c, RejectOrder):
                key = ctx
            elif isinstance(c, SubscribeMarketData):
                key = None
            else:
                # Any command about one child (cancels, status queries).
                child_id = getattr(c, "child_id", None)
                key = self.child_parent.get(child_id) if isinstance(child_id, str) else None
            keys.append(key)

        on = self._on

        def emit(key: str | None, item: Item) -> None:
            on(key, Entry(session_id=sid, seq=st.seq, ts_ns=ts, cause=cause, item=item))

        emit(ctx, ev)
        if ctx is None and isinstance(ev, CancelAllRequested | OmsSessionChanged | KillSwitchEngaged
                                      | VenueEnableChanged):
            # The shutdown's (or the kill switch's) reason, in every story it ends.
            for key in dict.fromkeys(k for k in keys if k is not None):
                emit(key, ev)
        if decision is not None:
            emit(decision.order_id, decision)
        for key, c in zip(keys, cmds):
            emit(key, c)


# ------------------------------------------------------------------ the story


class Collect:
    """The walk's output kept per parent (in order of arrival), and what
    concerned no parent."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Entry]] = {}
        self.orphans: list[Entry] = []

    def __call__(self, key: str | None, e: Entry) -> None:
        if key is None:
            self.orphans.append(e)
        else:
            es = self.entries.get(key)
            if es is None:
                es = self.entries[key] = []
            es.append(e)

    @classmethod
    def of(cls, store: Reader, chain: Sequence[SessionInfo]) -> Collect:
        col = cls()
        Walk(col).run(chain, store.records)
        return col


def build_story(key: str, entries: list[Entry], chain: Sequence[SessionInfo]) -> ParentStory:
    """A parent's story from its entries (in journal order)."""
    by_id = {s.session_id: s for s in chain}
    first = entries[0].session_id if entries else chain[0].session_id
    story = ParentStory(order_id=key.split("@", 1)[0], session_id=first,
                        sessions=tuple(s.session_id for s in chain if s.session_id >= first), tick_size="0.01")
    sends = 0
    last_send_seq: tuple[int, int] | None = None
    for e in entries:
        it = e.item
        story.entries.append(e)
        if isinstance(it, NewOrderReceived | InvalidOrderReceived):
            if story.order is None:
                story.order = it
        elif isinstance(it, Decision):
            story.decision = story.decision or it
        elif isinstance(it, SendChildOrder):
            if last_send_seq != (e.session_id, e.seq):
                sends += 1
                last_send_seq = (e.session_id, e.seq)
            story.children[it.child_id] = ChildStory(order=it, session_id=e.session_id, seq=e.seq, sent_ns=e.ts_ns,
                                                     wave=sends)
        elif isinstance(it, VenueReport):
            c = story.children.get(it.child_id)
            if c is not None:
                _child_saw(c, it)
        elif isinstance(it, VenueCancelRejected):
            c = story.children.get(it.child_id)
            if c is not None:
                _child_refused(c, it)
        elif isinstance(it, CancelChild):
            c = story.children.get(it.child_id)
            if c is not None:
                c.cancels.append(it)
        elif isinstance(it, ReportToOms | RejectOrder):
            story.reports.append(it)
        elif isinstance(it, CancelRequested | ReplaceRequested):
            story.cancel_requests.append(it)
        elif isinstance(it, RejectCancel):
            story.cancel_rejects.append(it)
    sym = story.order.symbol if story.order is not None else ""
    info = by_id.get(first)
    if info is not None:
        story.tick_size = tick_sizes(info).get(sym, "0.01")
    return story


def _names(key: str, oms_session: str | None, it: Item) -> bool:
    """Whether ``it`` names its parent ``key`` (OrderID, or a ClOrdID)."""
    if isinstance(it, Decision):
        return it.order_id == key
    if isinstance(it, ReportToOms | RejectCancel) and it.order_id == key:
        return True
    if isinstance(it, NewOrderReceived | InvalidOrderReceived | CancelRequested | ReplaceRequested | RejectOrder
                  | ReportToOms | RejectCancel):
        return it.cl_ord_id == key and (oms_session is None or it.session == oms_session)
    return False


class _Find:
    """The walk's output kept only for the parents ``key`` names. A parent
    named from its first entry (its OrderID in the decision, its ClOrdID in
    the NewOrderSingle) is kept as the walk goes; one named only later (by
    a cancel's ClOrdID) is marked for a second walk."""

    def __init__(self, key: str, oms_session: str | None, want: set[str] | None = None) -> None:
        self.key, self.oms_session = key, oms_session
        self.want = want
        self.seen: set[str] = set()
        self.kept: dict[str, list[Entry]] = {}
        self.late: set[str] = set()

    def __call__(self, k: str | None, e: Entry) -> None:
        if k is None:
            return
        kept = self.kept.get(k)
        if kept is not None:
            kept.append(e)
            return
        if self.want is not None:
            if k in self.want:
                self.kept[k] = [e]
            return
        first = k not in self.seen
        if first:
            self.seen.add(k)
        if _names(self.key, self.oms_session, e.item):
            if first:
                self.kept[k] = [e]
            else:
                self.late.add(k)


def parent_story(store: Reader, session_id: int | None, key: str, *, oms_session: str | None = None) -> ParentStory:
    """The story of the parent ``key`` names: its OrderID, or the ClOrdID of
    its NewOrderSingle or of a cancel for it (within ``oms_session`` when
    given). ``session_id`` limits the search to that session's restore
    chain; without it every chain is searched, and a key found in more than
    one is ambiguous. Raises UnknownParentError or AmbiguousParentError
    (both ParentKeyError), or JournalError for an unknown session."""
    sessions = store.sessions()
    if not sessions:
        raise UnknownParentError(f"no parent {key!r}: the journal has no session")
    scope = [chain_through(sessions, session_id)] if session_id is not None else chains(sessions)[::-1]
    found: list[ParentStory] = []
    for chain in scope:
        find = _Find(key, oms_session)
        Walk(find).run(chain, store.records)
        kept = find.kept
        if find.late:
            again = _Find(key, oms_session, want=find.late)
            Walk(again).run(chain, store.records)
            kept = {**kept, **again.kept}
        # The key's own OrderID wins over a ClOrdID equal to it.
        hits = [k for k in kept if k == key] or list(kept)
        found += [build_story(k, kept[k], chain) for k in hits]
    if not found:
        where = f"session {session_id}'s chain" if session_id is not None else "the journal"
        raise UnknownParentError(f"no parent {key!r} in {where} (an OrderID, or a ClOrdID the OMS sent)")
    if len(found) > 1:
        what = ", ".join(f"{s.order_id} (session {s.session_id}, OMS {s.order.session if s.order else '?'})"
                         for s in found[:6])
        raise AmbiguousParentError(f"{key!r} names {len(found)} parents: {what}; give the OrderID, --session "
                                   "or --oms-session")
    return found[0]


# ------------------------------------------------------------------ the text


def px(ticks: int | None, tick_size: str) -> str:
    """A price in ticks as the decimal the FIX edge would write."""
    if ticks is None:
        return "MKT"
    return format(ticks * Decimal(tick_size), "f")


def avg_px(notional_ticks: int, qty: int, tick_size: str) -> str:
    if qty == 0:
        return "0"
    return format((Decimal(notional_ticks) * Decimal(tick_size) / qty).quantize(AVG_PX_QUANTUM).normalize(), "f")


def _num(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.0f}"


def _order_text(o: NewOrderReceived | InvalidOrderReceived, tick: str) -> str:
    if isinstance(o, InvalidOrderReceived):
        return f"{o.side.name} {o.qty_raw} {o.symbol} (invalid: {o.text})"
    price = px(o.price_ticks, tick) if o.ord_type is OrdType.LIMIT else "MARKET"
    strat = f", strategy {o.strategy}" if o.strategy else ""
    urgency = f", urgency {o.urgency.value}" if o.urgency is not Urgency.NORMAL else ""
    return f"{o.side.name} {o.qty} {o.symbol} {o.ord_type.name} {price} {o.tif.name}{strat}{urgency}"


def _decision_lines(d: Decision, tick: str) -> list[str]:
    out = [f"decision: strategy {d.strategy or '-'}, plan {d.plan.name} ({len(d.plan.waves)} waves, then "
           f"{d.plan.final}), model {d.model_version or '-'}, fallback {d.fallback or 'none'}, "
           f"propensity {d.propensity:.4g}"
           + (" (explored: the lead is not the model's cheapest)" if d.explored else "")
           + (f", expected done in {d.expected_completion_ms:.1f} ms" if d.expected_completion_ms is not None else "")]
    if d.ranking:
        out.append(("  ranking (explored lead first): " if d.explored else "  ranking (cheapest first): ")
                   + " < ".join(d.ranking))
    for i, w in enumerate(d.plan.waves, 1):
        total = sum(s.weight for s in w.slices) or 1.0
        parts = [f"{s.venue} {100 * s.weight / total:.0f}% {s.tif.name} {px(s.limit_ticks, tick)}"
                 + (f" {s.timeout_ms} ms" if s.timeout_ms else "") for s in w.slices]
        out.append(f"  wave {i}: " + ", ".join(parts))
    if d.stages_ns:
        out.append("  stages: " + ", ".join(f"{n} {ns / 1000:.1f} us" for n, ns in d.stages_ns))
    venues = d.venues
    if d.scores is not None or d.costs is not None:
        out.append(f"  {'venue':<8}{'cost_bps':>10}{'fill_prob':>11}{'markout_bps':>13}{'exp_cost':>10}")
        for i, v in enumerate(venues):
            sc = d.scores[i] if d.scores is not None and i < len(d.scores) else None
            cells = [f"{_num(float(x)):>{w}}" for x, w in zip(sc, (10, 11, 13))] if sc is not None else \
                [f"{'-':>10}", f"{'-':>11}", f"{'-':>13}"]
            cost = f"{_num(float(d.costs[i])):>10}" if d.costs is not None and i < len(d.costs) else f"{'-':>10}"
            out.append(f"  {v:<8}" + "".join(cells) + cost)
    if d.features is not None and d.features.ndim == 2 and d.features.shape[0]:
        x = d.features
        names, shared = feature_names(x.shape[1]), shared_features(x.shape[1])
        common = [f"{n} {_num(float(x[0, j]))}" for j, n in enumerate(names) if shared[j]]
        if common:
            out.append("  features at arrival:")
            line = "   "
            for c in common:
                if len(line) + len(c) + 2 > 110:
                    out.append(line.rstrip(","))
                    line = "   "
                line += f" {c},"
            out.append(line.rstrip(","))
        per_venue = [j for j in range(len(names)) if not shared[j]]
        if per_venue:
            width = max(len(names[j]) for j in per_venue)
            out.append(f"    {'':<{width}}" + "".join(f"{v:>10}" for v in venues))
            for j in per_venue:
                out.append(f"    {names[j]:<{width}}" + "".join(f"{_num(float(x[i, j])):>10}"
                                                              for i in range(x.shape[0])))
    return out


def _ms(ts: int, t0: int) -> str:
    return f"{(ts - t0) / 1e6:+10.3f} ms"


def _entry_line(e: Entry, story: ParentStory, t0: int) -> str | None:
    it, tick = e.item, story.tick_size
    t = _ms(e.ts_ns, t0)
    children = story.children
    match it:
        case NewOrderReceived() | InvalidOrderReceived():
            return f"{t}  OMS    -> NewOrderSingle {it.cl_ord_id}: {_order_text(it, tick)}"
        case Decision():
            return f"{t}  router decided: {it.strategy or '-'} ({it.plan.name})"
        case SendChildOrder():
            c = children.get(it.child_id)
            wave = f" (wave {c.wave})" if c is not None else ""
            return (f"{t}  {it.venue:<6} <- child {it.child_id}: {it.side.name} {it.qty} {it.ord_type.name} "
                    f"{px(it.price_ticks, tick)} {it.tif.name}{wave}")
        case CancelChild():
            why = {"TimerFired": "timer", "CancelRequested": "OMS cancel",
                   "ReplaceRequested": "OMS replace", "CancelAllRequested": "cancel-all",
                   "OmsSessionChanged": "OMS disconnect", "KillSwitchEngaged": "kill switch",
                   "VenueEnableChanged": "venue disabled",
                   "VenueReport": "wave done"}.get(e.cause, e.cause)
            return f"{t}  {it.venue:<6} <- cancel {it.child_id} ({it.cancel_id}) on {why}"
        case VenueReport():
            what = it.exec_type.name
            if it.exec_type is ExecType.TRADE:
                what = f"fill {it.last_qty} @ {px(it.last_px_ticks, tick)}"
            elif it.exec_type is ExecType.NEW:
                what = "ack"
            text = f" {it.text!r}" if it.text else ""
            return (f"{t}  {it.venue:<6} -> {it.child_id} {what} exec {it.exec_id}, {it.ord_status.name} "
                    f"cum {it.cum_qty} leaves {it.leaves_qty}{text}")
        case VenueCancelRejected():
            return f"{t}  {it.venue:<6} -> cancel of {it.child_id} refused (reason {it.reason}): {it.text}"
        case CancelRequested():
            kind = "OrderCancelReplaceRequest" if it.replace else "OrderCancelRequest"
            return f"{t}  OMS    -> {kind} {it.cl_ord_id} (orig {it.orig_cl_ord_id})"
        case ReplaceRequested():
            terms = it.error or f"{it.qty} {it.ord_type.name} {px(it.price_ticks, tick)} {it.tif.name}"
            return f"{t}  OMS    -> OrderCancelReplaceRequest {it.cl_ord_id} (orig {it.orig_cl_ord_id}): {terms}"
        case CancelAllRequested():
            return f"{t}  router cancel-all: {it.reason}"
        case OmsSessionChanged():
            return f"{t}  OMS session {it.session} {'up' if it.up else 'down'}"
        case KillSwitchEngaged():
            scope = "all" if it.scope_kind == "all" else f"{it.scope_kind} {it.scope}"
            return f"{t}  operator {it.who}: kill switch ({scope}){': ' + it.reason if it.reason else ''}"
        case VenueEnableChanged():
            return (f"{t}  operator {it.who}: venue {it.venue} {'enabled' if it.enabled else 'disabled'}"
                    f"{' (working children canceled)' if it.cancel_working and not it.enabled else ''}")
        case ReportToOms():
            last = (f" last {it.last_qty} @ {px(it.last_px_ticks, tick)} {it.last_mkt or ''}".rstrip()
                    if it.exec_type is ExecType.TRADE else "")
            text = f" {it.text!r}" if it.text else ""
            return (f"{t}  OMS    <- ER {it.exec_type.name}/{it.ord_status.name}{last}, cum {it.cum_qty} "
                    f"leaves {it.leaves_qty} avg {avg_px(it.avg_px_ticks_num, it.cum_qty, tick)} "
                    f"exec {it.exec_id}{text}")
        case RejectOrder():
            return f"{t}  OMS    <- ER REJECTED {it.reason.name}: {it.text}"
        case RejectCancel():
            return f"{t}  OMS    <- OrderCancelReject {it.cl_ord_id} ({it.reason.name}): {it.text}"
        case _:
            child_id = getattr(it, "child_id", None)
            venue = getattr(it, "venue", "")
            return f"{t}  {venue:<6} <- {type(it).__name__} {child_id or ''}".rstrip()


def format_story(story: ParentStory) -> str:
    tick = story.tick_size
    o = story.order
    t0 = o.recv_ns if o is not None else (story.entries[0].ts_ns if story.entries else 0)
    sessions = ", ".join(str(s) for s in story.sessions)
    lines = [f"parent {story.order_id}" + (f" (ClOrdID {o.cl_ord_id}, OMS session {o.session})" if o else "")
             + f", journal session{'s' if len(story.sessions) > 1 else ''} {sessions}"]
    if o is not None:
        lines.append(f"  {_order_text(o, tick)}, arrived at {t0} ns; tick size {tick}; times below from arrival")
    if story.decision is not None:
        lines += _decision_lines(story.decision, tick)
    lines.append("timeline (-> from the OMS or a venue to the router, <- from the router):")
    for e in story.entries:
        line = _entry_line(e, story, t0)
        if line is not None:
            lines.append(line)
    if story.children:
        lines.append("children:")
        for c in story.children.values():
            s = c.order
            first = (f", first fill {(c.first_fill_ns - c.sent_ns) / 1e6:.3f} ms after it was sent"
                     if c.first_fill_ns is not None else "")
            avg = f" avg {avg_px(c.notional_ticks, c.filled_qty, tick)}" if c.filled_qty else ""
            lines.append(f"  {s.child_id} {s.venue}: {s.qty} {s.ord_type.name} {px(s.price_ticks, tick)} "
                         f"{s.tif.name} (wave {c.wave}), filled {c.filled_qty}{avg}, {c.state}{first}")
    f = story.final
    if isinstance(f, ReportToOms):
        lines.append(f"outcome: {f.ord_status.name}, filled {f.cum_qty} of {f.order_qty} avg "
                     f"{avg_px(f.avg_px_ticks_num, f.cum_qty, tick)}; {len(story.children)} children, "
                     f"{len(story.reports)} ERs to the OMS")
    elif isinstance(f, RejectOrder):
        lines.append(f"outcome: REJECTED ({f.reason.name}): {f.text}")
    else:
        lines.append("outcome: no report to the OMS recorded")
    return "\n".join(lines)
