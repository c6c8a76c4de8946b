"""Sans-IO simulated venues and the market they share.

``VenueCore`` is one venue's matching (a lit book with background makers and
takers, or a dark midpoint pool) for every symbol; it takes typed orders and
the time, and returns what happened as plain records. Two wrappers drive the
same cores, so a scenario behaves the same in both:

* ``sim.venue.VenueServer`` puts a quickfix acceptor in front of a core and
  runs it on the wall clock (the demo, the e2e tests, ``sor bench``);
* ``sim.backtest`` runs every core of a scenario in one process on a
  simulated clock, feeding the router's own engine directly.

``SharedMarket`` is what the venues of one process agree on: the mid of each
symbol (the seeded ``MidPath``, the same in every process, plus the impact
of leaks, which only venues in the same process see: run a scenario with a
leaking pool through ``sor sim-venue --all``) and the scenario's regime
schedule (which venue plays with which parameters from when).

A toxic (leaking) dark pool is real here, not a label: every router order it
receives moves the mid toward the order's side by ``leak_ticks`` at once
(others trade ahead of it), every lit venue in the process requotes around
the moved mid immediately, the pool crosses at the moved mid, and the move
decays with ``scenario.impact_half_life_ms``. So the router pays the leak on
the dark fill and on whatever it sends to the lit venues next, and the fill's
markout is adverse as the move decays.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import msgspec
import numpy as np

from router.config import SymbolConfig
from router.domain.types import OrdType, Side, TimeInForce, VenueKind
from sim.book import BackgroundLiquidity, Fill, LitBook, SubmitResult
from sim.config import SimClusterConfig, SimVenueConfig, VenueSimConfig
from sim.dark import DarkPool
from sim.midpath import MidPath

ROUTER_OWNER = "router"

__all__ = [
    "ROUTER_OWNER",
    "Ack",
    "CancelRefused",
    "Canceled",
    "Filled",
    "Out",
    "Rejected",
    "SharedMarket",
    "Trade",
    "VenueCore",
    "VenueOrder",
    "mid_path",
]


def mid_path(cfg: SimClusterConfig, sym: SymbolConfig, epoch_ns: int) -> MidPath:
    tick = Decimal(sym.tick_size)
    start = int(Decimal(sym.ref_price) / tick)
    # Each symbol gets its own walk, but the same for every process.
    seed = cfg.sim.seed * 1_000_003 + sum(ord(c) for c in sym.symbol)
    return MidPath(seed=seed, start_ticks=start, step_ns=cfg.sim.mid_step_ms * 1_000_000,
                   vol_ticks=cfg.sim.mid_vol_ticks, epoch_ns=epoch_ns)


# ---------------------------------------------------------------- the records


@dataclass(slots=True)
class VenueOrder:
    cl_ord_id: str
    order_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    cum_qty: int = 0
    notional: int = 0
    canceled: bool = False
    """Its remainder was canceled (by request, or an IOC's)."""

    @property
    def done(self) -> bool:
        return self.cum_qty >= self.qty

    @property
    def ord_status(self) -> str:
        """FIX OrdStatus(39) as the venue sees the order now."""
        if self.done:
            return "2"
        if self.canceled:
            return "4"
        return "1" if self.cum_qty else "0"


@dataclass(slots=True)
class Ack:
    order: VenueOrder


@dataclass(slots=True)
class Filled:
    order: VenueOrder
    """Already updated: ``cum_qty``/``notional`` include this fill."""
    qty: int
    px_ticks: int


@dataclass(slots=True)
class Canceled:
    order: VenueOrder
    cl_ord_id: str
    """The cancel's own ClOrdID (the order's for an IOC remainder)."""
    orig_cl_ord_id: str | None
    text: str


@dataclass(slots=True)
class Rejected:
    cl_ord_id: str
    symbol: str
    text: str


@dataclass(slots=True)
class CancelRefused:
    cl_ord_id: str
    orig_cl_ord_id: str
    order: VenueOrder | None
    """None: the venue does not know the order."""


@dataclass(slots=True)
class Trade:
    """A public print (lit venues only), for the market-data feed."""

    symbol: str
    px_ticks: int
    qty: int
    aggressor: Side | None


Out = Ack | Filled | Canceled | Rejected | CancelRefused | Trade


# ------------------------------------------------------------- shared market


class SharedMarket:
    """Mid prices, leak impact and the regime schedule of one process.

    ``epoch_ns`` is the scenario start: regime times count from it.
    """

    def __init__(self, cfg: SimClusterConfig, epoch_ns: int) -> None:
        self.cfg = cfg
        self.epoch_ns = epoch_ns
        self.paths = {s.symbol: mid_path(cfg, s, epoch_ns) for s in cfg.symbols}
        sc = cfg.scenario
        hl_ms = sc.impact_half_life_ms if sc is not None else 1_500
        self._decay_per_ns = math.log(2.0) / (max(hl_ms, 1) * 1_000_000)
        # Running impact per symbol (ticks at ``_t``), plus the history of
        # impulses so a mid can be asked for any instant (markouts).
        self._impact = {s.symbol: 0.0 for s in cfg.symbols}
        self._t = {s.symbol: epoch_ns for s in cfg.symbols}
        self.impulses: dict[str, list[tuple[int, float]]] = {s.symbol: [] for s in cfg.symbols}
        self._listeners: list[Callable[[str, int], None]] = []
        self._schedule = {v.name: self._build_schedule(v) for v in cfg.venues}

    # -- prices

    def impact_at(self, symbol: str, ts_ns: int) -> float:
        if ts_ns >= self._t[symbol]:
            return self._impact[symbol] * math.exp(-self._decay_per_ns * (ts_ns - self._t[symbol]))
        # A past instant: sum the impulses up to it.
        return sum(a * math.exp(-self._decay_per_ns * (ts_ns - t)) for t, a in self.impulses[symbol] if t <= ts_ns)

    def mid_at(self, symbol: str, ts_ns: int) -> int:
        """The mid every venue of this process quotes around, in ticks."""
        return max(1, self.paths[symbol].mid_at(ts_ns) + round(self.impact_at(symbol, ts_ns)))

    def fair_mid_at(self, symbol: str, ts_ns: int) -> int:
        """The seeded path alone: what every process agrees on (the benchmark)."""
        return self.paths[symbol].mid_at(ts_ns)

    def leak(self, symbol: str, ticks: float, ts_ns: int) -> None:
        """Move the mid by ``ticks`` now; lit venues requote at once."""
        self._impact[symbol] = self.impact_at(symbol, ts_ns) + ticks
        self._t[symbol] = ts_ns
        self.impulses[symbol].append((ts_ns, ticks))
        for fn in self._listeners:
            fn(symbol, ts_ns)

    def on_leak(self, fn: Callable[[str, int], None]) -> None:
        self._listeners.append(fn)

    # -- regimes

    def _build_schedule(self, venue: SimVenueConfig) -> list[tuple[int, VenueSimConfig]]:
        out = [(self.epoch_ns, venue.sim)]
        regimes = sorted((r for r in (self.cfg.scenario.regimes if self.cfg.scenario else []) if r.venue == venue.name),
                         key=lambda r: r.at_s)
        cur = venue.sim
        for r in regimes:
            changes = {k: v for k, v in msgspec.structs.asdict(r).items()
                       if k not in ("at_s", "venue") and v is not None}
            cur = msgspec.structs.replace(cur, **changes)
            out.append((self.epoch_ns + int(r.at_s * 1e9), cur))
        return out

    def params(self, venue: str, ts_ns: int) -> VenueSimConfig:
        """The venue's sim parameters in force at ``ts_ns``."""
        sched = self._schedule[venue]
        cur = sched[0][1]
        for at, p in sched:
            if at > ts_ns:
                break
            cur = p
        return cur


# --------------------------------------------------------------- venue core


class _Book:
    """Book (lit) or pool (dark) plus background flow for one symbol."""

    __slots__ = ("bg", "book", "pool")

    def __init__(self, venue: SimVenueConfig, sym: SymbolConfig, rng: np.random.Generator) -> None:
        s = venue.sim
        self.book: LitBook | None = None
        self.bg: BackgroundLiquidity | None = None
        self.pool: DarkPool | None = None
        if venue.kind is VenueKind.LIT:
            self.book = LitBook()
            self.bg = BackgroundLiquidity(self.book, rng, levels=s.levels, half_spread_ticks=s.half_spread_ticks,
                                          size_mean=s.level_size_mean, size_jitter=s.level_size_jitter,
                                          lot_size=sym.lot_size)
        else:
            self.pool = DarkPool(rng, contra_prob=s.contra_prob, contra_size_mean=s.contra_size_mean)


FINISHED_KEPT = 200_000
"""Finished orders a sim venue remembers (a trading day's children)."""


class VenueCore:
    """One simulated venue for every configured symbol. Not thread-safe: one
    owner (an event loop or the backtest) calls it."""

    def __init__(self, cfg: SimClusterConfig, venue_name: str, market: SharedMarket, tag: str) -> None:
        self.cfg = cfg
        self.venue = cfg.venue(venue_name)
        self.market = market
        s = self.venue.sim
        self.rng = np.random.default_rng([cfg.sim.seed, s.seed, sum(map(ord, venue_name))])
        self.books = {sym.symbol: _Book(self.venue, sym, self.rng) for sym in cfg.symbols}
        self.lit = self.venue.kind is VenueKind.LIT
        self.orders: dict[str, VenueOrder] = {}
        self.finished: OrderedDict[str, VenueOrder] = OrderedDict()
        """Orders that ended (filled or canceled), newest last, so a status
        request or a reused ClOrdID is answered truthfully; bounded by
        ``FINISHED_KEPT``."""
        self._ids = itertools.count(1)
        self._tag = tag
        self.params = s
        self.fills_sent = 0

    def next_exec_id(self) -> str:
        return f"{self._tag}-E{next(self._ids)}"

    def lit_books(self) -> dict[str, LitBook]:
        return {sym: b.book for sym, b in self.books.items() if b.book is not None}

    # ------------------------------------------------------------- commands

    def new_order(self, cl: str, symbol: str, side: Side, qty: int, ord_type: OrdType, price_ticks: int | None,
                  tif: TimeInForce, ts_ns: int) -> list[Out]:
        if symbol not in self.books:
            return [Rejected(cl, symbol, f"unknown symbol {symbol!r}")]
        if cl in self.orders or cl in self.finished:
            return [Rejected(cl, symbol, f"duplicate ClOrdID {cl!r}")]
        if qty <= 0:
            return [Rejected(cl, symbol, "quantity must be positive")]
        if ord_type is OrdType.LIMIT and price_ticks is None:
            return [Rejected(cl, symbol, "limit order needs an on-tick price")]
        bk = self.books[symbol]
        order = VenueOrder(cl, f"{self._tag}-{next(self._ids)}", symbol, side, qty, ord_type, price_ticks)
        out: list[Out] = []
        if bk.pool is not None:
            if qty < bk.pool.min_qty or (ord_type is OrdType.LIMIT and (price_ticks or 0) <= 0):
                return [Rejected(cl, symbol, f"order refused by the pool (qty {qty}, price {price_ticks})")]
            leak = self.market.params(self.venue.name, ts_ns).leak_ticks
            if leak:
                # The leak happens on receipt, before the pool crosses: the
                # ones trading ahead saw the order first.
                self.market.leak(symbol, side.sign * leak, ts_ns)
            try:
                res = bk.pool.submit(cl, ROUTER_OWNER, side, qty, ord_type, price_ticks, tif,
                                     self.market.mid_at(symbol, ts_ns), ts_ns)
            except ValueError as e:
                return [Rejected(cl, symbol, str(e))]
        else:
            assert bk.book is not None
            try:
                res = bk.book.submit(cl, ROUTER_OWNER, side, qty, ord_type, price_ticks, tif, ts_ns)
            except ValueError as e:
                return [Rejected(cl, symbol, str(e))]
        self.orders[cl] = order
        out.append(Ack(order))
        self._fills(symbol, res.fills, side, out)
        self._finish_unfilled(order, res, out)
        return out

    def cancel(self, cl: str, orig: str) -> list[Out]:
        order = self.orders.get(orig)
        left: int | None = None
        if order is not None:
            bk = self.books[order.symbol]
            if bk.book is not None:
                left = bk.book.cancel(orig)
            elif bk.pool is not None:
                left = bk.pool.cancel(orig)
        if order is None or left is None:
            return [CancelRefused(cl, orig, order or self.finished.get(orig))]
        order.canceled = True
        self._finish(order)
        return [Canceled(order, cl, orig, "canceled")]

    def status(self, cl: str) -> VenueOrder | None:
        """The venue's own record of order ``cl``: live or finished; None
        when it does not know it (never received, or lost in a restart)."""
        return self.orders.get(cl) or self.finished.get(cl)

    # ------------------------------------------------------- background flow

    def tick(self, ts_ns: int, dt_s: float) -> list[Out]:
        """Requote around the mid and play background takers/contra for the
        last ``dt_s`` seconds, with the parameters in force now."""
        p = self.market.params(self.venue.name, ts_ns)
        self.params = p
        out: list[Out] = []
        rng = self.rng
        for symbol, bk in self.books.items():
            mid = self.market.mid_at(symbol, ts_ns)
            n = int(rng.poisson(p.taker_rate_hz * dt_s))
            if bk.bg is not None:
                bk.bg.size_mean = p.level_size_mean
                self._fills(symbol, bk.bg.requote(mid, ts_ns), None, out)
                for _ in range(n):
                    side = Side.BUY if rng.random() < 0.5 else Side.SELL
                    size = max(1, int(rng.exponential(p.taker_size_mean)))
                    self._fills(symbol, bk.bg.take(side, size, ts_ns), side, out)
            elif bk.pool is not None:
                bk.pool.contra_prob = p.contra_prob
                bk.pool.contra_size_mean = p.contra_size_mean
                for _ in range(n):
                    side = Side.BUY if rng.random() < 0.5 else Side.SELL
                    size = max(1, int(rng.exponential(p.contra_size_mean)))
                    self._fills(symbol, bk.pool.on_contra_arrival(side, size, mid, ts_ns), side, out)
        return out

    def flicker(self) -> int:
        """Quote-refresh churn on every lit book (see ``BackgroundLiquidity.flicker``);
        the number of quotes amended."""
        return sum(bk.bg.flicker() for bk in self.books.values() if bk.bg is not None)

    def requote(self, symbol: str, ts_ns: int) -> list[Out]:
        """Lit makers move their ladder to the current mid now (after a leak)."""
        bk = self.books.get(symbol)
        out: list[Out] = []
        if bk is not None and bk.bg is not None:
            self._fills(symbol, bk.bg.requote(self.market.mid_at(symbol, ts_ns), ts_ns), None, out)
        return out

    # ------------------------------------------------------------ internals

    def _fills(self, symbol: str, fills: list[Fill], aggressor: Side | None, out: list[Out]) -> None:
        for fl in fills:
            if self.lit:
                out.append(Trade(symbol, fl.price_ticks, fl.qty, aggressor))
            for oid, owner in ((fl.taker_id, fl.taker_owner), (fl.maker_id, fl.maker_owner)):
                if owner != ROUTER_OWNER:
                    continue
                order = self.orders.get(oid)
                if order is None:
                    continue
                order.cum_qty += fl.qty
                order.notional += fl.qty * fl.price_ticks
                out.append(Filled(order, fl.qty, fl.price_ticks))
                self.fills_sent += 1
                if order.done:
                    self._finish(order)

    def _finish_unfilled(self, order: VenueOrder, res: SubmitResult, out: list[Out]) -> None:
        if res.canceled_qty and order.cum_qty < order.qty:
            order.canceled = True
            out.append(Canceled(order, order.cl_ord_id, None, "IOC remainder canceled"))
            self._finish(order)

    def _finish(self, order: VenueOrder) -> None:
        self.orders.pop(order.cl_ord_id, None)
        done = self.finished
        done[order.cl_ord_id] = order
        if len(done) > FINISHED_KEPT:
            done.popitem(last=False)
