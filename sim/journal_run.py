"""A router's journal read back as outcomes: what each decision was and
what became of its parent and its children, in the backtest's own terms
(``sim.backtest.ParentResult``, ``ChildLabel``), so training
(``sor train --journal``), off-policy evaluation (``sor model validate``)
and the backtest measure with one set of definitions.

The journal holds inputs and decisions, not state, so each restore chain
(``router.journal.story.chains``) is fed through a fresh engine built from
the chain's last configuration, with the recorded decisions as its planner,
exactly as restart recovery does (``router.routing.recorded.RecordedPlanner``). What the
engine returns is what the live run sent; it is observed, never executed:

* a ``NewOrderReceived`` with a decision opens a parent's result at the
  engine's own arrival mid (NBBO, ``ParentOrder.arrival_mid2``);
* the ``SendChildOrder`` commands of that step are its first-wave children,
  later ones its later waves;
* a venue's fill report is booked on its child; a fill reported to the OMS
  on the parent, with the venue's configured take fee;
* a final report closes the parent at the NBBO mid then.

Markouts read the NBBO mid the router saw (the simulator's training reads
the true mid, which a live router cannot know): ``mid_at`` is the last mid
at or before a time, from the market data the chain journaled.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from router.config import Config, router_sections
from router.domain.commands import ReportToOms, SendChildOrder
from router.domain.decision import Decision
from router.domain.events import EngineEvent, MarketDataReceived, NewOrderReceived, VenueReport
from router.domain.types import ExecType
from router.engine import Engine, Step
from router.features.engine import market_state
from router.journal import records
from router.journal.records import COMMANDS, DECISION, EVENT
from router.journal.store import JournalStore, SessionInfo, open_store
from router.journal.story import chains
from router.journal.writer import JournalWriter
from router.market.rings import MarketData
from router.metrics.registry import Metrics
from router.routing.baselines import StaticWaterfall
from router.routing.recorded import RecordedPlanner
from sim.backtest import DONE, EPOCH_NS, Backtest, ChildLabel, ParentResult

log = logging.getLogger("sor.journal")


@dataclass(slots=True)
class Logged:
    """One journaled decision and the parent it routed."""

    decision: Decision
    result: ParentResult
    venues_up: frozenset[str]
    """The venues that could have led (``lead_probs`` > 0, or the ranking)."""
    urgency: str = "normal"
    """The parent's urgency (``ParentOrder.urgency``, its wire value)."""


@dataclass
class JournalRun:
    """Every decision of the chains read, keyed by OrderID (unique in a chain;
    ``Logged.result.cl_ord_id`` is the OMS's)."""

    cfg: Config
    """The last chain's configuration (venues, fees, the planner's weights)."""
    logged: dict[str, Logged] = field(default_factory=dict)
    children: dict[str, ChildLabel] = field(default_factory=dict)
    """Child ID -> its label; ``ChildLabel.parent`` is the OrderID."""
    sessions: list[int] = field(default_factory=list)
    span_ns: tuple[int, int] = (0, 0)
    """First and last event read, wall-clock ns (UTC): events carry the
    router's monotonic clock, placed on the wall clock by the session's
    start (``SessionInfo.started_ns``, taken as its first event)."""
    _mids: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def mid_at(self, symbol: str, ts_ns: int) -> float:
        """The router's NBBO mid (ticks) at ``ts_ns``: the last one seen at
        or before it; the first one for an earlier time; 0 if none."""
        ts, mids = self._mids.get(symbol, ([], []))
        if not ts:
            return 0.0
        i = bisect.bisect_right(ts, ts_ns) - 1
        return mids[max(i, 0)]

    @property
    def results(self) -> dict[str, ParentResult]:
        return {k: v.result for k, v in self.logged.items()}

    @property
    def features(self) -> dict[str, npt.NDArray[np.float32]]:
        return {k: v.decision.features for k, v in self.logged.items() if v.decision.features is not None}

    def finished(self) -> Iterator[Logged]:
        """The decisions whose parent ended (filled, canceled, rejected,
        expired) before the journal did and whose arrival mid the router
        knew (a two-sided NBBO): an outcome is measurable."""
        return (lg for lg in self.logged.values() if lg.result.done_ns is not None and lg.result.arrival_mid > 0)


def read_journal(path: str | Path, since_ns: int | None = None, until_ns: int | None = None) -> JournalRun:
    """Every restore chain of the journal at ``path`` (SQLite file or
    PostgreSQL URL); decisions that arrived outside [since, until] (wall
    clock, ns) are read (they shape the engine's state) but not kept."""
    store = open_store(path, readonly=True)
    try:
        all_chains = chains(store.sessions())
        if not all_chains:
            raise ValueError(f"{path}: no session recorded")
        run = JournalRun(cfg=msgspec.json.decode(all_chains[-1][-1].config, type=Config))
        # The engine would log again what the live run logged.
        quiet = [logging.getLogger(n) for n in ("sor.engine", "sor.risk", "sor.routing")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.CRITICAL)
        try:
            for chain in all_chains:
                _read_chain(store, chain, run, since_ns, until_ns)
        finally:
            for lg, lv in zip(quiet, levels):
                lg.setLevel(lv)
        return run
    finally:
        store.close()


