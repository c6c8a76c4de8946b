"""The journal's Parquet export, read back with pyarrow: one row per
decision, child, venue fill and ER to the OMS of a journal the real engine
wrote; the feature columns; the tables join up; one session of a restored
chain; the daemon's imports never load pyarrow."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from router.domain.commands import RejectOrder, ReportToOms, SendChildOrder
from router.domain.events import VenueReport
from router.domain.types import ExecType
from router.features.catalogue import FEATURES
from router.journal import records
from router.journal.export import FILES, SCORE_COLUMNS, export_parquet
from router.journal.store import JournalError, SqliteStore

from .conftest import RESTING, Journaled, split_journal

pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[4]


def _export(path: Path, out: Path, session: int | None = None) -> dict[str, list[dict[str, Any]]]:
    store = SqliteStore(path, readonly=True)
    try:
        counts = export_parquet(store, out, session)
    finally:
        store.close()
    tables = {name: pq.read_table(out / f"{name}.parquet").to_pylist() for name in FILES}
    assert counts == {name: len(rows) for name, rows in tables.items()}
    return tables


def _journal_counts(path: Path, session: int) -> dict[str, int]:
    """What the journal holds, decoded directly."""
    store = SqliteStore(path, readonly=True)
    n = {"decisions": 0, "children": 0, "fills": 0, "oms_reports": 0}
    for _, kind, _, body in store.records(session):
        if kind == records.DECISION:
            n["decisions"] += 1
        elif kind == records.COMMANDS:
            cmds = records.decode_commands(body)
            n["children"] += sum(isinstance(c, SendChildOrder) for c in cmds)
            n["oms_reports"] += sum(isinstance(c, ReportToOms | RejectOrder) for c in cmds)
        else:
            ev = records.decode_event(body)
            n["fills"] += isinstance(ev, VenueReport) and ev.exec_type is ExecType.TRADE
    store.close()
    return n


def test_one_row_per_journaled_decision_child_fill_and_report(journaled: Journaled, tmp_path: Path) -> None:
    t = _export(journaled.path, tmp_path / "out")
    assert {k: len(v) for k, v in t.items()} == _journal_counts(journaled.path, journaled.session_id)
    assert len(t["decisions"]) == len(journaled.decisions)
    assert [r["order_id"] for r in t["decisions"]] == [d.order_id for d in journaled.decisions]
    assert [r["child_id"] for r in t["children"]] == [c.child_id for c in journaled.commands
                                                      if isinstance(c, SendChildOrder)]
    assert [r["exec_id"] for r in t["oms_reports"]] == [c.exec_id for c in journaled.commands
                                                        if isinstance(c, ReportToOms | RejectOrder)]
    assert [r["exec_id"] for r in t["fills"]] == [e.exec_id for e in journaled.events
                                                  if isinstance(e, VenueReport) and e.exec_type is ExecType.TRADE]


def test_decisions_carry_features_scores_and_outcome(journaled: Journaled, tmp_path: Path) -> None:
    t = _export(journaled.path, tmp_path / "out")
    engine = journaled.bt.engine
    for row, d in zip(t["decisions"], journaled.decisions):
        assert d.features is not None and d.scores is not None and d.costs is not None
        assert row["venues"] == list(d.venues) and row["ranking"] == list(d.ranking)
        assert row["strategy"] == d.strategy and row["model_version"] == d.model_version
        assert row["fallback"] == d.fallback and row["propensity"] == d.propensity and row["plan"] == d.plan.name
        assert row["explored"] == d.explored
        assert row["lead_probs"] == (None if d.lead_probs is None else [float(x) for x in d.lead_probs])
        for j, f in enumerate(FEATURES):
            value = row[f"f_{f.name}"]
            if f.group == "venue":
                assert value == pytest.approx([float(x) for x in d.features[:, j]])
            else:
                assert value == pytest.approx(float(d.features[0, j]))
        for j, col in enumerate(SCORE_COLUMNS):
            assert row[col] == pytest.approx([float(x) for x in d.scores[:, j]])
        assert row["expected_cost"] == pytest.approx([float(x) for x in d.costs])
        parent = engine.parents[d.order_id]
        assert row["cl_ord_id"] == parent.cl_ord_id and row["qty"] == parent.qty and row["symbol"] == "XYZ"
        assert row["price"] == pytest.approx((parent.price_ticks or 0) * 0.01)
        assert row["filled_qty"] == parent.cum_qty and row["ord_status"] == parent.state.name
        assert row["children"] == len(parent.children)
        if parent.cum_qty:
            assert row["avg_px"] == pytest.approx(parent.notional_ticks * 0.01 / parent.cum_qty)


def test_children_fills_and_reports_join_up(journaled: Journaled, tmp_path: Path) -> None:
    t = _export(journaled.path, tmp_path / "out")
    engine = journaled.bt.engine
    fills_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in t["fills"]:
        fills_of[f["child_id"]].append(f)
    for c in t["children"]:
        child = engine.children[c["child_id"]]
        assert c["order_id"] == child.parent_id and c["venue"] == child.venue and c["qty"] == child.qty
        assert c["filled_qty"] == child.cum_qty == sum(f["last_qty"] for f in fills_of[c["child_id"]])
        assert c["state"] == child.state.name and c["fills"] == len(fills_of[c["child_id"]])
        if child.cum_qty:
            assert c["time_to_first_fill_ns"] == (child.first_fill_ns or 0) - child.sent_ns > 0
            assert c["avg_px"] == pytest.approx(child.notional_ticks * 0.01 / child.cum_qty)
        else:
            assert c["time_to_first_fill_ns"] is None and c["avg_px"] is None
    last: dict[str, dict[str, Any]] = {}
    for r in t["oms_reports"]:
        last[r["order_id"]] = r
        if r["ord_status"] not in ("FILLED", "CANCELED"):
            assert r["cum_qty"] + r["leaves_qty"] == r["order_qty"]
    for d in t["decisions"]:
        assert last[d["order_id"]]["cum_qty"] == d["filled_qty"]
        assert last[d["order_id"]]["avg_px"] == pytest.approx(d["avg_px"] or 0.0)
    rest = [r for r in t["oms_reports"] if r["cl_ord_id"] == "REST1-X"]
    assert [r["exec_type"] for r in rest] == ["PENDING_CANCEL", "CANCELED"]
    assert {r["order_id"] for r in t["oms_reports"] if r["cl_ord_id"] == RESTING} == {rest[0]["order_id"]}


def test_one_session_of_a_restored_chain(journaled: Journaled, tmp_path: Path) -> None:
    t_all = _export(journaled.path, tmp_path / "whole")
    cut = t_all["children"][len(t_all["children"]) // 2]["sent_ns"]
    path = tmp_path / "restarted.sqlite"
    s1, s2 = split_journal(journaled.path, path, cut)
    both = _export(path, tmp_path / "both")
    assert {k: len(v) for k, v in both.items()} == {k: len(v) for k, v in t_all.items()}
    for sid in (s1, s2):
        t = _export(path, tmp_path / f"s{sid}", sid)
        assert {k: len(v) for k, v in t.items()} == _journal_counts(path, sid)
        assert all(r["session_id"] == sid for rows in t.values() for r in rows)
    # Children sent after the restart still know their parents.
    later = _export(path, tmp_path / "later", s2)
    assert later["children"] and all(c["order_id"] for c in later["children"])
    assert all(f["order_id"] for f in later["fills"])
    with pytest.raises(JournalError, match="no session 7"):
        _export(path, tmp_path / "none", 7)


def test_the_daemon_never_loads_pyarrow() -> None:
    code = ("import sys, router.app, router.cli, router.journal.export, router.journal.story; "
            "assert 'pyarrow' not in sys.modules, 'pyarrow loaded'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
