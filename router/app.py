"""Composition root: config -> engine, FIX gateways, metrics, driver.

This is the only router module that imports ``fix``. Both drivers live here
and differ only in how a decoded event reaches ``_dispatch``:

- ``threaded``: quickfix's socket threads decode each message into a frozen
  struct and hand it to the uvloop thread with ``call_soon_threadsafe``;
- ``poll``: the loop's own thread pumps every quickfix engine with
  ``poll()``, so callbacks, decoding and routing run inline with no hop.

Either way the loop thread owns the engine and does all sending.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from fix.bridge import BridgeApplication, send
from fix.codec import Malformed, OmsCodec, Unsupported, VenueCodec, msg_type
from fix.gateway import Gateway, hard_exit
from fix.mdcodec import MdDecoder, subscription_request
from fix.settings import SessionSpec, session_id, session_key
from router.config import Config
from router.domain import (
    CancelChild,
    CancelRequested,
    Command,
    ExecType,
    Instrument,
    InvalidOrderReceived,
    MarketDataReceived,
    NewOrderReceived,
    RejectCancel,
    RejectOrder,
    ReportToOms,
    SendChildOrder,
    VenueCancelRejected,
    VenueKind,
    VenueReport,
    VenueSessionChanged,
)
from router.engine import Engine
from router.features import market_state
from router.metrics import MarketDataCollector, Metrics, StepwiseExposition, VenueStatsCollector
from router.waterfall import MLPlanner, Planner, make_planner

log = logging.getLogger("sor.app")

T = TypeVar("T")

LAG_PROBE_NS = 100_000_000
"""How often the loop checks how late it runs a timer."""


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
                        host=v.host, port=v.port, heartbeat_s=cfg.fix.heartbeat_s, reconnect_s=cfg.fix.reconnect_s,
                        repeating_groups=True)
            for v in cfg.venues]


def resolve_model_path(path: str) -> Path:
    """A relative model path is tried from the working directory, then from
    the installation (the shipped default model lives in ``models/``)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    installed = Path(__file__).resolve().parent.parent / p
    return installed if installed.exists() else p


def load_model(cfg: Config, metrics: Metrics) -> tuple[Any, str]:
    """The venue model for the ML planner, or None and why not.

    A missing, corrupt or unloadable model leaves the router on the static
    waterfall (logged, and every order so routed is counted in
    ``sor_model_fallbacks``); a model whose feature list differs from this
    build's raises ``FeatureMismatchError``: serving it would mean wrong
    numbers, so the daemon refuses to start.
    """
    if cfg.waterfall.planner != "ml":
        return None, "disabled"
    from router.scoring import ModelLoadError, load_scorer

    mc = cfg.model
    path = resolve_model_path(mc.path)
    try:
        scorer = load_scorer(msgspec.structs.replace(mc, path=str(path)), len(cfg.venues))
    except ModelLoadError as e:
        log.error("venue model not loaded (%s): %s; routing by the static waterfall", e.reason, e)
        return None, e.reason
    log.info("venue model %s loaded from %s (%s provider)", scorer.version, path, scorer.provider)
    return scorer, "ok"


