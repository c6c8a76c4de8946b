"""A simulated venue: a real quickfix acceptor in front of a matching engine.

One process per venue, so a test can kill a venue and see the router react.
quickfix's threads only decode; the asyncio loop owns the book, the
background flow timers and all sending, so matching needs no locks.

The mid follows ``MidPath``, a pure function of wall-clock time shared by
every sim process (venues and the sim OMS agree on the mid without talking).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import quickfix as fix

from fix.bridge import BridgeApplication, send
from fix.codec import (
    AVG_PX,
    CL_ORD_ID,
    CUM_QTY,
    CXL_REJ_REASON,
    CXL_REJ_RESPONSE_TO,
    EXEC_ID,
    EXEC_TYPE,
    LAST_MKT,
    LAST_PX,
    LAST_QTY,
    LEAVES_QTY,
    ORD_REJ_REASON,
    ORD_STATUS,
    ORD_TYPE,
    ORDER_ID,
    ORDER_QTY,
    ORIG_CL_ORD_ID,
    PRICE,
    SIDE,
    SYMBOL,
    TEXT,
    TIME_IN_FORCE,
    TRACE_TAG,
    Ticks,
    field,
    msg_type,
)
from fix.gateway import Gateway
from fix.settings import SessionSpec, session_id, session_key
from router.config import Config, SymbolConfig, VenueConfig
from router.domain import OrdType, Side, TimeInForce, VenueKind
from sim.book import BackgroundLiquidity, Fill, LitBook, SubmitResult
from sim.dark import DarkPool
from sim.mdfeed import MdPublisher
from sim.midpath import MidPath

log = logging.getLogger("sor.sim.venue")

ROUTER_OWNER = "router"


def day_epoch_ns(now_ns: int) -> int:
    """Midnight UTC of the current day: the default epoch every sim process
    derives on its own, so they agree without being told."""
    day = 86_400 * 1_000_000_000
    return now_ns - now_ns % day


def mid_path(cfg: Config, sym: SymbolConfig, epoch_ns: int) -> MidPath:
    tick = Decimal(sym.tick_size)
    start = int(Decimal(sym.ref_price) / tick)
    # Each symbol gets its own walk, but the same for every process.
    seed = cfg.sim.seed * 1_000_003 + sum(ord(c) for c in sym.symbol)
    return MidPath(seed=seed, start_ticks=start, step_ns=cfg.sim.mid_step_ms * 1_000_000,
                   vol_ticks=cfg.sim.mid_vol_ticks, epoch_ns=epoch_ns)


@dataclass(slots=True)
class _Order:
    cl_ord_id: str
    order_id: str
    symbol: str
    side: Side
    qty: int
    ord_type: OrdType
    price_ticks: int | None
    cum_qty: int = 0
    notional: int = 0


class _Market:
    """Book (lit) or pool (dark) plus background flow for one symbol."""

    def __init__(self, venue: VenueConfig, sym: SymbolConfig, path: MidPath, rng: np.random.Generator) -> None:
        s = venue.sim
        self.path = path
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


class VenueServer:
    def __init__(self, cfg: Config, venue_name: str, loop: asyncio.AbstractEventLoop, state_dir: str,
                 wall_ns: Callable[[], int] = time.time_ns, record_trace: bool = False) -> None:
        self.cfg = cfg
        self.venue = cfg.venue(venue_name)
        self.loop = loop
        self._wall_ns = wall_ns
        s = self.venue.sim
        self._rng = np.random.default_rng([cfg.sim.seed, s.seed, sum(map(ord, venue_name))])
        epoch = cfg.sim.epoch_ns or day_epoch_ns(wall_ns())
        self.markets = {sym.symbol: _Market(self.venue, sym, mid_path(cfg, sym, epoch), self._rng)
                        for sym in cfg.symbols}
        self.ticks = {sym.symbol: Ticks(sym.tick_size) for sym in cfg.symbols}
        self.orders: dict[str, _Order] = {}
        self._ids = itertools.count(1)
        self._tag = f"{venue_name}-{wall_ns() % 10**10:x}"
        self._latency_s = s.ack_latency_us / 1e6
        spec = SessionSpec(role="acceptor", sender_comp_id=self.venue.target_comp_id,
                           target_comp_id=self.venue.sender_comp_id, port=self.venue.port,
                           heartbeat_s=cfg.fix.heartbeat_s, allowed_remote=tuple(s.allowed_remote),
                           repeating_groups=True)
        self._sid = session_id(spec)
        self._key = session_key(self._sid)
        self.app = BridgeApplication(f"sim-{venue_name}", self._on_message)
        self.gw = Gateway(f"sim-{venue_name}", [spec], self.app, state_dir, file_store=True)
        self._timer: asyncio.TimerHandle | None = None
        self._md_timer: asyncio.TimerHandle | None = None
        self.fills_sent = 0
        self.record_trace = record_trace
        self.trace_arrivals: list[tuple[int, int]] = []
        """(SorTraceNs(7002) of an arriving order, CLOCK_MONOTONIC at receipt)."""
        self.md = MdPublisher(self.ticks, self._send) if self.venue.kind is VenueKind.LIT else None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._tick()
        if self.md is not None:
            self._md_tick()
        self.gw.start()

    def stop(self) -> None:
        for t in (self._timer, self._md_timer):
            if t is not None:
                t.cancel()
        self.gw.stop()

    # -------------------------------------------------- quickfix thread: copy

    def _on_message(self, msg: Any, key: str) -> None:
        if self.record_trace:
            # Stamped first thing on quickfix's thread: this is the arrival.
            arrived = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            trace = field(msg, TRACE_TAG)
            if trace is not None and trace.isdigit():
                self.trace_arrivals.append((int(trace), arrived))
        mt = msg_type(msg)
        if mt == "V":
            # Symbols sit in a repeating group; the raw string keeps them.
            parts = [p.partition("=") for p in msg.toString().split("\x01")]
            req = {int(t): v for t, _, v in parts if t in ("262", "263")}
            symbols = [v for t, _, v in parts if t == "55"]
            self.loop.call_soon_threadsafe(self._on_md_request, req.get(262, ""), req.get(263, "1"), symbols)
            return
        fields = {t: field(msg, t) for t in (CL_ORD_ID, ORIG_CL_ORD_ID, SYMBOL, SIDE, ORDER_QTY, ORD_TYPE, PRICE,
                                             TIME_IN_FORCE)}
        self.loop.call_soon_threadsafe(self._handle, mt, fields)

    def _books(self) -> dict[str, LitBook]:
        return {s: m.book for s, m in self.markets.items() if m.book is not None}

    def _on_md_request(self, req_id: str, sub_type: str, symbols: list[str]) -> None:
        if self.md is None:
            MdPublisher(self.ticks, self._send).reject(req_id, f"{self.venue.name} is a dark venue: no market data")
            return
        if sub_type == "2":
            self.md.unsubscribe_all()
            return
        unknown = self.md.subscribe(req_id, symbols, self._books())
        if unknown:
            self.md.reject(req_id, f"unknown symbols: {', '.join(unknown)}")

    def _md_tick(self) -> None:
        assert self.md is not None
        try:
            self.md.publish_books(self._books())
        except Exception:
            log.exception("venue %s market data publish failed", self.venue.name)
        self._md_timer = self.loop.call_later(self.venue.sim.md_interval_ms / 1000.0, self._md_tick)

    # ----------------------------------------------------- loop: the venue

    def _handle(self, mt: str, f: dict[int, str | None]) -> None:
        try:
            if mt == "D":
                self._on_new(f)
            elif mt == "F":
                self._on_cancel(f)
        except Exception:
            log.exception("venue %s failed on %s %r", self.venue.name, mt, f)

    def _mid(self, symbol: str) -> int:
        return self.markets[symbol].path.mid_at(self._wall_ns())

    def _on_new(self, f: dict[int, str | None]) -> None:
        cl = f[CL_ORD_ID] or ""
        symbol = f[SYMBOL] or ""
        order_id = f"{self._tag}-{next(self._ids)}"
        try:
            side = Side(f[SIDE])
            ord_type = OrdType(f[ORD_TYPE])
            tif = TimeInForce(f[TIME_IN_FORCE] or "0")
            qty = int(Decimal(f[ORDER_QTY] or "0"))
            if symbol not in self.markets:
                raise ValueError(f"unknown symbol {symbol!r}")
            px = f[PRICE]
            price = self.ticks[symbol].to_ticks(Decimal(px)) if px else None
            if ord_type is OrdType.LIMIT and price is None:
                raise ValueError("limit order needs an on-tick price")
            if cl in self.orders:
                raise ValueError(f"duplicate ClOrdID {cl!r}")
            if qty <= 0:
                raise ValueError("quantity must be positive")
        except (ValueError, InvalidOperation) as e:
            self._reject(cl, symbol, f, str(e) or "invalid order")
            return
        order = _Order(cl, order_id, symbol, side, qty, ord_type, price)
        self.orders[cl] = order
        self._report(order, "0", "0", cl)
        mkt = self.markets[symbol]
        ts = self._wall_ns()
        if mkt.book is not None:
            res = mkt.book.submit(cl, ROUTER_OWNER, side, qty, ord_type, price, tif, ts)
        else:
            assert mkt.pool is not None
            res = mkt.pool.submit(cl, ROUTER_OWNER, side, qty, ord_type, price, tif, self._mid(symbol), ts)
        self._publish(symbol, res.fills, side)
        self._finish_unfilled(order, res)

    def _finish_unfilled(self, order: _Order, res: SubmitResult) -> None:
        if res.canceled_qty and order.cum_qty < order.qty:
            self._report(order, "4", "4", order.cl_ord_id, text="IOC remainder canceled")
            self.orders.pop(order.cl_ord_id, None)

    def _on_cancel(self, f: dict[int, str | None]) -> None:
        cl = f[CL_ORD_ID] or ""
        orig = f[ORIG_CL_ORD_ID] or ""
        order = self.orders.get(orig)
        left: int | None = None
        if order is not None:
            mkt = self.markets[order.symbol]
            left = mkt.book.cancel(orig) if mkt.book is not None else mkt.pool.cancel(orig) if mkt.pool else None
        if order is None or left is None:
            m = fix.Message()
            m.getHeader().setField(35, "9")
            m.setField(ORDER_ID, order.order_id if order else "NONE")
            m.setField(CL_ORD_ID, cl)
            m.setField(ORIG_CL_ORD_ID, orig)
            m.setField(ORD_STATUS, "2" if order and order.cum_qty >= order.qty else "8")
            m.setField(CXL_REJ_RESPONSE_TO, "1")
            m.setField(CXL_REJ_REASON, "1" if order is None else "0")
            m.setField(TEXT, "unknown order" if order is None else "too late to cancel")
            self._send(m)
            return
        self.orders.pop(orig, None)
        self._report(order, "4", "4", cl, orig=orig, text="canceled")

    def _publish(self, symbol: str, fills: list[Fill], aggressor: Side | None) -> None:
        for fl in fills:
            if self.md is not None:
                self.md.publish_trade(symbol, fl.price_ticks, fl.qty, aggressor)
            for oid, owner in ((fl.taker_id, fl.taker_owner), (fl.maker_id, fl.maker_owner)):
                if owner != ROUTER_OWNER:
                    continue
                order = self.orders.get(oid)
                if order is None:
                    continue
                order.cum_qty += fl.qty
                order.notional += fl.qty * fl.price_ticks
                done = order.cum_qty >= order.qty
                self._report(order, "F", "2" if done else "1", order.cl_ord_id, last_qty=fl.qty,
                             last_px=fl.price_ticks)
                self.fills_sent += 1
                if done:
                    self.orders.pop(oid, None)

    # -------------------------------------------------------------- sending

    def _report(self, o: _Order, exec_type: str, status: str, cl: str, *, orig: str | None = None,
                last_qty: int = 0, last_px: int = 0, text: str = "") -> None:
        t = self.ticks[o.symbol]
        m = fix.Message()
        m.getHeader().setField(35, "8")
        m.setField(ORDER_ID, o.order_id)
        m.setField(CL_ORD_ID, cl)
        if orig:
            m.setField(ORIG_CL_ORD_ID, orig)
        m.setField(EXEC_ID, f"{self._tag}-E{next(self._ids)}")
        m.setField(EXEC_TYPE, exec_type)
        m.setField(ORD_STATUS, status)
        m.setField(SYMBOL, o.symbol)
        m.setField(SIDE, o.side.value)
        m.setField(ORDER_QTY, str(o.qty))
        m.setField(ORD_TYPE, o.ord_type.value)
        if o.price_ticks is not None:
            m.setField(PRICE, t.to_str(o.price_ticks))
        terminal = status in ("2", "4", "8")
        m.setField(CUM_QTY, str(o.cum_qty))
        m.setField(LEAVES_QTY, "0" if terminal else str(o.qty - o.cum_qty))
        m.setField(AVG_PX, t.avg_str(o.notional, o.cum_qty))
        if exec_type == "F":
            m.setField(LAST_QTY, str(last_qty))
            m.setField(LAST_PX, t.to_str(last_px))
            m.setField(LAST_MKT, self.venue.last_mkt)
        if text:
            m.setField(TEXT, text)
        m.setField(fix.TransactTime())
        self._send(m)

    def _reject(self, cl: str, symbol: str, f: dict[int, str | None], text: str) -> None:
        m = fix.Message()
        m.getHeader().setField(35, "8")
        m.setField(ORDER_ID, "NONE")
        m.setField(CL_ORD_ID, cl)
        m.setField(EXEC_ID, f"{self._tag}-E{next(self._ids)}")
        m.setField(EXEC_TYPE, "8")
        m.setField(ORD_STATUS, "8")
        m.setField(ORD_REJ_REASON, "99")
        m.setField(SYMBOL, symbol or "?")
        m.setField(SIDE, f[SIDE] or "1")
        m.setField(ORDER_QTY, f[ORDER_QTY] or "0")
        m.setField(CUM_QTY, "0")
        m.setField(LEAVES_QTY, "0")
        m.setField(AVG_PX, "0")
        m.setField(TEXT, text)
        self._send(m)

    def _send(self, m: fix.Message) -> None:
        if self._latency_s > 0:
            self.loop.call_later(self._latency_s, send, m, self._sid)
        else:
            send(m, self._sid)

    # ------------------------------------------------------- background flow

    def _tick(self) -> None:
        """Requote around the moving mid and play background takers/contra."""
        s = self.venue.sim
        dt = s.requote_ms / 1000.0
        ts = self._wall_ns()
        try:
            for symbol, mkt in self.markets.items():
                mid = mkt.path.mid_at(ts)
                n = int(self._rng.poisson(s.taker_rate_hz * dt))
                if mkt.bg is not None:
                    self._publish(symbol, mkt.bg.requote(mid, ts), None)
                    for _ in range(n):
                        side = Side.BUY if self._rng.random() < 0.5 else Side.SELL
                        size = max(1, int(self._rng.exponential(s.taker_size_mean)))
                        self._publish(symbol, mkt.bg.take(side, size, ts), side)
                elif mkt.pool is not None:
                    for _ in range(n):
                        side = Side.BUY if self._rng.random() < 0.5 else Side.SELL
                        size = max(1, int(self._rng.exponential(s.contra_size_mean)))
                        self._publish(symbol, mkt.pool.on_contra_arrival(side, size, mid, ts), side)
        except Exception:
            log.exception("venue %s background flow failed", self.venue.name)
        self._timer = self.loop.call_later(dt, self._tick)


async def serve_venue(cfg: Config, venue_name: str, state_dir: str, ready: Callable[[], None] | None = None,
                      record_trace: str | None = None) -> None:
    import json
    import signal

    loop = asyncio.get_running_loop()
    server = VenueServer(cfg, venue_name, loop, state_dir, record_trace=record_trace is not None)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server.start()
    print(f"sim venue {venue_name} ({server.venue.kind.value}) listening on port {server.venue.port}",
          flush=True)
    if ready is not None:
        ready()
    await stop.wait()
    server.stop()
    if record_trace is not None:
        with open(record_trace, "w") as f:
            json.dump(server.trace_arrivals, f)
