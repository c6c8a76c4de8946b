"""The operator console: a page the admin API serves, and the state it shows.

The page (``index.html``, ``console.js``, ``console.css`` and an icon, next
to this file and shipped as package data) is static: no build step, nothing
fetched from elsewhere, no state in it. It is the one thing the admin API
serves without a token, because a browser cannot put a bearer header on a
navigation. The token reaches the page in the URL's fragment
(``/console#token=...``, what ``sor ctl console`` prints): browsers never
send a fragment to the server, so it is in no request line and no log. The
page moves it to ``sessionStorage``, wipes it from the address bar, and
calls the JSON endpoints with ``Authorization: Bearer`` like ``sor ctl``
does; a refused call is counted and logged as any other. No cookie is
involved: cookies on 127.0.0.1 are shared by every port of the host, so any
other local web page would be "same site"; a header only our own script
sets cannot be ridden that way, and with no CORS headers another origin can
neither send it nor read an answer.

``GET /console/state`` is everything the page shows in one answer, read on
the engine's loop (``ConsoleView.collect``, through ``AdminServer.on_loop``)
as plain values and encoded on the admin API's thread (``ConsoleView.render``).
Decisions are kept by the driver as references (``Driver.decisions``) and
encoded here only when the console asks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from itertools import pairwise
from typing import Any, NamedTuple

import msgspec
import numpy as np

from router.config import Config
from router.domain.decision import Decision
from router.domain.orders import ChildOrder, ParentOrder
from router.domain.types import VenueKind
from router.engine import Engine
from router.features.catalogue import FEATURES
from router.learning.venuestats import (
    N_STATS,
    STAT_FILL_RATE,
    STAT_MARKOUT_1S_BPS,
    STAT_MARKOUT_5S_BPS,
    STAT_PARTIAL_FREQ,
    STAT_TIME_TO_FILL_MS,
    VenueStats,
)
from router.runtime.driver import Driver

PARENTS_SHOWN = 50
"""Open parents listed, newest first (the count says how many there are)."""
CHILDREN_SHOWN = 12
"""Children listed per parent, newest first."""
DECISIONS_SHOWN = 50


class Asset(NamedTuple):
    body: bytes
    content_type: str


_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
ASSET_PATHS: dict[str, str] = {
    "/console": "index.html",
    "/console/": "index.html",
    **{f"/console/{name}": name for name in _FILES},
}
"""URL path -> file: the only paths answered without a token (GET only)."""

PAGE_HEADERS: dict[str, str] = {
    # Only our own files may run or be styled; the page's JSON comes from
    # this origin only; it cannot be framed (its buttons kill routing, so no
    # other page may overlay them) and it names itself to nobody.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def load_assets() -> dict[str, Asset]:
    """The page's files from the installed package (``OSError`` when one is
    missing: an install without the package data)."""
    base = resources.files(__name__)
    return {name: Asset((base / name).read_bytes(), ctype) for name, ctype in _FILES.items()}


def _num(x: float, nd: int = 4) -> float | None:
    """A finite float for JSON, rounded (JSON has no NaN; the page shows None as a dash)."""
    f = float(x)
    return round(f, nd) if math.isfinite(f) else None


def _all_sizes(per_bucket: list[list[float]], at: int, weights: list[float]) -> float:
    """One figure over every size bucket: the buckets' values weighted by
    their decayed child counts; with no child yet, the prior (which every
    bucket reads)."""
    total = sum(weights)
    if total <= 0:
        return per_bucket[0][at]
    return sum(w * row[at] for w, row in zip(weights, per_bucket)) / total


_MARKET_COLUMNS = [(i, f.name) for i, f in enumerate(FEATURES) if f.group != "venue"]
_VENUE_COLUMNS = [(i, f.name) for i, f in enumerate(FEATURES) if f.group == "venue"]
_SCORE_NAMES = ("cost_bps", "fill_prob", "markout_bps")


class _ParentInfo(NamedTuple):
    """What a decision's row says about its parent, copied on the loop."""

    session: str
    cl_ord_id: str
    symbol: str
    side: str
    qty: int
    price_ticks: int | None
    ord_type: str
    tif: str
    state: str
    cum_qty: int


@dataclass(slots=True)
class Snapshot:
    """Plain values taken on the loop; ``render`` makes them JSON elsewhere."""

    now_ns: int
    unix_ms: float
    status: dict[str, Any]
    venue_stats: dict[str, Any] | None
    parents: list[dict[str, Any]]
    decisions: list[tuple[Decision, _ParentInfo | None]]
    limits: dict[str, Any] | None


