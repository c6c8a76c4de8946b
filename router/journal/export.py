"""The journal as Parquet tables for analysis (``sor journal
--export-parquet DIR``): what was decided, what was sent, what filled and
what the OMS was told, one row per thing, with the keys that join them
(``order_id``, ``child_id``, ``session_id``).

- ``decisions.parquet``: one row per routing decision: the parent (its
  urgency too), the strategy, plan, its expected completion time, model
  version, fallback, propensity, whether the lead
  venue was explored and every venue's probability of leading, the per-venue
  model outputs and expected costs as lists aligned with ``venues``, one
  ``f_<name>`` column per feature of ``router.features.catalogue`` (a
  scalar for market and order features, the same in every venue row; a
  list aligned with ``venues`` for venue features), and the parent's
  outcome (filled quantity, average price, last status).
- ``children.parquet``: one row per child sent, with its outcome: filled
  quantity, average price, final state, time to first fill.
- ``fills.parquet``: one row per venue fill.
- ``oms_reports.parquet``: every ExecutionReport sent to the OMS,
  rejects of new orders included.

Prices are exact ticks (``*_ticks``) and, for convenience, floats in the
symbol's currency (tick size from the session's configuration). pyarrow is
imported here, when an export runs, never by the daemon.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from router.domain.commands import RejectOrder, ReportToOms
from router.domain.decision import Decision
from router.domain.events import NewOrderReceived, VenueReport
from router.domain.types import ExecType
from router.journal.store import SessionInfo
from router.journal.story import (
    Collect,
    Entry,
    ParentStory,
    Reader,
    build_story,
    chain_through,
    chains,
    feature_names,
    shared_features,
    tick_sizes,
)

FILES = ("decisions", "children", "fills", "oms_reports")
"""The tables written, each ``<name>.parquet``."""

SCORE_COLUMNS = ("score_cost_bps", "score_fill_prob", "score_markout_bps")
"""The model's three outputs per venue (``Decision.scores`` columns)."""


class _Prices:
    def __init__(self, sessions: Iterable[SessionInfo]) -> None:
        self._ticks = {s.session_id: {k: Decimal(v) for k, v in tick_sizes(s).items()} for s in sessions}

    def tick(self, session_id: int, symbol: str) -> Decimal:
        return self._ticks.get(session_id, {}).get(symbol, Decimal("0.01"))

    def px(self, session_id: int, symbol: str, ticks: int | None) -> float | None:
        return None if ticks is None else float(ticks * self.tick(session_id, symbol))

    def avg(self, session_id: int, symbol: str, notional_ticks: int, qty: int) -> float | None:
        return float(notional_ticks * self.tick(session_id, symbol) / qty) if qty else None


