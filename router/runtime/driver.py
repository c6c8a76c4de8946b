"""The daemon's driver: brings every event to the engine on the loop's thread
and carries out what the engine returns.

Two ways for a decoded event to reach ``_dispatch``, chosen by
``router.driver``:

- ``threaded``: quickfix's socket threads decode each message and hand the
  event to the loop through a ``LoopInbox`` (one wake-up per burst);
- ``poll``: the loop's own thread pumps every quickfix session with
  ``poll()``, so callbacks, decoding and routing run inline with no hop.

Either way the loop's thread owns the engine and does all sending. Timers
are the engine's deadlines (``TimerFired``); the lag probe, the metrics
exposition and the collector's freezes are the driver's own housekeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from router.config import RouterConfig
from router.domain.commands import Command, SendChildOrder
from router.domain.decision import Decision
from router.domain.events import (
    CancelAllRequested,
    EngineEvent,
    Event,
    MarketDataReceived,
    NewOrderReceived,
    TimerFired,
    TradingHalted,
    VenueCancelRejected,
    VenueReport,
    VenueSessionChanged,
)
from router.domain.types import ExecType
from router.engine import Engine, Step
from router.journal.records import COMMANDS, DECISION, EVENT
from router.journal.writer import JournalWriter
from router.metrics.exposition import StepwiseExposition
from router.metrics.registry import Metrics
from router.runtime.canary import CanaryMonitor
from router.runtime.inbox import LoopInbox
from router.runtime.overload import OverloadGate
from router.runtime.quality import QualityMonitor

log = logging.getLogger("sor.driver")

LAG_PROBE_NS = 100_000_000
"""How often the loop checks how late it runs a timer."""

INBOX_CAPACITY = 65_536
"""Events queued between quickfix's threads and the loop before the
producing thread is made to wait (threaded driver)."""

READ_BEFORE_TIMER_NS = 50_000_000
"""poll driver: how long a timer may spend reading what the sockets hold
before it fires at most (with the back-pressure gate, reading stops as soon
as the inbox measure is on: the engine then defers ack deadlines)."""

_GATE_INPUTS = frozenset((VenueReport, VenueCancelRejected, VenueSessionChanged))
"""Events the back-pressure gate reads before the engine does: a child's
first answer (its ack time) and a venue session's loss."""

DECISIONS_KEPT = 50
"""Recent decisions the operator console shows (``Driver.decisions``)."""


class Transport(Protocol):
    """The FIX edge as the driver sees it (``fix.edge.RouterEdge``)."""

    on_event: Callable[[Event, int], None]
    events: int

    def start(self) -> None: ...

    def poll(self) -> None: ...

    def stop(self) -> None: ...

    def execute(self, cmds: list[Command]) -> int | None: ...

    def hold_oms(self) -> None: ...

    def open_oms(self) -> None: ...


