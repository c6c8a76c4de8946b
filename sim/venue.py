"""A simulated venue: a real quickfix acceptor in front of ``sim.exchange.VenueCore``.

Usually one process per venue, so a test can kill a venue and see the router
react; ``sor sim-venue --all`` hosts every venue of a config in one process
sharing one ``SharedMarket``, which a scenario with a leaking dark pool needs
(the leak moves the lit venues' quotes). quickfix's threads only decode; the
asyncio loop owns the cores, the background flow timers and all sending, so
matching needs no locks.

The mid follows ``MidPath``, a pure function of wall-clock time shared by
every sim process (venues and the sim OMS agree on the mid without talking).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import quickfix as fix

from fix.bridge import BridgeApplication, send
from fix.clock import monotonic_ns
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
    LAST_RPT_REQUESTED,
    LEAVES_QTY,
    MASS_STATUS_REQ_ID,
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
    TOT_NUM_REPORTS,
    TRACE_TAG,
    Ticks,
    field,
    msg_type,
    raw_fields,
)
from fix.gateway import Gateway
from fix.settings import SessionSpec, session_id, session_key
from router.domain.types import OrdType, Side, TimeInForce, VenueKind
from sim.config import SimClusterConfig
from sim.exchange import (
    Ack,
    Canceled,
    CancelRefused,
    Filled,
    Out,
    Rejected,
    SharedMarket,
    Trade,
    VenueCore,
    VenueOrder,
    mid_path,
)
from sim.mdfeed import MdPublisher

log = logging.getLogger("sor.sim.venue")

CHURN_MAX_ROUNDS = 20
CHURN_MAX_LAG = 10_000
"""Entries of churn backlog kept at most (0.2 s at 50,000/s)."""



def day_epoch_ns(now_ns: int) -> int:
    """Midnight UTC of the current day: the default epoch every sim process
    derives on its own, so they agree without being told."""
    day = 86_400 * 1_000_000_000
    return now_ns - now_ns % day


__all__ = ["VenueServer", "day_epoch_ns", "mid_path", "serve_venue", "serve_venues"]


class VenueServer:
    def __init__(self, cfg: SimClusterConfig, venue_name: str, loop: asyncio.AbstractEventLoop, state_dir: str,
                 wall_ns: Callable[[], int] = time.time_ns, record_trace: bool = False,
                 market: SharedMarket | None = None, fills_log: str | None = None) -> None:
        self.cfg = cfg
        self.venue = cfg.venue(venue_name)
        self.loop = loop
        self._wall_ns = wall_ns
        s = self.venue.sim
        epoch = cfg.sim.epoch_ns or day_epoch_ns(wall_ns())
        self.market = market or SharedMarket(cfg, epoch)
        self.core = VenueCore(cfg, venue_name, self.market, f"{venue_name}-{wall_ns() % 10**10:x}")
        self.ticks = {sym.symbol: Ticks(sym.tick_size) for sym in cfg.symbols}
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
        self._churn_timer: asyncio.TimerHandle | None = None
        self._churn_t0 = 0
        self._churn_done = 0
        self.record_trace = record_trace
        self.trace_arrivals: list[tuple[int, int]] = []
        """(SorTraceNs(7002) of an arriving order, CLOCK_MONOTONIC at receipt)."""
        self._fills_log: IO[str] | None = None
        if fills_log is not None:
            Path(fills_log).mkdir(parents=True, exist_ok=True)
            # Line-buffered: a venue killed with SIGKILL has written every
            # fill it reported (the tests' ground truth).
            self._fills_log = open(Path(fills_log) / f"fills-{venue_name}.jsonl", "a", buffering=1)  # noqa: SIM115
        self.md = MdPublisher(self.ticks, self._send) if self.venue.kind is VenueKind.LIT else None
        if self.md is not None:
            self.market.on_leak(self._on_leak)

    @property
    def orders(self) -> dict[str, VenueOrder]:
        return self.core.orders

    @property
    def fills_sent(self) -> int:
        return self.core.fills_sent

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._tick()
        if self.md is not None:
            self._md_tick()
            if self.venue.sim.md_churn_per_s > 0:
                self._churn_t0 = time.monotonic_ns()
                self._churn_tick()
        self.gw.start()

    def stop(self) -> None:
        for t in (self._timer, self._md_timer, self._churn_timer):
            if t is not None:
                t.cancel()
        self.gw.stop()

    # -------------------------------------------------- quickfix thread: copy

    def _on_message(self, msg: Any, key: str) -> None:
        if self.record_trace:
            # Stamped first thing on quickfix's thread: this is the arrival.
            arrived = monotonic_ns()
            trace = field(msg, TRACE_TAG)
            if trace is not None and trace.isdigit():
                self.trace_arrivals.append((int(trace), arrived))
        mt = msg_type(msg)
        if mt == "V":
            # Symbols sit in a repeating group; the raw string keeps them.
            parts = raw_fields(msg.toString())
            req = {int(t): v for t, v in parts if t in ("262", "263")}
            symbols = [v for t, v in parts if t == "55"]
            self.loop.call_soon_threadsafe(self._on_md_request, req.get(262, ""), req.get(263, "1"), symbols)
            return
        fields = {t: field(msg, t) for t in (CL_ORD_ID, ORIG_CL_ORD_ID, SYMBOL, SIDE, ORDER_QTY, ORD_TYPE, PRICE,
                                             TIME_IN_FORCE, MASS_STATUS_REQ_ID)}
        self.loop.call_soon_threadsafe(self._handle, mt, fields)

    def _on_md_request(self, req_id: str, sub_type: str, symbols: list[str]) -> None:
        if self.md is None:
            MdPublisher(self.ticks, self._send).reject(req_id, f"{self.venue.name} is a dark venue: no market data")
            return
        if sub_type == "2":
            self.md.unsubscribe_all()
            return
        unknown = self.md.subscribe(req_id, symbols, self.core.lit_books())
        if unknown:
            self.md.reject(req_id, f"unknown symbols: {', '.join(unknown)}")

    def _md_tick(self) -> None:
        assert self.md is not None
        try:
            self.md.publish_books(self.core.lit_books())
        except Exception:
            log.exception("venue %s market data publish failed", self.venue.name)
        self._md_timer = self.loop.call_later(self.venue.sim.md_interval_ms / 1000.0, self._md_tick)

    def _churn_tick(self) -> None:
        """Benchmark market data: keep the entries published by churn on the
        schedule ``md_churn_per_s`` sets, in rounds of one flicker of every
        quote plus one message per symbol. Behind schedule (a busy loop),
        at most ``CHURN_MAX_ROUNDS`` rounds per wake-up: the rate actually
        sent is what the receiver counts, and a backlog burst would measure
        the burst, not the rate."""
        assert self.md is not None
        try:
            due = self.venue.sim.md_churn_per_s * (time.monotonic_ns() - self._churn_t0) / 1e9
            books = self.core.lit_books()
            rounds = 0
            while self._churn_done < due and rounds < CHURN_MAX_ROUNDS:
                before = self.md.entries_sent
                self.core.flicker()
                self.md.publish_books(books)
                sent = self.md.entries_sent - before
                if sent == 0:  # nothing subscribed yet
                    self._churn_done = int(due)
                    break
                self._churn_done += sent
                rounds += 1
            if self._churn_done < due - CHURN_MAX_LAG:
                self._churn_done = int(due - CHURN_MAX_LAG)  # give up on a backlog; the receiver counts the truth
        except Exception:
            log.exception("venue %s market data churn failed", self.venue.name)
        self._churn_timer = self.loop.call_later(0.001, self._churn_tick)

    # ----------------------------------------------------- loop: the venue

    def _handle(self, mt: str, f: dict[int, str | None]) -> None:
        try:
            if mt == "D":
                self._on_new(f)
            elif mt == "F":
                self._emit(self.core.cancel(f[CL_ORD_ID] or "", f[ORIG_CL_ORD_ID] or ""), f)
            elif mt == "H":
                self._order_status(f)
            elif mt == "AF":
                self._mass_status(f)
        except Exception:
            log.exception("venue %s failed on %s %r", self.venue.name, mt, f)

    def _on_new(self, f: dict[int, str | None]) -> None:
        cl = f[CL_ORD_ID] or ""
        symbol = f[SYMBOL] or ""
        try:
            side = Side(f[SIDE])
            ord_type = OrdType(f[ORD_TYPE])
            tif = TimeInForce(f[TIME_IN_FORCE] or "0")
            qty = int(Decimal(f[ORDER_QTY] or "0"))
            px = f[PRICE]
            ticks = self.ticks.get(symbol)
            price = ticks.to_ticks(Decimal(px)) if px and ticks is not None else None
        except (ValueError, InvalidOperation) as e:
            self._reject(cl, symbol, f, str(e) or "invalid order")
            return
        self._emit(self.core.new_order(cl, symbol, side, qty, ord_type, price, tif, self._wall_ns()), f)

    def _on_leak(self, symbol: str, ts_ns: int) -> None:
        # Same thread: leaks come from a core of this process while the loop
        # runs another core's order.
        self._emit(self.core.requote(symbol, ts_ns), None)

    def _emit(self, outs: list[Out], f: dict[int, str | None] | None) -> None:
        for o in outs:
            if isinstance(o, Filled):
                exec_id = self.core.next_exec_id()
                self._report(o.order, "F", "2" if o.order.done else "1", o.order.cl_ord_id, last_qty=o.qty,
                             last_px=o.px_ticks, exec_id=exec_id)
                if self._fills_log is not None:
                    # Logged after quickfix has stored the report (the FIX
                    # store is the venue's record the soak counts): a venue
                    # SIGKILLed in between leaves a stored fill missing from
                    # the log, which the soak reports and tolerates. Logged
                    # first, the same kill left a fill in the log that no
                    # report carried (seen in a soak), which looked like a
                    # lost fill though the venue had forgotten it as well.
                    self._fills_log.write(json.dumps({"cl": o.order.cl_ord_id, "exec_id": exec_id, "qty": o.qty,
                                                      "px_ticks": o.px_ticks, "cum": o.order.cum_qty}) + "\n")
            elif isinstance(o, Trade):
                if self.md is not None:
                    self.md.publish_trade(o.symbol, o.px_ticks, o.qty, o.aggressor)
            elif isinstance(o, Ack):
                self._report(o.order, "0", "0", o.order.cl_ord_id)
            elif isinstance(o, Canceled):
                self._report(o.order, "4", "4", o.cl_ord_id, orig=o.orig_cl_ord_id, text=o.text)
            elif isinstance(o, Rejected):
                self._reject(o.cl_ord_id, o.symbol, f or {}, o.text)
            elif isinstance(o, CancelRefused):
                self._cancel_refused(o)

    def _order_status(self, f: dict[int, str | None]) -> None:
        """Answer an OrderStatusRequest from the venue's own state: the
        order as it stands, or, for one it does not know (never received,
        or lost when the venue restarted), 39=8 103=5 "unknown order"."""
        cl = f[CL_ORD_ID] or ""
        order = self.core.status(cl)
        if order is not None:
            self._report(order, "I", order.ord_status, cl)
        else:
            self._reject(cl, f.get(SYMBOL) or "", f, "unknown order", exec_type="I", reason="5")

    def _mass_status(self, f: dict[int, str | None]) -> None:
        """Answer an OrderMassStatusRequest: one 150=I report per order the
        venue still works for this session (none: nothing is sent)."""
        req = f[MASS_STATUS_REQ_ID] or ""
        live = list(self.core.orders.values())
        for i, o in enumerate(live):
            self._report(o, "I", o.ord_status, o.cl_ord_id,
                         extra=((MASS_STATUS_REQ_ID, req), (TOT_NUM_REPORTS, str(len(live))),
                                (LAST_RPT_REQUESTED, "Y" if i == len(live) - 1 else "N")))

    def _cancel_refused(self, o: CancelRefused) -> None:
        order = o.order
        m = fix.Message()
        m.getHeader().setField(35, "9")
        m.setField(ORDER_ID, order.order_id if order else "NONE")
        m.setField(CL_ORD_ID, o.cl_ord_id)
        m.setField(ORIG_CL_ORD_ID, o.orig_cl_ord_id)
        m.setField(ORD_STATUS, order.ord_status if order else "8")
        m.setField(CXL_REJ_RESPONSE_TO, "1")
        m.setField(CXL_REJ_REASON, "1" if order is None else "0")
        m.setField(TEXT, "unknown order" if order is None else "too late to cancel")
        self._send(m)

    # -------------------------------------------------------------- sending

    def _report(self, o: VenueOrder, exec_type: str, status: str, cl: str, *, orig: str | None = None,
                last_qty: int = 0, last_px: int = 0, text: str = "",
                extra: tuple[tuple[int, str], ...] = (), exec_id: str | None = None) -> str:
        """Sends one ExecutionReport; returns its ExecID."""
        t = self.ticks[o.symbol]
        exec_id = exec_id or self.core.next_exec_id()
        m = fix.Message()
        m.getHeader().setField(35, "8")
        m.setField(ORDER_ID, o.order_id)
        m.setField(CL_ORD_ID, cl)
        if orig:
            m.setField(ORIG_CL_ORD_ID, orig)
        m.setField(EXEC_ID, exec_id)
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
        for tag, value in extra:
            m.setField(tag, value)
        m.setField(fix.TransactTime())
        self._send(m)
        return exec_id

    def _reject(self, cl: str, symbol: str, f: dict[int, str | None], text: str, *, exec_type: str = "8",
                reason: str = "99") -> None:
        """39=8 for an order the venue does not take (150=8) or does not
        know (an order status answer: 150=I, 103=5)."""
        m = fix.Message()
        m.getHeader().setField(35, "8")
        m.setField(ORDER_ID, "NONE")
        m.setField(CL_ORD_ID, cl)
        m.setField(EXEC_ID, self.core.next_exec_id())
        m.setField(EXEC_TYPE, exec_type)
        m.setField(ORD_STATUS, "8")
        m.setField(ORD_REJ_REASON, reason)
        m.setField(SYMBOL, symbol or "?")
        m.setField(SIDE, f.get(SIDE) or "1")
        m.setField(ORDER_QTY, f.get(ORDER_QTY) or "0")
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
        dt = self.venue.sim.requote_ms / 1000.0
        try:
            self._emit(self.core.tick(self._wall_ns(), dt), None)
        except Exception:
            log.exception("venue %s background flow failed", self.venue.name)
        self._timer = self.loop.call_later(dt, self._tick)


async def serve_venue(cfg: SimClusterConfig, venue_name: str, state_dir: str, ready: Callable[[], None] | None = None,
                      record_trace: str | None = None) -> None:
    await serve_venues(cfg, [venue_name], state_dir, ready, record_trace)


async def serve_venues(cfg: SimClusterConfig, venue_names: list[str], state_dir: str,
                       ready: Callable[[], None] | None = None, record_trace: str | None = None,
                       fills_log: str | None = None) -> None:
    """Serve ``venue_names`` from this process, sharing one market (leaks
    reach every venue here). ``record_trace`` applies to a single venue."""
    import signal

    loop = asyncio.get_running_loop()
    market = SharedMarket(cfg, cfg.sim.epoch_ns or day_epoch_ns(time.time_ns()))
    servers = [VenueServer(cfg, name, loop, state_dir, record_trace=record_trace is not None, market=market,
                           fills_log=fills_log)
               for name in venue_names]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for server in servers:
        server.start()
        print(f"sim venue {server.venue.name} ({server.venue.kind.value}) listening on port {server.venue.port}",
              flush=True)
    if ready is not None:
        ready()

    def freeze() -> None:
        # As the daemon does: a full collection over everything this
        # process keeps would stall its quickfix callbacks, and the bench
        # stamps arrivals in them (the venue is the instrument here).
        gc.freeze()
        loop.call_later(1.0, freeze)

    freeze()
    await stop.wait()
    for server in servers:
        server.stop()
    if record_trace is not None:
        with open(record_trace, "w") as f:
            json.dump([a for s in servers for a in s.trace_arrivals], f)
