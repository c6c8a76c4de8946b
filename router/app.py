"""Composition root: config -> market state, model, planner, engine, FIX
edge, metrics and driver, and the order they start and stop in.

This and the CLI are the only router modules that import ``fix``. How
events reach the engine is ``router.runtime.driver``; what goes on the wire
is ``fix.edge``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from fix.clock import monotonic_ns
from fix.edge import RouterEdge
from fix.gateway import hard_exit
from fix.settings import SessionSpec
from fix.store import exec_ids_sent, store_body
from router.admin.server import AdminError, AdminServer, read_token
from router.config import Config
from router.domain.commands import Command, RejectOrder, ReportToOms
from router.domain.events import Restored, VenueSessionChanged
from router.domain.types import Instrument
from router.engine import Engine
from router.features.engine import FeatureEngine, market_state
from router.journal import records
from router.journal.store import JournalStore, SessionInfo, last_session_of, open_store
from router.journal.writer import JournalWriter
from router.learning.venuestats import VenueStats
from router.market.rings import MarketData
from router.metrics.collectors import MarketDataCollector, VenueStatsCollector, register_component_counters
from router.metrics.exposition import StepwiseExposition
from router.metrics.registry import Metrics
from router.routing.factory import make_planner
from router.routing.ml import MLPlanner
from router.routing.models import ModelRouter
from router.routing.policy import Planner, VenueScorer
from router.routing.recorded import RecordedPlanner
from router.runtime.canary import CanaryMonitor
from router.runtime.driver import Driver
from router.runtime.quality import QualityMonitor

if TYPE_CHECKING:
    from router.scoring.onnx import Scorer  # onnxruntime loads only when a model is used

log = logging.getLogger("sor.app")

RESTORE_ID_GAP = 1_000_000
"""How far a restored engine's IDs jump past the last journaled one: the
crashed process may have used some after its last durable record (at most
``journal.max_delay_ms`` of work, or the writer's backlog), and an ID must
never be used twice."""


UNSENT_TAIL_RECORDS = 100_000
"""How far back from a crashed session's end reports are checked against
the FIX store (the writer is never more than a batch or two behind)."""


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
    if cfg.waterfall.planner not in ("ml", "rl"):
        return None, "disabled"
    from router.scoring.manifest import ModelLoadError
    from router.scoring.onnx import load_scorer

    mc = cfg.model
    path = resolve_model_path(mc.path)
    try:
        scorer = load_scorer(msgspec.structs.replace(mc, path=str(path)), len(cfg.venues))
    except ModelLoadError as e:
        log.error("venue model not loaded (%s): %s; routing by the static waterfall", e.reason, e)
        return None, e.reason
    log.info("venue model %s loaded from %s (%s provider)", scorer.version, path, scorer.provider)
    return scorer, "ok"


class EdgeMetrics:
    """``fix.edge.EdgeCounters`` on the router's metrics."""

    def __init__(self, m: Metrics) -> None:
        self._m = m

    def session_reject(self, kind: str) -> None:
        self._m.session_reject[kind].inc()

    def callback_error(self, callback: str) -> None:
        self._m.callback_errors.labels(callback=callback).inc()

    def unused_venue_message(self) -> None:
        self._m.venue_anomalies.labels(kind="unused_message").inc()

    def oms_session(self, up: bool) -> None:
        self._m.oms_session_up.set(1 if up else 0)


@dataclass(frozen=True, slots=True)
class Core:
    """What decides: the market state, the model, the planner and the engine.
    The daemon and ``sor replay`` build it the same way."""

    md: MarketData
    stats: VenueStats
    features: FeatureEngine
    scorer: Scorer | None
    model_status: str
    planner: Planner
    engine: Engine


def build_core(cfg: Config, metrics: Metrics, id_prefix: str, clock_ns: Callable[[], int] | None = None,
               wrap_scorer: Callable[[Any], VenueScorer] | None = None) -> Core:
    """``wrap_scorer``: what the planner reads instead of the loaded model
    (replay wraps it; the daemon never does)."""
    md, stats, features = market_state(cfg)
    scorer, status = load_model(cfg, metrics)
    seen = wrap_scorer(scorer) if wrap_scorer is not None and scorer is not None else scorer
    if cfg.waterfall.planner == "rl":
        cfg = msgspec.structs.replace(cfg, model=msgspec.structs.replace(
            cfg.model, rl_path=str(resolve_model_path(cfg.model.rl_path))))
    planner = make_planner(cfg, features, seen, status, clock_ns=clock_ns)
    engine = Engine(cfg, planner, metrics, id_prefix, market=md, stats=stats)
    return Core(md=md, stats=stats, features=features, scorer=scorer, model_status=status, planner=planner,
                engine=engine)


def restore(engine: Engine, store: JournalStore, lineage: list[SessionInfo]) -> int:
    """Rebuild ``engine``'s state from the journaled inputs of ``lineage``
    (oldest first) and their recorded decisions, discarding what it
    returns: the recorded run already sent it. Returns how many inputs were
    replayed. The caller then tells the engine that every venue session is
    down, as it is in a new process (as journaled inputs of the new
    session, so its replay agrees)."""
    live = engine.planner
    recorded = RecordedPlanner(live)
    engine.use_planner(recorded)
    n = 0
    try:
        for s in lineage:
            for st in records.steps(store.records(s.session_id)):
                recorded.next = records.decode_decision(st.decision) if st.decision is not None else None
                engine.handle(records.decode_event(st.event))
                n += 1
    finally:
        engine.use_planner(live)
    return n


class JournalStats:
    """``router.journal.writer.WriterStats`` on the router's metrics."""

    def __init__(self, m: Metrics) -> None:
        self._m = m

    def written(self, rows: int, batch_seconds: float) -> None:
        self._m.journal_records.inc(rows)
        self._m.journal_batch.observe(batch_seconds)

    def dropped(self, rows: int) -> None:
        self._m.journal_dropped.inc(rows)


class Router:
    """The running daemon: its parts, wired, and their start/stop order."""

    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop, metrics: Metrics | None = None,
                 clock_ns: Callable[[], int] = monotonic_ns) -> None:
        self.cfg = cfg
        self.loop = loop
        self.clock_ns = clock_ns
        self.metrics = m = metrics or Metrics([v.name for v in cfg.venues])
        jc = cfg.journal
        self.store = open_store(jc) if jc.enabled else None
        last = last_session_of(self.store.sessions(), cfg.router.name) \
            if self.store is not None and jc.recover else None
        # A restored session continues its predecessor's IDs: the working
        # orders carry them, and ExecIDs must never repeat.
        self.id_prefix = last.id_prefix if last is not None else (cfg.router.exec_id_prefix or unique_prefix())
        core = build_core(cfg, m, self.id_prefix, clock_ns)
        self.restored_from = 0
        if last is not None and self.store is not None:
            lineage = self.store.lineage(last.session_id)
            t0 = time.perf_counter()
            n = restore(core.engine, self.store, lineage)
            working = sum(1 for p in core.engine.parents.values() if not p.is_terminal)
            log.warning("restored from journal session %d (%d sessions, %d inputs, %.1f s): %d working parents, "
                        "%d open children", last.session_id, len(lineage), n, time.perf_counter() - t0, working,
                        core.engine.open_children)
            self.restored_from = last.session_id
        self.md, self.stats, self.features = core.md, core.stats, core.features
        self.scorer, self.model_status = core.scorer, core.model_status
        self.planner: Planner = core.planner
        self.engine = core.engine
        self.journal = self._open_journal()
        fx = cfg.fix
        self.edge = RouterEdge(instruments(cfg), oms_spec(cfg), list(zip([v.name for v in cfg.venues],
                               venue_specs(cfg))), fx.state_dir, fx.log_messages, fx.file_store, clock_ns,
                               EdgeMetrics(m))
        polling = cfg.router.driver == "poll"
        self.exposition = StepwiseExposition(m.registry, wake=None, on_fallback=m.scrape_fallbacks.inc)
        warm = self.planner.warm if isinstance(self.planner, MLPlanner | ModelRouter) else None
        hold = cfg.journal.sync == "every"
        self.driver = Driver(cfg.router, loop, self.engine, self.edge, m, self.exposition, clock_ns, warm,
                             self.journal, hold_reports=hold)
        if hold and self.journal is not None:
            # The writer's answers are read on the loop: a commit makes held
            # reports sendable at once.
            self.journal.on_commit = self.driver.release_held
        if not polling:
            self.exposition.wake = self.driver.wake_exposition
        self.driver.monitor = CanaryMonitor(cfg, m, self.engine, clock_ns)
        self.driver.quality = QualityMonitor(cfg, m, self.engine, self.md)
        if self.restored_from:
            self.driver.inject(Restored(id_gap=RESTORE_ID_GAP, ts_ns=clock_ns()))
            for v in self.engine.venue_names:
                self.driver.inject(VenueSessionChanged(venue=v, up=False, ts_ns=clock_ns()))
            # Each venue's logon asks it about every child restored as open;
            # the OMS waits until they have answered.
            n = self.engine.expect_reconciliation()
            if n:
                log.warning("restored %d open children: the OMS acceptor opens once their venues confirm them", n)
            self.driver.reconcile_first()
            self._deliver_unsent()
        tick_sizes = {s.symbol: float(s.tick_size) for s in cfg.symbols}
        reg = m.registry
        reg.register(MarketDataCollector(self.md, tick_sizes, clock_ns))
        reg.register(VenueStatsCollector(self.stats, clock_ns))
        register_component_counters(reg, lambda: self.md.dropped_updates, lambda: self.features.resyncs,
                                    lambda: self.edge.md_decoder.errors,
                                    None if self.scorer is None else self.scorer.failures)
        self._unwatch_gc: Callable[[], None] = lambda: None
        self.admin: AdminServer | None = None
        if cfg.admin.enabled:
            # The token is read now: a missing or empty file stops the start.
            version = self.scorer.version if self.scorer is not None else "static"
            self.admin = AdminServer(cfg, read_token(cfg.admin.token_file), loop, self.driver, self.engine, m,
                                     model={"version": version, "status": self.model_status,
                                            "planner": cfg.waterfall.planner}, stats=self.stats)

    def _deliver_unsent(self) -> None:
        """Reports for the OMS that the crashed session journaled but never
        handed to quickfix (``sync = "every"`` commits first and sends after:
        a crash in between) are sent now, in their order. quickfix's store
        says what was handed over (``fix.store``); the OMS reads the rest by
        resend when it logs on."""
        if self.store is None or not self.restored_from:
            return
        fx = self.cfg.fix
        sent = exec_ids_sent(store_body(fx.state_dir, "oms", oms_spec(self.cfg))) if fx.file_store else None
        if sent is None:
            log.warning("no FIX file store for the OMS session: reports the crashed session journaled but may not "
                        "have sent cannot be told apart; none resent")
            return
        # Only the last moments can hold a report committed and not sent (it
        # leaves as soon as its commit returns): the tail is enough.
        tail_from = sum(self.store.count(self.restored_from).values()) - UNSENT_TAIL_RECORDS
        unsent: list[Command] = []
        for st in records.steps(self.store.records(self.restored_from)):
            if st.seq >= tail_from and st.commands is not None:
                for c in records.decode_commands(st.commands):
                    if isinstance(c, ReportToOms | RejectOrder) and c.exec_id not in sent:
                        unsent.append(c)
        if unsent:
            log.error("%d reports for the OMS were journaled but never sent before the crash: sending them now",
                      len(unsent))
            self.metrics.venue_anomalies.labels(kind="unsent_report").inc(len(unsent))
            self.edge.execute(unsent)

    def _open_journal(self) -> JournalWriter | None:
        jc = self.cfg.journal
        store = self.store
        if store is None:
            log.warning("journal disabled (journal.enabled = false): decisions are not recorded")
            return None
        version = self.scorer.version if self.scorer is not None else "static"
        session = store.begin_session(time.time_ns(), self.id_prefix, version,
                                      msgspec.json.encode(self.cfg).decode(), self.restored_from,
                                      self.cfg.router.name)
        m = self.metrics
        writer = JournalWriter(store, session, capacity=jc.capacity, max_delay_ms=jc.max_delay_ms,
                               on_failure=self._journal_failed, stats=JournalStats(m))
        m.journal_depth.set_function(lambda: writer.depth)
        m.journal_high_water.set_function(lambda: writer.high_water)
        log.info("journal %s, session %d", store.path, session)
        return writer

    def _journal_failed(self, reason: str) -> None:
        """Loop thread: the journal stopped recording."""
        self.metrics.journal_failed.set(1)
        if self.cfg.journal.on_failure == "halt":
            self.driver.halt(f"journal failed: {reason}")
        else:
            log.error("journal failed (%s); trading on unrecorded (journal.on_failure = continue)", reason)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.admin is not None:
            self.admin.start()  # first: a port it cannot bind stops the start before anything runs
        if self.journal is not None:
            self.journal.start(self.loop)
        version = self.scorer.version if self.scorer is not None else "static"
        self.metrics.model_info.labels(version=version).set(1)
        self._unwatch_gc = self.metrics.watch_gc()
        if self.cfg.metrics.enabled:
            self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port, self.exposition)
        self.driver.start()
        log.info("router up: OMS acceptor on port %d, %d venue sessions (%s driver)", self.cfg.oms.port,
                 len(self.cfg.venues), self.cfg.router.driver)

    async def shutdown(self) -> None:
        """Clean shutdown: no new parents; cancel what works at the venues
        (``router.shutdown``), wait for the answers, report to the OMS, then
        log out and stop."""
        rc = self.cfg.router
        eng = self.engine
        if rc.shutdown == "cancel":
            working = sum(1 for p in eng.parents.values() if not p.is_terminal)
            left = await self.driver.cancel_all("router shutting down", rc.shutdown_timeout_ms / 1000)
            if left:
                log.error("shutdown: %d children still open at their venues after %d ms", left,
                          rc.shutdown_timeout_ms)
            else:
                log.info("shutdown: %d working parents canceled, no child left at a venue", working)
        else:
            for p in eng.parents.values():
                if not p.is_terminal:
                    open_ = [c for c in p.children if not eng.children[c].is_terminal]
                    log.warning("shutdown (router.shutdown = leave): parent %s (%s) left working, children %s "
                                "still at their venues", p.order_id, p.cl_ord_id, open_)
        self.stop()

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.stop()
        self._unwatch_gc()
        self.driver.stop()
        if self.journal is not None:
            if self.journal.close():
                assert self.store is not None
                self.store.close()  # the last connection out folds the WAL into the file
            else:
                log.error("journal writer did not finish in time: the last records may be missing")


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
    admin = f", admin API on {cfg.admin.host}:{cfg.admin.port}" if router.admin is not None else ""
    print(f"sor: routing; OMS acceptor on port {cfg.oms.port} (logons from {allowed}), metrics on "
          f"{cfg.metrics.host}:{cfg.metrics.port}{admin}", flush=True)
    await stop.wait()
    log.info("shutting down")
    await router.shutdown()


