"""Every Prometheus metric the router exports is declared here.

Labelled children are bound once (per venue, per reason) when ``Metrics`` is
built, so recording on the hot path is an attribute lookup and an ``inc``:
no label dict is built per order.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from router.domain import CxlRejReason, OrdRejReason

# 5 us .. 50 ms, roughly x2 per bucket: the range a co-located router lives in.
LATENCY_BUCKETS_S = (
    5e-6, 10e-6, 20e-6, 40e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3,
)

PARENT_OUTCOMES = ("filled", "canceled", "rejected", "partial_canceled")
CHILD_OUTCOMES = ("filled", "canceled", "rejected", "partial_canceled")
SESSION_REJECT_REASONS = ("missing_tag", "bad_value", "unsupported_message")


class VenueMetrics:
    """The children bound for one venue."""

    def __init__(self, m: Metrics, venue: str) -> None:
        self.children_sent = m.child_orders_sent.labels(venue=venue)
        self.outcome = {o: m.child_orders.labels(venue=venue, outcome=o) for o in CHILD_OUTCOMES}
        self.fills = m.fills.labels(venue=venue)
        self.filled_qty = m.filled_qty.labels(venue=venue)
        self.session_up = m.session_up.labels(session=f"venue:{venue}")
        self.ack_latency = m.venue_ack_seconds.labels(venue=venue)


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

        self.venue = {v: VenueMetrics(self, v) for v in venues}
        self.parent_outcome = {o: self.parent_orders.labels(outcome=o) for o in PARENT_OUTCOMES}
        self.order_reject = {r_.name.lower(): self.order_rejects.labels(reason=r_.name.lower()) for r_ in OrdRejReason}
        self.cancel_reject = {
            r_.name.lower(): self.cancel_rejects.labels(reason=r_.name.lower()) for r_ in CxlRejReason
        }
        self.session_reject = {k: self.session_rejects.labels(reason=k) for k in SESSION_REJECT_REASONS}
        self.oms_session_up = self.session_up.labels(session="oms")
        for vm in self.venue.values():
            vm.session_up.set(0)
        self.oms_session_up.set(0)

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on a daemon thread (prometheus-client's server)."""
        start_http_server(port, addr=host, registry=self.registry)