class _Tables:
    def __init__(self, prices: _Prices) -> None:
        self.p = prices
        self.decisions: list[dict[str, Any]] = []
        self.children: list[dict[str, Any]] = []
        self.fills: list[dict[str, Any]] = []
        self.oms_reports: list[dict[str, Any]] = []
        self.features: dict[str, bool] = {}
        """f_<name> -> a list column (venue feature) or a scalar."""
        self.stages: dict[str, None] = {}

    def parent(self, story: ParentStory, keep: set[int]) -> None:
        p = self.p
        o = story.order if isinstance(story.order, NewOrderReceived) else None
        sym = story.order.symbol if story.order is not None else ""
        base = {"order_id": story.order_id, "cl_ord_id": story.cl_ord_id}
        for e in story.entries:
            if e.session_id not in keep:
                continue
            it = e.item
            if isinstance(it, Decision):
                self._decision(e, it, story, o)
            elif isinstance(it, VenueReport) and it.exec_type is ExecType.TRADE:
                self._fill(e, it, story.order_id, sym)
            elif isinstance(it, ReportToOms | RejectOrder):
                self._report(e, it, story.order_id)
        for c in story.children.values():
            if c.session_id not in keep:
                continue
            s = c.order
            sid = c.session_id
            self.children.append({
                "session_id": sid, "seq": c.seq, "sent_ns": c.sent_ns, **base, "child_id": s.child_id,
                "wave": c.wave, "venue": s.venue, "symbol": s.symbol, "side": s.side.name, "qty": s.qty,
                "ord_type": s.ord_type.name, "tif": s.tif.name, "price_ticks": s.price_ticks,
                "price": p.px(sid, s.symbol, s.price_ticks), "acked_ns": c.acked_ns, "filled_qty": c.filled_qty,
                "notional_ticks": c.notional_ticks, "avg_px": p.avg(sid, s.symbol, c.notional_ticks, c.filled_qty),
                "state": c.state, "done_ns": c.done_ns,
                "time_to_first_fill_ns": None if c.first_fill_ns is None else c.first_fill_ns - c.sent_ns,
                "fills": len(c.fills), "cancels_sent": len(c.cancels), "cancel_rejects": len(c.cancel_rejects),
            })

    def _decision(self, e: Entry, d: Decision, story: ParentStory, o: NewOrderReceived | None) -> None:
        p, sid = self.p, e.session_id
        sym = o.symbol if o is not None else ""
        final = story.final
        filled = final.cum_qty if isinstance(final, ReportToOms) else 0
        row: dict[str, Any] = {
            "session_id": sid, "seq": e.seq, "ts_ns": d.ts_ns, "order_id": d.order_id, "cl_ord_id": story.cl_ord_id,
            "oms_session": o.session if o is not None else None, "symbol": sym or None,
            "side": o.side.name if o is not None else None, "qty": o.qty if o is not None else None,
            "ord_type": o.ord_type.name if o is not None else None, "tif": o.tif.name if o is not None else None,
            "price_ticks": o.price_ticks if o is not None else None,
            "price": p.px(sid, sym, o.price_ticks) if o is not None else None,
            "urgency": o.urgency.value if o is not None else None,
            "strategy": d.strategy, "plan": d.plan.name, "waves": len(d.plan.waves),
            "expected_completion_ms": d.expected_completion_ms,
            "model_version": d.model_version, "fallback": d.fallback, "propensity": d.propensity,
            "explored": d.explored,
            "lead_probs": None if d.lead_probs is None else [float(x) for x in d.lead_probs],
            "venues": list(d.venues), "ranking": list(d.ranking),
            "expected_cost": None if d.costs is None else [float(x) for x in d.costs],
            "children": len(story.children), "filled_qty": filled,
            "avg_px": p.avg(sid, sym, final.avg_px_ticks_num, filled) if isinstance(final, ReportToOms) else None,
            "ord_status": final.ord_status.name if isinstance(final, ReportToOms) else
            ("REJECTED" if isinstance(final, RejectOrder) else None),
        }
        for j, col in enumerate(SCORE_COLUMNS):
            ok = d.scores is not None and d.scores.ndim == 2 and d.scores.shape[1] > j
            row[col] = [float(x) for x in d.scores[:, j]] if ok and d.scores is not None else None
        for name, ns in d.stages_ns:
            self.stages.setdefault(name)
            row[f"stage_{name}_ns"] = ns
        x = d.features
        if x is not None and x.ndim == 2 and x.shape[0]:
            for j, (name, shared) in enumerate(zip(feature_names(x.shape[1]), shared_features(x.shape[1]))):
                col = f"f_{name}"
                self.features.setdefault(col, not shared)
                row[col] = float(x[0, j]) if shared else [float(v) for v in x[:, j]]
        self.decisions.append(row)

    def _fill(self, e: Entry, r: VenueReport, order_id: str | None, symbol: str) -> None:
        sid = e.session_id
        self.fills.append({
            "session_id": sid, "seq": e.seq, "ts_ns": r.recv_ns, "order_id": order_id, "child_id": r.child_id,
            "venue": r.venue, "exec_id": r.exec_id, "symbol": symbol or None, "last_qty": r.last_qty,
            "last_px_ticks": r.last_px_ticks, "last_px": self.p.px(sid, symbol, r.last_px_ticks),
            "cum_qty": r.cum_qty, "leaves_qty": r.leaves_qty, "ord_status": r.ord_status.name,
        })

    def _report(self, e: Entry, r: ReportToOms | RejectOrder, order_id: str | None) -> None:
        p, sid = self.p, e.session_id
        row: dict[str, Any] = {"session_id": sid, "seq": e.seq, "ts_ns": r.transact_ns, "cause": e.cause,
                               "order_id": order_id if isinstance(r, ReportToOms) else r.order_id,
                               "cl_ord_id": r.cl_ord_id, "oms_session": r.session, "exec_id": r.exec_id,
                               "symbol": r.symbol, "side": r.side.name, "text": r.text}
        if isinstance(r, ReportToOms):
            row.update({
                "orig_cl_ord_id": r.orig_cl_ord_id, "exec_type": r.exec_type.name, "ord_status": r.ord_status.name,
                "order_qty": r.order_qty, "ord_type": r.ord_type.name, "price_ticks": r.price_ticks,
                "cum_qty": r.cum_qty, "leaves_qty": r.leaves_qty, "avg_px_ticks_num": r.avg_px_ticks_num,
                "avg_px": p.avg(sid, r.symbol, r.avg_px_ticks_num, r.cum_qty) or 0.0, "last_qty": r.last_qty,
                "last_px_ticks": r.last_px_ticks,
                "last_px": p.px(sid, r.symbol, r.last_px_ticks) if r.last_qty else None, "last_mkt": r.last_mkt,
            })
        else:
            row.update({"exec_type": ExecType.REJECTED.name, "ord_status": "REJECTED", "cum_qty": 0,
                        "leaves_qty": 0, "avg_px_ticks_num": 0, "avg_px": 0.0, "last_qty": 0,
                        "reject_reason": r.reason.name})
        self.oms_reports.append(row)

    def orphan(self, e: Entry) -> None:
        """A fill or report the walk could tie to no parent: still a row."""
        it = e.item
        if isinstance(it, VenueReport) and it.exec_type is ExecType.TRADE:
            self._fill(e, it, None, "")
        elif isinstance(it, ReportToOms | RejectOrder):
            self._report(e, it, None)