def run_daemon(cfg: Config) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status (2: the model's
    features do not match this build's)."""
    import uvloop

    from router.features.catalogue import FeatureMismatchError
    from router.scoring.manifest import check_features, manifest_path, read_manifest

    if cfg.waterfall.planner in ("ml", "rl"):
        mpath = manifest_path(resolve_model_path(cfg.model.path))
        if mpath.exists():
            try:
                check_features(read_manifest(mpath).features)
            except FeatureMismatchError as e:
                print(f"sor: refusing to start: model {mpath}: {e}", file=sys.stderr, flush=True)
                return 2
            except Exception:
                pass  # unreadable manifests are the loader's to report (fallback)

    if cfg.admin.enabled:
        try:
            read_token(cfg.admin.token_file)
        except AdminError as e:
            print(f"sor: refusing to start: {e}", file=sys.stderr, flush=True)
            return 2

    # Python's default 5 ms switch interval lets a busy quickfix thread stall
    # the loop; a shorter one hands the GIL back sooner.
    sys.setswitchinterval(0.0005)
    try:
        uvloop.run(_serve(cfg))
    except AdminError as e:
        print(f"sor: refusing to start: {e}", file=sys.stderr, flush=True)
        return 2
    print("sor: stopped cleanly", flush=True)
    hard_exit(0)
    return 0
