"""Discrete-event backtest: a scenario's venues and the router's own engine on
a simulated clock, in one process, no FIX.

What runs is the daemon's code: ``router.engine.Engine`` fed through its one
entry point, ``Engine.handle``, with the planners of ``router.routing``
(``make_planner``), ``router.features.engine.FeatureEngine`` over
``router.market.rings.MarketData`` and ``router.learning.venuestats.
VenueStats``, and ``router.scoring.onnx.Scorer`` for the ML planner. Only
the wire is replaced: child orders reach ``sim.exchange.VenueCore`` (the
same matching the FIX sim venues run) after a one-way latency, and what the
venues answer or publish comes back to the engine as the decoded events
the FIX edge would have produced, after the venue's latency: execution
reports, and market data as the same snapshot-then-incremental entries the
FIX venue sends (``sim.mdupdates``). Timers (ack timeouts, dark rests,
markouts) are the engine's deadlines, fired as ``TimerFired``. Time is an
int of nanoseconds that only this module advances.

The parent stream (``parent_stream``) is a pure function of the scenario, so
the FIX run of the same scenario (``sim.scenario_run``) sends the very same
parents. Limits and the shortfall benchmark use the venues' mid at arrival
(the seeded path plus any leak impact still decaying); the FIX run's OMS
lives in another process than the venues and uses the seeded path alone,
which is the same mid wherever no pool leaks.

Per parent it measures implementation shortfall in bps including fees
(unfilled shares charged at the venues' mid at completion plus one tick, the
cost of finishing them later), fill rate, quantity-weighted 1 s and 5 s markouts
against the venues' mid, and completion time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from router.domain.commands import CancelChild, Command, RejectOrder, ReportToOms, SendChildOrder
from router.domain.costs import markout_bps
from router.domain.events import (
    EngineEvent,
    MarketDataReceived,
    NewOrderReceived,
    TimerFired,
    VenueCancelRejected,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.types import ExecType, OrdStatus, OrdType, Side, TimeInForce, Urgency, VenueKind
from router.engine import Engine, Step
from router.features.engine import market_state
from router.metrics.registry import Metrics
from router.routing.factory import make_planner
from router.routing.policy import Planner
from sim.config import SimClusterConfig
from sim.exchange import Ack, Canceled, CancelRefused, Filled, Out, Rejected, SharedMarket, Trade, VenueCore
from sim.mdupdates import Levels, level_changes, levels_of, snapshot_entries, trade_entry
from sim.oracle import ORACLE, OraclePlanner

NET_ONE_WAY_NS = 40_000
"""Loopback one-way latency per hop (router <-> venue), on top of the venue's
own ack latency, about what a quickfix hop costs on this class of machine."""
EPOCH_NS = 1_000_000_000_000
"""The simulated clock's start (any fixed instant: the seeded mid is a
function of time since the epoch)."""
POLICIES = ("static", "equal", "displayed", "ml")
RL = "rl"
"""The RL planner (``router.routing.rl``): a policy of its own, asked for by name."""
DONE = frozenset({OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED})
"""A parent's statuses after which nothing more fills."""


@dataclass(frozen=True, slots=True)
class ParentSpec:
    at_ns: int
    """Offset from the scenario start."""
    cl_ord_id: str
    symbol: str
    side: Side
    qty: int
    tif: TimeInForce
    urgency: Urgency = Urgency.NORMAL