class Driver:
    def __init__(self, cfg: RouterConfig, loop: asyncio.AbstractEventLoop, engine: Engine, edge: Transport,
                 metrics: Metrics, exposition: StepwiseExposition | None, clock_ns: Callable[[], int],
                 warm: Callable[[int], None] | None = None, journal: JournalWriter | None = None,
                 hold_reports: bool = False) -> None:
        self.cfg = cfg
        self.loop = loop
        self.engine = engine
        self.edge = edge
        self.metrics = metrics
        self.clock_ns = clock_ns
        self.exposition = exposition
        self._warm = warm
        self.journal = journal
        self.monitor: CanaryMonitor | None = None
        """Per-model outcomes and the canary's rollback (set by the app)."""
        self.quality: QualityMonitor | None = None
        """Predicted against realised, per venue and model (set by the app)."""
        self.polling = cfg.driver == "poll"
        m = metrics
        # Market data crosses from quickfix's threads in bursts: one loop
        # wake-up drains everything queued since the last one. Events hop
        # the same way in their own inbox, so a flood of quotes never sits
        # in front of a fill.
        self.md_inbox: LoopInbox[EngineEvent] = LoopInbox(
            loop, self._dispatch_md, INBOX_CAPACITY, m.inbox_overflows.labels(inbox="marketdata").inc)
        self.inbox: LoopInbox[EngineEvent] = LoopInbox(
            loop, self._dispatch_queued, INBOX_CAPACITY, m.inbox_overflows.labels(inbox="events").inc)
        m.inbox_depth.labels(inbox="marketdata").set_function(lambda: self.md_inbox.depth)
        m.inbox_depth.labels(inbox="events").set_function(lambda: self.inbox.depth)
        edge.on_event = self._inline if self.polling else self._hop
        self._risk_ns = 0
        self._idle_passes = 0
        self._busy_passes = 0
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._lag_due_ns = 0
        self._next_freeze_ns = 0
        self._drained: asyncio.Event | None = None
        """Set once no child is open, while a shutdown waits for that."""
        self._hold = journal is not None and hold_reports
        """sync = "every": nothing a step commands leaves the process until
        the journal has made the step durable."""
        self._held: deque[tuple[int, list[Command], int]] = deque()
        """(records that must be committed first, the step's commands, the
        new order's recv_ns or 0), in order."""
        self._to_hold: list[Command] | None = None
        self._reconciling = False
        """A restart: the OMS acceptor waits for the venues' word on every
        restored open child (``reconcile_first``)."""
        self.decisions: deque[Decision] = deque(maxlen=DECISIONS_KEPT)
        """The last decisions, newest last, for the operator console: a
        reference each (decisions are immutable), encoded only when the
        console asks, on the admin API's thread."""
        oc = cfg.overload
        self.gate = OverloadGate(oc)
        """Back-pressure (``router.runtime.overload``): measures the inbox
        and the venues' ack times, and hands the engine an
        ``OverloadChanged`` (journaled) when its state changes. With
        ``enabled = false`` it never refuses a parent but still says when
        the inbox is backed up (the engine then defers ack deadlines)."""
        self._acks = oc.enabled
        """Whether the venues' ack times are measured (only the refusing
        gate uses them)."""
        self._idle_at_ns = 0
        """poll driver: when the last pass that read no order traffic began
        (what is queued in the sockets now arrived after it)."""
        self._order_events = 0
        """poll driver: events read other than market data. A feed alone
        can keep every pass busy while nothing waits long (each pass
        serves every socket), so only orders, reports and session changes
        make a pass busy for the inbox measure."""
        self._firing = False
        """A timer is reading what arrived before it; it re-arms itself."""
        gate = self.gate
        m.overload_inbox_age.set_function(lambda: gate.inbox_age_ns / 1e9)
        for v in engine.venue_names:
            m.overload_ack.labels(venue=v).set_function(self._ack_gauge(gate, v))

    # ------------------------------------------------------------ lifecycle

    def reconcile_first(self) -> None:
        """Before ``start``, after a restore: open the OMS acceptor only once
        every restored open child has been confirmed by its venue, or after
        ``reconcile_timeout_ms``."""
        if not self.engine.unreconciled:
            return
        self._reconciling = True
        self.edge.hold_oms()
        self.loop.call_later(self.cfg.reconcile_timeout_ms / 1000, self._reconcile_deadline)

    def _reconciled(self) -> None:
        self._reconciling = False
        log.info("every restored open child confirmed by its venue: opening the OMS acceptor")
        self.edge.open_oms()

    def _reconcile_deadline(self) -> None:
        if not self._reconciling:
            return
        self._reconciling = False
        left = self.engine.unreconciled_children()
        self.metrics.venue_anomalies.labels(kind="unreconciled").inc(len(left))
        log.error("after %d ms, %d restored children are still unconfirmed by their venues (%s): opening the OMS "
                  "acceptor anyway; each is asked again when its venue logs on", self.cfg.reconcile_timeout_ms,
                  len(left), ", ".join(left[:20]))
        self.edge.open_oms()

    def start(self) -> None:
        self._idle_at_ns = self.clock_ns()
        self._lag_due_ns = self.clock_ns() + LAG_PROBE_NS
        self._next_freeze_ns = self._lag_due_ns
        self.loop.call_later(LAG_PROBE_NS / 1e9, self._lag_probe)
        if self.polling:
            self.loop.call_soon(self._pump)
            return
        self.edge.start()

    def stop(self) -> None:
        self._stopping = True
        j = self.journal
        if self._held and j is not None:
            # The last reports wait for their commit, then go out before the
            # OMS session logs out.
            j.wait_committed(self._held[-1][0], timeout_s=2.0)
            self.release_held()
            if self._held:
                log.error("the commands of %d steps were not durable in time and are not sent", len(self._held))
        self.edge.stop()

    # ------------------------------------------------ from the edge's callbacks

    def _inline(self, ev: Event, decoded_ns: int) -> None:
        """poll: the callback runs on the loop's thread; route at once."""
        if decoded_ns:
            self._risk_ns = decoded_ns - ev.recv_ns  # type: ignore[attr-defined]
        if type(ev) is MarketDataReceived:
            self._dispatch_md(ev)
            return
        self._order_events += 1
        # Stamped as it is read, so ts_ns is now: the pump has read order
        # traffic on every pass since the last one without, and this
        # waited at most that long.
        ts = ev.ts_ns  # type: ignore[attr-defined]
        change = self.gate.inbox(ts - self._idle_at_ns, ts)
        if change is not None:
            self._dispatch(change)
        self._dispatch(ev)  # type: ignore[arg-type]

    def _hop(self, ev: Event, decoded_ns: int) -> None:
        """threaded: quickfix's thread; queue for the loop."""
        if type(ev) is MarketDataReceived:
            self.md_inbox.put(ev)
            return
        if decoded_ns:
            # recv_ns is stamped when decoding starts: the rest is the edge's checks.
            self.metrics.stage["risk"].observe((decoded_ns - ev.recv_ns) / 1e9)  # type: ignore[attr-defined]
        self.inbox.put(ev)  # type: ignore[arg-type]

    # ------------------------------------------------- loop thread: the engine

    def _dispatch_md(self, ev: EngineEvent) -> None:
        try:
            self.engine.handle(ev)
            if self.quality is not None:
                self.quality.tick(ev.ts_ns)
            if self.journal is not None:
                self.journal.append(EVENT, ev.ts_ns, ev)
        except Exception:
            self.metrics.callback_errors.labels(callback="marketdata").inc()
            log.exception("market data update failed: %r", ev)

    def _dispatch_queued(self, ev: EngineEvent) -> None:
        """threaded: an event off the inbox; how long it waited there is the
        back-pressure gate's inbox measure."""
        now = self.clock_ns()
        change = self.gate.inbox(now - ev.ts_ns, now)
        if change is not None:
            self._dispatch(change)
        self._dispatch(ev)

    def _dispatch(self, ev: EngineEvent) -> None:
        if type(ev) is MarketDataReceived:
            self._dispatch_md(ev)
            return
        t_start = self.clock_ns()
        if self._acks and type(ev) in _GATE_INPUTS:
            self._gate_reads(ev, t_start)  # type: ignore[arg-type]
        try:
            step = self.engine.handle(ev)
            t_planned = self.clock_ns()
            t_first_child = self._execute(step.commands)
        except Exception:
            # The engine must never take the daemon down; the order that
            # caused this stays as it was and the error is counted.
            self.metrics.callback_errors.labels(callback="engine").inc()
            log.exception("engine failed on %r", ev)
            self._risk_ns = 0
            return
        # The journal and the stage times come after the children are sent:
        # neither is worth a microsecond on the way to the venue.
        if self.journal is not None:
            self._record(ev, step)
        m = self.metrics
        if type(ev) is NewOrderReceived:
            if t_first_child is not None:
                m.tick_to_route.observe((t_first_child - ev.recv_ns) / 1e9)
                m.stage["queue"].observe((t_start - ev.recv_ns) / 1e9)
                m.stage["decision"].observe((t_planned - t_start) / 1e9)
                m.stage["send"].observe((t_first_child - t_planned) / 1e9)
            if step.decision is not None:
                self.decisions.append(step.decision)
                for stage, ns in step.decision.stages_ns:
                    h = m.stage.get(stage)
                    if h is not None:
                        h.observe(ns / 1e9)
            if self._risk_ns:
                m.stage["risk"].observe(self._risk_ns / 1e9)
                self._risk_ns = 0
        elif type(ev) is VenueReport and ev.exec_type is ExecType.TRADE and step.commands:
            m.fill_to_report.observe((self.clock_ns() - ev.recv_ns) / 1e9)
        if self.quality is not None:
            self.quality.observe(ev, step)
        if self.monitor is not None:
            change = self.monitor.observe(step)
            if change is not None:
                self._dispatch(change)
        if self._drained is not None and not self.engine.open_children:
            self._drained.set()
        if self._reconciling and not self.engine.unreconciled:
            self._reconciled()
        self._arm_timer()

    def _execute(self, cmds: list[Command]) -> int | None:
        """Carry out a step's commands; with ``sync = "every"`` they are kept
        back until ``_record`` has queued the step and the writer committed
        it. Child orders wait too: a child that left before its record was
        durable would be unknown after a crash, and so would its fills."""
        if not self._hold or not cmds:
            t_first_child = self.edge.execute(cmds)
            if t_first_child is not None and self._acks:
                self._note_sends(cmds, t_first_child)
            return t_first_child
        self._to_hold = cmds
        return None

    def _record(self, ev: EngineEvent, step: Step) -> None:
        j = self.journal
        assert j is not None
        ts = ev.ts_ns
        j.append(EVENT, ts, ev)
        if step.commands:
            j.append(COMMANDS, ts, step.commands)
        if step.decision is not None:
            j.append(DECISION, ts, step.decision)
        if self._to_hold is not None:
            self._held.append((j.appended, self._to_hold, ev.recv_ns if type(ev) is NewOrderReceived else 0))
            self._to_hold = None
            j.flush()

    def release_held(self) -> None:
        """Loop thread: send the OMS what the journal has made durable (all of
        it once the journal failed: the OMS must hear of its fills, and the
        failure is already loud)."""
        j = self.journal
        if j is None:
            return
        done = j.committed if j.failed is None else j.appended
        held = self._held
        while held and held[0][0] <= done:
            _, cmds, recv_ns = held.popleft()
            t_first_child = self.edge.execute(cmds)
            if t_first_child is not None and self._acks:
                self._note_sends(cmds, t_first_child)
            if recv_ns and t_first_child is not None:
                self.metrics.tick_to_route.observe((t_first_child - recv_ns) / 1e9)

    def inject(self, ev: EngineEvent) -> None:
        """Loop thread: an input the daemon itself produces (journaled like any other)."""
        self._dispatch(ev)

    def halt(self, reason: str) -> None:
        """Any thread: have the engine refuse new parents from now on."""
        self.loop.call_soon_threadsafe(self._halt, reason)

    def _halt(self, reason: str) -> None:
        self.release_held()
        self.metrics.trading_halted.set(1)
        self._dispatch(TradingHalted(reason=reason, ts_ns=self.clock_ns()))

    async def cancel_all(self, reason: str, timeout_s: float) -> int:
        """Loop thread: refuse new parents, cancel every working one, and wait
        (at most ``timeout_s``) for the venues to end every child; returns
        how many children are still open."""
        self._halt(reason)
        self._drained = asyncio.Event()
        self._dispatch(CancelAllRequested(reason=reason, ts_ns=self.clock_ns()))
        if self.engine.open_children:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout_s)
        self._drained = None
        return self.engine.open_children

    # ------------------------------------------------------------ poll pump

    def _pump(self) -> None:
        """poll driver: one pass over every FIX engine, then again at once
        while busy; after ``poll_idle_spins`` empty passes, yield the core for
        ``poll_idle_backoff_us`` (uvloop timers round that to 1 ms)."""
        if self._stopping:
            return
        edge = self.edge
        before = edge.events
        orders_before = self._order_events
        if self._held:
            self.release_held()
        pass_ns = self.clock_ns()
        try:
            edge.poll()
        except Exception:
            self.metrics.callback_errors.labels(callback="poll").inc()
            log.exception("quickfix poll failed")
        r = self.cfg
        if self._order_events == orders_before:
            self._idle_at_ns = pass_ns
        if edge.events != before:
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
        scraping = self.exposition is not None and self.exposition.wanted
        if scraping and (self._idle_passes or self._busy_passes % 8 == 0):
            self._step_exposition()
        if scraping or self._idle_passes < r.poll_idle_spins:
            self.loop.call_soon(self._pump)
        else:
            self.loop.call_later(r.poll_idle_backoff_us / 1e6, self._pump)

    # ------------------------------------------------------------ exposition

    def _step_exposition(self) -> bool:
        if self.exposition is None:
            return False
        try:
            return self.exposition.step()
        except Exception:
            self.metrics.callback_errors.labels(callback="exposition").inc()
            log.exception("formatting the metrics failed")
            return False

    def wake_exposition(self) -> None:
        """threaded driver, HTTP thread: have the loop format the scrape."""
        self.loop.call_soon_threadsafe(self._exposition_steps)

    def _exposition_steps(self) -> None:
        # One family per loop iteration: events queued meanwhile go between.
        if self._step_exposition():
            self.loop.call_soon(self._exposition_steps)

    # ------------------------------------------------------------ timers

    def _arm_timer(self) -> None:
        if self._firing:
            return
        nxt = self.engine.next_timer_ns()
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
        self._firing = True
        try:
            fired_ns = self._read_before_timer()
        except Exception:
            self.metrics.callback_errors.labels(callback="timer").inc()
            log.exception("reading before the timer failed")
            fired_ns = self.clock_ns()
        finally:
            self._firing = False
        try:
            ev = TimerFired(ts_ns=fired_ns)
            step = self.engine.handle(ev)
            self._execute(step.commands)
            if self.journal is not None:
                self._record(ev, step)
        except Exception:
            self.metrics.callback_errors.labels(callback="timer").inc()
            log.exception("engine timer failed")
        if self._reconciling and not self.engine.unreconciled:
            self._reconciled()
        self._arm_timer()

    def _lag_probe(self) -> None:
        now = self.clock_ns()
        self.metrics.event_loop_lag.observe(max(0, now - self._lag_due_ns) / 1e9)
        self._gate_tick(now)
        self._freeze_survivors(now)
        self._lag_due_ns = now + LAG_PROBE_NS
        self.loop.call_later(LAG_PROBE_NS / 1e9, self._lag_probe)

    def _freeze_survivors(self, now: int) -> None:
        """Every ``router.gc_freeze_interval_ms``, move everything alive into
        the collector's permanent generation, so a full collection does not
        walk what lives for the whole run (the rings, onnxruntime, the
        compact records the engine keeps of finished orders). Frozen objects
        are never collected: a reference cycle that was still alive at a
        freeze and dies later is kept until restart. (``gc.get_freeze_count()``
        is not exported: it walks the whole frozen list.)"""
        interval_ms = self.cfg.gc_freeze_interval_ms
        if interval_ms <= 0 or now < self._next_freeze_ns:
            return
        gc.freeze()
        self._next_freeze_ns = now + interval_ms * 1_000_000

    # ------------------------------------------------------------ back-pressure

    def _read_before_timer(self) -> int:
        """Before a deadline fires, hand the engine what was read before it:
        an ack that came in time but waits in the inbox (or, poll driver, in
        the sockets) must not lose to its own ack timeout. Each event goes
        through ``_dispatch`` and the journal ahead of the ``TimerFired``,
        so replay sees the same order. Returns the ``TimerFired``'s time:
        threaded, the moment it fell due (everything read until then has
        been handled, nothing after: event time stays in order); poll, now
        (what the passes read was stamped as they read it)."""
        now = self.clock_ns()
        if not self.polling:
            self.inbox.drain_while(lambda ev: ev.ts_ns <= now)
            return now
        edge = self.edge
        gate = self.gate
        deadline = now + READ_BEFORE_TIMER_NS
        while not self._stopping:
            orders_before = self._order_events
            pass_ns = self.clock_ns()
            edge.poll()
            # What the journal made durable meanwhile goes out now, as the
            # pump would send it (journal.sync = "every").
            self.release_held()
            if self._order_events == orders_before:
                # Nothing but market data (or nothing): no answer waits.
                self._idle_at_ns = pass_ns
                break
            # Still busy: once the inbox measure is on the engine defers the
            # ack deadlines itself, and the pump reads the rest.
            if gate.backlog or pass_ns >= deadline:
                break
        return self.clock_ns()

    def _gate_reads(self, ev: VenueReport | VenueCancelRejected | VenueSessionChanged, now_ns: int) -> None:
        gate = self.gate
        if isinstance(ev, VenueSessionChanged):
            change = None if ev.up else gate.venue_down(ev.venue, now_ns)
        else:
            # threaded: recv_ns is the socket thread's stamp, as it was read.
            # poll: the pump reads late when it is busy, and that is the
            # inbox measure's business, not the venue's: the answer was not
            # there yet when the last pass without order traffic began, so
            # that is the most it can be blamed on the venue.
            read_ns = self._idle_at_ns if self.polling else ev.recv_ns
            change = gate.answered(ev.child_id, read_ns, now_ns)
        if change is not None:
            self._dispatch(change)

    @staticmethod
    def _ack_gauge(gate: OverloadGate, venue: str) -> Callable[[], float]:
        return lambda: gate.ack_figure_ns(venue) / 1e9

    def _note_sends(self, cmds: list[Command], sent_ns: int) -> None:
        gate = self.gate
        for c in cmds:
            if type(c) is SendChildOrder:
                gate.sent(c.child_id, c.venue, sent_ns)

    def _gate_tick(self, now_ns: int) -> None:
        """The lag probe's beat: the inbox as it stands and every venue's
        window, so the gate clears when nothing comes."""
        gate = self.gate
        if self.polling:
            age = now_ns - self._idle_at_ns
        else:
            head = self.inbox.oldest()
            age = now_ns - head.ts_ns if head is not None else 0
        for change in gate.tick(now_ns, age):
            self._dispatch(change)