class ConsoleView:
    """Builds ``GET /console/state``: ``collect`` on the engine's loop,
    ``render`` on the admin API's thread."""

    def __init__(self, cfg: Config, engine: Engine, driver: Driver, stats: VenueStats | None) -> None:
        self.engine = engine
        self.driver = driver
        self.stats = stats
        self._ticks = {s.symbol: Decimal(str(s.tick_size)) for s in cfg.symbols}
        self._kinds = {v.name: v.kind for v in cfg.venues}
        self._parent_memo: dict[str, _ParentInfo] = {}
        """order_id -> its parent as last seen (loop only): a decision's
        parent is released 30 s after it ends, its row still names it."""
        self._buf = np.zeros(max(1, len(stats.venues)) * N_STATS if stats is not None else 1)
        self._out: memoryview[float] = self._buf.data.cast("B").cast("d")

    # ------------------------------------------------------------ loop side

    def collect(self, status: dict[str, Any]) -> Snapshot:
        """Loop thread: copy out everything the page shows."""
        eng, drv = self.engine, self.driver
        now = drv.clock_ns()
        unix_ms = time.time() * 1000
        decisions = list(drv.decisions)[-DECISIONS_SHOWN:]
        memo = self._parent_memo
        with_parents: list[tuple[Decision, _ParentInfo | None]] = []
        for d in decisions:
            p = eng.parents.get(d.order_id)
            if p is not None:
                memo[d.order_id] = self._parent_info(p)
            with_parents.append((d, memo.get(d.order_id)))
        if len(memo) > 2 * DECISIONS_SHOWN:
            keep = {d.order_id for d in decisions}
            for k in [k for k in memo if k not in keep]:
                del memo[k]
        risk: Any = getattr(eng, "risk", None)
        limits = risk.status() if risk is not None and hasattr(risk, "status") else None
        return Snapshot(now_ns=now, unix_ms=unix_ms, status=status, venue_stats=self._venue_stats(now),
                        parents=self._open_parents(), decisions=with_parents,
                        limits=msgspec.to_builtins(limits) if limits is not None else None)

    @staticmethod
    def _parent_info(p: ParentOrder) -> _ParentInfo:
        return _ParentInfo(p.session, p.cl_ord_id, p.symbol, p.side.name, p.qty, p.price_ticks, p.ord_type.name,
                           p.tif.name, p.state.name, p.cum_qty)

    def _venue_stats(self, now: int) -> dict[str, Any] | None:
        """Per venue: fill rate, time to fill, partials (all sizes, and by
        size bucket), markouts, and how much data is behind them. One
        ``read_all`` per size bucket into a buffer of our own, where the
        scalar readers would run a whole ``read_all`` for each number."""
        st = self.stats
        if st is None:
            return None
        buf = self._buf
        per_bucket: list[list[float]] = []
        for b in range(st.n_buckets):
            st.read_all(b, now, self._out, 0, N_STATS)
            per_bucket.append(buf.tolist())
        rows = []
        for v, name in enumerate(st.venues):
            o = v * N_STATS
            weights = [st.child_weight(v, b, now) for b in range(st.n_buckets)]
            rows.append({
                "venue": name,
                "fill_rate": _num(_all_sizes(per_bucket, o + STAT_FILL_RATE, weights)),
                "time_to_fill_ms": _num(_all_sizes(per_bucket, o + STAT_TIME_TO_FILL_MS, weights), 1),
                "partial_freq": _num(_all_sizes(per_bucket, o + STAT_PARTIAL_FREQ, weights)),
                "children": _num(sum(weights), 1),
                "by_size": [{"fill_rate": _num(per_bucket[b][o + STAT_FILL_RATE]), "children": _num(weights[b], 1)}
                            for b in range(st.n_buckets)],
                "markout_bps": {"1s": _num(per_bucket[0][o + STAT_MARKOUT_1S_BPS], 2),
                                "5s": _num(per_bucket[0][o + STAT_MARKOUT_5S_BPS], 2)},
                "markouts": {"1s": _num(st.markout_weight(v, 0, now), 1),
                             "5s": _num(st.markout_weight(v, 1, now), 1)},
            })
        edges = [f"{e:g}" for e in st.size_edges]
        buckets = ([f"<{edges[0]}", *(f"{a}-{b}" for a, b in pairwise(edges)), f">={edges[-1]}"]
                   if edges else ["all"])
        return {"buckets": buckets, "half_life_s": st.half_life_s, "venues": rows}

    def _open_parents(self) -> list[dict[str, Any]]:
        """The newest open parents with their children. Parents are kept in
        arrival order, so walking back stops after ``PARENTS_SHOWN`` open
        ones (all of them only while fewer are open)."""
        eng = self.engine
        out: list[dict[str, Any]] = []
        for p in reversed(eng.parents.values()):
            if p.is_terminal:
                continue
            kids = [eng.children[c] for c in p.children[-CHILDREN_SHOWN:] if c in eng.children]
            out.append({
                "order_id": p.order_id, "cl_ord_id": p.cl_ord_id, "session": p.session, "symbol": p.symbol,
                "side": p.side.name, "qty": p.qty, "cum_qty": p.cum_qty, "leaves_qty": p.leaves_qty,
                "price": self._px(p.symbol, p.price_ticks), "ord_type": p.ord_type.name, "tif": p.tif.name,
                "state": p.state.name, "strategy": p.strategy, "arrival_ns": p.arrival_ns,
                "avg_px": self._avg(p.symbol, p.notional_ticks, p.cum_qty), "routing_done": p.routing_done,
                "children_total": len(p.children),
                "children": [self._child(c) for c in reversed(kids)],
            })
            if len(out) >= PARENTS_SHOWN:
                break
        return out

    def _child(self, c: ChildOrder) -> dict[str, Any]:
        return {"child_id": c.child_id, "venue": c.venue, "qty": c.qty, "cum_qty": c.cum_qty,
                "price": self._px(c.symbol, c.price_ticks), "tif": c.tif.name, "state": c.state.name,
                "open": not c.is_terminal, "sent_ns": c.sent_ns,
                "avg_px": self._avg(c.symbol, c.notional_ticks, c.cum_qty)}

    def _px(self, symbol: str, ticks: int | None) -> str | None:
        if ticks is None:
            return None
        tick = self._ticks.get(symbol)
        return f"{ticks}t" if tick is None else str(ticks * tick)

    def _avg(self, symbol: str, notional_ticks: int, qty: int) -> str | None:
        if qty <= 0:
            return None
        tick = self._ticks.get(symbol)
        if tick is None:
            return f"{notional_ticks / qty:.2f}t"
        return str((Decimal(notional_ticks) * tick / qty).quantize(tick / 100))

    # ---------------------------------------------------------- HTTP side

    def render(self, snap: Snapshot) -> dict[str, Any]:
        """Admin API thread: the snapshot as the page's JSON (decisions
        encoded here, off the loop)."""
        out = dict(snap.status)
        kinds = self._kinds
        out.update({
            "now_ns": snap.now_ns,
            "unix_ms": snap.unix_ms,
            "venue_kinds": {v: k.value for v, k in kinds.items()},
            "venue_stats": snap.venue_stats,
            "parents": snap.parents,
            "decisions": [self.decision_json(d, p) for d, p in reversed(snap.decisions)],
            "limits": snap.limits,
        })
        return out

    def decision_json(self, d: Decision, parent: _ParentInfo | None) -> dict[str, Any]:
        """One decision, with why each venue stands where it does: its rank
        (or why it has none), expected cost, the model's three outputs and
        its own feature columns; the market and order columns once."""
        symbol = parent.symbol if parent is not None else None
        rank = {v: i + 1 for i, v in enumerate(d.ranking)}
        venues = []
        for i, v in enumerate(d.venues):
            row: dict[str, Any] = {"venue": v, "rank": rank.get(v), "kind": self._kinds.get(v, VenueKind.LIT).value}
            if d.costs is not None and i < len(d.costs):
                row["cost_bps"] = _num(d.costs[i])
            if d.scores is not None and i < len(d.scores):
                row["scores"] = {n: _num(d.scores[i][j]) for j, n in enumerate(_SCORE_NAMES)}
            if d.features is not None and i < len(d.features):
                row["features"] = {n: _num(d.features[i][c]) for c, n in _VENUE_COLUMNS}
            venues.append(row)
        # Ranked venues first, cheapest first; then the ones left out.
        venues.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0))
        market = ({n: _num(d.features[0][c]) for c, n in _MARKET_COLUMNS}
                  if d.features is not None and len(d.features) else None)
        plan = {"name": d.plan.name, "final": d.plan.final,
                "waves": [[{"venue": s.venue, "weight": _num(s.weight, 3), "tif": s.tif.name,
                            "limit": self._px(symbol, s.limit_ticks) if symbol is not None else s.limit_ticks,
                            "timeout_ms": s.timeout_ms} for s in w.slices] for w in d.plan.waves]}
        return {
            "order_id": d.order_id, "ts_ns": d.ts_ns,
            "parent": None if parent is None else {
                **parent._asdict(), "price": self._px(parent.symbol, parent.price_ticks)},
            "strategy": d.strategy, "model_version": d.model_version, "fallback": d.fallback,
            "propensity": _num(d.propensity), "ranking": list(d.ranking), "venues": venues, "market": market,
            "plan": plan, "stages_us": {s: _num(ns / 1000, 1) for s, ns in d.stages_ns},
        }