def parent_stream(cfg: SimClusterConfig, n: int | None = None) -> list[ParentSpec]:
    """The scenario's parents: exponential gaps, uniform lot sizes, sides and
    symbols drawn from the flow's own seed (independent of the venues')."""
    assert cfg.scenario is not None
    fl = cfg.scenario.flow
    count = fl.parents if n is None else n
    rng = np.random.default_rng([fl.seed, 977])
    # Urgency from a stream of its own, drawn only when the flow mixes it.
    mixed = fl.low_prob > 0.0 or fl.high_prob > 0.0
    urng = np.random.default_rng([fl.seed, 978]) if mixed else None
    symbols = [s.symbol for s in cfg.symbols]
    out: list[ParentSpec] = []
    t = 0.0
    for i in range(count):
        t += rng.exponential(fl.interval_ms)
        sym = symbols[int(rng.integers(len(symbols)))]
        lot = cfg.symbol(sym).lot_size
        lots = int(rng.integers(max(1, fl.qty_min // lot), max(1, fl.qty_max // lot) + 1))
        side = Side.BUY if rng.random() < fl.buy_prob else Side.SELL
        tif = TimeInForce.IOC if fl.tif == "ioc" else TimeInForce.DAY
        urgency = Urgency.NORMAL
        if urng is not None:
            u = urng.random()
            urgency = (Urgency.LOW if u < fl.low_prob else
                       Urgency.HIGH if u < fl.low_prob + fl.high_prob else Urgency.NORMAL)
        out.append(ParentSpec(int(t * 1e6), f"P{i + 1}", sym, side, lots * lot, tif, urgency))
    return out


def limit_ticks(cfg: SimClusterConfig, fair_mid: int, side: Side) -> int:
    assert cfg.scenario is not None
    k = cfg.scenario.flow.limit_through_ticks
    return fair_mid + k if side is Side.BUY else max(1, fair_mid - k)


# ------------------------------------------------------------------ results


class ParentResult(msgspec.Struct, kw_only=True):
    cl_ord_id: str
    symbol: str
    side: int
    qty: int
    arrival_ns: int
    arrival_mid: float
    """The venues' mid at arrival, ticks (the benchmark; the live run uses
    the seeded mid, which is the same wherever no pool leaks; read from a
    journal it is the router's NBBO mid, which may be half a tick)."""
    filled: int = 0
    notional_ticks: int = 0
    fees_ticks: float = 0.0
    done_ns: int | None = None
    end_mid: float = 0
    markout_1s_num: float = 0.0
    markout_5s_num: float = 0.0
    plan: str = ""
    fills: list[tuple[int, str, int, int]] = msgspec.field(default_factory=list)
    """(ts_ns, venue, qty, px_ticks) as reported to the OMS."""

    def shortfall_bps(self, tick_penalty: int = 1) -> float:
        """Implementation shortfall including fees, bps of the order's value
        at the arrival mid; unfilled shares cost the move to the end mid plus
        ``tick_penalty`` ticks (finishing them later is not free)."""
        m0 = self.arrival_mid
        paid = self.side * (self.notional_ticks - self.filled * m0) + self.fees_ticks
        unfilled = self.qty - self.filled
        if unfilled:
            paid += unfilled * (self.side * (self.end_mid - m0) + tick_penalty)
        return paid / (self.qty * m0) * 1e4

    @property
    def fill_rate(self) -> float:
        return self.filled / self.qty

    def mark(self, mid_at: Callable[[str, int], float]) -> None:
        """The 1 s and 5 s markouts of its fills against ``mid_at``."""
        for ts, _, q, px in self.fills:
            self.markout_1s_num += q * markout_bps(self.side, px, mid_at(self.symbol, ts + 1_000_000_000))
            self.markout_5s_num += q * markout_bps(self.side, px, mid_at(self.symbol, ts + 5_000_000_000))

    def book(self, ts_ns: int, last_mkt: str, qty: int, px_ticks: int, fee_bps: float) -> None:
        """One fill the OMS was told of, with the fee its venue charges."""
        self.filled += qty
        self.notional_ticks += qty * px_ticks
        self.fees_ticks += qty * px_ticks * fee_bps / 1e4
        self.fills.append((ts_ns, last_mkt, qty, px_ticks))


@dataclass(slots=True)
class ChildLabel:
    """Outcome of one child, for training labels."""

    parent: str
    venue: str
    qty: int
    sent_ns: int
    first_wave: bool
    fills: list[tuple[int, int, int]] = field(default_factory=list)
    """(ts_ns at the venue, qty, px_ticks)."""


@dataclass(slots=True)
class FeatureRow:
    """A parent's features at arrival, for training rows."""

    parent: str
    """Its ClOrdID."""
    features: npt.NDArray[np.float32]
    """[V, N_FEATURES] at arrival, copied."""


class RunResult(msgspec.Struct, kw_only=True):
    scenario: str
    policy: str
    parents: list[ParentResult]
    model_version: str | None = None
    fallbacks: int = 0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0


# ------------------------------------------------------------------- the run


class Backtest:
    """One scenario, one policy, one seed: ``run()`` returns per-parent results."""

    def __init__(self, cfg: SimClusterConfig, policy: str, scorer: Any = None, *, parents: int | None = None,
                 planner: Planner | None = None, record: bool = False, seed: int | None = None,
                 planner_factory: Callable[[SimClusterConfig, Any], Planner] | None = None) -> None:
        """``planner_factory(cfg, feature_engine)``: a planner built on this
        run's own feature engine (``planner`` must not need one)."""
        if cfg.scenario is None:
            raise ValueError("config has no [scenario]")
        if seed is not None:
            # One knob moves every random stream: the mid, the venues and the flow.
            cfg = msgspec.structs.replace(
                cfg, sim=msgspec.structs.replace(cfg.sim, seed=seed),
                scenario=msgspec.structs.replace(cfg.scenario, flow=msgspec.structs.replace(
                    cfg.scenario.flow, seed=seed * 7919 + cfg.scenario.flow.seed)))
        wf = msgspec.structs.replace(cfg.waterfall, planner=policy if policy in (*POLICIES, RL) else
                                     "ml" if policy == ORACLE else "static")
        if policy == RL and not Path(cfg.model.rl_path).exists():
            # The shipped Q-model, wherever the backtest runs from.
            cfg = msgspec.structs.replace(cfg, model=msgspec.structs.replace(
                cfg.model, rl_path=str(Path(__file__).resolve().parent.parent / cfg.model.rl_path)))
        self.cfg = cfg = msgspec.structs.replace(cfg, waterfall=wf)
        self.policy = policy
        self.now = EPOCH_NS
        self.market = SharedMarket(cfg, EPOCH_NS)
        self.cores = {v.name: VenueCore(cfg, v.name, self.market, f"{v.name}-bt") for v in cfg.venues}
        self.market.on_leak(self._on_leak)
        self.md, self.stats, self.fe = market_state(cfg)
        self.scorer = scorer
        if planner is None and policy == ORACLE:
            planner = OraclePlanner(cfg, self.fe, self.market)
        if planner is None and planner_factory is not None:
            planner = planner_factory(cfg, self.fe)
        self.planner = planner or make_planner(cfg, self.fe, scorer, "missing")
        self.record = record
        self.rows: dict[str, FeatureRow] = {}
        """ClOrdID -> features at arrival (``record=True``): the decision's
        own when its planner read the market, else computed once here. Keyed
        by ClOrdID, which outlives the engine's record of the parent."""
        self.metrics = Metrics([v.name for v in cfg.venues])
        self.engine = Engine(cfg, self.planner, self.metrics, "BT", market=self.md, stats=self.stats)
        self.specs = parent_stream(cfg, parents)
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._timer_at: set[int] = set()
        self._vi = {v.name: i for i, v in enumerate(cfg.venues)}
        self._si = {s.symbol: i for i, s in enumerate(cfg.symbols)}
        self._fee = {v.last_mkt: v.take_fee_bps for v in cfg.venues}
        self._lat = {v.name: v.sim.ack_latency_us * 1000 + NET_ONE_WAY_NS for v in cfg.venues}
        self._last_book: dict[tuple[str, str], tuple[Levels, Levels]] = {}
        self.results: dict[str, ParentResult] = {}
        self._by_order: dict[str, ParentResult] = {}
        self.children: dict[str, ChildLabel] = {}
        self._open = 0

    # --------------------------------------------------------------- clock

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    @property
    def fallbacks(self) -> int:
        """Parents routed without the model, as the engine counted them."""
        return int(sum(smp.value for fam in self.metrics.model_fallbacks.collect() for smp in fam.samples
                       if smp.name.endswith("_total")))

    def _handle(self, ev: EngineEvent) -> None:
        self._deliver(self.engine.handle(ev))

    # ------------------------------------------------------------- the run

    def run(self, settle_s: float = 6.0) -> RunResult:
        import time

        wall0 = time.perf_counter()
        cfg = self.cfg
        for v in cfg.venues:
            # The engine answers a lit venue's logon with a subscription;
            # the venue publishes from its first tick either way.
            self._handle(VenueSessionChanged(venue=v.name, up=True, ts_ns=self.now))
            self.at(self.now, self._venue_tick, v.name)
            if v.kind is VenueKind.LIT:
                self.at(self.now + 1, self._md_tick, v.name)
        warm = 2_000_000_000  # books and features fill before the first parent
        for spec in self.specs:
            self.at(EPOCH_NS + warm + spec.at_ns, self._parent, spec)
        end = EPOCH_NS + warm + (self.specs[-1].at_ns if self.specs else 0) + int(settle_s * 1e9)
        heap = self._heap
        while heap:
            t, _, fn, args = heapq.heappop(heap)
            if t > end:
                break
            self.now = t
            fn(*args)
        self._finish()
        return RunResult(scenario=cfg.scenario.name if cfg.scenario else "", policy=self.policy,
                         parents=[self.results[s.cl_ord_id] for s in self.specs if s.cl_ord_id in self.results],
                         model_version=getattr(self.scorer, "version", None), fallbacks=self.fallbacks,
                         sim_seconds=(end - EPOCH_NS) / 1e9, wall_seconds=time.perf_counter() - wall0)

    # ------------------------------------------------------------ parents

    def _parent(self, spec: ParentSpec) -> None:
        # The arrival mid is the market's, leak impact included: a parent is
        # charged for what its own routing moves, not for what earlier
        # parents left behind.
        fair = self.market.mid_at(spec.symbol, self.now)
        res = ParentResult(cl_ord_id=spec.cl_ord_id, symbol=spec.symbol, side=spec.side.sign, qty=spec.qty,
                           arrival_ns=self.now, arrival_mid=fair)
        self.results[spec.cl_ord_id] = res
        ev = NewOrderReceived(session="OMS", cl_ord_id=spec.cl_ord_id, symbol=spec.symbol, side=spec.side,
                              qty=spec.qty, ord_type=OrdType.LIMIT, price_ticks=limit_ticks(self.cfg, fair, spec.side),
                              tif=spec.tif, recv_ns=self.now, urgency=spec.urgency)
        step = self.engine.handle(ev)
        d = step.decision
        if d is not None and self.record and d.order_id in self.engine.parents:
            x = d.features
            if x is None:
                x = self.fe.compute_order(self.engine.parents[d.order_id], self.now).copy()
            self.rows[spec.cl_ord_id] = FeatureRow(spec.cl_ord_id, x)
        self._deliver(step)

    def _deliver(self, step: Step) -> None:
        now = self.now
        cmds: list[Command] = step.commands
        for c in cmds:
            if isinstance(c, SendChildOrder):
                parent = self.engine.parents[self.engine.children[c.child_id].parent_id]
                self.children[c.child_id] = ChildLabel(parent.cl_ord_id, c.venue, c.qty, now,
                                                       first_wave=parent.arrival_ns == now)
                res = self.results.get(parent.cl_ord_id)
                if res is not None and not res.plan:
                    res.plan = self.engine.plan_name(parent.order_id)
                self.at(now + NET_ONE_WAY_NS, self._venue_new, c)
            elif isinstance(c, CancelChild):
                self.at(now + NET_ONE_WAY_NS, self._venue_cancel, c)
            elif isinstance(c, ReportToOms):
                self._report(c)
            elif isinstance(c, RejectOrder):
                res = self.results.get(c.cl_ord_id)
                if res is not None:
                    res.done_ns = now
        d = self.engine.next_timer_ns()
        if d is not None and d not in self._timer_at:
            self._timer_at.add(d)
            self.at(max(d, now), self._timer, d)

    def _timer(self, d: int) -> None:
        self._timer_at.discard(d)
        self._handle(TimerFired(ts_ns=self.now))

    def _report(self, r: ReportToOms) -> None:
        res = self.results.get(r.cl_ord_id)
        if res is None:
            return
        if r.exec_type is ExecType.TRADE:
            res.book(self.now, r.last_mkt or "", r.last_qty, r.last_px_ticks, self._fee.get(r.last_mkt or "", 0.0))
        if r.ord_status in DONE:
            res.done_ns = self.now
            # Unfilled shares are finished later at the market's mid then,
            # leak impact included (the live run can only use the fair mid).
            res.end_mid = self.market.mid_at(res.symbol, self.now)

    # ------------------------------------------------------------- venues

    def _venue_new(self, c: SendChildOrder) -> None:
        outs = self.cores[c.venue].new_order(c.child_id, c.symbol, c.side, c.qty, c.ord_type, c.price_ticks, c.tif,
                                             self.now)
        self._venue_outs(c.venue, outs)

    def _venue_cancel(self, c: CancelChild) -> None:
        self._venue_outs(c.venue, self.cores[c.venue].cancel(c.cancel_id, c.child_id))

    def _venue_tick(self, venue: str) -> None:
        dt_ns = self.cfg.venue(venue).sim.requote_ms * 1_000_000
        self._venue_outs(venue, self.cores[venue].tick(self.now, dt_ns / 1e9))
        self.at(self.now + dt_ns, self._venue_tick, venue)

    def _on_leak(self, symbol: str, ts_ns: int) -> None:
        for name, core in self.cores.items():
            if core.lit:
                self._venue_outs(name, core.requote(symbol, ts_ns))

    def _md_tick(self, venue: str) -> None:
        """Publish what changed in the venue's books since its last message,
        as the FIX venue does: a snapshot first, then changed levels."""
        core = self.cores[venue]
        depth = self.cfg.marketdata.depth
        at = self.now + self._lat[venue]
        for sym, book in core.lit_books().items():
            new = levels_of(book, depth)
            key = (venue, sym)
            old = self._last_book.get(key)
            if old == new:
                continue
            self._last_book[key] = new
            if old is None:
                ev = MarketDataReceived(venue=venue, snapshot=True, symbol=sym,
                                        entries=tuple(snapshot_entries(sym, *new)), recv_ns=at)
            else:
                ev = MarketDataReceived(venue=venue, snapshot=False, symbol="",
                                        entries=tuple(level_changes(sym, old, new)), recv_ns=at)
            self.at(at, self._handle, ev)
        self.at(self.now + self.cfg.venue(venue).sim.md_interval_ms * 1_000_000, self._md_tick, venue)

    def _venue_outs(self, venue: str, outs: list[Out]) -> None:
        lat = self._lat[venue]
        for o in outs:
            if isinstance(o, Trade):
                at = self.now + lat
                self.at(at, self._handle, MarketDataReceived(
                    venue=venue, snapshot=False, symbol="", recv_ns=at,
                    entries=(trade_entry(o.symbol, o.px_ticks, o.qty, o.aggressor),)))
                continue
            if isinstance(o, Filled):
                lab = self.children.get(o.order.cl_ord_id)
                if lab is not None:
                    lab.fills.append((self.now, o.qty, o.px_ticks))
            self.at(self.now + lat, self._to_engine, venue, o, self._snapshot(o))

    @staticmethod
    def _snapshot(o: Out) -> tuple[int, int, bool]:
        # The report carries the order's state as of sending, not delivery.
        if isinstance(o, (Ack, Filled, Canceled)):
            return (o.order.cum_qty, o.order.qty, o.order.done)
        return (0, 0, False)

    def _to_engine(self, venue: str, o: Out, snap: tuple[int, int, bool]) -> None:
        now = self.now
        cum, qty, done = snap
        eng = self.engine
        if isinstance(o, Ack):
            ev = VenueReport(venue=venue, child_id=o.order.cl_ord_id, exec_id=self.cores[venue].next_exec_id(),
                             exec_type=ExecType.NEW, ord_status=OrdStatus.NEW, last_qty=0, last_px_ticks=0,
                             cum_qty=cum, leaves_qty=qty - cum, text="", recv_ns=now)
            self._deliver(eng.handle(ev))
        elif isinstance(o, Filled):
            ev = VenueReport(venue=venue, child_id=o.order.cl_ord_id, exec_id=self.cores[venue].next_exec_id(),
                             exec_type=ExecType.TRADE,
                             ord_status=OrdStatus.FILLED if done else OrdStatus.PARTIALLY_FILLED,
                             last_qty=o.qty, last_px_ticks=o.px_ticks, cum_qty=cum,
                             leaves_qty=0 if done else qty - cum, text="", recv_ns=now)
            self._deliver(eng.handle(ev))
        elif isinstance(o, Canceled):
            ev = VenueReport(venue=venue, child_id=o.order.cl_ord_id, exec_id=self.cores[venue].next_exec_id(),
                             exec_type=ExecType.CANCELED, ord_status=OrdStatus.CANCELED, last_qty=0,
                             last_px_ticks=0, cum_qty=cum, leaves_qty=0, text=o.text, recv_ns=now)
            self._deliver(eng.handle(ev))
        elif isinstance(o, Rejected):
            ev = VenueReport(venue=venue, child_id=o.cl_ord_id, exec_id=self.cores[venue].next_exec_id(),
                             exec_type=ExecType.REJECTED, ord_status=OrdStatus.REJECTED, last_qty=0,
                             last_px_ticks=0, cum_qty=0, leaves_qty=0, text=o.text, recv_ns=now)
            self._deliver(eng.handle(ev))
        elif isinstance(o, CancelRefused):
            reason = 1 if o.order is None else 0
            self._deliver(eng.handle(VenueCancelRejected(
                venue=venue, child_id=o.orig_cl_ord_id, text="too late to cancel" if reason == 0 else "unknown order",
                recv_ns=now, reason=reason)))

    # ------------------------------------------------------------ results

    def true_mid(self, symbol: str, ts_ns: int) -> int:
        return self.market.mid_at(symbol, ts_ns)

    def _finish(self) -> None:
        for res in self.results.values():
            if res.done_ns is None:
                res.end_mid = self.market.mid_at(res.symbol, self.now)
            res.mark(self.true_mid)


# --------------------------------------------------------------- statistics


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% interval (normal approximation; n is in the hundreds)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    a = np.asarray(values, dtype=np.float64)
    m = float(a.mean())
    if n < 2:
        return (m, m, m)
    h = 1.96 * float(a.std(ddof=1)) / math.sqrt(n)
    return (m, m - h, m + h)


def summarize(run: RunResult) -> dict[str, Any]:
    ps = run.parents
    filled = [p for p in ps if p.filled]
    out: dict[str, Any] = {
        "scenario": run.scenario, "policy": run.policy, "parents": len(ps),
        "shortfall_bps": mean_ci([p.shortfall_bps() for p in ps]),
        "fill_rate": mean_ci([p.fill_rate for p in ps]),
        "markout_1s_bps": mean_ci([p.markout_1s_num / p.filled for p in filled]),
        "markout_5s_bps": mean_ci([p.markout_5s_num / p.filled for p in filled]),
        "completion_ms": mean_ci([(p.done_ns - p.arrival_ns) / 1e6 for p in ps if p.done_ns is not None]),
        "fallbacks": run.fallbacks, "model_version": run.model_version,
        "sim_s": round(run.sim_seconds, 1), "wall_s": round(run.wall_seconds, 2),
    }
    return out
