"""Model quality in production: what each model predicted for a venue
against what the venue then did, per venue and model version.

The driver shows it every step, after the commands went out. For each
first-wave child of a scored decision (the rows the model is trained on,
``models.labels``), when the child ends:

* ``sor_model_fill_predicted_total`` / ``sor_model_fill_realised_total``
  / ``sor_model_quality_children_total``: the predicted fill probability
  and the realised filled fraction, summed, so calibration in the large
  is ``(predicted - realised) / children`` over any window;
* ``sor_model_cost_error_bps``: ``|predicted - realised|`` cost of the
  filled shares against the arrival mid, fee included (filled children);
* ``sor_model_markout_error_bps``: ``|predicted - realised|`` quantity-
  weighted 1 s markout of its fills, the realised one read off the
  router's NBBO mid at the first event (order traffic or market data) at
  or after each fill's horizon;
* ``sor_model_markout_bps``: the realised quantity-weighted 1 s markout
  of all the fills of a parent the model routed (every wave, every venue),
  once the parent is done and its last fill's horizon has come: the live
  markout the canary compares models by (positive: the price moved the
  parent's way after it traded, negative: adverse selection).

The model's own held-out figures from its manifest are exported beside
them (``sor_model_validation{model, metric}``: ``cost_mae_bps``,
``fill_log_loss``, ``markout_mae_bps``), so an alert compares the live
error with the error the model was validated at (``ModelCostErrorDrift``
and ``ModelMarkoutErrorDrift`` in ``deploy/alerts.yml``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from router.config import Config
from router.domain.commands import SendChildOrder
from router.domain.costs import cost_bps, markout_bps
from router.domain.decision import Decision
from router.domain.events import EngineEvent, NewOrderReceived, VenueReport
from router.domain.types import ExecType
from router.engine import Engine, Step
from router.market.rings import MarketData
from router.metrics.registry import Metrics
from router.routing.policy import SCORE_COST, SCORE_FILL, SCORE_MARKOUT

MARKOUT_NS = 1_000_000_000
"""The horizon the model's markout head is trained at (``models.labels``)."""

MAX_TRACKED = 100_000
"""Children followed at once; beyond it the oldest are dropped (a child
whose venue never answered would otherwise be kept for the day)."""
_VALIDATION = (("cost_mae_bps", "cost_bps", "mae"), ("fill_log_loss", "fill_prob", "log_loss"),
               ("markout_mae_bps", "markout_bps", "mae"))


@dataclass(slots=True)
class _Child:
    model: str
    venue: str
    qty: int
    side: int
    mid: float
    fee_bps: float
    p_fill: float
    cost: float
    markout: float
    symbol: int
    filled: int = 0
    notional: int = 0
    ended: bool = False
    due: int = 0
    """Fills whose markout horizon has not come yet."""
    marked_qty: int = 0
    mark_num: float = 0.0
    fills: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Parent:
    model: str
    side: int
    symbol: int
    due: int = 0
    marked_qty: int = 0
    mark_num: float = 0.0
    ended: bool = False


