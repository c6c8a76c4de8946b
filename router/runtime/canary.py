"""Live per-model outcomes, and the canary's automatic rollback.

The driver shows this every step after the commands went out (nothing
here is on the way to a venue). Per finished parent, by the model that
routed it (``Decision.model_version``; "static" when it fell back): the
parent count by role, shares ordered and filled, and the implementation
shortfall of its fills against the arrival mid, fees included (the
``sor_model_*`` metrics, which the console and the dashboard read).

While a canary runs (``router.routing.models.ModelRouter`` in "canary"),
the monitor compares the two arms on the parents finished since the
canary began. It rolls the challenger back, as a journaled
``ModelsChanged`` by "auto-rollback" that the driver applies at once, when
once both arms have ``min_parents``:

* the canary's mean shortfall exceeds the champion's by more than
  ``max_excess_bps`` even at the low end of a one-sided ``z`` bound
  (Welch: ``diff - z * se > max_excess_bps``), or
* the canary's share of parents it could not score (errors, invalid
  output, over ``model.budget_us``) passes ``max_fallback_rate``.

Like the back-pressure gate, it measures and proposes; the engine decides
by the event, so the journal says when and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from router.config import CanaryConfig, Config
from router.domain.commands import ReportToOms
from router.domain.costs import cost_bps
from router.domain.decision import Decision
from router.domain.events import ModelsChanged
from router.domain.types import ExecType, OrdStatus
from router.engine import Engine, Step
from router.metrics.registry import Metrics

_DONE = frozenset({OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED})


@dataclass(slots=True)
class _Open:
    model: str
    role: str
    fallback: bool
    side: int
    mid: float
    fees_ticks: float = 0.0


class Arm:
    """Running mean and variance (Welford) of one arm's shortfall."""

    __slots__ = ("fallbacks", "m2", "mean", "n", "parents")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.parents = 0
        self.fallbacks = 0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def var(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


def excess_bound(canary: Arm, champion: Arm, z: float) -> float:
    """The low end of the one-sided ``z`` bound on canary minus champion."""
    se = math.sqrt(canary.var / canary.n + champion.var / champion.n)
    return canary.mean - champion.mean - z * se


class CanaryMonitor:
    def __init__(self, cfg: Config, metrics: Metrics, engine: Engine, clock_ns: Callable[[], int]) -> None:
        self.cfg: CanaryConfig = cfg.model.canary
        self.m = metrics
        self.engine = engine
        self.clock_ns = clock_ns
        self._fee = {v.last_mkt: v.take_fee_bps for v in cfg.venues}
        self._fee.update({v.name: v.take_fee_bps for v in cfg.venues})
        self._open: dict[str, _Open] = {}
        self._run: tuple[str | None, str | None] = (None, None)
        self.arms = {"champion": Arm(), "challenger": Arm()}
        self.rolled_back: str | None = None
        """Why the last canary was rolled back (None: never)."""

    def _canary(self) -> tuple[str | None, str | None]:
        planner = self.engine.planner
        if getattr(planner, "mode", "off") != "canary":
            return (None, None)
        return (getattr(planner, "model_version", None), getattr(planner, "challenger_version", None))

    def observe(self, step: Step) -> ModelsChanged | None:
        run = self._canary()
        if run != self._run:
            self._run = run
            self.arms = {"champion": Arm(), "challenger": Arm()}
        d = step.decision
        if d is not None:
            self._opened(d)
        for c in step.commands:
            if type(c) is ReportToOms:
                self._reported(c)
        if run[1] is None or not self.cfg.auto_rollback:
            return None
        return self._verdict(run[0] or "", run[1])

    def _opened(self, d: Decision) -> None:
        parent = self.engine.parents.get(d.order_id)
        if parent is None or not parent.arrival_mid2:
            return
        model = d.model_version or "static"
        self._open[d.order_id] = _Open(model, d.role, d.fallback is not None, parent.side.sign,
                                       parent.arrival_mid2 / 2)
        if d.fallback is not None:
            self.m.model_fallback_parents.labels(model=model).inc()

    def _reported(self, c: ReportToOms) -> None:
        o = self._open.get(c.order_id)
        if o is None:
            return
        if c.exec_type is ExecType.TRADE:
            o.fees_ticks += c.last_qty * c.last_px_ticks * self._fee.get(c.last_mkt or "", 0.0) / 1e4
        if c.ord_status not in _DONE:
            return
        del self._open[c.order_id]
        m = self.m
        m.model_parents.labels(model=o.model, role=o.role).inc()
        m.model_ordered_qty.labels(model=o.model).inc(c.order_qty)
        m.model_filled_qty.labels(model=o.model).inc(c.cum_qty)
        arm = self.arms.get(o.role)
        if arm is not None:
            arm.parents += 1
            arm.fallbacks += o.fallback
        if c.cum_qty:
            sf = cost_bps(o.side, c.avg_px_ticks_num / c.cum_qty, o.mid, o.fees_ticks / (c.cum_qty * o.mid) * 1e4)
            m.model_shortfall_bps.labels(model=o.model).observe(sf)
            if arm is not None and not o.fallback:
                arm.add(sf)

    def _verdict(self, champion: str, challenger: str) -> ModelsChanged | None:
        cfg = self.cfg
        can, champ = self.arms["challenger"], self.arms["champion"]
        reason = None
        if can.parents >= cfg.min_parents and can.fallbacks / can.parents > cfg.max_fallback_rate:
            reason = ("fallbacks", f"{can.fallbacks} of {can.parents} canary parents could not be scored "
                                   f"(> {100 * cfg.max_fallback_rate:.1f}%)")
        elif can.n >= cfg.min_parents and champ.n >= cfg.min_parents:
            low = excess_bound(can, champ, cfg.z)
            if low > cfg.max_excess_bps:
                reason = ("shortfall", f"canary shortfall {can.mean:.2f} bps against the champion's "
                                       f"{champ.mean:.2f} ({can.n} and {champ.n} parents): worse by at least "
                                       f"{low:.2f} bps at z {cfg.z:g}, over {cfg.max_excess_bps:g}")
        if reason is None:
            return None
        self.m.model_rollbacks.labels(reason=reason[0]).inc()
        self.rolled_back = reason[1]
        self._run = (champion, None)
        return ModelsChanged(champion=champion, challenger=None, mode="off", who="auto-rollback",
                             reason=f"{challenger} rolled back: {reason[1]}", ts_ns=self.clock_ns())
