"""A journal read back as outcomes (``sim.journal_run``) agrees with the
backtest that wrote it, parent for parent and child for child, and its
training rows are the backtest's own labels under the router's mid."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.labels import child_labels, label_rows
from router.domain.commands import SendChildOrder
from sim.journal_run import JournalRun, read_journal
from tests.unit.router.journal.conftest import RESTING, Journaled, make_journal


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Journaled, JournalRun]:
    j = make_journal(tmp_path_factory.mktemp("jr") / "sor.sqlite", parents=60)
    return j, read_journal(j.path)


def test_every_decision_comes_back_with_its_parent_outcome(pair: tuple[Journaled, JournalRun]) -> None:
    j, run = pair
    assert set(run.logged) == {d.order_id for d in j.decisions}
    bt = j.bt
    compared = 0
    for oid, lg in run.logged.items():
        if lg.result.cl_ord_id == RESTING:  # sent past the backtest's own bookkeeping
            continue
        compared += 1
        res, want = lg.result, bt.results[lg.result.cl_ord_id]
        assert (res.filled, res.notional_ticks, res.qty, res.side) == (want.filled, want.notional_ticks, want.qty,
                                                                       want.side)
        assert math.isclose(res.fees_ticks, want.fees_ticks, rel_tol=1e-12, abs_tol=1e-9)
        assert (res.done_ns is None) == (want.done_ns is None)
        assert res.arrival_mid == bt.engine.parents[oid].arrival_mid2 / 2
        assert lg.decision.order_id == oid and lg.venues_up
    assert compared == len(bt.results)
    canceled = next(lg for lg in run.logged.values() if lg.result.cl_ord_id == RESTING)
    assert canceled.result.done_ns is not None and canceled.result.filled == 0
    assert all(math.isfinite(lg.result.shortfall_bps()) for lg in run.finished())


def test_children_and_their_fills_are_the_engines(pair: tuple[Journaled, JournalRun]) -> None:
    j, run = pair
    sent = {c.child_id: c for c in j.commands if isinstance(c, SendChildOrder)}
    assert set(run.children) == set(sent)
    first = set()
    for lab_id, lab in run.children.items():
        bl = j.bt.children[lab_id]
        assert (lab.venue, lab.qty) == (bl.venue, bl.qty)
        assert sum(f[1] for f in lab.fills) == sum(f[1] for f in bl.fills), lab_id
        assert lab.first_wave == bl.first_wave
        if lab.first_wave:
            first.add(lab_id)
    assert first, "first-wave children"


def test_training_rows_from_the_journal_match_the_backtests_fill_labels(pair: tuple[Journaled, JournalRun]) -> None:
    j, run = pair
    cfg = run.cfg
    vi = {v.name: i for i, v in enumerate(cfg.venues)}
    fee = {v.name: v.take_fee_bps for v in cfg.venues}
    ds = label_rows(run.children.values(), run.results, run.features, vi, fee, run.mid_at, "journal")
    n_first = sum(1 for lab in run.children.values() if lab.first_wave)
    assert len(ds) == n_first and ds.n_groups == len({lab.parent for lab in run.children.values() if lab.first_wave})
    by_cl = {lg.result.cl_ord_id: oid for oid, lg in run.logged.items()}
    for lab_id, lab in run.children.items():
        if not lab.first_wave or run.logged[lab.parent].result.cl_ord_id == RESTING:
            continue
        bl = j.bt.children[lab_id]
        frac, _, _ = child_labels(lab, run.logged[lab.parent].result, fee[lab.venue], run.mid_at)
        want, _, _ = child_labels(bl, j.bt.results[bl.parent], fee[bl.venue], j.bt.true_mid)
        assert frac == want
        assert by_cl[bl.parent] == lab.parent
    filled = ds.has_fill
    assert np.isfinite(ds.cost_bps[filled]).all() and np.isnan(ds.cost_bps[~filled]).all()


def test_mid_at_is_the_last_mid_seen(pair: tuple[Journaled, JournalRun]) -> None:
    _, run = pair
    ts, mids = run._mids["XYZ"]
    assert ts == sorted(ts) and len(ts) > 10
    assert run.mid_at("XYZ", ts[5]) == mids[5] and run.mid_at("XYZ", ts[5] + 1) == mids[5]
    assert run.mid_at("XYZ", ts[0] - 10) == mids[0] and run.mid_at("NOPE", ts[0]) == 0.0


def test_a_missing_journal_says_so(tmp_path: Path) -> None:
    from router.journal.store import SqliteStore

    SqliteStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(ValueError, match="no session"):
        read_journal(tmp_path / "empty.sqlite")
