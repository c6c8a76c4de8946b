"""A real journal, made in-process: the backtest runs the router's engine
(ML planner, shipped model) against the sim venues on a simulated clock,
and every step is journaled the way the daemon's driver journals it
(the event, then its commands, then its decision) through the real writer
into a real SQLite store. One resting parent is canceled by the OMS."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from router.domain.commands import Command
from router.domain.decision import Decision
from router.domain.events import CancelRequested, EngineEvent, NewOrderReceived
from router.domain.types import OrdType, Side, TimeInForce
from router.engine import Step
from router.journal.records import EVENT
from router.journal.store import SqliteStore
from sim.backtest import EPOCH_NS, Backtest
from sim.journal_run import BacktestJournal
from sim.report import make_scorer, scenario_config

PARENTS = 12
RESTING = "REST1"
"""ClOrdID of the parent the OMS cancels while its dark child rests."""


@dataclass
class Journaled:
    path: Path
    session_id: int
    bt: Backtest
    events: list[EngineEvent] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


class _Kept(BacktestJournal):
    def __init__(self, bt: Backtest, path: Path, out: Journaled) -> None:
        self.out = out
        super().__init__(bt, path)

    def on_step(self, ev: EngineEvent, step: Step) -> None:
        self.out.events.append(ev)
        self.out.commands += step.commands
        if step.decision is not None:
            self.out.decisions.append(step.decision)


def make_journal(path: Path, parents: int = PARENTS) -> Journaled:
    cfg = scenario_config("calm")
    bt = Backtest(cfg, "ml", make_scorer(cfg, None), parents=parents)
    out = Journaled(path=path, session_id=0, bt=bt)
    jr = _Kept(bt, path, out)
    out.session_id = jr.session_id
    # A buy far below the market: its lit slices find nothing, its dark
    # slice rests, and the OMS cancels it while it does.
    t = EPOCH_NS + 2_000_000_000 + 5_000_000
    mid = bt.market.mid_at("XYZ", t)
    bt.at(t, bt._handle, NewOrderReceived(session="OMS", cl_ord_id=RESTING, symbol="XYZ", side=Side.BUY, qty=500,
                                          ord_type=OrdType.LIMIT, price_ticks=mid - 40, tif=TimeInForce.DAY,
                                          recv_ns=t))
    bt.at(t + 20_000_000, bt._handle, CancelRequested(session="OMS", cl_ord_id="REST1-X", orig_cl_ord_id=RESTING,
                                                      symbol="XYZ", side=Side.BUY, recv_ns=t + 20_000_000))
    bt.run(settle_s=2.0)
    jr.close()
    return out


@pytest.fixture(scope="package")
def journaled(tmp_path_factory: pytest.TempPathFactory) -> Journaled:
    return make_journal(tmp_path_factory.mktemp("journal") / "sor.sqlite")


def split_journal(src: Path, dst: Path, at_ns: int, *, restored: bool = True) -> tuple[int, int]:
    """``src``'s one session as two in ``dst``, cut at the first input at or
    after ``at_ns``: what a restart there journals (the second session
    restored from the first, continuing its IDs). ``restored=False``: two
    unrelated sessions, the second a copy of the whole first (another day
    that reused the same IDs)."""
    a = SqliteStore(src, readonly=True)
    (info,) = a.sessions()
    rows = list(a.records(info.session_id))
    a.close()
    cut = next(i for i, r in enumerate(rows) if r[1] == EVENT and r[2] >= at_ns) if restored else len(rows)
    b = SqliteStore(dst)
    s1 = b.begin_session(info.started_ns, info.id_prefix, info.model_version, info.config)
    b.write(s1, rows[:cut])
    s2 = b.begin_session(info.started_ns + 1, info.id_prefix, info.model_version, info.config,
                         restored_from=s1 if restored else 0)
    rest = rows[cut:] if restored else rows
    b.write(s2, [(i, kind, ts, body) for i, (_, kind, ts, body) in enumerate(rest, 1)])
    b.close()
    return s1, s2
