"""Composition root: config -> engine, FIX gateways, metrics, driver.

This is the only router module that imports ``fix``. The ``threaded`` driver
lives here: quickfix's socket threads decode each message into a frozen
struct and hand it to the uvloop thread with ``call_soon_threadsafe``; the
loop thread owns the engine and does all sending.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from fix.bridge import BridgeApplication, send
from fix.codec import Malformed, OmsCodec, Unsupported, VenueCodec
from fix.gateway import Gateway, hard_exit
from fix.settings import SessionSpec, session_id, session_key
from router.config import Config
from router.domain import (
    CancelChild,
    CancelRequested,
    Command,
    ExecType,
    Instrument,
    InvalidOrderReceived,
    NewOrderReceived,
    RejectCancel,
    RejectOrder,
    ReportToOms,
    SendChildOrder,
    VenueCancelRejected,
    VenueReport,
    VenueSessionChanged,
)
from router.engine import Engine
from router.metrics import Metrics
from router.waterfall import StaticWaterfall

log = logging.getLogger("sor.app")


def monotonic_ns() -> int:
    # CLOCK_MONOTONIC is shared by every process on the box, so stamps taken
    # by the OMS, the router and a venue can be compared (perf_counter_ns is
    # per process).
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def unique_prefix() -> str:
    """Per-start prefix so OrderIDs/ExecIDs never repeat across restarts."""
    n = time.time_ns() // 1_000_000
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out + "-"


def instruments(cfg: Config) -> list[Instrument]:
    return [Instrument(symbol=s.symbol, tick_size=s.tick_size, lot_size=s.lot_size, max_order_qty=s.max_order_qty)
            for s in cfg.symbols]


def oms_spec(cfg: Config) -> SessionSpec:
    return SessionSpec(role="acceptor", sender_comp_id=cfg.oms.sender_comp_id, target_comp_id=cfg.oms.target_comp_id,
                       port=cfg.oms.port, heartbeat_s=cfg.fix.heartbeat_s,
                       allowed_remote=tuple(cfg.oms.allowed_remote))


def venue_specs(cfg: Config) -> list[SessionSpec]:
    return [SessionSpec(role="initiator", sender_comp_id=v.sender_comp_id, target_comp_id=v.target_comp_id,
                        host=v.host, port=v.port, heartbeat_s=cfg.fix.heartbeat_s, reconnect_s=cfg.fix.reconnect_s)
            for v in cfg.venues]


class Router:
    """The running daemon: engine on the loop, quickfix on its threads."""

    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop, metrics: Metrics | None = None,
                 clock_ns: Callable[[], int] = monotonic_ns) -> None:
        self.cfg = cfg
        self.loop = loop
        self.clock_ns = clock_ns
        self.metrics = metrics or Metrics([v.name for v in cfg.venues])
        prefix = cfg.router.exec_id_prefix or unique_prefix()
        self.engine = Engine(cfg, StaticWaterfall(cfg), self.metrics, prefix)
        inst = instruments(cfg)
        self.oms_codec = OmsCodec(inst, clock_ns)
        self.venue_codec = VenueCodec(inst, clock_ns)
        self._venue_by_key = {session_key(session_id(s)): v.name for s, v in zip(venue_specs(cfg), cfg.venues)}
        self._venue_sid = {v.name: session_id(s) for s, v in zip(venue_specs(cfg), cfg.venues)}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        m = self.metrics
        self.oms_app = BridgeApplication("oms", self._on_oms_message, self._on_oms_session,
                                         lambda cb: m.callback_errors.labels(callback=f"oms.{cb}").inc())
        self.venue_app = BridgeApplication("venues", self._on_venue_message, self._on_venue_session,
                                           lambda cb: m.callback_errors.labels(callback=f"venue.{cb}").inc())
        fx = cfg.fix
        self.oms_gw = Gateway("oms", [oms_spec(cfg)], self.oms_app, fx.state_dir, fx.log_messages, fx.file_store)
        self.venue_gw = Gateway("venues", venue_specs(cfg), self.venue_app, fx.state_dir, fx.log_messages,
                                fx.file_store)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.cfg.metrics.enabled:
            self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port)
        self.venue_gw.start()
        self.oms_gw.start()
        log.info("router up: OMS acceptor on port %d, %d venue sessions", self.cfg.oms.port, len(self.cfg.venues))

    def stop(self) -> None:
        # OMS first so no new parents arrive while venues wind down.
        self.oms_gw.stop()
        self.venue_gw.stop()

    # ------------------------------------------- quickfix threads: decode only

    def _on_oms_message(self, msg: Any, key: str) -> None:
        ev = self.oms_codec.decode(msg, key)
        if isinstance(ev, Malformed):
            self.metrics.session_reject[ev.kind].inc()
            self._send_oms(OmsCodec.encode_session_reject(ev), key)
            return
        if isinstance(ev, Unsupported):
            self.metrics.session_reject["unsupported_message"].inc()
            self._send_oms(OmsCodec.encode_business_reject(ev), key)
            return
        self.loop.call_soon_threadsafe(self._dispatch, ev)

    def _on_oms_session(self, key: str, up: bool) -> None:
        self.metrics.oms_session_up.set(1 if up else 0)

    def _on_venue_message(self, msg: Any, key: str) -> None:
        venue = self._venue_by_key.get(key)
        if venue is None:
            return
        ev = self.venue_codec.decode(msg, venue)
        if ev is None:
            self.metrics.venue_anomalies.labels(kind="unused_message").inc()
            return
        self.loop.call_soon_threadsafe(self._dispatch, ev)

    def _on_venue_session(self, key: str, up: bool) -> None:
        venue = self._venue_by_key.get(key)
        if venue is not None:
            self.loop.call_soon_threadsafe(self._dispatch,
                                           VenueSessionChanged(venue=venue, up=up, ts_ns=self.clock_ns()))

    # ------------------------------------------------- loop thread: the engine

    def _dispatch(self, ev: object) -> None:
        eng = self.engine
        try:
            if isinstance(ev, VenueReport):
                cmds = eng.on_venue_report(ev)
            elif isinstance(ev, NewOrderReceived):
                cmds = eng.on_new_order(ev)
            elif isinstance(ev, CancelRequested):
                cmds = eng.on_cancel_request(ev)
            elif isinstance(ev, InvalidOrderReceived):
                cmds = eng.on_invalid_order(ev)
            elif isinstance(ev, VenueCancelRejected):
                cmds = eng.on_venue_cancel_rejected(ev)
            elif isinstance(ev, VenueSessionChanged):
                cmds = eng.on_venue_session(ev)
            else:
                log.error("unknown event %r", ev)
                return
            self._execute(cmds)
        except Exception:
            # The engine must never take the daemon down; the order that
            # caused this stays as it was and the error is counted.
            self.metrics.callback_errors.labels(callback="engine").inc()
            log.exception("engine failed on %r", ev)
            return
        if isinstance(ev, NewOrderReceived) and any(isinstance(c, SendChildOrder) for c in cmds):
            self.metrics.tick_to_route.observe((self.clock_ns() - ev.recv_ns) / 1e9)
        elif isinstance(ev, VenueReport) and ev.exec_type is ExecType.TRADE and cmds:
            self.metrics.fill_to_report.observe((self.clock_ns() - ev.recv_ns) / 1e9)
        self._arm_timer()

    def _execute(self, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, SendChildOrder):
                if not send(self.venue_codec.encode_new(c), self._venue_sid[c.venue]):
                    log.error("child %s to %s could not be handed to quickfix", c.child_id, c.venue)
            elif isinstance(c, ReportToOms):
                self._send_oms(self.oms_codec.encode_report(c), c.session)
            elif isinstance(c, CancelChild):
                send(VenueCodec.encode_cancel(c), self._venue_sid[c.venue])
            elif isinstance(c, RejectOrder):
                self._send_oms(self.oms_codec.encode_reject_order(c), c.session)
            elif isinstance(c, RejectCancel):
                self._send_oms(OmsCodec.encode_cancel_reject(c), c.session)

    def _send_oms(self, msg: Any, key: str) -> None:
        sid = self.oms_app.session_id(key)
        if sid is None or not send(msg, sid):
            log.error("message for OMS session %s could not be handed to quickfix", key)

    def _arm_timer(self) -> None:
        nxt = self.engine.next_deadline_ns()
        if nxt is None or (self._timer_at is not None and self._timer_at <= nxt):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = nxt
        delay = max(0.0, (nxt - self.clock_ns()) / 1e9)
        self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self._execute(self.engine.on_timer(self.clock_ns()))
        except Exception:
            self.metrics.callback_errors.labels(callback="timer").inc()
            log.exception("engine timer failed")
        self._arm_timer()


async def _serve(cfg: Config) -> None:
    loop = asyncio.get_running_loop()
    router = Router(cfg, loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    router.start()
    allowed = ", ".join(cfg.oms.allowed_remote) or "any address"
    print(f"sor: routing; OMS acceptor on port {cfg.oms.port} (logons from {allowed}), metrics on "
          f"{cfg.metrics.host}:{cfg.metrics.port}", flush=True)
    await stop.wait()
    log.info("shutting down")
    router.stop()


def run_daemon(cfg: Config) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status."""
    import uvloop

    # Python's default 5 ms switch interval lets a busy quickfix thread stall
    # the loop; a shorter one hands the GIL back sooner.
    sys.setswitchinterval(0.0005)
    uvloop.run(_serve(cfg))
    print("sor: stopped cleanly", flush=True)
    hard_exit(0)
    return 0
