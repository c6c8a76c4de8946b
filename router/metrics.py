"""Every Prometheus metric the router exports is declared here.

Labelled children are bound once (per venue, per reason) when ``Metrics`` is
built, so recording on the hot path is an attribute lookup and an ``inc``:
no label dict is built per order.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.domain import CxlRejReason, OrdRejReason


class MarketDataView(Protocol):
    """What the collector reads of router.marketdata.MarketData."""

    venues: tuple[str, ...]
    symbols: tuple[str, ...]
    lit: Any
    book_ts: Any
    bid_px: Any
    ask_px: Any


# 5 us .. 50 ms, roughly x2 per bucket: the range a co-located router lives in.
LATENCY_BUCKETS_S = (
    5e-6, 10e-6, 20e-6, 30e-6, 40e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3,
)

SLIPPAGE_BUCKETS_BPS = (-50.0, -20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
STAGES = ("queue", "risk", "decision", "features", "scoring", "planning", "send")
"""queue: decode started on quickfix's thread -> picked up by the engine
(so it contains risk); risk: the edge's checks while decoding; decision: the
engine's whole handling of a new parent, which with the ML planner contains
features (the venue feature rows), scoring (the ONNX run) and planning (the
waterfall built from the scores); send: encoding the children and handing
them to quickfix."""

PARENT_OUTCOMES = ("filled", "canceled", "rejected", "partial_canceled")
CHILD_OUTCOMES = ("filled", "canceled", "rejected", "partial_canceled")
SESSION_REJECT_REASONS = ("missing_tag", "bad_value", "unsupported_message")


class VenueMetrics:
    """The children bound for one venue."""

    def __init__(self, m: Metrics, venue: str) -> None:
        self.children_sent = m.child_orders_sent.labels(venue=venue)
        self.child_qty_sent = m.child_qty_sent.labels(venue=venue)
        self.slippage_bps = m.fill_slippage_bps.labels(venue=venue)
        self.outcome = {o: m.child_orders.labels(venue=venue, outcome=o) for o in CHILD_OUTCOMES}
        self.fills = m.fills.labels(venue=venue)
        self.filled_qty = m.filled_qty.labels(venue=venue)
        self.session_up = m.session_up.labels(session=f"venue:{venue}")
        self.ack_latency = m.venue_ack_seconds.labels(venue=venue)
        self.md_updates = m.md_updates.labels(venue=venue)
        self.md_entries = m.md_entries.labels(venue=venue)
        self.md_dropped = m.md_dropped.labels(venue=venue)


class Metrics:
    def __init__(self, venues: Iterable[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.parent_orders = Counter(
            "sor_parent_orders", "Parent orders by final outcome", ["outcome"], registry=r
        )
        self.parent_received = Counter("sor_parent_received", "Parent orders received", registry=r)
        self.child_orders_sent = Counter(
            "sor_child_orders_sent", "Child orders sent, by venue", ["venue"], registry=r
        )
        self.child_orders = Counter(
            "sor_child_orders", "Child orders by venue and final outcome", ["venue", "outcome"], registry=r
        )
        self.fills = Counter("sor_fills", "Venue fills, by venue", ["venue"], registry=r)
        self.filled_qty = Counter("sor_filled_qty", "Shares filled, by venue", ["venue"], registry=r)
        self.order_rejects = Counter(
            "sor_order_rejects", "Parent orders rejected, by reason", ["reason"], registry=r
        )
        self.cancel_rejects = Counter(
            "sor_cancel_rejects", "Cancel requests rejected, by reason", ["reason"], registry=r
        )
        self.session_rejects = Counter(
            "sor_session_rejects", "Malformed messages answered with a session Reject", ["reason"],
            registry=r,
        )
        self.callback_errors = Counter(
            "sor_callback_errors", "Exceptions caught in quickfix callbacks", ["callback"], registry=r
        )
        self.illegal_transitions = Counter(
            "sor_illegal_transitions", "Order events illegal in the order's state", ["kind"], registry=r
        )
        self.venue_anomalies = Counter(
            "sor_venue_anomalies",
            "Venue reports the router could not use (unknown child, overfill, duplicate)",
            ["kind"],
            registry=r,
        )
        self.session_up = Gauge("sor_fix_session_up", "1 when the FIX session is logged on", ["session"], registry=r)
        self.open_parents = Gauge("sor_open_parents", "Parent orders not yet terminal", registry=r)
        self.open_children = Gauge("sor_open_children", "Child orders not yet terminal", registry=r)
        self.tick_to_route = Histogram(
            "sor_tick_to_route_seconds",
            "Parent decoded to first child handed to quickfix",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.venue_ack_seconds = Histogram(
            "sor_venue_ack_seconds", "Child sent to venue ack", ["venue"], buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.fill_to_report = Histogram(
            "sor_fill_to_report_seconds",
            "Venue fill decoded to ExecutionReport handed to quickfix",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )

        self.child_qty_sent = Counter(
            "sor_child_qty_sent", "Shares sent in child orders, by venue (fill rate = filled / sent)", ["venue"],
            registry=r,
        )
        self.fill_slippage_bps = Histogram(
            "sor_fill_slippage_bps", "Fill price against the parent's arrival mid, bps (positive = paid away)",
            ["venue"], buckets=SLIPPAGE_BUCKETS_BPS, registry=r,
        )
        self.stage_seconds = Histogram(
            "sor_stage_seconds", "Time in each stage of routing a parent", ["stage"], buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.event_loop_lag = Histogram(
            "sor_event_loop_lag_seconds",
            "How late the loop runs a 100 ms timer (uvloop timers have 1 ms resolution)",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.model_fallbacks = Counter(
            "sor_model_fallbacks", "Orders routed by the static waterfall because the model could not score",
            ["reason"], registry=r,
        )
        self.model_info = Gauge("sor_model_info", "1 for the routing model version in use", ["version"], registry=r)
        self.md_updates = Counter("sor_md_updates", "Market data messages applied, by venue", ["venue"], registry=r)
        self.md_entries = Counter(
            "sor_md_entries", "Market data entries (price levels and trades) applied, by venue", ["venue"],
            registry=r,
        )
        self.md_dropped = Counter(
            "sor_md_dropped", "Market data entries the router could not apply, by venue", ["venue"], registry=r
        )

        self.gc_pause = Histogram(
            "sor_gc_pause_seconds", "Python garbage collections (the engine thread stops for them), by generation",
            ["generation"], buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.scrape_fallbacks = Counter(
            "sor_metrics_scrape_fallbacks",
            "Scrapes the HTTP thread formatted itself because the engine did not in time (wedged or saturated)",
            registry=r,
        )

        self.venue = {v: VenueMetrics(self, v) for v in venues}
        self.parent_outcome = {o: self.parent_orders.labels(outcome=o) for o in PARENT_OUTCOMES}
        self.order_reject = {r_.name.lower(): self.order_rejects.labels(reason=r_.name.lower()) for r_ in OrdRejReason}
        self.cancel_reject = {
            r_.name.lower(): self.cancel_rejects.labels(reason=r_.name.lower()) for r_ in CxlRejReason
        }
        self.session_reject = {k: self.session_rejects.labels(reason=k) for k in SESSION_REJECT_REASONS}
        self.stage = {s: self.stage_seconds.labels(stage=s) for s in STAGES}
        self.oms_session_up = self.session_up.labels(session="oms")
        for vm in self.venue.values():
            vm.session_up.set(0)
        self.oms_session_up.set(0)

    def serve(self, host: str, port: int, exposition: StepwiseExposition) -> None:
        """Expose /metrics on a daemon thread; the engine's thread formats
        each scrape a metric family at a time between events (see
        ``StepwiseExposition``). The ``_created`` series, which Prometheus
        does not need from the text format, are dropped (16% less work per
        scrape)."""
        disable_created_metrics()
        exposition.serve(host, port)

    def watch_gc(self) -> Callable[[], None]:
        """Time every collection into ``sor_gc_pause_seconds``; returns the
        function that stops watching. A full collection walks every live
        object, so its pause grows with the day's orders: operators should
        see it next to the latency it causes."""
        by_gen = [self.gc_pause.labels(generation=str(g)) for g in range(3)]
        started = [0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter_ns()
            else:
                by_gen[min(2, info.get("generation", 2))].observe((time.perf_counter_ns() - started[0]) / 1e9)

        gc.callbacks.append(on_gc)
        return lambda: gc.callbacks.remove(on_gc)


class _OneFamily:
    """A registry of one already collected family, for ``generate_latest``."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return (self.family,)


