"""Every Prometheus metric the router exports is declared here.

Labelled children are bound once (per venue, per reason) when ``Metrics`` is
built, so recording on the hot path is an attribute lookup and an ``inc``:
no label dict is built per order.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from router.domain.types import CxlRejReason, OrdRejReason
from router.metrics.exposition import StepwiseExposition

# 5 us .. 50 ms, roughly x2 per bucket: the range a co-located router lives in.
LATENCY_BUCKETS_S = (
    5e-6, 10e-6, 20e-6, 30e-6, 40e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3,
)

SLIPPAGE_BUCKETS_BPS = (-50.0, -20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
STAGES = ("queue", "risk", "decision", "features", "scoring", "planning", "send", "shadow")
"""queue: decode started on quickfix's thread -> picked up by the engine
(so it contains risk); risk: the edge's checks while decoding; decision: the
engine's whole handling of a new parent, which with the ML planner contains
features (the venue feature rows), scoring (the ONNX run) and planning (the
waterfall built from the scores); send: encoding the children and handing
them to quickfix; shadow: the challenger's decision for a parent in shadow
mode (``router.routing.models``), inside decision: what shadowing costs."""

PARENT_OUTCOMES = ("filled", "canceled", "rejected", "partial_canceled")
CHILD_OUTCOMES = ("filled", "canceled", "rejected", "partial_canceled")
SESSION_REJECT_REASONS = ("missing_tag", "bad_value", "unsupported_message")
RISK_LIMITS = ("price_collar", "max_order_qty", "max_order_notional", "credit_limit", "message_throttle",
               "execution_throttle", "duplicate_order", "restricted_symbol", "child_price")
"""The pre-trade controls by name (``router.risk.controls.LIMITS``, which a test keeps equal)."""
RISK_ORDER_KINDS = ("parent", "child", "cancel", "replace")
OVERLOAD_MEASURES = ("inbox_age", "ack_time")
"""What can trip the back-pressure gate (``router.runtime.overload.MEASURES``, which a test keeps equal)."""


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
        self.parent_replaced = Counter(
            "sor_parent_replaced", "Cancel/replace requests that took effect (refused ones: sor_cancel_rejects)",
            registry=r,
        )
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
        self.model_challenger = Gauge(
            "sor_model_challenger", "The challenger beside the champion: 1 in shadow, its share of parents in "
            "canary", ["version", "mode"], registry=r)
        self.model_changes = Counter(
            "sor_model_changes", "Model changes applied, by operator or auto-rollback", ["who"], registry=r)
        self.model_rollbacks = Counter(
            "sor_model_rollbacks", "Canaries rolled back automatically, by reason", ["reason"], registry=r)
        self.model_parents = Counter(
            "sor_model_parents", "Finished parents by the model that routed them and its role", ["model", "role"],
            registry=r)
        self.model_ordered_qty = Counter(
            "sor_model_ordered_qty", "Shares of finished parents, by the model that routed them", ["model"],
            registry=r)
        self.model_filled_qty = Counter(
            "sor_model_filled_qty", "Shares filled of finished parents, by the model that routed them", ["model"],
            registry=r)
        self.model_fallback_parents = Counter(
            "sor_model_fallback_parents", "Parents a model could not score (routed by the static waterfall), by "
            "the model that should have", ["model"], registry=r)
        self.model_quality_children = Counter(
            "sor_model_quality_children", "First-wave children of scored decisions that ended, by model and venue",
            ["model", "venue"], registry=r)
        self.model_fill_predicted = Counter(
            "sor_model_fill_predicted", "Sum of the predicted fill probability of those children", ["model", "venue"],
            registry=r)
        self.model_fill_realised = Counter(
            "sor_model_fill_realised", "Sum of the filled fraction of those children", ["model", "venue"], registry=r)
        self.model_cost_error_bps = Histogram(
            "sor_model_cost_error_bps", "|predicted - realised| cost of a filled first-wave child against the arrival "
            "mid, fee included, bps", ["model", "venue"],
            buckets=(0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50), registry=r)
        self.model_markout_error_bps = Histogram(
            "sor_model_markout_error_bps", "|predicted - realised| quantity-weighted 1 s markout of a filled "
            "first-wave child's fills, bps", ["model", "venue"],
            buckets=(0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50), registry=r)
        self.model_markout_bps = Histogram(
            "sor_model_markout_bps", "Quantity-weighted 1 s markout of all the fills of a finished parent the model "
            "routed, bps (positive: the price moved the parent's way after it traded)", ["model"],
            buckets=(-30, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 30), registry=r)
        self.model_validation = Gauge(
            "sor_model_validation", "The model's held-out figures from its manifest (cost_mae_bps, fill_log_loss, "
            "markout_mae_bps)", ["model", "metric"], registry=r)
        self.model_shortfall_bps = Histogram(
            "sor_model_shortfall_bps", "Implementation shortfall of a finished parent's fills against its arrival "
            "mid, fees included, bps (positive: cost), by model", ["model"],
            buckets=(-20, -10, -5, -2, -1, 0, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50), registry=r)
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
        self.inbox_depth = Gauge(
            "sor_inbox_depth", "Events queued from quickfix's threads for the engine's loop (threaded driver)",
            ["inbox"], registry=r,
        )
        self.inbox_overflows = Counter(
            "sor_inbox_overflows",
            "Times a quickfix thread found the inbox full and waited for the loop (back-pressure, nothing dropped)",
            ["inbox"], registry=r,
        )
        self.journal_records = Counter(
            "sor_journal_records", "Journal records committed (inputs, commands, decisions)", registry=r
        )
        self.journal_dropped = Counter(
            "sor_journal_dropped", "Journal records lost: the writer failed or fell too far behind", registry=r
        )
        self.journal_batch = Histogram(
            "sor_journal_batch_seconds", "One journal batch encoded and committed (fsync included)",
            buckets=(*LATENCY_BUCKETS_S, 0.1, 0.25, 1.0), registry=r,
        )
        self.journal_depth = Gauge("sor_journal_queue_depth", "Journal records waiting for the writer", registry=r)
        self.journal_high_water = Gauge(
            "sor_journal_queue_high_water", "The most journal records ever waiting for the writer", registry=r
        )
        self.journal_failed = Gauge(
            "sor_journal_failed", "1 once the journal stopped recording (see the log for why)", registry=r
        )
        # Pre-trade risk (router.risk).
        self.risk_rejects = Counter(
            "sor_risk_rejects", "Orders a pre-trade control refused, by limit and by what was refused "
            "(parent from the OMS, child the router made, cancel or replace)", ["limit", "order"], registry=r,
        )
        self.risk_warnings = Counter(
            "sor_risk_warnings", "Orders a pre-trade control let through with a warning (duplicate guard in warn mode)",
            ["limit"], registry=r,
        )
        self.risk_limit_changes = Counter(
            "sor_risk_limit_changes", "Run-time risk limit changes, by outcome (applied, refused)", ["outcome"],
            registry=r,
        )
        self.risk_symbols_stopped = Gauge(
            "sor_risk_symbols_stopped", "Symbols the repeated-execution throttle stopped (until re-enabled)",
            registry=r,
        )
        self.trading_halted = Gauge("sor_trading_halted", "1 while new parents are refused", registry=r)
        self.scrape_fallbacks = Counter(
            "sor_metrics_scrape_fallbacks",
            "Scrapes the HTTP thread formatted itself because the engine did not in time (wedged or saturated)",
            registry=r,
        )
        # Operator control (router.engine.operator, router.admin).
        self.kill_switches = Gauge(
            "sor_kill_switches", "Operator kill switches in force, by scope (all, symbol, session, venue)",
            ["scope"], registry=r,
        )
        self.venue_disabled = Gauge(
            "sor_venue_disabled", "1 while an operator has taken the venue out of routing", ["venue"], registry=r
        )
        self.admin_requests = Counter(
            "sor_admin_requests", "Admin API requests served (authenticated), by action", ["action"], registry=r
        )
        self.admin_refused = Counter(
            "sor_admin_refused", "Admin API requests refused for want of a valid bearer token, by reason",
            ["reason"], registry=r,
        )
        # Back-pressure (router.runtime.overload): rejects are counted in
        # sor_order_rejects_total{reason="overloaded"}.
        self.overloaded = Gauge(
            "sor_overloaded", "1 while the back-pressure gate rejects new parents (router overloaded)", registry=r
        )
        self.overload_trips = Counter(
            "sor_overload_trips", "Times the back-pressure gate went on, by the measure that tripped it "
            "(inbox_age, ack_time)", ["measure"], registry=r,
        )
        self.overload_inbox_age = Gauge(
            "sor_overload_inbox_age_seconds", "The back-pressure gate's last inbox observation: how long an "
            "event waited to reach the engine", registry=r,
        )
        self.overload_ack = Gauge(
            "sor_overload_ack_seconds", "The back-pressure gate's ack measure per venue: median of its recent "
            "answers, child handed to quickfix -> answer read (0: too few answers)", ["venue"], registry=r,
        )
        self.ack_timeouts_deferred = Counter(
            "sor_ack_timeouts_deferred", "Ack, status and cancel deadlines that fell due while the inbox was "
            "backed up and waited another ack timeout instead of canceling the child or asking again (its answer "
            "may be queued unread)",
            registry=r,
        )

        self.venue = {v: VenueMetrics(self, v) for v in venues}
        self.parent_outcome = {o: self.parent_orders.labels(outcome=o) for o in PARENT_OUTCOMES}
        self.order_reject = {r_.name.lower(): self.order_rejects.labels(reason=r_.name.lower()) for r_ in OrdRejReason}
        # Not an OrdRejReason of its own on the wire (103=99, Other), but a
        # reason an operator must tell apart from every other reject.
        self.order_reject["overloaded"] = self.order_rejects.labels(reason="overloaded")
        self.overload_trip = {k: self.overload_trips.labels(measure=k) for k in OVERLOAD_MEASURES}
        self.cancel_reject = {
            r_.name.lower(): self.cancel_rejects.labels(reason=r_.name.lower()) for r_ in CxlRejReason
        }
        self.session_reject = {k: self.session_rejects.labels(reason=k) for k in SESSION_REJECT_REASONS}
        self.stage = {s: self.stage_seconds.labels(stage=s) for s in STAGES}
        self.risk_reject = {(lim, o): self.risk_rejects.labels(limit=lim, order=o)
                            for lim in RISK_LIMITS for o in RISK_ORDER_KINDS}
        self.risk_warning = {lim: self.risk_warnings.labels(limit=lim) for lim in RISK_LIMITS}
        self.risk_limit_change = {o: self.risk_limit_changes.labels(outcome=o) for o in ("applied", "refused")}
        self.oms_session_up = self.session_up.labels(session="oms")
        for scope in ("all", "symbol", "session", "venue"):
            self.kill_switches.labels(scope=scope).set(0)
        for v in self.venue:
            self.venue_disabled.labels(venue=v).set(0)
        for reason in ("no_token", "bad_token"):
            self.admin_refused.labels(reason=reason)
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
