"""Every Prometheus metric the router exports is declared here.

Labelled children are bound once (per venue, per reason) when ``Metrics`` is
built, so recording on the hot path is an attribute lookup and an ``inc``:
no label dict is built per order.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
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
        self.gc_frozen = Gauge(
            "sor_gc_frozen_objects", "Objects in the collector's permanent generation (never collected)", registry=r
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

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on a daemon thread (prometheus-client's server).

        A scrape holds the GIL while it formats every sample (about 3 ms
        here), and a parent arriving then waits: the ``_created`` series,
        which Prometheus does not need from the text format, are dropped
        (16% less work per scrape)."""
        disable_created_metrics()
        start_http_server(port, addr=host, registry=self.registry)

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