class _Scrape:
    """One wanted exposition: set ``done`` once ``body`` is there (None: failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body: bytes | None = None


class StepwiseExposition:
    """The text exposition of a registry, formatted in small steps by the
    thread that owns the engine.

    A scrape formats ~330 samples, about 3 ms of Python, and whichever
    thread does it holds the GIL meanwhile. On prometheus-client's HTTP
    thread that stalls the engine in 0.5 ms slices for the whole scrape
    (p99 tick-to-route 1.8 -> 3.4 ms with a 1 Hz scraper, see README,
    Benchmark). Here the HTTP thread only asks and waits, GIL released;
    the engine's thread calls ``step`` when it has nothing else to do, and
    each step formats one metric family (tens of us). If nothing steps for
    ``timeout_s`` (a wedged engine), the HTTP thread formats the scrape
    itself, so metrics stay readable when they are needed most.
    """

    def __init__(self, registry: CollectorRegistry, timeout_s: float = 1.0,
                 wake: Callable[[], None] | None = None, on_fallback: Callable[[], None] | None = None) -> None:
        self.registry = registry
        self.on_fallback = on_fallback
        self.timeout_s = timeout_s
        self.wake = wake
        """Called on the HTTP thread when a scrape is wanted (the threaded
        driver schedules steps on the loop with it)."""
        self._lock = threading.Lock()
        self._scrape: _Scrape | None = None
        self._families: Iterator[Metric] | None = None
        self._parts: list[bytes] = []
        self.fallbacks = 0
        """Scrapes the HTTP thread formatted itself (nothing stepped in time, or a step failed)."""
        self._server: ThreadingHTTPServer | None = None

    @property
    def wanted(self) -> bool:
        return self._scrape is not None

    def request(self) -> bytes:
        """HTTP thread: the exposition, formatted by ``step`` (or here, on timeout)."""
        with self._lock:
            scrape = self._scrape
            if scrape is None:
                scrape = self._scrape = _Scrape()
        if self.wake is not None:
            self.wake()
        if scrape.done.wait(self.timeout_s) and scrape.body is not None:
            return scrape.body
        self.fallbacks += 1
        if self.on_fallback is not None:
            self.on_fallback()
        return generate_latest(self.registry)

    def step(self) -> bool:
        """Engine thread: format one family of a wanted scrape; True while
        there is more to do."""
        scrape = self._scrape
        if scrape is None:
            return False
        try:
            if self._families is None:
                self._families = iter(self.registry.collect())
                self._parts = []
            family = next(self._families, None)
            if family is not None:
                self._parts.append(generate_latest(_OneFamily(family)))
                return True
            body: bytes | None = b"".join(self._parts)
        except Exception:
            self._finish(scrape, None)  # the waiting scrape formats it itself
            raise
        self._finish(scrape, body)
        return False

    def _finish(self, scrape: _Scrape, body: bytes | None) -> None:
        self._families = None
        self._parts = []
        scrape.body = body
        with self._lock:
            self._scrape = None
        scrape.done.set()

    def serve(self, host: str, port: int) -> None:
        exposition = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = exposition.request()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MarketDataCollector(Collector):
    """Feed staleness and each venue's mid, read from the rings at scrape
    time: the hot path pays nothing, and a torn read of one number only
    skews one sample of a gauge."""

    def __init__(self, md: MarketDataView, tick_sizes: dict[str, float], clock_ns: Callable[[], int]) -> None:
        self._md = md
        self._ticks = tick_sizes
        self._clock_ns = clock_ns

    def collect(self) -> Iterable[Metric]:
        md = self._md
        now = self._clock_ns()
        stale = GaugeMetricFamily("sor_md_staleness_seconds", "Time since the last book update of a feed",
                                  labels=["venue", "symbol"])
        mid = GaugeMetricFamily("sor_md_mid", "Mid of a venue's book as the router sees it (0: no two-sided book)",
                                labels=["venue", "symbol"])
        for v, venue in enumerate(md.venues):
            if not md.lit[v]:
                continue
            for s, symbol in enumerate(md.symbols):
                ts = int(md.book_ts[v, s])
                stale.add_metric([venue, symbol], (now - ts) / 1e9 if ts else float("inf"))
                bid, ask = int(md.bid_px[v, s, 0]), int(md.ask_px[v, s, 0])
                both = bid > 0 and ask > 0
                mid.add_metric([venue, symbol], (bid + ask) / 2 * self._ticks[symbol] if both else 0.0)
        yield stale
        yield mid


class VenueStatsView(Protocol):
    venues: tuple[str, ...]
    n_buckets: int

    def fill_rate(self, v: int, bucket: int, now_ns: int) -> float: ...

    def markout_bps(self, v: int, horizon_index: int, now_ns: int) -> float: ...


class VenueStatsCollector(Collector):
    """Fill quality by venue from the router's own decayed statistics, read
    at scrape time (their priors show until a venue has history)."""

    HORIZONS = ("1s", "5s")

    def __init__(self, stats: VenueStatsView, clock_ns: Callable[[], int]) -> None:
        self._stats = stats
        self._clock_ns = clock_ns

    def collect(self) -> Iterable[Metric]:
        st = self._stats
        now = self._clock_ns()
        fill = GaugeMetricFamily("sor_venue_fill_rate",
                                 "Decayed mean over our children of filled/qty, by venue and size bucket",
                                 labels=["venue", "bucket"])
        mark = GaugeMetricFamily("sor_venue_markout_bps",
                                 "Decayed mean markout after our fills (negative = adverse selection)",
                                 labels=["venue", "horizon"])
        for v, venue in enumerate(st.venues):
            for b in range(st.n_buckets):
                fill.add_metric([venue, str(b)], st.fill_rate(v, b, now))
            for h, name in enumerate(self.HORIZONS):
                mark.add_metric([venue, name], st.markout_bps(v, h, now))
        yield fill
        yield mark
