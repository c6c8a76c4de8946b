"""``sor replay``: a journaled session fed back through a fresh engine.

The session's own configuration and OrderID prefix rebuild the engine the
daemon ran (``router.app.build_core``); every recorded input goes through
``Engine.handle`` in the recorded order, on the recorded clock, and what it
returns is compared with what was recorded. With the session's model the
commands must be identical: the engine reads no clock and no randomness.
The one input the journal does not hold is wall time inside a scoring run,
so a parent the live model scored over its budget (fallback "over_budget")
is replayed as over budget too.

With ``--model``, the same inputs meet another model: the report says how
many parents it would have routed differently and how (strategy moves).
Only the first parent's decision is comparable after a divergence on the
same parent's later children (their venue answers were recorded for the
children the live model sent), so differences are counted per parent at
its decision.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from router.app import build_core, restore
from router.config import Config
from router.domain.commands import Command
from router.domain.decision import Decision
from router.domain.events import EngineEvent, NewOrderReceived
from router.journal import records
from router.journal.store import JournalError, JournalStore, SessionInfo, open_store
from router.metrics.registry import Metrics


class ReplayReport(msgspec.Struct, kw_only=True):
    session: int
    events: int = 0
    steps_with_commands: int = 0
    commands_same: int = 0
    commands_differ: int = 0
    decisions: int = 0
    decisions_differ: int = 0
    strategy_moves: dict[str, int] = msgspec.field(default_factory=dict)
    """'recorded -> replayed' strategy for the parents decided differently."""
    first_differences: list[str] = msgspec.field(default_factory=list)


class _ForcedFailure:
    """The session's scorer, made to fail where the live one ran over budget."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.force: str | None = None

    @property
    def version(self) -> str:
        return str(self._inner.version)

    @property
    def last_failure(self) -> str | None:
        return self.force or self._inner.last_failure

    def score(self, features: npt.NDArray[np.float32]) -> Any:
        if self.force is not None:
            return None
        return self._inner.score(features)

    def warm(self) -> None:
        self._inner.warm()


def _same_decision(a: Decision, b: Decision) -> bool:
    # Stage timings are wall time; arrays compare by value.
    def arr(x: Any, y: Any) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
    return (a.plan == b.plan and a.ranking == b.ranking and a.strategy == b.strategy
            and a.fallback == b.fallback and a.model_version == b.model_version
            and arr(a.features, b.features) and arr(a.scores, b.scores) and arr(a.costs, b.costs))


def pick_session(store: JournalStore, session: int | None) -> SessionInfo:
    sessions = store.sessions()
    if not sessions:
        raise JournalError(f"{store.path}: no session recorded")
    if session is None:
        return sessions[-1]
    for s in sessions:
        if s.session_id == session:
            return s
    raise JournalError(f"{store.path}: no session {session} (sessions: {[s.session_id for s in sessions]})")


def replay(path: str | Path, session: int | None = None, model: str | None = None,
           keep: int = 10) -> ReplayReport:
    # The engine would log again what the recorded run logged (anomalies,
    # halts): the report is the output.
    quiet = [logging.getLogger(n) for n in ("sor.engine", "sor.routing", "sor.scoring")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        return _replay(path, session, model, keep)
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)


def _replay(path: str | Path, session: int | None, model: str | None, keep: int) -> ReplayReport:
    store = open_store(path, readonly=True)
    try:
        info = pick_session(store, session)
        cfg = msgspec.json.decode(info.config, type=Config)
        # No time budget here: a replay's cold first runs are slower than
        # the live ones, and a budget overrun says nothing about routing. The
        # live run's own overruns are forced back in below.
        mc = msgspec.structs.replace(cfg.model, budget_us=0)
        if model is not None:
            mc = msgspec.structs.replace(mc, path=model)
        cfg = msgspec.structs.replace(cfg, model=mc)
        wrapped: list[_ForcedFailure] = []

        def wrap(scorer: Any) -> _ForcedFailure:
            wrapped.append(_ForcedFailure(scorer))
            return wrapped[0]

        core = build_core(cfg, Metrics([v.name for v in cfg.venues], CollectorRegistry()), info.id_prefix,
                          wrap_scorer=wrap if model is None else None)
        forced = wrapped[0] if wrapped else None
        if info.restored_from:
            # The live daemon started from its predecessors' state.
            restore(core.engine, store, store.lineage(info.restored_from))
        rep = ReplayReport(session=info.session_id)
        rows = list(store.records(info.session_id))
    finally:
        store.close()
    moves: Tally[str] = Tally()
    for st in records.steps(rows):
        seq = st.seq
        ev: EngineEvent = records.decode_event(st.event)
        recorded_cmds: list[Command] = records.decode_commands(st.commands) if st.commands is not None else []
        recorded_dec = records.decode_decision(st.decision) if st.decision is not None else None
        if forced is not None:
            forced.force = (recorded_dec.fallback if recorded_dec is not None
                            and recorded_dec.fallback == "over_budget" else None)
        step = core.engine.handle(ev)
        rep.events += 1
        if step.commands or recorded_cmds:
            rep.steps_with_commands += 1
            if step.commands == recorded_cmds:
                rep.commands_same += 1
            else:
                rep.commands_differ += 1
                if len(rep.first_differences) < keep:
                    rep.first_differences.append(
                        f"#{seq} {type(ev).__name__}: recorded {len(recorded_cmds)} commands, replayed "
                        f"{len(step.commands)}")
        if isinstance(ev, NewOrderReceived) and (step.decision is not None or recorded_dec is not None):
            rep.decisions += 1
            d, r = step.decision, recorded_dec
            if d is None or r is None or not _same_decision(d, r):
                rep.decisions_differ += 1
                moves[f"{r.strategy if r else None} -> {d.strategy if d else None}"] += 1
    rep.strategy_moves = dict(moves.most_common())
    return rep


def format_report(rep: ReplayReport, model: str | None) -> str:
    lines = [f"session {rep.session}: {rep.events} inputs replayed"]
    lines.append(f"  commands: {rep.commands_same} steps identical, {rep.commands_differ} differ "
                 f"(of {rep.steps_with_commands} steps that sent anything)")
    lines.append(f"  decisions: {rep.decisions - rep.decisions_differ} of {rep.decisions} the same"
                 + (f" with model {model}" if model else ""))
    for move, k in rep.strategy_moves.items():
        lines.append(f"    {move:<32} {k:>6}")
    for d in rep.first_differences:
        lines.append(f"  {d}")
    return "\n".join(lines)