class QualityMonitor:
    def __init__(self, cfg: Config, metrics: Metrics, engine: Engine, market: MarketData | None = None) -> None:
        self.m = metrics
        self.engine = engine
        self.market = market
        self._fee = {v.name: v.take_fee_bps for v in cfg.venues}
        self._children: dict[str, _Child] = {}
        self._validated: set[str] = set()
        self._parents: dict[str, _Parent] = {}
        self._due: deque[tuple[int, str, str, int, int]] = deque()
        """(horizon ns, child, parent, qty, px ticks) of fills awaiting their 1 s mid, in time order."""

    def tick(self, now_ns: int) -> None:
        """Every event, market data included: resolve the markouts due."""
        due = self._due
        while due and due[0][0] <= now_ns:
            _, cid, oid, qty, px = due.popleft()
            p = self._parents.get(oid)
            if p is not None:
                if not p.ended:
                    parent = self.engine.parents.get(oid)
                    p.ended = parent is None or parent.is_terminal
                self._mark(p, qty, px)
                if p.ended and not p.due:
                    self._parent_marked(self._parents.pop(oid))
            c = self._children.get(cid)
            if c is None:
                continue
            self._mark(c, qty, px)
            if c.ended and not c.due:
                self._marked(self._children.pop(cid))

    def _mark(self, x: _Child | _Parent, qty: int, px: int) -> None:
        """One fill of ``x`` reached its horizon: its markout against the
        router's consolidated mid now (none without a two-sided book)."""
        x.due -= 1
        mid2 = self.market.consolidated_mid2(x.symbol) if self.market is not None and x.symbol >= 0 else 0
        if mid2:
            x.marked_qty += qty
            x.mark_num += qty * markout_bps(x.side, px, mid2 / 2)

    def observe(self, ev: EngineEvent, step: Step) -> None:
        self.tick(ev.ts_ns)
        d = step.decision
        if type(ev) is NewOrderReceived and d is not None and d.scores is not None and d.fallback is None:
            self._opened(d, step)
        elif type(ev) is VenueReport:
            child = self.engine.children.get(ev.child_id)
            trade = ev.exec_type is ExecType.TRADE and ev.last_qty > 0
            oid = child.parent_id if child is not None else ""
            p = self._parents.get(oid)
            if p is not None:
                if trade:
                    p.due += 1
                parent = self.engine.parents.get(oid)
                if not p.ended and (parent is None or parent.is_terminal):
                    p.ended = True
            if trade and (p is not None or ev.child_id in self._children):
                self._due.append((ev.ts_ns + MARKOUT_NS, ev.child_id, oid, ev.last_qty, ev.last_px_ticks))
            if p is not None and p.ended and not p.due:
                self._parent_marked(self._parents.pop(oid))
            c = self._children.get(ev.child_id)
            if c is None:
                return
            if trade:
                c.filled += ev.last_qty
                c.notional += ev.last_qty * ev.last_px_ticks
                c.due += 1
            if not c.ended and (child is None or child.is_terminal):
                c.ended = True
                self._ended(c)
                if not c.due:
                    self._marked(self._children.pop(ev.child_id))

    def _opened(self, d: Decision, step: Step) -> None:
        parent = self.engine.parents.get(d.order_id)
        if parent is None or not parent.arrival_mid2 or d.scores is None:
            return
        model = d.model_version or "static"
        if model not in self._validated:
            self._validation(model)
        index = {v: i for i, v in enumerate(d.venues)}
        sym = self.market.symbol_index.get(parent.symbol, -1) if self.market is not None else -1
        if len(self._parents) >= MAX_TRACKED:
            del self._parents[next(iter(self._parents))]
        self._parents[d.order_id] = _Parent(model, parent.side.sign, sym)
        for c in step.commands:
            if type(c) is SendChildOrder and c.venue in index:
                row = d.scores[index[c.venue]]
                if len(self._children) >= MAX_TRACKED:
                    del self._children[next(iter(self._children))]
                self._children[c.child_id] = _Child(
                    model, c.venue, c.qty, parent.side.sign, parent.arrival_mid2 / 2, self._fee.get(c.venue, 0.0),
                    min(max(float(row[SCORE_FILL]), 0.0), 1.0), float(row[SCORE_COST]), float(row[SCORE_MARKOUT]),
                    sym)

    def _ended(self, c: _Child) -> None:
        m = self.m
        m.model_quality_children.labels(model=c.model, venue=c.venue).inc()
        m.model_fill_predicted.labels(model=c.model, venue=c.venue).inc(c.p_fill)
        m.model_fill_realised.labels(model=c.model, venue=c.venue).inc(min(c.filled / c.qty, 1.0))
        if c.filled:
            realised = cost_bps(c.side, c.notional / c.filled, c.mid, c.fee_bps)
            m.model_cost_error_bps.labels(model=c.model, venue=c.venue).observe(abs(c.cost - realised))

    def _marked(self, c: _Child) -> None:
        if c.marked_qty:
            self.m.model_markout_error_bps.labels(model=c.model, venue=c.venue).observe(
                abs(c.markout - c.mark_num / c.marked_qty))

    def _parent_marked(self, p: _Parent) -> None:
        if p.marked_qty:
            self.m.model_markout_bps.labels(model=p.model).observe(p.mark_num / p.marked_qty)

    def _validation(self, model: str) -> None:
        self._validated.add(model)
        manifest = getattr(self.engine.planner, "manifest_of", lambda v: None)(model)
        if manifest is None:
            return
        for metric, head, key in _VALIDATION:
            value = manifest.validation.get(head, {}).get(key)
            if isinstance(value, int | float):
                self.m.model_validation.labels(model=model, metric=metric).set(float(value))