def _read_chain(store: JournalStore, chain: list[SessionInfo], run: JournalRun,
                since_ns: int | None, until_ns: int | None) -> None:
    cfg = msgspec.json.decode(chain[-1].config, type=Config)
    md, stats, _ = market_state(cfg)
    planner = RecordedPlanner(StaticWaterfall(cfg))
    engine = Engine(cfg, planner, Metrics([v.name for v in cfg.venues], CollectorRegistry()), chain[-1].id_prefix,
                    market=md, stats=stats)
    fee = {v.name: v.take_fee_bps for v in cfg.venues}
    fee_mkt = {v.last_mkt: v.take_fee_bps for v in cfg.venues}
    fee_mkt.update(fee)
    first, last = run.span_ns
    for info in chain:
        run.sessions.append(info.session_id)
        off: int | None = None
        for st in records.steps(store.records(info.session_id)):
            ev = records.decode_event(st.event)
            dec = records.decode_decision(st.decision) if st.decision is not None else None
            planner.next = dec
            step = engine.handle(ev)
            now = ev.ts_ns
            if off is None:
                off = info.started_ns - now
            wall = now + off
            first = wall if not first else min(first, wall)
            last = max(last, wall)
            if isinstance(ev, MarketDataReceived):
                _note_mid(run, md, now)
            elif isinstance(ev, VenueReport) and ev.exec_type is ExecType.TRADE and ev.last_qty:
                lab = run.children.get(ev.child_id)
                if lab is not None:
                    lab.fills.append((now, ev.last_qty, ev.last_px_ticks))
            if isinstance(ev, NewOrderReceived) and dec is not None and step.decision is dec:
                parent = engine.parents.get(dec.order_id)
                inside = (since_ns is None or wall >= since_ns) and (until_ns is None or wall <= until_ns)
                if parent is not None and inside:
                    res = ParentResult(cl_ord_id=parent.cl_ord_id, symbol=parent.symbol, side=parent.side.sign,
                                       qty=parent.qty, arrival_ns=parent.arrival_ns,
                                       arrival_mid=parent.arrival_mid2 / 2, plan=dec.plan.name)
                    up = frozenset(v for v, p in zip(dec.venues, dec.lead_probs) if p > 0.0) \
                        if dec.lead_probs is not None else frozenset(dec.ranking)
                    run.logged[dec.order_id] = Logged(dec, res, up, parent.urgency.value)
            for c in step.commands:
                if isinstance(c, SendChildOrder):
                    child = engine.children.get(c.child_id)
                    if child is not None and child.parent_id in run.logged:
                        run.children[c.child_id] = ChildLabel(child.parent_id, c.venue, c.qty, now,
                                                              first_wave=isinstance(ev, NewOrderReceived))
                elif isinstance(c, ReportToOms):
                    lg = run.logged.get(c.order_id)
                    if lg is None:
                        continue
                    res = lg.result
                    if c.exec_type is ExecType.TRADE:
                        res.book(now, c.last_mkt or "", c.last_qty, c.last_px_ticks, fee_mkt.get(c.last_mkt or "", 0.0))
                    if c.ord_status in DONE and res.done_ns is None:
                        res.done_ns = now
                        res.end_mid = run.mid_at(res.symbol, now) or res.arrival_mid
    run.span_ns = (first, last)
    for lg in run.logged.values():
        lg.result.mark(run.mid_at)


def _note_mid(run: JournalRun, md: MarketData, now: int) -> None:
    # Every symbol, not only the event's: an incremental message may carry
    # entries of several (offline, and a handful of symbols).
    for sym, s in md.symbol_index.items():
        mid2 = md.consolidated_mid2(s)
        if not mid2:
            continue
        ts, mids = run._mids.setdefault(sym, ([], []))
        if not mids or mids[-1] != mid2 / 2:
            ts.append(now)
            mids.append(mid2 / 2)


class BacktestJournal:
    """Journals a backtest the way the daemon's driver does (each input,
    then its commands, then its decision, through the real writer into a
    real store), so a simulated session can be read back like a live one:
    ``sor backtest --journal``, and the tests of the learning loop."""

    def __init__(self, bt: Backtest, path: str | Path) -> None:
        self.store = open_store(path)
        # The router's sections only, as the daemon records its own config.
        router_cfg = msgspec.json.encode(router_sections(msgspec.to_builtins(bt.cfg))).decode()
        self.session_id = self.store.begin_session(EPOCH_NS, bt.engine.id_prefix, getattr(bt.scorer, "version", ""),
                                                   router_cfg)
        self.writer = JournalWriter(self.store, self.session_id, capacity=1_000_000, max_delay_ms=5,
                                    on_failure=lambda reason: None)
        self.writer.start()
        handle = bt.engine.handle

        def journaled(ev: EngineEvent) -> Step:
            step = handle(ev)
            w = self.writer
            w.append(EVENT, ev.ts_ns, ev)
            if step.commands:
                w.append(COMMANDS, ev.ts_ns, step.commands)
            if step.decision is not None:
                w.append(DECISION, ev.ts_ns, step.decision)
            self.on_step(ev, step)
            return step

        bt.engine.handle = journaled  # type: ignore[method-assign]

    def on_step(self, ev: EngineEvent, step: Step) -> None:
        """Called after each journaled step (tests keep what they need)."""

    def close(self) -> None:
        ok = self.writer.close()
        failed = self.writer.failed
        self.store.close()
        if not ok or failed is not None:
            raise RuntimeError(f"journal writer failed: {failed}")