def _schemas(t: _Tables) -> dict[str, Any]:
    import pyarrow as pa

    i64, f64, f32, s = pa.int64(), pa.float64(), pa.float32(), pa.string()
    lf64, lf32, ls = pa.list_(f64), pa.list_(f32), pa.list_(s)
    decisions = [
        ("session_id", i64), ("seq", i64), ("ts_ns", i64), ("order_id", s), ("cl_ord_id", s), ("oms_session", s),
        ("symbol", s), ("side", s), ("qty", i64), ("ord_type", s), ("tif", s), ("price_ticks", i64),
        ("price", f64), ("urgency", s), ("strategy", s), ("plan", s), ("waves", i64),
        ("expected_completion_ms", f64), ("model_version", s), ("fallback", s),
        ("propensity", f64), ("explored", pa.bool_()), ("lead_probs", lf64),
        ("venues", ls), ("ranking", ls), *((c, lf64) for c in SCORE_COLUMNS),
        ("expected_cost", lf64), ("children", i64), ("filled_qty", i64), ("avg_px", f64), ("ord_status", s),
        *((f"stage_{n}_ns", i64) for n in t.stages), *((c, lf32 if per_venue else f32)
                                                          for c, per_venue in t.features.items()),
    ]
    children = [
        ("session_id", i64), ("seq", i64), ("sent_ns", i64), ("order_id", s), ("cl_ord_id", s), ("child_id", s),
        ("wave", i64), ("venue", s), ("symbol", s), ("side", s), ("qty", i64), ("ord_type", s), ("tif", s),
        ("price_ticks", i64), ("price", f64), ("acked_ns", i64), ("filled_qty", i64), ("notional_ticks", i64),
        ("avg_px", f64), ("state", s), ("done_ns", i64), ("time_to_first_fill_ns", i64), ("fills", i64),
        ("cancels_sent", i64), ("cancel_rejects", i64),
    ]
    fills = [
        ("session_id", i64), ("seq", i64), ("ts_ns", i64), ("order_id", s), ("child_id", s), ("venue", s),
        ("exec_id", s), ("symbol", s), ("last_qty", i64), ("last_px_ticks", i64), ("last_px", f64),
        ("cum_qty", i64), ("leaves_qty", i64), ("ord_status", s),
    ]
    reports = [
        ("session_id", i64), ("seq", i64), ("ts_ns", i64), ("cause", s), ("order_id", s), ("cl_ord_id", s),
        ("orig_cl_ord_id", s), ("oms_session", s), ("exec_id", s), ("exec_type", s), ("ord_status", s),
        ("symbol", s), ("side", s), ("order_qty", i64), ("ord_type", s), ("price_ticks", i64), ("cum_qty", i64),
        ("leaves_qty", i64), ("avg_px_ticks_num", i64), ("avg_px", f64), ("last_qty", i64),
        ("last_px_ticks", i64), ("last_px", f64), ("last_mkt", s), ("text", s), ("reject_reason", s),
    ]
    return {name: pa.schema(fields) for name, fields in
            (("decisions", decisions), ("children", children), ("fills", fills), ("oms_reports", reports))}


def export_parquet(store: Reader, out_dir: str | Path, session_id: int | None = None) -> dict[str, int]:
    """Write the four tables for ``session_id`` (every session when None)
    into ``out_dir`` (``<name>.parquet``); returns ``{name: rows}``.
    A restored session's chain is read from its start, so a child sent
    before a restart is still its parent's, but only rows recorded in the
    sessions asked for are written. Raises ``JournalError`` for an unknown
    session and ``ImportError`` when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - the train extra installs it
        raise ImportError("the Parquet export needs pyarrow: pip install -e '.[train]'") from e

    sessions = store.sessions()
    if session_id is not None:
        todo = [chain_through(sessions, session_id)]
        todo = [[s for s in todo[0] if s.session_id <= session_id]]
        want = {session_id}
    else:
        todo = chains(sessions)
        want = {s.session_id for s in sessions}
    tables = _Tables(_Prices(sessions))
    done: set[int] = set()
    for chain in todo:
        keep = {s.session_id for s in chain} & (want - done)
        if not keep:
            continue
        col = Collect.of(store, chain)
        for key, entries in col.entries.items():
            tables.parent(build_story(key, entries, chain), keep)
        for entry in col.orphans:
            if entry.session_id in keep:
                tables.orphan(entry)
        done |= keep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schemas = _schemas(tables)
    result: dict[str, int] = {}
    for name in FILES:
        rows: list[dict[str, Any]] = getattr(tables, name)
        rows.sort(key=lambda r: (r["session_id"], r["seq"]))
        table = pa.Table.from_pylist(rows, schema=schemas[name])
        pq.write_table(table, out / f"{name}.parquet")
        result[name] = table.num_rows
    return result