class LoopInbox(Generic[T]):
    """Items from other threads, handled on the loop's thread in arrival
    order with one loop wake-up per burst rather than one per item
    (``call_soon_threadsafe`` writes to the loop's wake-up pipe each time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handle: Callable[[T], None]) -> None:
        self._loop = loop
        self._handle = handle
        self._items: deque[T] = deque()
        self._wake_pending = False

    def put(self, item: T) -> None:
        """Any thread (deque appends are atomic)."""
        self._items.append(item)
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        # Cleared before draining: an item put meanwhile is drained here or
        # schedules the next wake-up itself.
        self._wake_pending = False
        items = self._items
        while items:
            self._handle(items.popleft())


class Router:
    """The running daemon: engine on the loop, quickfix on its threads."""

    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop, metrics: Metrics | None = None,
                 clock_ns: Callable[[], int] = monotonic_ns) -> None:
        self.cfg = cfg
        self.loop = loop
        self.clock_ns = clock_ns
        self.metrics = metrics or Metrics([v.name for v in cfg.venues])
        prefix = cfg.router.exec_id_prefix or unique_prefix()
        self.md, self.stats, self.features = market_state(cfg)
        self.scorer, self.model_status = load_model(cfg, self.metrics)
        m_ = self.metrics
        # Stage times are observed after the children are sent: a histogram
        # observe is a few us, too dear to pay on the way to the venue.
        self._pending_stages: list[tuple[str, int]] = []
        self.planner: Planner = make_planner(
            cfg, self.features, self.scorer, lambda reason: m_.model_fallbacks.labels(reason=reason).inc(),
            self.model_status, stage_ns=lambda stage, ns: self._pending_stages.append((stage, ns)),
            clock_ns=clock_ns)
        self._warm = self.planner.warm if isinstance(self.planner, MLPlanner) else None
        self.engine = Engine(cfg, self.planner, self.metrics, prefix, market=self.md, stats=self.stats)
        inst = instruments(cfg)
        self.oms_codec = OmsCodec(inst, clock_ns)
        self.venue_codec = VenueCodec(inst, clock_ns)
        tick_sizes = {s.symbol: float(s.tick_size) for s in cfg.symbols}
        self.md_decoder = MdDecoder(tick_sizes, clock_ns)
        self.metrics.registry.register(MarketDataCollector(self.md, tick_sizes, clock_ns))
        self.metrics.registry.register(VenueStatsCollector(self.stats, clock_ns))
        self._lit = {v.name for v in cfg.venues if v.kind is VenueKind.LIT}
        self._md_req_ids = itertools.count(1)
        # Market data crosses from quickfix's threads in bursts: one loop
        # wake-up drains everything queued since the last one.
        self._md_inbox = LoopInbox(loop, self._apply_md_counted)
        # threaded driver: events hop to the loop the same way, one wake-up
        # per burst rather than one per message.
        self._inbox = LoopInbox(loop, self._dispatch)
        self._polling = cfg.router.driver == "poll"
        self._handoff: Callable[[object], None] = self._dispatch if self._polling else self._hop_to_loop
        self.exposition = StepwiseExposition(
            self.metrics.registry, wake=None if self._polling else self._wake_exposition,
            on_fallback=self.metrics.scrape_fallbacks.inc)
        self._idle_passes = 0
        self._busy_passes = 0
        self._events = 0
        """Messages seen by the callbacks: tells the pump a pass was busy."""
        self._stopping = False
        self._unwatch_gc: Callable[[], None] = lambda: None
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
        version = self.scorer.version if self.scorer is not None else "static"
        self.metrics.model_info.labels(version=version).set(1)
        self._unwatch_gc = self.metrics.watch_gc()
        if self.cfg.metrics.enabled:
            self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port, self.exposition)
        self._lag_due_ns = self.clock_ns() + LAG_PROBE_NS
        self._next_freeze_ns = self._lag_due_ns
        self.loop.call_later(LAG_PROBE_NS / 1e9, self._lag_probe)
        if self._polling:
            self.loop.call_soon(self._pump)
            return
        self.venue_gw.start()
        self.oms_gw.start()
        log.info("router up: OMS acceptor on port %d, %d venue sessions", self.cfg.oms.port, len(self.cfg.venues))

    def stop(self) -> None:
        self._stopping = True
        self._unwatch_gc()
        # OMS first so no new parents arrive while venues wind down.
        self.oms_gw.stop()
        self.venue_gw.stop()

    def _pump(self) -> None:
        """poll driver: one pass over every FIX engine, then again at once
        while busy; after ``poll_idle_spins`` empty passes, yield the core for
        ``poll_idle_backoff_us`` (uvloop timers round that to 1 ms)."""
        if self._stopping:
            return
        before = self._events
        try:
            self.oms_gw.poll()
            self.venue_gw.poll()
        except Exception:
            self.metrics.callback_errors.labels(callback="poll").inc()
            log.exception("quickfix poll failed")
        r = self.cfg.router
        if self._events != before:
            self._idle_passes = 0
            self._busy_passes += 1
        else:
            self._idle_passes += 1
            # Idle, so the decision path goes cold (a core that polled
            # sockets for a few ms ran the model 4x slower): run it for no
            # order now and then, off the path of any real one.
            if self._warm is not None and r.poll_warm_every and self._idle_passes % r.poll_warm_every == 1:
                self._warm(self.clock_ns())
        # A wanted scrape is formatted one family per idle pass, and one per
        # eight busy ones so a steady flow cannot starve it.
        scraping = self.exposition.wanted
        if scraping and (self._idle_passes or self._busy_passes % 8 == 0):
            self._step_exposition()
        if scraping or self._idle_passes < r.poll_idle_spins:
            self.loop.call_soon(self._pump)
        else:
            self.loop.call_later(r.poll_idle_backoff_us / 1e6, self._pump)

    def _step_exposition(self) -> bool:
        try:
            return self.exposition.step()
        except Exception:
            self.metrics.callback_errors.labels(callback="exposition").inc()
            log.exception("formatting the metrics failed")
            return False

    def _wake_exposition(self) -> None:
        """threaded driver, HTTP thread: have the loop format the scrape."""
        self.loop.call_soon_threadsafe(self._exposition_steps)

    def _exposition_steps(self) -> None:
        # One family per loop iteration: events queued meanwhile go between.
        if self._step_exposition():
            self.loop.call_soon(self._exposition_steps)

    # ------------------------------------------- quickfix threads: decode only

    def _on_oms_message(self, msg: Any, key: str) -> None:
        self._events += 1
        ev = self.oms_codec.decode(msg, key)
        if isinstance(ev, NewOrderReceived):
            # recv_ns is stamped when decoding starts: the rest is the edge's
            # checks. Inline (poll), observed once the children are out.
            risk_ns = self.clock_ns() - ev.recv_ns
            if self._polling:
                self._pending_stages.append(("risk", risk_ns))
            else:
                self.metrics.stage["risk"].observe(risk_ns / 1e9)
        if isinstance(ev, Malformed):
            self.metrics.session_reject[ev.kind].inc()
            self._send_oms(OmsCodec.encode_session_reject(ev), key)
            return
        if isinstance(ev, Unsupported):
            self.metrics.session_reject["unsupported_message"].inc()
            self._send_oms(OmsCodec.encode_business_reject(ev), key)
            return
        self._handoff(ev)

    def _hop_to_loop(self, ev: object) -> None:
        self._inbox.put(ev)

    def _on_oms_session(self, key: str, up: bool) -> None:
        self.metrics.oms_session_up.set(1 if up else 0)

    def _on_venue_message(self, msg: Any, key: str) -> None:
        self._events += 1
        venue = self._venue_by_key.get(key)
        if venue is None:
            return
        if msg_type(msg) in ("W", "X", "Y"):
            upd = self.md_decoder.decode(msg.toString(), venue)
            if self._polling:
                self._apply_md_counted(upd)
                return
            self._md_inbox.put(upd)
            return
        ev = self.venue_codec.decode(msg, venue)
        if ev is None:
            self.metrics.venue_anomalies.labels(kind="unused_message").inc()
            return
        self._handoff(ev)

    def _on_venue_session(self, key: str, up: bool) -> None:
        venue = self._venue_by_key.get(key)
        if venue is not None:
            self._handoff(VenueSessionChanged(venue=venue, up=up, ts_ns=self.clock_ns()))

    # ------------------------------------------------- loop thread: the engine

    def _dispatch(self, ev: object) -> None:
        eng = self.engine
        t_start = self.clock_ns()
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
                self._on_venue_up_or_down(ev)
            else:
                log.error("unknown event %r", ev)
                return
            t_planned = self.clock_ns()
            t_first_child = self._execute(cmds)
        except Exception:
            # The engine must never take the daemon down; the order that
            # caused this stays as it was and the error is counted.
            self.metrics.callback_errors.labels(callback="engine").inc()
            log.exception("engine failed on %r", ev)
            self._pending_stages.clear()  # timings of a decision that did not happen
            return
        if isinstance(ev, NewOrderReceived) and t_first_child is not None:
            t_sent = t_first_child
            m = self.metrics
            m.tick_to_route.observe((t_sent - ev.recv_ns) / 1e9)
            m.stage["queue"].observe((t_start - ev.recv_ns) / 1e9)
            m.stage["decision"].observe((t_planned - t_start) / 1e9)
            m.stage["send"].observe((t_sent - t_planned) / 1e9)
        elif isinstance(ev, VenueReport) and ev.exec_type is ExecType.TRADE and cmds:
            self.metrics.fill_to_report.observe((self.clock_ns() - ev.recv_ns) / 1e9)
        if self._pending_stages:
            for stage, ns in self._pending_stages:
                self.metrics.stage[stage].observe(ns / 1e9)
            self._pending_stages.clear()
        self._arm_timer()

    def _apply_md_counted(self, upd: MarketDataReceived) -> None:
        try:
            self._apply_md(upd)
        except Exception:
            self.metrics.callback_errors.labels(callback="marketdata").inc()
            log.exception("market data update from %s failed", upd.venue)

    def _apply_md(self, upd: MarketDataReceived) -> None:
        md = self.md
        vm = self.metrics.venue[upd.venue]
        if upd.rejected:
            vm.md_dropped.inc()
            log.warning("venue %s rejected the market data subscription", upd.venue)
            return
        v = md.venue_index[upd.venue]
        sym_index = md.symbol_index
        touched: set[int] = set()
        applied = 0
        if upd.snapshot:
            s = sym_index.get(upd.symbol)
            if s is None:
                vm.md_dropped.inc()
                return
            for side in (0, 1):
                for level in range(md.depth):
                    md.set_level(v, s, side, level, 0, 0)
            touched.add(s)
        for e in upd.entries:
            s_opt = sym_index.get(e.symbol)
            if s_opt is None or e.kind < 0 or (e.kind < 2 and e.level < 0):
                vm.md_dropped.inc()
                continue
            s = s_opt
            if e.kind == 2:
                md.apply_trade(v, s, upd.recv_ns, e.px_ticks, e.size, e.aggressor)
            elif e.action == "2":
                md.delete_level(v, s, e.kind, e.level)
                touched.add(s)
            else:
                md.set_level(v, s, e.kind, e.level, e.px_ticks, e.size)
                touched.add(s)
            applied += 1
        for s in touched:
            md.commit_book(v, s, upd.recv_ns)
        vm.md_updates.inc()
        vm.md_entries.inc(applied)

    def _on_venue_up_or_down(self, ev: VenueSessionChanged) -> None:
        if ev.venue not in self._lit:
            return
        v = self.md.venue_index[ev.venue]
        if ev.up:
            # Every logon (re)subscribes: a venue forgets subscriptions when
            # the session drops.
            req = subscription_request(f"{ev.venue}-md-{next(self._md_req_ids)}", self.md.symbols, self.md.depth)
            send(req, self._venue_sid[ev.venue])
        else:
            # A book from a dead session must not look live.
            for s in range(len(self.md.symbols)):
                self.md.clear_book(v, s, ev.ts_ns)

    def _execute(self, cmds: list[Command]) -> int | None:
        """Carry out the engine's commands; returns when the first child
        order was handed to quickfix (None if there was none)."""
        t_first_child: int | None = None
        for c in cmds:
            if isinstance(c, SendChildOrder):
                if not send(self.venue_codec.encode_new(c), self._venue_sid[c.venue]):
                    log.error("child %s to %s could not be handed to quickfix", c.child_id, c.venue)
                if t_first_child is None:
                    t_first_child = self.clock_ns()
            elif isinstance(c, ReportToOms):
                self._send_oms(self.oms_codec.encode_report(c), c.session)
            elif isinstance(c, CancelChild):
                send(VenueCodec.encode_cancel(c), self._venue_sid[c.venue])
            elif isinstance(c, RejectOrder):
                self._send_oms(self.oms_codec.encode_reject_order(c), c.session)
            elif isinstance(c, RejectCancel):
                self._send_oms(OmsCodec.encode_cancel_reject(c), c.session)
        return t_first_child

    def _send_oms(self, msg: Any, key: str) -> None:
        sid = self.oms_app.session_id(key)
        if sid is None or not send(msg, sid):
            log.error("message for OMS session %s could not be handed to quickfix", key)

    def _lag_probe(self) -> None:
        now = self.clock_ns()
        self.metrics.event_loop_lag.observe(max(0, now - self._lag_due_ns) / 1e9)
        # Markouts fall due 1 s and 5 s after each fill; 100 ms is precise
        # enough for a statistic measured over seconds.
        try:
            self.stats.update_markouts(now, self.md.consolidated_mid2)
        except Exception:
            self.metrics.callback_errors.labels(callback="markouts").inc()
            log.exception("markout update failed")
        self._freeze_survivors(now)
        self._lag_due_ns = now + LAG_PROBE_NS
        self.loop.call_later(LAG_PROBE_NS / 1e9, self._lag_probe)

    def _freeze_survivors(self, now: int) -> None:
        """Every ``router.gc_freeze_interval_ms``, move everything alive into
        the collector's permanent generation. The day's orders stay in
        memory (cancels, late fills, duplicate ClOrdIDs need them), so a full
        collection would walk a set that only grows: measured 20-50 ms
        pauses with ~20,000 parents, triggered by whichever thread allocated
        last (a metrics scrape too). Frozen objects are never collected: a
        reference cycle that was still alive at a freeze and dies later is
        kept until restart. (``gc.get_freeze_count()`` is not exported: it
        walks the whole frozen list, a multi-ms stall once the day's orders
        are in it.)"""
        interval_ms = self.cfg.router.gc_freeze_interval_ms
        if interval_ms <= 0 or now < self._next_freeze_ns:
            return
        gc.freeze()
        self._next_freeze_ns = now + interval_ms * 1_000_000

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
    # Everything built so far (modules, onnxruntime, quickfix, config, the
    # rings) lives for the whole run: move it out of the collector's sight,
    # or every full collection walks it while the engine waits.
    gc.collect()
    gc.freeze()
    router.start()
    allowed = ", ".join(cfg.oms.allowed_remote) or "any address"
    print(f"sor: routing; OMS acceptor on port {cfg.oms.port} (logons from {allowed}), metrics on "
          f"{cfg.metrics.host}:{cfg.metrics.port}", flush=True)
    await stop.wait()
    log.info("shutting down")
    router.stop()


def run_daemon(cfg: Config) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status (2: the model's
    features do not match this build's)."""
    import uvloop

    from router.scoring import FeatureMismatchError, check_features, manifest_path, read_manifest

    if cfg.waterfall.planner == "ml":
        mpath = manifest_path(resolve_model_path(cfg.model.path))
        if mpath.exists():
            try:
                check_features(read_manifest(mpath).features)
            except FeatureMismatchError as e:
                print(f"sor: refusing to start: model {mpath}: {e}", file=sys.stderr, flush=True)
                return 2
            except Exception:
                pass  # unreadable manifests are the loader's to report (fallback)

    # Python's default 5 ms switch interval lets a busy quickfix thread stall
    # the loop; a shorter one hands the GIL back sooner.
    sys.setswitchinterval(0.0005)
    uvloop.run(_serve(cfg))
    print("sor: stopped cleanly", flush=True)
    hard_exit(0)
    return 0
